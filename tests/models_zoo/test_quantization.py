from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from models_zoo.quantization import (
    Int8BlockEmbedding,
    Int8BlockLinear,
    dequantize_blockwise,
    quantize_blockwise,
    quantize_model_int8,
    weight_memory_bytes,
)

VOCAB = 64


def tiny_llama(seed: int = 0, tie: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        tie_word_embeddings=tie,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def markov_text(n_rows: int, length: int, seed: int) -> torch.Tensor:
    """Token rows from a fixed sparse Markov chain: learnable 'text' with a low perplexity."""
    chain = torch.Generator().manual_seed(1234)
    successors = torch.randint(0, VOCAB, (VOCAB, 3), generator=chain)
    rng = torch.Generator().manual_seed(seed)
    rows = torch.empty(n_rows, length, dtype=torch.long)
    rows[:, 0] = torch.randint(0, VOCAB, (n_rows,), generator=rng)
    for t in range(1, length):
        pick = torch.randint(0, 3, (n_rows,), generator=rng)
        rows[:, t] = successors[rows[:, t - 1], pick]
    return rows


def perplexity(model: nn.Module, tokens: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(tokens).logits[:, :-1]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1))
    return math.exp(loss.item())


def test_blockwise_roundtrip_error_is_within_half_a_step_per_block() -> None:
    weight = torch.randn(8, 200, generator=torch.Generator().manual_seed(0)) * 0.02
    qweight, scales = quantize_blockwise(weight, 64)
    assert qweight.dtype == torch.int8 and qweight.shape == (8, 256) and scales.shape == (8, 4)
    restored = dequantize_blockwise(qweight, scales, 200, torch.float32)
    step = scales.repeat_interleave(64, dim=1)[:, :200]
    assert torch.all((restored - weight).abs() <= step / 2 + 1e-9)


def test_zero_block_quantizes_to_zero_without_nan() -> None:
    qweight, scales = quantize_blockwise(torch.zeros(2, 32), 16)
    assert torch.equal(dequantize_blockwise(qweight, scales, 32, torch.float32), torch.zeros(2, 32))


def test_int8_linear_matches_linear_on_dequantized_weight() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    quantized = Int8BlockLinear.from_linear(linear, block_size=32)
    x = torch.randn(3, 5, 96)
    expected = F.linear(x, quantized.dequantized_weight(torch.float32), linear.bias)
    torch.testing.assert_close(quantized(x), expected)
    relative = (quantized(x) - linear(x)).norm() / linear(x).norm()
    assert relative < 1e-2


def test_quantize_model_replaces_linears_and_embeddings_and_keeps_ties() -> None:
    model = quantize_model_int8(tiny_llama(tie=True), block_size=64)
    assert not any(isinstance(m, (nn.Linear, nn.Embedding)) for m in model.modules())
    assert isinstance(model.lm_head, Int8BlockLinear)
    assert isinstance(model.model.embed_tokens, Int8BlockEmbedding)
    assert model.lm_head.qweight.data_ptr() == model.model.embed_tokens.qweight.data_ptr()


def test_int8_weight_memory_is_at_most_055_of_bf16() -> None:
    bf16_bytes = weight_memory_bytes(tiny_llama().to(torch.bfloat16))
    int8_bytes = weight_memory_bytes(quantize_model_int8(tiny_llama().to(torch.bfloat16)))
    assert int8_bytes <= 0.55 * bf16_bytes, (int8_bytes, bf16_bytes)


def test_int8_perplexity_within_one_percent_on_held_out_text() -> None:
    model = tiny_llama(seed=1)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(60):
        train = markov_text(32, 48, seed=100 + step)  # fresh text every step: no memorising
        loss = model(train, labels=train).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    held_out = markov_text(16, 48, seed=3)
    before = perplexity(model, held_out)
    assert before < 8.0  # learned the chain (uniform would be 64)
    after = perplexity(quantize_model_int8(model, block_size=128), held_out)
    assert abs(after - before) / before < 0.01, (before, after)


def test_block_size_below_minimum_is_rejected() -> None:
    with pytest.raises(ValueError, match="block_size must be at least 16, got 8"):
        quantize_model_int8(tiny_llama(), block_size=8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_int8_linear_on_cuda_bf16_matches_cpu() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(256, 128)
    quantized = Int8BlockLinear.from_linear(linear, block_size=128)
    x = torch.randn(4, 256)
    expected = quantized(x)
    got = quantized.to("cuda")(x.cuda().bfloat16()).float().cpu()
    assert (got - expected).norm() / expected.norm() < 1e-2
