"""One evaluation of the landscape at the model's current θ: what every quantity shares, what links one
evaluation to the next, and one computation per quantity of :data:`torch_landscape.quantities.TABLE`.

:class:`~torch_landscape.probe.LandscapeProbe` builds a :class:`Point` (the objective, one Hessian operator
whose cached loss, gradient, assembly and decomposition serve every quantity), then calls
``COMPUTATIONS[name](point, context, state, results)`` for each quantity due, and :func:`verdicts` last.
Each computation returns the snapshot fields it sets (the table's ``fields``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .convexity import PLTracker, one_point_convexity
from .critical.classify import classify_critical_point
from .critical.newton import certainly_negative, default_rtol_zero, gradient_rounding
from .curvature.eigen import Spectrum, hessian_eigenvalues
from .curvature.estimators import DensityMethod, TraceEstimate, hessian_trace, spectral_density
from .curvature.operators import HessianOperator, StructuredHessian
from .curvature.policy import Purpose, uses_dense
from .curvature.structured import shallow_structure, structured_diagonal
from .objective import Objective, check_finite
from .redundancy import mlp_redundancy, neuron_redundancy, redundancy_nullity_check
from .settings import ProbeSettings
from .slices import landscape_slices
from .stability import stability_reading
from .verdicts import contradictions, divergence_verdict

#: What a full snapshot's loss slices may cost, in gradients (about 30 grid points): a fixed share, so that
#: the pictures never cost as much as the spectrum behind them.
SLICE_BUDGET = 20.0

#: Hutch++ products for the trace at a full evaluation without a closed form or dense Hessian: a monitoring
#: estimate, its standard error logged beside it (hessian_trace's default of 99 is a third of a full evaluation).
TRACE_PRODUCTS = 30

#: The relative tolerance of the spectrum at full evaluations: the critical-point test's, whose Krylov space
#: the spectrum shares (classify_critical_point's default).
FULL_TOL = 1e-9


class Point(NamedTuple):
    """The objective at the current parameters, shared by every quantity of one snapshot."""

    objective: Objective
    operator: HessianOperator
    loss: float
    gradient: Tensor
    step: int
    learning_rate: float | None
    full: bool
    optimizer: torch.optim.Optimizer | None = None


def point_at(
    objective: Objective,
    step: int,
    learning_rate: float | None,
    full: bool,
    optimizer: torch.optim.Optimizer | None = None,
) -> Point:
    """The :class:`Point` of ``objective`` at its θ; a non-finite loss or gradient raises FloatingPointError."""
    # One operator per snapshot: the loss, gradient, dense Hessian and eigendecomposition it caches serve
    # every quantity.
    operator = HessianOperator(objective)
    loss = check_finite(operator.loss.reshape(1), "the probe loss")
    gradient = check_finite(operator.gradient, "the gradient of the probe loss")
    return Point(objective, operator, float(loss), gradient, step, learning_rate, full, optimizer)


@dataclass(frozen=True)
class Context:
    """What stays fixed over a probe's life: its settings and what they apply to."""

    settings: ProbeSettings
    quantities: tuple[str, ...]
    model: nn.Module
    shallow: bool  # a one-hidden-layer network: neuron redundancy rules, not the MLP's
    reference: nn.Module | Tensor | None  # θ* as the objective's model sees it
    align: bool  # match the reference's neurons to the model's
    inputs: list[tuple[Tensor, Tensor]] | None  # the probe batches for redundancy (None with loss=)
    distributed: bool


def _replace_step(entries: list[tuple[int, float, float]], entry: tuple[int, float, float]) -> None:
    """Append ``entry``, or replace the last one of the same step (a full evaluation completing a light one)."""
    if entries and entries[-1][0] == entry[0]:
        entries[-1] = entry
    else:
        entries.append(entry)


