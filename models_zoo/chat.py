"""Chat answers from a served model: prompt formatting, stopping, streaming.

Formatting. A tokenizer with a chat template renders the conversation exactly as its authors
intend, ``tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``.
A base model (no template) gets the documented plain format :data:`PLAIN_FORMAT`: every
message's content followed by a blank line, so a one-message conversation reads
``prompt + "\\n\\n"`` as before.

Stopping. Generation ends at the model's EOS id, at every end-of-turn id the tokenizer knows
(``<|im_end|>``, ``<|eot_id|>``, ...; the generation config's EOS list too), at
``max_new_tokens``, or just before a stop string. Stop tokens and stop strings are never part
of the answer, and never reach a streaming callback either: text that could still become a stop
string is held back until it cannot.

Context. The prompt gets the model's context less ``max_new_tokens``; older exchanges are
dropped to fit. A model whose context is barely longer than ``max_new_tokens`` (the demo's
128-token models at the arena's 128) still answers a last message that fits with at least
:data:`MIN_ANSWER_TOKENS` to spare: its answer is shortened to the room left, and the record
says so (``max_new_tokens``).

Every answer carries the sha256 of the rendered prompt and the generation settings, so what
was asked can be reproduced and audited.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformers.cache_utils import DynamicCache

MIN_ANSWER_TOKENS = 16  # the least room an answer keeps when the last message is long
PLAIN_FORMAT = "plain: each message's content followed by a blank line ('\\n\\n')"
ROLES = ("system", "user", "assistant")
# End-of-turn markers of common chat formats; used when the tokenizer has them as one token.
END_OF_TURN_TOKENS = (
    "<|im_end|>",  # ChatML (SmolLM2, Qwen)
    "<|eot_id|>",  # Llama 3
    "<|end|>",  # Phi-3
    "<end_of_turn>",  # Gemma
    "<|endoftext|>",
    "</s>",
)

Message = Mapping[str, str]
OnText = Callable[[str], None]


class ContextTooLong(ValueError):
    """The conversation does not fit the model's context even after dropping older turns."""


@dataclasses.dataclass(frozen=True)
class ChatSettings:
    """How an answer is generated; stored with the answer."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    seed: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.temperature < 0:
            raise ValueError(
                f"max_new_tokens ({self.max_new_tokens}) must be >= 1 and "
                f"temperature ({self.temperature}) >= 0"
            )


@dataclasses.dataclass(frozen=True)
class RenderedPrompt:
    """A conversation rendered for one model."""

    text: str
    template: str  # "chat_template" or "plain"
    dropped_messages: int  # older messages left out to fit the context

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class ChatAnswer:
    """One generated answer and what produced it."""

    text: str
    finish_reason: str  # "stop" (EOS, end of turn or stop string) or "length"
    prompt: RenderedPrompt
    prompt_tokens: int
    token_ids: tuple[int, ...]  # generated, without the stop token
    first_token_s: float
    wall_time_s: float
    stop_token_ids: tuple[int, ...]
    settings: ChatSettings

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.wall_time_s if self.wall_time_s > 0 else 0.0

    def record(self) -> dict[str, Any]:
        """JSON-ready facts to store beside the answer text."""
        return {
            "prompt_sha256": self.prompt.digest,
            "template": self.prompt.template,
            "dropped_messages": self.prompt.dropped_messages,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "stop_token_ids": list(self.stop_token_ids),
            **dataclasses.asdict(self.settings),
        }


def validate_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Plain ``{"role", "content"}`` dicts; the last message must be the user's.

    Raises:
        ValueError: An empty conversation, an unknown role, non-string content, or a last
            message that is not the user's.
    """
    cleaned = []
    for number, message in enumerate(messages, start=1):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise ValueError(f"message {number}: role must be one of {ROLES} and content a string")
        cleaned.append({"role": str(role), "content": content})
    if not cleaned or cleaned[-1]["role"] != "user":
        raise ValueError("a conversation must end with a user message")
    return cleaned


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(tokenizer: Any, messages: Sequence[Message]) -> RenderedPrompt:
    """The prompt text for ``messages``: the tokenizer's chat template, else the plain format."""
    conversation = validate_messages(messages)
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True
        )
        return RenderedPrompt(text=str(text), template="chat_template", dropped_messages=0)
    text = "".join(message["content"] + "\n\n" for message in conversation)
    return RenderedPrompt(text=text, template="plain", dropped_messages=0)


