"""Fused LongNet dilated attention in Triton (forward only).

LongNet (Ding et al., arXiv:2307.02486, section 2.2, Eq. 9-10): for each branch (w, r) the
sequence is cut into segments of length w (the last one may be shorter), each head keeps every
r-th row of a segment starting at offset ``head % r`` (paper section 2.3), dense causal attention
runs inside the compacted segment, and the branches covering a (position, head) are mixed with
weights ``softmax_i(LSE_i)``.

How this kernel differs from the gather-based path (``models_zoo.attention``):
- the dilated rows are read in place: a program's query and key tiles are strided loads of rows
  ``segment_start + offset + j * r`` (each row is ``head_dim`` contiguous values), so nothing is
  gathered into a compact copy and nothing is scattered back;
- one launch per branch computes FlashAttention-style online softmax (Dao et al., 2022) with the
  log-sum-exp, and its epilogue merges the branch into the output in place: it reads the running
  output and LSE of the rows it owns, and writes ``(O_acc*e^(L_acc-L) + O_i*e^(L_i-L))`` with
  ``L = logaddexp(L_acc, L_i)``. Within a branch every (row, head) belongs to exactly one program,
  so there are no races; launches are stream-ordered. The only extra memory is one float32 LSE
  per (batch, head, position), and no extra pass over the output is made;
- the branch with r = 1 (it covers every row) runs first and writes instead of merging.

The running output is kept in the output dtype between branches (bf16 on the GPU): up to one
rounding per branch, well inside bf16 attention's usual error (tests compare at 2e-2).

Triton is imported guarded: on machines without it the module still imports and
:func:`is_available` is false. With ``TRITON_INTERPRET=1`` set before import, CPU tensors run
through Triton's interpreter (used by a CPU test).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from models_zoo.kernels.triton_support import LOG2_E, SUPPORTED_DTYPES, tl, triton


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def is_available(q: torch.Tensor) -> bool:
    """Whether :func:`fused_dilated_attention` can run on ``q`` (B, N, H, D).

    True for CUDA tensors of a supported dtype and a power-of-two head dim in [16, 256] when
    Triton is importable (or for CPU tensors under ``TRITON_INTERPRET=1``).
    """
    if triton is None or q.dim() != 4 or q.dtype not in SUPPORTED_DTYPES:
        return False
    head_dim = q.shape[-1]
    if head_dim < 16 or head_dim > 256 or head_dim & (head_dim - 1):
        return False
    if q.is_cuda:
        return True
    return q.device.type == "cpu" and _interpreting()


if triton is not None:

    @triton.jit  # type: ignore[untyped-decorator]
    def _branch_kernel(  # type: ignore[no-untyped-def]  # Triton kernel arguments are untyped
        Q,
        K,
        V,
        Out,
        LSE,
        stride_qb,
        stride_qn,
        stride_qh,
        stride_kb,
        stride_kn,
        stride_kh,
        stride_vb,
        stride_vn,
        stride_vh,
        stride_ob,
        stride_on,
        stride_oh,
        seq_len,
        heads,
        segment_len,
        rate,
        blocks_per_segment,
        qk_scale,
        HEAD_DIM: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr,
        FIRST: tl.constexpr,
        PRECISION: tl.constexpr,
    ) -> None:
        # One program: BLOCK_M compacted query rows of one segment, for one (batch, head).
        pid = tl.program_id(0)
        bh = tl.program_id(1)
        segment = pid // blocks_per_segment
        # Heavier causal blocks (later rows) first, for a better tail.
        block = blocks_per_segment - 1 - pid % blocks_per_segment
        b = bh // heads
        h = bh % heads
        offset = h % rate  # paper section 2.3: head j uses offset j mod r
        seg_start = segment * segment_len
        seg_len = tl.minimum(segment_len, seq_len - seg_start)
        rows = (seg_len - offset + rate - 1) // rate  # compacted rows of this segment and head
        start_m = block * BLOCK_M
        if start_m >= rows:
            return

        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        mask_m = offs_m < rows
        # int64 positions: at 1M tokens, position * stride reaches 2^31.
        pos_m = (seg_start + offset + offs_m * rate).to(tl.int64)
        b64 = b.to(tl.int64)
        q_base = Q + b64 * stride_qb + h * stride_qh
        k_base = K + b64 * stride_kb + h * stride_kh
        v_base = V + b64 * stride_vb + h * stride_vh
        q = tl.load(
            q_base + pos_m[:, None] * stride_qn + offs_d[None, :], mask=mask_m[:, None], other=0.0
        )

        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

        if CAUSAL:
            # Key blocks strictly before this query block: all visible and in range, no masks.
            for start_n in range(0, start_m, BLOCK_N):
                offs_n = start_n + tl.arange(0, BLOCK_N)
                pos_n = (seg_start + offset + offs_n * rate).to(tl.int64)
                k = tl.load(k_base + pos_n[:, None] * stride_kn + offs_d[None, :])
                v = tl.load(v_base + pos_n[:, None] * stride_vn + offs_d[None, :])
                qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
                m_ij = tl.maximum(m_i, tl.max(qk, 1))
                p = tl.math.exp2(qk - m_ij[:, None])
                alpha = tl.math.exp2(m_i - m_ij)
                l_i = l_i * alpha + tl.sum(p, 1)
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
                m_i = m_ij
            lo = start_m
            hi = tl.minimum(start_m + BLOCK_M, rows)
        else:
            lo = 0
            hi = rows
        # Diagonal blocks (causal) or all blocks (non-causal): masked.
        for start_n in range(lo, hi, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            mask_n = offs_n < rows
            pos_n = (seg_start + offset + offs_n * rate).to(tl.int64)
            k = tl.load(
                k_base + pos_n[:, None] * stride_kn + offs_d[None, :],
                mask=mask_n[:, None],
                other=0.0,
            )
            v = tl.load(
                v_base + pos_n[:, None] * stride_vn + offs_d[None, :],
                mask=mask_n[:, None],
                other=0.0,
            )
            qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
            visible = mask_n[None, :]
            if CAUSAL:
                visible = visible & (offs_n[None, :] <= offs_m[:, None])
            qk = tl.where(visible, qk, float("-inf"))
            m_ij = tl.maximum(m_i, tl.max(qk, 1))
            p = tl.math.exp2(qk - m_ij[:, None])
            alpha = tl.math.exp2(m_i - m_ij)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_ij

        # Epilogue: this branch's output and LSE (base 2), merged into the running result.
        out = acc / l_i[:, None]
        lse = m_i + tl.math.log2(l_i)
        o_ptrs = (
            Out + b64 * stride_ob + h * stride_oh + pos_m[:, None] * stride_on + offs_d[None, :]
        )
        lse_ptrs = LSE + bh.to(tl.int64) * seq_len + pos_m
        if FIRST:
            tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=mask_m[:, None])
            tl.store(lse_ptrs, lse, mask=mask_m)
        else:
            old_lse = tl.load(lse_ptrs, mask=mask_m, other=float("-inf"))
            old = tl.load(o_ptrs, mask=mask_m[:, None], other=0.0).to(tl.float32)
            top = tl.maximum(old_lse, lse)  # finite: this branch's LSE is finite on its rows
            w_old = tl.math.exp2(old_lse - top)
            w_new = tl.math.exp2(lse - top)
            total = w_old + w_new
            merged = (old * w_old[:, None] + out * w_new[:, None]) / total[:, None]
            tl.store(o_ptrs, merged.to(Out.dtype.element_ty), mask=mask_m[:, None])
            tl.store(lse_ptrs, top + tl.math.log2(total), mask=mask_m)


def _default_config(q: torch.Tensor) -> dict[str, int]:
    head_dim = q.shape[-1]
    if not q.is_cuda:
        return {"block_m": 16, "block_n": 16, "num_warps": 4, "num_stages": 1}
    if head_dim <= 64:
        return {"block_m": 128, "block_n": 64, "num_warps": 4, "num_stages": 3}
    return {"block_m": 128, "block_n": 64, "num_warps": 8, "num_stages": 3}


def _check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
) -> None:
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(
            f"q, k, v must all be (batch, seq, heads, head_dim) of one shape, got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if len(segment_lengths) != len(dilation_rates) or not segment_lengths:
        raise ValueError(
            f"segment_lengths {list(segment_lengths)} and dilation_rates {list(dilation_rates)} "
            "must be non-empty and of equal length"
        )
    if any(w <= 0 for w in segment_lengths) or any(r <= 0 for r in dilation_rates):
        raise ValueError(
            f"segment lengths {list(segment_lengths)} and rates {list(dilation_rates)} must be > 0"
        )
    if not is_available(q):
        raise ValueError(
            f"fused dilated attention cannot run on a {q.dtype} {q.device} tensor of head dim "
            f"{q.shape[-1]} (triton {'missing' if triton is None else 'present'})"
        )


def fused_dilated_attention_with_lse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    causal: bool = True,
    config: dict[str, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fused_dilated_attention` that also returns the mixture's log-sum-exp.

    Sequence-parallel attention (``models_zoo.distributed``) merges this with the branches it
    computes from all-gathered keys, so it needs the LSE the kernel keeps anyway.

    Returns:
        ``(out, lse)``: ``(B, N, H, D)`` in q's dtype and the natural-log LSE over all branches,
        ``(B, H, N)`` float32, ``-inf`` on rows no branch covers.
    """
    out, lse2 = _run_branches(
        q, k, v, segment_lengths=segment_lengths, dilation_rates=dilation_rates,
        causal=causal, config=config,
    )  # fmt: skip
    return out, lse2 * math.log(2.0)


