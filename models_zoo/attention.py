"""Dilated attention from LongNet (Ding et al., 2023, arXiv:2307.02486, sections 2.2-2.3).

For each branch (w, r) of the schedule the sequence is cut into segments of length w (the last
one may be shorter), every r-th row of a segment is kept starting at the head's offset, dense
attention runs inside the compacted segment, and the outputs are scattered back. The branches
are mixed per (position, head) with weights softmax_i(LSE_i) over the branches that cover the
position (paper Eq. 9-10), which equals one softmax over the union of the branches' key sets in
which a key seen by c branches counts c times (torchscale issue #108).

Notation: B batch, T query length, N key length, H heads, D head dim, S segments per branch,
M compacted rows per segment (ceil(w / r)).

Deviations from microsoft/torchscale, on purpose (see the shared LongNet notes):
- per-head offset is the paper's ``head % r`` (torchscale gives contiguous head blocks one offset);
- nothing is zero-padded into a softmax: short segments and rows past the end are masked;
- the branch weights are differentiable (torchscale mixes under ``torch.no_grad()``);
- a KV-cache query only gathers the keys its branches can see (at most sum(w_i / r_i) of them).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)

Schedule = tuple[tuple[int, ...], tuple[int, ...]]


def validate_schedule(segment_lengths: Sequence[int], dilation_rates: Sequence[int]) -> Schedule:
    """Check a dilated-attention schedule and return it as two tuples of ints.

    Args:
        segment_lengths: Segment length w of each branch.
        dilation_rates: Dilation rate r of each branch.

    Returns:
        ``(segment_lengths, dilation_rates)`` as tuples.

    Raises:
        ValueError: On unequal lengths, an empty schedule, non-positive or non-integer values, or
            no branch with r = 1 (some positions would then have no branch covering them).
    """
    segments, rates = tuple(segment_lengths), tuple(dilation_rates)
    if len(segments) != len(rates):
        raise ValueError(
            f"segment_lengths {list(segments)} and dilation_rates {list(rates)} must have the "
            f"same length, got {len(segments)} and {len(rates)}"
        )
    if not segments:
        raise ValueError("the dilated attention schedule needs at least one (w, r) branch")
    for name, values in (("segment_lengths", segments), ("dilation_rates", rates)):
        bad = [value for value in values if isinstance(value, bool) or not isinstance(value, int)]
        if bad or any(value <= 0 for value in values):
            raise ValueError(f"{name} must be positive integers, got {list(values)}")
    if 1 not in rates:
        raise ValueError(
            f"dilation_rates {list(rates)} need at least one branch with r = 1 so that every "
            "position is covered by some branch"
        )
    return segments, rates


def dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    causal: bool = True,
) -> torch.Tensor:
    """LongNet dilated attention (fast path).

    Queries may be shorter than keys (KV-cache decoding): the T queries are then the last T
    positions of the N keys.

    Args:
        q: Queries, shape (B, T, H, D).
        k: Keys, shape (B, N, H, D) with N >= T.
        v: Values, shape (B, N, H, D).
        segment_lengths: Segment length w of each branch.
        dilation_rates: Dilation rate r of each branch.
        causal: Mask keys after the query position.

    Returns:
        Attention output, shape (B, T, H, D).

    Raises:
        ValueError: On a bad schedule or mismatched shapes.
    """
    segments, rates = validate_schedule(segment_lengths, dilation_rates)
    _check_shapes(q, k, v)
    if q.is_cuda and q.shape[1] == k.shape[1]:
        fused = _fused_kernel(q)
        if fused is not None:
            return fused(q, k, v, segment_lengths=segments, dilation_rates=rates, causal=causal)
    if q.shape[1] == k.shape[1]:
        partials = [_branch_blocks(q, k, v, w, r, causal) for w, r in zip(segments, rates)]
    else:
        partials = [_branch_decode(q, k, v, w, r, causal) for w, r in zip(segments, rates)]
    return _combine_branches(partials).to(q.dtype)


def dilated_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    causal: bool = True,
) -> torch.Tensor:
    """Plain explicit-mask dilated attention, O(N^2) memory; the tests' ground truth.

    Same arguments, shapes and return value as :func:`dilated_attention`.
    """
    segments, rates = validate_schedule(segment_lengths, dilation_rates)
    _check_shapes(q, k, v)
    T, N, H = q.shape[1], k.shape[1], q.shape[2]
    device = q.device
    query_pos = torch.arange(N - T, N, device=device)[None, :, None]  # (1, T, 1)
    key_pos = torch.arange(N, device=device)[None, None, :]  # (1, 1, N)
    head_offset = torch.arange(H, device=device)[:, None, None]  # (H, 1, 1)
    scores = torch.einsum("bthd,bnhd->bhtn", q.float(), k.float()) / math.sqrt(q.shape[-1])
    partials = []
    for w, r in zip(segments, rates):
        query_selected = (query_pos % w) % r == head_offset % r  # (H, T, 1)
        key_selected = (key_pos % w) % r == head_offset % r  # (H, 1, N)
        allowed = query_selected & key_selected & (query_pos // w == key_pos // w)  # (H, T, N)
        if causal:
            allowed = allowed & (key_pos <= query_pos)
        masked = scores.masked_fill(~allowed, float("-inf"))  # (B, H, T, N)
        lse = torch.logsumexp(masked, dim=-1)  # (B, H, T); -inf where the row is not selected
        probs = torch.exp(masked - lse[..., None]).nan_to_num(0.0)
        out = torch.einsum("bhtn,bnhd->bhtd", probs, v.float())
        partials.append((out, lse))
    return _combine_branches(partials).to(q.dtype)


def _check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4:
        raise ValueError(
            f"q, k, v must be (batch, seq, heads, head_dim) with k and v alike, got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:] or q.shape[1] > k.shape[1]:
        raise ValueError(
            f"q {tuple(q.shape)} must match k {tuple(k.shape)} in batch, heads and head_dim "
            "and be no longer than k"
        )


def _fused_kernel(q: torch.Tensor) -> Callable[..., torch.Tensor] | None:
    """The GPU engineer's fused kernel (models_zoo.kernels.dilated) when it can take ``q``."""
    try:
        from models_zoo.kernels.dilated import fused_dilated_attention, is_available
    except ImportError:
        return None
    return fused_dilated_attention if is_available(q) else None


