"""Style control: contextual Bradley–Terry on per-battle style features of the two answers.

Features per answer (:func:`style_features`, computed once when an answer is stored): its length
in tokens and its counts of markdown headers, bold spans and list items. Per battle, each feature
enters as ``(f_a − f_b)/(f_a + f_b)`` (0 when both are 0), standardised over the data (mean 0,
sd 1; a constant feature stays 0). The model is

    P(a beats b) = σ(s_a − s_b + γ·z),

fitted on every vote (features differ per battle, so votes cannot be pooled into pair counts),
ties as half a win each way, with an L2 penalty on the style coefficients γ only:
``Σ_v w_v·ℓ_v + (N·λ/2)·Σγ²``, i.e. ``λ/2·Σγ²`` next to the *mean* log-likelihood, the scale
arena-rank uses (``λ = style_penalty``; see :class:`~evalcore.ratings.params.RatingParams` for
the default). Strengths carry the point fit's ``ridge`` only.
``s`` is then a model's strength with the effect of its answers' style taken out. The solver is
the damped Newton method of :mod:`evalcore.ratings.newton`; every evaluation is a few numpy
passes over the votes (gathers and ``bincount``), so 1M votes fit in about a second. Intervals
are sandwich intervals (:mod:`evalcore.ratings.sandwich`) over the per-vote scores.

Tokens are counted without a model tokenizer: runs of word characters and single punctuation
marks, which tracks a BPE count closely enough for a *ratio* of two answers' lengths. Fenced code
blocks are left out of the markdown counts (a ``#`` comment in code is not a header).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from evalcore.errors import EstimationError
from evalcore.ratings.logistic import expit, log_expit
from evalcore.ratings.newton import FloatArray, minimise
from evalcore.ratings.sandwich import Sandwich, pair_laplacian, sandwich_covariance

STYLE_FEATURES = ("tokens", "headers", "bold", "lists")
IntArray = NDArray[np.int64]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_FENCE = re.compile(r"^\s*```.*?^\s*```[^\n]*$", re.MULTILINE | re.DOTALL)
_HEADER = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE)
_BOLD = re.compile(r"\*\*(?=\S)[^*\n]+?(?<=\S)\*\*|__(?=\S)[^_\n]+?(?<=\S)__")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+\S", re.MULTILINE)


def style_features(text: str) -> dict[str, int]:
    """Style counts of one answer: ``tokens``, ``headers``, ``bold``, ``lists``.

    Args:
        text: the answer (markdown).

    Returns:
        Non-negative counts keyed by :data:`STYLE_FEATURES`.

    Raises:
        TypeError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"style_features needs the answer text as a string, got {text!r}")
    prose = _FENCE.sub("\n", text)
    return {
        "tokens": len(_TOKEN.findall(text)),
        "headers": len(_HEADER.findall(prose)),
        "bold": len(_BOLD.findall(prose)),
        "lists": len(_LIST_ITEM.findall(prose)),
    }


def style_design(style: FloatArray) -> FloatArray:
    """Per-battle features (N, K) from raw counts ``style`` (N, 2, K): side a, side b.

    ``(f_a − f_b)/(f_a + f_b)`` (0 where both are 0), then standardised per column.
    """
    a, b = style[:, 0, :], style[:, 1, :]
    # Two (N, K) arrays in all, worked in place: a million votes stay well under 100 MB.
    total = a + b
    ratio = np.subtract(a, b)
    np.divide(ratio, total, out=ratio, where=total > 0)
    ratio[total == 0] = 0.0
    del total
    ratio -= ratio.mean(axis=0)
    sd = np.sqrt(np.einsum("ij,ij->j", ratio, ratio) / max(ratio.shape[0], 1))
    ratio /= np.where(sd > 0, sd, 1.0)
    return np.asarray(ratio)


@dataclass(frozen=True, eq=False)
class StyleFit:
    """Strengths (M,) centred, style coefficients (K,) per sd of each feature, sandwich."""

    strengths: FloatArray
    coefficients: FloatArray
    sandwich: Sandwich
    iterations: int


