"""Encode few-shot texts in pieces: each shared piece once, the same tokens as whole-text calls.

A loglikelihood call encodes every context and every context + continuation (lm-evaluation-
harness's convention, ``ServedModel.encode_pair``): the choices of a doc repeat its context, and
at k > 0 every context repeats one demonstration block, so a whole-text call tokenizes the same
characters several times (at k = 8, 0.22 s of a 0.74 s GPU call, bench/RESULTS.md). With a
byte-level BPE tokenizer (GPT-2's, Llama 3's, SmolLM2's, the bench's), a text splits into
pre-tokens by a regex that never lets a match run from a non-space character into a following
space, and BPE merges never cross pre-tokens. So at a *safe cut* (a single space between two
non-space characters) ``encode(a + b) == encode(a) + encode(b)`` (with the special tokens, when
they are only prepended, on ``a``). :func:`cut_points` cuts each context at its last safe cut
(the continuation is encoded with the short piece after it) and at the last safe cut inside the
longest prefix it shares with its neighbours in sorted order (the demonstration block): each
distinct piece is encoded once. :func:`splits_safely` says whether a tokenizer qualifies;
tests/models_zoo/test_pieces.py compares with whole-text encoding.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

# Pre-tokenizers under which a safe cut is a pre-token boundary: byte-level BPE's regex split,
# a regex ``Split`` (Llama 3's; isolated matches of a pattern without look-behind) and
# ``Digits``. Metaspace (SentencePiece style) prepends a marker to every text: not safe.
SAFE_PRE_TOKENIZERS = ("ByteLevel", "Split", "Digits")
Encode = Callable[[list[str], bool], list[list[int]]]  # (texts, add special tokens) -> ids


def splits_safely(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` gives the same tokens for a text cut at a safe cut, the pieces
    encoded apart (special tokens only on the first): a byte-level BPE with no normalizer,
    whose special tokens are only prepended and whose added tokens hold no whitespace and
    strip none."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    state = json.loads(backend.to_str())
    pre = state.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    if state.get("normalizer") is not None or (state.get("model") or {}).get("type") != "BPE":
        return False
    if not steps or any(step.get("type") not in SAFE_PRE_TOKENIZERS for step in steps):
        return False
    if not any(step.get("type") == "ByteLevel" for step in steps):
        return False
    for added in state.get("added_tokens", []):
        content = added.get("content", "")
        if added.get("lstrip") or added.get("rstrip") or any(c.isspace() for c in content):
            return False
    plain = list(tokenizer("a b", add_special_tokens=False)["input_ids"])
    marked = list(tokenizer("a b")["input_ids"])
    return marked[len(marked) - len(plain) :] == plain


def is_safe_cut(text: str, index: int) -> bool:
    """A single space at ``index`` between two non-space characters."""
    return (
        0 < index < len(text) - 1
        and text[index] == " "
        and not text[index - 1].isspace()
        and not text[index + 1].isspace()
    )


def last_safe_cut(text: str, end: int) -> int:
    """The last safe cut of ``text`` before ``end`` (0: none)."""
    index = text.rfind(" ", 0, end)
    while index > 0 and not is_safe_cut(text, index):
        index = text.rfind(" ", 0, index)
    return max(index, 0)


def cut_points(contexts: Sequence[str]) -> dict[str, tuple[int, int]]:
    """For each distinct context, ``(shared, last)``: the last safe cut inside the longest
    prefix it shares with a neighbour in sorted order (0: none) and its last safe cut
    (0: none); ``shared < last`` or ``shared == 0``."""
    ordered = sorted(set(contexts))
    common = [0] * len(ordered)
    for i in range(1, len(ordered)):
        length = _common_prefix_length(ordered[i - 1], ordered[i])
        common[i - 1] = max(common[i - 1], length)
        common[i] = max(common[i], length)
    cuts = {}
    for text, length in zip(ordered, common, strict=True):
        last = last_safe_cut(text, len(text))
        shared = last_safe_cut(text, min(length, last)) if length else 0
        cuts[text] = (shared, last)
    return cuts


def encode_texts(texts: dict[str, tuple[bool, str]], encode: Encode) -> dict[str, list[int]]:
    """The tokens of each text of ``texts`` (text -> (whether it gets special tokens, the
    context it starts with: itself, or the context of a context + continuation)) as
    ``encode`` gives them whole; each distinct piece is encoded once (two calls of
    ``encode``)."""
    cuts = cut_points([context for _, context in texts.values()])
    plans = {
        text: _plan(text, special, cuts[context]) for text, (special, context) in texts.items()
    }
    pieces: dict[tuple[str, bool], list[int]] = {}
    for plan in plans.values():
        pieces.update((piece, []) for piece in plan)
    for flag in (False, True):
        batch = [piece for piece, special in pieces if special is flag]
        if batch:
            for piece, ids in zip(batch, encode(batch, flag), strict=True):
                pieces[(piece, flag)] = list(ids)
    return {
        text: list(chain.from_iterable(map(pieces.__getitem__, plan)))
        for text, plan in plans.items()
    }


def _plan(text: str, special: bool, cuts: tuple[int, int]) -> list[tuple[str, bool]]:
    """``text`` as the pieces between its context's cuts, each with whether it gets the
    special tokens (the first only)."""
    bounds = [0] + [cut for cut in cuts if cut] + [len(text)]
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return [(piece, special and i == 0) for i, piece in enumerate(pieces)]


def _common_prefix_length(a: str, b: str) -> int:
    """Length of the common prefix of ``a`` and ``b`` (binary search over C comparisons)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low