def _combine_branches(partials: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Mix branch outputs (B, H, T, D) by softmax over their LSEs (B, H, T); returns (B, T, H, D).

    Every row has a finite LSE in the r = 1 branch, so the softmax never sees a row of -inf.
    """
    lse = torch.stack([branch_lse for _, branch_lse in partials])  # (branches, B, H, T)
    weights = torch.softmax(lse, dim=0)
    out = sum(weight[..., None] * branch_out for weight, (branch_out, _) in zip(weights, partials))
    assert isinstance(out, torch.Tensor)
    return out.transpose(1, 2)  # (B, H, T, D) -> (B, T, H, D)


def _branch_positions(
    length: int, w: int, r: int, heads: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the compacted rows of every segment, and which of them exist.

    Returns ``positions`` (H, S, M), clamped into range, and ``valid`` (H, S, M). Rows are
    increasing inside a segment, so the missing rows (past the segment or the sequence end)
    are always a suffix of the segment.
    """
    segments, rows = -(-length // w), -(-w // r)
    offset = (torch.arange(heads, device=device) % r)[:, None, None]  # paper: head j -> j mod r
    row = torch.arange(rows, device=device)[None, None, :] * r
    start = torch.arange(segments, device=device)[None, :, None] * w
    positions = start + offset + row  # (H, S, M)
    valid = (offset + row < w) & (positions < length)
    return positions.clamp(max=length - 1), valid


def _branch_blocks(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: int, r: int, causal: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One branch over a full sequence: gather blocks, attend densely, scatter back.

    Returns the branch output (B, H, N, D) in fp32 and its LSE (B, H, N), -inf on unselected rows.
    """
    B, N, H, D = q.shape
    w = min(w, N)  # one segment covers everything; capping only avoids empty rows
    positions, valid = _branch_positions(N, w, r, H, q.device)
    S, M = positions.shape[1:]
    index = positions.reshape(1, H, S * M, 1).expand(B, H, S * M, D)

    def gather(x: torch.Tensor) -> torch.Tensor:
        # (B, N, H, D) -> (B, H, N, D) -> (B, H, S*M, D) -> (B, H*S, M, D)
        return x.transpose(1, 2).gather(2, index).reshape(B, H * S, M, D)

    qb, kb, vb = gather(q), gather(k), gather(v)
    key_valid = valid.reshape(1, H * S, 1, M)
    # With causal masking a valid row only sees earlier rows, which are all valid.
    needs_key_mask = not causal and not bool(valid.all())
    out, lse = _block_attention(qb, kb, vb, causal, key_valid if needs_key_mask else None)
    out = out.reshape(B, H, S * M, D).float()
    lse = lse.reshape(B, H, S * M).float().masked_fill(~valid.reshape(1, H, S * M), float("-inf"))
    # Missing rows go to a spare row N that is dropped afterwards.
    target = torch.where(valid, positions, N).reshape(1, H, S * M)
    dense_out = q.new_zeros(B, H, N + 1, D, dtype=torch.float32).scatter(
        2, target[..., None].expand(B, H, S * M, D), out
    )
    dense_lse = q.new_full((B, H, N + 1), float("-inf"), dtype=torch.float32).scatter(
        2, target.expand(B, H, S * M), lse
    )
    return dense_out[:, :, :N], dense_lse[:, :, :N]


def _block_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    key_valid: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense attention within blocks (..., M, D), returning output and natural-log LSE (..., M).

    Uses PyTorch's fused kernels that also return the LSE when no gradient is needed (their
    LSE output is not differentiable, and the branch weights must be); else explicit math.
    """
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if not needs_grad and key_valid is None:
        fused = _fused_block_attention(q, k, v, causal)
        if fused is not None:
            return fused
    return _explicit_block_attention(q, k, v, causal, key_valid)


def _explicit_block_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    key_valid: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    M = q.shape[-2]
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])  # (..., M, M)
    allowed = torch.ones(M, M, dtype=torch.bool, device=q.device)
    if causal:
        allowed = torch.tril(allowed)
    if key_valid is not None:
        allowed = allowed & key_valid
    # A finite fill keeps rows with no valid key (discarded later) free of NaNs.
    scores = scores.masked_fill(~allowed, torch.finfo(torch.float32).min)
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.exp(scores - lse[..., None]) @ v.float()
    return out, lse


_FUSED_FAILED: set[str] = set()


def _fused_block_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """PyTorch's private fused attention ops that return the LSE (feature-detected)."""
    aten = torch.ops.aten
    kind = q.device.type
    if kind in _FUSED_FAILED:
        return None
    try:
        if kind == "cpu" and hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
            out, lse = aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal)
            return out, lse
        if kind == "cuda" and hasattr(aten, "_scaled_dot_product_efficient_attention"):
            result = aten._scaled_dot_product_efficient_attention(
                q.contiguous(), k.contiguous(), v.contiguous(), None, True, 0.0, causal
            )
            return result[0], result[1][..., : q.shape[-2]]  # LSE may be padded along M
    except RuntimeError:
        _FUSED_FAILED.add(kind)
        logger.warning("fused attention with LSE failed on %s; using explicit math", kind)
    return None


