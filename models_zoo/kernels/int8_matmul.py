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


def scale_input(x: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
    """``x * input_scale`` per feature, in float32, rounded once to ``x.dtype`` (as the kernel
    does on its tiles)."""
    return (x.float() * input_scale.float()).to(x.dtype)


if triton is not None:

    @triton.autotune(  # type: ignore[untyped-decorator]
        configs=[
            triton.Config({"BLOCK_N": n}, num_warps=4, num_stages=s)
            for n, s in ((16, 4), (32, 4), (64, 4), (128, 3))
        ],
        key=["N", "K", "BLOCK_M", "HAS_INPUT_SCALE"],
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
        M,
        N,
        K,
        n_blocks,
        stride_xm,
        stride_wn,
        stride_sn,
        stride_rm,
        stride_om,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        QBLOCK: tl.constexpr,
        HAS_RESIDUAL: tl.constexpr,
        HAS_INPUT_SCALE: tl.constexpr,
        IEEE: tl.constexpr,
    ) -> None:
        # One program: BLOCK_M rows of x times BLOCK_N output features, looping over K in steps
        # of one quantisation block (one scale per output feature per step).
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, QBLOCK)
        mask_m = offs_m < M
        mask_n = offs_n < N
        x_ptrs = X + offs_m[:, None] * stride_xm + offs_k[None, :]
        w_ptrs = W + offs_n.to(tl.int64)[:, None] * stride_wn + offs_k[None, :]
        s_ptrs = S + offs_n.to(tl.int64) * stride_sn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for block in range(0, n_blocks):
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
        if HAS_RESIDUAL:
            r = tl.load(R + offs_m[:, None] * stride_rm + offs_n[None, :], mask=out_mask)
            acc += r.to(tl.float32)
        tl.store(
            Out + offs_m[:, None] * stride_om + offs_n[None, :],
            acc.to(Out.dtype.element_ty),
            mask=out_mask,
        )


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

    def grid(meta: dict[str, int]) -> tuple[int, int]:
        return (triton.cdiv(rows, meta["BLOCK_N"]), triton.cdiv(M, block_m))

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
        M,
        rows,
        in_features,
        blocks,
        x.stride(0),
        qweight.stride(0),
        scales.stride(0),
        residual.stride(0) if residual is not None else 0,
        out.stride(0),
        BLOCK_M=block_m,
        QBLOCK=block,
        HAS_RESIDUAL=residual is not None,
        HAS_INPUT_SCALE=input_scale is not None,
        IEEE=x.dtype == torch.float32,
        **config,
    )
    return out
