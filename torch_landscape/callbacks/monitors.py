"""Lightning callbacks that watch the optimization landscape while a model trains.

They are thin adapters over :class:`~torch_landscape.probe.LandscapeProbe`: they choose when to take a
snapshot, where the probe data come from, and hand each snapshot to the trainer's loggers. Every scalar
goes to every logger (``logger.log_metrics``); histograms, text, figures and the custom-scalars layout go
to TensorBoard loggers only.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from pytorch_lightning.utilities.rank_zero import rank_zero_info
from torch import Tensor, nn

from ..curvature.policy import uses_dense
from ..monitoring.budget import OverheadBudget
from ..objective import LossFunction, check_data
from ..probe import LandscapeProbe
from ..probe_data import REDUNDANCY_NEEDS, BatchLoss, preserved_rng, supports_redundancy
from ..settings import FULL_QUANTITIES, LIGHT_TOL, QUANTITIES, OnError, ProbeSettings, check_positive_int
from ..snapshot import LandscapeSnapshot
from ..writers import console_line, run_verdict, snapshot_scalars
from ..writers.tensorboard import finite, update_layout, write_figures, write_setup, write_snapshot
from .pacing import Pacing
from .trainer import check_reference, draw_probe_set, horizon, learning_rate, process_group, resolve_loss

__all__ = ["ConvexityMonitor", "HessianMonitor", "LandscapeMonitor", "RedundancyMonitor"]


def _positive(name: str, value: int | None) -> None:
    """A positive integer or None, else a MisconfigurationException naming ``name``."""
    if value is not None:
        try:
            check_positive_int(name, value)
        except ValueError as error:
            raise MisconfigurationException(f"{error} Pass a positive integer or None.") from None


#: The automatic schedule's deciding may take this share of the training time (it decides less often on
#: very short steps).
DECIDE_SHARE = 0.002


class LandscapeMonitor(Pacing, Callback):
    """Log the landscape of the training objective to the trainer's loggers while training.

    Diagnostics run in float64 on a copy, on a fixed probe set. A *light* evaluation logs the probe loss,
    gradient norm, PL ratio, one-point convexity toward ``reference`` and the curvature: λ_max with its
    error bound (warm-started, to ``light_tol``), the trace where it is exact, and on small networks (up to
    256 parameters) the exact λ_min too. A *full* one adds both ends of the spectrum to full tolerance,
    the spectral density, the critical-point classification and neuron redundancy. Training is not
    disturbed: weights, optimizer state, ``.grad``, train/eval mode and random streams are exactly as
    without the monitor.

    By default the monitor schedules itself so that everything it spends (set-up, evaluations, logging,
    figures, the closing evaluation) stays within ``max_overhead`` of the wall time, with at least
    0.3 s for the whole run, so that short runs still draw curves
    (:class:`~torch_landscape.monitoring.budget.OverheadBudget`). Spending is paced over the run; the closing
    evaluation's predicted cost is kept aside from the start. The run starts with an evaluation (full
    where the Hessian is small enough to be cheap) and ends with a full one with figures — scaled down,
    and said so in ``notes`` and the console, when the budget cannot pay for it. ``every_n_steps``,
    ``every_n_epochs`` and ``full_every`` fix the schedule instead: reproducible steps, at whatever cost
    (the scalar ``landscape/monitor/overhead`` shows it, and one warning says when it is high).

    Under DDP (several processes) every rank holds a shard of the probe set and takes part in each
    evaluation: loss, gradient and Hessian products are all-reduced, so the ranks run the same eigen-solver
    iterations on the unwrapped module; the schedule is decided on rank zero and broadcast, and rank zero
    logs. Redundancy runs on every rank with the whole probe inputs (each rank holds them); the loss
    slices and the nullity cross-check are not computed under DDP (they would see one shard).

    Example::

        trainer = Trainer(max_epochs=50, logger=TensorBoardLogger("runs"),
                          callbacks=[LandscapeMonitor(every_n_steps=50, reference=teacher)])

    Parameters
    ----------
    every_n_steps
        Evaluate every this many optimizer steps (None: not by steps).
    every_n_epochs
        Evaluate at the end of every this many epochs (None: not by epochs). With neither, light
        evaluations are scheduled by ``max_overhead``.
    full_every
        Make every this-many-th evaluation, counting from the first, a full one, and the last one at the
        end of training; None: full evaluations are scheduled by ``max_overhead``.
    max_overhead
        Share of the wall time the automatic schedule may spend, in (0, 1); ``landscape/monitor/overhead``
        logs the share actually spent.
    quantities
        Names from :data:`torch_landscape.probe.QUANTITIES` (default: all that apply).
    loss_fn
        Mean-reduced ``loss_fn(outputs, targets)``; default the LightningModule's ``loss_fn`` attribute.
        The objective is ``loss_fn(module(inputs), targets)`` averaged over the probe set.
    loss
        Instead, ``loss(module, batch) -> scalar`` for batches that are not ``(inputs, targets)``.
    probe_data
        The probe set: ``(inputs, targets)`` tensors or an iterable of batches. Default: ``probe_size``
        samples of the training dataset drawn once with a private generator seeded by ``seed`` (the
        training data order and random streams are untouched; every DDP rank draws the same set). Under
        DDP give every rank the same whole probe set: each keeps its share.
    probe_size, seed
        Size and seed of the default probe set.
    reference
        θ* for one-point convexity: a model like the student (e.g. the teacher; hidden neurons are matched
        to the student's) or a flat tensor.
    loss_star
        L*, the infimum of the loss, if known (e.g. 0 for a noiseless teacher); estimated online otherwise.
    k
        Eigenvalues from each end of the spectrum at full evaluations.
    light_tol
        Relative tolerance of λ_max at light evaluations (‖Hv − λv‖ ≤ light_tol·|λ|); its error bound is
        logged beside it.
    method
        Eigen-solver: "auto", "dense" or "lanczos".
    params
        Names of the parameters that make up θ (default: all trainable).
    dtype
        Precision of the diagnostics.
    figures
        Log matplotlib figures (spectral density, eigenvalue trajectories, neuron similarity) to a
        ``TensorBoardLogger``: None at the end of training if the budget allows (drawing them costs about
        half a second), True at every full evaluation, False never.
    verbose
        Print one line per full evaluation and the run's verdict at the end (rank zero, Lightning's info
        log); the verdict also goes to TensorBoard as text ``landscape/verdict``.
    on_error
        "warn": a failing diagnostic is skipped and warned about once, training continues; "raise": the
        error stops training.

    Raises
    ------
    MisconfigurationException
        At construction for bad arguments (the probe options are a
        :class:`~torch_landscape.settings.ProbeSettings`, checked once); at ``setup`` if the loss, the
        reference, the loggers or ``probe_data`` cannot serve (model, loss and probe data are evaluated
        together once there); a probe set drawn from the training data, when training starts.

    Attributes
    ----------
    history : list of LandscapeSnapshot
        Every snapshot of the run, light and full (also with ``Trainer(logger=False)``).
    last_snapshot : LandscapeSnapshot or None
        The latest one, completed by the closing evaluation.
    notes : list of str
        What the automatic schedule scaled down, and why.
    """

    #: The quantities this monitor can compute (all of them by default).
    allowed_quantities: tuple[str, ...] = tuple(QUANTITIES)

    def __init__(
        self,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = None,
        full_every: int | None = None,
        max_overhead: float = 0.05,
        quantities: Iterable[str] | None = None,
        *,
        loss_fn: LossFunction | None = None,
        loss: BatchLoss | None = None,
        probe_data: Any = None,
        probe_size: int = 2048,
        seed: int = 0,
        reference: nn.Module | Tensor | None = None,
        loss_star: float | None = None,
        k: int = 5,
        light_tol: float = LIGHT_TOL,
        method: Literal["auto", "dense", "lanczos"] = "auto",
        params: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float64,
        figures: bool | None = None,
        verbose: bool = True,
        on_error: OnError = "warn",
    ) -> None:
        _positive("every_n_steps", every_n_steps)
        _positive("every_n_epochs", every_n_epochs)
        _positive("full_every", full_every)
        if isinstance(max_overhead, bool) or not isinstance(max_overhead, (int, float)) or not 0 < max_overhead < 1:
            raise MisconfigurationException(f"max_overhead must be a fraction in (0, 1), got {max_overhead!r}.")
        if loss_fn is not None and loss is not None:
            raise MisconfigurationException(
                "pass loss_fn (loss_fn(outputs, targets)) or loss (loss(module, batch)), not both."
            )
        for name, value in (("loss_fn", loss_fn), ("loss", loss)):
            if value is not None and not callable(value):
                raise MisconfigurationException(f"{name} must be callable, got {type(value).__name__}.")
        if figures not in (None, True, False):
            raise MisconfigurationException(f"figures must be True, False or None, got {figures!r}.")
        if reference is not None and not isinstance(reference, (nn.Module, Tensor)):
            raise MisconfigurationException(
                f"reference must be an nn.Module like the student or a flat tensor, got {type(reference).__name__}."
            )
        try:
            if probe_data is not None:
                check_data(probe_data, "probe_data")
            self.settings = ProbeSettings(
                quantities=quantities if quantities is not None else self.allowed_quantities,
                loss_star=loss_star,
                k=k,
                light_tol=light_tol,
                method=method,
                params=params,
                dtype=dtype,
                on_error=on_error,
                probe_size=probe_size,
                seed=seed,
            )
        except (TypeError, ValueError) as error:
            raise MisconfigurationException(str(error)) from error
        chosen = tuple(self.settings.quantities or ())
        outside = [q for q in chosen if q not in self.allowed_quantities]
        if outside or not chosen:
            raise MisconfigurationException(
                f"{type(self).__name__} computes some of {list(self.allowed_quantities)}, got "
                f"{list(quantities or ())}; use LandscapeMonitor for everything."
            )
        if "one_point" in chosen and reference is None:
            if quantities is not None:
                raise MisconfigurationException(
                    "one_point needs reference=: a model like the student (e.g. the teacher) or a flat tensor θ*."
                )
            chosen = tuple(q for q in chosen if q != "one_point")
        self.every_n_steps, self.every_n_epochs, self.full_every = every_n_steps, every_n_epochs, full_every
        self.max_overhead = float(max_overhead)
        self.quantities = chosen
        self._explicit_quantities = quantities is not None
        # From the arguments, before set-up narrows the quantities: the key must match across a resume.
        self._state_key = self._generate_state_key(
            every_n_steps=every_n_steps, every_n_epochs=every_n_epochs, quantities=chosen
        )
        self.figures, self.verbose = figures, bool(verbose)
        self.reference = reference
        self._loss_fn, self._loss, self._probe_data = loss_fn, loss, probe_data
        self.probe: LandscapeProbe | None = None
        self._group: Any = None  # under DDP: the ranks that share each evaluation
        self.last_snapshot: LandscapeSnapshot | None = None
        self._evaluations = 0
        self._last_step: int | None = None
        self._last_full_step: int | None = None
        self._pending_probe_state: dict[str, Any] | None = None
        self._tensorboard: list[TensorBoardLogger] = []
        self._started = 0.0
        self._horizon: int | None = None
        self._budget = OverheadBudget(self.max_overhead)
        self._warned_overhead = False
        self._stride, self._undecided = 1, 0  # decide every _stride steps (automatic schedule)
        self._skipped: list[str] = []
        #: Every snapshot of this run, light and full, in order (also without a logger).
        self.history: list[LandscapeSnapshot] = []
        #: What the automatic schedule scaled down, and why (also printed once each).
        self.notes: list[str] = []

    @property
    def state_key(self) -> str:
        return self._state_key

    @property
    def probe_size(self) -> int:
        """Size of the probe set drawn from the training data when no ``probe_data`` is given."""
        return self.settings.probe_size

    @property
    def seed(self) -> int:
        """Seed of the private generator that draws the probe set."""
        return self.settings.seed

    # -- set-up ------------------------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        name = type(self).__name__
        self._tensorboard = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if self.figures and not self._tensorboard:
            raise MisconfigurationException(
                f"{name}(figures=True) needs a TensorBoardLogger among the trainer's loggers (got "
                f"{[type(logger).__name__ for logger in trainer.loggers]}); add logger=TensorBoardLogger(...) or "
                "pass figures=False."
            )
        self._loss_fn = resolve_loss(pl_module, name, self._loss_fn, self._loss)
        if "one_point" in self.quantities:
            check_reference(pl_module, self.reference, self.settings.params)
        if "redundancy" in self.quantities and not supports_redundancy(pl_module):
            problem = f"redundancy {REDUNDANCY_NEEDS} inside {type(pl_module).__name__}"
            if self._explicit_quantities:
                raise MisconfigurationException(f"{problem}; leave 'redundancy' out of quantities.")
            self.quantities = tuple(q for q in self.quantities if q != "redundancy")
            if not self.quantities:
                raise MisconfigurationException(
                    f"{name}: {problem}, and it computes nothing else; use HessianMonitor or ConvexityMonitor "
                    "for this model."
                )
        self._check_probe_data(pl_module)
        self._say_what_is_skipped(trainer, pl_module)

    def _say_what_is_skipped(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Once, by name: what this model or these loggers cannot show (also in the setup text)."""
        self._skipped = []
        if (
            "redundancy" in self.allowed_quantities
            and "redundancy" not in self.quantities
            and not supports_redundancy(pl_module)
        ):
            self._skipped.append(f"neuron redundancy: it {REDUNDANCY_NEEDS}, and {type(pl_module).__name__} holds none")
        others = [type(logger).__name__ for logger in trainer.loggers if not isinstance(logger, TensorBoardLogger)]
        if others:
            self._skipped.append(
                f"text reports, histograms and figures to {', '.join(others)} (scalars only; those go to a "
                "TensorBoardLogger, and the snapshots stay in monitor.history)"
            )
        for item in self._skipped:
            rank_zero_info(f"{type(self).__name__} does not log {item}.")

    def _check_probe_data(self, pl_module: LightningModule) -> None:
        """Build a probe on ``probe_data`` once, to check model, loss, data, params and reference together.

        The probe that runs is built when training starts, on the device training uses; a probe set drawn
        from the training data can only be checked then (the data loaders are not loaded before).
        """
        if self._probe_data is None or not any(True for _ in pl_module.parameters()):
            return  # no data yet, or the parameters are created later (configure_model)
        if isinstance(self._probe_data, Iterator):
            # A one-shot iterator would be empty when training starts: read it once, here.
            with preserved_rng([pl_module.device]):
                self._probe_data = list(self._probe_data)
        self._make_probe(pl_module, self._probe_data)

    def _make_probe(self, pl_module: LightningModule, data: Any, process_group: Any = None) -> LandscapeProbe:
        try:
            return LandscapeProbe(
                pl_module,
                self._loss_fn if self._loss is None else None,
                data,
                loss=self._loss,
                reference=self.reference,
                settings=dataclasses.replace(self.settings, quantities=self.quantities),
                process_group=process_group,
            )
        except (TypeError, ValueError) as error:
            raise MisconfigurationException(f"{type(self).__name__}: {error}") from error

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._group = process_group(trainer)
        if not trainer.is_global_zero:
            self._tensorboard = []  # rank zero logs; under DDP the others only take part in the evaluations
            if self._group is None:
                return
        start = time.perf_counter()
        # A checkpoint's state, or the previous fit's when ``fit`` is called again.
        state = self._probe_state()
        data = (
            self._probe_data
            if self._probe_data is not None
            else draw_probe_set(trainer, type(self).__name__, self.probe_size, self.seed)
        )
        if self._group is not None and "slices" in self.quantities:
            self.quantities = tuple(q for q in self.quantities if q != "slices")
            self._skipped.append("loss slices under DDP (they would evaluate one rank's shard of the probe set)")
            rank_zero_info(f"{type(self).__name__} does not log {self._skipped[-1]}.")
        self.probe = self._make_probe(pl_module, data, self._group)
        if state is not None:
            self.probe.load_state_dict(state)
            self._pending_probe_state = None
        self._started, self._horizon = start, horizon(trainer)
        self._budget.record("setup", time.perf_counter() - start)
        if self._last_step is None:  # a fresh run: the landscape at initialisation
            # Full where it is cheap (the whole spectrum is dense): the schedule then knows its cost.
            cheap = uses_dense(self.probe.num_parameters, "light", self.settings.method) and self._has_full()
            self._evaluate(trainer, full=self.full_every is not None or cheap)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        start, spent = time.perf_counter(), self._budget.total_spent
        self._on_batch(trainer)
        # The deciding itself is spent too (tens of microseconds a step; evaluations count themselves).
        self._budget.record("setup", max(time.perf_counter() - start - (self._budget.total_spent - spent), 0.0))

    def _on_batch(self, trainer: Trainer) -> None:
        if self._skip(trainer):
            return
        step = trainer.global_step
        if self.every_n_steps is None and self.every_n_epochs is None:
            # Deciding costs tens of microseconds: on steps shorter than that, decide every few steps so that
            # deciding stays below DECIDE_SHARE of the training time (every step under DDP, where the ranks
            # must meet at each decision).
            self._undecided += 1
            if self._undecided < self._stride and self._group is None:
                return
            self._undecided, begin = 0, time.perf_counter()
            full = self._decided(trainer, lambda: self._due_now(step))
            per_step = self._training_time() / max(step, 1)
            self._stride = max(1, math.ceil((time.perf_counter() - begin) / max(DECIDE_SHARE * per_step, 1e-12)))
            if full is not None:
                self._evaluate(trainer, full)
        elif self.every_n_steps is not None and step % self.every_n_steps == 0:
            self._evaluate(trainer, self._decided(trainer, lambda: self._full_due(step)))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._skip(trainer):
            return
        if self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._evaluate(trainer, self._decided(trainer, lambda: self._full_due(trainer.global_step)))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.probe is None:
            return
        step = trainer.global_step
        full, figures = self._decided(trainer, self._closing_plan)
        if step != self._last_step:
            self._evaluate(trainer, full, figures=figures)
        elif full and step != self._last_full_step:
            # This step's light quantities are logged already; feeding the trackers again would count it twice.
            only = tuple(q for q in self.quantities if q in FULL_QUANTITIES or q in ("spectrum", "trace"))
            self._evaluate(trainer, full=True, quantities=only, figures=figures)
        elif figures and self.last_snapshot is not None and self.last_snapshot.full:
            self._evaluate_figures(trainer)
        verdict = run_verdict(self.history, self.notes)
        for logger in self._tensorboard:
            logger.experiment.add_text("landscape/verdict", verdict, step)
        if self.verbose:
            rank_zero_info(f"{type(self).__name__}: {verdict}")

    @property
    def _running(self) -> LandscapeProbe:
        """The probe of the run in progress (built when training starts)."""
        if self.probe is None:
            raise RuntimeError(f"{type(self).__name__} evaluates only while training (its probe is built then).")
        return self.probe

    def _evaluate(
        self, trainer: Trainer, full: bool, quantities: tuple[str, ...] | None = None, figures: bool = False
    ) -> None:
        start = time.perf_counter()
        step = trainer.global_step
        snapshot = self._running.snapshot(step, full=full, quantities=quantities, learning_rate=learning_rate(trainer))
        scalars = snapshot_scalars(snapshot)
        previous = self.last_snapshot
        if quantities is None or previous is None:
            self._evaluations += int(quantities is None)
            current = snapshot
        else:  # completing this step's light snapshot: last_snapshot holds everything known at the step
            logged = snapshot_scalars(previous)
            scalars = {tag: value for tag, value in scalars.items() if tag not in logged or logged[tag] != value}
            current = dataclasses.replace(
                previous,
                full=True,
                **{q: getattr(snapshot, q) for q in quantities},
                errors=previous.errors + snapshot.errors,
            )
            self.history.pop()
        self.last_snapshot = current
        self.history.append(current)
        self._last_step = step
        if full:
            self._last_full_step = step
        scalars.pop("landscape/monitor/seconds", None)  # logged below with everything this evaluation cost
        self._log_scalars(trainer, scalars, step)
        for logger in self._tensorboard:
            write_setup(logger.experiment, self._running.describe(), self._skipped)
            write_snapshot(logger.experiment, current)
        if full and self.verbose:
            rank_zero_info(f"{type(self).__name__} {console_line(current)}")
        drawing = self._evaluate_figures(trainer, record=False) if figures or (full and self.figures) else None
        seconds = time.perf_counter() - start
        self._budget.record("full" if full else "light", seconds, figures=drawing)
        self._log_scalars(
            trainer,
            {
                "landscape/monitor/seconds": seconds,
                "landscape/monitor/overhead": self._budget.share(self._training_time()),
            },
            step,
        )
        self._warn_if_costly(step)

    def _evaluate_figures(self, trainer: Trainer, record: bool = True) -> float:
        """Draw the last snapshot's figures to every TensorBoard logger; returns the seconds it took."""
        start = time.perf_counter()
        if self.last_snapshot is None:
            return 0.0
        for logger in self._tensorboard:
            write_figures(logger.experiment, self.last_snapshot, self._running.trajectory)
        seconds = time.perf_counter() - start
        if record:
            self._budget.record("full", seconds, figures=seconds)
        return seconds

    def _log_scalars(self, trainer: Trainer, scalars: dict[str, float], step: int) -> None:
        scalars = finite(scalars)
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
        for logger in self._tensorboard:
            update_layout(logger.experiment, scalars)
        trainer.callback_metrics.update({tag: torch.tensor(value) for tag, value in scalars.items()})

    # -- persistence -------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "evaluations": self._evaluations,
            "last_step": self._last_step,
            "last_full_step": self._last_full_step,
            "costs": dict(self._budget.cost),
            "probe": self._probe_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._evaluations = state_dict["evaluations"]
        self._last_step = state_dict["last_step"]
        self._last_full_step = state_dict["last_full_step"]
        self._budget.cost.update(state_dict.get("costs", {}))
        # The probe is built when training starts, after Lightning restores callbacks.
        self._pending_probe_state = state_dict["probe"]

    def _probe_state(self) -> dict[str, Any] | None:
        if self._pending_probe_state is not None or self.probe is None:
            return self._pending_probe_state
        return self.probe.state_dict()


class HessianMonitor(LandscapeMonitor):
    """A :class:`LandscapeMonitor` of the Hessian only: extreme eigenvalues with error bounds, edge of
    stability, trace, spectral density and the critical-point classification at full evaluations, the
    probe loss and gradient norm at every one. Arguments as for :class:`LandscapeMonitor`."""

    allowed_quantities = ("spectrum", "trace", "density", "critical")


class ConvexityMonitor(LandscapeMonitor):
    """A :class:`LandscapeMonitor` of the convexity diagnostics only: the PL ratio (with running minima and
    the L* estimate) and one-point convexity toward ``reference``. Arguments as for :class:`LandscapeMonitor`."""

    allowed_quantities = ("pl", "one_point")


class RedundancyMonitor(LandscapeMonitor):
    """A :class:`LandscapeMonitor` of neuron redundancy only (one-hidden-layer networks): effective width,
    distance to the redundant set, findings and the neuron similarity heat map at full evaluations, the
    probe loss and gradient norm at every one. Arguments as for :class:`LandscapeMonitor`."""

    allowed_quantities = ("redundancy",)
