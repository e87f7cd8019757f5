"""The fast decoder's fused Triton kernels (rotary + cache write, decode attention, SwiGLU) vs
plain PyTorch references, and the decoder through them vs transformers."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from models_zoo import fast_decode
from models_zoo.fast_decode import FastDecoder, left_pad
from models_zoo.kernels import decode as dk
from models_zoo.quantization import quantize_model_int8

ROOT = Path(__file__).resolve().parents[2]
HAS_TRITON = importlib.util.find_spec("triton") is not None


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def tiny_llama(kv_heads: int, seed: int = 0, head_dim: int = 16) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=97, hidden_size=4 * head_dim, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=1024,
        pad_token_id=0, eos_token_id=None, bos_token_id=None,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


# --- the references against independent formulations (CPU, every run) -----------------------


def test_rotary_reference_equals_transformers_rotary_and_writes_the_cache() -> None:
    generator = torch.Generator().manual_seed(0)
    B, T, H, Hkv, D, L = 2, 5, 4, 2, 16, 12
    qkv = torch.randn(B * T, (H + 2 * Hkv) * D, generator=generator)
    positions = torch.randint(0, L, (B * T,), generator=generator)
    angles = torch.randn(L, D // 2, generator=generator).repeat(1, 2)
    cos, sin = angles.cos(), angles.sin()
    keys, values = torch.randn(B, Hkv, L, D), torch.randn(B, Hkv, L, D)
    untouched = keys.clone()
    write_at = torch.tensor([7, 2, 9, 0, 4])
    q = dk.rotary_to_cache_reference(qkv, positions, cos, sin, keys, values, write_at, H)
    x = qkv.view(B, T, H + 2 * Hkv, D).transpose(1, 2)  # (B, heads, T, D)
    c, s = cos[positions].view(B, T, D), sin[positions].view(B, T, D)
    q_hf, k_hf = apply_rotary_pos_emb(x[:, :H], x[:, H : H + Hkv], c, s)
    torch.testing.assert_close(q.view(B, T, H, D).transpose(1, 2), q_hf)
    torch.testing.assert_close(keys[:, :, write_at], k_hf)
    torch.testing.assert_close(values[:, :, write_at], x[:, H + Hkv :])
    others = [i for i in range(L) if i not in write_at.tolist()]
    assert torch.equal(keys[:, :, others], untouched[:, :, others])


def test_decode_attention_reference_equals_explicit_softmax_over_valid_keys() -> None:
    generator = torch.Generator().manual_seed(1)
    B, H, Hkv, D, L = 3, 8, 2, 16, 20
    q = torch.randn(B, H, D, generator=generator)
    keys, values = torch.randn(B, Hkv, L, D), torch.randn(B, Hkv, L, D)
    bias = torch.zeros(B, L)
    bias[1, :6] = float("-inf")
    last = torch.tensor([13])
    out = dk.decode_attention_reference(q, keys, values, bias, last, 0.3).view(B, H, D)
    for b in range(B):
        for h in range(H):
            k, v = keys[b, h // (H // Hkv), :14], values[b, h // (H // Hkv), :14]
            weights = torch.softmax(k @ q[b, h] * 0.3 + bias[b, :14], dim=0)
            torch.testing.assert_close(out[b, h], weights @ v)


def test_swiglu_reference_is_silu_gate_times_up() -> None:
    x = torch.randn(4, 2 * 24)
    torch.testing.assert_close(dk.swiglu_reference(x), F.silu(x[:, :24]) * x[:, 24:])


def test_splits_fill_the_gpu_only_for_long_caches_or_few_rows() -> None:
    cpu = torch.device("cpu")  # 4 "processors" stand in for the GPU's multiprocessors
    assert dk.attention_splits(64 * 8, 256, cpu) == 1
    assert dk.attention_splits(1, 256, cpu) == 1  # at least MIN_SPLIT_KEYS rows a split
    assert dk.attention_splits(1, 4096, cpu) == 8
    assert dk.attention_splits(2, 4096, cpu) == 4


def test_cpu_decoder_does_not_use_the_fused_kernels() -> None:
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("interpreter mode set in this process")
    model = tiny_llama(kv_heads=2)
    assert not dk.is_available(torch.zeros(1), 16)
    assert not FastDecoder(model, batch_size=1, max_length=32).fused


# --- the kernels under the Triton interpreter (CPU, where triton is installed) ----------------

INTERPRETER_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    import triton.runtime.interpreter as interpreter

    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):  # loop bounds read from device memory need __index__
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda t: int(np.asarray(t.handle.data).ravel()[0]))

    interpreter._patch_lang_tensor = patched
    sys.path.insert(0, "tests/models_zoo")
    from test_decode_kernels import check_kernels, check_decoder

    check_kernels("cpu", torch.float32, tolerance=1e-5)
    check_decoder("cpu")
    print("interpreter ok")
    """
)


