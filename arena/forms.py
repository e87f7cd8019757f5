from __future__ import annotations

from django import forms
from django.conf import settings


def prompt_problem(prompt: str) -> str | None:
    """Why a typed prompt is refused (empty, too long), or None when it is fine."""
    if not prompt.strip():
        return "prompt must not be empty"
    limit = int(settings.ARENA_MAX_PROMPT_CHARS)
    if len(prompt) > limit:
        return f"prompt is {len(prompt)} characters long; the limit is {limit}"
    return None


class BattleForm(forms.Form):
    prompt = forms.CharField(required=False, strip=True, widget=forms.Textarea)
    action = forms.ChoiceField(choices=[("battle", "battle"), ("random", "random")], required=False)

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("action") != "random":
            problem = prompt_problem(str(data.get("prompt") or ""))
            if problem:
                self.add_error("prompt", problem)
        return data

    @property
    def random_prompt(self) -> bool:
        return self.cleaned_data.get("action") == "random"


class VoteForm(forms.Form):
    winner = forms.CharField(required=False)
