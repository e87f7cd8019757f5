"""The protocol through which the few-shot runner talks to a language model.

Implemented structurally by ``models_zoo.fewshot_lm.FewshotLM`` (a model loaded by
``models_zoo.serving``); evalcore never imports torch, transformers or models_zoo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class LanguageModel(Protocol):
    """A scorer of continuations and a greedy generator.

    Optional attributes read when present: ``name``, ``digest``, ``num_parameters``,
    ``tokens_processed`` (a running count of tokens run through the model) and ``scoring``
    (a dict of what decides the scored tokens: special tokens, dtype ..., for the provenance).
    Optional methods used by lm-eval task files: ``greedy(pairs) -> list[bool]`` (is each
    continuation the greedy one; loglikelihood tasks' ``acc``) and
    ``render_chat(messages) -> str`` (the chat format).
    """

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Sum of the log-probabilities of each continuation's tokens given its context.

        Args:
            pairs: ``(context, continuation)`` pairs.

        Returns:
            One float per pair, in order.
        """
        ...

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str]
    ) -> list[str]:
        """Greedy continuations of ``prompts``, cut before the first stop string."""
        ...


def describe_model(model: object, path: str | None = None) -> dict[str, object]:
    """The ``model`` block of the results JSON, from the optional attributes of ``model``."""
    name = getattr(model, "name", None) or (path and path.rstrip("/").split("/")[-1]) or None
    return {
        "name": name or type(model).__name__,
        "path": path,
        "digest": getattr(model, "digest", None),
        "num_parameters": getattr(model, "num_parameters", None),
    }


def describe_scoring(model: object) -> dict[str, object] | None:
    """The ``provenance.scoring`` block: the model's ``scoring`` attribute, when it has one."""
    scoring = getattr(model, "scoring", None)
    return dict(scoring) if isinstance(scoring, dict) else None
