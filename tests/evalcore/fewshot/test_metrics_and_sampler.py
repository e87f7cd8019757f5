from __future__ import annotations

import random

import pytest
from scipy.stats import spearmanr
from sklearn.metrics import f1_score

from evalcore.fewshot import metrics
from evalcore.fewshot.registry import Doc
from evalcore.fewshot.sampler import DemoSampler, make_splits


def test_macro_f1_matches_scikit_learn_on_random_labels() -> None:
    rng = random.Random(3)
    labels = ("entailment", "contradiction", "neutral")
    golds = [rng.choice(labels) for _ in range(200)]
    preds = [rng.choice(labels) for _ in range(200)]
    expected = f1_score(golds, preds, average="macro", labels=list(labels))
    assert metrics.f1_macro(golds, preds, labels) == pytest.approx(expected)


def test_spearman_matches_scipy_with_ties_and_is_none_when_constant() -> None:
    xs = [0.5, 0.5, 0.7, 0.1, 0.9, 0.7]
    ys = [0.2, 0.4, 0.4, 0.1, 0.8, 0.3]
    assert metrics.spearman(xs, ys) == pytest.approx(spearmanr(xs, ys).statistic)
    assert metrics.spearman([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]) is None


def test_exact_match_needs_every_option_of_a_question_right() -> None:
    docs = [
        Doc("a", 0, {}, "true", ("true", "false"), question="q1"),
        Doc("b", 0, {}, "false", ("true", "false"), question="q1"),
        Doc("c", 0, {}, "true", ("true", "false"), question="q2"),
    ]
    assert metrics.exact_match_by_question(docs, ["true", "false", "false"]) == 0.5
    assert metrics.exact_match_by_question(docs, ["true", "true", "true"]) == 0.5
    assert metrics.exact_match_by_question(docs, ["true", "false", "true"]) == 1.0


def test_mean_std_uses_the_sample_standard_deviation() -> None:
    assert metrics.mean_std([0.5, 0.7]) == pytest.approx({"mean": 0.6, "std": 0.1414213562})
    assert metrics.mean_std([0.3]) == {"mean": 0.3, "std": 0.0}


def test_splits_are_disjoint_halves_covering_the_pool() -> None:
    records = [{"idx": i} for i in range(64)]
    for split in make_splits(records, splits=4, seed=0):
        assert len(split.train) == 32 and len(split.dev) == 32
        assert set(split.train) | set(split.dev) == set(range(64))
        assert not set(split.train) & set(split.dev)


def test_splits_are_reproducible_for_a_seed_and_differ_across_seeds() -> None:
    records = [{"idx": i} for i in range(64)]
    first = make_splits(records, splits=4, seed=7)
    assert first == make_splits(records, splits=4, seed=7)
    assert len({s.train for s in first}) == 4
    assert first[0].train != make_splits(records, splits=4, seed=8)[0].train


def test_grouped_records_stay_on_one_side_of_every_split() -> None:
    records = [{"text": f"t{i // 2}"} for i in range(64)]  # pairs share a text (like WSC)
    for split in make_splits(records, splits=5, seed=1, group_by=lambda r: r["text"]):
        train = set(split.train)
        assert all((2 * j in train) == (2 * j + 1 in train) for j in range(32))


@pytest.mark.parametrize("bad", [{"splits": 0}, {"ratio": 1.0}])
def test_bad_split_arguments_raise(bad: dict[str, float]) -> None:
    arguments = {"splits": 2, "seed": 0, "ratio": 0.5, **bad}
    with pytest.raises(ValueError):
        make_splits([{"a": 1}] * 8, **arguments)  # type: ignore[arg-type]


def test_demo_sampler_does_not_depend_on_call_order() -> None:
    pool = list(range(32))
    sampler = DemoSampler(11, "rte")
    first = sampler.sample(pool, 4)
    sampler.sample(pool, 2)
    assert sampler.sample(pool, 4) == first
    assert len(set(first)) == 4 and DemoSampler(12, "rte").sample(pool, 4) != first
