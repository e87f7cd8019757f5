"""Sandwich ("robust", closed-form) covariance of the Bradley–Terry MLE, from pair counts.

For an M-estimator θ̂ minimising Σ_v w_v·ℓ_v(θ) + ½·θᵀΛθ, the asymptotic covariance is
``H⁻¹·G·H⁻¹`` with

* ``H``, the Hessian of the penalised objective at θ̂: Σ_v w_v·p_v(1 − p_v)·x_v x_vᵀ + Λ, and
* ``G``, the covariance of the per-vote scores: Σ_v w_v²·(p_v − y_v)²·x_v x_vᵀ minus the outer
  product of their mean (−Λθ̂ / N: with a penalty the data scores do not sum to zero).

Here ``x_v = e_a − e_b`` and ``y_v`` is 1, 0 or ½ (a tie). Votes of one pair share ``x`` and
``p``, so both sums are pair Laplacians of per-pair totals: O(pairs + models³) for any number of
votes. The covariance does not assume the model is right (unlike the inverse Fisher
information), and with weights it is the right one for the weighted estimator.

Gauge: strengths are only defined up to a shift, so ``H`` is singular along ``1``. A tiny
diagonal term (``DIAGONAL_TERM`` of the mean curvature) makes it invertible; ``G·1 = 0``, so
the term only matters along ``1``, and the covariance is then projected onto centred strengths
(the same gauge as the point fit and the bootstrap rounds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from evalcore.ratings.bradley_terry import PairOutcomes
from evalcore.ratings.logistic import expit, normal_quantile
from evalcore.ratings.newton import FloatArray

IntArray = NDArray[np.int64]

DIAGONAL_TERM = 1e-9  # of the mean diagonal of H: far below any curvature the data gives


@dataclass(frozen=True, eq=False)
class Sandwich:
    """``hessian`` and ``gradient_covariance`` (K, K) at the fit, and ``covariance`` H⁻¹GH⁻¹."""

    hessian: FloatArray
    gradient_covariance: FloatArray
    covariance: FloatArray


def pair_sandwich(outcomes: PairOutcomes, strengths: FloatArray, *, ridge: float) -> Sandwich:
    """The sandwich covariance of Bradley–Terry strengths fitted to ``outcomes``.

    Args:
        outcomes: the cells of the fit (ties as half wins) and its pair weights, if any.
        strengths: (M,) the fitted natural-log strengths.
        ridge: the fit's Gaussian prior precision on every strength (0 for the plain MLE).

    Returns:
        H, G and H⁻¹GH⁻¹ of the strengths, in natural-log units squared, centred.
    """
    cells = outcomes.cells
    m = outcomes.n_models
    p = expit(strengths[outcomes.first] - strengths[outcomes.second])
    weight = np.ones(p.size) if outcomes.weights is None else outcomes.weights
    votes = cells.sum(axis=1)
    curvature = weight * votes * p * (1.0 - p)
    # Σ over the pair's votes of (p − y)²: first wins y = 1, second wins y = 0, ties y = ½.
    squared = cells[:, 0] * (1.0 - p) ** 2 + cells[:, 1] * p**2 + cells[:, 2] * (p - 0.5) ** 2
    hessian = pair_laplacian(m, outcomes.first, outcomes.second, curvature)
    gradient_cov = pair_laplacian(m, outcomes.first, outcomes.second, weight**2 * squared)
    penalty = np.full(m, ridge)
    return sandwich_covariance(hessian, gradient_cov, penalty, strengths, float(votes.sum()), m)


def pair_laplacian(m: int, first: IntArray, second: IntArray, value: FloatArray) -> FloatArray:
    """Σ_pairs value·(e_i − e_j)(e_i − e_j)ᵀ as a dense (M, M) matrix."""
    flat = np.bincount(first * m + second, weights=value, minlength=m * m).reshape(m, m)
    matrix = -(flat + flat.T)
    diagonal = np.arange(m)
    matrix[diagonal, diagonal] = np.bincount(first, value, m) + np.bincount(second, value, m)
    return np.asarray(matrix, dtype=np.float64)


def sandwich_covariance(
    hessian: FloatArray,
    gradient_cov: FloatArray,
    penalty: FloatArray,
    x: FloatArray,
    n_votes: float,
    n_strengths: int,
) -> Sandwich:
    """Finish H and G for a penalised fit and form H⁻¹GH⁻¹ in the centred gauge.

    Args:
        hessian: Σ_v w·p(1 − p)·x xᵀ of the data, without the penalty.
        gradient_cov: Σ_v w²·(p − y)²·x xᵀ.
        penalty: (K,) L2 precisions on the parameters (sum scale).
        x: (K,) the fitted parameters; the first ``n_strengths`` are shift-invariant strengths.
        n_votes: number of votes (for the mean of the per-vote scores).
        n_strengths: how many leading parameters are strengths.
    """
    k = x.size
    h = hessian + np.diag(penalty)
    mean_score = penalty * x / max(n_votes, 1.0)  # the data scores sum to −Λθ̂ at the optimum
    g = gradient_cov - n_votes * np.outer(mean_score, mean_score)
    term = DIAGONAL_TERM * max(float(np.mean(np.diag(h))), 1e-300)
    inverse = np.linalg.inv(h + term * np.eye(k))
    covariance = inverse @ g @ inverse
    centre = np.eye(k)
    centre[:n_strengths, :n_strengths] -= 1.0 / n_strengths
    covariance = centre @ covariance @ centre.T
    return Sandwich(h, g, 0.5 * (covariance + covariance.T))


def normal_interval(
    estimate: FloatArray, covariance: FloatArray, confidence: float
) -> tuple[FloatArray, FloatArray]:
    """``estimate ± z·sd`` with z the normal quantile of ``(1 + confidence)/2``."""
    z = normal_quantile(0.5 + confidence / 2.0)
    sd = np.sqrt(np.maximum(np.diag(covariance)[: estimate.size], 0.0))
    return estimate - z * sd, estimate + z * sd
