"""Batch-1 float32 matrix-vector product on CPU (AVX-512), for decode steps that read every weight.

A decode step of a small model at batch 1 reads each weight once, so it is bound by memory
bandwidth. On the 2-core AMD EPYC dev VM MKL's sgemv reads the weights at ~15 GB/s (32-35 ms for
SmolLM2-135M's 540 MB per token, one thread) while a plain streaming pass reaches ~23-26 GB/s
(bench/RESULTS.md, issue 15). This kernel gets there by reading a layout made for it: the
``(in, out)`` weight is cut into panels of 64 output columns, each stored ``(K, 64)``
contiguously (the "packed panel" layout BLAS libraries use inside their GEMMs; Goto and van de
Geijn, "Anatomy of high-performance matrix multiplication", ACM TOMS 2008), so a panel is one
sequential stream. Every output is summed over ``k`` in order with one fused multiply-add per
term (the result is the same as a sequential fp32 dot product with FMA; tested against the
plain path).

The C source below is compiled once per machine with the system C compiler (``cc``) by
:mod:`evalcore.native` into ``$LADDER_KERNEL_CACHE`` and loaded with :mod:`ctypes` (no torch
headers, well under a second to build). Without a compiler, without AVX-512F, or with
``LADDER_CPU_GEMV=0`` or ``LADDER_NATIVE=0``, :func:`is_available` is false and callers use
``torch.mm``.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

import torch

from evalcore import native

logger = logging.getLogger(__name__)

PANEL = 64  # output columns per panel: four 16-float AVX-512 registers

SOURCE = r"""
#include <immintrin.h>

/* y[m, n] (+)= sum_k x[m, k] * w[n / 64][k][n % 64], k in order, one FMA per term.
   x: (M, K) with row stride ldx; y: (M, N) with row stride ldy; w: ceil(N / 64) panels of
   (K, 64) floats, zero-padded past N, 64-byte aligned. */
__attribute__((target("avx512f")))
void ladder_gemv_panels(const float *x, long ldx, const float *w, float *y, long ldy,
                        long M, long K, long N, int accumulate) {
    long panels = (N + 63) / 64;
    for (long p = 0; p < panels; p++) {
        const float *panel = w + p * K * 64;
        long width = N - p * 64 < 64 ? N - p * 64 : 64;
        __mmask16 mask[4];
        for (int v = 0; v < 4; v++) {
            long lanes = width - 16 * v;
            lanes = lanes < 0 ? 0 : (lanes > 16 ? 16 : lanes);
            mask[v] = (__mmask16)((1u << lanes) - 1u);
        }
        for (long m = 0; m < M; m++) {
            const float *xm = x + m * ldx;
            float *out = y + m * ldy + p * 64;
            __m512 a[4];
            for (int v = 0; v < 4; v++)
                a[v] = accumulate ? _mm512_maskz_loadu_ps(mask[v], out + 16 * v)
                                  : _mm512_setzero_ps();
            for (long k = 0; k < K; k++) {
                __m512 xk = _mm512_set1_ps(xm[k]);
                const float *r = panel + k * 64;
                a[0] = _mm512_fmadd_ps(xk, _mm512_load_ps(r), a[0]);
                a[1] = _mm512_fmadd_ps(xk, _mm512_load_ps(r + 16), a[1]);
                a[2] = _mm512_fmadd_ps(xk, _mm512_load_ps(r + 32), a[2]);
                a[3] = _mm512_fmadd_ps(xk, _mm512_load_ps(r + 48), a[3]);
            }
            for (int v = 0; v < 4; v++) _mm512_mask_storeu_ps(out + 16 * v, mask[v], a[v]);
        }
    }
}
"""
FLAGS = ("-O2", "-shared", "-fPIC")

_LIBRARY: ctypes.CDLL | None = None
_TRIED = False


def _has_avx512f() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512f" in flags


def _library() -> ctypes.CDLL | None:
    global _LIBRARY, _TRIED
    if _TRIED:
        return _LIBRARY
    _TRIED = True
    if os.environ.get("LADDER_CPU_GEMV", "1") == "0" or not _has_avx512f():
        return None
    library = native.load("ladder_gemv", SOURCE, FLAGS)  # None: no compiler or a failed build
    if library is None:
        return None
    function = library.ladder_gemv_panels
    function.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    function.argtypes += [ctypes.c_long] * 4 + [ctypes.c_int]
    function.restype = None
    _LIBRARY = library
    return library


def is_available() -> bool:
    """Whether the kernel is built and usable on this machine (compiles it on first call)."""
    return _library() is not None


def pack(weight: torch.Tensor) -> torch.Tensor:
    """``(out, in)`` float32 weight as ``(ceil(out / 64), in, 64)`` panels, zero-padded."""
    if weight.dtype != torch.float32 or weight.dim() != 2:
        raise ValueError(f"pack needs a 2-D float32 weight, got {weight.dtype} {weight.shape}")
    N, K = weight.shape
    padded = -(-N // PANEL) * PANEL
    source = torch.zeros(padded, K, dtype=torch.float32)
    source[:N] = weight.detach()
    panels = source.view(padded // PANEL, PANEL, K).transpose(1, 2).contiguous()
    assert panels.data_ptr() % 64 == 0  # CPU tensors are 64-byte aligned (aligned loads)
    return panels


def matmul(
    x: torch.Tensor, panels: torch.Tensor, out_features: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``x @ W.T`` for ``x`` (M, K) float32 and ``W`` packed by :func:`pack`; with ``out``,
    ``out += x @ W.T`` in place (``out`` (M, N) float32, rows contiguous)."""
    library = _library()
    assert library is not None, "call is_available() first"
    M, K = x.shape
    if x.dtype != torch.float32 or x.stride(1) != 1 or panels.shape[1] != K:
        raise ValueError(f"bad operands: x {x.dtype} {tuple(x.shape)}, panels {panels.shape}")
    accumulate = out is not None
    if out is None:
        out = torch.empty(M, out_features, dtype=torch.float32)
    elif out.shape != (M, out_features) or out.stride(1) != 1 or out.dtype != torch.float32:
        raise ValueError(f"bad out: {out.dtype} {tuple(out.shape)}")
    library.ladder_gemv_panels(
        x.data_ptr(), x.stride(0), panels.data_ptr(), out.data_ptr(), out.stride(0),
        M, K, out_features, int(accumulate),
    )  # fmt: skip
    return out
