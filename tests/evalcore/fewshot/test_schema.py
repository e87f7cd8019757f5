from __future__ import annotations

import copy
from typing import Any

import pytest

from evalcore.fewshot.registry import get_task, task_names
from evalcore.fewshot.schema import (
    TASK_METRICS,
    ResultsSchemaError,
    check_results,
    validate_results,
)


def minimal_document() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "method": "in_context",
        "model": {"name": "m", "digest": "sha256:x", "num_parameters": 10},
        "tasks": {
            "cb": {
                "metrics": {
                    "accuracy": {"mean": 0.7, "std": 0.02},
                    "f1_macro": {"mean": 0.5, "std": 0.04},
                },
                "score": {"mean": 0.6, "std": 0.03},
                "dev_test_spearman": {"mean": -0.2, "std": 0.1},
                "splits": [{"seed": 1, "dev_score": 0.5, "test_score": 0.6}],
            }
        },
        "average": {"mean": 0.6, "std": 0.03},
    }


def test_minimal_document_is_valid() -> None:
    assert validate_results(minimal_document()) == []


def test_missing_std_is_reported_with_its_field_path() -> None:
    document = minimal_document()
    del document["tasks"]["cb"]["metrics"]["f1_macro"]["std"]
    assert validate_results(document) == ["tasks.cb.metrics.f1_macro.std: missing"]


def test_unknown_task_and_unknown_metric_are_named() -> None:
    document = minimal_document()
    document["tasks"]["squad"] = {"metrics": {"f1": {"mean": 0.1, "std": 0.0}}}
    document["tasks"]["cb"]["metrics"]["bleu"] = {"mean": 0.1, "std": 0.0}
    errors = validate_results(document)
    assert any(e.startswith("tasks.squad: unknown task") for e in errors)
    assert any(e.startswith("tasks.cb.metrics.bleu: unknown metric") for e in errors)


@pytest.mark.parametrize("value", [1.5, -0.1, float("nan")])
def test_score_out_of_range_is_rejected(value: float) -> None:
    document = minimal_document()
    document["tasks"]["cb"]["metrics"]["accuracy"]["mean"] = value
    errors = validate_results(document)
    assert len(errors) == 1 and errors[0].startswith("tasks.cb.metrics.accuracy.mean: ")


def test_missing_required_metric_and_wrong_types_are_reported() -> None:
    document = minimal_document()
    del document["tasks"]["cb"]["metrics"]["accuracy"]
    document["tasks"]["cb"]["splits"][0]["test_score"] = "high"
    document["model"]["num_parameters"] = -3
    errors = validate_results(document)
    assert "tasks.cb.metrics.accuracy: missing" in errors
    assert "tasks.cb.splits[0].test_score: expected a number, got str" in errors
    assert any(e.startswith("model.num_parameters") for e in errors)


def test_non_object_and_wrong_version_are_rejected() -> None:
    assert validate_results([1, 2]) == ["(root): expected an object, got list"]
    document = copy.deepcopy(minimal_document())
    document["schema_version"] = 99
    assert validate_results(document)[0].startswith("schema_version: unsupported")


def test_check_results_raises_with_all_errors() -> None:
    document = minimal_document()
    document["method"] = "vibes"
    with pytest.raises(ResultsSchemaError) as info:
        check_results(document)
    assert info.value.errors == ["method: 'vibes' is not one of in_context, linear_probe"]


def test_registry_metrics_match_the_schema_table() -> None:
    for name in task_names():
        assert get_task(name).metrics == TASK_METRICS[name]
