"""Scoring invariance (batch size, order, co-requests) and lm-eval's special-token encoding."""

from __future__ import annotations

import inspect
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from models_zoo import serving
from models_zoo.scoring import PrefixTreeScorer

DEMOS = "Passage: the fox jumps over the dog. Question: Is it true? Answer: yes\n\n" * 3


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    out = []
    for i in range(16):
        context = DEMOS + f"Passage: dog {i} and fox {i * 7}. Question: is {i} true?\nAnswer:"
        out += [(context, " yes"), (context, " no"), (context, " Maybe not so")]
    return out + [("", "hello there"), ("short", " x"), ("Answer: ", "yes")]


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_model_dir"])
def test_fp32_scores_are_bit_identical_for_any_batch_size_order_and_subset(
    fixture: str, pairs: list[tuple[str, str]], request: pytest.FixtureRequest
) -> None:
    served = serving.load(request.getfixturevalue(fixture), device="cpu")
    reference = served.loglikelihood(pairs, batch_size=1)
    for batch_size in (1, 8, 32):
        for seed in (0, 1):
            order = list(range(len(pairs)))
            random.Random(seed).shuffle(order)
            got = served.loglikelihood([pairs[i] for i in order], batch_size=batch_size)
            assert [got[order.index(i)] for i in range(len(pairs))] == reference
    assert served.loglikelihood(pairs[::5], batch_size=8) == reference[::5]  # a resumed part
    assert [served.loglikelihood([pair])[0] for pair in pairs[:4]] == reference[:4]
    plain = served.loglikelihood(pairs, prefix_cache=False, invariant=False, batch_size=8)
    assert plain == pytest.approx(reference, abs=1e-5)


def test_zoo_models_are_batch_invariant_too(tiny_checkpoints: dict[str, Path]) -> None:
    served = serving.load(tiny_checkpoints["longnet"], device="cpu")
    pairs = [("The cat sat", " on the mat"), ("A", " b"), ("The cat sat", " down"), ("", "Hi")]
    reference = served.loglikelihood(pairs, batch_size=1)
    assert served.loglikelihood(pairs[::-1], batch_size=32)[::-1] == reference


def test_a_bos_tokenizer_scores_as_lm_eval_encodes(tiny_llama_dir: Path) -> None:
    served = serving.load(tiny_llama_dir, device="cpu")
    bos = served.tokenizer.bos_token_id
    tokens, count = served.encode_pair("Question: is it?\nAnswer:", " yes")
    whole = served.tokenizer("Question: is it?\nAnswer: yes")["input_ids"]
    assert (
        whole[0] == bos
        and tokens == whole
        and count == len(whole) - len(served.tokenizer("Question: is it?\nAnswer:")["input_ids"])
    )
    # A context that already starts with the BOS text gets no second BOS (lm-eval's rule).
    tokens, _ = served.encode_pair("<s>Question:", " yes")
    assert tokens.count(bos) == 1
    # An empty context: BOS alone as context, the continuation without special tokens.
    tokens, count = served.encode_pair("", "hello")
    assert tokens[0] == bos and count == len(tokens) - 1
    # "none": lm-eval's add_bos_token=False.
    tokens, _ = served.encode_pair("Question:", " yes", special_tokens="none")
    assert bos not in tokens
    with_bos = served.loglikelihood([("Question: is it?\nAnswer:", " yes")])[0]
    without = served.loglikelihood([("Question: is it?\nAnswer:", " yes")], special_tokens="none")[
        0
    ]
    assert with_bos != without
    settings = served.scoring_settings()
    assert settings["special_tokens_added"] == [bos] and settings["empty_context_token"] == bos


def test_bos_scores_equal_a_plain_forward_pass_over_the_bos_sequence(tiny_llama_dir: Path) -> None:
    served = serving.load(tiny_llama_dir, device="cpu")
    context, continuation = "Passage: the fox. Question: is it?\nAnswer:", " yes it is"
    [score] = served.loglikelihood([(context, continuation)])
    context_ids = served.tokenizer(context)["input_ids"]
    whole = served.tokenizer(context + continuation)["input_ids"]
    with torch.inference_mode():
        logprobs = torch.log_softmax(served.model(torch.tensor([whole])).logits[0], dim=-1)
    expected = sum(float(logprobs[i - 1, whole[i]]) for i in range(len(context_ids), len(whole)))
    assert score == pytest.approx(expected, abs=1e-5)


