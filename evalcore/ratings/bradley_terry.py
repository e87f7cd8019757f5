"""Bradley–Terry maximum likelihood on pair counts, with ties as half wins or Davidson's model.

Notation: ``s`` are natural-log strengths (mean zero), ``d = s_first − s_second`` per pair.

* ``bt``: P(first beats second) = σ(d). A tie is half a win each way (the public arenas' rule), so
  a pair with W first wins, L second wins and T ties contributes
  ``(W + T/2)·log σ(d) + (L + T/2)·log σ(−d)``.
* ``davidson`` (Davidson 1970): P(first) ∝ e^{d/2}, P(second) ∝ e^{−d/2}, P(tie) ∝ ν, with
  ``η = ln ν`` fitted jointly. Given that a battle was decided, P(first) = σ(d) again, so the
  ratings live on the same Elo scale.

Ratings are ``init + scale/ln(base)·s``, i.e. 400·log10-odds centred on 1000 by default. Both are
minimised by :func:`evalcore.ratings.newton.minimise` over the counts only, so a fit costs
O(pairs + models³) whatever the number of votes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from evalcore.errors import EstimationError
from evalcore.ratings.counts import BOTH_BAD, FIRST_WINS, SECOND_WINS, TIES, PairCounts
from evalcore.ratings.graph import ScoreGraph, check_finite_mle
from evalcore.ratings.logistic import expit, log_expit
from evalcore.ratings.newton import BatchObjective, BoolArray, FloatArray, minimise
from evalcore.ratings.params import Method, TiePolicy

IntArray = NDArray[np.int64]
CELLS = 3  # per pair: first wins, second wins, ties (after the tie policy)


@dataclass(frozen=True, eq=False)
class PairOutcomes:
    """The three outcome cells per pair that a fit sees, after the tie policy.

    ``cells`` has shape (P, 3): first wins, second wins, ties. Resampling votes with replacement
    is exactly a multinomial over these cells. ``weights`` (P,) or None: every vote of a pair
    counts this much in the likelihood (see :func:`pair_weights`); the cells stay vote counts,
    so the bootstrap resamples votes and the weights follow them.
    """

    models: tuple[str, ...]
    first: IntArray
    second: IntArray
    cells: FloatArray
    weights: FloatArray | None = None

    @classmethod
    def from_counts(
        cls, counts: PairCounts, ties: TiePolicy, *, reweight_floor: int | None = None
    ) -> PairOutcomes:
        """The cells after the tie policy; ``reweight_floor`` switches on :func:`pair_weights`."""
        c = counts.counts.astype(np.float64)
        tie_cell = c[:, TIES] + (c[:, BOTH_BAD] if ties == "half" else 0.0)
        cells = np.stack([c[:, FIRST_WINS], c[:, SECOND_WINS], tie_cell], axis=1)
        weights = (
            None if reweight_floor is None else pair_weights(cells.sum(axis=1), reweight_floor)
        )
        first, second = np.asarray(counts.first), np.asarray(counts.second)
        return cls(counts.models, first, second, cells, weights)

    def weighted(self, cells: FloatArray) -> FloatArray:
        """``cells`` (..., P, 3) with each pair's votes multiplied by its weight."""
        if self.weights is None:
            return cells
        return cells * self.weights[:, None]

    @property
    def n_models(self) -> int:
        return len(self.models)

    @cached_property
    def incidence(self) -> _Incidence:
        """Maps between per-pair and per-model quantities, built once per data set."""
        return _Incidence(self.first, self.second, self.n_models)

    @cached_property
    def graph(self) -> ScoreGraph:
        return ScoreGraph(self.n_models, self.first, self.second)


