"""Batched solvers for the pairwise-comparison likelihoods: damped Newton, and a chord method.

:func:`minimise` is a damped Newton method over a batch of independent problems (K ≤ models + 1
parameters each): one large numpy call per step for the whole batch instead of many small ones.

:func:`refine` serves the bootstrap. Every round starts next to the full-data optimum and its
Hessian differs from the full-data one only by resampling noise, so it iterates
``x ← x − H₀⁻¹ ∇f(x)`` with the full-data Hessian ``H₀`` inverted once (the chord method): each
step costs one gradient, O(pairs), and no models × models solve per round. Convergence is linear
with a small rate (the relative resampling noise of the curvature); a round that does not contract
fast enough, or would take a long step, is finished by :func:`minimise` instead.

Gauge: the likelihood is unchanged by adding a constant to every strength, so its Hessian is
singular along ``1``. Adding ``c·11ᵀ`` to the strength block makes it non-singular without
changing the Newton step (the gradient is orthogonal to ``1``), and the iterate is re-centred to
mean zero after each step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# Stop after a Newton step shorter than this (natural-log units). Convergence is quadratic, so
# the error left after such a step is of order its square: ~1e-12, i.e. ~1e-10 rating points.
STEP_TOLERANCE = 1e-6
# Steps no longer than this are taken without a line search. Along such a step every pair's
# log-odds moves by at most 0.5, so the curvature stays within a factor e^0.5 of the Hessian's
# and the full Newton step provably decreases the (log-sum-exp) objective.
TRUSTED_STEP = 0.25
MAX_ITERATIONS = 200
MAX_HALVINGS = 50
ARMIJO = 1e-4
# Chord method: stop below this step (linear convergence at rate ≤ CONTRACTION leaves an error
# below the last step); hand a round to Newton when a step is not CONTRACTION times the last.
CHORD_TOLERANCE = 1e-8
CONTRACTION = 0.5
CHORD_ITERATIONS = 40


class BatchObjective(Protocol):
    """Negative log-likelihood of B independent problems, parameters ``x`` of shape (B, K)."""

    n_strengths: int  # the first n_strengths parameters are shift-invariant strengths

    def value(self, x: FloatArray) -> FloatArray:
        """Shape (B,)."""
        ...

    def gradient(self, x: FloatArray) -> FloatArray:
        """Shape (B, K)."""
        ...

    def derivatives(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Gradient (B, K) and Hessian (B, K, K)."""
        ...

    def subset(self, keep: BoolArray) -> BatchObjective:
        """The same objective for the problems where ``keep`` is true."""
        ...


@dataclass(frozen=True)
class NewtonResult:
    x: FloatArray  # (B, K), strengths centred to mean zero
    iterations: int
    converged: BoolArray  # (B,)


def minimise(objective: BatchObjective, start: FloatArray, ridge: FloatArray) -> NewtonResult:
    """Minimise ``objective(x) + ½·Σ ridge·x²`` for every row of ``start``.

    Args:
        objective: the batch of likelihoods.
        start: (B, K) starting points.
        ridge: (B, K) per-parameter Gaussian prior precisions (0 for none).

    Returns:
        The optimum of each problem; ``converged`` is false where ``MAX_ITERATIONS`` ran out.
    """
    m = objective.n_strengths
    x = np.array(start, dtype=np.float64)
    x[:, :m] -= x[:, :m].mean(axis=1, keepdims=True)
    active = np.arange(x.shape[0])
    iterations = 0
    while active.size and iterations < MAX_ITERATIONS:
        iterations += 1
        xa, ra = x[active], ridge[active]
        gradient, hessian = objective.derivatives(xa)
        gradient = gradient + ra * xa
        step = _newton_step(gradient, hessian, ra, m)
        size = np.max(np.abs(step), axis=1)
        long = size > TRUSTED_STEP
        if long.any():
            scale = np.ones(step.shape[0])
            scale[long] = _backtrack(
                objective.subset(long), xa[long], ra[long], gradient[long], step[long]
            )
            step = step * scale[:, None]
        xa = xa + step
        xa[:, :m] -= xa[:, :m].mean(axis=1, keepdims=True)
        x[active] = xa
        done = size < STEP_TOLERANCE
        if done.any():
            active = active[~done]
            objective = objective.subset(~done)
    converged = np.ones(x.shape[0], dtype=bool)
    converged[active] = False
    return NewtonResult(x, iterations, converged)