def fit_style(
    model_a: IntArray,
    model_b: IntArray,
    score: FloatArray,
    features: FloatArray,
    *,
    n_models: int,
    weights: FloatArray | None = None,
    penalty: float = 0.001,
    ridge: float = 0.0,
    start: FloatArray | None = None,
) -> StyleFit:
    """Fit the contextual Bradley–Terry model to individual votes.

    Args:
        model_a, model_b: (N,) model codes of the two sides.
        score: (N,) 1 when a won, 0 when b won, ½ for a tie.
        features: (N, K) standardised style features (:func:`style_design`).
        n_models: M, the number of models (codes are below it).
        weights: (N,) per-vote weights (mean 1 keeps ``penalty``'s meaning), or None.
        penalty: λ, the L2 penalty on the coefficients on the mean log-likelihood scale.
        ridge: Gaussian prior precision on every strength (sum scale, as the plain fit's).
        start: (M,) starting strengths, e.g. the plain fit's; zeros otherwise.

    Raises:
        EstimationError: no convergence.
    """
    n, k = features.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    objective = _Contextual(model_a, model_b, score, features, w, n_models)
    x0 = np.zeros((1, n_models + k))
    if start is not None:
        x0[0, :n_models] = start
    prior = np.zeros_like(x0)
    prior[0, :n_models] = ridge
    prior[0, n_models:] = penalty * n
    result = minimise(objective, x0, prior)
    if not result.converged[0]:
        raise EstimationError(
            f"the style-controlled fit did not converge in {result.iterations} Newton steps"
        )
    x = result.x[0]
    hessian = objective.moments(x, curvature=True)
    gradient_cov = objective.moments(x, curvature=False)
    sandwich = sandwich_covariance(hessian, gradient_cov, prior[0], x, float(n), n_models)
    return StyleFit(x[:n_models].copy(), x[n_models:].copy(), sandwich, result.iterations)


class _Contextual:
    """Σ_v w·[softplus(η) − y·η], η = s_a − s_b + z·γ, for one problem (batch of 1)."""

    def __init__(
        self,
        model_a: IntArray,
        model_b: IntArray,
        score: FloatArray,
        features: FloatArray,
        weights: FloatArray,
        n_models: int,
    ) -> None:
        self.a, self.b, self.y = model_a, model_b, score
        self.z = np.ascontiguousarray(features, dtype=np.float64)
        self.w = weights
        self.n_strengths = n_models

    def subset(self, keep: NDArray[np.bool_]) -> _Contextual:
        return self  # a single problem: nothing is left to subset once it is done

    def _logits(self, x: FloatArray) -> FloatArray:
        m = self.n_strengths
        s, gamma = x[0, :m], x[0, m:]
        return np.asarray(s[self.a] - s[self.b] + self.z @ gamma)

    def value(self, x: FloatArray) -> FloatArray:
        eta = self._logits(x)
        return np.array([float(self.w @ (-log_expit(-eta) - self.y * eta))])

    def gradient(self, x: FloatArray) -> FloatArray:
        residual = self.w * (expit(self._logits(x)) - self.y)
        return self._to_parameters(residual)[None]

    def derivatives(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        p = expit(self._logits(x))
        gradient = self._to_parameters(self.w * (p - self.y))
        return gradient[None], self._second_moment(self.w * p * (1.0 - p))[None]

    def moments(self, x: FloatArray, *, curvature: bool) -> FloatArray:
        """Σ w·p(1−p)·x xᵀ (``curvature``) or Σ w²·(p − y)²·x xᵀ over the votes."""
        p = expit(self._logits(x[None]))
        per_vote = self.w * p * (1.0 - p) if curvature else (self.w * (p - self.y)) ** 2
        return self._second_moment(per_vote)

    def _to_parameters(self, per_vote: FloatArray) -> FloatArray:
        m = self.n_strengths
        strengths = np.bincount(self.a, per_vote, m) - np.bincount(self.b, per_vote, m)
        return np.concatenate([strengths, per_vote @ self.z])

    def _second_moment(self, per_vote: FloatArray) -> FloatArray:
        """Σ_v c_v·x_v x_vᵀ with x_v = (e_a − e_b, z_v)."""
        m, k = self.n_strengths, self.z.shape[1]
        weighted = self.z * per_vote[:, None]
        matrix = np.empty((m + k, m + k))
        matrix[:m, :m] = pair_laplacian(m, self.a, self.b, per_vote)
        cross = np.stack(
            [
                np.bincount(self.a, weighted[:, j], m) - np.bincount(self.b, weighted[:, j], m)
                for j in range(k)
            ],
            axis=1,
        )
        matrix[:m, m:], matrix[m:, :m] = cross, cross.T
        matrix[m:, m:] = self.z.T @ weighted
        return matrix