class _Incidence:
    """The pairs as maps between per-pair values (P, B) and per-model values (B, M).

    ``difference(x)`` is ``s_first − s_second`` for every pair; ``signed`` sums ±per-pair values
    onto models (+ at the pair's first model, − at its second), ``unsigned`` adds a per-pair value
    to both of its models. The sums are one ``bincount`` over (pair, side, round) in pair order,
    so every model's sum runs over its pairs in increasing pair order: the same additions, in the
    same order, as the sparse incidence-matrix products this replaces (scipy.sparse was most of
    the start-up time), hence the same bits.
    """

    def __init__(self, first: IntArray, second: IntArray, n_models: int) -> None:
        self.first, self.second, self.n_models = first, second, n_models
        self._ends = np.stack([first, second], axis=1)  # (P, 2)
        self._bins = np.empty((first.size, 2, 0), dtype=np.int64)

    def difference(self, x: FloatArray) -> FloatArray:
        """(P, B) strength differences for parameters ``x`` (B, ≥M)."""
        by_model = np.ascontiguousarray(x[:, : self.n_models].T)  # (M, B)
        return np.asarray(by_model[self.first] - by_model[self.second])

    def signed(self, per_pair: FloatArray) -> FloatArray:
        """(B, M): Σ over each model's pairs of +value (first seat) or −value (second)."""
        sided = np.empty((per_pair.shape[0], 2, per_pair.shape[1]))
        sided[:, 0], sided[:, 1] = per_pair, -per_pair
        return self._sum(sided)

    def unsigned(self, per_pair: FloatArray) -> FloatArray:
        """(B, M): Σ over each model's pairs of the value."""
        return self._sum(np.stack([per_pair, per_pair], axis=1))

    def _sum(self, sided: FloatArray) -> FloatArray:
        """Sums of ``sided`` (P, 2, B) onto (round, model of that side)."""
        rounds = sided.shape[2]
        if self._bins.shape[2] < rounds:  # bin round·M + model; a smaller batch is a prefix
            self._bins = np.arange(rounds) * self.n_models + self._ends[:, :, None]
        bins = self._bins[:, :, :rounds].ravel()
        total = np.bincount(bins, sided.ravel(), rounds * self.n_models)
        return np.asarray(total.reshape(rounds, self.n_models))


@dataclass(frozen=True)
class StrengthFit:
    """A full-data fit: ``strengths`` (M,) centred, ``log_tie`` = ln ν for Davidson."""

    strengths: FloatArray
    log_tie: float | None
    iterations: int


def pair_weights(votes: FloatArray, floor: int) -> FloatArray:
    """Inverse-frequency weights ``1/max(n_pair, floor)``, scaled to a mean of 1 per vote.

    Each pair then counts about equally however often it was sampled (pairs with fewer than
    ``floor`` votes count less, so a handful of votes cannot weigh as much as thousands). The
    scale does not move the estimate; it keeps ``ridge`` and the solver tolerances on the same
    footing as without weights. Pairs without votes get weight 0.
    """
    raw = np.where(votes > 0, 1.0 / np.maximum(votes, float(floor)), 0.0)
    total = float(votes.sum())
    return np.asarray(raw * (total / max(float((raw * votes).sum()), 1e-300)), dtype=np.float64)


def n_parameters(method: Method, n_models: int) -> int:
    return n_models + (1 if method == "davidson" else 0)


def make_objective(method: Method, outcomes: PairOutcomes, cells: FloatArray) -> BatchObjective:
    """The batch objective for vote counts ``cells`` of shape (B, P, 3), pair weights applied."""
    incidence = outcomes.incidence
    cells = outcomes.weighted(cells)
    if method == "bt":
        return _BradleyTerry(outcomes.first, outcomes.second, incidence, cells)
    if method == "davidson":
        return _Davidson(outcomes.first, outcomes.second, incidence, cells)
    raise ValueError(f"no counts-based objective for method {method!r}")


