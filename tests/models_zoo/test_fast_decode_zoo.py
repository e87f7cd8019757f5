"""The zoo's dense and LongNet models on the static-cache decoder, against their plain path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models_zoo import fast_decode, serving
from models_zoo.attention import dilated_attention
from models_zoo.baseline_transformer import DenseConfig, DenseForCausalLM
from models_zoo.dilated_transformer import LongNetConfig, LongNetForCausalLM
from models_zoo.fast_decode import _DilatedDecode, _llama_shape, generate_fast
from models_zoo.quantization import quantize_model_int8

VOCAB = 101
SIZES = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 96,
    "max_position_embeddings": 512,
}


def zoo_model(arch: str, seed: int = 0) -> DenseForCausalLM | LongNetForCausalLM:
    torch.manual_seed(seed)
    if arch == "dense":
        return DenseForCausalLM(DenseConfig(**SIZES)).eval()
    # r not dividing w, a schedule whose segments the prompt and the new tokens both cross.
    config = LongNetConfig(segment_lengths=[16, 24, 64], dilation_rates=[1, 3, 4], **SIZES)
    return LongNetForCausalLM(config).eval()


def plain_greedy(model: torch.nn.Module, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    out = model.generate(  # type: ignore[operator]
        ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
    )
    return out[:, ids.shape[1] :]


def test_dilated_decode_step_equals_the_plain_branch_mixing_on_random_inputs() -> None:
    model = zoo_model("longnet")
    shape = _llama_shape(model)
    assert shape.schedule == ((16, 24, 64), (1, 3, 4))
    step = _DilatedDecode(shape, torch.float32, torch.device("cpu"))
    generator = torch.Generator().manual_seed(3)
    B, H, D, L = 2, 4, 16, 160
    keys = torch.randn(B, H, L, D, generator=generator)
    values = torch.randn(B, H, L, D, generator=generator)
    for p in (0, 1, 15, 16, 23, 24, 47, 63, 64, 100, 159):  # segment starts, ends, interiors
        q = torch.randn(B, H, 1, D, generator=generator)
        index, bias = step.keys(torch.full((B, 1), p))
        out = step.attend(q, keys, values, index, bias).view(B, 1, H, D)
        expected = dilated_attention(
            q.transpose(1, 2),
            keys[:, :, : p + 1].transpose(1, 2),
            values[:, :, : p + 1].transpose(1, 2),
            segment_lengths=shape.schedule[0],
            dilation_rates=shape.schedule[1],
        )  # the plain path: T = 1 query after p keys
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["dense", "longnet"])
def test_zoo_greedy_tokens_equal_the_plain_path(arch: str) -> None:
    model = zoo_model(arch)
    ids = torch.randint(1, VOCAB, (3, 70), generator=torch.Generator().manual_seed(4))
    fast = generate_fast(model, ids, max_new_tokens=40)
    assert torch.equal(fast, plain_greedy(model, ids, 40))
    # A second call reuses the decoder (same shape) and gives the same tokens.
    assert torch.equal(generate_fast(model, ids, max_new_tokens=40), fast)


def test_zoo_plan_fuses_projections_and_uses_fused_norms() -> None:
    model = zoo_model("dense")
    generate_fast(model, [[1, 2, 3]], max_new_tokens=2)
    plan = fast_decode._PLANS[model]
    layer = plan.layers[0]
    assert layer.qkv.kind == "dense" and layer.gate_up is not None
    assert layer.norm1 is not model.model.layers[0].input_layernorm  # F.rms_norm, not the module


def test_dense_zoo_model_decodes_left_padded_batches_exactly() -> None:
    model = zoo_model("dense")
    generator = torch.Generator().manual_seed(5)
    prompts = [torch.randint(1, VOCAB, (n,), generator=generator).tolist() for n in (9, 30, 4)]
    batched = generate_fast(model, prompts, max_new_tokens=12)
    for prompt, row in zip(prompts, batched):
        alone = plain_greedy(model, torch.tensor([prompt]), 12)[0]
        assert row.tolist() == alone.tolist()


def test_longnet_refuses_padded_batches() -> None:
    model = zoo_model("longnet")
    assert fast_decode.needs_unpadded(model) and not fast_decode.needs_unpadded(zoo_model("dense"))
    with pytest.raises(ValueError, match="no padding"):
        generate_fast(model, [[1, 2, 3], [4, 5]], max_new_tokens=3)


def test_int8_longnet_decodes_like_its_plain_path() -> None:
    model = quantize_model_int8(zoo_model("longnet", seed=2), block_size=32)
    ids = torch.randint(1, VOCAB, (2, 40), generator=torch.Generator().manual_seed(6))
    assert torch.equal(generate_fast(model, ids, max_new_tokens=30), plain_greedy(model, ids, 30))


@pytest.mark.parametrize("arch", ["dense", "longnet"])
def test_serving_zoo_checkpoints_through_the_fast_path_equals_plain(
    arch: str, tiny_checkpoints: dict[str, Path]
) -> None:
    served = serving.load(tiny_checkpoints[arch], device="cpu")
    assert not served.use_fast_decode  # CPU default: the plain path
    prompts = ["The cat", "A dog sat on", "x", "The for statement", "The dog"]
    plain = served.generate(prompts, max_new_tokens=7, stop=["zz"])
    served.use_fast_decode = True
    try:
        fast = served.generate_with_stats(prompts, max_new_tokens=7, stop=["zz"])
    finally:
        served.use_fast_decode = False
    assert fast.texts == plain and fast.new_tokens > 0


@pytest.mark.parametrize("arch", ["dense", "longnet", "longnet-lm"])
def test_warm_up_decoding_runs_for_zoo_models(arch: str) -> None:
    # serving.load warms every fast-decoded CUDA model up: the same decoding on the CPU here
    # (the paper's LM schedule too, whose segments are far longer than the 2-token prompt).
    if arch == "longnet-lm":
        torch.manual_seed(0)
        config = LongNetConfig(
            segment_lengths=[2048, 4096, 8192, 16384, 32768], dilation_rates=[1, 2, 4, 6, 12],
            **SIZES,
        )  # fmt: skip
        model: torch.nn.Module = LongNetForCausalLM(config).eval()
    else:
        model = zoo_model(arch)
    fast_decode._warm_up_runs(model, torch.device("cpu"))
    assert fast_decode.warm_up(model) == 0.0  # on the CPU warm_up itself does nothing