def render_within(
    tokenizer: Any, messages: Sequence[Message], *, budget_tokens: int
) -> tuple[RenderedPrompt, list[int]]:
    """Render and encode, dropping the oldest exchanges until the prompt fits ``budget_tokens``.

    A leading system message and the last user message are always kept.

    Raises:
        ContextTooLong: Even the last user message alone does not fit.
    """
    conversation = validate_messages(messages)
    system = conversation[:1] if conversation[0]["role"] == "system" else []
    rest = conversation[len(system) :]
    dropped = 0
    while True:
        prompt = render(tokenizer, system + rest)
        tokens = encode(tokenizer, prompt.text)
        if len(tokens) <= budget_tokens:
            return dataclasses.replace(prompt, dropped_messages=dropped), tokens
        if len(rest) <= 2:
            raise ContextTooLong(
                f"the last message needs {len(tokens)} tokens; this model has room for "
                f"{budget_tokens} before its answer"
            )
        rest, dropped = rest[2:], dropped + 2  # the oldest user message and its answer


def fit_context(
    tokenizer: Any, messages: Sequence[Message], *, context: int, max_new_tokens: int
) -> tuple[RenderedPrompt, list[int]]:
    """The prompt for a model of ``context`` tokens, leaving ``max_new_tokens`` for the answer.

    Older exchanges are dropped first (:func:`render_within`). When even the last user message
    (with a leading system message) leaves less than ``max_new_tokens``, it is kept alone if it
    leaves :data:`MIN_ANSWER_TOKENS` (or ``max_new_tokens``, if fewer): the caller shortens the
    answer to the room left.

    Raises:
        ContextTooLong: The last message does not fit even so.
    """
    try:
        return render_within(tokenizer, messages, budget_tokens=max(1, context - max_new_tokens))
    except ContextTooLong:
        conversation = validate_messages(messages)
        kept = (conversation[:1] if conversation[0]["role"] == "system" else []) + conversation[-1:]
        floor = min(max_new_tokens, MIN_ANSWER_TOKENS)
        prompt, tokens = render_within(tokenizer, kept, budget_tokens=max(1, context - floor))
        dropped = len(conversation) - len(kept)
        return dataclasses.replace(prompt, dropped_messages=dropped), tokens


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text``; special-token strings (``<|im_start|>``) map to their ids, and no
    BOS/EOS is added (chat templates write their own)."""
    tokens = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not tokens:
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else None
        tokens = [prefix if prefix is not None else tokenizer.eos_token_id]
    return tokens


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> tuple[int, ...]:
    """EOS and end-of-turn ids of a tokenizer (and of a model's generation config)."""
    ids: set[int] = set()
    candidates: list[Any] = [tokenizer.eos_token_id]
    if generation_config is not None:
        candidates.append(getattr(generation_config, "eos_token_id", None))
    for value in candidates:
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(item) for item in value)
    # Special tokens only: a marker the tokenizer splits into pieces is text, not a stop id.
    # (Looked up one by one: get_vocab() builds a 49K-entry dict, ~0.1 s, before every answer.)
    special = set(getattr(tokenizer, "all_special_tokens", ())) | set(
        getattr(tokenizer, "added_tokens_encoder", {})
    )
    for marker in END_OF_TURN_TOKENS:
        if marker not in special:
            continue
        token_id = tokenizer.convert_tokens_to_ids(marker)
        if isinstance(token_id, int) and tokenizer.convert_ids_to_tokens(token_id) == marker:
            ids.add(token_id)
    return tuple(sorted(ids))


def generate(
    served: Any,
    messages: Sequence[Message],
    settings: ChatSettings,
    *,
    on_text: OnText | None = None,
) -> ChatAnswer:
    """Answer the last user message of ``messages`` with ``served`` (a ``ServedModel``).

    Batch 1 with a KV cache: greedy at temperature 0, else sampling from one generator seeded
    with ``settings.seed``. ``on_text`` receives the answer so far (never a stop marker) each
    time it grows.

    Raises:
        ContextTooLong: The last message does not fit the model's context.
    """
    tokenizer, model = served.tokenizer, served.model
    prompt, tokens = fit_context(
        tokenizer, messages, context=served.max_length, max_new_tokens=settings.max_new_tokens
    )
    room = served.max_length - len(tokens)
    if room < settings.max_new_tokens:
        settings = dataclasses.replace(settings, max_new_tokens=room)
    stops = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
    with served.lock, torch.inference_mode():
        return _decode(served, prompt, tokens, settings, stops, on_text)