def test_invariant_mode_runs_a_shared_context_once(tiny_llama_dir: Path) -> None:
    served = serving.load(tiny_llama_dir, device="cpu")
    context = DEMOS + "Passage: a fox! Question: was it?\nAnswer:"
    answers = [" yes it is", " no it is not", " Maybe not so", " x"]
    encoded = [served.encode_pair(context, answer) for answer in answers]
    context_tokens = len(encoded[0][0]) - encoded[0][1]
    before = served.tokens_processed
    served.loglikelihood([(context, answer) for answer in answers])
    expected = context_tokens + sum(count - 1 for _, count in encoded)
    assert served.tokens_processed - before == expected


def _random_requests(seed: int, vocab: int) -> list[tuple[list[int], int]]:
    """Random token requests shaped like few-shot scoring: unrelated contexts of many lengths
    (k = 0), contexts under a shared demonstration block (k > 0), several answers per context,
    answers of one to four tokens."""
    rng = random.Random(seed)
    demos = [rng.randrange(vocab) for _ in range(rng.randrange(20, 90))]
    requests = []
    for doc in range(24):
        context = [rng.randrange(vocab) for _ in range(rng.randrange(1, 120))]
        if doc % 2:
            context = demos + context
        for _ in range(rng.randrange(1, 4)):
            answer = [rng.randrange(vocab) for _ in range(rng.randrange(1, 5))]
            requests.append((context + answer, len(answer)))
    return requests


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gqa_llama_dir", "tiny_model_dir"])
@pytest.mark.parametrize("chunk_tokens", [8, 64])
def test_invariant_chunks_batched_across_contexts_equal_each_request_alone(
    fixture: str, chunk_tokens: int, request: pytest.FixtureRequest
) -> None:
    # Equal-width chunks of different contexts share a pass and the scored positions of a
    # call share one head GEMM: each request's fp32 score must equal its score computed alone.
    served = serving.load(request.getfixturevalue(fixture), device="cpu")
    model = served.model
    argument = (
        "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    )

    def scorer(**options: Any) -> PrefixTreeScorer:
        return PrefixTreeScorer(model, cache_argument=argument, **options)

    for seed in (0, 1):
        requests = _random_requests(seed, model.config.vocab_size)
        together = scorer(chunk_tokens=chunk_tokens).score(requests, batch_size=32)
        assert (
            scorer(chunk_tokens=chunk_tokens).score(requests[::-1], batch_size=5)
            == (together[::-1])
        )
        alone = [scorer(chunk_tokens=chunk_tokens).score([r], batch_size=1)[0] for r in requests]
        assert together == alone
        plain = scorer(prefix_cache=False).score(requests, batch_size=8)
        assert together == pytest.approx(plain, abs=1e-5)


def test_tails_and_answers_of_different_docs_share_passes(tiny_model_dir: Path) -> None:
    # k = 0: unrelated contexts whose tails (after the last chunk boundary) have different
    # widths, and whose first answer tokens sit at different depths. Tails share padded
    # passes and the answers' last chunks share passes on padded caches; scores stay those
    # of each request alone.
    served = serving.load(tiny_model_dir, device="cpu")
    model = served.model
    rng = random.Random(3)
    requests = []
    for _ in range(12):
        context = [rng.randrange(model.config.vocab_size) for _ in range(rng.randrange(9, 40))]
        for answer in ([5, 6], [7, 8], [9]):
            requests.append((context + answer, len(answer)))
    passes = []
    hook = model.base_model.register_forward_pre_hook(lambda *_: passes.append(1))
    try:
        scorer = PrefixTreeScorer(model, cache_argument=served._cache_argument, chunk_tokens=8)
        together = scorer.score(requests, batch_size=32)
        shared = len(passes)
        alone = [
            PrefixTreeScorer(model, cache_argument=served._cache_argument, chunk_tokens=8).score(
                [r], batch_size=1
            )[0]
            for r in requests
        ]
    finally:
        hook.remove()
    assert together == alone
    # Each context alone takes at least two passes (its tail, then its answers' tokens).
    assert shared < 12
    plain = PrefixTreeScorer(model, cache_argument=served._cache_argument, prefix_cache=False)
    assert together == pytest.approx(plain.score(requests, batch_size=8), abs=1e-5)


def test_a_padded_tail_stops_at_the_last_learned_position() -> None:
    # n_positions = 100 is no multiple of the tail alignment: a 98-token input's tail
    # (34 tokens after the 64-token chunk) must not be padded past position 99.
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=100, n_embd=32, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    rng = random.Random(0)
    requests = [([rng.randrange(50) for _ in range(99)], 2), ([1, 2, 3, 4], 1)]
    argument = (
        "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    )
    chunked = PrefixTreeScorer(model, cache_argument=argument, chunk_tokens=64)
    plain = PrefixTreeScorer(model, cache_argument=argument, prefix_cache=False)
    got = chunked.score(requests, batch_size=4)
    assert got == pytest.approx(plain.score(requests, batch_size=4), abs=1e-5)


@pytest.mark.parametrize("special_tokens", ["tokenizer", "none"])
def test_batched_pair_encoding_equals_encoding_each_text_alone(
    tiny_llama_dir: Path, pairs: list[tuple[str, str]], special_tokens: str
) -> None:
    served = serving.load(tiny_llama_dir, device="cpu")
    tokenizer = served.tokenizer

    def encode(text: str) -> list[int]:
        plain = special_tokens == "none" or text.startswith(str(tokenizer.bos_token))
        return list(tokenizer(text, add_special_tokens=not plain)["input_ids"])

    def reference(context: str, continuation: str) -> tuple[list[int], int]:
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        context_tokens = encode(context)
        continuation_tokens = encode(context + continuation)[len(context_tokens) :]
        return context_tokens + continuation_tokens, len(continuation_tokens)

    cases = [p for p in pairs if p[0]] + [("<s>Question:", " yes"), ("Answer: ", "no ")]
    expected = [reference(context, continuation) for context, continuation in cases]
    assert served.encode_pairs(cases, special_tokens=special_tokens) == expected


def test_gpt2_tanh_gelu_runs_fused_within_rounding_of_transformers(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM
    from transformers.activations import NewGELUActivation

    served = serving.load(tiny_model_dir, device="cpu")
    assert served.scoring_settings()["fused_activations"] == [
        "NewGELUActivation:sigmoid-form-on-cpu"
    ]
    assert not any(isinstance(m, NewGELUActivation) for m in served.model.modules())
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert any(isinstance(m, NewGELUActivation) for m in reference.modules())
    context, continuation = "Passage: the fox. Question: is it?\nAnswer:", " yes it is"
    [score] = served.loglikelihood([(context, continuation)])
    tokens, count = served.encode_pair(context, continuation)
    with torch.inference_mode():
        logprobs = torch.log_softmax(reference(torch.tensor([tokens])).logits[0], dim=-1)
    expected = sum(
        float(logprobs[i - 1, tokens[i]]) for i in range(len(tokens) - count, len(tokens))
    )
    assert score == pytest.approx(expected, abs=1e-5)


def test_tanh_gelu_sigmoid_form_equals_transformers_module_on_random_inputs() -> None:
    from transformers.activations import NewGELUActivation

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 33, 129, generator=generator) * 4
    x[0, 0, :4] = torch.tensor([-1e4, 1e4, 0.0, -0.0])
    expected = NewGELUActivation()(x)
    with torch.inference_mode():
        fast = serving.TanhGelu()(x.clone())
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=2e-6)
    y = x.clone().requires_grad_()  # autograd takes torch's kernel, no in-place passes
    serving.TanhGelu()(y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


@pytest.mark.parametrize("fixture", ["tiny_gqa_llama_dir", "tiny_model_dir"])
def test_full_chunks_go_on_in_place_with_the_bits_of_a_copy(
    fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long unrelated contexts (lm-eval's per-doc demonstrations): a pass's rows that go on with
    # full chunks write into its buffers in place; the scores equal those of copying each
    # row's cache into a new buffer, bit for bit.
    from models_zoo import scoring

    served = serving.load(request.getfixturevalue(fixture), device="cpu")
    model = served.model
    rng = random.Random(5)
    requests = []
    for _ in range(10):
        context = [rng.randrange(model.config.vocab_size) for _ in range(rng.randrange(40, 200))]
        for answer in ([5, 6], [7]):
            requests.append((context + answer, len(answer)))
    hits: list[bool] = []
    continue_in_place = scoring._continue_in_place

    def counted(caches: list[Any], reserve: int) -> Any:
        cache = continue_in_place(caches, reserve)
        hits.append(cache is not None)
        return cache

    def scorer() -> PrefixTreeScorer:
        return PrefixTreeScorer(model, cache_argument=served._cache_argument, chunk_tokens=16)

    monkeypatch.setattr(scoring, "_continue_in_place", counted)
    in_place = scorer().score(requests, batch_size=4)
    assert sum(hits) >= 10, hits
    monkeypatch.setattr(scoring, "_continue_in_place", lambda caches, reserve: None)
    assert scorer().score(requests, batch_size=4) == in_place
    assert [scorer().score([r], batch_size=1)[0] for r in requests[:4]] == in_place[:4]
