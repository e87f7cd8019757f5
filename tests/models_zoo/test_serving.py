"""Serving API: loading zoo and transformers checkpoints, generation, scoring, statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models_zoo import serving
from models_zoo.serving import GenerationResult, ServedModel

ARCHES = ["dense", "longnet", "llama", "gpt2"]


@pytest.fixture(params=ARCHES)
def served(request: pytest.FixtureRequest, tiny_checkpoints: dict[str, Path]) -> ServedModel:
    return serving.load(tiny_checkpoints[request.param], device="cpu")


def full_forward_greedy(model: ServedModel, prompt: str, steps: int) -> list[int]:
    ids = torch.tensor([model.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    new: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            token = int(model.model(input_ids=ids, use_cache=False).logits[0, -1].argmax())
            new.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return new


def test_load_is_cached_per_process(tiny_checkpoints: dict[str, Path]) -> None:
    first = serving.load(tiny_checkpoints["dense"], device="cpu")
    assert serving.load(str(tiny_checkpoints["dense"]), device="cpu", dtype="float32") is first
    assert serving.load(tiny_checkpoints["dense"], device="cpu", dtype="bfloat16") is not first


def test_greedy_generation_with_cache_equals_full_forward_argmax(served: ServedModel) -> None:
    tokens = served._encode(served.generate(["The for statement"], max_new_tokens=12)[0])
    expected = full_forward_greedy(served, "The for statement", 12)
    eos = served.tokenizer.eos_token_id
    expected = expected[: expected.index(eos)] if eos in expected else expected
    assert served._decode(tokens) == served._decode(expected)


def test_batched_generation_equals_one_prompt_at_a_time(served: ServedModel) -> None:
    prompts = ["The cat", "A dog", "The for statement", "x"]
    batched = served.generate(prompts, max_new_tokens=6)
    assert batched == [served.generate([prompt], max_new_tokens=6)[0] for prompt in prompts]


def test_sampling_is_seeded_and_independent_of_batching(served: ServedModel) -> None:
    prompts = ["The cat", "A dog"]
    first = served.generate(prompts, max_new_tokens=8, temperature=1.0, seed=7)
    assert served.generate(prompts, max_new_tokens=8, temperature=1.0, seed=7) == first
    assert served.generate(prompts[:1], max_new_tokens=8, temperature=1.0, seed=7) == first[:1]
    assert served.generate(prompts, max_new_tokens=8, temperature=1.0, seed=8) != first


def test_stop_strings_cut_the_continuation_before_the_stop(served: ServedModel) -> None:
    text = served.generate(["The"], max_new_tokens=10, temperature=1.0, seed=1)[0]
    assert len(text) >= 3
    marker = text[2]
    stopped = served.generate(["The"], max_new_tokens=10, temperature=1.0, seed=1, stop=[marker])
    assert stopped[0] == text[: text.index(marker)]


def test_generate_with_stats_reports_tokens_time_and_memory(served: ServedModel) -> None:
    result = served.generate_with_stats(["The cat", "Hello"], max_new_tokens=5)
    assert isinstance(result, GenerationResult) and served.last_stats is result
    assert result.new_tokens > 0 and result.prompt_tokens > 0
    assert result.wall_time_s > 0 and result.tokens_per_s == pytest.approx(
        result.new_tokens / result.wall_time_s
    )
    assert result.peak_memory_bytes > 0 and result.device == "cpu"


def test_loglikelihood_equals_full_forward_log_probs(served: ServedModel) -> None:
    context, continuation = "The return statement", " leaves the function"
    [score] = served.loglikelihood([(context, continuation)])
    whole = served._encode(context + continuation)
    n_context = len(served._encode(context))
    ids = torch.tensor([whole])
    with torch.no_grad():
        log_probs = torch.log_softmax(served.model(input_ids=ids).logits[0].float(), dim=-1)
    expected = sum(float(log_probs[i - 1, whole[i]]) for i in range(n_context, len(whole)))
    assert score == pytest.approx(expected, abs=1e-4)


def test_loglikelihood_batching_and_whitespace_handling(served: ServedModel) -> None:
    pairs = [("The cat sat", " on the mat"), ("A", " b"), ("Question: ", "yes"), ("", "Hello")]
    batched = served.loglikelihood(pairs, batch_size=3)
    single = [served.loglikelihood([pair], batch_size=1)[0] for pair in pairs]
    assert batched == pytest.approx(single, abs=1e-4)
    # Trailing context whitespace moves to the continuation (lm-eval convention).
    assert batched[2] == pytest.approx(served.loglikelihood([("Question:", " yes")])[0], abs=1e-5)
    assert all(score < 0 for score in batched)
    assert served.loglikelihood([("The cat", "")]) == [0.0]


def test_digest_and_parameters_identify_the_weights(tiny_checkpoints: dict[str, Path]) -> None:
    dense = serving.load(tiny_checkpoints["dense"], device="cpu")
    longnet = serving.load(tiny_checkpoints["longnet"], device="cpu")
    assert len(dense.digest) == 64 and dense.digest != longnet.digest
    assert dense.num_parameters == sum(p.numel() for p in dense.model.parameters())
    assert dense.card is not None and dense.card["architecture"] == "ladder_dense"


def test_bad_arguments_raise_value_errors(tiny_checkpoints: dict[str, Path]) -> None:
    path = tiny_checkpoints["dense"]
    with pytest.raises(ValueError, match="quantize must be one of .* got 'int4'"):
        serving.load(path, quantize="int4")
    with pytest.raises(ValueError, match="dtype must be None or one of"):
        serving.load(path, dtype="int8")
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu' or 'cuda"):
        serving.load(path, device="tpu")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        serving.load(path / "missing")
    model = serving.load(path, device="cpu")
    with pytest.raises(ValueError, match="not a single string"):
        model.generate("The cat")  # type: ignore[arg-type]


def test_pickled_weights_are_refused(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    source = tiny_checkpoints["gpt2"]
    for path in source.iterdir():
        if path.suffix != ".safetensors":
            (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="pickled weights"):
        serving.load(tmp_path, device="cpu")


def test_mismatched_weights_are_refused(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    for path in tiny_checkpoints["dense"].iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "model.safetensors")
    weights.pop("model.norm.weight")
    weights["model.extra.weight"] = torch.zeros(2)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="missing_keys.*model.norm.weight"):
        serving.load(tmp_path, device="cpu")


def test_fast_decode_path_equals_plain_generation_for_llama(
    tiny_checkpoints: dict[str, Path],
) -> None:
    served = serving.load(tiny_checkpoints["llama"], device="cpu")
    prompts = ["The cat", "A dog sat on", "x", "The for statement"]
    plain = served.generate(prompts, max_new_tokens=7, stop=["zz"])
    served.use_fast_decode = True
    try:
        fast = served.generate_with_stats(prompts, max_new_tokens=7, stop=["zz"])
    finally:
        served.use_fast_decode = False
    assert fast.texts == plain
    assert fast.new_tokens > 0


def test_int8_and_offload_load_through_serving_and_match_closely(
    tiny_checkpoints: dict[str, Path],
) -> None:
    plain = serving.load(tiny_checkpoints["llama"], device="cpu")
    pairs = [("The cat", " sat"), ("A dog", " ran away")]
    reference = plain.loglikelihood(pairs)
    offloaded = serving.load(tiny_checkpoints["llama"], device="cpu", max_memory={"cpu": 80_000})
    assert offloaded.model.layer_streamer is not None  # some layers really are streamed
    assert offloaded.loglikelihood(pairs) == pytest.approx(reference, abs=1e-5)
    quantized = serving.load(tiny_checkpoints["llama"], device="cpu", quantize="int8")
    assert quantized.loglikelihood(pairs) == pytest.approx(reference, rel=0.05, abs=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_serving_uses_graph_decoder_and_matches_plain_path(
    tiny_checkpoints: dict[str, Path],
) -> None:
    served = serving.load(tiny_checkpoints["llama"], device="cuda", dtype="float32")
    assert served.use_fast_decode
    prompts = ["The cat", "A dog sat on", "x"]
    fast = served.generate(prompts, max_new_tokens=9)
    served.use_fast_decode = False
    try:
        plain = served.generate(prompts, max_new_tokens=9)
    finally:
        served.use_fast_decode = True
    assert fast == plain


def test_a_fast_decoder_that_fails_its_warm_up_is_switched_off(
    tiny_checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    from models_zoo import fast_decode

    served = serving.load(tiny_checkpoints["llama"], device="cpu")
    flags = served.use_fast_decode, served.use_fast_chat
    expected = served.generate(["The cat"], max_new_tokens=5)
    try:
        served.use_fast_decode = served.use_fast_chat = True
        serving.warm_up_fast_decoder(served)  # CPU: nothing to compile, the decoder stays on
        assert served.use_fast_decode and served.use_fast_chat

        def broken(model: torch.nn.Module) -> float:
            raise RuntimeError("triton: out of resources")

        monkeypatch.setattr(fast_decode, "warm_up", broken)
        serving.warm_up_fast_decoder(served)
        assert not served.use_fast_decode and not served.use_fast_chat
        assert "failed its warm-up" in caplog.text and "out of resources" in caplog.text
        assert served.generate(["The cat"], max_new_tokens=5) == expected  # the plain path
    finally:
        served.use_fast_decode, served.use_fast_chat = flags
