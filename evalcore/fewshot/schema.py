"""The few-shot results document: allowed tasks and metrics, and a validator.

The validator is used on documents produced here and on externally computed results posted to
the API, so it checks the minimum a leaderboard row needs (per task, every metric with a mean
and a std inside its range) and the shape of optional blocks when present. It imports nothing
heavy: the web process calls it.

Shape (``schema_version`` 1; scores are fractions in [0, 1])::

    {"schema_version": 1, "method": "in_context" | "linear_probe",
     "model": {"name", "path", "digest", "num_parameters"},
     "protocol": {"name": "multi_splits", "splits", "seed", ...},
     "tasks": {"cb": {"metrics": {"accuracy": {"mean", "std"}, "f1_macro": {...}},
                      "score": {"mean", "std"}, "dev_test_spearman": {"mean", "std"} | null,
                      "splits": [{"seed", "chosen", "dev_score", "test_score", ...}], ...}},
     "average": {"mean", "std", "tasks", "complete"} | null,
     (a task run from an lm-eval task file has "kind": "lm_eval" and metrics among acc,
      acc_norm {"mean", "std", "stderr"} and perplexity {"value"}),
     "provenance": {...}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 1
METHODS = ("in_context", "linear_probe")
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "boolq": ("accuracy",),
    "cb": ("accuracy", "f1_macro"),
    "copa": ("accuracy",),
    "multirc": ("f1a", "exact_match"),
    "rte": ("accuracy",),
    "wic": ("accuracy",),
    "wsc": ("accuracy",),
}
FEWNLU_TASKS = tuple(TASK_METRICS)  # the seven tasks of the FewNLU average (no ReCoRD)
LM_EVAL_METRICS = ("acc", "acc_norm", "perplexity")  # tasks with "kind": "lm_eval"


class ResultsSchemaError(ValueError):
    """A results document failed validation; ``errors`` lists ``"field.path: problem"``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def validate_results(obj: Any) -> list[str]:
    """Check a results document.

    Args:
        obj: The decoded JSON document.

    Returns:
        Problems as ``"field.path: problem"`` strings (e.g.
        ``"tasks.cb.metrics.f1_macro.std: missing"``); empty when valid.
    """
    if not isinstance(obj, Mapping):
        return [f"(root): expected an object, got {type(obj).__name__}"]
    errors: list[str] = []
    version = obj.get("schema_version")
    if version is None:
        errors.append("schema_version: missing")
    elif version != SCHEMA_VERSION:
        errors.append(f"schema_version: unsupported value {version!r}, expected {SCHEMA_VERSION}")
    method = obj.get("method")
    if method not in METHODS:
        errors.append(f"method: {method!r} is not one of {', '.join(METHODS)}")
    _check_model(obj.get("model"), errors)
    tasks = obj.get("tasks")
    if not isinstance(tasks, Mapping) or not tasks:
        errors.append("tasks: expected a non-empty object")
    else:
        for name, block in tasks.items():
            _check_task(str(name), block, errors)
    if obj.get("average") is not None:
        _check_mean_std("average", obj["average"], errors, low=0.0, high=1.0)
        complete = obj["average"].get("complete") if isinstance(obj["average"], Mapping) else None
        if complete is not None and not isinstance(complete, bool):
            errors.append(f"average.complete: expected true or false, got {complete!r}")
    for key in ("protocol", "provenance"):
        if key in obj and not isinstance(obj[key], Mapping):
            errors.append(f"{key}: expected an object")
    return errors


def check_results(obj: Any) -> None:
    """Raise ``ResultsSchemaError`` listing every problem if ``obj`` is not a valid document."""
    errors = validate_results(obj)
    if errors:
        raise ResultsSchemaError(errors)


def _check_model(model: Any, errors: list[str]) -> None:
    if not isinstance(model, Mapping):
        errors.append("model: expected an object with a name")
        return
    if not isinstance(model.get("name"), str) or not model["name"]:
        errors.append("model.name: missing or not a non-empty string")
    for key in ("path", "digest"):
        if model.get(key) is not None and not isinstance(model[key], str):
            errors.append(f"model.{key}: expected a string or null")
    count = model.get("num_parameters")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        errors.append(f"model.num_parameters: expected a non-negative integer, got {count!r}")