def fused_dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    causal: bool = True,
    config: dict[str, int] | None = None,
) -> torch.Tensor:
    """LongNet dilated attention in one Triton launch per branch (module docstring).

    Notation: B batch, N sequence, H heads, D head dim (a power of two in [16, 256]).

    Args:
        q: ``(B, N, H, D)`` queries; k, v alike. The last dim must be contiguous (any other
            strides, e.g. slices of a fused QKV projection, are read in place).
        segment_lengths: w of each branch (capped at N: one segment then covers the sequence).
        dilation_rates: r of each branch. Rows covered by no branch get 0.
        causal: causal masking inside each compacted segment.
        config: optional ``block_m``, ``block_n``, ``num_warps``, ``num_stages`` (benchmarks).

    Returns:
        ``(B, N, H, D)`` output in q's dtype.

    Raises:
        ValueError: on mismatched shapes, a bad schedule, or inputs the kernel cannot take
            (see :func:`is_available`).
    """
    out, _ = _run_branches(
        q, k, v, segment_lengths=segment_lengths, dilation_rates=dilation_rates,
        causal=causal, config=config,
    )  # fmt: skip
    return out


def _run_branches(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    causal: bool,
    config: dict[str, int] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch every branch; returns the output and the base-2 LSE (B, H, N)."""
    _check_inputs(q, k, v, segment_lengths, dilation_rates)
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    B, N, H, D = q.shape
    settings = {**_default_config(q), **(config or {})}
    block_m, block_n = settings["block_m"], settings["block_n"]
    if block_m % block_n:
        raise ValueError(f"block_m {block_m} must be a multiple of block_n {block_n}")
    out = torch.empty_like(q, memory_format=torch.contiguous_format)  # (B, N, H, D)
    lse = torch.empty(B, H, N, dtype=torch.float32, device=q.device)  # base-2 LSE
    # The r = 1 branch covers every (row, head), so it can write instead of merge.
    order = sorted(range(len(dilation_rates)), key=lambda i: dilation_rates[i] != 1)
    first_writes = dilation_rates[order[0]] == 1
    if not first_writes:
        out.zero_()
        lse.fill_(float("-inf"))
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    for step, index in enumerate(order):
        w, r = min(segment_lengths[index], N), dilation_rates[index]
        blocks_per_segment = _cdiv(_cdiv(w, r), block_m)
        grid = (_cdiv(N, w) * blocks_per_segment, B * H)
        _launch(
            grid, q, k, v, out, lse, N, H, w, r, blocks_per_segment, causal,
            first=first_writes and step == 0, precision=precision, settings=settings,
        )  # fmt: skip
    return out, lse


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _launch(
    grid: tuple[int, int],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    seq_len: int,
    heads: int,
    segment_len: int,
    rate: int,
    blocks_per_segment: int,
    causal: bool,
    *,
    first: bool,
    precision: str,
    settings: dict[str, Any],
) -> None:
    _branch_kernel[grid](
        q, k, v, out, lse,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        seq_len, heads, segment_len, rate, blocks_per_segment,
        LOG2_E / math.sqrt(q.shape[-1]),
        HEAD_DIM=q.shape[-1],
        BLOCK_M=settings["block_m"],
        BLOCK_N=settings["block_n"],
        CAUSAL=causal,
        FIRST=first,
        PRECISION=precision,
        num_warps=settings["num_warps"],
        num_stages=settings["num_stages"],
    )  # fmt: skip