def _decode(
    served: Any,
    prompt: RenderedPrompt,
    tokens: list[int],
    settings: ChatSettings,
    stops: tuple[int, ...],
    on_text: OnText | None,
) -> ChatAnswer:
    generator = torch.Generator(device=served.device)
    generator.manual_seed(settings.seed % 2**63)
    stream = _TextStream(served.tokenizer, settings.stop, on_text)
    started, first_token_s, finish = time.perf_counter(), 0.0, "length"
    steps = _steps(served, tokens, settings.max_new_tokens)
    logits = steps.start()
    for count in range(1, settings.max_new_tokens + 1):
        token = _choose(logits, settings.temperature, generator)
        if not first_token_s:
            first_token_s = time.perf_counter() - started
        if token in stops or stream.add(token):
            finish = "stop"
            break
        if count < settings.max_new_tokens:
            logits = steps.advance(token)
    return ChatAnswer(
        text=stream.finish(),
        finish_reason=finish,
        prompt=prompt,
        prompt_tokens=len(tokens),
        token_ids=tuple(stream.tokens),
        first_token_s=first_token_s,
        wall_time_s=time.perf_counter() - started,
        stop_token_ids=stops,
        settings=settings,
    )


def _steps(served: Any, tokens: list[int], max_new_tokens: int) -> _ModelSteps | _FastSteps:
    if getattr(served, "use_fast_chat", False):
        return _FastSteps(served, tokens, max_new_tokens)
    return _ModelSteps(served, tokens)


class _ModelSteps:
    """Next-token logits from the model's own forward with a transformers ``DynamicCache``."""

    def __init__(self, served: Any, tokens: list[int]) -> None:
        self.model, self.device, self.tokens = served.model, served.device, tokens
        self.cache_argument, self.last_logits_only = _forward_arguments(self.model)
        self.cache = DynamicCache(config=self.model.config)

    def start(self) -> torch.Tensor:
        """``(V,)`` float logits after the prompt."""
        return self._run(torch.tensor([self.tokens], device=self.device))

    def advance(self, token: int) -> torch.Tensor:
        """``(V,)`` float logits after ``token`` is appended."""
        return self._run(torch.tensor([[token]], device=self.device))

    def _run(self, input_ids: torch.Tensor) -> torch.Tensor:
        step = {"input_ids": input_ids, self.cache_argument: self.cache, "use_cache": True}
        if self.last_logits_only:  # the prompt's other positions need no LM head
            step["logits_to_keep"] = 1
        return self.model(**step).logits[0, -1].float()


class _FastSteps:
    """The same logits from :mod:`models_zoo.fast_decode`'s static-cache decoder (batch 1)."""

    def __init__(self, served: Any, tokens: list[int], max_new_tokens: int) -> None:
        from models_zoo import fast_decode

        self.decoder = fast_decode.stream_decoder(served.model, len(tokens), max_new_tokens)
        self.device, self.tokens, self.max_new_tokens = served.device, tokens, max_new_tokens

    def start(self) -> torch.Tensor:
        prompt = torch.tensor([self.tokens], device=self.device)
        return self.decoder.start(prompt, self.max_new_tokens)[0].float()

    def advance(self, token: int) -> torch.Tensor:
        return self.decoder.advance(torch.tensor([token], device=self.device))[0].float()


def _choose(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def _forward_arguments(model: Any) -> tuple[str, bool]:
    """The cache argument's name and whether the forward takes ``logits_to_keep``."""
    parameters = inspect.signature(model.forward).parameters
    # transformers renamed the forward argument past_key_values -> cache (5.2x).
    return ("cache" if "cache" in parameters else "past_key_values"), "logits_to_keep" in parameters


class _TextStream:
    """Detokenizes the answer so far, cuts it at stop strings, and publishes safe prefixes."""

    def __init__(self, tokenizer: Any, stop: Sequence[str], on_text: OnText | None) -> None:
        self.tokenizer, self.stop, self.on_text = tokenizer, [s for s in stop if s], on_text
        self.tokens: list[int] = []
        self.text = ""
        self._published = ""

    def add(self, token: int) -> bool:
        """Append a token; True when a stop string has appeared (the answer is complete)."""
        self.tokens.append(token)
        self.text = str(self.tokenizer.decode(self.tokens, skip_special_tokens=True))
        cut = find_stop(self.text, self.stop)
        if cut is not None:
            self.text = self.text[:cut]
            return True
        self._publish(self._safe_prefix())
        return False

    def finish(self) -> str:
        self._publish(self.text)
        return self.text

    def _safe_prefix(self) -> str:
        text = self.text.rstrip("\ufffd")  # an incomplete UTF-8 character is not text yet
        for marker in self.stop:  # hold back what may still grow into a stop string
            for length in range(min(len(marker) - 1, len(text)), 0, -1):
                if text.endswith(marker[:length]):
                    text = text[:-length]
                    break
        return text

    def _publish(self, text: str) -> None:
        if self.on_text is not None and text != self._published:
            self._published = text
            self.on_text(text)


def find_stop(text: str, stop: Sequence[str]) -> int | None:
    """Index of the earliest stop string in ``text``, or None."""
    positions = [text.find(marker) for marker in stop if marker]
    found = [position for position in positions if position >= 0]
    return min(found) if found else None