def check_kernels(device: str, dtype: torch.dtype, tolerance: float) -> None:
    """Each kernel vs its reference on fresh random inputs, outputs poisoned beforehand."""
    generator = torch.Generator(device=device).manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=device).to(dtype)

    # (B, T, H, H_kv, D, L): decode and prefill, GQA groups 1 / 2 / 4, head dims 16-128.
    for B, T, H, Hkv, D, L in [(2, 1, 4, 2, 16, 40), (3, 5, 4, 4, 32, 24), (1, 1, 8, 2, 64, 300),
                               (4, 1, 16, 4, 128, 130)]:  # fmt: skip
        qkv = randn(B * T, (H + 2 * Hkv) * D)
        positions = torch.randint(0, L, (B * T,), generator=generator, device=device)
        cos, sin = randn(L, D), randn(L, D)
        write_at = torch.randperm(L, generator=generator, device=device)[:T]
        keys, values = randn(B, Hkv, L, D), randn(B, Hkv, L, D)
        ref_keys, ref_values = keys.clone(), values.clone()
        ref = dk.rotary_to_cache_reference(
            qkv, positions, cos, sin, ref_keys, ref_values, write_at, H
        )
        q = dk.rotary_to_cache(qkv, positions, cos, sin, keys, values, write_at, H)
        assert relative_error(q, ref) < tolerance
        assert relative_error(keys, ref_keys) < tolerance
        assert torch.equal(values, ref_values)  # a copy
        # With a folded RMSNorm: q, k and v scaled by the RMS scale of each token's row.
        rows = randn(B * T, 3 * H * D - 8) * 3.0  # a hidden width that is not a power of two
        ref = dk.rotary_to_cache_reference(
            qkv, positions, cos, sin, ref_keys, ref_values, write_at, H, rows, 1e-5
        )
        keys.fill_(float("nan"))  # poisoned: the rows written must match, the rest stay NaN
        values.fill_(float("nan"))
        q = dk.rotary_to_cache(
            qkv, positions, cos, sin, keys, values, write_at, H, norm_input=rows, eps=1e-5
        )
        assert relative_error(q, ref) < tolerance
        written = write_at.tolist()
        assert relative_error(keys[:, :, written], ref_keys[:, :, written]) < tolerance
        assert relative_error(values[:, :, written], ref_values[:, :, written]) < tolerance
        others = [i for i in range(L) if i not in written]
        assert bool(keys[:, :, others].isnan().all()) and bool(values[:, :, others].isnan().all())
        keys.copy_(ref_keys)
        values.copy_(ref_values)
        query = randn(B, H, D)
        bias = torch.zeros(B, L, dtype=dtype, device=device)
        bias[0, : min(L - 3, 70)] = float("-inf")  # left padding: whole key blocks masked
        last = torch.tensor([L - 3], device=device)
        ref = dk.decode_attention_reference(query, keys, values, bias, last, D**-0.5)
        for splits in (1, 3):
            out = dk.decode_attention(query, keys, values, bias, last, D**-0.5, splits)
            assert bool(torch.isfinite(out).all())
            assert relative_error(out, ref) < tolerance, (B, H, Hkv, D, L, splits)
    gate_up = randn(7, 2 * 1500)
    assert relative_error(dk.swiglu(gate_up), dk.swiglu_reference(gate_up)) < tolerance
    rows = randn(7, 200) * 3.0
    out = dk.swiglu(gate_up, norm_input=rows, eps=1e-6)
    assert relative_error(out, dk.swiglu_reference(gate_up, rows, 1e-6)) < tolerance
    # Many splits (more than one merge block of MERGE_BLOCK), and every launch config swept.
    B, H, Hkv, D, L = 1, 4, 2, 32, 40 * dk.BLOCK_KEYS
    query, keys, values = randn(B, H, D), randn(B, Hkv, L, D), randn(B, Hkv, L, D)
    bias = torch.zeros(B, L, dtype=dtype, device=device)
    last = torch.tensor([L - 5], device=device)
    ref = dk.decode_attention_reference(query, keys, values, bias, last, D**-0.5)
    out = dk.decode_attention(query, keys, values, bias, last, D**-0.5, 37)
    assert relative_error(out, ref) < tolerance
    for config in ((32, 4, 1), (128, 8, 3)):  # other launch configs (the bench sweeps more)
        for splits in (1, 3):
            out = dk.decode_attention(query, keys, values, bias, last, D**-0.5, splits, config)
            assert relative_error(out, ref) < tolerance, (config, splits)
    check_rope_attention(device, randn, generator, tolerance)


