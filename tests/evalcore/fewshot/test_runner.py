from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalcore.fewshot.data import load_task_data, records_to_docs, resolve_data_dir
from evalcore.fewshot.registry import get_task, task_names
from evalcore.fewshot.runner import (
    build_requests,
    prepare_task,
    run_fewshot,
    run_model,
)
from evalcore.fewshot.schema import FEWNLU_TASKS, validate_results

from .conftest import HashLM, OracleLM


def test_every_task_declares_two_patterns_and_fewnlu_tasks_are_registered() -> None:
    assert set(FEWNLU_TASKS) <= set(task_names())
    for name in task_names():
        assert len(get_task(name).patterns) >= 2


def test_oracle_model_scores_perfectly_on_every_task(data_dir: Path) -> None:
    # Exercises every label map, verbalizer and metric: a model that knows the gold answer
    # must get every metric to 1.0, whatever the pattern, k or normalization chosen.
    docs = {}
    for name in FEWNLU_TASKS:
        data = load_task_data(get_task(name), data_dir, limit=6)
        docs[name] = records_to_docs(get_task(name), data.pool + data.test)
    results = run_fewshot(
        OracleLM(docs), tasks=list(FEWNLU_TASKS), splits=2, data_dir=data_dir, limit=6
    )
    assert validate_results(results) == []
    for name in FEWNLU_TASKS:
        block = results["tasks"][name]
        assert {m: v["mean"] for m, v in block["metrics"].items()} == dict.fromkeys(
            get_task(name).metrics, 1.0
        )
    assert results["average"]["mean"] == 1.0 and results["average"]["complete"]


def test_results_are_identical_for_the_same_seed_and_valid(data_dir: Path) -> None:
    def run(seed: int) -> dict:
        out = run_fewshot(HashLM(), tasks=["cb", "copa"], splits=3, seed=seed, data_dir=data_dir)
        assert validate_results(out) == []
        return {"tasks": out["tasks"], "average": out["average"]}

    assert json.dumps(run(0)) == json.dumps(run(0))
    assert json.dumps(run(0)) != json.dumps(run(1))


def test_demonstrations_come_only_from_the_split_train_half(data_dir: Path) -> None:
    prepared = prepare_task(get_task("rte"), data_dir, splits=4, seed=0, limit=5)
    units, _ = build_requests(prepared, shots=(0, 3), seed=0)
    for unit in units:
        split = prepared.splits[unit.split]
        train_uids = {d.uid for d in prepared.train_docs(split)}
        assert set(unit.config["demos"]) <= train_uids
        assert len(unit.config["demos"]) == unit.config["k"]


def test_identical_requests_are_sent_once(data_dir: Path) -> None:
    model = HashLM()
    run_fewshot(model, tasks=["rte"], splits=4, data_dir=data_dir, limit=10, shots=(0,))
    # k = 0 prompts do not depend on the split: 2 patterns x 10 test docs x 2 choices once,
    # plus the dev halves (64 pool docs x 2 patterns x 2 choices, each doc on one dev side
    # in some splits).
    test_pairs = {p for p in model.requests if p[0].endswith("Answer:")}
    assert len(model.requests) == len(set(model.requests))
    assert len(test_pairs) <= 2 * 2 * (10 + 64)


def test_the_chosen_configuration_has_the_best_dev_score(data_dir: Path) -> None:
    results = run_fewshot(HashLM(), tasks=["wic"], splits=3, data_dir=data_dir, limit=20)
    for split in results["tasks"]["wic"]["splits"]:
        best = max(c["dev_score"] for c in split["candidates"])
        assert split["dev_score"] == best
        assert len(split["candidates"]) == 2 * 2 * 2  # patterns x shots x normalizations
    assert set(results["tasks"]["wic"]["by_normalization"]) == {"raw", "length"}


def test_length_normalization_can_flip_the_prediction(data_dir: Path) -> None:
    class LongAnswerLM(HashLM):
        # -sqrt(length): the shortest answer has the best total, the longest the best
        # per-character score, so raw picks "True"/"No" and length picks "Neither"/"Maybe".
        def loglikelihood(self, pairs):  # type: ignore[no-untyped-def]
            return [-(len(x.strip()) ** 0.5) for _, x in pairs]

    results = run_fewshot(LongAnswerLM(), tasks=["cb"], splits=2, data_dir=data_dir, shots=(0,))
    by_norm = results["tasks"]["cb"]["by_normalization"]
    assert by_norm["raw"]["metrics"] != by_norm["length"]["metrics"]


def test_run_model_rejects_a_model_returning_the_wrong_count() -> None:
    class Broken(HashLM):
        def loglikelihood(self, pairs):  # type: ignore[no-untyped-def]
            return [0.0]

    with pytest.raises(ValueError, match="returned 1 scores for 2"):
        run_model(Broken(), [("a", " b"), ("a", " c")])


def test_unknown_task_and_missing_data_dir_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown task 'glue'"):
        get_task("glue")
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        resolve_data_dir(tmp_path / "nowhere")


def test_data_dir_falls_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LADDER_FEWGLUE_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path


def test_importing_the_package_loads_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, evalcore.fewshot, evalcore.fewshot.schema, evalcore.fewshot.lm;"
        "evalcore.fewshot.validate_results({});"
        "import evalcore.fewshot.runner, evalcore.digests;"
        "print(sorted(m for m in ('torch', 'numpy', 'transformers', 'models_zoo',"
        " 'sentence_transformers') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
