from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from models_zoo import fast_decode
from models_zoo.fast_decode import FastDecoder, generate_fast, left_pad
from models_zoo.kernels import cpu_gemv
from models_zoo.kernels.decode import rms_scale_reference
from models_zoo.quantization import quantize_model_int8

VOCAB = 97


def tiny_llama(seed: int = 0, kv_heads: int = 4) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=None,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config).eval()


def random_prompts(lengths: tuple[int, ...], seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1, VOCAB, (n,), generator=generator).tolist() for n in lengths]


def hf_greedy(model: LlamaForCausalLM, prompt: list[int], new_tokens: int) -> list[int]:
    ids = torch.tensor([prompt], device=model.device)
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=0,
    )
    return out[0, len(prompt) :].tolist()


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_batched_left_padded_greedy_equals_one_at_a_time_and_transformers(kv_heads: int) -> None:
    model = tiny_llama(kv_heads=kv_heads)
    prompts = random_prompts((5, 12, 1, 9), seed=1)
    batched = generate_fast(model, prompts, max_new_tokens=10)
    for prompt, row in zip(prompts, batched):
        alone = generate_fast(model, [prompt], max_new_tokens=10)[0]
        assert row.tolist() == alone.tolist()
        assert alone.tolist() == hf_greedy(model, prompt, 10)


def test_prefill_logits_match_the_full_forward_pass() -> None:
    model = tiny_llama()
    prompts = random_prompts((7, 3), seed=2)
    ids, mask = left_pad(prompts, pad_token_id=0)
    decoder = FastDecoder(model, batch_size=2, max_length=16)
    cache_index = torch.arange(16)
    valid = mask.bool()
    decoder.key_valid[:, :7] = valid
    full_mask = (cache_index[None, :] <= cache_index[:7, None])[None] & decoder.key_valid[:, None]
    full_mask |= (cache_index[None, :] == cache_index[:7, None])[None]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = decoder._forward(ids, positions, cache_index[:7], full_mask[:, None])
        for row, prompt in enumerate(prompts):
            expected = model(torch.tensor([prompt])).logits[0, -1]
            torch.testing.assert_close(logits[row], expected, rtol=1e-4, atol=1e-4)


def test_int8_model_decodes_and_padding_stays_exact() -> None:
    model = quantize_model_int8(tiny_llama(), block_size=32)
    prompts = random_prompts((4, 8), seed=3)
    batched = generate_fast(model, prompts, max_new_tokens=6)
    for prompt, row in zip(prompts, batched):
        assert row.tolist() == generate_fast(model, [prompt], max_new_tokens=6)[0].tolist()


def test_tensor_input_with_mask_equals_list_input() -> None:
    model = tiny_llama()
    prompts = random_prompts((3, 6), seed=4)
    ids, mask = left_pad(prompts, pad_token_id=0)
    from_lists = generate_fast(model, prompts, max_new_tokens=5)
    from_tensor = generate_fast(model, ids, attention_mask=mask, max_new_tokens=5)
    assert torch.equal(from_lists, from_tensor)


def test_sampling_is_reproducible_with_a_seeded_generator() -> None:
    model = tiny_llama()
    prompts = random_prompts((4, 4, 4), seed=5)

    def sample() -> torch.Tensor:
        generator = torch.Generator().manual_seed(7)
        return generate_fast(
            model, prompts, max_new_tokens=8, do_sample=True, top_k=5, generator=generator
        )

    first = sample()
    assert first.shape == (3, 8) and torch.equal(first, sample())


def test_tokens_after_eos_are_padding() -> None:
    model = tiny_llama()
    prompt = random_prompts((6,), seed=6)
    plain = generate_fast(model, prompt, max_new_tokens=8)[0]
    eos = int(plain[2])
    cut = generate_fast(model, prompt, max_new_tokens=8, eos_token_id=eos, pad_token_id=-1)[0]
    first = plain.tolist().index(eos)
    assert cut[: first + 1].tolist() == plain[: first + 1].tolist()
    assert (cut[first + 1 :] == -1).all()


def test_model_that_is_not_llama_shaped_is_rejected() -> None:
    with pytest.raises(ValueError, match="not Llama-shaped"):
        generate_fast(nn.Linear(2, 2), [[1, 2]], max_new_tokens=2)


def test_zero_new_tokens_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        generate_fast(tiny_llama(), [[1, 2]], max_new_tokens=0)


