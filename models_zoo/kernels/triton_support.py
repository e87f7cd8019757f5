"""Triton for this package's GPU kernels, where it is installed (CPU-only installs, CI among
them, have none: ``triton`` and ``tl`` are then ``None`` and the kernels' callers take their
plain PyTorch paths)."""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised on machines without Triton
    triton = None
    tl = None

LOG2_E = 1.4426950408889634  # exp(x) = exp2(x * LOG2_E): the kernels' softmax runs in base 2
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

__all__ = ["LOG2_E", "SUPPORTED_DTYPES", "tl", "triton"]
