"""The GPU-shaped scorer (models_zoo.scoring_wide) against the plain full forward pass.

CPU tests (fp32, tight tolerance) run in CI; the ``gpu`` ones bound the bf16 spread of scores
across batch sizes and request orders on CUDA, where bit identity across shapes is not on offer.
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from evalcore.fewshot.cache import CachedLM, model_key
from models_zoo import serving
from models_zoo.fewshot_lm import FewshotLM
from models_zoo.scoring_wide import WideScorer

Request = tuple[list[int], int]
FP32_TOLERANCE = 1e-5  # nats per request, CPU fp32
# bf16 on CUDA: the same request scored in passes of other shapes (batch 1 / 8 / 32 / 256,
# shuffled) moves by rounding only. bf16 keeps 8 significant bits (relative step 2^-8 = 0.4 %),
# so hidden states differ in their last bit here and there and a token's log-probability by a
# few hundredths of a nat: the bound is 0.05 nats per scored token.
BF16_TOLERANCE_PER_TOKEN = 0.05


def _cache_argument(model: Any) -> str:
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _random_requests(seed: int, vocab: int) -> list[Request]:
    """Few-shot-shaped random token requests: two demonstration blocks (two (split, pattern)
    groups) and unrelated contexts (k = 0), one to three answers of one to four tokens per
    context (answers sharing their first tokens too), and empty continuations."""
    rng = random.Random(seed)
    blocks = [[rng.randrange(vocab) for _ in range(rng.randrange(40, 90))] for _ in range(2)]
    requests: list[Request] = []
    for doc in range(30):
        context = [rng.randrange(vocab) for _ in range(rng.randrange(1, 100))]
        if doc % 3:
            context = blocks[doc % 3 - 1] + context
        stem = [rng.randrange(vocab) for _ in range(rng.randrange(0, 2))]
        for _ in range(rng.randrange(1, 4)):
            answer = stem + [rng.randrange(vocab) for _ in range(rng.randrange(1, 4))]
            requests.append((context + answer, len(answer)))
        if doc % 7 == 0:
            requests.append((context, 0))
    return requests


def _reference(model: Any, requests: list[Request]) -> tuple[list[float], list[bool]]:
    """Each request alone through the model's own full forward pass (its own LM head)."""
    scores, greedy = [], []
    with torch.inference_mode():
        for tokens, count in requests:
            if count == 0:
                scores.append(0.0)
                greedy.append(True)
                continue
            logits = model(torch.tensor([tokens[:-1]], device=model.device)).logits[0].float()
            logprobs = torch.log_softmax(logits[-count:], dim=-1)
            targets = torch.tensor(tokens[-count:], device=model.device)
            scores.append(float(logprobs[torch.arange(count), targets].sum()))
            greedy.append(bool((logprobs.argmax(dim=-1) == targets).all()))
    return scores, greedy


@pytest.fixture(params=["tiny_llama_dir", "tiny_model_dir", "eager_llama"])
def model(request: pytest.FixtureRequest) -> Any:
    """The tiny Llama and GPT-2 under SDPA, and the Llama under eager attention (whose mask
    is additive)."""
    if request.param == "eager_llama":
        path = request.getfixturevalue("tiny_llama_dir")
        return AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    return serving.load(request.getfixturevalue(request.param), device="cpu").model


