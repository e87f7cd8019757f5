"""The lm-eval task-file reader: keys, templates, data loaders, samplers, scoring, errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from evalcore.fewshot.lmeval import (
    LmEvalSampler,
    TaskFileError,
    load_task_file,
    read_split,
    render,
)
from evalcore.fewshot.lmeval_runner import build_task_requests, run_task_files
from evalcore.fewshot.runner import RequestTable
from evalcore.fewshot.schema import validate_results

from .conftest import HashLM

TASK = """\
task: tiny
dataset_path: {loader}
dataset_kwargs:
  data_files:
    train: train.{ext}
    test: test.{ext}
output_type: multiple_choice
training_split: train
test_split: test
doc_to_text: "Q: {{{{question}}}}"
doc_to_target: "{target}"
doc_to_choice: {choices}
target_delimiter: "{delimiter}"
fewshot_delimiter: "\\n##\\n"
num_fewshot: 2
{extra}"""


def write_task(tmp_path: Path, *, loader: str = "json", extra: str = "", **kw: str) -> Path:
    rows = [{"question": f"q{i}", "label": i % 3, "options": ["a", "b", "c"]} for i in range(8)]
    if loader == "json":
        import json

        for split, part in (("train", rows[:5]), ("test", rows[5:])):
            (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    else:
        for split, part in (("train", rows[:5]), ("test", rows[5:])):
            lines = ["question,label"] + [f"{r['question']},{r['label']}" for r in part]
            (tmp_path / f"{split}.csv").write_text("\n".join(lines) + "\n")
    text = TASK.format(
        loader=loader,
        ext="jsonl" if loader == "json" else "csv",
        target=kw.get("target", "label"),
        choices=kw.get("choices", '["a", "b", "c"]'),
        delimiter=kw.get("delimiter", " "),
        extra=extra,
    )
    path = tmp_path / "task.yaml"
    path.write_text(text)
    return path


def test_prompts_follow_lm_eval_delimiters_and_sampler(tmp_path: Path) -> None:
    task = load_task_file(write_task(tmp_path))
    table = RequestTable()
    built = build_task_requests(task, table, seed=1234)
    pool = read_split(task, "train")
    rnd = random.Random(1234)
    for doc, context in zip(built.docs, built.contexts, strict=True):
        demos = rnd.sample(pool, 2)  # the train pool is not the eval split: no exclusion
        shots = "".join(f"Q: {d['question']} {'abc'[d['label']]}\n##\n" for d in demos)
        assert context == shots + f"Q: {doc['question']}"
    assert table.pairs[:3] == [(built.contexts[0], f" {c}") for c in "abc"]
    assert built.golds == [doc["label"] for doc in built.docs]


def test_first_n_sampler_and_csv_columns_typed_like_datasets(tmp_path: Path) -> None:
    extra = "fewshot_config:\n  sampler: first_n\n"
    task = load_task_file(write_task(tmp_path, loader="csv", extra=extra))
    assert read_split(task, "test")[0] == {"question": "q5", "label": 2}
    built = build_task_requests(task, RequestTable(), num_fewshot=1)
    assert all(c.startswith("Q: q0 a\n##\n") for c in built.contexts)


def test_field_names_win_over_templates_and_digit_targets_are_indices(tmp_path: Path) -> None:
    path = write_task(tmp_path, target="{{label}}", choices="options")
    built = build_task_requests(load_task_file(path), RequestTable(), num_fewshot=0)
    assert built.golds == [2, 0, 1] and built.choice_chars == [[1, 1, 1]] * 3


def test_the_default_sampler_leaves_out_the_eval_doc_when_the_pool_is_the_eval_split() -> None:
    pool = [{"i": i} for i in range(6)]
    sampler = LmEvalSampler(pool, seed=3)
    for doc in pool:
        assert doc not in sampler.sample(3, doc)
    rnd = random.Random(3)  # one sequential generator, k + 1 drawn per doc
    replay = LmEvalSampler(pool, seed=3)
    for doc in pool:
        assert replay.sample(3, doc) == [d for d in rnd.sample(pool, 4) if d != doc][:3]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("process_docs: !function utils.process\n", "key 'process_docs': Python functions"),
        ("process_results: x\n", "key 'process_results' is not supported"),
        ("generation_kwargs: {}\n", "key 'generation_kwargs' is not supported"),
        ("fewshot_config:\n  sampler: balanced\n", "sampler 'balanced' is not one of"),
        ("fewshot_config:\n  samples: []\n", "fewshot_config: key 'samples' is not supported"),
        ("metric_list:\n  - metric: f1\n", "metric 'f1' is not supported"),
    ],
)
def test_unsupported_keys_are_refused_by_name(
    tmp_path: Path, extra: str, message: str | None
) -> None:
    path = write_task(tmp_path, extra=extra)
    with pytest.raises((TaskFileError, Exception), match=message or "process_docs|function"):
        load_task_file(path)


def test_hub_datasets_and_missing_files_are_refused(tmp_path: Path) -> None:
    path = write_task(tmp_path)
    path.write_text(path.read_text().replace("dataset_path: json", "dataset_path: super_glue"))
    with pytest.raises(TaskFileError, match="dataset_path 'super_glue' is not supported"):
        load_task_file(path)
    path = write_task(tmp_path)
    (tmp_path / "test.jsonl").unlink()
    with pytest.raises(TaskFileError, match="test.jsonl.*does not exist"):
        load_task_file(path)


def test_templates_run_in_a_sandbox() -> None:
    assert render("{{ a | regex_replace('b+', 'c') }}", {"a": "abbb"}) == "ac"
    with pytest.raises(SecurityError):
        render("{{ a.__class__.__mro__[1].__subclasses__() }}", {"a": "x"})
    with pytest.raises(Exception, match="undefined"):
        render("{{ missing }}", {})


def test_run_task_files_gives_a_valid_results_document(tmp_path: Path) -> None:
    document = run_task_files(HashLM(), [write_task(tmp_path)], limit=2)
    assert validate_results(document) == []
    block = document["tasks"]["tiny"]
    assert block["kind"] == "lm_eval" and block["test_docs"] == 2 and block["requests"] == 6
    assert set(block["metrics"]) == {"acc", "acc_norm"} and document["average"] is None
    fixed = run_task_files(HashLM(), [write_task(tmp_path)], sampler="fixed")
    assert validate_results(fixed) == [] and fixed["protocol"]["sampler"] == "fixed"
