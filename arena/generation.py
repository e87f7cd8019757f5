"""Worker side: answers through ``models_zoo.serving`` (imported here only, never by the web)."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from contestants.models import Contestant

# The demo models are base language models: a blank line after the prompt reads as "answer".
PROMPT_SUFFIX = "\n\n"


def generate_answers(contestant: Contestant, prompts: Sequence[str], *, seed: int) -> list[str]:
    """One answer per prompt from ``contestant``; the loaded model is cached per worker process."""
    from models_zoo import serving

    model = serving.load(contestant.checkpoint_path, **contestant.serving_options.load_arguments())
    texts = model.generate(
        [prompt + PROMPT_SUFFIX for prompt in prompts],
        max_new_tokens=int(settings.ARENA_MAX_NEW_TOKENS),
        temperature=float(settings.ARENA_TEMPERATURE),
        seed=seed,
    )
    return [text.strip() for text in texts]
