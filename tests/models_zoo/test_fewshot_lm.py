"""The few-shot LM adapter over serving: prefix-tree scoring, truncation, generation, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from evalcore.fewshot.lm import LanguageModel
from evalcore.fewshot.runner import run_fewshot
from evalcore.fewshot.schema import validate_results
from models_zoo import serving
from models_zoo.evaluate import main
from models_zoo.fewshot_lm import FewshotLM, load_fewshot_lm
from models_zoo.serving import ServedModel
from models_zoo.testing import make_tiny_causal_lm
from models_zoo.truncation import TrimmedContexts

DEMOS = "Passage: the fox jumps over the dog. Question: Is it true? Answer: yes\n\n" * 4


def reference_loglikelihood(served: ServedModel, context: str, continuation: str) -> float:
    """One plain forward pass over context + continuation, no grouping, cache or batching."""
    tokenizer = served.tokenizer
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    continuation_ids = whole[len(context_ids) :]
    ids = (context_ids or [tokenizer.eos_token_id]) + continuation_ids
    with torch.inference_mode():
        logprobs = torch.log_softmax(served.model(torch.tensor([ids])).logits[0], dim=-1)
    start = len(ids) - len(continuation_ids) - 1
    return sum(logprobs[start + i, t].item() for i, t in enumerate(continuation_ids))


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    out = []
    for i in range(12):
        context = DEMOS + f"Passage: dog {i} and fox {i * 7}. Question: is {i} true?\nAnswer:"
        out += [(context, " yes"), (context, " no"), (context, " Maybe not so")]
    return out + [("", "hello there"), ("short", " x"), (DEMOS * 3, " yes")]  # last: truncated


def test_adapter_satisfies_the_runner_protocol(tiny_model_dir: Path) -> None:
    model = load_fewshot_lm(tiny_model_dir)
    assert isinstance(model, LanguageModel)
    assert model.scoring["special_tokens"] == "tokenizer"
    assert model.scoring["special_tokens_added"] == []  # GPT-2-style: no BOS added


def test_prefix_cache_and_grouping_match_plain_forward_passes(tiny_model_dir: Path, pairs) -> None:  # type: ignore[no-untyped-def]
    served = serving.load(tiny_model_dir, device="cpu")
    fast = FewshotLM(served, min_prefix_tokens=8, invariant=False)
    plain = FewshotLM(served, prefix_cache=False, batch_size=1, invariant=False)
    got = fast.loglikelihood(pairs)
    assert got == pytest.approx(plain.loglikelihood(pairs), abs=1e-4)
    for index in (0, 1, 2, 36, 37):  # untruncated pairs against the plain reference
        expected = reference_loglikelihood(served, *pairs[index])
        assert got[index] == pytest.approx(expected, abs=1e-4)
    assert fast.tokens_processed < plain.tokens_processed  # the prefix ran once


def test_nested_prefixes_run_each_prompt_token_once(tiny_model_dir: Path) -> None:
    # Two docs under one demonstration block, each with three multi-token answers: the
    # tokens run through the model are the nodes of the inputs' prefix tree (the block once,
    # each doc prompt once, each answer for its own tokens), plus the doc's last prompt token
    # again in each answer's row (its prediction scores the answer's first token).
    served = serving.load(tiny_model_dir, device="cpu")
    model = FewshotLM(served, min_prefix_tokens=1, invariant=False)
    docs = [
        "Passage: the dog. Question: is it?\nAnswer:",
        "Passage: a fox! Question: was it?\nAnswer:",
    ]
    answers = [" yes it is", " no it is not", " Maybe not so"]
    pairs = [(DEMOS + doc, answer) for doc in docs for answer in answers]
    encode = served.tokenizer([c + x for c, x in pairs], add_special_tokens=False)["input_ids"]
    inputs = [tuple(ids[:-1]) for ids in encode]  # the last token is only a target
    tree = {ids[: i + 1] for ids in inputs for i in range(len(ids))}

    got = model.loglikelihood(pairs)
    assert model.tokens_processed == len(tree) + len(docs) * (len(answers) - 1)
    assert sum(len(ids) for ids in inputs) > 2 * len(tree)
    for index, pair in enumerate(pairs):
        assert got[index] == pytest.approx(reference_loglikelihood(served, *pair), abs=1e-4)


def test_trimmed_contexts_score_like_the_full_contexts(tmp_path: Path) -> None:
    short = make_tiny_causal_lm(tmp_path / "short", positions=48)  # the demo zoo's case
    model = FewshotLM(serving.load(short, device="cpu"), trim_contexts=False)
    trimmed = TrimmedContexts(model)
    long_pairs = [
        (DEMOS * 8 + f"Passage: dog {i}.\nAnswer:", x) for i in range(3) for x in (" yes", " no it")
    ]
    pairs = [*long_pairs, ("short", " x"), ("", "hello")]
    assert trimmed.loglikelihood(pairs) == pytest.approx(model.loglikelihood(pairs), abs=1e-5)
    tail = trimmed.tail(long_pairs[0][0])
    assert len(tail) < len(long_pairs[0][0]) / 2 and long_pairs[0][0].endswith(tail)
    assert trimmed.tail("short") == "short" and trimmed.name == model.name
    assert FewshotLM(model.served).loglikelihood(pairs) == trimmed.loglikelihood(pairs)


def test_generate_is_greedy_and_stops_at_stop_strings(tiny_model_dir: Path) -> None:
    model = load_fewshot_lm(tiny_model_dir)
    full = model.generate(["Question: Is it"], max_new_tokens=8, stop=())[0]
    assert model.generate(["Question: Is it"], max_new_tokens=8, stop=())[0] == full
    if len(full) > 2:
        cut = model.generate(["Question: Is it"], max_new_tokens=8, stop=[full[2:4]])[0]
        assert cut == full[: full.find(full[2:4])]


def test_real_tiny_model_runs_the_protocol_end_to_end(
    tiny_model_dir: Path, fewglue_dir: Path
) -> None:
    model = load_fewshot_lm(tiny_model_dir)
    results = run_fewshot(
        model, tasks=["copa", "wic"], splits=2, data_dir=fewglue_dir, limit=4, shots=(0, 1)
    )
    assert validate_results(results) == []
    assert results["model"]["digest"].startswith("sha256:")
    assert results["provenance"]["tokens_processed"] > 0
    assert results["provenance"]["scoring"]["special_tokens"] == "tokenizer"
    assert results["tasks"]["copa"]["test_records"] == 4


def test_cli_writes_a_valid_results_file(
    tiny_model_dir: Path, fewglue_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.json"
    argv = ["--model", str(tiny_model_dir), "--tasks", "copa", "--splits", "2", "--limit", "3"]
    code = main([*argv, "--shots", "0", "--data-dir", str(fewglue_dir), "--out", str(out)])
    assert code == 0
    document = json.loads(out.read_text())
    assert validate_results(document) == []
    assert document["protocol"]["splits"] == 2 and document["tasks"]["copa"]["file_digests"]


def test_cli_reports_a_missing_data_dir(tiny_model_dir: Path, tmp_path: Path) -> None:
    argv = ["--model", str(tiny_model_dir), "--data-dir", str(tmp_path / "none")]
    assert main([*argv, "--out", str(tmp_path / "r.json")]) == 2
    assert not (tmp_path / "r.json").exists()
