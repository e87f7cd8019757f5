"""LongNet and dense models: configs, HF round trips, KV cache, generate(), fair comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

import models_zoo  # noqa: F401  (registers the Auto classes)
from models_zoo.baseline_transformer import DenseConfig, DenseForCausalLM
from models_zoo.decoder import DecoderForCausalLM
from models_zoo.dilated_transformer import LongNetConfig, LongNetForCausalLM

SIZES = {
    "vocab_size": 97,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "eos_token_id": 0,
}


def make_model(arch: str, seed: int = 0, **overrides: object) -> DecoderForCausalLM:
    torch.manual_seed(seed)
    if arch == "longnet":
        schedule = {"segment_lengths": [8, 16, 32], "dilation_rates": [1, 2, 4]}
        return LongNetForCausalLM(LongNetConfig(**{**SIZES, **schedule, **overrides})).eval()
    return DenseForCausalLM(DenseConfig(**{**SIZES, **overrides})).eval()


def token_ids(B: int, T: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 97, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"hidden_size": 30},
            r"hidden_size \(30\) must be a multiple of num_attention_heads \(4\)",
        ),
        ({"hidden_size": 12, "num_attention_heads": 4}, r"head_dim .* = 3 must be even"),
        ({"num_hidden_layers": 0}, "num_hidden_layers must be positive, got 0"),
        ({"dilation_rates": [2, 4, 8]}, r"dilation_rates \[2, 4, 8\] need at least one"),
        ({"segment_lengths": [8, 16]}, r"segment_lengths \[8, 16\] and dilation_rates"),
    ],
)
def test_config_rejects_bad_values_with_a_message_quoting_them(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LongNetConfig(**fields)


def test_auto_classes_resolve_both_model_types() -> None:
    for model_type, model_class in (
        ("ladder_longnet", LongNetForCausalLM),
        ("ladder_dense", DenseForCausalLM),
    ):
        config = AutoConfig.for_model(model_type, **SIZES)
        assert isinstance(AutoModelForCausalLM.from_config(config), model_class)


@pytest.mark.parametrize("arch", ["longnet", "dense"])
def test_save_and_from_pretrained_round_trip_gives_identical_logits(
    arch: str, tmp_path: Path
) -> None:
    model = make_model(arch)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    ids = token_ids(2, 41)
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("arch", ["longnet", "dense"])
def test_kv_cache_decoding_matches_full_forward(arch: str) -> None:
    model = make_model(arch)
    ids = token_ids(2, 45)  # crosses several 8/16/32 segment boundaries
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        cache = DynamicCache(config=model.config)
        pieces = [model(ids[:, :20], cache=cache).logits]
        pieces.append(model(ids[:, 20:23], cache=cache).logits)  # multi-token continuation
        pieces += [model(ids[:, t : t + 1], cache=cache).logits for t in range(23, 45)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["longnet", "dense"])
def test_hf_generate_with_cache_equals_greedy_full_forward(arch: str) -> None:
    model = make_model(arch)
    model.generation_config.pad_token_id = 0
    prompt = token_ids(1, 19)
    output = model.generate(prompt, max_new_tokens=16, do_sample=False, min_new_tokens=16)
    expected = prompt
    with torch.no_grad():
        for _ in range(16):
            next_token = model(expected, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            expected = torch.cat([expected, next_token], dim=1)
    torch.testing.assert_close(output, expected)


def test_models_share_every_block_except_attention() -> None:
    longnet, dense = make_model("longnet"), make_model("dense")
    longnet_shapes = {name: p.shape for name, p in longnet.state_dict().items()}
    assert longnet_shapes == {name: p.shape for name, p in dense.state_dict().items()}
    # Every submodule below the top-level class is the same type; only ``attend`` differs.
    assert [type(m) for m in longnet.model.modules()] == [type(m) for m in dense.model.modules()]
    longnet_attention = longnet.model.layers[0].self_attn
    assert longnet_attention.attend is not dense.model.layers[0].self_attn.attend
    assert isinstance(longnet.model.layers, torch.nn.ModuleList)
    assert len(longnet.model.layers) == SIZES["num_hidden_layers"]


def test_longnet_with_one_full_segment_equals_dense_model_with_same_weights() -> None:
    dense = make_model("dense")
    longnet = make_model("longnet", segment_lengths=[64], dilation_rates=[1])
    longnet.load_state_dict(dense.state_dict())
    ids = token_ids(2, 37)
    with torch.no_grad():
        torch.testing.assert_close(longnet(ids).logits, dense(ids).logits, atol=1e-5, rtol=1e-5)


def test_labels_give_mean_next_token_cross_entropy() -> None:
    model = make_model("dense")
    ids = token_ids(2, 12)
    output = model(ids, labels=ids)
    expected = torch.nn.functional.cross_entropy(
        output.logits[:, :-1].reshape(-1, 97), ids[:, 1:].reshape(-1)
    )
    torch.testing.assert_close(output.loss, expected)
    output.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_padding_in_attention_mask_is_refused() -> None:
    model = make_model("longnet")
    ids = token_ids(2, 6)
    mask = torch.ones_like(ids)
    mask[0, 0] = 0
    with pytest.raises(ValueError, match="padding"):
        model(ids, attention_mask=mask)
