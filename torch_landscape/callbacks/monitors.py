"""Lightning callbacks that watch the optimization landscape while a model trains.

They are adapters over :class:`~torch_landscape.monitoring.MonitoringSession`: Lightning's hooks become the
session's calls, the arguments its settings, the trainer's loggers its sinks. Every scalar goes to every
logger (``logger.log_metrics``, one row per evaluation); histograms, text, figures and the custom-scalars
layout go to TensorBoard loggers. Either Lightning namespace works (:mod:`.namespaces`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..batches import check_data
from ..monitoring import MonitoringSession, Schedule, Sink
from ..monitoring.budget import TARGET_POINTS, affordable_probe_size
from ..objective import LossFunction
from ..probe import LandscapeProbe
from ..probe_data import REDUNDANCY_NEEDS, BatchLoss, TrainingStepLoss, preserved_rng, supports_redundancy
from ..quantities import family
from ..settings import LIGHT_TOL, OnError, ProbeSettings
from ..snapshot import LandscapeSnapshot
from ..writers import ConsoleSink, TensorBoardSink
from .namespaces import CALLBACK_BASES, LandscapeConfigError, console, is_tensorboard
from .sinks import CallbackMetrics, LoggerSink, shared_ledger, tensorboard_sink
from .trainer import (
    agreement,
    beyond_pairs,
    check_reference,
    draw_probe_set,
    horizon,
    optimizer,
    process_group,
    resolve_loss,
)

__all__ = ["ConvexityMonitor", "HessianMonitor", "LandscapeMonitor", "RedundancyMonitor"]


class LandscapeMonitor(*CALLBACK_BASES):  # type: ignore[misc]
    """Log the landscape of the training objective to the trainer's loggers while training.

    Diagnostics run in float64 on a copy, on a fixed probe set. A *light* evaluation logs the probe loss,
    gradient norm, PL ratio, one-point convexity toward ``reference`` and the curvature: λ_max with its
    error bound (warm-started, to ``light_tol``), the trace where it is exact, and on small networks the
    exact λ_min too. A *full* one adds both ends of the spectrum to full tolerance, the spectral density,
    the critical-point classification, neuron redundancy and loss slices. Training is not disturbed:
    weights, optimizer state, ``.grad``, train/eval mode and random streams are exactly as without it.

    By default the monitor schedules itself so that everything it spends stays within ``max_overhead`` of
    the wall time (at least 0.6 s over a whole run, so that short runs still draw curves), and ends with a
    full evaluation with figures — scaled down, and said so, when the budget cannot pay for it
    (:class:`~torch_landscape.monitoring.MonitoringSession`). ``every_n_steps``, ``every_n_epochs`` and
    ``full_every`` fix the schedule instead, at whatever cost (``landscape/monitor/overhead`` shows it).

    Under DDP every rank holds a shard of the probe set and takes part in each evaluation (the schedule is
    decided on rank zero and broadcast; rank zero logs). The loss slices and the nullity cross-check are not
    computed there (they would see one shard).

    Example::

        trainer = Trainer(max_epochs=50, logger=TensorBoardLogger("runs"),
                          callbacks=[LandscapeMonitor(reference=teacher)])

    Parameters
    ----------
    every_n_steps, every_n_epochs
        Evaluate every this many optimizer steps, or at the end of every this many epochs (None: paced by
        ``max_overhead``).
    full_every
        Make every this-many-th evaluation, from the first, a full one, and the last one at the end of
        training; None: full evaluations are paced by ``max_overhead``.
    max_overhead
        Share of the wall time the automatic schedule may spend, in (0, 1).
    quantities
        Names from :data:`torch_landscape.quantities.QUANTITIES` (default: all that apply).
    loss_fn
        Mean-reduced ``loss_fn(outputs, targets)``, evaluated as ``loss_fn(module(inputs), targets)``; default
        the LightningModule's ``loss_fn`` attribute.
    loss
        Instead, ``loss(module, batch) -> scalar``, a mean over the batch. With neither (and no ``loss_fn``
        attribute), the objective is the module's own ``training_step`` (its ``self.log`` silenced, in eval
        mode, a returned dict read at "loss"): inline losses, criteria and weighted batches work as written.
    probe_data
        The probe set: ``(inputs, targets)`` tensors or an iterable of batches. Default: samples of the
        training dataset drawn once with a private generator seeded by ``seed``.
    probe_size, seed
        Size and seed of the default probe set. ``probe_size=None``: as many samples, up to 2048, as let about
        thirty light evaluations fit the budget the run is projected to have (measured from one gradient on
        them when training starts; :func:`~torch_landscape.monitoring.budget.affordable_probe_size`), said in
        the setup text.
    reference
        θ* for one-point convexity: a model like the student (hidden neurons are matched to the student's)
        or a flat tensor.
    loss_star
        L*, the infimum of the loss, if known (e.g. 0 for a noiseless teacher); estimated online otherwise.
    k
        Eigenvalues from each end of the spectrum at full evaluations.
    light_tol
        Relative accuracy of λ_max at light evaluations: its error bound is at most light_tol·|λ_max|.
    method
        Eigen-solver: "auto", "dense" or "lanczos".
    params
        Names of the parameters that make up θ (default: all trainable).
    dtype
        Precision of the diagnostics.
    figures
        Figures (spectral density, eigenvalue trajectories, neuron similarity, loss slices) to a
        TensorBoard logger: None at the end if the budget allows, True at every full evaluation, False never.
    verbose
        Print one line per full evaluation and the run's verdict (rank zero, Lightning's info log).
    on_error
        "warn": a failing diagnostic is skipped and warned about once; "raise": it stops training.
    name
        Tells monitors of one trainer apart (e.g. ``"heldout"`` for a second monitor on held-out data): it
        enters the checkpoint key, TensorBoard gets a run of its own under the logger's directory (so both
        appear in the same charts), and other loggers get the tags ``landscape/<name>/...``.

    Raises
    ------
    LandscapeConfigError
        (Lightning's ``MisconfigurationException`` in either namespace.) At construction for bad arguments;
        when fitting starts if the loss, reference, loggers or probe data cannot serve.

    Attributes
    ----------
    history : list of LandscapeSnapshot
        Every snapshot of the run (also with ``Trainer(logger=False)``).
    last_snapshot : LandscapeSnapshot or None
    notes : list of str
        What the automatic schedule scaled down, and why.
    """

    #: The quantities this monitor computes.
    allowed_quantities: tuple[str, ...] = family("landscape")

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
        probe_size: int | None = None,
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
        name: str | None = None,
    ) -> None:
        with _as_config_error():
            if name is not None and (not isinstance(name, str) or not name.isidentifier()):
                raise ValueError(f"name must be a short identifier such as 'heldout', got {name!r}.")
            self.schedule = Schedule(every_n_steps, every_n_epochs, full_every)
            if isinstance(max_overhead, bool) or not isinstance(max_overhead, (int, float)):
                raise ValueError(f"max_overhead must be a fraction in (0, 1), got {max_overhead!r}.")
            if not 0 < max_overhead < 1:
                raise ValueError(f"max_overhead must be a fraction in (0, 1), got {max_overhead!r}.")
            _check_loss_arguments(loss_fn, loss, figures, reference)
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
                probe_size=probe_size if probe_size is not None else ProbeSettings.probe_size,
                seed=seed,
            )
            self.quantities = self._chosen(quantities, reference)
        self.max_overhead = float(max_overhead)
        self._sized_by_budget = probe_size is None  # else the user's size is kept
        self._explicit_quantities = quantities is not None
        # From the arguments, before set-up narrows the quantities: the key must match across a resume.
        self.name = name
        named = {"name": name} if name is not None else {}  # unnamed: the key of earlier releases' checkpoints
        self._state_key = self._generate_state_key(
            every_n_steps=every_n_steps, every_n_epochs=every_n_epochs, quantities=self.quantities, **named
        )
        self.figures, self.verbose = figures, bool(verbose)
        self.reference = reference
        self._given_loss_fn, self._given_loss, self._probe_data = loss_fn, loss, probe_data
        self._loss_fn, self._loss = loss_fn, loss  # what the objective evaluates, resolved at set-up
        self.session: MonitoringSession | None = None
        self._probe: LandscapeProbe | None = None  # built at set-up from probe_data, used when training starts
        self._pending_state: dict[str, Any] | None = None
        self._skipped: list[str] = []
        self._about: list[str] = []  # how the probe set was chosen, for the setup text
        self._writers: list[Any] = []  # SummaryWriters of a named monitor's own runs, closed at the end
        #: The histories of earlier fits with this monitor (each fit starts afresh).
        self.previous_histories: list[list[LandscapeSnapshot]] = []

    def _chosen(self, quantities: Iterable[str] | None, reference: Any) -> tuple[str, ...]:
        chosen = tuple(self.settings.quantities or ())
        outside = [q for q in chosen if q not in self.allowed_quantities]
        if outside or not chosen:
            raise ValueError(
                f"{type(self).__name__} computes some of {list(self.allowed_quantities)}, got "
                f"{list(quantities or ())}; use LandscapeMonitor for everything."
            )
        if "one_point" in chosen and reference is None:
            if quantities is not None:
                raise ValueError(
                    "one_point needs reference=: a model like the student (e.g. the teacher) or a flat tensor θ*."
                )
            chosen = tuple(q for q in chosen if q != "one_point")
        return chosen

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

    @property
    def probe(self) -> LandscapeProbe | None:
        """The probe of the run (built at set-up from ``probe_data``, else when training starts)."""
        return self.session.probe if self.session is not None else self._probe

    @property
    def history(self) -> list[LandscapeSnapshot]:
        return self.session.history if self.session is not None else []

    @property
    def last_snapshot(self) -> LandscapeSnapshot | None:
        return self.session.last_snapshot if self.session is not None else None

    @property
    def notes(self) -> list[str]:
        return self.session.notes if self.session is not None else []

    # -- set-up ------------------------------------------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        name = type(self).__name__
        if self.figures and not any(is_tensorboard(logger) for logger in trainer.loggers):
            raise LandscapeConfigError(
                f"{name}(figures=True) needs a TensorBoardLogger among the trainer's loggers (got "
                f"{[type(logger).__name__ for logger in trainer.loggers]}); add logger=TensorBoardLogger(...) or "
                "pass figures=False."
            )
        self._loss_fn, self._loss = resolve_loss(pl_module, name, self._given_loss_fn, self._given_loss)
        if "one_point" in self.quantities:
            check_reference(pl_module, self.reference, self.settings.params)
        self._skipped = []
        if "redundancy" in self.allowed_quantities and not supports_redundancy(pl_module):
            problem = f"redundancy {REDUNDANCY_NEEDS} inside {type(pl_module).__name__}"
            if self._explicit_quantities and "redundancy" in self.quantities:
                raise LandscapeConfigError(f"{problem}; leave 'redundancy' out of quantities.")
            self.quantities = tuple(q for q in self.quantities if q != "redundancy")
            if not self.quantities:
                raise LandscapeConfigError(
                    f"{name}: {problem}, and it computes nothing else; use HessianMonitor or ConvexityMonitor."
                )
            self._skipped.append(f"neuron redundancy: it {REDUNDANCY_NEEDS}, and {type(pl_module).__name__} holds none")
        others = [type(logger).__name__ for logger in trainer.loggers if not is_tensorboard(logger)]
        if others:
            self._skipped.append(
                f"text reports, histograms and figures to {', '.join(others)} (scalars only; those go to a "
                "TensorBoardLogger, and the snapshots stay in monitor.history)"
            )
        if isinstance(self._probe_data, Iterator):  # a one-shot iterator would be empty when training starts
            with preserved_rng([pl_module.device]):
                self._probe_data = list(self._probe_data)
        if self.session is not None:  # fit called again: this fit's history starts afresh, said once
            self.previous_histories.append(self.session.history)
            console(trainer)(
                f"{name}: a new fit starts a new history (the previous fit's {len(self.session.history)} snapshots "
                f"are in monitor.previous_histories[{len(self.previous_histories) - 1}])."
            )
        self.session = None
        self._about = []
        # Given probe data are checked now, with the model, loss and reference, by building the probe.
        self._probe = self._make_probe(trainer, pl_module, self._probe_data) if self._probe_data is not None else None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        began = time.perf_counter()  # building the probe and sizing the probe set count as spent
        probe = self._probe
        if probe is None or _devices(probe.model) != _devices(pl_module):  # none yet, or the model moved
            if self._probe_data is None:
                probe = self._drawn_probe(trainer, pl_module)
            else:
                probe = self._make_probe(trainer, pl_module, self._probe_data)
        self._probe = None
        self.session = MonitoringSession(
            probe,
            sinks=self._sinks(trainer),
            max_overhead=self.max_overhead,
            every_n_steps=self.schedule.every_n_steps,
            every_n_epochs=self.schedule.every_n_epochs,
            full_every=self.schedule.full_every,
            figures=self.figures,
            total_steps=horizon(trainer),
            optimizer=optimizer(trainer),
            skipped=self._skipped,
            about=self._about,
            agree=agreement(trainer) if probe.process_group is not None else None,
            ledger=shared_ledger(trainer),
            name=self._label(),
        )
        self._log_settings(trainer, probe)
        for item in self._skipped:
            console(trainer)(f"{type(self).__name__} does not log {item}.")
        if self._pending_state is not None:
            self.session.load_state_dict(self._pending_state)
            self._pending_state = None
        self.session.start(trainer.global_step, since=began)

    def _drawn_probe(self, trainer: Any, pl_module: Any) -> LandscapeProbe:
        """A probe on samples of the training set: ``probe_size`` of them, or as many as the budget affords."""
        name = type(self).__name__
        probe = self._make_probe(trainer, pl_module, draw_probe_set(trainer, name, self.probe_size, self.seed))
        if not self._sized_by_budget:
            return probe
        gradient = _gradient_seconds(probe)
        size = affordable_probe_size(
            probe.num_samples,
            gradient,
            max_overhead=self.max_overhead,
            total_steps=horizon(trainer),
            batch_size=getattr(trainer.train_dataloader, "batch_size", None),
        )
        note = f"probe set: {size} samples of the training set"
        if size < probe.num_samples:
            probe = self._make_probe(trainer, pl_module, draw_probe_set(trainer, name, size, self.seed))
            note += (
                f" (of {len(trainer.train_dataloader.dataset)}; sized so that about {TARGET_POINTS} light "
                "evaluations fit the budget: pass probe_size= to choose)"
            )
        self._about.append(note)
        return probe

    def _make_probe(self, trainer: Any, pl_module: Any, data: Any) -> LandscapeProbe:
        loss_fn, loss = self._loss_fn, self._loss
        if loss is None and self._given_loss_fn is None and beyond_pairs(data, pl_module):
            # The module's loss_fn attribute cannot see a third item (sample weights) or a dict: its own
            # training step can.
            loss_fn, loss = None, TrainingStepLoss()
        group = process_group(trainer)
        quantities = self.quantities
        if group is not None and "slices" in quantities:
            quantities = tuple(q for q in quantities if q != "slices")
            note = "loss slices under DDP (they would evaluate one rank's shard of the probe set)"
            if note not in self._skipped:
                self._skipped.append(note)
        with _as_config_error(type(self).__name__):
            return LandscapeProbe(
                pl_module,
                loss_fn if loss is None else None,
                data,
                loss=loss,
                reference=self.reference,
                settings=dataclasses.replace(self.settings, quantities=quantities),
                process_group=group,
            )

    def _label(self) -> str:
        return type(self).__name__ if self.name is None else f"{type(self).__name__}[{self.name}]"

    def _sinks(self, trainer: Any) -> list[Sink]:
        if not trainer.is_global_zero:
            return []  # rank zero logs; under DDP the others only take part in the evaluations
        sinks: list[Sink] = [CallbackMetrics(trainer, self.name)]
        for logger in trainer.loggers:
            if not is_tensorboard(logger):
                sinks.append(LoggerSink(logger, self.name))
            elif self.name is None:
                sinks.append(tensorboard_sink(trainer, logger.experiment))
            else:  # a run of its own beside the logger's, so that TensorBoard draws both in the same charts
                from torch.utils.tensorboard import SummaryWriter

                self._writers.append(SummaryWriter(os.path.join(logger.log_dir, self.name)))
                sinks.append(TensorBoardSink(self._writers[-1]))
        if self.verbose:
            sinks.append(ConsoleSink(console(trainer), self._label()))
        return sinks

    def _log_settings(self, trainer: Any, probe: LandscapeProbe) -> None:
        """The monitor's settings as hyperparameters of every logger (``hparams.yaml``, MLflow params, W&B config)."""
        if not trainer.is_global_zero:
            return
        prefix = "landscape" if self.name is None else f"landscape/{self.name}"
        settings = {
            "quantities": ",".join(probe.quantities),
            "max_overhead": self.max_overhead,
            "every_n_steps": self.schedule.every_n_steps,
            "every_n_epochs": self.schedule.every_n_epochs,
            "full_every": self.schedule.full_every,
            "probe_samples": probe.num_samples,
            "parameters": probe.num_parameters,
            "k": self.settings.k,
            "light_tol": self.settings.light_tol,
            "method": self.settings.method,
            "dtype": str(self.settings.dtype).replace("torch.", ""),
            "loss_star": self.settings.loss_star,
        }
        params = {f"{prefix}/{key}": value for key, value in settings.items()}
        for logger in trainer.loggers:
            # TensorBoard: into hparams.yaml only; with no metrics it writes no "hp_metric" = -1 chart.
            logger.log_hyperparams(params, metrics={}) if is_tensorboard(logger) else logger.log_hyperparams(params)

    # -- hooks -------------------------------------------------------------------------------------------

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.session is not None:
            self.session.after_step(trainer.global_step)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.session is not None:
            self.session.after_epoch(trainer.current_epoch, trainer.global_step)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.session is not None:
            self.session.close(trainer.global_step)
        for writer in self._writers:
            writer.close()
        self._writers = []

    # -- persistence -------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        if self.session is None:
            return dict(self._pending_state or {})
        return self.session.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # The session is built when fitting starts, after Lightning restores callbacks.
        self._pending_state = dict(state_dict) if state_dict else None


class HessianMonitor(LandscapeMonitor):
    """A :class:`LandscapeMonitor` of the Hessian only: extreme eigenvalues with error bounds, edge of
    stability, trace, spectral density and the critical-point classification at full evaluations, the
    probe loss and gradient norm at every one. Arguments as for :class:`LandscapeMonitor`."""

    allowed_quantities = family("hessian")


class ConvexityMonitor(LandscapeMonitor):
    """A :class:`LandscapeMonitor` of the convexity diagnostics only: the PL ratio (with running minima and
    the L* estimate) and one-point convexity toward ``reference``. Arguments as for :class:`LandscapeMonitor`."""

    allowed_quantities = family("convexity")


class RedundancyMonitor(LandscapeMonitor):
    """A :class:`LandscapeMonitor` of neuron redundancy only (one-hidden-layer networks and MLPs): effective
    width, distance to the redundant set, findings and the neuron similarity heat map at full evaluations,
    the probe loss and gradient norm at every one. Arguments as for :class:`LandscapeMonitor`."""

    allowed_quantities = family("redundancy")


@contextlib.contextmanager
def _as_config_error(name: str = "") -> Iterator[None]:
    """Re-raise the library's TypeError/ValueError as :class:`LandscapeConfigError` (prefixed with ``name``)."""
    try:
        yield
    except (TypeError, ValueError) as error:
        raise LandscapeConfigError(f"{name}: {error}" if name else str(error)) from error


def _check_loss_arguments(loss_fn: Any, loss: Any, figures: Any, reference: Any) -> None:
    if loss_fn is not None and loss is not None:
        raise ValueError("pass loss_fn (loss_fn(outputs, targets)) or loss (loss(module, batch)), not both.")
    for name, value in (("loss_fn", loss_fn), ("loss", loss)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable, got {type(value).__name__}.")
    if figures not in (None, True, False):
        raise ValueError(f"figures must be True, False or None, got {figures!r}.")
    if reference is not None and not isinstance(reference, (nn.Module, Tensor)):
        raise TypeError(
            f"reference must be an nn.Module like the student or a flat tensor, got {type(reference).__name__}."
        )


def _gradient_seconds(probe: LandscapeProbe) -> float:
    """Seconds of one gradient on the probe set (the second of two: the first pays one-time costs)."""
    seconds = math.inf
    for _ in range(2):
        start = time.perf_counter()
        with preserved_rng([p.device for p in probe.model.parameters()][:1]), torch.enable_grad():
            probe.objective().loss_and_gradient()
        seconds = time.perf_counter() - start
    return seconds


def _devices(module: nn.Module) -> set[torch.device]:
    return {p.device for p in module.parameters()}
