"""Polyak–Łojasiewicz diagnostics (docs/theory.md §2).

- :func:`pl_ratio` — μ = ‖∇L‖² / (2 (L − L*)) on the full objective.
- :class:`PLTracker` — the same along a run: running and window minima, an estimate of L* when it is
  unknown, Aitken extrapolation, per-step contraction, Łojasiewicz slope, η·t ratio.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..objective import Data, LossFunction, Objective, as_objective
from ..settings import check_loss_star


def _rounding_floor(loss: float, initial_loss: float, dtype: torch.dtype) -> float:
    """floor = max(1e-12·max(1, |L_0|), 10·ε·|L|): below it L − L* is rounding, not signal (docs/theory.md §2.3)."""
    return max(1e-12 * max(1.0, abs(initial_loss)), 10 * torch.finfo(dtype).eps * abs(loss))


def _ratio(grad_norm_sq: float, gap: float, floor: float) -> float:
    """‖∇L‖²/(2 gap), NaN when the gap is within the rounding floor (never ±inf)."""
    return grad_norm_sq / (2 * gap) if gap > floor else math.nan


def pl_ratio(
    model: nn.Module | Objective,
    loss_fn: LossFunction | None = None,
    data: Data | None = None,
    loss_star: float | None = None,
    *,
    params: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float64,
    initial_loss: float | None = None,
) -> float:
    """The Polyak–Łojasiewicz ratio μ = ‖∇L(θ)‖² / (2 (L(θ) − L*)) of the full objective.

    A function is μ-PL on a set when this ratio is ≥ μ everywhere on it (docs/theory.md §2.1).

    Parameters
    ----------
    model, loss_fn, data, params, dtype
        The objective (see :class:`~torch_landscape.objective.Objective`), float64 by default.
    loss_star
        L*, the infimum (or local minimum value) of L.
    initial_loss
        L_0 of the run, which sets the absolute part of the rounding floor (default: L(θ) itself).

    Returns
    -------
    float
        μ, or NaN when L − L* ≤ floor = max(1e-12·max(1, |L_0|), 10·ε·|L|), where the ratio is 0/0
        dominated by rounding.

    Raises
    ------
    ValueError
        If L* exceeds L(θ) by more than the floor: L* is then not a lower bound of the loss.
    """
    loss_star = check_loss_star(loss_star)
    if loss_star is None:
        raise TypeError("pl_ratio needs loss_star, the infimum L* of the loss (e.g. 0 for a realisable teacher).")
    objective = as_objective(model, loss_fn, data, params=params, dtype=dtype)
    value, gradient = objective.first_order()
    loss = float(value)
    floor = _rounding_floor(loss, loss if initial_loss is None else initial_loss, objective.dtype)
    if loss - loss_star < -floor:
        raise ValueError(
            f"loss_star above the loss: L* = {loss_star:.17g} > L(θ) = {loss:.17g}; L* must be a lower bound "
            "of the loss (its infimum, or the local minimum value)."
        )
    return _ratio(float(gradient @ gradient), loss - loss_star, floor)


def aitken_extrapolation(
    previous: float, current: float, following: float, *, dtype: torch.dtype = torch.float64
) -> float:
    """L̂* by Aitken's Δ² from three equally spaced losses L_{t−1}, L_t, L_{t+1}:

        L̂* = L_{t+1} − (L_{t+1} − L_t)² / ((L_{t+1} − L_t) − (L_t − L_{t−1}))

    (algebraically (L_{t+1}L_{t−1} − L_t²)/(L_{t+1} + L_{t−1} − 2L_t), in a form with less cancellation),
    exact for L_t = L* + Cρ^t. NaN unless the curve converges linearly here (ratio of successive
    differences ρ in (0, 1)) and the denominator exceeds rounding (1e3·ε·max|L|).
    """
    first, second = current - previous, following - current
    denominator = second - first
    if first == 0 or not 0 < second / first < 1:
        return math.nan
    if abs(denominator) <= 1e3 * torch.finfo(dtype).eps * max(abs(previous), abs(current), abs(following)):
        return math.nan
    return following - second * second / denominator


@dataclass(frozen=True)
class PLEstimate:
    """The PL diagnostics after one :meth:`PLTracker.update`.

    Attributes
    ----------
    step, loss : int, float
        As given.
    mu : float
        ‖∇L‖² / (2 (L − L̂*)), NaN at rounding level.
    mu_running_min, mu_window_min : float
        Minimum over every valid μ so far, and over the last ``window`` valid ones.
    loss_star : float
        L̂* used: the known L*, or min_s L_s − Δ with Δ = max(atol, 1e-3·(L_0 − min L)).
    loss_star_estimated : bool
        Whether L̂* is the estimate.
    loss_star_aitken : float
        Aitken's extrapolation from the last three evaluations (NaN when not reportable).
    mu_sensitivity : tuple[float, float] or None
        μ at L̂* and at L̂* − Δ (margin doubled), when L* is estimated; far apart ⇒ μ is not resolved.
    contraction : float
        ((L_t − L̂*)/(L_{t'} − L̂*))^{1/(t − t')} against the previous evaluation t', per step.
    lojasiewicz_slope : float
        Least-squares slope of log‖∇L‖² against log(L − L̂*) over the last half of the valid history:
        1 under PL, 2θ_Ł = 2 − 2/p at a minimum with growth of order p.
    eta_t_ratio : float
        η · t · ‖∇L‖² / (L − L̂*) (given a learning rate η): → 1/(2θ_Ł − 1) under gradient flow.
    """

    step: int
    loss: float
    mu: float
    mu_running_min: float
    mu_window_min: float
    loss_star: float
    loss_star_estimated: bool
    loss_star_aitken: float
    mu_sensitivity: tuple[float, float] | None
    contraction: float
    lojasiewicz_slope: float
    eta_t_ratio: float


class PLTracker:
    """PL diagnostics along a training run, from (step, L, ‖∇L‖²) of each evaluation (docs/theory.md §2).

    Feed it the loss and squared gradient norm of a fixed, full probe objective (a minibatch gradient
    overestimates ‖∇L‖² by tr Σ/B). It keeps the whole history, three floats per evaluation, so that
    the Łojasiewicz slope and :meth:`mu_history` can use the latest L̂*.

    Parameters
    ----------
    loss_star
        The known L*, or None to estimate it online as min_s L_s − Δ, Δ = max(atol, 1e-3·(L_0 − min L)):
        a margin below the running minimum, which biases μ downwards (conservative) rather than to +∞
        at every new record.
    window
        The number of valid μ values in ``mu_window_min``.
    atol
        The absolute part of the margin Δ.
    learning_rate
        η for ``eta_t_ratio`` (NaN without it).
    dtype
        The precision the losses were computed in, for the rounding floor.
    """

    def __init__(
        self,
        loss_star: float | None = None,
        *,
        window: int = 20,
        atol: float = 0.0,
        learning_rate: float | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be a positive integer, got {window}.")
        self.known_loss_star = check_loss_star(loss_star)
        self.window, self.atol, self.learning_rate, self.dtype = window, atol, learning_rate, dtype
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.grad_norms_sq: list[float] = []
        self.mus: list[float] = []
        self._recent: deque[float] = deque(maxlen=window)  # the last `window` valid μ
        self._mu_min = math.inf
        self._loss_min = math.inf

    @property
    def margin(self) -> float:
        """Δ = max(atol, 1e-3·(L_0 − min L)), the margin of the estimated L̂*."""
        return max(self.atol, 1e-3 * (self.losses[0] - self._loss_min)) if self.losses else self.atol

    @property
    def loss_star(self) -> float:
        """L̂*: the known L*, or min L − Δ (NaN before the first update)."""
        if self.known_loss_star is not None:
            return self.known_loss_star
        return self._loss_min - self.margin if self.losses else math.nan

    def _floor(self, loss: float) -> float:
        return _rounding_floor(loss, self.losses[0] if self.losses else loss, self.dtype)

    def update(self, step: int, loss: float, grad_norm_sq: float) -> PLEstimate:
        """Record one evaluation and return the diagnostics at it."""
        loss, grad_norm_sq = float(loss), float(grad_norm_sq)
        if not (math.isfinite(loss) and math.isfinite(grad_norm_sq)):
            raise ValueError(f"loss {loss} and squared gradient norm {grad_norm_sq} must be finite.")
        if self.known_loss_star is not None and loss - self.known_loss_star < -self._floor(loss):
            raise ValueError(
                f"loss_star above the loss: L* = {self.known_loss_star:.17g} > L = {loss:.17g} at step {step}."
            )
        self.steps.append(int(step))
        self.losses.append(loss)
        self.grad_norms_sq.append(grad_norm_sq)
        self._loss_min = min(self._loss_min, loss)
        star, floor = self.loss_star, self._floor(loss)
        mu = _ratio(grad_norm_sq, loss - star, floor)
        self._record(mu)
        sensitivity = None
        if self.known_loss_star is None:
            sensitivity = (mu, _ratio(grad_norm_sq, loss - star + self.margin, floor))
        contraction = math.nan
        if len(self.losses) >= 2:
            before, now = self.losses[-2] - star, loss - star
            if before > self._floor(self.losses[-2]) and now > floor and self.steps[-1] > self.steps[-2]:
                contraction = (now / before) ** (1.0 / (self.steps[-1] - self.steps[-2]))
        aitken = math.nan
        if len(self.losses) >= 3 and self.steps[-1] - self.steps[-2] == self.steps[-2] - self.steps[-3]:
            aitken = aitken_extrapolation(*self.losses[-3:], dtype=self.dtype)
        eta_t = math.nan
        if self.learning_rate is not None and not math.isnan(mu):
            eta_t = 2 * self.learning_rate * step * mu
        return PLEstimate(
            step=int(step),
            loss=loss,
            mu=mu,
            mu_running_min=self._mu_min if self._recent else math.nan,
            mu_window_min=min(self._recent) if self._recent else math.nan,
            loss_star=star,
            loss_star_estimated=self.known_loss_star is None,
            loss_star_aitken=aitken,
            mu_sensitivity=sensitivity,
            contraction=contraction,
            lojasiewicz_slope=self.lojasiewicz_slope(star),
            eta_t_ratio=eta_t,
        )

    def _record(self, mu: float) -> None:
        self.mus.append(mu)
        if not math.isnan(mu):
            self._recent.append(mu)
            self._mu_min = min(self._mu_min, mu)

    def lojasiewicz_slope(self, loss_star: float | None = None) -> float:
        """Least-squares slope of log‖∇L‖² against log(L − L*) over the last half of the valid points.

        Valid: L − L* above the rounding floor and ‖∇L‖² > 0. NaN with fewer than four points in that
        half: a slope through two or three points (e.g. the last jumps of L-BFGS) says nothing about the
        rate.
        """
        star = self.loss_star if loss_star is None else loss_star
        points = [
            (math.log(loss - star), math.log(g))
            for loss, g in zip(self.losses, self.grad_norms_sq, strict=True)
            if loss - star > self._floor(loss) and g > 0
        ]
        points = points[len(points) // 2 :]
        if len(points) < 4:
            return math.nan
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        spread = sum((x - mean_x) ** 2 for x, _ in points)
        return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread > 0 else math.nan

    def mu_history(self, loss_star: float | None = None) -> Tensor:
        """μ_t over the whole history recomputed with one L* (default: the current L̂*), NaN where invalid."""
        star = self.loss_star if loss_star is None else loss_star
        mus = [
            _ratio(g, loss - star, self._floor(loss)) for loss, g in zip(self.losses, self.grad_norms_sq, strict=True)
        ]
        return torch.tensor(mus, dtype=torch.float64)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (a plain dict of lists and numbers, for checkpoints)."""
        return {
            "loss_star": self.known_loss_star,
            "window": self.window,
            "atol": self.atol,
            "learning_rate": self.learning_rate,
            "steps": list(self.steps),
            "losses": list(self.losses),
            "grad_norms_sq": list(self.grad_norms_sq),
            "mus": list(self.mus),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.known_loss_star = state["loss_star"]
        self.window, self.atol, self.learning_rate = state["window"], state["atol"], state["learning_rate"]
        self.steps = list(state["steps"])
        self.losses = list(state["losses"])
        self.grad_norms_sq = list(state["grad_norms_sq"])
        self.mus, self._recent, self._mu_min = [], deque(maxlen=self.window), math.inf
        for mu in state["mus"]:
            self._record(mu)
        self._loss_min = min(self.losses, default=math.inf)
