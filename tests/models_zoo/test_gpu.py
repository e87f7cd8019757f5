"""CUDA checks, run on the device machine (skipped without a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models_zoo import serving
from models_zoo.attention import dilated_attention, dilated_attention_reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("grad", [False, True])
def test_cuda_dilated_attention_matches_cpu_reference(dtype: torch.dtype, grad: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 301, 8, 64, generator=generator) for _ in range(3))
    kwargs = {"segment_lengths": (32, 64, 128), "dilation_rates": (1, 2, 4)}
    expected = dilated_attention_reference(q, k, v, **kwargs)
    with torch.set_grad_enabled(grad):
        cuda = [x.cuda().to(dtype).requires_grad_(grad) for x in (q, k, v)]
        out = dilated_attention(*cuda, **kwargs)
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(out.float().cpu(), expected, atol=tolerance, rtol=tolerance)


def test_zoo_checkpoint_serves_on_cuda(tiny_checkpoints: dict[str, Path]) -> None:
    model = serving.load(tiny_checkpoints["longnet"], device="cuda")
    result = model.generate_with_stats(["The for statement", "A"], max_new_tokens=8)
    assert result.device.startswith("cuda") and result.peak_memory_bytes > 0
    cpu = serving.load(tiny_checkpoints["longnet"], device="cpu")
    pairs = [("The cat", " sat"), ("", "Hello")]
    assert model.loglikelihood(pairs) == pytest.approx(cpu.loglikelihood(pairs), abs=0.1)
