"""Worker side: answers through ``models_zoo`` (imported here only, never by the web).

A conversation is rendered the way the model's authors intend (``models_zoo.chat``: its chat
template, or the plain format for base models) and stops at its end-of-turn tokens. Each answer
comes with a record of how it was made (rendered prompt's sha256, settings, stop reason).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.conf import settings

from contestants.models import Contestant

# Intra-op threads per worker process (settings.LADDER_WORKER_TORCH_THREADS). On shared cores
# OpenMP spin-waiting makes more threads slower: SmolLM2-135M decoding measured 0.12 s/token with
# 1 thread, 0.50 with 2 (load ~6).


@dataclasses.dataclass(frozen=True)
class GeneratedAnswer:
    text: str
    record: dict[str, Any]  # prompt_sha256, template, settings, finish_reason, token counts


def _served(contestant: Contestant) -> Any:
    import torch

    from models_zoo import serving
    from models_zoo.progress import quiet_library_bars

    quiet_library_bars()
    threads = int(settings.LADDER_WORKER_TORCH_THREADS)
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return serving.load(contestant.checkpoint_path, **contestant.serving_options.load_arguments())


def chat_settings(contestant: Contestant, *, seed: int) -> Any:
    from models_zoo.chat import ChatSettings

    temperature = contestant.serving_options.temperature
    if temperature is None:
        temperature = float(settings.ARENA_TEMPERATURE)
    return ChatSettings(
        max_new_tokens=int(settings.ARENA_MAX_NEW_TOKENS),
        temperature=float(temperature),
        seed=seed,
        stop=tuple(settings.ARENA_STOP_STRINGS),
    )


def generate_answer(
    contestant: Contestant,
    messages: Sequence[Mapping[str, str]],
    *,
    seed: int,
    on_text: Callable[[str], None] | None = None,
) -> GeneratedAnswer:
    """The contestant's next turn in ``messages``; ``on_text`` sees the answer as it grows.

    Raises:
        models_zoo.chat.ContextTooLong: The last message does not fit the model's context.
    """
    from models_zoo import chat

    served = _served(contestant)
    answer = chat.generate(served, messages, chat_settings(contestant, seed=seed), on_text=on_text)
    record = {**answer.record(), "dtype": str(served.model.dtype).removeprefix("torch.")}
    return GeneratedAnswer(text=answer.text.strip(), record=record)


def generate_answer_records(
    contestant: Contestant, prompts: Sequence[str], *, seed: int
) -> list[GeneratedAnswer]:
    """One single-turn answer per prompt (pool pre-generation, submissions)."""
    return [
        generate_answer(contestant, [{"role": "user", "content": prompt}], seed=seed)
        for prompt in prompts
    ]
