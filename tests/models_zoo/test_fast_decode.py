from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from models_zoo.fast_decode import FastDecoder, generate_fast, left_pad
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
def test_compiled_graph_step_matches_eager() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    model = tiny_llama().cuda()
    prompts = random_prompts((4, 10), seed=10)
    compiled = generate_fast(model, prompts, max_new_tokens=8, compile_step=True)
    eager = generate_fast(model, prompts, max_new_tokens=8, use_cuda_graph=False)
    assert torch.equal(compiled, eager)
