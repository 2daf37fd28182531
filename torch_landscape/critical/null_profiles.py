"""Profiles along the null directions of a degenerate critical point (docs/theory.md §1.5).

ψ_u(t) = min_{z ⊥ u, z ⊥ span(V)} L(θ + tu + z) − L(θ) tells a flat direction (a set of equal-loss points)
from higher-order growth and from descent, where straight-line probes cannot: along a curved orbit a
straight line leaves the orbit at O(t²) and sees quartic growth. Used by
:func:`~torch_landscape.critical.classify.classify_critical_point` with ``profiles=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..curvature.symmetry import QuotientBasis
from ..objective import Objective


@dataclass(frozen=True)
class NullProfile:
    """A null-direction profile ψ_u(t) = min_{z ⊥ u, z ⊥ span(V)} L(θ + tu + z) − L(θ) along one null direction u.

    Attributes
    ----------
    verdict : str
        "flat" (|ψ| ≤ 1e-10·(|L| + s t²) at every t: a direction of equal-loss points), "higher_order"
        (ψ > 0 growing like tᵖ with p in (2.5, 6]), "descent" (ψ < 0 somewhere: not a minimum) or
        "inconclusive".
    order : float
        p, the least-squares slope of log ψ against log t (NaN unless ψ > 0 at every t).
    radii, values : tuple[float, ...]
        The t and ψ(t).
    solver_gradient : float
        The largest final gradient norm of the inner L-BFGS minimisations (a stalled solve is large).
    """

    verdict: str
    order: float
    radii: tuple[float, ...]
    values: tuple[float, ...]
    solver_gradient: float


def null_profile(
    objective: Objective,
    basis: QuotientBasis,
    quotient_vectors: Tensor,
    column: int,
    loss: float,
    scale: float,
    length: float,
) -> NullProfile:
    """ψ_u(t) for u = Q_⊥ y (y the ``column``-th eigenvector of H_q), t = t0, t0/2, t0/4, t0/8, t0 = 0.1·ℓ̄.

    The minimisation over z ⊥ u, z ⊥ span(V) runs in the coordinates z = t·Z w, Z = Q_⊥ [the other
    eigenvectors of H_q] (an orthonormal basis of that complement), on f(w) = (L(θ + t(u + Zw)) − L(θ))/(s t²),
    whose Hessian in w is about ZᵀHZ/s, so that L-BFGS sees a well-scaled problem at every t.
    """
    direction = basis.extend(quotient_vectors[:, column])
    others = basis.extend(torch.cat([quotient_vectors[:, :column], quotient_vectors[:, column + 1 :]], dim=1))
    theta = objective.theta
    radii = [0.1 * length / 2**i for i in range(4)]
    w = theta.new_zeros(others.shape[1], requires_grad=True)
    values, residual = [], 0.0
    for t in radii:
        with torch.no_grad():
            w /= 2  # along a curved orbit z grows like t², so w = z/t halves with t
        denominator = max(scale, torch.finfo(theta.dtype).tiny) * t * t
        values.append(_profile_value(objective, theta, t, direction, others, w, loss, denominator))
        residual = max(residual, float(torch.linalg.vector_norm(w.grad)))
    tolerances = [1e-10 * (abs(loss) + scale * t * t) for t in radii]
    order = math.nan
    if all(v > 0 for v in values):
        logs = torch.log(torch.tensor([radii, values], dtype=torch.float64))
        centred = logs - logs.mean(dim=1, keepdim=True)
        order = float((centred[0] * centred[1]).sum() / (centred[0] ** 2).sum())
    if any(v < -tol for v, tol in zip(values, tolerances, strict=True)):
        verdict = "descent"
    elif all(abs(v) <= tol for v, tol in zip(values, tolerances, strict=True)):
        verdict = "flat"
    elif all(v > tol for v, tol in zip(values, tolerances, strict=True)) and 2.5 < order <= 6:
        verdict = "higher_order"
    else:
        verdict = "inconclusive"
    return NullProfile(verdict, order, tuple(radii), tuple(values), residual)


def _profile_value(
    objective: Objective,
    theta: Tensor,
    t: float,
    direction: Tensor,
    others: Tensor,
    w: Tensor,
    loss: float,
    denominator: float,
) -> float:
    """min_w L(θ + t(u + Zw)) − L(θ) by L-BFGS from ``w`` (updated in place), on the objective divided by
    ``denominator`` = s·t² so that its Hessian in w is of order one."""
    optimizer = torch.optim.LBFGS(
        [w],
        lr=1.0,
        max_iter=100,
        tolerance_grad=1e-10,
        tolerance_change=1e-16,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        value = (objective.loss(theta + t * (direction + others @ w)) - loss) / denominator
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(closure)
        final = closure()
    return float(final.detach()) * denominator


def summarise_profiles(profiles: tuple[NullProfile, ...]) -> tuple[str, str]:
    verdicts = [p.verdict for p in profiles]
    tally = ", ".join(
        f"{verdicts.count(v)} {v}" for v in ("descent", "flat", "higher_order", "inconclusive") if v in verdicts
    )
    if "descent" in verdicts:
        return (
            "degenerate_saddle",
            f"null-direction profiles ({tally}): the loss decreases along a null direction, a degenerate saddle",
        )
    if all(v == "flat" for v in verdicts):
        return (
            "nonisolated_min",
            f"null-direction profiles ({tally}): every null direction is flat, a non-isolated minimum "
            "(evidence, not proof)",
        )
    orders = [p.order for p in profiles if p.verdict == "higher_order"]
    if orders:
        p = max(orders)
        return "degenerate_min_higher_order", (
            f"null-direction profiles ({tally}): growth of order p = {p:.2f} along a null direction, a degenerate "
            f"minimum where PL fails locally (Lojasiewicz exponent 1 - 1/p = {1 - 1 / p:.2f}; evidence, not proof)"
        )
    return "inconclusive", f"null-direction profiles ({tally}) are inconclusive"
