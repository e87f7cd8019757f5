"""Bootstrap sampler version 3: the C kernel and the numpy path give the same bits, the law is
the exact multinomial of resampling the votes, and a round depends only on (seed, round)."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
from scipy.stats import poisson

from evalcore import native
from evalcore.ratings import PairCounts, RatingParams, compute_ratings
from evalcore.ratings import counter_sampler as v3
from evalcore.ratings.counter_sampler import CellSampler, draw_cells_v3, poisson_tables
from tests.evalcore.ratings.synthetic import model_names, simulate

needs_kernel = pytest.mark.skipif(
    v3.kernel() is None, reason="no compiled kernel (no cc, or LADDER_NATIVE=0)"
)

# draw_cells_v3(CELLS, seed=9, first_round=5, rounds=40) as float64 bytes: pinned, so that a
# change of version 3's draws (which would stop its releases from verifying) fails here.
CELLS = np.array([[30.0, 20.0, 5.0], [7.0, 0.0, 9.0], [120.0, 80.0, 1.0]])
V3_DRAWS = "5c7b9110d0d39efeec76c6dd4014983ae6924826be8fa61451c5d1dc35530ee1"


def _random_cells(rng: np.random.Generator) -> np.ndarray:
    pairs = int(rng.integers(1, 80))
    scale = float(rng.choice([2, 30, 500, 5000]))
    cells = rng.integers(0, scale, size=(pairs, 3)).astype(np.float64)
    cells[rng.random(cells.shape) < 0.3] = 0.0
    cells[0, 0] += 1.0  # at least one vote
    return cells


@needs_kernel
def test_the_kernels_tables_are_numpys_bit_for_bit():
    rng = np.random.default_rng(0)
    lam = np.concatenate(
        [rng.random(200) * 2 + 1e-3, rng.integers(1, 2000, 300) * 1.0, [0.5, 1.0, 1e5, 3e6]]
    )
    ours = poisson_tables(lam, native_kernel=True)
    reference = poisson_tables(lam, native_kernel=False)
    assert np.array_equal(ours.thresholds, reference.thresholds)
    assert np.array_equal(ours.offset, reference.offset) and np.array_equal(ours.lo, reference.lo)
    cells = np.stack([lam, lam, lam], axis=1).round() + 1.0
    kernel, plain = (
        CellSampler(cells, 0, native_kernel=True),
        CellSampler(cells, 0, native_kernel=False),
    )
    assert np.array_equal(kernel.guide, plain.guide)  # the guide tables too


def test_the_tables_are_the_poisson_distribution_functions():
    lam = np.array([0.3, 4.0, 57.0, 900.0])
    tables = poisson_tables(lam, native_kernel=False)
    for c, value in enumerate(lam):
        rows = slice(tables.offset[c], tables.offset[c + 1])
        k = tables.lo[c] + np.arange(tables.widths[c])
        cdf = tables.thresholds[rows].astype(np.float64) / v3.TOP
        assert np.abs(cdf - poisson.cdf(k, value)).max() < 1e-12
        assert tables.thresholds[rows][-1] == v3.TOP  # every 53-bit word finds its count
        assert poisson.cdf(k[0] - 1, value) < 1e-19 and poisson.sf(k[-1], value) < 1e-19


@needs_kernel
@pytest.mark.parametrize("case", range(12))
def test_kernel_and_numpy_draw_the_same_integers_on_random_cells(case):
    rng = np.random.default_rng(100 + case)
    cells = _random_cells(rng)
    seed = int(rng.integers(0, 2**62)) if case % 2 else case
    first = int(rng.integers(0, 10_000))
    rounds = int(rng.integers(1, 40))
    ours = draw_cells_v3(cells, seed, first, rounds, native_kernel=True)
    reference = draw_cells_v3(cells, seed, first, rounds, native_kernel=False)
    assert np.array_equal(ours, reference)
    assert np.all(ours.sum(axis=(1, 2)) == cells.sum())


@needs_kernel
def test_kernel_and_numpy_agree_when_rounds_must_drop_and_add_votes(monkeypatch):
    cells = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [3000.0, 1.0, 40.0]])
    totals: list[int] = []
    fix = v3._fix_numpy

    def recording(sampler, row, round_index):
        totals.append(int(row.sum()))
        fix(sampler, row, round_index)

    monkeypatch.setattr(v3, "_fix_numpy", recording)
    reference = CellSampler(cells, 4, native_kernel=False).counts(0, 300)
    n = int(cells.sum())
    assert min(totals) < n < max(totals)  # both fix-ups (drop and add) were exercised
    assert np.array_equal(CellSampler(cells, 4, native_kernel=True).counts(0, 300), reference)
    assert np.all(reference.sum(axis=1) == n)


def test_version_3_draws_depend_only_on_the_seed_and_the_round():
    whole = draw_cells_v3(CELLS, 5, 0, 60)
    sampler = CellSampler(CELLS, 5)
    parts = [sampler.draw(low, size) for low, size in ((0, 7), (7, 30), (37, 23))]
    assert np.array_equal(whole, np.concatenate(parts))
    assert np.array_equal(draw_cells_v3(CELLS, 5, 13, 3), whole[13:16])
    assert not np.array_equal(draw_cells_v3(CELLS, 6, 0, 60), whole)
    assert len({row.tobytes() for row in whole}) > 50  # rounds differ from each other


def test_version_3_draws_are_pinned():
    draws = draw_cells_v3(CELLS, 9, 5, 40, native_kernel=False)
    digest = hashlib.sha256(np.ascontiguousarray(draws, dtype="<f8").tobytes()).hexdigest()
    assert digest == V3_DRAWS


def test_version_3_draws_do_not_depend_on_threads():
    sampler = CellSampler(CELLS * 40, 3)
    expected = sampler.counts(0, 400)
    results: dict[int, np.ndarray] = {}

    def work(low: int) -> None:
        results[low] = sampler.counts(low, 100)

    threads = [threading.Thread(target=work, args=(low,)) for low in (300, 0, 200, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert np.array_equal(np.concatenate([results[low] for low in range(0, 400, 100)]), expected)


def test_version_3_results_are_the_same_without_the_compiler(monkeypatch, tmp_path):
    a, b, outcome = simulate(np.linspace(-0.8, 0.8, 6), 3000, seed=4)
    counts = PairCounts.from_codes(model_names(6), a, b, outcome)
    params = RatingParams(bootstrap_rounds=150, seed=3, bootstrap_sampler=3)
    with_kernel = compute_ratings(counts, params).to_csv()
    monkeypatch.setattr(native, "_LOADED", {})
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("LADDER_KERNEL_CACHE", str(tmp_path / "cache"))
    assert v3.kernel() is None
    assert compute_ratings(counts, params).to_csv() == with_kernel
    monkeypatch.setenv("LADDER_NATIVE", "0")
    assert v3.kernel() is None


def test_version_3_refuses_what_it_cannot_draw_exactly():
    with pytest.raises(ValueError, match="integer"):
        CellSampler(np.array([[1.5, 2.0, 0.0]]), 0)
    with pytest.raises(ValueError, match="out of range"):
        CellSampler(CELLS, 0).counts(2**32 - 1, 2)
