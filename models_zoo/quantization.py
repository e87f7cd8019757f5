"""Block-wise 8-bit weights for serving.

The block-wise quantization of Dettmers et al., "8-bit Optimizers via Block-wise Quantization"
(arXiv:2110.02861), applied to weights instead of optimizer state: every weight row is cut into
blocks of ``block_size`` consecutive input features, and each block stores int8 values plus one
absmax scale, ``w ≈ q * absmax / 127``.

Deviations from the paper:
- linear int8 code (absmax / 127) instead of the paper's 256-value dynamic code: weights are
  close to Gaussian within a block of 64-256 values, and a linear code dequantises with one
  multiply, which keeps the dequant-inside-the-matmul cheap;
- blocks of 64-256 values (bitsandbytes' weight default is 64) instead of the paper's 2048 for
  optimizer state; scales are kept in float32 (4 bytes per block, 0.03 byte/param at 128).

What is quantized: every ``nn.Linear`` *including the LM head*, and every ``nn.Embedding``.
Embeddings and the head hold about a third of a 134M-parameter model's weights, so leaving them
in bf16 would miss the 0.55x memory goal. Norm weights and biases stay in their dtype.
Tied embeddings/head stay tied: both modules share one int8 tensor and one scale tensor.

Weights are dequantised inside every call (``Int8BlockLinear.forward``): on CPU and CUDA the
dequant is a few fused-by-the-allocator torch ops; the int8 copy is the only one kept.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

MIN_BLOCK_SIZE = 16
INT8_MAX = 127.0


def quantize_blockwise(weight: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a 2-D weight row-wise in blocks of ``block_size`` values.

    Args:
        weight: ``(rows, cols)`` float tensor.
        block_size: values per absmax block along ``cols``; ``cols`` is zero-padded to a multiple.

    Returns:
        ``(qweight, scales)``: int8 ``(rows, padded_cols)`` and float32 ``(rows, n_blocks)``.
    """
    if weight.dim() != 2:
        raise ValueError(
            f"quantize_blockwise expects a 2-D weight, got shape {tuple(weight.shape)}"
        )
    rows, cols = weight.shape
    n_blocks = -(-cols // block_size)
    padded = torch.zeros(rows, n_blocks * block_size, dtype=torch.float32, device=weight.device)
    padded[:, :cols] = weight.detach().float()
    blocks = padded.view(rows, n_blocks, block_size)  # (rows, n_blocks, block_size)
    absmax = blocks.abs().amax(dim=-1)
    scales = absmax / INT8_MAX
    # An all-zero block has scale 0: divide by 1 instead so the codes stay 0, not NaN.
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.round(blocks / safe[..., None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return codes.view(rows, n_blocks * block_size), scales


def dequantize_blockwise(
    qweight: torch.Tensor, scales: torch.Tensor, cols: int, dtype: torch.dtype
) -> torch.Tensor:
    """Inverse of :func:`quantize_blockwise`: ``(rows, cols)`` tensor in ``dtype``."""
    rows, n_blocks = scales.shape
    blocks = qweight.view(rows, n_blocks, -1).to(dtype)  # (rows, n_blocks, block_size)
    weight = (blocks * scales.to(dtype)[..., None]).view(rows, -1)
    return weight[:, :cols]


class Int8BlockLinear(nn.Module):
    """``nn.Linear`` with block-wise int8 weights, dequantised inside every call."""

    qweight: torch.Tensor  # registered buffers, typed for mypy
    scales: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        qweight: torch.Tensor,
        scales: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)
        self.bias = (
            nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        )

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, block_size: int) -> Int8BlockLinear:
        """Quantize an existing ``nn.Linear``."""
        qweight, scales = quantize_blockwise(linear.weight, block_size)
        return cls(linear.in_features, linear.out_features, qweight, scales, linear.bias)

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The ``(out_features, in_features)`` weight in ``dtype``."""
        return dequantize_blockwise(self.qweight, self.scales, self.in_features, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T + b`` with ``W`` dequantised to ``x.dtype``; ``x``: ``(..., in_features)``."""
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        block = self.qweight.shape[1] // self.scales.shape[1]
        return f"in_features={self.in_features}, out_features={self.out_features}, block={block}"


class Int8BlockEmbedding(nn.Module):
    """``nn.Embedding`` with block-wise int8 rows; only the looked-up rows are dequantised."""

    qweight: torch.Tensor  # registered buffers, typed for mypy
    scales: torch.Tensor

    def __init__(
        self,
        embedding_dim: int,
        qweight: torch.Tensor,
        scales: torch.Tensor,
        dtype: torch.dtype,
        padding_idx: int | None = None,
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.num_embeddings = qweight.shape[0]
        self.padding_idx = padding_idx
        self.output_dtype = dtype
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Rows of the dequantised table; ``input_ids``: ``(...)`` -> ``(..., embedding_dim)``."""
        codes = F.embedding(input_ids, self.qweight)  # (..., padded_dim) int8
        scales = F.embedding(input_ids, self.scales)  # (..., n_blocks)
        blocks = codes.view(*codes.shape[:-1], scales.shape[-1], -1).to(self.output_dtype)
        rows = (blocks * scales.to(self.output_dtype)[..., None]).flatten(-2)
        return rows[..., : self.embedding_dim]


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def quantize_model_int8(model: nn.Module, *, block_size: int = 128) -> nn.Module:
    """Replace every ``nn.Linear`` and ``nn.Embedding`` of ``model`` in place by int8 versions.

    Block-wise absmax quantization (Dettmers et al., arXiv:2110.02861) of each weight row in blocks
    of ``block_size`` input features. The LM head and the embeddings are quantized too (see the
    module docstring); a head tied to the input embedding stays tied (shared int8 storage).

    Args:
        model: any module; modified in place.
        block_size: values per absmax block, at least 16 (64-256 recommended).

    Returns:
        The same ``model`` object.

    Raises:
        ValueError: if ``block_size`` is too small.
    """
    if block_size < MIN_BLOCK_SIZE:
        raise ValueError(f"block_size must be at least {MIN_BLOCK_SIZE}, got {block_size}")
    shared: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def quantized_pair(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = weight.data_ptr()
        if key not in shared:
            shared[key] = quantize_blockwise(weight, block_size)
        return shared[key]

    replaced = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear):
            qweight, scales = quantized_pair(module.weight)
            new: nn.Module = Int8BlockLinear(
                module.in_features, module.out_features, qweight, scales, module.bias
            )
        elif isinstance(module, nn.Embedding):
            qweight, scales = quantized_pair(module.weight)
            new = Int8BlockEmbedding(
                module.embedding_dim, qweight, scales, module.weight.dtype, module.padding_idx
            )
        else:
            continue
        _set_submodule(model, name, new)
        replaced += 1
    logger.info("quantize_model_int8: replaced %d modules (block %d)", replaced, block_size)
    return model


def weight_memory_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers, counting shared storage once.

    This is the weight memory a server keeps resident (int8 codes, scales, norms, biases and the
    small rotary buffers alike), independent of the device the model sits on.
    """
    seen: set[tuple[str, int]] = set()
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        key = (str(tensor.device), tensor.untyped_storage().data_ptr())
        if key in seen:
            continue
        seen.add(key)
        total += tensor.untyped_storage().nbytes()
    return total
