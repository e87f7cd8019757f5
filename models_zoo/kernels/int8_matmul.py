"""Weight-only int8 matrix product with block-wise scales, dequantised inside the kernel (Triton).

``y = x @ dequant(W).T (+ residual)`` for the block-wise int8 weights of
:mod:`models_zoo.quantization` (codes ``(N, K_padded)`` int8, one float32 absmax scale per row and
block of ``block`` input features). Decoding at small batch reads every weight once per token, so
the step is bound by weight bytes: int8 codes halve them against bf16, but only if nothing
dequantised is ever written back to memory. Here each program loads a ``(BLOCK_N, block)`` tile of
codes and the matching scale column, dequantises it in registers exactly as
:func:`models_zoo.quantization.dequantize_blockwise` does (``code.to(dtype) * scale.to(dtype)``,
so the dequantised values are bit-equal to the reference), and feeds the tensor cores; the
accumulator is float32. The residual add of the decoder (``x + o_proj(h)``) is fused into the
epilogue and may be done in place (every output element belongs to one program). An optional
per-feature input scale ``w`` multiplies the activations as they are loaded
(``(x * w) @ dequant(W).T``): the decoder folds an RMSNorm's weight into the product that way
(block-wise scales cannot absorb a per-column factor), and the row's RMS scale is applied by the
kernel that reads the product.

Split-K (as in CUTLASS's "split-K serial" GEMM and the stream-K paper's fix-up, Osama et al.,
PPoPP 2023): a narrow product (1B ``o`` 2048 x 2048, ``down`` 2048 x 8192) has too few output
tiles to keep every SM streaming codes, so the K loop is cut into ``SPLIT_K`` ranges, one program
each. A program stores its float32 partial tile in a scratch buffer and bumps the tile's counter;
the program that arrives last sums the partials **in split order** (so the result does not depend
on which program finished first: run to run and graph replay to replay the bits are the same),
runs the epilogue and resets the counter to zero for the next launch. No extra kernel is
launched, which matters inside a CUDA-graph decode step of ~200 kernels. ``SPLIT_K`` is a
function of the shape alone (:func:`default_split_k`), never autotuned, so the summation order,
and with it every output bit, is the same on every card; the autotuner picks only tile sizes.
The scratch is per device and assumes one stream at a time launches these kernels (the decoder's
case).

Used for ``M <= MAX_FUSED_ROWS`` rows (decode steps); larger products (prefill) dequantise the
weight once and call cuBLAS, where the arithmetic, not the weight bytes, is the bound.

Triton is imported guarded: without it the module imports and :func:`is_available` is false.
With ``TRITON_INTERPRET=1`` set before import, CPU tensors run through Triton's interpreter.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from models_zoo.kernels.triton_support import SUPPORTED_DTYPES, tl, triton
from models_zoo.quantization import dequantize_blockwise

MAX_FUSED_ROWS = 64  # above this the product is compute-bound: dequantise once + cuBLAS
SPLIT_TARGET = 32768  # split until out_features x SPLIT_K reaches this ...
MIN_SPLIT_BLOCKS = 4  # ... keeping at least this many quantisation blocks per split
MAX_SPLIT_K = 16
# The autotuner's (BLOCK_N, num_stages) candidates; the smallest BLOCK_N sizes the counters.
TILE_CONFIGS = ((16, 4), (32, 4), (64, 4), (128, 3))


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def is_available(x: torch.Tensor) -> bool:
    """Whether :func:`int8_linear` can use the fused kernel for activations ``x``."""
    if triton is None or x.dtype not in SUPPORTED_DTYPES:
        return False
    return x.is_cuda or (x.device.type == "cpu" and _interpreting())


def int8_linear_reference(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    in_features: int,
    residual: torch.Tensor | None = None,
    input_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plain dequantise + matmul: ``residual + x @ dequant(W).T``; the kernel's ground truth.

    Args:
        x: ``(M, K)`` activations, ``K = in_features``.
        qweight: ``(N, K_padded)`` int8 codes; scales: ``(N, K_padded / block)`` float32.
        residual: optional ``(M, N)`` added to the product.
        input_scale: optional ``(K,)``: ``x`` is first ``scale_input(x, input_scale)``.
    """
    if input_scale is not None:
        x = scale_input(x, input_scale)
    out = F.linear(x, dequantize_blockwise(qweight, scales, in_features, x.dtype))
    return out if residual is None else residual + out


def default_split_k(out_features: int, n_blocks: int) -> int:
    """How many K ranges a product of ``out_features`` outputs over ``n_blocks`` quantisation
    blocks is cut into: the power of two that brings ``out_features * SPLIT_K`` to
    ``SPLIT_TARGET`` (enough programs for every SM of an H100 at any tile width the autotuner
    picks), with at least ``MIN_SPLIT_BLOCKS`` blocks per range. Wide products (gate/up, the LM
    head) get 1."""
    split = 1
    while (
        split < MAX_SPLIT_K
        and out_features * split < SPLIT_TARGET
        and n_blocks >= 2 * split * MIN_SPLIT_BLOCKS
    ):
        split *= 2
    return split