def _branch_decode(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: int, r: int, causal: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One branch for T queries at the end of N keys; gathers only the keys each query sees.

    Returns the branch output (B, H, T, D) in fp32 and its LSE (B, H, T).
    """
    B, T, H, D = q.shape
    N = k.shape[1]
    w = min(w, N)
    M = -(-w // r)
    device = q.device
    query_pos = torch.arange(N - T, N, device=device)[None, :, None]  # (1, T, 1)
    offset = (torch.arange(H, device=device) % r)[:, None, None]  # (H, 1, 1)
    row = torch.arange(M, device=device)[None, None, :] * r  # (1, 1, M)
    segment_start = (query_pos // w) * w
    key_pos = segment_start + offset + row  # (H, T, M)
    key_valid = (offset + row < w) & (key_pos < N)
    if causal:
        key_valid = key_valid & (key_pos <= query_pos)
    selected = ((query_pos - segment_start) % r == offset)[..., 0]  # (H, T)
    index = key_pos.clamp(max=N - 1).reshape(1, H, T * M, 1).expand(B, H, T * M, D)
    # (B, N, H, D) -> (B, H, N, D) -> (B, H, T*M, D) -> (B, H, T, M, D)
    kg = k.transpose(1, 2).gather(2, index).reshape(B, H, T, M, D).float()
    vg = v.transpose(1, 2).gather(2, index).reshape(B, H, T, M, D).float()
    qh = q.transpose(1, 2).float()  # (B, T, H, D) -> (B, H, T, D)
    scores = torch.einsum("bhtd,bhtmd->bhtm", qh, kg) / math.sqrt(D)
    scores = scores.masked_fill(~key_valid, torch.finfo(torch.float32).min)
    lse = torch.logsumexp(scores, dim=-1)  # (B, H, T)
    out = torch.einsum("bhtm,bhtmd->bhtd", torch.exp(scores - lse[..., None]), vg)
    return out, lse.masked_fill(~selected, float("-inf"))


class DilatedMultiheadAttention(nn.Module):
    """Drop-in replacement for ``nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)``.

    Self- or cross-attention with LongNet dilated attention in place of dense softmax attention;
    ``forward`` returns ``(output, None)`` because per-pair weights are never materialised.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        segment_lengths: Sequence[int],
        dilation_rates: Sequence[int],
        causal: bool = True,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be a positive multiple of num_heads ({num_heads})"
            )
        self.segment_lengths, self.dilation_rates = validate_schedule(
            segment_lengths, dilation_rates
        )
        self.embed_dim, self.num_heads, self.causal = embed_dim, num_heads, causal
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, None]:
        """Attend; shapes are (B, T, C) for ``query`` and (B, N, C) for ``key``/``value``.

        Raises:
            ValueError: If ``need_weights`` is true (dilated attention has no weight matrix).
        """
        if need_weights:
            raise ValueError("DilatedMultiheadAttention cannot return attention weights")
        key = query if key is None else key
        value = key if value is None else value
        B, T, C = query.shape
        H, D = self.num_heads, C // self.num_heads
        q = self.q_proj(query).view(B, T, H, D)  # (B, T, C) -> (B, T, H, D)
        k = self.k_proj(key).view(B, key.shape[1], H, D)  # (B, N, C) -> (B, N, H, D)
        v = self.v_proj(value).view(B, value.shape[1], H, D)
        out = dilated_attention(
            q,
            k,
            v,
            segment_lengths=self.segment_lengths,
            dilation_rates=self.dilation_rates,
            causal=self.causal,
        )
        return self.out_proj(out.reshape(B, T, C)), None  # (B, T, H, D) -> (B, T, C)
