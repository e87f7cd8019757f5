"""``LanguageModel`` adapter for any local transformers causal-LM directory (GPT-2, Llama ...).

torch and transformers are imported inside ``HFCausalLM.__init__`` only.

Fast path of ``loglikelihood`` (each step has an equivalence test against the plain path):

1. Requests whose model input is identical (the choices of one doc when each answer is one
   token; in general context + continuation[:-1]) share ONE forward pass, as in
   lm-evaluation-harness's one-token-continuation grouping.
2. Inputs are sorted and walked as a prefix tree: a run of inputs sharing a long token prefix
   (the demonstration block of a (split, config), then, below it, one doc's prompt under its
   several multi-token answers, or a MultiRC paragraph) has that prefix run once, batch 1, and
   is scored on the extended KV cache, recursively. No prompt token is computed twice.
3. The remaining suffixes of a node are batched by similar length (padding under 1/8) up to a
   token budget; they are right-padded, which needs no attention mask under causal attention
   because no real position reads a pad. A batch of one shares the cache without copying it.
4. Only the positions that score a continuation token go through the LM head, so the
   (batch x time x vocab) logits tensor is never materialised.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
# A batch's padding stays under 1/PADDING_SLACK of its tokens: on CPU, padded positions cost
# as much as real ones and batching gains little, so similar lengths matter more than size.
PADDING_SLACK = 8
DIGEST_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json")


@dataclass(frozen=True)
class _Sequence:
    """One unique model input and the requests scored on it."""

    tokens: tuple[int, ...]
    requests: tuple[tuple[int, tuple[int, ...]], ...]  # (request index, continuation tokens)

    @property
    def free_prefix(self) -> int:
        """How many leading positions no request reads a prediction from."""
        return len(self.tokens) - max(len(cont) for _, cont in self.requests)


class HFCausalLM:
    """A local transformers causal LM behind the ``LanguageModel`` protocol.

    Args:
        path: Directory with ``config.json``, weights and tokenizer files.
        device: ``"cpu"``, ``"cuda"`` ... (``"auto"``: CUDA when available).
        dtype: torch dtype name (``"float32"``, ``"bfloat16"``); default float32 on CPU.
        token_budget: Maximum padded tokens per forward batch.
        prefix_cache: Run shared prefixes once (off = plain batched path, for testing).
        min_prefix_tokens: Shortest shared prefix worth a separate forward pass.
        max_length: Context window; default from the model config. Longer inputs keep their
            last ``max_length`` tokens (left truncation, as lm-evaluation-harness).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        token_budget: int = 8192,
        prefix_cache: bool = True,
        min_prefix_tokens: int = 32,
        max_length: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self.path = Path(path)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        torch_dtype = getattr(torch, dtype) if dtype else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch_dtype)
        self.model.to(self.device).eval()  # type: ignore[arg-type]
        config = self.model.config
        self.max_length = max_length or _context_window(config)
        self.token_budget = token_budget
        self.prefix_cache = prefix_cache
        self.min_prefix_tokens = min_prefix_tokens
        self.name = self.path.name
        self.digest = directory_digest(self.path)
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        self.tokens_processed = 0
        self._cache_kwarg = _cache_kwarg(self.model)
        # Soft-capped or scaled logits need the model's own head; the split head/body path
        # below would skip that step.
        self._split_head = not any(
            getattr(config, name, None) for name in ("final_logit_softcapping", "logit_scale")
        )
        eos = self.tokenizer.eos_token_id
        self._empty_context = [eos if eos is not None else 0]

    # --- protocol -------------------------------------------------------------------------

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Summed log-probabilities of each continuation given its context."""
        sequences = self._sequences(pairs)
        out = [0.0] * len(pairs)
        with self._torch.inference_mode():
            self._score_node(sequences, 0, None, out)
        return out

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> list[str]:
        """Greedy continuations, cut before the first stop string (one prompt at a time)."""
        if temperature != 0.0:
            raise ValueError(f"only greedy decoding is supported, got temperature={temperature}")
        texts = []
        with self._torch.inference_mode():
            for prompt in prompts:
                ids = self._encode([prompt])[0] or self._empty_context
                ids = ids[-(self.max_length - max_new_tokens) :]
                tensor = self._torch.tensor([ids], device=self.device)
                output = self.model.generate(
                    tensor, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=0
                )
                self.tokens_processed += int(output.shape[1])
                text = str(self.tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True))
                texts.append(_cut_at_stop(text, stop))
        return texts

    # --- tokenization and grouping ------------------------------------------------------------

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [list(ids) for ids in encoded]

    def _sequences(self, pairs: Sequence[tuple[str, str]]) -> list[_Sequence]:
        """Group requests by model input (context + continuation minus its last token)."""
        contexts = sorted({context for context, _ in pairs})
        context_ids = dict(zip(contexts, self._encode(contexts), strict=True))
        # Encode context+continuation whole and split at the context length, so a merge across
        # the boundary is tokenized as the model would see it (lm-evaluation-harness does this).
        wholes = self._encode([context + continuation for context, continuation in pairs])
        groups: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = {}
        for index, ((context, _), whole) in enumerate(zip(pairs, wholes, strict=True)):
            ctx = context_ids[context] or self._empty_context
            cont = whole[len(context_ids[context]) :] if context_ids[context] else whole
            if not cont:
                raise ValueError(f"empty continuation for request {index}: {pairs[index]!r}")
            tokens = (ctx + cont)[-(self.max_length + 1) :][:-1]
            if len(cont) > len(tokens):
                raise ValueError(f"continuation of request {index} exceeds the context window")
            groups.setdefault(tuple(tokens), []).append((index, tuple(cont)))
        return [_Sequence(tokens, tuple(reqs)) for tokens, reqs in sorted(groups.items())]

    def _runs(self, sequences: list[_Sequence], depth: int) -> list[tuple[list[_Sequence], int]]:
        """Split sorted ``sequences`` (all sharing ``tokens[:depth]``) into runs, each with the
        number of leading tokens every member shares and no member reads a prediction from."""
        runs: list[tuple[list[_Sequence], int]] = []
        for sequence in sequences:
            if runs:
                run, shared = runs[-1]
                common = _common_prefix(run[-1].tokens, sequence.tokens, start=depth)
                joined = min(shared, common, sequence.free_prefix)
                if joined > depth:
                    run.append(sequence)
                    runs[-1] = (run, joined)
                    continue
            runs.append(([sequence], sequence.free_prefix))
        return runs

    # --- forward passes ---------------------------------------------------------------------

    def _score_node(
        self, sequences: list[_Sequence], depth: int, cache: Any, out: list[float]
    ) -> None:
        """Score sequences sharing ``tokens[:depth]``, whose KV states are in ``cache``.

        A run of sequences sharing enough further tokens (a demonstration block, then one doc's
        prompt under its several multi-token answers) gets those tokens run once, batch 1, and
        is scored recursively on the extended cache; the rest are scored in batches here.
        """
        leaves: list[_Sequence] = []
        for run, shared in self._runs(sequences, depth):
            saved = (len(run) - 1) * (shared - depth)  # tokens not recomputed
            if self.prefix_cache and len(run) > 1 and saved >= self.min_prefix_tokens:
                child = self._extend(cache, run[0].tokens[depth:shared], depth)
                self._score_node(run, shared, child, out)
            else:
                leaves.extend(run)
        for batch in self._batches(leaves, depth):
            self._score_batch(batch, depth, cache, out)

    def _extend(self, cache: Any, tokens: tuple[int, ...], start: int) -> Any:
        """A new cache holding ``cache`` followed by the KV states of ``tokens``."""
        torch = self._torch
        kwargs = self._inputs(torch.tensor([tokens], device=self.device), start, cache, rows=1)
        result = self.model.base_model(**kwargs, use_cache=True)
        self.tokens_processed += len(tokens)
        return getattr(result, "cache", None) or result.past_key_values

    def _inputs(self, ids: Any, start: int, cache: Any, *, rows: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"input_ids": ids}
        if cache is not None:
            # The forward pass appends to the cache it is given: each call gets its own copy.
            kwargs[self._cache_kwarg] = _copy_cache(cache, rows)
            width = ids.shape[1]
            positions = self._torch.arange(start, start + width, device=self.device)
            kwargs["position_ids"] = positions.unsqueeze(0).expand(rows, width)
        return kwargs

    def _batches(self, sequences: list[_Sequence], depth: int) -> list[list[_Sequence]]:
        """Sequences sorted by length, cut into batches of at most ``token_budget`` padded
        tokens whose padding stays under ``1 / PADDING_SLACK`` of the batch."""
        ordered = sorted(sequences, key=lambda s: -len(s.tokens))
        batches: list[list[_Sequence]] = []
        for sequence in ordered:
            length = len(sequence.tokens) - depth
            if batches:
                width = len(batches[-1][0].tokens) - depth
                fits = (len(batches[-1]) + 1) * width <= self.token_budget
                if fits and length * PADDING_SLACK >= width * (PADDING_SLACK - 1):
                    batches[-1].append(sequence)
                    continue
            batches.append([sequence])
        return batches

    def _score_batch(
        self, batch: list[_Sequence], depth: int, cache: Any, out: list[float]
    ) -> None:
        torch = self._torch
        width = max(len(s.tokens) for s in batch) - depth
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        for row, sequence in enumerate(batch):
            suffix = sequence.tokens[depth:]
            ids[row, : len(suffix)] = torch.tensor(suffix)
        kwargs = self._inputs(ids.to(self.device), depth, cache, rows=len(batch))
        kwargs["use_cache"] = cache is not None
        self.tokens_processed += sum(len(s.tokens) - depth for s in batch)
        rows, cols, targets, owners = self._targets(batch, depth)
        if self._split_head:
            hidden = self.model.base_model(**kwargs).last_hidden_state
            head = self.model.get_output_embeddings()  # type: ignore[no-untyped-call]
            logits = head(hidden[rows, cols])
        else:
            logits = self.model(**kwargs).logits[rows, cols]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        picked = logprobs[torch.arange(len(targets)), torch.tensor(targets, device=self.device)]
        for owner, value in zip(owners, picked.tolist(), strict=True):
            out[owner] += value

    def _targets(
        self, batch: list[_Sequence], prefix: int
    ) -> tuple[list[int], list[int], list[int], list[int]]:
        """Flat (row, column) positions that predict each continuation token, with owners."""
        rows, cols, targets, owners = [], [], [], []
        for row, sequence in enumerate(batch):
            end = len(sequence.tokens) - prefix  # column after the last input token
            for index, cont in sequence.requests:
                for offset, token in enumerate(cont):
                    rows.append(row)
                    cols.append(end - len(cont) + offset)
                    targets.append(token)
                    owners.append(index)
        return rows, cols, targets, owners


def directory_digest(path: Path) -> str:
    """sha256 over the config, tokenizer and weight files of a model directory."""
    digest = hashlib.sha256()
    files = sorted(
        p for p in path.iterdir() if p.name in DIGEST_FILES or p.suffix in WEIGHT_SUFFIXES
    )
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def _context_window(config: Any) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_len"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def _cache_kwarg(model: Any) -> str:
    import inspect

    parameters = inspect.signature(model.base_model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _copy_cache(cache: Any, rows: int = 1) -> Any:
    """A copy of a batch-1 ``DynamicCache`` broadcast to ``rows`` rows, sharing its tensors.

    The forward pass appends to the cache it is given, so every call gets its own copy.
    DynamicLayer.update rebinds ``torch.cat`` results rather than writing into the old tensors,
    so a shallow copy of the layer objects suffices, and an ``expand`` view (no copy, unlike
    ``batch_repeat_interleave``) broadcasts the prefix: the concatenation copies it once.
    """
    import copy

    clone = copy.copy(cache)
    clone.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in clone.layers:
        assert layer.keys.shape[0] == 1, "prefix caches are built with batch 1"
        if rows > 1:
            layer.keys = layer.keys.expand(rows, -1, -1, -1)
            layer.values = layer.values.expand(rows, -1, -1, -1)
    return clone


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...], start: int = 0) -> int:
    limit = min(len(a), len(b))
    index = start
    while index < limit and a[index] == b[index]:
        index += 1
    return index


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((text.find(s) for s in stop if s and s in text), default=len(text))
    return text[:cut]
