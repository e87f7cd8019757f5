"""The fused int8 dequantise-inside-the-matmul kernel vs the plain dequantise + matmul."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from models_zoo.kernels.int8_matmul import int8_linear, int8_linear_reference, is_available
from models_zoo.quantization import Int8BlockLinear, dequantize_blockwise, quantize_blockwise

ROOT = Path(__file__).resolve().parents[2]
HAS_TRITON = importlib.util.find_spec("triton") is not None

# (rows M, in_features K, out_features N, block): K not a multiple of the block, N not a
# multiple of any BLOCK_N, M = 1 / 8 / odd / the fused limit.
CASES = [(1, 256, 96, 64), (8, 200, 130, 64), (33, 384, 257, 128), (64, 128, 64, 128)]


def quantized(k: int, n: int, block: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return quantize_blockwise(torch.randn(n, k, generator=generator) * 0.05, block)


def test_reference_equals_the_int8_module_and_the_dequantised_weight() -> None:
    generator = torch.Generator().manual_seed(0)
    linear = nn.Linear(200, 130, bias=False)
    module = Int8BlockLinear.from_linear(linear, block_size=64)
    x = torch.randn(5, 200, generator=generator)
    reference = int8_linear_reference(x, module.qweight, module.scales, 200)
    torch.testing.assert_close(reference, module(x), rtol=0, atol=0)
    weight = dequantize_blockwise(module.qweight, module.scales, 200, torch.float32)
    residual = torch.randn(5, 130, generator=generator)
    torch.testing.assert_close(
        int8_linear_reference(x, module.qweight, module.scales, 200, residual),
        residual + x @ weight.T,
    )


def test_cpu_without_triton_falls_back_to_the_reference_in_place() -> None:
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("interpreter mode set in this process")
    qweight, scales = quantized(200, 130, 64, seed=1)
    x, residual = torch.randn(3, 200), torch.randn(3, 130)
    assert not is_available(x)
    expected = int8_linear_reference(x, qweight, scales, 200, residual)
    out = residual.clone()
    result = int8_linear(x, qweight, scales, 200, residual=out, out=out)
    assert result is out
    torch.testing.assert_close(out, expected)


INTERPRETER_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import torch
    import triton.runtime.interpreter as interpreter

    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda t: int(np.asarray(t.handle.data).ravel()[0]))

    interpreter._patch_lang_tensor = patched

    from models_zoo.kernels.int8_matmul import int8_linear, int8_linear_reference, is_available
    from models_zoo.quantization import quantize_blockwise

    g = torch.Generator().manual_seed(0)
    for m, k, n, block in CASES:
        qweight, scales = quantize_blockwise(torch.randn(n, k, generator=g) * 0.05, block)
        x, residual = torch.randn(m, k, generator=g), torch.randn(m, n, generator=g)
        assert is_available(x)
        out = int8_linear(x, qweight, scales, k, residual=residual.clone())
        ref = int8_linear_reference(x.double(), qweight, scales.double(), k, residual.double())
        error = ((out.double() - ref).norm() / ref.norm()).item()
        assert error < 1e-5, (m, k, n, block, error)
        w = torch.rand(k, generator=g) + 0.5  # a folded norm weight: (x * w) @ W.T
        out = int8_linear(x, qweight, scales, k, input_scale=w)
        ref = int8_linear_reference(x.double(), qweight, scales.double(), k, None, w.double())
        error = ((out.double() - ref).norm() / ref.norm()).item()
        assert error < 1e-5, (m, k, n, block, "input scale", error)
    print("interpreter ok")
    """
)


@pytest.mark.skipif(not HAS_TRITON, reason="needs the triton package (interpreter mode)")
def test_kernel_matches_reference_under_the_triton_interpreter_on_cpu() -> None:
    script = f"CASES = {CASES[:2]!r}\n" + INTERPRETER_SCRIPT
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "interpreter ok" in result.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("in_place", [False, True])
def test_cuda_kernel_matches_dequantise_then_matmul(
    case: tuple[int, int, int, int], dtype: torch.dtype, in_place: bool
) -> None:
    m, k, n, block = case
    qweight, scales = (t.cuda() for t in quantized(k, n, block, seed=m + n))
    generator = torch.Generator(device="cuda").manual_seed(m)
    x = torch.randn(m, k, device="cuda", generator=generator).to(dtype)
    residual = torch.randn(m, n, device="cuda", generator=generator).to(dtype)
    # In place, also a folded norm weight: the kernel computes (x * w) @ W.T.
    w = (torch.rand(k, device="cuda", generator=generator) + 0.5).to(dtype) if in_place else None
    assert is_available(x)
    # Ground truth in float64 from the same dequantised weight the reference uses.
    weight = dequantize_blockwise(qweight, scales, k, dtype).double()
    x_in = x.double() if w is None else x.double() * w.double()
    truth = residual.double() + x_in @ weight.T
    out = torch.full((m, n), float("nan"), device="cuda", dtype=dtype)  # poisoned
    if in_place:
        out.copy_(residual)
        result = int8_linear(x, qweight, scales.to(dtype), k, residual=out, out=out, input_scale=w)
    else:
        result = int8_linear(x, qweight, scales, k, residual=residual, out=out)
    assert result.data_ptr() == out.data_ptr() and bool(torch.isfinite(out).all())
    error = ((out.double() - truth).norm() / truth.norm()).item()
    reference = int8_linear_reference(x, qweight, scales, k, residual, w).double()
    ref_error = ((reference - truth).norm() / truth.norm()).item()
    assert error < (1e-5 if dtype == torch.float32 else max(4e-3, 2 * ref_error)), (
        error,
        ref_error,
    )