def scale_input(x: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
    """``x * input_scale`` per feature, in float32, rounded once to ``x.dtype`` (as the kernel
    does on its tiles)."""
    return (x.float() * input_scale.float()).to(x.dtype)


if triton is not None:

    @triton.autotune(  # type: ignore[untyped-decorator]
        configs=[triton.Config({"BLOCK_N": n}, num_warps=4, num_stages=s) for n, s in TILE_CONFIGS],
        key=["N", "K", "BLOCK_M", "SPLIT_K", "HAS_INPUT_SCALE"],
        restore_value=["Out"],  # the epilogue may add the residual in place
    )
    @triton.jit  # type: ignore[untyped-decorator]
    def _int8_matmul_kernel(  # type: ignore[no-untyped-def]  # Triton kernel arguments are untyped
        X,
        W,
        S,
        XS,
        R,
        Out,
        P,
        C,
        M,
        N,
        K,
        n_blocks,
        blocks_per_split,
        stride_xm,
        stride_wn,
        stride_sn,
        stride_rm,
        stride_om,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        QBLOCK: tl.constexpr,
        SPLIT_K: tl.constexpr,
        HAS_RESIDUAL: tl.constexpr,
        HAS_INPUT_SCALE: tl.constexpr,
        IEEE: tl.constexpr,
    ) -> None:
        # One program: BLOCK_M rows of x times BLOCK_N output features, looping over its K range
        # (all of K without split-K) in steps of one quantisation block (one scale per output
        # feature per step).
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        pid_k = tl.program_id(2)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, QBLOCK)
        mask_m = offs_m < M
        mask_n = offs_n < N
        first = pid_k * blocks_per_split
        last = tl.minimum(first + blocks_per_split, n_blocks)
        x_ptrs = X + offs_m[:, None] * stride_xm + (first * QBLOCK + offs_k)[None, :]
        w_ptrs = W + offs_n.to(tl.int64)[:, None] * stride_wn + (first * QBLOCK + offs_k)[None, :]
        s_ptrs = S + offs_n.to(tl.int64) * stride_sn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for block in range(first, last):
            k = block * QBLOCK + offs_k
            x = tl.load(x_ptrs, mask=mask_m[:, None] & (k[None, :] < K), other=0.0)
            if HAS_INPUT_SCALE:  # = scale_input: float32 product, rounded once
                xs = tl.load(XS + k, mask=k < K, other=0.0).to(tl.float32)
                x = (x.to(tl.float32) * xs[None, :]).to(X.dtype.element_ty)
            # Codes exist up to K_padded (zero past K): no K mask on the weight tile.
            codes = tl.load(w_ptrs, mask=mask_n[:, None], other=0)
            scale = tl.load(s_ptrs + block, mask=mask_n, other=0.0).to(x.dtype)
            weight = codes.to(x.dtype) * scale[:, None]  # = dequantize_blockwise, bit for bit
            if IEEE:
                acc += tl.dot(x, tl.trans(weight), input_precision="ieee")
            else:
                acc += tl.dot(x, tl.trans(weight))
            x_ptrs += QBLOCK
            w_ptrs += QBLOCK
        out_mask = mask_m[:, None] & mask_n[None, :]
        if SPLIT_K == 1:
            _epilogue(acc, R, Out, offs_m, offs_n, out_mask, stride_rm, stride_om, HAS_RESIDUAL)
        else:
            # Serial split-K fix-up: publish the partial, count arrivals; the last program sums
            # all partials in split order (deterministic) and resets the counter.
            tile = offs_m[:, None] * N + offs_n[None, :]
            tl.store(P + pid_k * M * N + tile, acc, mask=out_mask)
            tl.debug_barrier()  # every thread's partial is written before the release below
            counter = C + pid_m * tl.num_programs(0) + pid_n
            arrived = tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu")
            if arrived == SPLIT_K - 1:
                total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
                for split in tl.static_range(SPLIT_K):
                    total += tl.load(
                        P + split * M * N + tile, mask=out_mask, other=0.0, cache_modifier=".cg"
                    )
                _epilogue(
                    total, R, Out, offs_m, offs_n, out_mask, stride_rm, stride_om, HAS_RESIDUAL
                )
                tl.atomic_xchg(counter, 0)

    @triton.jit  # type: ignore[untyped-decorator]
    def _epilogue(  # type: ignore[no-untyped-def]  # Triton kernel arguments are untyped
        acc,
        R,
        Out,
        offs_m,
        offs_n,
        out_mask,
        stride_rm,
        stride_om,
        HAS_RESIDUAL: tl.constexpr,
    ) -> None:
        if HAS_RESIDUAL:
            r = tl.load(R + offs_m[:, None] * stride_rm + offs_n[None, :], mask=out_mask)
            acc += r.to(tl.float32)
        tl.store(
            Out + offs_m[:, None] * stride_om + offs_n[None, :],
            acc.to(Out.dtype.element_ty),
            mask=out_mask,
        )


