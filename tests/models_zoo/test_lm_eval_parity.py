"""Ladder vs lm-evaluation-harness 0.4.13 on a tiny local Llama whose tokenizer adds BOS.

``expected.json`` was written by ``bench/fewshot_parity.py`` (lm-eval in a throwaway venv,
batch 1, float32, few-shot seed 1234, ``--log_samples``). Ladder reads the same task files,
builds the same prompts (lm-eval's sampler), and must give the same log-likelihoods within
1e-4 and the same accuracies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evalcore.fewshot.lmeval import load_task_file
from evalcore.fewshot.lmeval_runner import build_task_requests, run_task_files
from evalcore.fewshot.runner import RequestTable
from models_zoo import serving
from models_zoo.checkpoint import weights_digest
from models_zoo.fewshot_lm import FewshotLM

FIXTURE = Path(__file__).parent / "fixtures" / "lm_eval_parity"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
RUNS = EXPECTED["runs"]


@pytest.fixture(scope="module")
def model(tiny_llama_dir: Path) -> FewshotLM:
    assert weights_digest(tiny_llama_dir) == EXPECTED["model"]["weights_digest"], (
        "make_tiny_llama changed: rerun bench/fewshot_parity.py"
    )
    return FewshotLM(serving.load(tiny_llama_dir, device="cpu"))


def _label(run: dict[str, Any]) -> str:
    return f"{run['task_file']}-k{run['num_fewshot']}-{'chat' if run['chat'] else 'plain'}"


@pytest.mark.parametrize("run", RUNS, ids=_label)
def test_prompts_and_loglikelihoods_equal_lm_eval(model: FewshotLM, run: dict[str, Any]) -> None:
    task = load_task_file(FIXTURE / run["task_file"])
    table = RequestTable()
    chat = model.render_chat if run["chat"] else None
    built = build_task_requests(task, table, num_fewshot=run["num_fewshot"], chat=chat)
    ours = [table.pairs[i] for ids in built.request_ids for i in ids]
    theirs = [(r["context"], r["continuation"]) for r in run["requests"]]
    assert ours == theirs  # same demonstrations, delimiters and chat rendering
    logliks = model.loglikelihood(ours)
    expected = [r["loglik"] for r in run["requests"]]
    assert logliks == pytest.approx(expected, abs=1e-4)
    assert model.greedy(ours) == [r["is_greedy"] for r in run["requests"]]


@pytest.mark.parametrize("run", RUNS, ids=_label)
def test_metrics_equal_lm_eval(model: FewshotLM, run: dict[str, Any]) -> None:
    document = run_task_files(
        model, [FIXTURE / run["task_file"]], num_fewshot=run["num_fewshot"], chat=run["chat"]
    )
    [block] = document["tasks"].values()
    for name, value in run["metrics"].items():
        ours = block["metrics"][name]
        if name == "perplexity":
            assert ours["value"] == pytest.approx(value, rel=1e-4)
        else:
            assert ours["mean"] == value  # identical accuracy
    scoring = document["provenance"]["scoring"]
    assert scoring["special_tokens"] == "tokenizer" and scoring["special_tokens_added"]
    assert document["protocol"]["chat_format"] is run["chat"]
