"""Polyak–Łojasiewicz and one-point strong convexity diagnostics (theory.md §2, §3).

- :func:`pl_ratio` — μ = ‖∇L‖² / (2 (L − L*)) on the full objective.
- :class:`PLTracker` — the same along a run: running and window minima, an estimate of L* when it is
  unknown, Aitken extrapolation, per-step contraction, Łojasiewicz slope, η·t ratio.
- :func:`one_point_convexity` — ⟨∇L(θ), θ − θ*⟩ / ‖θ − θ*‖² against a reference aligned to the model.
- :func:`one_point_convexity_profile` — a proxy for "one-point strongly convex in most directions".
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .align import Alignment, align_parameters, shallow_reference
from .objective import Data, LossFunction, Objective, as_objective
from .settings import check_loss_star
from .shallow import shallow_parameters
from .symmetry import quotient_basis, symmetry_tangents


def _rounding_floor(loss: float, initial_loss: float, dtype: torch.dtype) -> float:
    """floor = max(1e-12·max(1, |L_0|), 10·ε·|L|): below it L − L* is rounding, not signal (theory.md §2.3)."""
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

    A function is μ-PL on a set when this ratio is ≥ μ everywhere on it (theory.md §2.1).

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
    if loss_star is None:
        raise TypeError("pl_ratio needs loss_star, the infimum L* of the loss (e.g. 0 for a realisable teacher).")
    loss_star = check_loss_star(loss_star)
    objective = as_objective(model, loss_fn, data, params=params, dtype=dtype)
    loss, gradient = objective.loss_and_gradient()
    loss = float(loss)
    floor = _rounding_floor(loss, loss if initial_loss is None else initial_loss, objective.dtype)
    if loss - loss_star < -floor:
        raise ValueError(
            f"loss_star above the loss: L* = {loss_star:.17g} > L(θ) = {loss:.17g}; L* must be a lower bound "
            "of the loss (its infimum, or the local minimum value)."
        )
    return _ratio(float(gradient @ gradient), loss - loss_star, floor)


def aitken_extrapolation(previous: float, current: float, following: float, *, dtype: torch.dtype = torch.float64) -> float:
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
    mu_sensitivity: Optional[tuple[float, float]]
    contraction: float
    lojasiewicz_slope: float
    eta_t_ratio: float


class PLTracker:
    """PL diagnostics along a training run, from (step, L, ‖∇L‖²) of each evaluation (theory.md §2).

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
            for loss, g in zip(self.losses, self.grad_norms_sq)
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
        mus = [_ratio(g, loss - star, self._floor(loss)) for loss, g in zip(self.losses, self.grad_norms_sq)]
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


@dataclass(frozen=True)
class OnePointConvexity:
    """One-point strong convexity of L at θ with respect to a reference θ* (theory.md §3.1).

    Attributes
    ----------
    value : float
        μ = ⟨∇L(θ), θ − θ*⟩ / ‖θ − θ*‖² (the largest μ for which RSI(μ) holds at θ); NaN when
        ‖θ − θ*‖ ≤ 100·ε·max(‖θ‖, ‖θ*‖, 1), where it is rounding over rounding.
    cosine : float
        ⟨∇L, θ − θ*⟩ / (‖∇L‖ ‖θ − θ*‖): positive ⇔ −∇L points toward θ*.
    distance : float
        ‖θ − θ*‖.
    reference : Tensor
        θ*, the (aligned) reference, flat in θ's layout.
    assignment : tuple[int, ...] or None
        For each model neuron, the reference neuron matched to it (−1: none); None without alignment.
    loss, grad_norm : float
        L(θ) and ‖∇L(θ)‖.
    """

    value: float
    cosine: float
    distance: float
    reference: Tensor = field(repr=False)
    assignment: Optional[tuple[int, ...]]
    loss: float
    grad_norm: float


