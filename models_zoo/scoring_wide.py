"""Log-likelihood scoring shaped for a GPU: few wide padded passes, one host sync per call.

``models_zoo.scoring.PrefixTreeScorer`` walks a prefix tree of KV caches: on a 2-core CPU
every saved token counts, but on a GPU its many small passes (one per chunk level, each over a
cache stacked for its rows, with per-position Python) leave the card waiting on the host
(bench/RESULTS.md, issue 17: 396 forwards for 16 docs). This scorer keeps only the sharing that
pays on a GPU and runs everything else as a few large batches:

1. Requests with the same model input (``tokens[:-1]``) share a row position, as there
   (``models_zoo.scoring._sequences``).
2. **Group prefix.** Sorted inputs that share a long token prefix (the demonstration block of a
   FewNLU (split, pattern) group) form a group; the prefix runs once, batch 1, and its KV cache
   is broadcast to every row of the group's passes, if it saves ``MIN_GROUP_SAVING`` tokens
   (less does not pay for the group's own passes). No other level of the tree is kept.
3. **Rows.** One row per context of a group: the context's tokens after the prefix (the
   trunk), then each of its inputs' remaining tokens (the branches: the multi-token answers
   of one doc) packed behind it. A 4D mask lets a branch see the prefix, the trunk and its own
   earlier tokens, and its position ids continue the trunk's, so a doc's choices share one
   computation of its context. Without branches or prefix no mask is passed (SDPA's causal
   kernel): right padding needs none, as no real position reads a pad.
4. **Passes.** Rows sorted by length, cut at ``batch_size`` rows, a token budget of tens of
   thousands of padded tokens, a key budget (rows x (prefix + width), which bounds the
   broadcast prefix's copy), and a padding slack.
5. Only the scored positions go through the LM head; targets are gathered and summed per
   request on the device (``index_add_``), and the results come back in one transfer at the
   end of the call.

Scores depend on the shapes of the passes (cuBLAS picks kernels by shape), so they are not
bit-identical across batch sizes or co-requests; the GPU test bounds the spread in bf16
(``tests/models_zoo/test_scoring_wide.py``), and the CPU tests check fp32 equality with the
plain full forward within 1e-5 on random token requests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models_zoo.scoring import (
    Request,
    _common_prefix,
    _copy_cache,
    _Sequence,
    _sequences,
    mlp_only_at,
)

WIDE_TOKEN_BUDGET = 32768  # padded query tokens per pass
# rows x (prefix + width) per pass: the broadcast prefix KV is copied once per row, so this
# bounds that copy (64 KB a token for a 1B Llama with 8 KV heads: 256k tokens are 16 GB).
WIDE_KEY_BUDGET = 131072
MIN_PREFIX_TOKENS = 32  # fewest tokens a group prefix must be long to run apart ...
# ... and fewest it must save: a group costs a prefix pass and passes of its own (k = 0 RTE:
# docs that share a premise made slower calls, bench/RESULTS.md 2026-12-07).
MIN_GROUP_SAVING = 4096
PADDING_SLACK = 4  # a pass's rows keep 1 - 1/PADDING_SLACK of its width ...
MIN_PASS_TOKENS = 4096  # ... once it holds this many tokens (smaller passes take any row)
SUPPORTED_ATTENTION = ("sdpa", "eager")  # implementations that take a custom 4D mask
HEAD_ROWS = 4096  # scored positions per LM-head GEMM (bounds the logits tensor)


@dataclass(frozen=True)
class _Row:
    """One context of a group: its trunk after the group prefix, then its inputs' branches."""

    tokens: tuple[int, ...]  # trunk + branches, packed
    segments: tuple[int, ...]  # 0: trunk, i: branch i
    positions: tuple[int, ...]  # position ids, continuing the prefix
    columns: tuple[int, ...]  # scored columns, in the order of ``targets``
    targets: tuple[int, ...]
    owners: tuple[int, ...]  # request index of each scored column