@pytest.mark.parametrize("fused_norms", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_wide_scores_equal_the_full_forward_pass_on_random_requests(
    model: Any, seed: int, fused_norms: bool
) -> None:
    """Also with the LlamaRMSNorm modules run as ``F.rms_norm`` (CUDA's default), and the
    last layer's MLP run at the scored positions only (always)."""
    requests = _random_requests(seed, model.config.vocab_size)
    expected, expected_greedy = _reference(model, requests)
    scorer = WideScorer(
        model,
        cache_argument=_cache_argument(model),
        min_prefix_tokens=8,
        min_group_saving=64,
        fused_norms=fused_norms,
    )
    got = scorer.score(requests, batch_size=32)
    assert got == pytest.approx(expected, abs=FP32_TOLERANCE)
    assert scorer.greedy == expected_greedy
    assert [got[i] for i, (_, count) in enumerate(requests) if count == 0] == [0.0] * 5
    # Two demonstration blocks run once each; the doc passes hold many rows each.
    assert scorer.passes <= 2 + 3


def test_wide_scores_agree_for_any_batch_size_order_and_without_prefix_sharing(
    tiny_llama_dir: Path,
) -> None:
    model = serving.load(tiny_llama_dir, device="cpu").model
    requests = _random_requests(2, model.config.vocab_size)
    argument = _cache_argument(model)
    wide = functools.partial(WideScorer, model, cache_argument=argument, min_group_saving=64)
    reference = wide().score(requests, batch_size=256)
    for batch_size in (1, 8, 32):
        order = list(range(len(requests)))
        random.Random(batch_size).shuffle(order)
        scorer = wide(token_budget=512, key_budget=2048)
        got = scorer.score([requests[i] for i in order], batch_size=batch_size)
        assert [got[order.index(i)] for i in range(len(requests))] == pytest.approx(
            reference, abs=FP32_TOLERANCE
        )
    recomputed = wide(share_prefix=False)
    assert recomputed.score(requests, batch_size=32) == pytest.approx(reference, abs=1e-5)
    shared = wide()
    shared.score(requests, batch_size=32)
    assert shared.tokens_processed < recomputed.tokens_processed


def test_a_docs_choices_and_its_demonstrations_are_computed_once(tiny_llama_dir: Path) -> None:
    served = serving.load(tiny_llama_dir, device="cpu")
    demos = "Passage: the fox jumps over the dog. Question: Is it true? Answer: yes\n\n" * 3
    answers = [" yes it is", " no it is not", " x"]
    contexts = [demos + f"Passage: a fox {i}! Question: was it {i}?\nAnswer:" for i in range(4)]
    requests = [served.encode_pair(c, a) for c in contexts for a in answers]
    argument = _cache_argument(served.model)
    scorer = WideScorer(served.model, cache_argument=argument, min_group_saving=64)
    scores = scorer.score(requests, batch_size=16)
    heads = [tokens[: len(tokens) - count] for tokens, count in requests[::3]]  # the contexts
    prefix = next(i for i in range(len(heads[0])) if len({h[i] for h in heads}) > 1)
    assert prefix >= len(served.tokenizer(demos.rstrip())["input_ids"]) - 1
    branches = sum(count - 1 for _, count in requests)  # each answer's tokens after its first
    assert scorer.tokens_processed == prefix + sum(len(h) - prefix for h in heads) + branches
    assert scorer.passes == 2  # the demonstration block, then one pass of four rows
    expected, _ = _reference(served.model, requests)
    assert scores == pytest.approx(expected, abs=FP32_TOLERANCE)
    # Saving fewer tokens than a group's passes cost, the block is recomputed in each row.
    alone = WideScorer(served.model, cache_argument=argument)  # default: 4,096 tokens
    assert alone.score(requests, batch_size=16) == pytest.approx(expected, abs=FP32_TOLERANCE)
    assert alone.passes == 1 and alone.tokens_processed > scorer.tokens_processed


@pytest.fixture
def wide_served(tiny_llama_dir: Path) -> Iterator[serving.ServedModel]:
    """The tiny Llama served with the wide scorer switched on, as on CUDA."""
    served = serving.load(tiny_llama_dir, device="cpu")
    served.use_wide_scoring = True
    yield served
    served.use_wide_scoring = False


def test_serving_uses_the_wide_scorer_when_switched_on_and_records_the_mode(
    wide_served: serving.ServedModel, tmp_path: Path
) -> None:
    pairs = [
        (f"Question {i}: is it so?\nAnswer:", answer)
        for i in range(6)
        for answer in (" yes", " no way")
    ]
    wide = FewshotLM(wide_served)
    assert wide.scoring["mode"] == "wide" and wide.batch_size == 256
    assert wide.scoring["fused_norms"] is False  # CPU: the model's own RMSNorm modules
    got = wide.loglikelihood(pairs)
    wide_served.use_wide_scoring = False
    invariant = FewshotLM(wide_served)
    assert invariant.scoring["mode"] == "invariant_chunks" and invariant.batch_size == 16
    assert got == pytest.approx(invariant.loglikelihood(pairs), abs=FP32_TOLERANCE)
    assert model_key(wide) != model_key(invariant)  # a cache never mixes the two modes


def test_a_resumed_wide_evaluation_reads_its_cache_and_scores_only_the_rest(
    wide_served: serving.ServedModel, tmp_path: Path
) -> None:
    pairs = [
        (f"Passage {i}. Is it {i % 3}?\nAnswer:", answer)
        for i in range(10)
        for answer in (" yes", " no")
    ]
    uninterrupted = FewshotLM(wide_served).loglikelihood(pairs)
    first = CachedLM(FewshotLM(wide_served), tmp_path, flush_every=4)
    first.loglikelihood(pairs[:8])  # a worker killed after these
    resumed = CachedLM(FewshotLM(wide_served), tmp_path, flush_every=4)
    got = resumed.loglikelihood(pairs)
    assert resumed.hits == 8 and resumed.misses == len(pairs) - 8
    assert got[:8] == first.loglikelihood(pairs[:8])
    assert got == pytest.approx(uninterrupted, abs=FP32_TOLERANCE)


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_model_dir"])
@pytest.mark.parametrize("special_tokens", ["tokenizer", "none"])
def test_batched_encoding_gives_each_pairs_own_tokens(
    fixture: str, special_tokens: str, request: pytest.FixtureRequest
) -> None:
    served = serving.load(request.getfixturevalue(fixture), device="cpu")
    bos = served.tokenizer.decode([served.tokenizer.bos_token_id or 0])
    contexts = ["Question: is it?\nAnswer:", "Answer: ", "", bos + "Question:", "x" * 300]
    pairs = [(c, x) for c in contexts for x in (" yes", "no", " Maybe not so", "")]
    expected = [served.encode_pair(c, x, special_tokens=special_tokens) for c, x in pairs]
    assert served.encode_pairs(pairs, special_tokens=special_tokens) == expected


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
def test_cuda_fp32_wide_scores_equal_the_cpu_reference(tiny_llama_dir: Path) -> None:
    cpu = serving.load(tiny_llama_dir, device="cpu").model
    requests = _random_requests(3, cpu.config.vocab_size)
    expected, _ = _reference(cpu, requests)
    model = serving.load(tiny_llama_dir, device="cuda", dtype="float32").model
    scorer = WideScorer(model, cache_argument=_cache_argument(model), min_group_saving=64)
    assert scorer.score(requests, batch_size=32) == pytest.approx(expected, abs=1e-4)


@pytest.mark.gpu
@cuda
def test_cuda_bf16_wide_scores_agree_across_batch_sizes_and_orders(tmp_path: Path) -> None:
    from models_zoo.testing import make_tiny_llama

    path = make_tiny_llama(tmp_path / "llama", layers=4, hidden=512, heads=8, kv_heads=2)
    served = serving.load(path, device="cuda", dtype="bfloat16")
    assert served.scoring_mode() == "wide"
    model = served.model
    requests = _random_requests(4, model.config.vocab_size)
    wide = functools.partial(WideScorer, model, cache_argument=_cache_argument(model))
    reference = wide(min_group_saving=64).score(requests, batch_size=256)
    worst = 0.0
    for batch_size in (1, 8, 32):
        for seed in (0, 1):
            order = list(range(len(requests)))
            random.Random(seed).shuffle(order)
            got = wide(min_group_saving=64, share_prefix=bool(seed)).score(
                [requests[i] for i in order], batch_size=batch_size
            )
            for i, (_, count) in enumerate(requests):
                difference = abs(got[order.index(i)] - reference[i])
                worst = max(worst, difference / max(count, 1))
                assert difference <= BF16_TOLERANCE_PER_TOKEN * count
    print(f"bf16 worst difference across batch sizes and orders: {worst:.4f} nats per token")
    fp32 = serving.load(path, device="cuda", dtype="float32").model
    expected, _ = _reference(fp32, requests)
    spread = max(abs(a - b) / max(c, 1) for a, b, (_, c) in zip(reference, expected, requests))
    print(f"bf16 wide vs fp32 full forward: {spread:.4f} nats per token at most")


def test_fused_norms_patch_only_llama_norms_and_restore_them(tiny_llama_dir: Path) -> None:
    from models_zoo.scoring_wide import _fused_norms

    model = serving.load(tiny_llama_dir, device="cpu").model
    norms = [m for m in model.modules() if hasattr(m, "variance_epsilon")]
    x = torch.randn(3, 5, model.config.hidden_size)
    expected = [norm(x) for norm in norms]
    with _fused_norms(model, True):
        assert all("forward" in vars(norm) for norm in norms)
        got = [norm(x) for norm in norms]
    assert not any("forward" in vars(m) for m in model.modules())
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
