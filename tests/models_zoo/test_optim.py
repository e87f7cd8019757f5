"""Block-wise 8-bit AdamW: quantization code, round trip, memory and loss vs fp32 AdamW."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models_zoo.optim import (
    AdamW8bit,
    cosine_with_warmup,
    dequantize_blockwise,
    dynamic_quantization_code,
    optimizer_state_bytes,
    quantize_blockwise,
)
from models_zoo.tokenizer import train_tokenizer
from models_zoo.train import PRESETS, TrainSettings, build_model, make_optimizer, train

CURVE_STEPS = 30


@pytest.mark.parametrize("signed", [True, False])
def test_dynamic_code_has_256_sorted_values_with_exact_zero_and_one(signed: bool) -> None:
    code = dynamic_quantization_code(signed)
    assert code.shape == (256,)
    assert torch.all(code[1:] >= code[:-1])
    assert 0.0 in code.tolist() and 1.0 in code.tolist()
    assert (code.min() < 0) == signed


def test_blockwise_round_trip_error_is_small_relative_to_block_absmax() -> None:
    x = torch.randn(3, 1000, generator=torch.Generator().manual_seed(0)) * torch.logspace(
        -4, 1, 1000
    )
    code = dynamic_quantization_code(signed=True)
    indices, absmax = quantize_blockwise(x, code, block_size=256)
    assert indices.dtype == torch.uint8 and absmax.numel() == -(-x.numel() // 256)
    restored = dequantize_blockwise(indices, absmax, code, x.shape, block_size=256)
    block_scale = absmax.repeat_interleave(256)[: x.numel()].view_as(x)
    assert ((restored - x).abs() / block_scale).max() < 0.02


def test_adamw8bit_tracks_fp32_adamw_on_a_least_squares_problem() -> None:
    generator = torch.Generator().manual_seed(0)
    A, b = torch.randn(64, 80, generator=generator), torch.randn(64, generator=generator)
    finals = []
    for optimizer_class in (torch.optim.AdamW, AdamW8bit):
        x = torch.nn.Parameter(torch.zeros(80, 64))  # 5120 elements: quantized
        optimizer = optimizer_class([x], lr=0.01, weight_decay=0.0)
        for _ in range(100):
            optimizer.zero_grad()
            loss = ((A @ x).diagonal() - b).pow(2).mean()
            loss.backward()
            optimizer.step()
        finals.append(loss.item())
    assert finals[1] < 0.05 and abs(finals[1] - finals[0]) < 0.02


def test_adamw8bit_state_is_at_most_30_percent_of_fp32_adamw_on_tiny_preset() -> None:
    tokenizer = train_tokenizer("The quick brown fox jumps over the lazy dog. " * 50, 300)
    model = build_model("longnet", PRESETS["tiny"], tokenizer)
    sizes = {}
    for name in ("adamw", "adamw8bit"):
        optimizer = make_optimizer(name, model, 1e-3, 0.1)
        ids = torch.randint(0, len(tokenizer), (2, 16))
        model(ids, labels=ids).loss.backward()
        optimizer.step()
        sizes[name] = optimizer_state_bytes(optimizer)
    assert sizes["adamw8bit"] <= 0.3 * sizes["adamw"], sizes


def test_adamw8bit_loss_curve_is_within_noise_of_adamw_on_tiny_preset(tmp_path: Path) -> None:
    """Same seed, data order and schedule; noise = step-to-step spread of the fp32 losses."""

    def losses(optimizer: str) -> torch.Tensor:
        settings = TrainSettings(
            arch="dense",
            preset="tiny",
            steps=CURVE_STEPS,
            out=tmp_path / optimizer,
            optimizer=optimizer,
            progress=False,
        )
        return torch.tensor(train(settings).losses)

    fp32, eight_bit = losses("adamw"), losses("adamw8bit")
    window = 10
    noise = float(fp32[-window:].std())
    gap = (fp32 - eight_bit).view(-1, window).mean(dim=1).abs()  # per-window mean difference
    assert float(eight_bit[-window:].mean()) < float(eight_bit[:window].mean()) - 0.3  # learns
    assert float(gap.max()) <= noise, (fp32.tolist(), eight_bit.tolist(), noise)


def test_cosine_with_warmup_rises_linearly_then_decays_to_min_ratio() -> None:
    factors = [
        cosine_with_warmup(s, warmup_steps=10, total_steps=100, min_ratio=0.1) for s in range(100)
    ]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] == pytest.approx(0.1)


def test_adamw8bit_rejects_bad_hyperparameters_quoting_them() -> None:
    with pytest.raises(ValueError, match=r"betas must be in \[0, 1\), got \(0.9, 1.5\)"):
        AdamW8bit([torch.nn.Parameter(torch.zeros(2))], betas=(0.9, 1.5))