def test_rotation_table_equals_transformers_rotary_embedding() -> None:
    model = tiny_llama()
    decoder = FastDecoder(model, batch_size=1, max_length=32)
    positions = torch.tensor([[0, 3, 17, 31]])
    x = torch.randn(1, 4, 4, 16)  # (B, H, T, D)
    cos, sin = model.model.rotary_emb(x, positions)
    expected, _ = apply_rotary_pos_emb(x, x, cos, sin)
    rotated = (x[..., None, :] @ decoder.rotation[positions[0]]).squeeze(-2)  # per position
    torch.testing.assert_close(rotated, expected, rtol=1e-5, atol=1e-6)


def test_projections_are_fused_and_bit_equal_to_the_modules() -> None:
    model = tiny_llama(kv_heads=2)
    layer = model.model.layers[0]
    plan = FastDecoder(model, batch_size=1, max_length=8).plan
    assert plan is not None and plan.layers[0].qkv.kind == "dense"
    assert plan.layers[0].gate_up is not None
    h = torch.randn(3, 64)
    attn = layer.self_attn
    expected = torch.cat([attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)], dim=-1)
    torch.testing.assert_close(plan.layers[0].qkv(h), expected, rtol=1e-6, atol=1e-6)
    quantized = quantize_model_int8(tiny_llama(kv_heads=2), block_size=32)
    qplan = FastDecoder(quantized, batch_size=1, max_length=8).plan
    assert qplan is not None and qplan.layers[0].qkv.kind == "int8"
    mlp = quantized.model.layers[0].mlp
    weight = qplan.layers[0].gate_up.weight()
    assert torch.equal(weight[:128], mlp.gate_proj.dequantized_weight(torch.float32))
    assert torch.equal(weight[128:], mlp.up_proj.dequantized_weight(torch.float32))


def check_folded_projections(
    model: LlamaForCausalLM, plan: Any, update_up: Callable[[nn.Module], None]
) -> None:
    """Layer 0's folded q/k/v and gate/up products times the rows' RMS scale equal norm then
    product (also added to a residual in place), before and after in-place updates of the
    norm weights and of ``up_proj`` (``update_up``), which the plan's refresh must follow."""
    lp, layer, eps = plan.layers[0], model.model.layers[0], model.config.rms_norm_eps
    for _ in range(2):
        x = torch.randn(5, 64) * 3
        scale = rms_scale_reference(x, eps)[:, None]
        torch.testing.assert_close(lp.qkv_folded(x) * scale, lp.qkv(lp.norm1(x)))
        torch.testing.assert_close(lp.gate_up_folded(x) * scale, lp.gate_up(lp.norm2(x)))
        residual = torch.randn(5, 256)
        torch.testing.assert_close(
            lp.gate_up_folded.add_to(residual.clone(), x), residual + lp.gate_up_folded(x)
        )
        with torch.no_grad():  # in place: the next call's refresh must fold the new weights
            layer.input_layernorm.weight.uniform_(0.5, 1.5)
            layer.post_attention_layernorm.weight.uniform_(0.5, 1.5)
            update_up(layer.mlp.up_proj)
        assert plan.current(model)


def test_folded_norm_projections_equal_norm_then_product_and_follow_in_place_updates() -> None:
    model = tiny_llama(kv_heads=2)
    plan = FastDecoder(model, batch_size=1, max_length=8).plan
    assert plan is not None
    lp = plan.layers[0]
    assert lp.qkv_folded is not None and lp.gate_up_folded is not None and lp.gate_up is not None
    assert lp.qkv_folded.weight_copy is None  # made on first use only
    check_folded_projections(model, plan, lambda up: up.weight.mul_(2.0))


def test_int8_folded_projections_share_the_codes_and_equal_norm_then_product() -> None:
    model = quantize_model_int8(tiny_llama(kv_heads=2), block_size=32)
    plan = FastDecoder(model, batch_size=1, max_length=8).plan
    assert plan is not None
    lp = plan.layers[0]
    assert lp.qkv.kind == "int8" and lp.qkv_folded is not None and lp.gate_up is not None
    assert lp.gate_up_folded is not None
    for folded, plain in ((lp.qkv_folded, lp.qkv), (lp.gate_up_folded, lp.gate_up)):
        assert folded.kind == "int8"
        assert folded.weight_copy is plain.weight_copy and folded.scales is plain.scales
    check_folded_projections(model, plan, lambda up: up.scales.mul_(2.0))