def fit_strengths(outcomes: PairOutcomes, *, method: Method, ridge: float) -> StrengthFit:
    """Fit the full data.

    Raises:
        DisconnectedGraphError, UnboundedRatingError: ``ridge`` is 0 and no finite MLE exists.
        EstimationError: Davidson without both ties and decided battles, or no convergence.
    """
    cells = outcomes.cells
    if ridge == 0:
        first_scored, second_scored = scored(method, cells)
        check_finite_mle(
            outcomes.graph,
            outcomes.models,
            cells.sum(axis=-1) > 0,
            first_scored,
            second_scored,
            direction="lost" if method == "bt" else "lost a decided battle",
        )
    start = np.zeros((1, n_parameters(method, outcomes.n_models)))
    if method == "davidson":
        start[0, -1] = initial_log_tie(cells)
    penalty = np.zeros_like(start)
    penalty[:, : outcomes.n_models] = ridge
    result = minimise(make_objective(method, outcomes, cells[None]), start, penalty)
    if not result.converged[0]:
        raise EstimationError(
            f"the {method} fit did not converge in {result.iterations} Newton steps"
        )
    x = result.x[0]
    log_tie = float(x[-1]) if method == "davidson" else None
    return StrengthFit(x[: outcomes.n_models].copy(), log_tie, result.iterations)


def cell_totals(cells: FloatArray) -> FloatArray:
    """Votes per pair, ``cells`` (..., 3) summed over the outcomes as ``(first + second) + ties``:
    the additions ``cells.sum(axis=-1)`` makes, in its order, hence the same bits, without its
    strided reduction over a length-3 axis (8x slower, a tenth of the bootstrap's main thread)."""
    return np.asarray((cells[..., 0] + cells[..., 1]) + cells[..., 2])


def scored(method: Method, cells: FloatArray) -> tuple[BoolArray, BoolArray]:
    """Per pair (and round): did the first, and the second, model score against the other?

    With ties as half wins (``bt``) a tie scores both ways, and strong connectivity of the
    "scored against" graph is exactly when the MLE is finite. Under Davidson a tie does not bound
    the strengths (ν can grow with them), so only decided battles count: a sufficient condition.
    """
    if method == "bt":
        return cells[..., 0] + cells[..., 2] > 0, cells[..., 1] + cells[..., 2] > 0
    return cells[..., 0] > 0, cells[..., 1] > 0


def initial_log_tie(cells: FloatArray) -> float:
    """ln ν matching the overall tie rate at equal strengths: P(tie) = ν / (2 + ν).

    Raises:
        EstimationError: there are no ties, or nothing but ties, so ν is 0 or infinite.
    """
    ties, total = float(cells[..., 2].sum()), float(cells.sum())
    if ties == 0 or ties == total:
        what = "no ties" if ties == 0 else "only ties"
        raise EstimationError(
            f"the Davidson tie model needs both ties and decided battles; the data has {what}. "
            "Use method 'bt', which counts ties as half a win each way"
        )
    rate = ties / total
    return float(np.log(2 * rate / (1 - rate)))