def reference_point(objective: Objective, reference: nn.Module | Tensor, align: bool = True) -> tuple[Tensor, Optional[Alignment]]:
    """θ* in θ's flat layout: ``reference`` (a model of the same architecture or a flat tensor), aligned
    to the model's gauge with :func:`~torch_landscape.align.align_parameters` when ``align`` is true."""
    size = objective.num_parameters
    if isinstance(reference, Tensor):
        flat = reference.detach().to(device=objective.device, dtype=objective.dtype).reshape(-1)
        if flat.numel() != size:
            raise ValueError(f"a flat reference must have the {size} entries of θ, got {flat.numel()}.")
    elif not isinstance(reference, nn.Module):
        raise TypeError(f"reference must be an nn.Module or a flat tensor, got {type(reference).__name__}.")
    if not align:
        if isinstance(reference, Tensor):
            return flat, None
        named = dict(reference.named_parameters())
        for name, shape in zip(objective.names, objective.shapes):
            if name not in named or named[name].shape != shape:
                found = "missing" if name not in named else f"of shape {tuple(named[name].shape)}"
                raise ValueError(
                    f"reference parameter {name!r} is {found}, the model's has shape {tuple(shape)}; a reference with "
                    "fewer hidden neurons needs align=True."
                )
        return objective.flatten({name: named[name].detach().to(objective.theta) for name in objective.names}), None
    found = shallow_parameters(objective)
    if found is None:
        raise ValueError(
            f"alignment needs a one-hidden-layer network (Linear → activation → Linear) whose parameters make up θ; "
            f"{type(objective.model).__name__} is not one. Pass align=False to compare the parameters as they are."
        )
    net, own = found
    if isinstance(reference, Tensor):
        theirs = {**own, **objective.unflatten(flat)}
    else:
        theirs = shallow_reference(net, reference, objective.dtype, objective.device)
    alignment = align_parameters(net, own, theirs, set(objective.names))
    return objective.flatten(alignment.parameters), alignment


def one_point_convexity(
    model: nn.Module | Objective,
    loss_fn: LossFunction | None = None,
    data: Data | None = None,
    reference: nn.Module | Tensor | None = None,
    align: bool = True,
    *,
    params: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float64,
) -> OnePointConvexity:
    """One-point strong convexity μ = ⟨∇L(θ), θ − θ*⟩ / ‖θ − θ*‖² with respect to a reference θ*.

    Parameters
    ----------
    model, loss_fn, data, params, dtype
        The objective (see :class:`~torch_landscape.objective.Objective`), float64 by default.
    reference
        θ*: a network of the same architecture (possibly with fewer hidden neurons, e.g. the teacher of
        an over-parameterised student) or a flat tensor in θ's layout.
    align
        Map the reference into the model's gauge first (theory.md §3.3): match hidden neurons and apply
        the activation's symmetries, so that μ measures the distance to the nearest equivalent
        reference. Needs a one-hidden-layer network.

    Notes
    -----
    If the minimisers are not isolated, μ against one fixed θ* is 0 along the minimiser set; alignment
    approximates the projection onto that set (theory.md §3.1).
    """
    if reference is None:
        raise TypeError("one_point_convexity needs a reference (a network or a flat tensor).")
    objective = as_objective(model, loss_fn, data, params=params, dtype=dtype)
    theta_star, alignment = reference_point(objective, reference, align)
    loss, gradient = objective.loss_and_gradient()
    difference = objective.theta - theta_star
    distance = float(torch.linalg.vector_norm(difference))
    grad_norm = float(torch.linalg.vector_norm(gradient))
    inner = float(gradient @ difference)
    # θ − θ* at rounding level (e.g. θ is the aligned reference): the ratio is 0/0, report NaN.
    scale = max(float(torch.linalg.vector_norm(objective.theta)), float(torch.linalg.vector_norm(theta_star)), 1.0)
    separated = distance > 100 * torch.finfo(objective.dtype).eps * scale
    return OnePointConvexity(
        value=inner / distance**2 if separated else math.nan,
        cosine=inner / (grad_norm * distance) if separated and grad_norm > 0 else math.nan,
        distance=distance,
        reference=theta_star,
        assignment=alignment.assignment if alignment is not None else None,
        loss=float(loss),
        grad_norm=grad_norm,
    )


