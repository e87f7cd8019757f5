"""AdamW with block-wise 8-bit optimizer states, in plain PyTorch.

Dettmers et al., "8-bit Optimizers via Block-wise Quantization" (arXiv:2110.02861): each state
tensor is cut into blocks, each block is scaled by its absolute maximum and every value is
stored as the index (uint8) of the nearest entry of a 256-value dynamic (tree) quantization
code; the update dequantizes, runs the fp32 AdamW step and requantizes. The first moment uses
the signed code, the second (non-negative) moment the unsigned one, as in bitsandbytes.

Block size 256 follows bitsandbytes' optimizers (PR #1365); the paper used 2048. Tensors with
fewer than ``min_8bit_size`` elements keep fp32 states (bitsandbytes' default 4096), because
quantization noise matters most there and the memory does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

BLOCK_SIZE = 256
MIN_8BIT_SIZE = 4096


def dynamic_quantization_code(signed: bool, max_exponent_bits: int = 7) -> torch.Tensor:
    """The 256 sorted values of the dynamic tree code (bitsandbytes' ``create_dynamic_map``).

    Each exponent e covers magnitudes 10^(e - 6) * [0.1, 1] with linearly spaced fractions, so
    small values keep relative precision; 0 and 1 are exact.
    """
    values: list[float] = []
    for exponent in range(max_exponent_bits):
        items = 2**exponent + 1 if signed else 2 ** (exponent + 1) + 1
        bounds = torch.linspace(0.1, 1.0, items, dtype=torch.float64)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        scale = 10.0 ** (exponent - (max_exponent_bits - 1))
        values += (scale * means).tolist()
        if signed:
            values += (-scale * means).tolist()
    values += [0.0, 1.0]
    values += [0.0] * (256 - len(values))
    return torch.tensor(sorted(values), dtype=torch.float32)


def quantize_blockwise(
    x: torch.Tensor, code: torch.Tensor, block_size: int = BLOCK_SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``x`` to uint8 indices into ``code`` with one fp32 absmax per block.

    Returns:
        ``(indices, absmax)``: indices has ``x.numel()`` uint8 values (flat), absmax one per block.
    """
    flat = x.detach().float().reshape(-1)
    padded = torch.nn.functional.pad(flat, (0, -flat.numel() % block_size))
    blocks = padded.view(-1, block_size)  # (blocks, block_size)
    absmax = blocks.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    normalised = blocks / absmax[:, None]
    midpoints = (code[1:] + code[:-1]) / 2  # nearest code value = bucket between midpoints
    indices = torch.bucketize(normalised, midpoints).to(torch.uint8)
    return indices.view(-1)[: flat.numel()], absmax


def dequantize_blockwise(
    indices: torch.Tensor,
    absmax: torch.Tensor,
    code: torch.Tensor,
    shape: torch.Size,
    block_size: int = BLOCK_SIZE,
) -> torch.Tensor:
    """Inverse of :func:`quantize_blockwise`: fp32 tensor of ``shape``."""
    values = code[indices.long()]
    padded = torch.nn.functional.pad(values, (0, -values.numel() % block_size))
    blocks = padded.view(-1, block_size) * absmax[:, None]  # (blocks, block_size)
    return blocks.view(-1)[: values.numel()].view(shape)


class AdamW8bit(torch.optim.Optimizer):
    """AdamW (Loshchilov & Hutter) whose moment estimates are stored block-wise in 8 bits."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        block_size: int = BLOCK_SIZE,
        min_8bit_size: int = MIN_8BIT_SIZE,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(
                f"lr ({lr}), eps ({eps}) and weight_decay ({weight_decay}) must be >= 0"
            )
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if block_size <= 0:
            raise ValueError(f"block_size must be positive, got {block_size}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.block_size, self.min_8bit_size = block_size, min_8bit_size
        self._codes: dict[tuple[bool, torch.device], torch.Tensor] = {}

    def _code(self, signed: bool, device: torch.device) -> torch.Tensor:
        key = (signed, device)
        if key not in self._codes:
            self._codes[key] = dynamic_quantization_code(signed).to(device)
        return self._codes[key]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One AdamW update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                state["step"] = state.get("step", 0) + 1
                exp_avg, exp_avg_sq = self._load_moments(param, state)
                grad = param.grad.float()
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = state["step"]
                bias1, bias2 = 1 - beta1**step, 1 - beta2**step
                denom = (exp_avg_sq / bias2).sqrt_().add_(group["eps"])
                update = (exp_avg / bias1).div_(denom)
                param.mul_(1 - group["lr"] * group["weight_decay"])
                param.add_(update.to(param.dtype), alpha=-group["lr"])
                self._store_moments(param, state, exp_avg, exp_avg_sq)
        return loss

    def _quantized(self, param: torch.Tensor) -> bool:
        return param.numel() >= self.min_8bit_size

    def _load_moments(
        self, param: torch.Tensor, state: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if "exp_avg" in state:
            return state["exp_avg"], state["exp_avg_sq"]
        if "exp_avg_q" not in state:
            return torch.zeros_like(param, dtype=torch.float32), torch.zeros_like(
                param, dtype=torch.float32
            )
        first = dequantize_blockwise(
            state["exp_avg_q"], state["exp_avg_absmax"], self._code(True, param.device),
            param.shape, self.block_size,
        )  # fmt: skip
        second = dequantize_blockwise(
            state["exp_avg_sq_q"], state["exp_avg_sq_absmax"], self._code(False, param.device),
            param.shape, self.block_size,
        )  # fmt: skip
        return first, second

    def _store_moments(
        self, param: torch.Tensor, state: dict[str, Any], first: torch.Tensor, second: torch.Tensor
    ) -> None:
        if not self._quantized(param):
            state["exp_avg"], state["exp_avg_sq"] = first, second
            return
        state["exp_avg_q"], state["exp_avg_absmax"] = quantize_blockwise(
            first, self._code(True, param.device), self.block_size
        )
        state["exp_avg_sq_q"], state["exp_avg_sq_absmax"] = quantize_blockwise(
            second, self._code(False, param.device), self.block_size
        )


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in tensors of the optimizer state (step counters excluded)."""
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                total += value.numel() * value.element_size()
    return total


def cosine_with_warmup(
    step: int, *, warmup_steps: int, total_steps: int, min_ratio: float
) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to ``min_ratio``.

    ``step`` counts from 0; the multiplier of the last step is exactly ``min_ratio``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
