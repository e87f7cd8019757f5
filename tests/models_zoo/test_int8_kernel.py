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

from models_zoo.kernels import int8_matmul
from models_zoo.kernels.int8_matmul import (
    default_split_k,
    int8_linear,
    int8_linear_reference,
    is_available,
)
from models_zoo.quantization import Int8BlockLinear, dequantize_blockwise, quantize_blockwise

ROOT = Path(__file__).resolve().parents[2]
HAS_TRITON = importlib.util.find_spec("triton") is not None

# (rows M, in_features K, out_features N, block): K not a multiple of the block, N not a
# multiple of any BLOCK_N, M = 1 / 8 / odd / the fused limit; the last two split K by default.
CASES = [
    (1, 256, 96, 64),
    (8, 200, 130, 64),
    (33, 384, 257, 128),
    (64, 128, 64, 128),
    (1, 1000, 130, 64),
    (8, 2048, 256, 128),
]


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


def test_split_k_depends_on_the_shape_alone_and_splits_only_narrow_products() -> None:
    # The 1B products (block 128): qkv, o, gate/up, down, LM head.
    assert [default_split_k(n, k // 128) for n, k in [(3072, 2048), (2048, 2048), (16384, 2048),
            (2048, 8192), (128256, 2048)]] == [4, 4, 2, 16, 1]  # fmt: skip
    for n in (1, 64, 2048, 4096, 6144, 28672, 128256):
        for blocks in (1, 2, 7, 16, 64, 112):
            split = default_split_k(n, blocks)
            assert split & (split - 1) == 0 and 1 <= split <= int8_matmul.MAX_SPLIT_K
            # every range keeps MIN_SPLIT_BLOCKS blocks; no split once N x split is wide enough
            assert split == 1 or blocks >= split * int8_matmul.MIN_SPLIT_BLOCKS
            assert split == 1 or n * split // 2 < int8_matmul.SPLIT_TARGET


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

    from models_zoo.kernels import int8_matmul
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
        # Split-K, including ranges that do not divide the blocks and empty ranges: each equals
        # the reference, a repeat is bit-identical, the arrival counters are zero afterwards.
        for split in (2, 3, 4, 16):
            out = int8_linear(x, qweight, scales, k, residual=residual, split_k=split)
            ref = int8_linear_reference(x.double(), qweight, scales.double(), k, residual.double())
            error = ((out.double() - ref).norm() / ref.norm()).item()
            assert error < 1e-5, (m, k, n, block, "split", split, error)
            again = residual.clone()
            int8_linear(x, qweight, scales, k, residual=again, out=again, split_k=split)
            assert torch.equal(out, again), (m, k, n, block, split)
            counters = int8_matmul._SCRATCH[torch.device("cpu")][1]
            assert int(counters.abs().sum()) == 0, (m, k, n, block, split)
    print("interpreter ok")
    """
)


@pytest.mark.skipif(not HAS_TRITON, reason="needs the triton package (interpreter mode)")
def test_kernel_matches_reference_under_the_triton_interpreter_on_cpu() -> None:
    script = f"CASES = {CASES[:2] + CASES[4:5]!r}\n" + INTERPRETER_SCRIPT
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


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_split_k_is_deterministic_and_replays_in_a_cuda_graph(dtype: torch.dtype) -> None:
    # 1B's down product: split 16 by default. Every split equals the float64 truth; a split's
    # result is bit-identical run to run and in each replay of a captured graph (the counters
    # reset themselves; in place, as the decoder adds the residual).
    m, k, n = 8, 8192, 2048
    qweight, scales = (t.cuda() for t in quantized(k, n, 128, seed=7))
    generator = torch.Generator(device="cuda").manual_seed(7)
    x = torch.randn(m, k, device="cuda", generator=generator).to(dtype)
    residual = torch.randn(m, n, device="cuda", generator=generator).to(dtype)
    weight = dequantize_blockwise(qweight, scales, k, dtype).double()
    truth = residual.double() + x.double() @ weight.T
    tolerance = 1e-5 if dtype == torch.float32 else 4e-3
    assert default_split_k(n, scales.shape[1]) == 16
    for split in (1, 2, 4, 16):
        first = int8_linear(x, qweight, scales, k, residual=residual, split_k=split)
        error = ((first.double() - truth).norm() / truth.norm()).item()
        assert error < tolerance, (split, error)
        for _ in range(3):
            assert torch.equal(int8_linear(x, qweight, scales, k, residual, split_k=split), first)
    expected = int8_linear(x, qweight, scales, k, residual=residual)
    buffer = residual.clone()
    int8_linear(x, qweight, scales, k, residual=buffer, out=buffer)  # warm: autotune, scratch
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        int8_linear(x, qweight, scales, k, residual=buffer, out=buffer)
    torch.cuda.current_stream().wait_stream(stream)
    for _ in range(3):
        buffer.copy_(residual)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(buffer, expected)
    assert int(int8_matmul._SCRATCH[x.device][1].abs().sum()) == 0
