"""Worker side: answers through ``models_zoo.serving`` (imported here only, never by the web)."""

from __future__ import annotations

from collections.abc import Sequence

from arena import conf
from leaderboard.models import Contestant

# The demo models are base language models: a blank line after the prompt reads as "answer".
PROMPT_SUFFIX = "\n\n"


def generate_answers(contestant: Contestant, prompts: Sequence[str], *, seed: int) -> list[str]:
    """One answer per prompt from ``contestant``; the loaded model is cached per worker process."""
    from models_zoo import serving

    model = serving.load(
        contestant.checkpoint_path,
        device=contestant.device,
        quantize="int8" if contestant.quantize_int8 else None,
        max_memory=contestant.max_memory,
    )
    texts = model.generate(
        [prompt + PROMPT_SUFFIX for prompt in prompts],
        max_new_tokens=int(conf.get("ARENA_MAX_NEW_TOKENS")),
        temperature=float(conf.get("ARENA_TEMPERATURE")),
        seed=seed,
    )
    return [text.strip() for text in texts]
