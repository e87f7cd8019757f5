"""SuperGLUE metrics and the FewNLU aggregation rules, on plain lists."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from evalcore.fewshot.registry import Doc, TaskSpec


def accuracy(golds: Sequence[str], preds: Sequence[str]) -> float:
    """Share of predictions equal to the gold label."""
    _check_lengths(golds, preds)
    return sum(g == p for g, p in zip(golds, preds, strict=True)) / len(golds)


def f1_binary(golds: Sequence[str], preds: Sequence[str], positive: str) -> float:
    """F1 of the ``positive`` class (0.0 when it is never predicted nor gold)."""
    _check_lengths(golds, preds)
    tp = sum(g == positive and p == positive for g, p in zip(golds, preds, strict=True))
    fp = sum(g != positive and p == positive for g, p in zip(golds, preds, strict=True))
    fn = sum(g == positive and p != positive for g, p in zip(golds, preds, strict=True))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def f1_macro(golds: Sequence[str], preds: Sequence[str], labels: Sequence[str]) -> float:
    """Unweighted mean of the per-class F1 over ``labels`` (SuperGLUE CB)."""
    return sum(f1_binary(golds, preds, label) for label in labels) / len(labels)


def exact_match_by_question(docs: Sequence[Doc], preds: Sequence[str]) -> float:
    """Share of questions whose every answer option is labeled correctly (MultiRC EM)."""
    _check_lengths(docs, preds)
    correct: dict[str, bool] = {}
    for doc, pred in zip(docs, preds, strict=True):
        correct[doc.question] = correct.get(doc.question, True) and doc.label == pred
    return sum(correct.values()) / len(correct)


def task_metrics(spec: TaskSpec, docs: Sequence[Doc], preds: Sequence[str]) -> dict[str, float]:
    """All metrics of ``spec`` for predicted labels ``preds`` (aligned with ``docs``)."""
    golds = [doc.label for doc in docs]
    values: dict[str, float] = {}
    for name in spec.metrics:
        if name == "accuracy":
            values[name] = accuracy(golds, preds)
        elif name == "f1_macro":
            values[name] = f1_macro(golds, preds, spec.labels)
        elif name == "f1a":
            values[name] = f1_binary(golds, preds, spec.positive_label)
        elif name == "exact_match":
            values[name] = exact_match_by_question(docs, preds)
        else:
            raise ValueError(f"task {spec.name!r} declares unknown metric {name!r}")
    return values


def task_score(metrics: Mapping[str, float]) -> float:
    """The FewNLU/SuperGLUE task score: the mean of the task's metrics (CB: acc and macro-F1,
    MultiRC: F1a and EM, every other task: accuracy alone)."""
    return sum(metrics.values()) / len(metrics)


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (``statistics.stdev``, as FewNLU's cli.py); the std of
    a single value is 0.0."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std}


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None when either side is constant
    or there are fewer than 3 points."""
    _check_lengths(xs, ys)
    if len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _check_lengths(a: Sequence[object], b: Sequence[object]) -> None:
    if len(a) != len(b) or not a:
        raise ValueError(f"need two equal, non-empty sequences, got lengths {len(a)} and {len(b)}")
