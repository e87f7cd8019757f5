from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from models_zoo.attention import dilated_attention_reference
from models_zoo.kernels.dilated import fused_dilated_attention, is_available

ROOT = Path(__file__).resolve().parents[2]
HAS_TRITON = importlib.util.find_spec("triton") is not None
ON_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# (batch, seq, heads, head_dim, segment_lengths, dilation_rates, causal): r not dividing w,
# seq not a multiple of w, w > seq, r > rows of a short last segment, and non-causal.
CASES = [
    (1, 64, 4, 16, (16, 32), (1, 2), True),
    (2, 50, 3, 16, (8, 24, 64), (1, 6, 4), True),
    (1, 37, 2, 32, (16, 32), (1, 2), False),
    (1, 100, 6, 16, (32, 64, 128), (1, 2, 6), True),
]

# Triton 3.6's interpreter turns a 1-element array into an index with int(), which NumPy 2
# rejects; the patch takes its single element instead. Only the interpreter test needs it.
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

    from models_zoo.attention import dilated_attention_reference
    from models_zoo.kernels.dilated import fused_dilated_attention, is_available

    generator = torch.Generator().manual_seed(0)
    for batch, seq, heads, dim, ws, rs, causal in CASES:
        q, k, v = (torch.randn(batch, seq, heads, dim, generator=generator) for _ in range(3))
        assert is_available(q)
        out = fused_dilated_attention(q, k, v, segment_lengths=ws, dilation_rates=rs, causal=causal)
        ref = dilated_attention_reference(
            q, k, v, segment_lengths=ws, dilation_rates=rs, causal=causal
        )
        error = ((out - ref).norm() / ref.norm()).item()
        assert error < 1e-5, (ws, rs, causal, error)
    print("interpreter ok")
    """
)


def test_is_available_is_false_for_cpu_tensors_without_the_interpreter() -> None:
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("interpreter mode set in this process")
    assert not is_available(torch.randn(1, 8, 2, 16))


def test_module_imports_and_reports_unavailable_without_triton() -> None:
    script = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch\n"
        "from models_zoo.kernels import dilated\n"
        "assert dilated.triton is None\n"
        "assert not dilated.is_available(torch.randn(1, 8, 2, 16))\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=120)


def test_unsupported_inputs_are_rejected_with_the_reason() -> None:
    q = torch.randn(1, 8, 2, 16)
    with pytest.raises(ValueError, match="cannot run on a torch.float32 cpu tensor"):
        fused_dilated_attention(q, q, q, segment_lengths=(4,), dilation_rates=(1,))
    with pytest.raises(ValueError, match="equal length"):
        fused_dilated_attention(q, q, q, segment_lengths=(4, 8), dilation_rates=(1,))


@pytest.mark.skipif(not HAS_TRITON, reason="needs the triton package (interpreter mode)")
def test_kernel_matches_reference_under_the_triton_interpreter_on_cpu() -> None:
    script = f"CASES = {CASES!r}\n" + INTERPRETER_SCRIPT
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "interpreter ok" in result.stdout


@pytest.mark.gpu
@ON_GPU
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_kernel_matches_reference_on_random_inputs(case: tuple, dtype: torch.dtype) -> None:
    batch, seq, heads, dim, ws, rs, causal = case
    generator = torch.Generator(device="cuda").manual_seed(1)
    q, k, v = (
        torch.randn(batch, seq, heads, dim, device="cuda", generator=generator, dtype=dtype)
        for _ in range(3)
    )
    out = fused_dilated_attention(q, k, v, segment_lengths=ws, dilation_rates=rs, causal=causal)
    ref = dilated_attention_reference(
        q.double(), k.double(), v.double(), segment_lengths=ws, dilation_rates=rs, causal=causal
    )
    error = ((out.double() - ref).norm() / ref.norm()).item()
    assert error < (1e-5 if dtype == torch.float32 else 2e-2), error


@pytest.mark.gpu
@ON_GPU
def test_cuda_kernel_at_real_sizes_reads_strided_views_in_place() -> None:
    # head_dim 128 with the default 128x64 tiles; q, k, v are slices of one fused projection.
    generator = torch.Generator(device="cuda").manual_seed(2)
    qkv = torch.randn(1, 3000, 3, 4, 128, device="cuda", generator=generator, dtype=torch.bfloat16)
    q, k, v = qkv.unbind(2)  # (B, N, H, D) views with a 3*H*D row stride
    ws, rs = (512, 1024, 2048), (1, 2, 6)
    out = fused_dilated_attention(q, k, v, segment_lengths=ws, dilation_rates=rs)
    ref = dilated_attention_reference(
        q.double(), k.double(), v.double(), segment_lengths=ws, dilation_rates=rs
    )
    assert ((out.double() - ref).norm() / ref.norm()).item() < 2e-2
    assert torch.isfinite(out).all()
