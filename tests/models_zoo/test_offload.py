from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from models_zoo.fast_decode import generate_fast
from models_zoo.offload import apply_cpu_offload, parse_size
from models_zoo.quantization import quantize_model_int8


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=101,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def layer_bytes(model: torch.nn.Module) -> int:
    layer = model.model.layers[0]
    return sum(p.numel() * p.element_size() for p in layer.parameters())


def non_layer_bytes(model: torch.nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    total = sum(t.numel() * t.element_size() for t in tensors)
    return total - sum(
        p.numel() * p.element_size() for layer in model.model.layers for p in layer.parameters()
    )


@pytest.mark.parametrize(
    ("size", "expected"),
    [(1024, 1024), ("2GiB", 2 * 2**30), ("500MB", 500_000_000), ("1.5 kb", 1500), ("7", 7)],
)
def test_parse_size_accepts_ints_and_units(size: int | str, expected: int) -> None:
    assert parse_size(size) == expected


@pytest.mark.parametrize("size", ["2 parsecs", "", "-3MB", -1])
def test_parse_size_rejects_garbage(size: int | str) -> None:
    with pytest.raises(ValueError):
        parse_size(size)


def test_offloaded_llama_output_is_identical_with_half_the_layers_offloaded() -> None:
    model = tiny_llama()
    tokens = torch.randint(1, 101, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(tokens).logits
    budget = non_layer_bytes(model) + 2 * layer_bytes(model)
    apply_cpu_offload(model, max_memory={"cpu": budget}, device="cpu")
    assert len(model.layer_streamer.offloaded) == 2
    with torch.no_grad():
        first = model(tokens).logits
        second = model(tokens).logits  # the wrap-around prefetch path
    assert torch.equal(first, expected) and torch.equal(second, expected)


def test_offloaded_layers_hold_no_device_copies_between_calls() -> None:
    model = tiny_llama()
    apply_cpu_offload(model, max_memory={"cpu": non_layer_bytes(model)}, device="cpu")
    streamer = model.layer_streamer
    with torch.no_grad():
        model(torch.ones(1, 4, dtype=torch.long))
    # Only the prefetched first offloaded layer (wrap-around) holds a copy.
    held = [i for i, entry in enumerate(streamer.offloaded) if entry.device_copies is not None]
    assert held == [0]
    for name, tensor in streamer.offloaded[1].host.items():
        assert (
            dict(streamer.offloaded[1].layer.named_parameters())[name].data_ptr()
            == tensor.data_ptr()
        )


def test_offloaded_gpt2_output_is_identical() -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=32, n_head=4, vocab_size=50)).eval()
    tokens = torch.randint(0, 50, (1, 9))
    with torch.no_grad():
        expected = model(tokens).logits
    apply_cpu_offload(model, max_memory={"cpu": "10MB"}, device="cpu")
    with torch.no_grad():
        assert torch.equal(model(tokens).logits, expected)


def test_offload_composes_with_int8_and_fast_decoding() -> None:
    model = quantize_model_int8(tiny_llama(), block_size=32)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12]]
    expected = generate_fast(model, prompts, max_new_tokens=6)
    resident = sum(b.numel() * b.element_size() for b in model.lm_head.buffers())
    resident += sum(b.numel() * b.element_size() for b in model.model.embed_tokens.buffers())
    apply_cpu_offload(model, max_memory={"cpu": resident + 4096}, device="cpu")
    assert len(model.layer_streamer.offloaded) == 4
    assert torch.equal(generate_fast(model, prompts, max_new_tokens=6), expected)


def test_budget_smaller_than_embeddings_is_rejected() -> None:
    with pytest.raises(ValueError, match="smaller than the non-layer weights"):
        apply_cpu_offload(tiny_llama(), max_memory={"cpu": "1KB"}, device="cpu")


def test_missing_budget_entry_is_rejected() -> None:
    with pytest.raises(ValueError, match="no entry for device cpu"):
        apply_cpu_offload(tiny_llama(), max_memory={"cuda": "1GiB"}, device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_offload_streams_layers_with_identical_output() -> None:
    reference = tiny_llama().cuda()
    tokens = torch.randint(1, 101, (2, 33), device="cuda")
    with torch.no_grad():
        expected = reference(tokens).logits
    model = tiny_llama()
    budget = non_layer_bytes(model) + 2 * layer_bytes(model)
    apply_cpu_offload(model, max_memory={"cuda": budget}, device="cuda")
    streamer = model.layer_streamer
    assert all(t.is_pinned() for entry in streamer.offloaded for t in entry.host.values())
    with torch.no_grad():
        for _ in range(3):
            assert torch.equal(model(tokens).logits, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_offloaded_fast_decoding_equals_resident() -> None:
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12]]
    expected = generate_fast(tiny_llama().cuda(), prompts, max_new_tokens=6)
    model = tiny_llama()
    apply_cpu_offload(model, max_memory={"cuda": non_layer_bytes(model)}, device="cuda")
    assert torch.equal(generate_fast(model, prompts, max_new_tokens=6), expected)