@dataclass(frozen=True)
class _Pass:
    prefix: int  # group index, or -1 for no prefix
    rows: tuple[_Row, ...]

    @property
    def width(self) -> int:
        return max(len(row.tokens) for row in self.rows)

    @property
    def branched(self) -> bool:
        return any(segment for row in self.rows for segment in row.segments)


class WideScorer:
    """Scores requests on a causal LM in wide padded passes (for CUDA; runs on CPU for tests).

    Args:
        model: A transformers causal LM (``base_model`` + output embeddings) whose forward
            takes ``position_ids`` and a 4D boolean attention mask.
        cache_argument: The forward argument that takes a cache (``past_key_values``/``cache``).
        min_prefix_tokens: Fewest tokens a group prefix must have to run apart.
        min_group_saving: Fewest recomputed tokens a group prefix must save to run apart.
        share_prefix: Run group prefixes once (off: every row recomputes its whole input).
        token_budget: Most padded tokens per pass.
        key_budget: Most rows x (prefix + width) per pass.
        fused_norms: Run transformers' LlamaRMSNorm modules as ``F.rms_norm`` during the call
            (``None``: on CUDA), see :func:`_fused_norms`.
    """

    chunk_tokens = 0  # not chunked (``ServedModel.loglikelihood`` reads it)

    def __init__(
        self,
        model: Any,
        *,
        cache_argument: str,
        min_prefix_tokens: int = MIN_PREFIX_TOKENS,
        min_group_saving: int = MIN_GROUP_SAVING,
        pad_token: int = 0,
        share_prefix: bool = True,
        token_budget: int = WIDE_TOKEN_BUDGET,
        key_budget: int = WIDE_KEY_BUDGET,
        fused_norms: bool | None = None,
    ) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.cache_argument = cache_argument
        self.min_prefix_tokens = min_prefix_tokens
        self.min_group_saving = min_group_saving
        self.pad_token = pad_token
        self.share_prefix = share_prefix
        self.token_budget = token_budget
        self.key_budget = key_budget
        self.fused_norms = self.device.type == "cuda" if fused_norms is None else fused_norms
        self.tokens_processed = 0
        self.passes = 0  # forward passes of the last ``score`` (prefixes included)
        self.greedy: list[bool] = []  # per request of the last ``score``: every token argmax
        implementation = getattr(model.config, "_attn_implementation", None) or "eager"
        if implementation not in SUPPORTED_ATTENTION:
            raise ValueError(
                f"wide scoring needs one of {SUPPORTED_ATTENTION} attention, got {implementation!r}"
            )
        self.additive_mask = implementation == "eager"

    def score(self, requests: Sequence[Request], *, batch_size: int) -> list[float]:
        """Summed continuation log-probabilities, one per request (0.0 for an empty one).

        Args:
            requests: ``(tokens, count)``: input ``tokens[:-1]``, the last ``count`` scored.
            batch_size: Most rows per pass.

        Raises:
            ValueError: If a request has no context token.
        """
        contexts = _contexts(_sequences(requests))
        minimum = self.min_prefix_tokens if self.share_prefix else -1
        groups = _prefix_groups(contexts, minimum, self.min_group_saving)
        prefixes = [group[0][0].tokens[:length] for group, length in groups]
        passes: list[_Pass] = []
        for index, (group, length) in enumerate(groups):
            rows = _rows(group, length)
            limits = (batch_size, self.token_budget, self.key_budget)
            passes += _passes(rows, index if length else -1, length, limits)
        totals = torch.zeros(len(requests), dtype=torch.float64, device=self.device)
        misses = torch.zeros(len(requests), dtype=torch.int32, device=self.device)
        self.passes = 0
        with torch.inference_mode(), _fused_norms(self.model, self.fused_norms):
            tensors = _to_device(passes, self.pad_token, self.device)
            caches = [self._prefix_cache(tokens) if tokens else None for tokens in prefixes]
            for work, arrays in zip(passes, tensors, strict=True):
                cache = caches[work.prefix] if work.prefix >= 0 else None
                length = len(prefixes[work.prefix]) if work.prefix >= 0 else 0
                self._run_pass(work, arrays, cache, length, totals, misses)
            # The only host sync of the call.
            out, missed = totals.tolist(), misses.tolist()
        self.greedy = [count == 0 for count in missed]
        return [float(value) for value in out]

    def _prefix_cache(self, tokens: tuple[int, ...]) -> Any:
        ids = torch.tensor([tokens], device=self.device)
        with mlp_only_at(self.model.base_model, []):  # no state of a prefix is read
            result = self.model.base_model(input_ids=ids, use_cache=True)
        self.tokens_processed += len(tokens)
        self.passes += 1
        return getattr(result, "cache", None) or result.past_key_values

    def _run_pass(
        self,
        work: _Pass,
        arrays: dict[str, torch.Tensor],
        cache: Any,
        prefix: int,
        totals: torch.Tensor,
        misses: torch.Tensor,
    ) -> None:
        """One padded pass over ``work.rows`` (on the broadcast prefix cache, if any); adds each
        scored position's log-probability to its request and counts non-greedy tokens."""
        ids = arrays["ids"]  # (R, W)
        R, W = ids.shape
        kwargs: dict[str, Any] = {"input_ids": ids, "position_ids": arrays["positions"]}
        if cache is not None or work.branched:
            mask = _mask(arrays["segments"], prefix)
            if self.additive_mask:  # eager attention adds its mask to the scores
                dtype = next(self.model.parameters()).dtype
                mask = torch.zeros(mask.shape, dtype=dtype, device=self.device).masked_fill(
                    ~mask, torch.finfo(dtype).min
                )
            kwargs["attention_mask"] = mask
        if cache is not None:
            kwargs[self.cache_argument] = _copy_cache(cache, R)
            kwargs["use_cache"] = True
        else:
            kwargs["use_cache"] = False
        with mlp_only_at(self.model.base_model, arrays["flat"]):
            hidden = self.model.base_model(**kwargs).last_hidden_state  # (R, W, C)
        self.tokens_processed += sum(len(row.tokens) for row in work.rows)
        self.passes += 1
        states = hidden.reshape(R * W, -1)[arrays["flat"]]  # (N, C): scored positions only
        head = self.model.get_output_embeddings()
        targets, owners = arrays["targets"], arrays["owners"]
        for start in range(0, len(targets), HEAD_ROWS):
            part = slice(start, start + HEAD_ROWS)
            logprobs = torch.log_softmax(head(states[part]).float(), dim=-1)  # (n, V)
            wanted = targets[part]
            picked = logprobs.gather(1, wanted[:, None])[:, 0]
            totals.index_add_(0, owners[part], picked.double())
            missed = (logprobs.argmax(dim=-1) != wanted).to(misses.dtype)
            misses.index_add_(0, owners[part], missed)


