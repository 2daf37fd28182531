"""One-point strong convexity with respect to a reference point (docs/theory.md §3).

- :func:`one_point_convexity` — ⟨∇L(θ), θ − θ*⟩ / ‖θ − θ*‖² against a reference aligned to the model.
- :func:`one_point_convexity_profile` — a proxy for "one-point strongly convex in most directions".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..curvature.shallow import shallow_parameters
from ..curvature.symmetry import quotient_basis, symmetry_tangents
from ..objective import Data, LossFunction, Objective, as_objective
from .align import Alignment, align_parameters, shallow_reference


@dataclass(frozen=True)
class OnePointConvexity:
    """One-point strong convexity of L at θ with respect to a reference θ* (docs/theory.md §3.1).

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
    assignment: tuple[int, ...] | None
    loss: float
    grad_norm: float


def reference_point(
    objective: Objective, reference: nn.Module | Tensor, align: bool = True
) -> tuple[Tensor, Alignment | None]:
    """θ* in θ's flat layout: ``reference`` (a model of the same architecture or a flat tensor), aligned
    to the model's gauge with :func:`~torch_landscape.convexity.align.align_parameters` when ``align`` is true."""
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
        for name, shape in zip(objective.names, objective.shapes, strict=True):
            if name not in named or named[name].shape != shape:
                what = "missing" if name not in named else f"of shape {tuple(named[name].shape)}"
                raise ValueError(
                    f"reference parameter {name!r} is {what}, the model's has shape {tuple(shape)}; a reference with "
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
        Map the reference into the model's gauge first (docs/theory.md §3.3): match hidden neurons and apply
        the activation's symmetries, so that μ measures the distance to the nearest equivalent
        reference. Needs a one-hidden-layer network.

    Notes
    -----
    If the minimisers are not isolated, μ against one fixed θ* is 0 along the minimiser set; alignment
    approximates the projection onto that set (docs/theory.md §3.1).
    """
    if reference is None:
        raise TypeError("one_point_convexity needs a reference (a network or a flat tensor).")
    objective = as_objective(model, loss_fn, data, params=params, dtype=dtype)
    theta_star, alignment = reference_point(objective, reference, align)
    loss, gradient = objective.first_order()  # shared with the operator's, computed once per objective
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
    """A *proxy* for "one-point strongly convex in most directions" (docs/theory.md §3.4).

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
            for r, q, mu0, bad in zip(
                self.radii.tolist(),
                self.quantiles.tolist(),
                self.threshold.tolist(),
                self.frac_bad.tolist(),
                strict=True,
            )
        ]
        quotient = ", quotient" if self.quotient else ""
        header = f"one-point convexity profile (proxy), {self.values.shape[1]} directions{quotient}"
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

    This is **a proxy**: Safran–Yehudai–Shamir's exact quantifiers could not be checked (docs/theory.md §3.4).
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
    mu0 = (
        0.1 * quantiles[:, 3] if threshold is None else torch.full((len(radii),), float(threshold), dtype=torch.float64)
    )
    return OnePointProfile(
        radii=absolute,
        values=values,
        quantiles=quantiles,
        threshold=mu0,
        frac_bad=(values < mu0[:, None]).double().mean(dim=1),
        quotient=quotient,
    )