_SCRATCH: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _scratch(
    device: torch.device, partials: int, counters: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The device's float32 partial buffer and int32 arrival counters (zero between launches),
    grown on demand; ``None`` when they would have to grow inside a CUDA-graph capture (the
    counters must already be zero, so they are allocated eagerly, outside any graph)."""
    have = _SCRATCH.get(device)
    if have is not None and have[0].numel() >= partials and have[1].numel() >= counters:
        return have
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return None
    if have is not None:  # grow to cover both the old and the new request
        partials, counters = max(partials, have[0].numel()), max(counters, have[1].numel())
    fresh = (
        torch.empty(partials, dtype=torch.float32, device=device),
        torch.zeros(counters, dtype=torch.int32, device=device),
    )
    _SCRATCH[device] = fresh
    return fresh


def _block_m(rows: int) -> int:
    return max(16, 1 << (rows - 1).bit_length())


@torch.compiler.disable  # type: ignore[untyped-decorator]  # an autotuned kernel: run it eagerly
def int8_linear(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    in_features: int,
    residual: torch.Tensor | None = None,
    *,
    out: torch.Tensor | None = None,
    input_scale: torch.Tensor | None = None,
    split_k: int | None = None,
) -> torch.Tensor:
    """``residual + scale_input(x, input_scale) @ dequant(W).T`` through the fused kernel when it
    applies.

    Args:
        x: ``(M, K)`` activations (contiguous rows), ``K = in_features``.
        qweight: ``(N, K_padded)`` int8 codes; scales: ``(N, K_padded / block)``, float32 or
            ``x.dtype`` (cast to ``x.dtype`` in the kernel, as the reference does).
        residual: optional ``(M, N)`` added in the epilogue.
        out: optional ``(M, N)`` output buffer; may be ``residual`` itself (in-place add).
        input_scale: optional ``(K,)`` per-feature factor of ``x`` (contiguous).
        split_k: K ranges per output tile; default :func:`default_split_k` of the shape (the
            benchmark sweeps it). 1 when the scratch cannot grow (inside a graph capture).

    Returns:
        ``(M, N)`` in ``x.dtype`` (``out`` when given).
    """
    rows, blocks = scales.shape
    block = qweight.shape[1] // blocks
    M = x.shape[0]
    fused = (
        is_available(x)
        and M <= MAX_FUSED_ROWS
        and x.dim() == 2
        and x.stride(1) == 1
        and qweight.is_contiguous()
        and block >= 16
        and block & (block - 1) == 0
        and (input_scale is None or input_scale.is_contiguous())
    )
    if not fused:
        result = int8_linear_reference(x, qweight, scales, in_features, residual, input_scale)
        if out is None:
            return result
        return out.copy_(result)
    if out is None:
        out = torch.empty(M, rows, dtype=x.dtype, device=x.device)
    if residual is not None:
        assert residual.shape == out.shape and residual.stride(1) == 1
    block_m = _block_m(M)
    m_tiles = triton.cdiv(M, block_m)
    min_block_n = min(n for n, _ in TILE_CONFIGS)  # the most output tiles any config launches
    split = default_split_k(rows, blocks) if split_k is None else split_k
    split = max(1, min(split, blocks))
    scratch = (
        _scratch(x.device, split * M * rows, m_tiles * triton.cdiv(rows, min_block_n))
        if split > 1
        else None
    )
    if scratch is None:
        split = 1
    partials, counters = scratch if scratch is not None else (scales, scales)

    def grid(meta: dict[str, int]) -> tuple[int, int, int]:
        return (triton.cdiv(rows, meta["BLOCK_N"]), m_tiles, split)

    # The interpreter (CPU tests) runs one fixed config instead of timing the candidates.
    kernel = _int8_matmul_kernel.fn if _interpreting() else _int8_matmul_kernel
    config = {"BLOCK_N": 32} if _interpreting() else {}
    kernel[grid](
        x,
        qweight,
        scales,
        input_scale if input_scale is not None else scales,
        residual if residual is not None else out,
        out,
        partials,
        counters,
        M,
        rows,
        in_features,
        blocks,
        triton.cdiv(blocks, split),
        x.stride(0),
        qweight.stride(0),
        scales.stride(0),
        residual.stride(0) if residual is not None else 0,
        out.stride(0),
        BLOCK_M=block_m,
        QBLOCK=block,
        SPLIT_K=split,
        HAS_RESIDUAL=residual is not None,
        HAS_INPUT_SCALE=input_scale is not None,
        IEEE=x.dtype == torch.float32,
        **config,
    )
    return out