def check_rope_attention(
    device: str, randn: Callable[..., torch.Tensor], generator: torch.Generator, tolerance: float
) -> None:
    """rope_decode_attention == rotary_to_cache then decode_attention (the references), with
    and without a folded norm, keys split or not, left padding, GQA groups 1 / 4 / 4."""
    for B, H, Hkv, D, L, row in [(1, 8, 2, 64, 300, 297), (4, 16, 4, 128, 130, 64),
                                 (3, 4, 4, 32, 70, 5)]:  # fmt: skip
        qkv = randn(B, (H + 2 * Hkv) * D)
        positions = torch.randint(0, L, (B,), generator=generator, device=device)
        cos, sin = randn(L, D), randn(L, D)
        keys, values = randn(B, Hkv, L, D), randn(B, Hkv, L, D)
        write_at = torch.tensor([row], device=device)
        bias = torch.zeros(B, L, dtype=keys.dtype, device=device)
        bias[0, : row // 2] = float("-inf")
        for norm in (None, randn(B, 3 * H * D - 8) * 3.0):
            ref_keys, ref_values = keys.clone(), values.clone()
            q = dk.rotary_to_cache_reference(
                qkv, positions, cos, sin, ref_keys, ref_values, write_at, H, norm, 1e-5
            )
            ref = dk.decode_attention_reference(
                q.view(B, H, D), ref_keys, ref_values, bias, write_at, D**-0.5
            )
            for splits in (1, 3):
                k, v = keys.clone(), values.clone()
                out = dk.rope_decode_attention(
                    qkv, positions, cos, sin, k, v, bias, write_at, H, D**-0.5, splits,
                    norm_input=norm, eps=1e-5,
                )  # fmt: skip
                case = (B, H, Hkv, D, L, splits, norm is not None)
                assert bool(torch.isfinite(out).all()), case
                assert relative_error(out, ref) < tolerance, case
                assert relative_error(k, ref_keys) < tolerance, case
                assert relative_error(v, ref_values) < tolerance, case


def check_decoder(device: str) -> None:
    """fp32 greedy tokens through the fused kernels == transformers == the unfused decoder,
    left-padded, GQA and not, keys split or not."""
    for kv_heads, head_dim in ((4, 16), (2, 16), (2, 32)):  # 32: rotary + attention as one
        model = tiny_llama(kv_heads, head_dim=head_dim).to(device)
        generator = torch.Generator().manual_seed(kv_heads)
        prompts = [torch.randint(1, 97, (n,), generator=generator).tolist() for n in (5, 12, 1)]
        ids, mask = left_pad(prompts, 0, device)
        for length in (128, 640):  # 640: keys split across programs (flash-decoding)
            fused = FastDecoder(model, batch_size=3, max_length=length, fused_kernels=True)
            plain = FastDecoder(model, batch_size=3, max_length=length, fused_kernels=False)
            assert fused.fused and not plain.fused
            assert fused.plan is not None and all(  # the norms are folded into the products
                lp.qkv_folded is not None and lp.qkv_folded.weight_copy is not None
                for lp in fused.plan.layers
            )
            if length == 128:
                assert fused.splits == 1
            elif kv_heads == 2:  # 6 rows x heads: too few programs for 640 keys
                assert fused.splits > 1
            tokens = fused.generate(ids, mask, 10)
            assert torch.equal(tokens, plain.generate(ids, mask, 10))
        for prompt, row in zip(prompts, tokens):
            prompt_ids = torch.tensor([prompt], device=device)
            expected = model.generate(
                prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=10,
                min_new_tokens=10, do_sample=False, pad_token_id=0,
            )[0, len(prompt):]  # fmt: skip
            assert row.tolist() == expected.tolist()
        fast_decode.clear_caches()
    # int8 block-wise weights: norms folded too (the int8 kernel scales x as it loads it).
    model = quantize_model_int8(tiny_llama(2, head_dim=32), block_size=32).to(device)
    fused = FastDecoder(model, batch_size=3, max_length=128, fused_kernels=True)
    plain = FastDecoder(model, batch_size=3, max_length=128, fused_kernels=False)
    assert fused.fused and fused.plan is not None
    assert all(
        lp.qkv_folded is not None and lp.qkv_folded.kind == "int8" for lp in fused.plan.layers
    )
    tokens = fused.generate(ids, mask, 10)
    assert torch.equal(tokens, plain.generate(ids, mask, 10))
    fast_decode.clear_caches()


@pytest.mark.skipif(not HAS_TRITON, reason="needs the triton package (interpreter mode)")
def test_kernels_and_decoder_match_references_under_the_triton_interpreter_on_cpu() -> None:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, "-c", INTERPRETER_SCRIPT], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "interpreter ok" in result.stdout