def test_warm_up_decoding_runs_on_a_llama() -> None:
    model = tiny_llama(kv_heads=2)
    fast_decode._warm_up_runs(model, torch.device("cpu"))
    assert fast_decode.warm_up(model) == 0.0  # CPU: nothing to compile


def test_in_place_weight_update_refreshes_the_fused_copies() -> None:
    model, other = tiny_llama(seed=0), tiny_llama(seed=1)
    prompts = random_prompts((5, 8), seed=11)
    generate_fast(model, prompts, max_new_tokens=6)
    model.load_state_dict(other.state_dict())  # copies in place into the same tensors
    assert torch.equal(
        generate_fast(model, prompts, max_new_tokens=6),
        generate_fast(other, prompts, max_new_tokens=6),
    )
    quantize_model_int8(model, block_size=32)  # modules replaced: decoders are rebuilt
    quantize_model_int8(other, block_size=32)
    assert fast_decode._PLANS[model].layers[0].qkv.kind == "dense"  # stale until the next call
    assert torch.equal(
        generate_fast(model, prompts, max_new_tokens=6),
        generate_fast(other, prompts, max_new_tokens=6),
    )
    assert fast_decode._PLANS[model].layers[0].qkv.kind == "int8"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_decoding_equals_eager_and_one_at_a_time() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    model = tiny_llama(kv_heads=2).cuda()
    prompts = random_prompts((5, 17, 2, 11), seed=8)
    graphed = generate_fast(model, prompts, max_new_tokens=12, use_cuda_graph=True)
    eager = generate_fast(model, prompts, max_new_tokens=12, use_cuda_graph=False)
    assert torch.equal(graphed, eager)
    graphed_again = generate_fast(model, prompts, max_new_tokens=12, use_cuda_graph=True)
    assert torch.equal(graphed_again, graphed)  # the captured graph is reused
    for prompt, row in zip(prompts, graphed):
        alone = generate_fast(model, [prompt], max_new_tokens=12, use_cuda_graph=True)[0]
        assert row.tolist() == alone.tolist()
        assert alone.tolist() == hf_greedy(model, prompt, 12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_bf16_int8_decoding_matches_eager() -> None:
    model = quantize_model_int8(tiny_llama().to(torch.bfloat16).cuda(), block_size=64)
    prompts = random_prompts((3, 9), seed=9)
    graphed = generate_fast(model, prompts, max_new_tokens=8, use_cuda_graph=True)
    eager = generate_fast(model, prompts, max_new_tokens=8, use_cuda_graph=False)
    assert torch.equal(graphed, eager)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp32_int8_fused_decoding_equals_the_models_own_greedy_tokens() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    model = quantize_model_int8(tiny_llama(kv_heads=2).cuda(), block_size=32)
    decoder = FastDecoder(model, batch_size=1, max_length=64)
    assert decoder.fused and decoder.plan is not None
    assert decoder.plan.layers[0].qkv_folded is not None  # norms folded, int8 kernel scales x
    prompts = random_prompts((5, 17, 2, 11), seed=13)
    graphed = generate_fast(model, prompts, max_new_tokens=12, use_cuda_graph=True)
    for prompt, row in zip(prompts, graphed):  # the int8 modules' own forward: norm, then product
        assert row.tolist() == hf_greedy(model, prompt, 12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_graph_step_matches_eager() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    model = tiny_llama().cuda()
    prompts = random_prompts((4, 10), seed=10)
    compiled = generate_fast(model, prompts, max_new_tokens=8, compile_step=True)
    eager = generate_fast(model, prompts, max_new_tokens=8, use_cuda_graph=False)
    assert torch.equal(compiled, eager)


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_token_by_token_decoding_equals_generate_fast_and_transformers(kv_heads: int) -> None:
    model = tiny_llama(seed=3, kv_heads=kv_heads)
    for prompt in random_prompts((1, 7, 30), seed=12):
        decoder = fast_decode.stream_decoder(model, len(prompt), 12)
        logits = decoder.start(torch.tensor([prompt]), 12)
        tokens = []
        for _ in range(12):
            tokens.append(int(logits[0].argmax()))
            logits = decoder.advance(torch.tensor(tokens[-1:]))
        assert tokens == generate_fast(model, [prompt], max_new_tokens=12)[0].tolist()
        assert tokens == hf_greedy(model, prompt, 12)


def test_cpu_steps_over_the_written_rows_equal_steps_over_the_whole_cache() -> None:
    model = tiny_llama(seed=4, kv_heads=2)
    prompt = torch.tensor(random_prompts((9,), seed=13))
    logits = {}
    for sliced in (True, False):
        decoder = FastDecoder(model, batch_size=1, max_length=64)
        decoder.slice_cache = sliced
        decoder.start(prompt, 6)
        logits[sliced] = torch.stack([decoder.advance(torch.tensor([t]))[0] for t in (5, 9, 2)])
    torch.testing.assert_close(logits[True], logits[False], rtol=1e-5, atol=1e-5)


def test_stream_decoder_is_one_per_model_and_refuses_a_full_cache() -> None:
    model = tiny_llama(seed=5)
    short = fast_decode.stream_decoder(model, 10, 20)
    assert fast_decode.stream_decoder(model, 30, 40) is short  # same length bucket
    longer = fast_decode.stream_decoder(model, 100, 100)
    assert longer.max_length == 2 * fast_decode.LENGTH_BUCKET
    assert fast_decode._STREAMS[model] is longer  # replaced, not kept beside the short one
    decoder = FastDecoder(model, batch_size=1, max_length=8)
    decoder.start(torch.tensor([[3, 4, 5]]), 6)
    for token in range(5):
        decoder.advance(torch.tensor([token]))
    with pytest.raises(ValueError, match="full"):
        decoder.advance(torch.tensor([1]))
    with pytest.raises(ValueError, match="length 8"):
        decoder.start(torch.tensor([[3, 4, 5]]), 7)


@pytest.mark.parametrize("kernel", [True, False])
def test_cpu_projections_use_packed_panels_or_in_out_copies_of_the_weights(
    monkeypatch: pytest.MonkeyPatch, kernel: bool
) -> None:
    if kernel and not cpu_gemv.is_available():
        pytest.skip("the panel GEMV kernel needs cc and AVX-512F")
    monkeypatch.setattr(cpu_gemv, "is_available", lambda: kernel)
    model = tiny_llama(kv_heads=2)
    plan = FastDecoder(model, batch_size=1, max_length=8).plan
    assert plan is not None
    layer, attn = plan.layers[0], model.model.layers[0].self_attn
    for projection in (layer.qkv, layer.o, plan.head):
        assert (projection.packed, projection.transposed) == (kernel, not kernel)
    if kernel:
        assert layer.qkv.panels is not None and layer.qkv.panels.shape == (2, 64, 64)
    else:
        assert layer.qkv.weight_copy is not None
        assert layer.qkv.weight_copy.shape == (64, 64 + 2 * 32)
    expected = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
    assert torch.equal(layer.qkv.weight(), expected)
    for rows in (1, fast_decode.GEMV_ROWS + 1):  # the kernel, then the batched product
        h, x = torch.randn(rows, 64), torch.randn(rows, 64)
        torch.testing.assert_close(layer.o.add_to(x.clone(), h), x + attn.o_proj(h))
        torch.testing.assert_close(
            layer.qkv(h), torch.cat([attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)], dim=-1)
        )


@pytest.mark.skipif(not cpu_gemv.is_available(), reason="needs cc and AVX-512F")
def test_cpu_decoding_with_the_gemv_kernel_equals_decoding_with_torch_mm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs: dict[tuple[bool, int], torch.Tensor] = {}
    for kernel in (True, False):
        monkeypatch.setattr(cpu_gemv, "is_available", lambda kernel=kernel: kernel)
        model = tiny_llama(seed=6, kv_heads=2)  # a fresh model: no plan shared between runs
        for prompt in random_prompts((3, 20), seed=14):
            decoder = FastDecoder(model, batch_size=1, max_length=64)
            logits = [decoder.start(torch.tensor([prompt]), 10)[0]]
            for _ in range(9):
                logits.append(decoder.advance(logits[-1].argmax()[None])[0])
            runs[kernel, len(prompt)] = torch.stack(logits)
    for length in (3, 20):
        packed, plain = runs[True, length], runs[False, length]
        assert torch.equal(packed.argmax(-1), plain.argmax(-1))
        torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)