@dataclass(frozen=True)
class OnePointProfile:
    """A *proxy* for "one-point strongly convex in most directions" (theory.md §3.4).

    Attributes
    ----------
    radii : Tensor
        The radii r (absolute).
    values : Tensor
        (len(radii), M): ρ(r, D) = ⟨∇L(θ* + rD), D⟩ / r for each of M random unit directions D.
    quantiles : Tensor
        (len(radii), 4): the minimum and the 1%, 5% and 50% quantiles of ρ over the directions.
    threshold : Tensor
        μ0 per radius (default 0.1 × the median).
    frac_bad : Tensor
        The fraction of directions with ρ < μ0, per radius.
    quotient : bool
        Whether the directions were drawn orthogonal to the continuous-symmetry tangents at θ*.
    """

    radii: Tensor
    values: Tensor = field(repr=False)
    quantiles: Tensor
    threshold: Tensor
    frac_bad: Tensor
    quotient: bool

    def __str__(self) -> str:
        rows = [
            f"  r={r:.3g}: min {q[0]:.4g}, q01 {q[1]:.4g}, q05 {q[2]:.4g}, median {q[3]:.4g}, "
            f"frac(rho < {mu0:.3g}) = {bad:.3f}"
            for r, q, mu0, bad in zip(self.radii.tolist(), self.quantiles.tolist(), self.threshold.tolist(), self.frac_bad.tolist())
        ]
        header = f"one-point convexity profile (proxy), {self.values.shape[1]} directions{', quotient' if self.quotient else ''}"
        return "\n".join([header, *rows])


def one_point_convexity_profile(
    model: nn.Module | Objective,
    loss_fn: LossFunction | None = None,
    data: Data | None = None,
    reference: nn.Module | Tensor | None = None,
    align: bool = True,
    *,
    radii: Sequence[float] = (1e-1, 1e-2, 1e-3),
    num_directions: int = 100,
    quotient: bool = False,
    threshold: float | None = None,
    seed: int = 0,
    params: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float64,
) -> OnePointProfile:
    """A proxy for "one-point strongly convex in most directions" around a minimiser θ*.

    This is **a proxy**: Safran–Yehudai–Shamir's exact quantifiers could not be checked (theory.md §3.4).
    For M random unit directions D (Gaussian, from a private generator) and each radius
    r = radii_i · max(‖θ*‖/√P, 1e-3), it computes

        ρ(r, D) = ⟨∇L(θ* + r D), D⟩ / r,

    the one-point convexity of θ* + rD with respect to θ*, and reports its quantiles and the fraction of
    directions with ρ < μ0 (μ0 = ``threshold``, default 0.1 × the median at each radius). Near a
    nondegenerate minimum ρ → DᵀHD > 0 for every D; null directions of H give ρ near 0.

    Parameters
    ----------
    reference
        θ* (a network or flat tensor, aligned as in :func:`one_point_convexity`); default: the model's
        own parameters, for a model sitting at a minimum.
    quotient
        Draw D orthogonal to the continuous-symmetry tangents at θ*, whose directions are flat by design.
    """
    objective = as_objective(model, loss_fn, data, params=params, dtype=dtype)
    theta_star = objective.theta if reference is None else reference_point(objective, reference, align)[0]
    size = objective.num_parameters
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(size, num_directions, generator=generator, dtype=torch.float64).to(theta_star)
    if quotient:
        directions = quotient_basis(symmetry_tangents(objective, theta_star).vectors, theta_star).project(directions)
    directions = directions / torch.linalg.vector_norm(directions, dim=0)
    scale = max(float(torch.linalg.vector_norm(theta_star)) / math.sqrt(size), 1e-3)
    absolute = torch.tensor([r * scale for r in radii], dtype=torch.float64)
    values = torch.empty(len(radii), num_directions, dtype=torch.float64)
    for i, r in enumerate(absolute.tolist()):
        for j in range(num_directions):
            direction = directions[:, j]
            _, gradient = objective.loss_and_gradient(theta_star + r * direction)
            values[i, j] = float(gradient @ direction) / r
    levels = torch.tensor([0.0, 0.01, 0.05, 0.5], dtype=torch.float64)
    quantiles = torch.quantile(values, levels, dim=1).T
    mu0 = 0.1 * quantiles[:, 3] if threshold is None else torch.full((len(radii),), float(threshold), dtype=torch.float64)
    return OnePointProfile(
        radii=absolute,
        values=values,
        quantiles=quantiles,
        threshold=mu0,
        frac_bad=(values < mu0[:, None]).double().mean(dim=1),
        quotient=quotient,
    )