# --- on the GPU --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_kernels_match_the_references(dtype: torch.dtype) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    # bf16: the kernels round once from float32, the references too; softmax weights are
    # rounded to bf16 before the value product (as FlashAttention does).
    check_kernels("cuda", dtype, tolerance=1e-5 if dtype == torch.float32 else 1.5e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fused_decoder_equals_transformers_and_the_unfused_decoder() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    check_decoder("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fused_graph_decoding_equals_fused_eager_with_split_keys() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    model = tiny_llama(kv_heads=2, head_dim=32).cuda()
    ids, mask = left_pad([[5, 6, 7], list(range(1, 40))], 0, "cuda")
    tokens = {}
    for graph in (True, False):
        decoder = FastDecoder(model, batch_size=2, max_length=4096, use_cuda_graph=graph)
        assert decoder.fused and decoder.splits > 1
        tokens[graph] = decoder.generate(ids, mask, 20)
    assert torch.equal(tokens[True], tokens[False])
    plain = FastDecoder(model, batch_size=2, max_length=4096, fused_kernels=False)
    assert torch.equal(tokens[True], plain.generate(ids, mask, 20))


def compiled_kernels() -> int:
    """Compiled variants of the decode kernels in this process (Triton's in-memory caches)."""
    kernels = [getattr(dk, name) for name in dir(dk) if name.endswith("_kernel")]
    return sum(len(cache[0]) for k in kernels for cache in k.device_caches.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_warm_up_compiles_every_decode_kernel_variant_later_calls_use() -> None:
    model = tiny_llama(kv_heads=2, head_dim=32, seed=3).cuda()
    assert fast_decode.warm_up(model) > 0.0
    warmed = compiled_kernels()
    assert warmed > 0
    for batch, width, new in ((3, 37, 20), (1, 300, 5), (64, 16, 4), (2, 1000, 3)):
        ids = torch.randint(1, 97, (batch, width), device="cuda")
        fast_decode.generate_fast(model, ids, max_new_tokens=new)  # other splits and widths
    assert compiled_kernels() == warmed
    assert fast_decode.warm_up(tiny_llama(kv_heads=2).float()) == 0.0  # CPU: nothing to do