def _check_task(name: str, block: Any, errors: list[str]) -> None:
    path = f"tasks.{name}"
    if isinstance(block, Mapping) and block.get("kind") == "lm_eval":
        _check_lm_eval_task(path, block, errors)
        return
    if name not in TASK_METRICS:
        errors.append(f"{path}: unknown task {name!r}; known: {', '.join(TASK_METRICS)}")
        return
    if not isinstance(block, Mapping):
        errors.append(f"{path}: expected an object")
        return
    found = block.get("metrics")
    if not isinstance(found, Mapping):
        errors.append(f"{path}.metrics: missing")
        return
    allowed = TASK_METRICS[name]
    for metric in found:
        if metric not in allowed:
            errors.append(
                f"{path}.metrics.{metric}: unknown metric for {name}; allowed: {', '.join(allowed)}"
            )
    for metric in allowed:
        if metric not in found:
            errors.append(f"{path}.metrics.{metric}: missing")
        else:
            _check_mean_std(f"{path}.metrics.{metric}", found[metric], errors, low=0.0, high=1.0)
    if block.get("score") is not None:
        _check_mean_std(f"{path}.score", block["score"], errors, low=0.0, high=1.0)
    if block.get("dev_test_spearman") is not None:
        _check_mean_std(f"{path}.dev_test_spearman", block["dev_test_spearman"], errors, -1.0, 1.0)
    splits = block.get("splits")
    if splits is not None:
        _check_splits(path, splits, errors)


def _check_lm_eval_task(path: str, block: Mapping[str, Any], errors: list[str]) -> None:
    """A task run from an lm-eval task file: metrics among ``LM_EVAL_METRICS``."""
    found = block.get("metrics")
    if not isinstance(found, Mapping) or not found:
        errors.append(f"{path}.metrics: missing")
        return
    for metric, value in found.items():
        if metric not in LM_EVAL_METRICS:
            errors.append(
                f"{path}.metrics.{metric}: unknown metric; allowed: {', '.join(LM_EVAL_METRICS)}"
            )
        elif metric == "perplexity":
            if not isinstance(value, Mapping):
                errors.append(f"{path}.metrics.perplexity: expected an object with a value")
            else:
                where = f"{path}.metrics.perplexity.value"
                _check_number(where, value.get("value"), errors, 1.0, math.inf)
        else:
            _check_mean_std(f"{path}.metrics.{metric}", value, errors, low=0.0, high=1.0)


def _check_splits(path: str, splits: Any, errors: list[str]) -> None:
    if not isinstance(splits, list) or not splits:
        errors.append(f"{path}.splits: expected a non-empty list")
        return
    for index, split in enumerate(splits):
        where = f"{path}.splits[{index}]"
        if not isinstance(split, Mapping):
            errors.append(f"{where}: expected an object")
            continue
        for key in ("dev_score", "test_score"):
            _check_number(f"{where}.{key}", split.get(key), errors, 0.0, 1.0)
        if not isinstance(split.get("seed"), int):
            errors.append(f"{where}.seed: missing or not an integer")


def _check_mean_std(path: str, value: Any, errors: list[str], low: float, high: float) -> None:
    if not isinstance(value, Mapping):
        errors.append(f"{path}: expected an object with mean and std")
        return
    _check_number(f"{path}.mean", value.get("mean"), errors, low, high)
    # A std is a spread, so it can be at most the width of the range.
    _check_number(f"{path}.std", value.get("std"), errors, 0.0, high - low)


def _check_number(path: str, value: Any, errors: list[str], low: float, high: float) -> None:
    if value is None:
        errors.append(f"{path}: missing")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(f"{path}: expected a number, got {type(value).__name__}")
    elif not math.isfinite(value) or not low <= value <= high:
        errors.append(f"{path}: {value!r} is out of range [{low:g}, {high:g}]")