class _BradleyTerry:
    """Σ over pairs of u·softplus(−d) + v·softplus(d), u = W + T/2, v = L + T/2.

    Per-pair data are stored as (P, B): pairs × rounds, so every step is a sparse product and
    contiguous element-wise work, without gathers or transposed copies.
    """

    def __init__(self, first: IntArray, second: IntArray, incidence: _Incidence, cells: FloatArray):
        self.first, self.second, self.incidence = first, second, incidence
        self.n_strengths = incidence.n_models
        self.first_score = np.ascontiguousarray((cells[:, :, 0] + 0.5 * cells[:, :, 2]).T)
        self.total = np.ascontiguousarray(cell_totals(cells).T)

    def subset(self, keep: BoolArray) -> _BradleyTerry:
        clone = object.__new__(_BradleyTerry)
        clone.__dict__.update(self.__dict__)
        clone.first_score, clone.total = self.first_score[:, keep], self.total[:, keep]
        return clone

    def _difference(self, x: FloatArray) -> FloatArray:
        return self.incidence.difference(x)  # (P, B)

    def value(self, x: FloatArray) -> FloatArray:
        # u·softplus(−d) + v·softplus(d) = n·softplus(−d) + v·d, one transcendental per pair.
        d = self._difference(x)
        second_score = self.total - self.first_score
        return np.asarray((second_score * d - self.total * log_expit(d)).sum(axis=0))

    def gradient(self, x: FloatArray) -> FloatArray:
        slope = expit(self._difference(x))
        np.multiply(self.total, slope, out=slope)  # n·p − u in place: the bootstrap's hot loop
        slope -= self.first_score
        return self.incidence.signed(slope)

    def derivatives(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        p = expit(self._difference(x))
        slope = self.total * p - self.first_score  # ∂f/∂d
        curvature = self.total * p * (1.0 - p)  # ∂²f/∂d²
        gradient = self.incidence.signed(slope)
        return gradient, _laplacian(self.incidence, curvature, 0)


class _Davidson:
    """Σ over pairs of n·log Z − (W − L)·d/2 − T·η, Z = e^{d/2} + e^{−d/2} + e^{η}.

    Same (P, B) layout as :class:`_BradleyTerry`; ``η`` is the last parameter.
    """

    def __init__(self, first: IntArray, second: IntArray, incidence: _Incidence, cells: FloatArray):
        self.first, self.second, self.incidence = first, second, incidence
        self.n_strengths = incidence.n_models
        self.margin = np.ascontiguousarray((cells[:, :, 0] - cells[:, :, 1]).T)
        self.ties = np.ascontiguousarray(cells[:, :, 2].T)
        self.total = np.ascontiguousarray(cell_totals(cells).T)

    def subset(self, keep: BoolArray) -> _Davidson:
        clone = object.__new__(_Davidson)
        clone.__dict__.update(self.__dict__)
        clone.margin, clone.ties = self.margin[:, keep], self.ties[:, keep]
        clone.total = self.total[:, keep]
        return clone

    def _logits(self, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        m = self.n_strengths
        half = 0.5 * self.incidence.difference(x[:, :m])
        eta = np.broadcast_to(x[:, m][None, :], half.shape)
        log_z = np.logaddexp(np.logaddexp(half, -half), eta)
        return half, eta, log_z

    def value(self, x: FloatArray) -> FloatArray:
        half, eta, log_z = self._logits(x)
        terms = self.total * log_z - self.margin * half - self.ties * eta
        return np.asarray(terms.sum(axis=0))

    def _probabilities(self, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        half, eta, log_z = self._logits(x)
        return np.exp(half - log_z), np.exp(-half - log_z), np.exp(eta - log_z)

    def gradient(self, x: FloatArray) -> FloatArray:
        p_first, p_second, p_tie = self._probabilities(x)
        return self._gradient(p_first - p_second, p_tie)

    def _gradient(self, lead: FloatArray, p_tie: FloatArray) -> FloatArray:
        n, m = self.total, self.n_strengths
        gradient = np.empty((n.shape[1], m + 1))
        gradient[:, :m] = self.incidence.signed(0.5 * (n * lead - self.margin))
        gradient[:, m] = (n * p_tie - self.ties).sum(axis=0)
        return gradient

    def derivatives(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        p_first, p_second, p_tie = self._probabilities(x)
        lead, decided, n, m = p_first - p_second, p_first + p_second, self.total, self.n_strengths
        gradient = self._gradient(lead, p_tie)
        hessian = _laplacian(self.incidence, 0.25 * n * (decided - lead * lead), 1)
        hessian[:, :m, m] = self.incidence.signed(-0.5 * n * p_tie * lead)
        hessian[:, m, :m] = hessian[:, :m, m]
        hessian[:, m, m] = (n * p_tie * decided).sum(axis=0)
        return gradient, hessian


def _laplacian(incidence: _Incidence, weight: FloatArray, extra: int) -> FloatArray:
    """(B, M+extra, M+extra) with the Laplacian of pair weights (P, B) in the top-left block."""
    m, b = incidence.n_models, weight.shape[1]
    size = m + extra
    flat = np.zeros((b, size * size))
    # One scatter on flat indices (each pair once), then the mirror image: much cheaper than
    # two 3-d fancy assignments.
    flat[:, incidence.first * size + incidence.second] = -weight.T
    hessian = flat.reshape(b, size, size)
    hessian += hessian.transpose(0, 2, 1)
    diagonal = np.arange(m)
    hessian[:, diagonal, diagonal] = incidence.unsigned(weight)
    return hessian
