"""LandscapeProbe: the landscape diagnostics of a model on fixed probe data, one snapshot at a time.

This is the framework-agnostic core of the Lightning monitors and the plain-loop API::

    probe = LandscapeProbe(model, nn.MSELoss(), (x_probe, y_probe), reference=teacher)
    for step in range(steps):
        ...  # train
        if step % 50 == 0:
            log_snapshot(writer, probe.snapshot(step, full=step % 500 == 0, learning_rate=lr), probe)

(``log_snapshot`` is :func:`torch_landscape.writers.log_snapshot`.) A snapshot evaluates the objective L(θ)
(the mean loss over the probe data, docs/theory.md §0.2) at the model's current parameters, in float64 on a
copy, through the core functions (one place computes each quantity), and returns a
:class:`LandscapeSnapshot`. The probe carries what links snapshots: the last eigenvectors
(warm start of the next eigen-solve), the PL and one-point running state, and the eigenvalue trajectory.
Nothing here changes the model, its ``.grad``, its train/eval mode or any random number generator.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .convexity import PLTracker, one_point_convexity, reference_point
from .critical.classify import classify_critical_point
from .critical.newton import certainly_negative, default_rtol_zero, gradient_rounding
from .curvature.eigen import Spectrum, hessian_eigenvalues
from .curvature.estimators import TraceEstimate, hessian_trace, spectral_density
from .curvature.operators import HessianOperator
from .curvature.policy import Purpose, uses_dense
from .curvature.shallow import find_shallow, structured_diagonal
from .objective import Data, LossFunction, Objective, check_finite, check_process_group
from .probe_data import (  # noqa: F401  (BatchLoss, preserved_rng, ...: public here since the first release)
    REDUNDANCY_NEEDS,
    BatchLoss,
    BatchLossModel,
    applicable_quantities,
    is_shallow,
    preserved_rng,
    read_probe_data,
    supports_redundancy,
)
from .redundancy import (
    find_mlp,
    is_mlp,
    mlp_redundancy,
    neuron_redundancy,
    redundancy_nullity_check,
)
from .settings import FULL_QUANTITIES, LIGHT_TOL, OnError, ProbeSettings, check_quantities
from .slices import landscape_slices
from .snapshot import LandscapeSnapshot
from .verdicts import contradictions, divergence_verdict

#: The failures a diagnostic may survive with ``on_error="warn"``: non-finite values (FloatingPointError),
#: solvers and linear algebra (RuntimeError, torch's LinAlgError), memory, and values outside a
#: computation's domain (ValueError).
NUMERICAL_FAILURES = (ArithmeticError, RuntimeError, ValueError, MemoryError, np.linalg.LinAlgError)

#: The least a full snapshot's loss slices may cost, in gradients (about 60 grid points; more when the
#: spectrum itself took more products, so that the pictures never dominate a full snapshot).
SLICE_BUDGET = 40.0


class _Point(NamedTuple):
    """The objective at the current parameters, shared by every quantity of one snapshot."""

    objective: Objective
    operator: HessianOperator
    loss: float
    gradient: Tensor
    step: int
    learning_rate: float | None
    full: bool


class LandscapeProbe:
    """Landscape diagnostics of a model on fixed probe data; :meth:`snapshot` computes them at the
    model's current parameters.

    Parameters
    ----------
    model
        The network being trained. It is read, never written.
    loss_fn
        A mean-reduced loss ``loss_fn(outputs, targets)`` such as ``nn.MSELoss()``.
    data
        The probe data: one batch ``(inputs, targets)`` or an iterable of such batches (read once). Keep
        it fixed: the curves are comparable across steps because the objective is.
    loss
        Instead of ``loss_fn``: ``loss(model, batch) -> scalar`` for batches of any structure; ``data``
        is then an iterable of such batches. Redundancy then uses probe points only, not the data.
    quantities
        Names from :data:`QUANTITIES`; default all that apply ("one_point" needs ``reference``,
        "redundancy" a one-hidden-layer network).
    reference
        θ* for one-point convexity: a model of the same architecture (e.g. the teacher; for a
        one-hidden-layer network its neurons are matched to the model's first) or a flat tensor.
    loss_star
        L*, the infimum of the loss, if known (0 for a noiseless realisable teacher); estimated online
        otherwise (:class:`~torch_landscape.convexity.PLTracker`).
    k
        Eigenvalues from each end of the spectrum at full snapshots (also for the classification on the
        Lanczos path, whose index and nullity are then counts among these).
    light_tol
        Relative residual tolerance of λ_max at light snapshots (default :data:`LIGHT_TOL`); full
        snapshots solve both ends to the eigen-solver's default tolerance (1e-6).
    method
        Eigen-solver: "auto" (exact dense up to a size, :mod:`~torch_landscape.curvature.policy`, else Lanczos),
        "dense" or "lanczos".
    params
        Names of the parameters that make up θ (default: all trainable).
    dtype
        Precision of the diagnostics (float64 by default, on a copy).
    on_error
        "warn": a failing diagnostic is skipped, recorded in ``snapshot.errors`` and warned about once
        per kind of failure; "raise": the exception propagates.
    settings
        Instead of ``quantities`` … ``on_error``: a :class:`~torch_landscape.settings.ProbeSettings` (how
        the Lightning monitors pass theirs).
    process_group
        A ``torch.distributed`` process group to share the work with: every rank of it constructs its probe
        with the same model, the same whole ``data`` and the same options, and calls :meth:`snapshot` at the
        same steps. Each rank keeps its shard of the samples (a contiguous 1/world of them; with ``loss=``,
        every world-th batch); loss, gradient, Hessian products, dense assembly and exact trace are summed
        over the ranks (:meth:`~torch_landscape.objective.Objective.all_reduce`), so all ranks run the same
        eigen-solver iterations and return the same snapshot; log from rank zero. Redundancy runs on every
        rank with the whole input set (it needs all inputs, and each rank holds them); the slices and the
        nullity cross-check (which evaluate this rank's samples alone) are not computed. None: one process.

    Raises
    ------
    TypeError, ValueError
        At construction, naming the argument and the fix, for any bad argument, and for model, loss, data,
        ``params`` and ``reference`` that do not fit together: the objective is built and evaluated once
        here, so a misfit never reaches a snapshot.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction | None = None,
        data: Data | Iterable[Any] | None = None,
        *,
        loss: BatchLoss | None = None,
        quantities: Iterable[str] | None = None,
        reference: nn.Module | Tensor | None = None,
        loss_star: float | None = None,
        k: int = 5,
        light_tol: float = LIGHT_TOL,
        method: Literal["auto", "dense", "lanczos"] = "auto",
        params: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float64,
        on_error: OnError = "warn",
        settings: ProbeSettings | None = None,
        process_group: Any = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if (loss_fn is None) == (loss is None):
            raise ValueError("pass exactly one of loss_fn (loss_fn(outputs, targets)) and loss (loss(model, batch)).")
        for name, value in (("loss_fn", loss_fn), ("loss", loss)):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable, got {type(value).__name__}.")
        if data is None:
            raise ValueError("pass the probe data: a batch (inputs, targets) or an iterable of batches.")
        options = (quantities, loss_star, k, light_tol, method, params, dtype, on_error)
        if settings is None:
            settings = ProbeSettings(
                quantities=quantities,
                loss_star=loss_star,
                k=k,
                light_tol=light_tol,
                method=method,
                params=params,
                dtype=dtype,
                on_error=on_error,
            )
        elif not isinstance(settings, ProbeSettings):
            raise TypeError(f"settings must be a ProbeSettings, got {type(settings).__name__}.")
        elif options != (None, None, 5, LIGHT_TOL, "auto", None, torch.float64, "warn"):
            raise ValueError("pass either settings= or the options quantities … on_error, not both.")
        parameters = list(model.parameters())
        if not parameters:
            raise ValueError("the model has no parameters; there is no landscape to probe.")
        self.settings = settings
        self.model = model
        self._group = check_process_group(process_group)
        self.quantities = applicable_quantities(settings.quantities, model, reference, self._group is not None)
        self.reference = reference
        self._devices = sorted({p.device for p in parameters}, key=str)
        with torch.inference_mode(False):  # the probe's tensors must serve autograd later
            self._objective_args, self._inputs = read_probe_data(
                model, loss_fn, loss, data, settings, self._devices, self._group
            )
        # With loss=, the objective's model is the loss around the network (parameters "module.<name>"): no
        # neuron matching, and a reference network is seen under the same prefix.
        self._align = is_shallow(model) and loss is None
        self._reference: nn.Module | Tensor | None = reference
        if loss is not None and isinstance(reference, nn.Module):
            self._reference = nn.ModuleDict({"module": reference})
        # Build and evaluate the objective once now: a misfit of model, loss, data, params or reference
        # fails here with its name instead of at every snapshot while training goes on.
        with preserved_rng(self._devices), torch.inference_mode(False):
            try:
                model_, loss_fn_, batches = self._objective_args[:3]
                objective = Objective(
                    model_,
                    loss_fn_,
                    batches,
                    params=self._objective_args[3],
                    dtype=self.dtype,
                    process_group=self._group,
                )
            except ValueError as error:
                if loss is None or not isinstance(error.__cause__, RuntimeError):
                    raise
                # The objective's model is loss(model, batch) here: say so rather than "model(inputs)".
                cause = error.__cause__
                raise ValueError(f"loss(model, batch) fails on the first batch of data: {cause}") from cause
            if "one_point" in self.quantities and self._reference is not None:
                reference_point(objective, self._reference, self._align)
        self._num_samples = objective.num_samples
        #: P, the length of θ.
        self.num_parameters = objective.num_parameters
        self._pl = PLTracker(settings.loss_star, dtype=settings.dtype)
        self._one_point_min = math.inf
        self._assignment: tuple[int, ...] | None = None
        self._warm_start: Tensor | None = None  # for both ends: the sum of the last eigenvectors
        self._warm_top: Tensor | None = None  # for λ_max alone: the last top eigenvector
        self._vectors: Spectrum | None = None  # this full snapshot's spectrum with its eigenvectors
        self._trajectory: list[tuple[int, float, float]] = []
        self._path: list[tuple[int, float, float]] = []  # (step, L, ‖θ‖) of every snapshot
        self._warned: set[tuple[str, str]] = set()

    @property
    def process_group(self) -> Any:
        """The ``torch.distributed`` process group the evaluations are shared with (None: one process)."""
        return self._group

    @property
    def k(self) -> int:
        """Eigenvalues from each end of the spectrum."""
        return self.settings.k

    @property
    def method(self) -> str:
        """The eigen-solver: "auto", "dense" or "lanczos"."""
        return self.settings.method

    @property
    def dtype(self) -> torch.dtype:
        """The precision of the diagnostics."""
        return self.settings.dtype

    @property
    def light_tol(self) -> float:
        """The relative tolerance of λ_max at light snapshots."""
        return self.settings.light_tol

    @property
    def on_error(self) -> OnError:
        """ "warn" or "raise": what a failing diagnostic does."""
        return self.settings.on_error

    # -- computing ---------------------------------------------------------------------------------------

    def objective(self) -> Objective:
        """The objective at the model's current parameters (a float64 copy by default).

        Model, loss and data were checked at construction; a non-finite loss at the current parameters is
        the caller's to catch (:func:`~torch_landscape.objective.check_finite`)."""
        model, loss_fn, data, params = self._objective_args
        return Objective(model, loss_fn, data, params=params, dtype=self.dtype, check=False, process_group=self._group)

    def snapshot(
        self,
        step: int,
        *,
        full: bool = True,
        quantities: Iterable[str] | None = None,
        learning_rate: float | None = None,
    ) -> LandscapeSnapshot:
        """Compute the diagnostics at the model's current parameters.

        Parameters
        ----------
        step
            The training step, recorded in the snapshot and the running state.
        full
            A full snapshot computes every quantity: both ends of the spectrum to full tolerance, trace,
            density, critical point, redundancy. A light one skips :data:`FULL_QUANTITIES` and keeps
            the curvature cheap: λ_max with its error bound, warm-started from the previous top
            eigenvector at ``light_tol`` (a few Hessian-vector products), and the trace where it is exact
            and cheap (closed form for one-hidden-layer networks). Up to
            :data:`~torch_landscape.curvature.policy.LIGHT_DENSE_THRESHOLD` parameters the light spectrum is
            dense and exact, with λ_min.
        quantities
            Compute only these of the probe's quantities (default: all of them).
        learning_rate
            The optimiser's learning rate, for the edge of stability (λ_max·lr/2 against 1) and the
            PL tracker's η·t ratio.
        """
        start = time.perf_counter()
        chosen = self.quantities if quantities is None else check_quantities(quantities)
        wanted = [q for q in chosen if q in self.quantities and (full or q not in FULL_QUANTITIES)]
        errors: list[str] = []
        results: dict[str, Any] = {}
        loss = grad_norm = math.nan
        size = num_hvp = 0
        # (Not on one CPU thread for small problems: switching torch's thread count back and forth made the
        # training steps between snapshots five times slower.)
        with preserved_rng(self._devices), torch.inference_mode(False), torch.enable_grad():
            point = self._guarded("loss", step, errors, lambda: self._point(step, learning_rate, full))
            if point is not None:
                loss, grad_norm = point.loss, float(torch.linalg.vector_norm(point.gradient))
                size = point.objective.num_parameters
                for quantity in wanted:
                    if quantity != "slices":
                        compute = getattr(self, f"_compute_{quantity}")
                        results.update(self._guarded(quantity, step, errors, functools.partial(compute, point)) or {})
                results.update(self._guarded("verdicts", step, errors, lambda: self._verdicts(point, results)) or {})
                if "slices" in wanted:  # last: along the eigenvectors and null directions found before
                    results.update(self._guarded("slices", step, errors, lambda: self._slices(point, results)) or {})
                num_hvp = point.operator.num_hvp
        return LandscapeSnapshot(
            step=step,
            full=full,
            num_parameters=size,
            loss=loss,
            grad_norm=grad_norm,
            seconds=time.perf_counter() - start,
            num_hvp=num_hvp,
            learning_rate=learning_rate,
            errors=tuple(errors),
            **results,
        )

    def _guarded(self, quantity: str, step: int, errors: list[str], compute: Callable[[], Any]) -> Any:
        try:
            return compute()
        except NUMERICAL_FAILURES as error:
            # Only numerical failures (non-finite values, an eigensolver or memory failing) are survivable;
            # a TypeError or AttributeError is a bug or a bad argument and must surface.
            if self.on_error == "raise":
                raise
            message = f"{quantity}: {type(error).__name__}: {error}"
            errors.append(message)
            kind = (quantity, type(error).__name__)
            self._warn_once(
                kind,
                f"{quantity} failed at step {step} and is skipped ({message}). Training is not affected; later "
                "failures of this kind are recorded in the snapshots' errors (TensorBoard text landscape/errors) "
                "without a warning. Pass on_error='raise' to stop instead",
            )
            return None

    def _warn_once(self, kind: tuple[str, str], message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"torch_landscape: {message}.", RuntimeWarning, stacklevel=4)

    def _point(self, step: int, learning_rate: float | None, full: bool) -> _Point:
        objective = self.objective()
        # One operator per snapshot: the loss, gradient, dense Hessian and eigendecomposition it caches
        # serve every quantity.
        operator = HessianOperator(objective)
        loss = check_finite(operator.loss.reshape(1), "the probe loss")
        gradient = check_finite(operator.gradient, "the gradient of the probe loss")
        return _Point(objective, operator, float(loss), gradient, step, learning_rate, full)

    def _dense(self, point: _Point) -> bool:
        """Whether this snapshot's spectrum comes from the assembled Hessian (exact, every eigenvalue)."""
        # The critical-point test decomposes H densely up to its own threshold: share that decomposition.
        purpose: Purpose = "light" if not point.full else "critical" if "critical" in self.quantities else "spectrum"
        return uses_dense(point.objective.num_parameters, purpose, self.method)

    def _compute_pl(self, point: _Point) -> dict[str, Any]:
        self._pl.learning_rate = point.learning_rate
        return {"pl": self._pl.update(point.step, point.loss, float(point.gradient @ point.gradient))}

    def _compute_one_point(self, point: _Point) -> dict[str, Any]:
        result = one_point_convexity(point.objective, reference=self._reference, align=self._align)
        if not math.isnan(result.value):
            self._one_point_min = min(self._one_point_min, result.value)
        changes = None
        if result.assignment is not None and self._assignment is not None:
            changes = sum(a != b for a, b in zip(result.assignment, self._assignment, strict=False))
        self._assignment = result.assignment
        running = self._one_point_min if math.isfinite(self._one_point_min) else math.nan
        return {"one_point": result, "one_point_running_min": running, "assignment_changes": changes}

    def _compute_spectrum(self, point: _Point) -> dict[str, Any]:
        k = min(self.k, point.objective.num_parameters)
        dense = self._dense(point)
        if dense or point.full:
            spectrum = hessian_eigenvalues(
                point.operator,
                k=k,
                which="both",
                method="dense" if dense else "lanczos",
                warm_start=self._warm_start,
                return_eigenvectors=True,
            )
        else:  # λ_max alone, from where the last one was
            spectrum = hessian_eigenvalues(
                point.operator,
                k=1,
                which="largest",
                method="lanczos",
                tol=self.light_tol,
                warm_start=self._warm_top,
                return_eigenvectors=True,
            )
        check_finite(spectrum.eigenvalues, "the Hessian eigenvalues")
        if not spectrum.converged:
            self._warn_once(
                ("spectrum", "not converged"),
                f"the eigen-solver stopped before its tolerance at step {point.step} ({spectrum}); the logged error "
                "bounds (hessian/*_error) say how far each eigenvalue may be, and hessian/converged is 0",
            )
        vectors = spectrum.eigenvectors
        if vectors is None:  # asked for above; a solver returning none is a bug, not a numerical failure
            raise TypeError("hessian_eigenvalues returned no eigenvectors although they were asked for.")
        self._vectors = spectrum if point.full else None  # for the slices of this snapshot
        self._warm_top = vectors[:, -1:].clone()
        if spectrum.eigenvalues.numel() > 1:
            # The next solve of both ends starts from one vector, the sum of these eigenvectors: it has a
            # component along every wanted one and keeps the Krylov block size at 1. Measured on the demo
            # network 10 to 200 SGD steps apart: as many products as a random start (±10%); the whole
            # block as the start block took twice as many.
            combined = vectors.sum(dim=1, keepdim=True)
            self._warm_start = combined / torch.linalg.vector_norm(combined)
        ends = "both" if dense or point.full else "largest"
        smallest = spectrum.lambda_min if ends == "both" else math.nan
        self._trajectory.append((point.step, smallest, spectrum.lambda_max))
        negative = None
        if ends == "both":  # dense: every eigenvalue, each to within the dense path's rounding bound
            values = point.operator.eigh()[0] if dense else spectrum.eigenvalues
            bounds = torch.full_like(values, float(spectrum.error_bounds.max())) if dense else spectrum.error_bounds
            band = default_rtol_zero(self.dtype) * float(values.abs().max())
            negative = certainly_negative(values, bounds.to(values), band)
        return {
            "spectrum": dataclasses.replace(spectrum, eigenvectors=None),
            "spectrum_ends": ends,
            "negative_count": negative,
        }

    def _compute_trace(self, point: _Point) -> dict[str, Any]:
        if point.full or self._dense(point):
            return {"trace": hessian_trace(point.operator)}
        # Light: only where it is exact in about one forward pass (Hutch++ would cost ~100 products).
        exact = structured_diagonal(point.objective)
        return {} if exact is None else {"trace": TraceEstimate(float(exact.sum()), 0.0, 0, "exact")}

    def _compute_density(self, point: _Point) -> dict[str, Any]:
        return {"density": spectral_density(point.operator)}

    def _compute_critical(self, point: _Point) -> dict[str, Any]:
        return {
            "critical": classify_critical_point(
                point.operator, method=self.settings.method, k=self.k, learning_rate=point.learning_rate
            )
        }

    def _compute_redundancy(self, point: _Point) -> dict[str, Any]:
        analyse = neuron_redundancy if is_shallow(self.model) else mlp_redundancy
        return {"redundancy": analyse(self.model, self._inputs)}

    def _slices(self, point: _Point, results: dict[str, Any]) -> dict[str, Any]:
        """The loss along this snapshot's extreme eigenvectors, a predicted null direction (the nullity
        cross-check's, where there is one) and toward the reference, within a budget of about the
        spectrum's own cost (at least SLICE_BUDGET gradients)."""
        nullity = results.get("nullity")
        null = nullity.predicted_vectors[:, 0] if nullity is not None and nullity.predicted_nullity else None
        spectrum = self._vectors if self._vectors is not None and self._vectors.eigenvectors is not None else None
        budget = max(SLICE_BUDGET, float(spectrum.num_hvp) if spectrum is not None else 0.0)
        reference = self._reference if "one_point" in self.quantities else None
        slices = landscape_slices(
            point.operator, spectrum, reference=reference, null_vector=null, align=self._align, budget=budget
        )
        return {"slices": slices.without_vectors()}

    def _verdicts(self, point: _Point, results: dict[str, Any]) -> dict[str, Any]:
        """Escape to infinity from the (step, L, ‖θ‖) path of every snapshot; at full snapshots the
        nullity cross-check (dense path) and the contradictions between the verdicts."""
        norm = float(torch.linalg.vector_norm(point.objective.theta))
        self._path.append((point.step, point.loss, norm))
        divergence = divergence_verdict(self._path, self.model if point.full and self._align else None)
        out: dict[str, Any] = {"divergence": divergence}
        one_point, spectrum = results.get("one_point"), results.get("spectrum")
        if one_point is not None and spectrum is not None and one_point.distance > 0:
            # Within its rounding (the gradient's, over the distance) the ratio says nothing: θ is at the reference.
            scale = float(spectrum.eigenvalues.abs().max())
            noise = gradient_rounding(point.objective.num_parameters, self.dtype, scale, norm, point.loss)
            if noise / one_point.distance >= abs(one_point.value):
                out["one_point"] = dataclasses.replace(one_point, value=math.nan, cosine=math.nan)
        critical, redundancy = results.get("critical"), results.get("redundancy")
        if not point.full:
            return out
        if (
            critical is not None
            and redundancy is not None
            and critical.method == "dense"
            and self._inputs
            and self._group is None
        ):  # the check reads the objective's samples: this rank's shard only
            out["nullity"] = redundancy_nullity_check(point.operator, report=redundancy)
        out["contradictions"] = tuple(contradictions(critical, redundancy, out.get("nullity"), divergence))
        return out

    def describe(self) -> str:
        """What the snapshots measure and on what, in Markdown (the metadata of docs/theory.md §7)."""
        model, loss_fn, _, _ = self._objective_args
        size, samples = self.num_parameters, self._num_samples
        loss = (
            "loss(model, batch) (custom)" if isinstance(model, BatchLossModel) else f"{loss_fn!r} (mean over samples)"
        )
        if is_shallow(self.model):
            kind = find_shallow(self.model).kind
        elif is_mlp(self.model):
            layers = find_mlp(self.model)
            kind = f"{layers[0].kind}, an MLP of {len(layers)} hidden layers"
        else:
            kind = "not a one-hidden-layer network or an MLP (no neuron redundancy)"
        star = self._pl.known_loss_star
        reference = "none" if self.reference is None else type(self.reference).__name__
        reference += ", neuron-aligned" if self.reference is not None and self._align else ""
        return "\n".join(
            [
                f"- model: {type(self.model).__name__}, {size} parameters in theta; activation: {kind}",
                f"- objective: {loss} over a fixed probe set of {samples} samples, in {self.dtype} on a copy",
                f"- quantities: {', '.join(self.quantities)}; eigenvalues: {self.k} from each end, "
                f"method {self.method!r}",
                f"- L*: {star if star is not None else 'estimated online (running minimum less a margin)'}; "
                f"reference: {reference}",
            ]
        )

    # -- history and persistence ------------------------------------------------------------------------

    @property
    def trajectory(self) -> list[tuple[int, float, float]]:
        """(step, λ_min, λ_max) of every snapshot that computed the spectrum; λ_min is NaN where a light
        snapshot computed λ_max alone."""
        return list(self._trajectory)

    def state_dict(self) -> dict[str, Any]:
        """What links snapshots: warm start, eigenvalue trajectory, PL and one-point running state."""
        return {
            "warm_start": None if self._warm_start is None else self._warm_start.detach().cpu(),
            "warm_top": None if self._warm_top is None else self._warm_top.detach().cpu(),
            "trajectory": list(self._trajectory),
            "path": list(self._path),
            "pl": self._pl.state_dict(),
            "one_point_min": self._one_point_min,
            "assignment": self._assignment,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the next snapshot continues as if never interrupted."""
        device = next(iter(self.model.parameters())).device
        warm, top = state["warm_start"], state.get("warm_top")
        self._warm_start = None if warm is None else warm.to(device=device, dtype=self.dtype)
        self._warm_top = None if top is None else top.to(device=device, dtype=self.dtype)
        self._trajectory = [(int(step), float(low), float(high)) for step, low, high in state["trajectory"]]
        self._path = [(int(step), float(loss), float(norm)) for step, loss, norm in state.get("path", [])]
        self._pl.load_state_dict(state["pl"])
        self._one_point_min = state["one_point_min"]
        self._assignment = state["assignment"]