@contextmanager
def _fused_norms(model: Any, enabled: bool) -> Iterator[None]:
    """Within the block, transformers' LlamaRMSNorm modules run as ``F.rms_norm`` (one fused
    kernel on CUDA instead of about seven elementwise passes over the (tokens, hidden) states
    in fp32; the same function, rounded to bf16 once instead of twice), as the fast decoder's
    do (``models_zoo.fast_decode``). Modules of other types, and ones whose forward is already
    patched, run unchanged."""
    from models_zoo.fast_decode import _rms_norm

    patched = []
    if enabled:
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if not hasattr(module, "variance_epsilon") or not isinstance(weight, torch.Tensor):
                continue
            fused = _rms_norm(module, weight.dtype)
            if fused is not module and "forward" not in vars(module):
                module.forward = fused
                patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _contexts(sequences: list[_Sequence]) -> list[list[_Sequence]]:
    """The inputs grouped by context (``tokens[:context_end]``), sorted by context tokens."""
    by_context: dict[tuple[int, ...], list[_Sequence]] = {}
    for sequence in sequences:
        by_context.setdefault(sequence.tokens[: sequence.context_end], []).append(sequence)
    return [by_context[context] for context in sorted(by_context)]


def _prefix_groups(
    contexts: list[list[_Sequence]], min_prefix_tokens: int, min_saving: int
) -> list[tuple[list[list[_Sequence]], int]]:
    """Consecutive runs of sorted ``contexts`` sharing a prefix worth running once: each run's
    contexts and prefix length (0: no shared prefix; all such contexts form one run).

    A context joins the run while its common prefix with the previous one (capped where any
    input's first scored position lies) is at least ``min_prefix_tokens`` and at least half the
    run's prefix so far, so one context that shares little does not shrink a demonstration
    block. A run whose prefix saves fewer than ``min_saving`` tokens is not worth its passes.
    ``min_prefix_tokens`` < 0 turns sharing off."""
    runs: list[tuple[list[list[_Sequence]], int]] = []
    for members in contexts:
        free = min(sequence.free_prefix for sequence in members)
        if runs and min_prefix_tokens >= 0:
            group, shared = runs[-1]
            previous = group[-1][0].tokens
            common = min(_common_prefix(previous, members[0].tokens), free, shared)
            settled = shared // 2 if len(group) > 1 else 0
            if common >= max(min_prefix_tokens, settled, 1):
                runs[-1] = (group + [members], common)
                continue
        runs.append(([members], free))
    if min_prefix_tokens < 0:
        min_saving = -1
    kept = [run for run in runs if _worth(*run, min_saving)]
    loose = [members for run in runs if not _worth(*run, min_saving) for members in run[0]]
    return kept + ([(loose, 0)] if loose else [])