def chord_inverse(reference: FloatArray, ridge: FloatArray, n_strengths: int) -> FloatArray:
    """The inverse that :func:`refine` steps with.

    Args:
        reference: (K, K) Hessian of the objective without the prior at the full-data optimum.
        ridge: (K,) prior precisions of the problems to refine.
        n_strengths: how many leading parameters are shift-invariant strengths.
    """
    regularised = _regularised(reference[None].copy(), ridge[None], n_strengths)[0]
    return np.asarray(np.linalg.inv(regularised), dtype=np.float64)


def refine(
    objective: BatchObjective, start: FloatArray, ridge: FloatArray, inverse: FloatArray
) -> NewtonResult:
    """Minimise like :func:`minimise`, from warm starts, stepping with one fixed inverse Hessian.

    Args:
        objective: the batch of likelihoods.
        start: (B, K) starting points near the optima (the full-data fit).
        ridge: (B, K) prior precisions; every row must be the one ``inverse`` was made with.
        inverse: :func:`chord_inverse` of the full-data Hessian.
    """
    m = objective.n_strengths
    x = np.array(start, dtype=np.float64)
    x[:, :m] -= x[:, :m].mean(axis=1, keepdims=True)
    active, current = np.arange(x.shape[0]), objective
    previous = np.full(x.shape[0], np.inf)
    handover = np.zeros(x.shape[0], dtype=bool)
    for _ in range(CHORD_ITERATIONS):
        if not active.size:
            break
        xa = x[active]
        step = -(current.gradient(xa) + ridge[active] * xa) @ inverse
        size = np.max(np.abs(step), axis=1)
        slow = (size > TRUSTED_STEP) | (size > CONTRACTION * previous[active])
        xa[~slow] += step[~slow]
        xa[:, :m] -= xa[:, :m].mean(axis=1, keepdims=True)
        x[active], previous[active] = xa, size
        handover[active[slow]] = True
        leave = slow | (size < CHORD_TOLERANCE)
        active, current = active[~leave], current.subset(~leave)
    handover[active] = True
    converged = np.ones(x.shape[0], dtype=bool)
    if handover.any():
        finished = minimise(objective.subset(handover), x[handover], ridge[handover])
        x[handover], converged[handover] = finished.x, finished.converged
    return NewtonResult(x, CHORD_ITERATIONS, converged)


def _regularised(hessian: FloatArray, ridge: FloatArray, n_strengths: int) -> FloatArray:
    """Add the prior and the gauge term ``c·11ᵀ`` (in place) so the Hessian is invertible."""
    k = hessian.shape[-1]
    diagonal = np.arange(k)
    hessian[:, diagonal, diagonal] += ridge
    block = hessian[:, :n_strengths, :n_strengths]
    # c·11ᵀ with c·M ≈ the mean curvature keeps the gauge direction well conditioned.
    c = np.maximum(block[:, np.arange(n_strengths), np.arange(n_strengths)].mean(axis=1), 1e-12)
    block += (c / n_strengths)[:, None, None]
    return hessian


def _newton_step(
    gradient: FloatArray, hessian: FloatArray, ridge: FloatArray, n_strengths: int
) -> FloatArray:
    hessian = _regularised(hessian, ridge, n_strengths)
    try:
        step = np.linalg.solve(hessian, -gradient[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:  # curvature lost to saturated probabilities: least squares
        step = -(np.linalg.pinv(hessian, hermitian=True) @ gradient[:, :, None])[:, :, 0]
    return np.asarray(step, dtype=np.float64)


def _backtrack(
    objective: BatchObjective,
    x: FloatArray,
    ridge: FloatArray,
    gradient: FloatArray,
    step: FloatArray,
) -> FloatArray:
    """Armijo step sizes per problem."""
    value = objective.value(x) + 0.5 * np.sum(ridge * x * x, axis=1)
    scale = np.ones(x.shape[0])
    slope = np.sum(gradient * step, axis=1)
    slack = 1e-12 * np.abs(value)  # round-off in a sum over ~10⁶ votes
    for _ in range(MAX_HALVINGS):
        trial = x + scale[:, None] * step
        new_value = objective.value(trial) + 0.5 * np.sum(ridge * trial * trial, axis=1)
        ok = new_value <= value + ARMIJO * scale * slope + slack
        if ok.all():
            break
        scale = np.where(ok, scale, scale / 2)
    return scale
