"""LandscapeProbe: the landscape diagnostics of a model on fixed probe data, one snapshot at a time.

This is the framework-agnostic core of the Lightning monitors and the plain-loop API::

    probe = LandscapeProbe(model, nn.MSELoss(), (x_probe, y_probe), reference=teacher)
    for step in range(steps):
        ...  # train
        if step % 50 == 0:
            probe.log(writer, probe.snapshot(step, full=step % 500 == 0, learning_rate=lr))

A snapshot evaluates the objective L(θ) (the mean loss over the probe data, theory.md §0.2) at the model's
current parameters, in float64 on a copy, through the core functions (one place computes each quantity),
and returns a :class:`LandscapeSnapshot`. The probe carries what links snapshots: the last eigenvectors
(warm start of the next eigen-solve), the PL and one-point running state, and the eigenvalue trajectory.
Nothing here changes the model, its ``.grad``, its train/eval mode or any random number generator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor, nn

from .convexity import OnePointConvexity, PLEstimate, PLTracker, one_point_convexity
from .critical import CriticalPoint, classify_critical_point
from .eigen import Spectrum, hessian_eigenvalues
from .estimators import SpectralDensity, TraceEstimate, hessian_trace, spectral_density
from .hessian import HessianOperator
from .objective import Data, LossFunction, Objective, check_finite
from .redundancy import RedundancyReport, neuron_redundancy
from .shallow import find_shallow

#: What a probe can compute, and what each is.
QUANTITIES: dict[str, str] = {
    "pl": "the Polyak-Lojasiewicz ratio |grad L|^2 / (2 (L - L*)) with running minima and the L* estimate",
    "one_point": "one-point convexity <grad L, theta - theta*> / |theta - theta*|^2 toward reference=",
    "spectrum": "the k largest and k smallest Hessian eigenvalues with error bounds",
    "trace": "the trace of the Hessian",
    "density": "the spectral density of the Hessian (histogram and figure)",
    "critical": "the critical-point classification: kind, Morse index, nullity",
    "redundancy": "neuron redundancy of a one-hidden-layer network (rules, scores, verified merges)",
}

#: The quantities of a *full* snapshot only. On the demo-size network (benchmarks/monitor_overhead.py:
#: P = 1153, 2048 probe samples, float64) a light snapshot (loss, gradient, PL, one-point) cost about 7
#: Lightning training steps, neuron redundancy about 20, and a full snapshot about 1100.
FULL_QUANTITIES = frozenset({"spectrum", "trace", "density", "critical", "redundancy"})

OnError = Literal["warn", "raise"]
BatchLoss = Callable[[nn.Module, Any], Tensor]


def check_quantities(quantities: Iterable[str]) -> tuple[str, ...]:
    """Validate quantity names; returns them as a tuple in :data:`QUANTITIES` order."""
    if isinstance(quantities, str):
        quantities = (quantities,)
    quantities = set(quantities)
    unknown = sorted(quantities - QUANTITIES.keys())
    if unknown:
        raise ValueError(f"unknown quantities {unknown}; choose from {list(QUANTITIES)}.")
    return tuple(name for name in QUANTITIES if name in quantities)


def is_shallow(model: nn.Module) -> bool:
    """Whether ``model`` holds a recognised one-hidden-layer network (alignment and redundancy need one)."""
    try:
        find_shallow(model)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class LandscapeSnapshot:
    """The landscape at one training step: numbers, their error bars, and the core results behind them.

    Every result field is None when its quantity was not asked for, not due at this step, or failed (then
    ``errors`` says why).

    Attributes
    ----------
    step : int
        The training step the snapshot belongs to.
    num_parameters : int
        P, the length of θ (0 if the objective could not be built).
    loss, grad_norm : float
        L(θ) and ‖∇L(θ)‖ on the probe data (NaN if they could not be computed).
    seconds : float
        Wall-clock time the snapshot took.
    learning_rate : float or None
        The learning rate given, for the edge-of-stability numbers.
    pl : PLEstimate or None
        PL ratio with running and window minima, L̂*, contraction, Łojasiewicz slope.
    one_point : OnePointConvexity or None
    one_point_running_min : float or None
        The smallest one-point convexity value so far.
    assignment_changes : int or None
        Neurons whose matched reference neuron changed since the previous one-point snapshot.
    spectrum : Spectrum or None
        Extreme Hessian eigenvalues with error bounds (eigenvectors dropped).
    trace : TraceEstimate or None
    density : SpectralDensity or None
    critical : CriticalPoint or None
    redundancy : RedundancyReport or None
    errors : tuple of str
        One line per diagnostic that failed at this step.
    """

    step: int
    num_parameters: int
    loss: float
    grad_norm: float
    seconds: float
    learning_rate: Optional[float] = None
    pl: Optional[PLEstimate] = None
    one_point: Optional[OnePointConvexity] = None
    one_point_running_min: Optional[float] = None
    assignment_changes: Optional[int] = None
    spectrum: Optional[Spectrum] = None
    trace: Optional[TraceEstimate] = None
    density: Optional[SpectralDensity] = None
    critical: Optional[CriticalPoint] = None
    redundancy: Optional[RedundancyReport] = None
    errors: tuple[str, ...] = ()

    def scalars(self) -> dict[str, float]:
        """Every number of the snapshot under its TensorBoard tag (``landscape/<group>/<name>``)."""
        out = {
            "landscape/probe/loss": self.loss,
            "landscape/probe/grad_norm": self.grad_norm,
            "landscape/monitor/seconds": self.seconds,
        }
        convexity, hessian = "landscape/convexity/", "landscape/hessian/"
        if self.pl is not None:
            pl = self.pl
            out.update({
                convexity + "pl_ratio": pl.mu,
                convexity + "pl_ratio_running_min": pl.mu_running_min,
                convexity + "pl_ratio_window_min": pl.mu_window_min,
                convexity + "loss_star": pl.loss_star,
                convexity + "loss_star_aitken": pl.loss_star_aitken,
                convexity + "contraction": pl.contraction,
                convexity + "lojasiewicz_slope": pl.lojasiewicz_slope,
                convexity + "eta_t_ratio": pl.eta_t_ratio,
            })
            if pl.mu_sensitivity is not None:
                # μ with L̂* lowered by one more margin: far from pl_ratio means μ is not resolved.
                out[convexity + "pl_ratio_lower_loss_star"] = pl.mu_sensitivity[1]
        if self.one_point is not None:
            out.update({
                convexity + "one_point": self.one_point.value,
                convexity + "one_point_running_min": self.one_point_running_min,
                convexity + "one_point_cosine": self.one_point.cosine,
                convexity + "distance_to_reference": self.one_point.distance,
            })
            if self.assignment_changes is not None:
                out[convexity + "assignment_changes"] = float(self.assignment_changes)
        if self.spectrum is not None:
            values, bounds = self.spectrum.eigenvalues, self.spectrum.error_bounds
            lambda_min, lambda_max = float(values[0]), float(values[-1])
            out.update({
                hessian + "lambda_max": lambda_max,
                hessian + "lambda_max_error": float(bounds[-1]),
                hessian + "lambda_min": lambda_min,
                hessian + "lambda_min_error": float(bounds[0]),
                # Only a smallest eigenvalue positive beyond its error bound makes H ≻ 0 certain.
                hessian + "cond": lambda_max / lambda_min if lambda_min > float(bounds[0]) else math.nan,
                hessian + "num_hvp": float(self.spectrum.num_hvp),
            })
            if self.learning_rate:
                out[hessian + "eos_threshold"] = 2.0 / self.learning_rate
                out[hessian + "eos_ratio"] = lambda_max * self.learning_rate / 2.0
        if self.trace is not None:
            out[hessian + "trace"] = self.trace.value
            out[hessian + "trace_error"] = self.trace.standard_error
        if self.critical is not None:
            point = self.critical
            positive = point.eigenvalues[point.eigenvalues > point.tau]
            out.update({
                # NaN away from a critical point, where index and nullity do not apply (issue #17)
                hessian + "morse_index": math.nan if point.morse_index is None else float(point.morse_index),
                hessian + "nullity": math.nan if point.nullity is None else float(point.nullity),
                hessian + "quotient_nullity": math.nan if point.quotient_nullity is None else float(point.quotient_nullity),
                hessian + "negative_count": float(point.negative_count),
                hessian + "critical": float(point.critical),
                hessian + "sym_leak": point.sym_leak,
                hessian + "lambda_min_pos": float(positive[0]) if len(positive) else math.nan,
                hessian + "cond_eff": point.lambda_max / float(positive[0]) if len(positive) else math.nan,
            })
        if self.redundancy is not None:
            report = self.redundancy
            out.update({
                "landscape/redundancy/width": float(report.width),
                "landscape/redundancy/effective_width": float(report.effective_width),
                "landscape/redundancy/score": report.score,
                "landscape/redundancy/claims": float(len(report.claims)),
            })
            if report.effective_width_on_data is not None:
                out["landscape/redundancy/effective_width_on_data"] = float(report.effective_width_on_data)
        return out

    def report(self) -> str:
        """A Markdown report of the critical-point classification, redundancy findings and failures."""
        lines = [f"**step {self.step}**: probe loss {self.loss:.6g}, |grad L| {self.grad_norm:.3g}"]
        if self.spectrum is not None:
            lines.append(f"- {self.spectrum}")
        if self.trace is not None:
            lines.append(f"- {self.trace}")
        if self.critical is not None:
            lines.append(f"- critical point **{self.critical.kind}**: {self.critical.reason}")
        if self.pl is not None:
            lines.append(
                f"- PL ratio {self.pl.mu:.4g} (running min {self.pl.mu_running_min:.4g}) with L* = {self.pl.loss_star:.6g}"
                f"{' (estimated)' if self.pl.loss_star_estimated else ''}"
            )
        if self.one_point is not None:
            lines.append(
                f"- one-point convexity {self.one_point.value:.4g} (cosine {self.one_point.cosine:.3g}) at distance "
                f"{self.one_point.distance:.4g} from the reference"
            )
        if self.redundancy is not None:
            lines.append("```\n" + str(self.redundancy) + "\n```")
        lines += [f"- failed: {error}" for error in self.errors]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


@contextlib.contextmanager
def preserved_rng(devices: Sequence[torch.device]) -> Iterator[None]:
    """Restore torch (CPU and CUDA), NumPy and Python random states on exit.

    The core functions use private generators, but a user's model or loss callable may draw random
    numbers; training must see the same stream with and without diagnostics.
    """
    cuda = [device for device in devices if device.type == "cuda"]
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=cuda, enabled=True):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class _BatchLossModel(nn.Module):
    """``loss(module, batch)`` dressed as a model for :class:`~torch_landscape.objective.Objective`.

    The objective evaluates ``loss_fn(model(inputs), targets)`` per batch, weighted by batch size. Here the
    "inputs" of batch b are b repeated n_b times (so the weighting is right), the model's output is
    ``loss(module, batch_b)`` and ``loss_fn`` passes it through. The wrapped module's parameters keep
    their order, under the prefix ``module.``.
    """

    def __init__(self, module: nn.Module, loss: BatchLoss, batches: list[Any]) -> None:
        super().__init__()
        self.module = module
        self.loss = loss
        self.batches = batches

    def forward(self, index: Tensor) -> Tensor:
        return self.loss(self.module, self.batches[int(index[0])])

    @staticmethod
    def passthrough(outputs: Tensor, targets: Tensor) -> Tensor:
        return outputs


def _cast_batch(batch: Any, device: torch.device, dtype: torch.dtype) -> Any:
    if isinstance(batch, Tensor):
        return batch.detach().to(device=device, dtype=dtype if batch.is_floating_point() else None)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_cast_batch(item, device, dtype) for item in batch)
    if isinstance(batch, dict):
        return {key: _cast_batch(value, device, dtype) for key, value in batch.items()}
    return batch


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Tensor) and batch.ndim:
        return batch.shape[0]
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        size = _batch_size(item)
        if size:
            return size
    return 0


class _Point(NamedTuple):
    """The objective at the current parameters, shared by every quantity of one snapshot."""

    objective: Objective
    operator: HessianOperator
    loss: float
    gradient: Tensor
    step: int
    learning_rate: Optional[float]


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
        Eigenvalues from each end of the spectrum (also for the classification on the Lanczos path, whose
        index and nullity are then counts among these).
    method
        Eigen-solver: "auto" (exact dense below ``eigen.DENSE_THRESHOLD`` parameters, else Lanczos),
        "dense" or "lanczos".
    params
        Names of the parameters that make up θ (default: all trainable).
    dtype
        Precision of the diagnostics (float64 by default, on a copy).
    on_error
        "warn": a failing diagnostic is skipped, recorded in ``snapshot.errors`` and warned about once
        per kind of failure; "raise": the exception propagates.
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
        method: Literal["auto", "dense", "lanczos"] = "auto",
        params: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float64,
        on_error: OnError = "warn",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if (loss_fn is None) == (loss is None):
            raise ValueError("pass exactly one of loss_fn (loss_fn(outputs, targets)) and loss (loss(model, batch)).")
        if data is None:
            raise ValueError("pass the probe data: a batch (inputs, targets) or an iterable of batches.")
        if on_error not in ("warn", "raise"):
            raise ValueError(f"on_error must be 'warn' or 'raise', got {on_error!r}.")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        if method not in ("auto", "dense", "lanczos"):
            raise ValueError(f"method must be 'auto', 'dense' or 'lanczos', got {method!r}.")
        parameters = list(model.parameters())
        if not parameters:
            raise ValueError("the model has no parameters; there is no landscape to probe.")
        self.model = model
        self.quantities = self._applicable(quantities, model, reference)
        self.reference = reference
        self.k, self.method, self.dtype, self._params = k, method, dtype, params
        self.on_error: OnError = on_error
        self._devices = sorted({p.device for p in parameters}, key=str)
        device = parameters[0].device
        # Read once, under preserved RNG state (iterating a shuffling loader draws random numbers), and
        # cast once: every snapshot sees the same samples in the diagnostics' dtype.
        with preserved_rng(self._devices):
            single = isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)
            batches = [data] if single and loss is None else list(data)
        if loss is not None:
            batches = [_cast_batch(batch, device, dtype) for batch in batches]
            sizes = [_batch_size(batch) for batch in batches]
            if not batches or not all(sizes):
                raise ValueError("with loss=, data must be a non-empty iterable of batches, each holding a tensor of samples.")
            self._objective_args = (
                _BatchLossModel(model, loss, batches),
                _BatchLossModel.passthrough,
                [(torch.full((size,), index, device=device), torch.zeros(size, device=device)) for index, size in enumerate(sizes)],
                [f"module.{name}" for name in params] if params is not None else None,
            )
            self._inputs = None
        else:
            batches = [tuple(_cast_batch(tuple(batch[:2]), device, dtype)) for batch in batches]
            self._objective_args = (model, loss_fn, batches, params)
            self._inputs = batches
        self._pl = PLTracker(loss_star, dtype=dtype)
        self._align = is_shallow(model)
        self._one_point_min = math.inf
        self._assignment: tuple[int, ...] | None = None
        self._warm_start: Tensor | None = None
        self._trajectory: list[tuple[int, list[float]]] = []
        self._warned: set[tuple[str, str]] = set()

    @staticmethod
    def _applicable(quantities: Iterable[str] | None, model: nn.Module, reference: Any) -> tuple[str, ...]:
        """The quantities asked for, or by default every one that applies; an explicit one that cannot
        apply is an error naming the fix."""
        explicit = quantities is not None
        chosen = check_quantities(quantities if explicit else QUANTITIES)
        if not chosen:
            raise ValueError(f"quantities is empty; choose from {list(QUANTITIES)}.")
        missing = {
            "one_point": "one_point needs reference= (a model like the student, e.g. the teacher, or a flat θ*)"
            if reference is None else None,
            "redundancy": "redundancy needs a one-hidden-layer network (Linear → activation → Linear)"
            if not is_shallow(model) else None,
        }
        for quantity, problem in missing.items():
            if problem is not None and quantity in chosen:
                if explicit:
                    raise ValueError(f"{problem}; leave {quantity!r} out of quantities.")
                chosen = tuple(q for q in chosen if q != quantity)
        return chosen

    # -- computing ---------------------------------------------------------------------------------------

    def objective(self) -> Objective:
        """The objective at the model's current parameters (a float64 copy by default)."""
        model, loss_fn, data, params = self._objective_args
        return Objective(model, loss_fn, data, params=params, dtype=self.dtype)

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
            Include the expensive quantities (:data:`FULL_QUANTITIES`: Hessian and redundancy);
            without them a snapshot costs a couple of gradients.
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
        size = 0
        with preserved_rng(self._devices), torch.inference_mode(False), torch.enable_grad():
            point = self._guarded("loss", step, errors, lambda: self._point(step, learning_rate))
            if point is not None:
                loss, grad_norm = point.loss, float(torch.linalg.vector_norm(point.gradient))
                size = point.objective.num_parameters
                for quantity in wanted:
                    compute = getattr(self, f"_compute_{quantity}")
                    results.update(self._guarded(quantity, step, errors, lambda: compute(point)) or {})
        return LandscapeSnapshot(
            step=step,
            num_parameters=size,
            loss=loss,
            grad_norm=grad_norm,
            seconds=time.perf_counter() - start,
            learning_rate=learning_rate,
            errors=tuple(errors),
            **results,
        )

    def _guarded(self, quantity: str, step: int, errors: list[str], compute: Callable[[], Any]) -> Any:
        try:
            return compute()
        except Exception as error:
            if self.on_error == "raise":
                raise
            message = f"{quantity}: {type(error).__name__}: {error}"
            errors.append(message)
            kind = (quantity, type(error).__name__)
            if kind not in self._warned:
                self._warned.add(kind)
                warnings.warn(
                    f"torch_landscape: {quantity} failed at step {step} and is skipped ({message}). Training "
                    "is not affected; later failures of this kind are recorded in the snapshots' errors "
                    "(TensorBoard text landscape/errors) without a warning. Pass on_error='raise' to stop instead.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return None

    def _point(self, step: int, learning_rate: float | None) -> _Point:
        objective = self.objective()
        # One operator per snapshot: the loss and gradient it caches serve every quantity.
        operator = HessianOperator(objective)
        loss = check_finite(operator.loss.reshape(1), "the probe loss")
        gradient = check_finite(operator.gradient, "the gradient of the probe loss")
        return _Point(objective, operator, float(loss), gradient, step, learning_rate)

    def _compute_pl(self, point: _Point) -> dict[str, Any]:
        self._pl.learning_rate = point.learning_rate
        return {"pl": self._pl.update(point.step, point.loss, float(point.gradient @ point.gradient))}

    def _compute_one_point(self, point: _Point) -> dict[str, Any]:
        result = one_point_convexity(point.objective, reference=self.reference, align=self._align)
        if not math.isnan(result.value):
            self._one_point_min = min(self._one_point_min, result.value)
        changes = None
        if result.assignment is not None and self._assignment is not None:
            changes = sum(a != b for a, b in zip(result.assignment, self._assignment))
        self._assignment = result.assignment
        running = self._one_point_min if math.isfinite(self._one_point_min) else math.nan
        return {"one_point": result, "one_point_running_min": running, "assignment_changes": changes}

    def _compute_spectrum(self, point: _Point) -> dict[str, Any]:
        k = min(self.k, point.objective.num_parameters)
        spectrum = hessian_eigenvalues(
            point.operator, k=k, which="both", method=self.method, warm_start=self._warm_start, return_eigenvectors=True
        )
        check_finite(spectrum.eigenvalues, "the Hessian eigenvalues")
        # The next solve starts from one vector, the sum of these eigenvectors: it has a component along
        # every wanted one and keeps the Krylov block size at 1. Measured on the demo network 10 to 200
        # SGD steps apart: as many products as a random start (±10%); the whole block as the start block
        # took twice as many.
        combined = spectrum.eigenvectors.sum(dim=1, keepdim=True)
        self._warm_start = combined / torch.linalg.vector_norm(combined)
        self._trajectory.append((point.step, spectrum.eigenvalues.tolist()))
        return {"spectrum": dataclasses.replace(spectrum, eigenvectors=None)}

    def _compute_trace(self, point: _Point) -> dict[str, Any]:
        return {"trace": hessian_trace(point.operator)}

    def _compute_density(self, point: _Point) -> dict[str, Any]:
        return {"density": spectral_density(point.operator)}

    def _compute_critical(self, point: _Point) -> dict[str, Any]:
        return {"critical": classify_critical_point(point.operator, method=self.method, k=self.k, learning_rate=point.learning_rate)}

    def _compute_redundancy(self, point: _Point) -> dict[str, Any]:
        return {"redundancy": neuron_redundancy(self.model, self._inputs)}

    def describe(self) -> str:
        """What the snapshots measure and on what, in Markdown (the metadata of theory.md §7)."""
        model, loss_fn, data, _ = self._objective_args
        chosen = [p for name, p in self.model.named_parameters() if (name in self._params if self._params else p.requires_grad)]
        size, samples = sum(p.numel() for p in chosen), sum(len(batch[0]) for batch in data)
        loss = "loss(model, batch) (custom)" if isinstance(model, _BatchLossModel) else f"{loss_fn!r} (mean over samples)"
        kind = find_shallow(self.model).kind if is_shallow(self.model) else "not a recognised one-hidden-layer network"
        star = self._pl.known_loss_star
        return "\n".join([
            f"- model: {type(self.model).__name__}, {size} parameters in theta; activation: {kind}",
            f"- objective: {loss} over a fixed probe set of {samples} samples, in {self.dtype} on a copy",
            f"- quantities: {', '.join(self.quantities)}; eigenvalues: {self.k} from each end, method {self.method!r}",
            f"- L*: {star if star is not None else 'estimated online (running minimum less a margin)'}; reference: "
            f"{'none' if self.reference is None else type(self.reference).__name__ + (', neuron-aligned' if self._align else '')}",
        ])

    # -- history and persistence ------------------------------------------------------------------------

    @property
    def trajectory(self) -> list[tuple[int, list[float]]]:
        """(step, extreme eigenvalues ascending) of every snapshot that computed the spectrum."""
        return list(self._trajectory)

    def state_dict(self) -> dict[str, Any]:
        """What links snapshots: warm start, eigenvalue trajectory, PL and one-point running state."""
        return {
            "warm_start": None if self._warm_start is None else self._warm_start.detach().cpu(),
            "trajectory": list(self._trajectory),
            "pl": self._pl.state_dict(),
            "one_point_min": self._one_point_min,
            "assignment": self._assignment,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the next snapshot continues as if never interrupted."""
        warm = state["warm_start"]
        device = next(iter(self.model.parameters())).device
        self._warm_start = None if warm is None else warm.to(device=device, dtype=self.dtype)
        self._trajectory = [(int(step), list(values)) for step, values in state["trajectory"]]
        self._pl.load_state_dict(state["pl"])
        self._one_point_min = state["one_point_min"]
        self._assignment = state["assignment"]

    # -- writing ----------------------------------------------------------------------------------------

    def log(self, writer: Any, snapshot: LandscapeSnapshot, *, figures: bool = True) -> None:
        """Write a snapshot to a ``torch.utils.tensorboard.SummaryWriter`` at ``snapshot.step``.

        Scalars under the tags of :meth:`LandscapeSnapshot.scalars`, the spectrum as a histogram, the text
        report, a custom-scalars layout (once per writer) and, with ``figures``, matplotlib figures.
        """
        from .callbacks.tensorboard import write_figures, write_scalars, write_setup, write_snapshot

        write_setup(writer, self.quantities, self.describe)
        write_scalars(writer, snapshot.scalars(), snapshot.step)
        write_snapshot(writer, snapshot)
        if figures:
            write_figures(writer, snapshot, self.trajectory)