@dataclass
class RunningState:
    """What links evaluations: warm starts, the PL and one-point running values, the eigenvalue trajectory
    and the (step, L, ‖θ‖) path of the divergence verdict."""

    pl: PLTracker
    one_point_min: float = math.inf
    assignment: tuple[int, ...] | None = None
    warm_start: Tensor | None = None  # for both ends: the sum of the last eigenvectors
    warm_top: Tensor | None = None  # for λ_max alone: the last top eigenvector
    warm_stability: Tensor | None = None  # for the optimizer's sharpness: its last top eigenvector
    vectors: Spectrum | None = None  # this full snapshot's spectrum with its eigenvectors (for the slices)
    trajectory: list[tuple[int, float, float]] = field(default_factory=list)
    path: list[tuple[int, float, float]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {
            "warm_start": None if self.warm_start is None else self.warm_start.detach().cpu(),
            "warm_top": None if self.warm_top is None else self.warm_top.detach().cpu(),
            "warm_stability": None if self.warm_stability is None else self.warm_stability.detach().cpu(),
            "trajectory": list(self.trajectory),
            "path": list(self.path),
            "pl": self.pl.state_dict(),
            "one_point_min": self.one_point_min,
            "assignment": self.assignment,
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device, dtype: torch.dtype) -> None:
        warm, top, stable = state["warm_start"], state.get("warm_top"), state.get("warm_stability")
        self.warm_start = None if warm is None else warm.to(device=device, dtype=dtype)
        self.warm_top = None if top is None else top.to(device=device, dtype=dtype)
        self.warm_stability = None if stable is None else stable.to(device=device, dtype=dtype)
        self.trajectory = [(int(step), float(low), float(high)) for step, low, high in state["trajectory"]]
        self.path = [(int(step), float(loss), float(norm)) for step, loss, norm in state.get("path", [])]
        self.pl.load_state_dict(state["pl"])
        self.one_point_min = state["one_point_min"]
        assignment = state["assignment"]
        self.assignment = None if assignment is None else tuple(assignment)


def dense_here(point: Point, context: Context) -> bool:
    """Whether this snapshot's spectrum comes from the assembled Hessian (exact, every eigenvalue)."""
    # The critical-point test decomposes H densely up to its own threshold: share that decomposition.
    critical = "critical" in context.quantities
    purpose: Purpose = "light" if not point.full else "critical" if critical else "spectrum"
    # Assembled from the network's structure in one pass, or from P products (the structure did not hold).
    structured = isinstance(point.operator, StructuredHessian) and shallow_structure(point.operator) is not None
    return uses_dense(point.objective.num_parameters, purpose, context.settings.method, structured)


Computation = Callable[[Point, Context, RunningState, dict[str, Any]], dict[str, Any]]


def pl_values(point: Point, context: Context, state: RunningState, results: dict[str, Any]) -> dict[str, Any]:
    state.pl.learning_rate = point.learning_rate
    return {"pl": state.pl.update(point.step, point.loss, float(point.gradient @ point.gradient))}


def one_point_values(point: Point, context: Context, state: RunningState, results: dict[str, Any]) -> dict[str, Any]:
    result = one_point_convexity(point.objective, reference=context.reference, align=context.align)
    if not math.isnan(result.value):
        state.one_point_min = min(state.one_point_min, result.value)
    changes = None
    if result.assignment is not None and state.assignment is not None:
        changes = sum(a != b for a, b in zip(result.assignment, state.assignment, strict=False))
    state.assignment = result.assignment
    running = state.one_point_min if math.isfinite(state.one_point_min) else math.nan
    return {"one_point": result, "one_point_running_min": running, "assignment_changes": changes}


def spectrum_values(point: Point, context: Context, state: RunningState, results: dict[str, Any]) -> dict[str, Any]:
    settings = context.settings
    k = min(settings.k, point.objective.num_parameters)
    dense = dense_here(point, context)
    if dense or point.full:
        # A full evaluation on the Krylov path solves cold, to the critical-point test's tolerance: its Krylov
        # space then also serves the classification and the density's quadrature (no solve of their own).
        spectrum = hessian_eigenvalues(
            point.operator,
            k=k,
            which="both",
            method="dense" if dense else "lanczos",
            tol=FULL_TOL,
            warm_start=None if point.full and not dense else state.warm_start,
            return_eigenvectors=True,
        )
    else:  # λ_max alone, from where the last one was
        spectrum = hessian_eigenvalues(
            point.operator,
            k=1,
            which="largest",
            method="lanczos",
            tol=settings.light_tol,
            warm_start=state.warm_top,
            return_eigenvectors=True,
        )
    check_finite(spectrum.eigenvalues, "the Hessian eigenvalues")
    vectors = spectrum.eigenvectors
    if vectors is None:  # asked for above; a solver returning none is a bug, not a numerical failure
        raise TypeError("hessian_eigenvalues returned no eigenvectors although they were asked for.")
    state.vectors = spectrum if point.full else None
    state.warm_top = vectors[:, -1:].clone()
    if spectrum.eigenvalues.numel() > 1:
        # The next solve of both ends starts from one vector, the sum of these eigenvectors: it has a
        # component along every wanted one and keeps the Krylov block size at 1. Measured on the demo
        # network 10 to 200 SGD steps apart: as many products as a random start (±10%); the whole
        # block as the start block took twice as many.
        combined = vectors.sum(dim=1, keepdim=True)
        state.warm_start = combined / torch.linalg.vector_norm(combined)
    ends = "both" if dense or point.full else "largest"
    smallest = spectrum.lambda_min if ends == "both" else math.nan
    _replace_step(state.trajectory, (point.step, smallest, spectrum.lambda_max))
    negative = None
    if ends == "both":  # dense: every eigenvalue, each to within the dense path's rounding bound
        values = point.operator.eigh()[0] if dense else spectrum.eigenvalues
        bounds = torch.full_like(values, float(spectrum.error_bounds.max())) if dense else spectrum.error_bounds
        band = default_rtol_zero(settings.dtype) * float(values.abs().max())
        negative = certainly_negative(values, bounds.to(values), band)
    return {
        "spectrum": dataclasses.replace(spectrum, eigenvectors=None, quadrature=None),
        "spectrum_ends": ends,
        "negative_count": negative,
    }


def stability_values(point: Point, context: Context, state: RunningState, results: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's stability ratio from this evaluation's λ_max (plain SGD: no products of its own) or a
    warm-started solve of the preconditioned sharpness (adaptive methods)."""
    if point.optimizer is None:
        return {}
    spectrum = results.get("spectrum")
    reading = stability_reading(
        point.optimizer,
        point.operator,
        spectrum=spectrum,
        warm_start=state.warm_stability,
        tol=context.settings.light_tol,
        method=context.settings.method,
    )
    if reading.eigenvector is not None:
        state.warm_stability = reading.eigenvector
    # The snapshot keeps the numbers, not the P-long preconditioner or eigenvector.
    setup = dataclasses.replace(reading.setup, diagonal=None, shift=None)
    return {"stability": dataclasses.replace(reading, setup=setup, eigenvector=None)}


def trace_values(point: Point, context: Context, state: RunningState, results: dict[str, Any]) -> dict[str, Any]:
    if dense_here(point, context):  # the Hessian the spectrum assembled (cached): its trace costs nothing more
        return {"trace": hessian_trace(point.operator, method="dense")}
    if point.full:  # exact where the structure gives it, else Hutch++
        return {"trace": hessian_trace(point.operator, dense_threshold=0, num_hvp=TRACE_PRODUCTS)}
    # Light: only where it is exact in about one forward pass (Hutch++ would cost ~100 products).
    exact = structured_diagonal(point.operator)
    return {} if exact is None else {"trace": TraceEstimate(float(exact.sum()), 0.0, 0, "exact")}


def _solved(point: Point, context: Context, state: RunningState) -> Spectrum | None:
    """This full evaluation's Krylov spectrum (with its vectors and quadrature), for the quantities that reuse
    it; None on the dense path, where the operator's cached decomposition is shared instead."""
    if not point.full or dense_here(point, context):
        return None
    return state.vectors


def density_values(point: Point, context: Context, state: RunningState, results: dict[str, Any]) -> dict[str, Any]:
    method: DensityMethod = "dense" if dense_here(point, context) else "slq"  # the Krylov path never assembles H
    return {"density": spectral_density(point.operator, method=method, spectrum=_solved(point, context, state))}


def critical_values(point: Point, context: Context, state: RunningState, results: dict[str, Any]) -> dict[str, Any]:
    settings = context.settings
    solved = _solved(point, context, state)
    method = settings.method if solved is None else "lanczos"
    critical = classify_critical_point(
        point.operator, method=method, k=settings.k, learning_rate=point.learning_rate, spectrum=solved
    )
    if solved is not None and not critical.newton_at_least and uses_dense(point.objective.num_parameters, "critical"):
        # Near a critical point (no cheap certificate that θ is far from one) the eigenvalues near 0 decide,
        # and the assembled Hessian resolves them where Lanczos counts only among the k ends: assembled here
        # only, where it decides something (the Krylov path was taken because the assembly costs P products).
        critical = classify_critical_point(
            point.operator, method="dense", k=settings.k, learning_rate=point.learning_rate
        )
    return {"critical": critical}


def redundancy_values(point: Point, context: Context, state: RunningState, results: dict[str, Any]) -> dict[str, Any]:
    analyse = neuron_redundancy if context.shallow else mlp_redundancy
    return {"redundancy": analyse(context.model, context.inputs)}


def slice_values(point: Point, context: Context, state: RunningState, results: dict[str, Any]) -> dict[str, Any]:
    """The loss along this snapshot's extreme eigenvectors, a predicted null direction (the nullity
    cross-check's, where there is one) and toward the reference, within SLICE_BUDGET gradients."""
    nullity = results.get("nullity")
    null = nullity.predicted_vectors[:, 0] if nullity is not None and nullity.predicted_nullity else None
    spectrum = state.vectors if state.vectors is not None and state.vectors.eigenvectors is not None else None
    budget = SLICE_BUDGET
    reference = context.reference if "one_point" in context.quantities else None
    slices = landscape_slices(
        point.operator, spectrum, reference=reference, null_vector=null, align=context.align, budget=budget
    )
    return {"slices": slices.without_vectors()}


def verdict_values(point: Point, context: Context, state: RunningState, results: dict[str, Any]) -> dict[str, Any]:
    """Escape to infinity from the (step, L, ‖θ‖) path of every snapshot; at full snapshots the nullity
    cross-check (dense path) and the contradictions between the verdicts."""
    norm = float(torch.linalg.vector_norm(point.objective.theta))
    _replace_step(state.path, (point.step, point.loss, norm))
    divergence = divergence_verdict(state.path, context.model if point.full and context.align else None)
    out: dict[str, Any] = {"divergence": divergence}
    one_point, spectrum = results.get("one_point"), results.get("spectrum")
    if one_point is not None and spectrum is not None and one_point.distance > 0:
        # Within its rounding (the gradient's, over the distance) the ratio says nothing: θ is at the reference.
        scale = float(spectrum.eigenvalues.abs().max())
        noise = gradient_rounding(point.objective.num_parameters, context.settings.dtype, scale, norm, point.loss)
        if noise / one_point.distance >= abs(one_point.value):
            out["one_point"] = dataclasses.replace(one_point, value=math.nan, cosine=math.nan)
    critical, redundancy = results.get("critical"), results.get("redundancy")
    if not point.full:
        return out
    if critical is not None and redundancy is not None and critical.method == "dense" and context.inputs:
        if not context.distributed:  # the check reads the objective's samples: this rank's shard only
            out["nullity"] = redundancy_nullity_check(point.operator, report=redundancy)
    out["contradictions"] = tuple(contradictions(critical, redundancy, out.get("nullity"), divergence))
    return out


#: One computation per quantity of the table, in table order. The probe runs the slices after
#: :func:`verdict_values`: they draw the null direction the nullity cross-check predicts.
COMPUTATIONS: dict[str, Computation] = {
    "pl": pl_values,
    "one_point": one_point_values,
    "spectrum": spectrum_values,
    "stability": stability_values,
    "trace": trace_values,
    "density": density_values,
    "critical": critical_values,
    "redundancy": redundancy_values,
    "slices": slice_values,
}
