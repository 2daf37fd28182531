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

import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .convexity import PLTracker, reference_point
from .curvature.operators import StructuredHessian, hessian_operator_class
from .curvature.policy import Purpose, uses_dense
from .curvature.shallow import find_shallow
from .curvature.structured import shallow_structure
from .evaluation import COMPUTATIONS, Context, Point, RunningState, point_at, verdict_values
from .objective import Data, LossFunction, Objective, check_process_group
from .probe_data import (
    BatchLoss,
    BatchLossModel,
    ProbeData,
    applicable_quantities,
    check_batch_mean,
    is_shallow,
    preserved_rng,
    read_probe_data,
)
from .quantities import FULL_QUANTITIES, check_quantities, completing
from .redundancy import find_mlp, is_mlp
from .settings import LIGHT_TOL, OnError, ProbeSettings
from .snapshot import LandscapeSnapshot, completed
from .stability import gradient_descent_step

#: The failures a diagnostic may survive with ``on_error="warn"``: non-finite values (FloatingPointError),
#: solvers and linear algebra (RuntimeError, torch's LinAlgError), memory, and values outside a
#: computation's domain (ValueError).
NUMERICAL_FAILURES = (ArithmeticError, RuntimeError, ValueError, MemoryError, np.linalg.LinAlgError)


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
        _check_callables(model, loss_fn, loss, data)
        given = ProbeSettings(
            quantities=quantities,
            loss_star=loss_star,
            k=k,
            light_tol=light_tol,
            method=method,
            params=params,
            dtype=dtype,
            on_error=on_error,
        )
        if settings is None:
            settings = given
        elif not isinstance(settings, ProbeSettings):
            raise TypeError(f"settings must be a ProbeSettings, got {type(settings).__name__}.")
        elif given != ProbeSettings():
            raise ValueError("pass either settings= or the options quantities … on_error, not both.")
        self.settings = settings
        self.model = model
        self.reference = reference
        self._group = check_process_group(process_group)
        self.quantities = applicable_quantities(settings.quantities, model, reference, self._group is not None)
        self._devices = sorted({p.device for p in model.parameters()}, key=str)
        with torch.inference_mode(False):  # the probe's tensors must serve autograd later
            self._data: ProbeData = read_probe_data(model, loss_fn, loss, data, settings, self._devices, self._group)
        # With loss=, the objective's model is the loss around the network (parameters "module.<name>"): no
        # neuron matching, and a reference network is seen under the same prefix.
        shallow = is_shallow(model)
        seen = nn.ModuleDict({"module": reference}) if loss is not None and isinstance(reference, nn.Module) else None
        self._context = Context(
            settings=settings,
            quantities=self.quantities,
            model=model,
            shallow=shallow,
            reference=seen if seen is not None else reference,
            align=shallow and loss is None,
            inputs=self._data.inputs,
            distributed=self._group is not None,
        )
        objective = self._checked_objective(loss is not None)
        self._num_samples = objective.num_samples
        #: P, the length of θ.
        self.num_parameters = objective.num_parameters
        self._state = RunningState(PLTracker(settings.loss_star, dtype=settings.dtype))
        self._warned: set[tuple[str, str]] = set()
        self._product_seconds: float | None = None  # one Hessian-vector product, as the last snapshot timed it

    def _checked_objective(self, custom_loss: bool) -> Objective:
        """Build and evaluate the objective once: a misfit of model, loss, data, params or reference fails
        here with its name instead of at every snapshot while training goes on."""
        with preserved_rng(self._devices), torch.inference_mode(False):
            try:
                objective = self._data.objective(self.dtype, self._group, check=True)
            except ValueError as error:
                if not custom_loss or not isinstance(error.__cause__, RuntimeError):
                    raise
                # The objective's model is loss(model, batch) here: say so rather than "model(inputs)".
                cause = error.__cause__
                raise ValueError(f"loss(model, batch) fails on the first batch of data: {cause}") from cause
            if custom_loss:
                check_batch_mean(self._data, self.dtype)
            star = self.settings.loss_star
            if star is not None:
                with torch.no_grad():
                    loss = float(objective.loss(objective.theta))
                if star > loss + 1e3 * torch.finfo(self.dtype).eps * max(abs(loss), 1.0):
                    raise ValueError(
                        f"loss_star={star} is above the probe loss {loss:.17g} at the current parameters; L* is the "
                        "infimum of the loss, so it is at most every value: pass the true infimum (0.0 for a noiseless "
                        "teacher) or loss_star=None to estimate it."
                    )
            if "one_point" in self.quantities and self._context.reference is not None:
                reference_point(objective, self._context.reference, self._context.align)
        return objective

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
        """The relative accuracy of λ_max at light snapshots (its error bound ≤ light_tol·|λ_max|)."""
        return self.settings.light_tol

    @property
    def on_error(self) -> OnError:
        """ "warn" or "raise": what a failing diagnostic does."""
        return self.settings.on_error

    @property
    def num_samples(self) -> int:
        """n, the number of probe samples (over all ranks)."""
        return self._num_samples

    # -- computing ---------------------------------------------------------------------------------------

    def objective(self) -> Objective:
        """The objective at the model's current parameters (a float64 copy by default).

        Model, loss and data were checked at construction; a non-finite loss at the current parameters is
        the caller's to catch (:func:`~torch_landscape.objective.check_finite`)."""
        return self._data.objective(self.dtype, self._group)

    def snapshot(
        self,
        step: int,
        *,
        full: bool = True,
        quantities: Iterable[str] | None = None,
        learning_rate: float | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> LandscapeSnapshot:
        """Compute the diagnostics at the model's current parameters.

        Parameters
        ----------
        step
            The training step, recorded in the snapshot and the running state.
        full
            A full snapshot computes every quantity: both ends of the spectrum to full tolerance, trace,
            density, critical point, redundancy. A light one skips the table's full-tier quantities
            (:data:`~torch_landscape.quantities.FULL_QUANTITIES`) and keeps the curvature cheap: λ_max with
            its error bound, warm-started from the previous top eigenvector at ``light_tol`` (a few
            Hessian-vector products), and the trace where it is exact and cheap (closed form for
            one-hidden-layer networks). Up to :data:`~torch_landscape.curvature.policy.LIGHT_DENSE_THRESHOLD`
            parameters the light spectrum is dense and exact, with λ_min.
        quantities
            Compute only these of the probe's quantities (default: all of them).
        learning_rate
            The step size of plain gradient descent, for the edge of stability (λ_max·lr/2 against 1) and the
            PL tracker's η·t ratio; default: read from ``optimizer`` when it is plain SGD.
        optimizer
            The optimizer training the model (read, never written): its stability ratio, the sharpness it sees
            over its threshold (:func:`~torch_landscape.stability.stability_reading`).
        """
        _check_step(step)
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
            if learning_rate is None:
                learning_rate = gradient_descent_step(optimizer)
            point = self._guarded(
                "loss", step, errors, lambda: point_at(self.objective(), step, learning_rate, full, optimizer)
            )
            if point is not None:
                loss, grad_norm = point.loss, float(torch.linalg.vector_norm(point.gradient))
                size = point.objective.num_parameters
                for name in [q for q in wanted if q != "slices"]:
                    results.update(self._computed(name, point, errors, results))
                results.update(self._computed("verdicts", point, errors, results))
                if "slices" in wanted:  # last: along the eigenvectors and null directions found before
                    results.update(self._computed("slices", point, errors, results))
                num_hvp = point.operator.num_hvp
                if num_hvp:
                    self._product_seconds = point.operator.product_seconds / num_hvp
        self._warn_if_unconverged(step, results.get("spectrum"))
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

    def complete(self, light: LandscapeSnapshot) -> LandscapeSnapshot:
        """``light`` completed by a full evaluation at the same parameters and step: the full-tier quantities
        and the refined ones (both ends of the spectrum, the trace) are computed; the quantities with running
        state (PL, one-point) keep their light values, so no tracker sees the step twice."""
        part = self.snapshot(
            light.step, full=True, quantities=completing(self.quantities), learning_rate=light.learning_rate
        )
        return completed(light, part, completing(self.quantities))

    def _computed(self, name: str, point: Point, errors: list[str], results: dict[str, Any]) -> dict[str, Any]:
        compute = verdict_values if name == "verdicts" else COMPUTATIONS[name]
        return (
            self._guarded(name, point.step, errors, lambda: compute(point, self._context, self._state, results)) or {}
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

    def _warn_if_unconverged(self, step: int, spectrum: Any) -> None:
        if spectrum is not None and not spectrum.converged:
            self._warn_once(
                ("spectrum", "not converged"),
                f"the eigen-solver stopped before its tolerance at step {step} ({spectrum}); the logged error "
                "bounds (hessian/*_error) say how far each eigenvalue may be, and hessian/converged is 0",
            )

    def _warn_once(self, kind: tuple[str, str], message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"torch_landscape: {message}.", RuntimeWarning, stacklevel=4)

    def describe(self) -> str:
        """What the snapshots measure and on what, in Markdown (the metadata of docs/theory.md §7)."""
        size, samples = self.num_parameters, self._num_samples
        custom = isinstance(self._data.model, BatchLossModel)
        loss = "loss(model, batch) (custom)" if custom else f"{self._data.loss_fn!r} (mean over samples)"
        if self._context.shallow:
            kind = find_shallow(self.model).kind
        elif is_mlp(self.model):
            layers = find_mlp(self.model)
            kind = f"{layers[0].kind}, an MLP of {len(layers)} hidden layers"
        else:
            kind = "not a one-hidden-layer network or an MLP (no neuron redundancy)"
        star = self._state.pl.known_loss_star
        reference = "none" if self.reference is None else type(self.reference).__name__
        reference += ", neuron-aligned" if self.reference is not None and self._context.align else ""
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

    def full_cost_guess(self, light: LandscapeSnapshot) -> float | None:
        """The seconds a full evaluation will take, guessed from the light snapshot ``light`` where a light
        one is a poor yardstick: where the full evaluation assembles the Hessian from P products (the dense
        policy of its critical-point test, and no one-hidden-layer structure to assemble it from), the light
        one's seconds plus P products at the cost the last light one measured. None elsewhere."""
        purpose: Purpose = "critical" if "critical" in self.quantities else "spectrum"
        if light.full or light.errors or self._product_seconds is None:
            return None
        if not uses_dense(light.num_parameters, purpose, self.method, structured=False):
            return None  # decided by size alone, before the structure is looked at
        objective = self.objective()
        if hessian_operator_class(objective) is StructuredHessian and shallow_structure(objective) is not None:
            return None
        return light.seconds + light.num_parameters * self._product_seconds

    # -- history and persistence ------------------------------------------------------------------------

    @property
    def trajectory(self) -> list[tuple[int, float, float]]:
        """(step, λ_min, λ_max) of every snapshot that computed the spectrum; λ_min is NaN where a light
        snapshot computed λ_max alone."""
        return list(self._state.trajectory)

    def state_dict(self) -> dict[str, Any]:
        """What links snapshots: warm start, eigenvalue trajectory, PL and one-point running state."""
        return self._state.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the next snapshot continues as if never interrupted."""
        device = next(iter(self.model.parameters())).device
        self._state.load_state_dict(state, device, self.dtype)


def _check_callables(model: Any, loss_fn: Any, loss: Any, data: Any) -> None:
    """The probe's required arguments, each refused with its fix."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if (loss_fn is None) == (loss is None):
        raise ValueError("pass exactly one of loss_fn (loss_fn(outputs, targets)) and loss (loss(model, batch)).")
    for name, value in (("loss_fn", loss_fn), ("loss", loss)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable, got {type(value).__name__}.")
    if data is None:
        raise ValueError("pass the probe data: a batch (inputs, targets) or an iterable of batches.")
    if not any(True for _ in model.parameters()):
        raise ValueError("the model has no parameters; there is no landscape to probe.")


def _check_step(step: Any) -> None:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an integer (the training step), got {step!r} ({type(step).__name__}).")
    if step < 0:
        raise ValueError(f"step must be a non-negative integer (the training step), got {step}.")
