"""The few-shot runner's language model: ``evalcore.fewshot.lm.LanguageModel`` over serving.

``FewshotLM`` satisfies the protocol structurally (evalcore never imports this module): it
hands ``(context, continuation)`` pairs to ``models_zoo.serving.ServedModel.loglikelihood``
(prefix-tree scoring, lm-evaluation-harness's token encoding) after cutting contexts the model
would truncate anyway (``models_zoo.truncation``), and records what decides the scored tokens
in ``scoring`` (copied into the results' provenance).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models_zoo import serving
from models_zoo.serving import SPECIAL_TOKENS_DEFAULT, ServedModel
from models_zoo.truncation import TrimmedContexts


class FewshotLM:
    """A served model behind the few-shot ``LanguageModel`` protocol.

    Args:
        served: The loaded model.
        batch_size: Most rows per forward batch (``None``: the served model's default, 16 on
            CPU, hundreds on CUDA); CPU scores do not depend on it, CUDA ones within bf16
            rounding (``scoring["mode"]``).
        special_tokens: ``"tokenizer"`` (lm-eval's default) or ``"none"``; see
            ``ServedModel.encode_pair``.
        prefix_cache: Share common prefixes through KV caches (off: plain batches, for tests).
        min_prefix_tokens: Fewest recomputed tokens a shared prefix must save to run alone.
        invariant: Scores independent of batch, order and co-requests (``models_zoo.scoring``).
        trim_contexts: Hand the model only the tail of contexts it would truncate.
    """

    def __init__(
        self,
        served: ServedModel,
        *,
        batch_size: int | None = None,
        special_tokens: str = SPECIAL_TOKENS_DEFAULT,
        prefix_cache: bool = True,
        min_prefix_tokens: int = 32,
        invariant: bool = True,
        trim_contexts: bool = True,
    ) -> None:
        self.served = served
        self.batch_size = batch_size if batch_size is not None else served.default_batch_size()
        self.special_tokens = special_tokens
        self.prefix_cache = prefix_cache
        self.min_prefix_tokens = min_prefix_tokens
        self.invariant = invariant
        self.tokens_processed = 0  # tokens this adapter ran (shared prefixes count once)
        self.requests_scored = 0  # (context, continuation) pairs scored
        self.name = served.path.name
        self.path = str(served.path)
        self.digest = "sha256:" + served.digest
        self.num_parameters = served.num_parameters
        self.tokenizer = served.tokenizer
        self.max_length = served.max_length
        self._trimmer = TrimmedContexts(served) if trim_contexts else None
        mode = served.scoring_mode(prefix_cache, invariant)
        self.scoring = {
            **served.scoring_settings(special_tokens),
            "prefix_cache": prefix_cache,
            "invariant": invariant,
            "mode": mode,
            "trim_contexts": trim_contexts,
            # CUDA's wide passes run RMSNorms as F.rms_norm (another bf16 rounding): recorded,
            # so results cached before it (models_zoo.scoring_wide) are not reused for it.
            **({"fused_norms": served.device.type == "cuda"} if mode == "wide" else {}),
            # Ragged last chunks round differently from the padded copy (1e-7): recorded too.
            **(
                {"last_chunk_attention": served.last_chunk_attention}
                if mode == "invariant_chunks"
                else {}
            ),
        }

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Summed log-probabilities of each continuation given its context."""
        if self._trimmer is not None:
            tails = {context: self._trimmer.tail(context) for context, _ in pairs}
            pairs = [(tails[context], continuation) for context, continuation in pairs]
        self.requests_scored += len(pairs)
        before = self.served.tokens_processed
        scores = self.served.loglikelihood(
            pairs,
            batch_size=self.batch_size,
            special_tokens=self.special_tokens,
            prefix_cache=self.prefix_cache,
            min_prefix_tokens=self.min_prefix_tokens,
            invariant=self.invariant,
        )
        self.tokens_processed += self.served.tokens_processed - before
        return scores

    def greedy(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether each continuation is the greedy one (lm-eval's ``is_greedy``)."""
        self.loglikelihood(pairs)
        return list(self.served.last_greedy)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The chat-format prompt (the model's chat template, generation turn open)."""
        return self.served.render_chat(messages)

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str]
    ) -> list[str]:
        """Greedy continuations, cut before the first stop string."""
        return self.served.generate(list(prompts), max_new_tokens=max_new_tokens, stop=list(stop))


def load_fewshot_lm(
    path: str | Path,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    **options: Any,
) -> FewshotLM:
    """Load ``path`` through ``models_zoo.serving.load`` as a :class:`FewshotLM`.

    Raises:
        FileNotFoundError: If ``path`` is not a checkpoint directory.
    """
    return FewshotLM(serving.load(path, device=device, dtype=dtype), **options)