def _worth(group: list[list[_Sequence]], shared: int, min_saving: int) -> bool:
    return min_saving >= 0 and (len(group) - 1) * shared >= max(min_saving, 1)


def _rows(contexts: list[list[_Sequence]], prefix: int) -> list[_Row]:
    """One row per context: the trunk (tokens after ``prefix`` that every input of the
    context shares) and each input's remaining tokens as a branch behind it."""
    rows = []
    for members in contexts:
        trunk_end = len(members[0].tokens)
        for other in members[1:]:
            trunk_end = min(trunk_end, _common_prefix(members[0].tokens, other.tokens))
        rows.append(_row(members, prefix, trunk_end))
    return rows


def _row(members: list[_Sequence], prefix: int, trunk_end: int) -> _Row:
    tokens = list(members[0].tokens[prefix:trunk_end])
    segments = [0] * len(tokens)
    positions = list(range(prefix, trunk_end))
    columns: list[int] = []
    targets: list[int] = []
    owners: list[int] = []
    for branch, sequence in enumerate(members, start=1):
        start = len(tokens)  # the branch's first column
        rest = sequence.tokens[trunk_end:]
        tokens += rest
        segments += [branch] * len(rest)
        positions += range(trunk_end, trunk_end + len(rest))
        end = len(sequence.tokens)
        for index, cont in sequence.requests:
            first = end - len(cont)  # input position predicting cont[0]
            # Columns: trunk positions map to (position - prefix), branch ones follow the trunk.
            in_trunk = range(first, min(end, trunk_end))
            columns += [p - prefix for p in in_trunk]
            columns += range(start + max(first, trunk_end) - trunk_end, start + end - trunk_end)
            targets += cont
            owners += [index] * len(cont)
    return _Row(
        tuple(tokens),
        tuple(segments),
        tuple(positions),
        tuple(columns),
        tuple(targets),
        tuple(owners),
    )


