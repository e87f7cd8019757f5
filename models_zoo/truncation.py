"""Cut contexts that a model would truncate anyway before they are tokenized.

A model with a short window (the demo zoo's 128 tokens) keeps only the last tokens of a
few-shot context that can run to thousands of characters (BoolQ and MultiRC passages with two
demonstrations). Tokenizing the whole text, twice per request, then dominates the run. The
wrapper hands the model the context's tail instead: cut at a whitespace, and long enough that
it still holds ``max_length + MARGIN_TOKENS`` tokens, so the window the model keeps lies well
inside the tail. Byte-level BPE and SentencePiece merges never cross a pre-token (whitespace)
boundary, so the kept tokens are those of the full text; the equivalence test checks it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

MARGIN_TOKENS = 16  # tokens kept beyond the window, so the cut never reaches what is scored
START_CHARS_PER_TOKEN = 4  # first guess at the tail length; doubled until it holds enough
WHITESPACE = re.compile(r"\s")


class TrimmedContexts:
    """A ``LanguageModel`` that passes ``model`` only the tail of each long context.

    Args:
        model: A ``LanguageModel`` with ``tokenizer`` and ``max_length`` attributes that
            left-truncates its inputs to ``max_length`` tokens.

    Other attributes (``name``, ``digest``, ``tokens_processed`` ...) are those of ``model``.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.tokenizer = model.tokenizer
        self.max_length = int(model.max_length)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """The wrapped model's scores, computed on the contexts' tails."""
        tails = {context: self.tail(context) for context in {context for context, _ in pairs}}
        trimmed = [(tails[context], continuation) for context, continuation in pairs]
        return list(self.model.loglikelihood(trimmed))

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str]
    ) -> list[str]:
        """Greedy continuations, passed through unchanged."""
        return list(self.model.generate(prompts, max_new_tokens=max_new_tokens, stop=stop))

    def tail(self, context: str) -> str:
        """The shortest whitespace-started tail of ``context`` (tried at doubling lengths) with
        at least ``max_length + MARGIN_TOKENS`` tokens, else ``context`` itself."""
        needed = self.max_length + MARGIN_TOKENS
        chars = needed * START_CHARS_PER_TOKEN
        while chars < len(context):
            found = WHITESPACE.search(context, len(context) - chars)
            if found is None:
                break
            candidate = context[found.start() :]
            ids = self.tokenizer(candidate, add_special_tokens=False)["input_ids"]
            if len(ids) >= needed:
                return candidate
            chars *= 2
        return context