def _passes(
    rows: list[_Row], prefix_index: int, prefix: int, limits: tuple[int, int, int]
) -> list[_Pass]:
    """Rows sorted by length (longest first), cut into passes of at most ``limits`` = (rows,
    padded tokens, rows x (prefix + width)) whose rows keep 1 - 1/``PADDING_SLACK`` of the
    width once a pass has ``MIN_PASS_TOKENS`` tokens (padding costs as much as real tokens)."""
    batch_size, token_budget, key_budget = limits
    ordered = sorted(rows, key=lambda row: (-len(row.tokens), row.tokens))
    cut: list[list[_Row]] = []
    for row in ordered:
        if cut:
            current = cut[-1]
            width = len(current[0].tokens)
            count = len(current) + 1
            fits = (
                count <= batch_size
                and count * width <= token_budget
                and (not prefix or count * (prefix + width) <= key_budget)
            )
            slack = len(row.tokens) * PADDING_SLACK >= width * (PADDING_SLACK - 1)
            if fits and (slack or len(current) * width < MIN_PASS_TOKENS):
                current.append(row)
                continue
        cut.append([row])
    return [_Pass(prefix_index, tuple(batch)) for batch in cut]


def _to_device(
    passes: list[_Pass], pad_token: int, device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Every pass's index arrays, built on the host and moved in ONE copy before any compute
    (a copy from pageable memory would otherwise wait for the queued passes)."""
    pieces: list[np.ndarray] = []
    shapes: list[list[tuple[str, tuple[int, ...]]]] = []
    for work in passes:
        R, W = len(work.rows), work.width
        ids = np.full((R, W), pad_token, dtype=np.int64)
        segments = np.full((R, W), -1, dtype=np.int64)  # pads: a segment of their own
        positions = np.zeros((R, W), dtype=np.int64)
        flat: list[np.ndarray] = []
        targets: list[int] = []
        owners: list[int] = []
        for r, row in enumerate(work.rows):
            n = len(row.tokens)
            ids[r, :n] = row.tokens
            segments[r, :n] = row.segments
            positions[r, :n] = row.positions
            positions[r, n:] = row.positions[-1] + 1 + np.arange(W - n)
            flat.append(r * W + np.asarray(row.columns, dtype=np.int64))
            targets += row.targets
            owners += row.owners
        arrays = {
            "ids": ids,
            "segments": segments,
            "positions": positions,
            "flat": np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64),
            "targets": np.asarray(targets, dtype=np.int64),
            "owners": np.asarray(owners, dtype=np.int64),
        }
        shapes.append([(name, array.shape) for name, array in arrays.items()])
        pieces += [array.ravel() for array in arrays.values()]
    if not pieces:
        return []
    moved = torch.from_numpy(np.concatenate(pieces)).to(device)
    out, offset = [], 0
    for layout in shapes:
        arrays_on_device = {}
        for name, shape in layout:
            size = int(np.prod(shape))
            arrays_on_device[name] = moved[offset : offset + size].view(shape)
            offset += size
        out.append(arrays_on_device)
    return out


def _mask(segments: torch.Tensor, prefix: int) -> torch.Tensor:
    """The (R, 1, W, prefix + W) boolean mask: every position sees the prefix; within a row,
    position q sees k <= q of the trunk (segment 0) or of its own segment."""
    R, W = segments.shape
    index = torch.arange(W, device=segments.device)
    causal = index[None, :] <= index[:, None]  # (W_q, W_k)
    query, key = segments[:, :, None], segments[:, None, :]  # (R, W, 1), (R, 1, W)
    own = causal[None] & ((key == 0) | (key == query))  # (R, W_q, W_k)
    if prefix:
        seen = torch.ones(R, W, prefix, dtype=torch.bool, device=segments.device)
        own = torch.cat([seen, own], dim=-1)  # (R, W_q, prefix + W_k)
    return own[:, None]  # (R, 1, W_q, prefix + W_k)
