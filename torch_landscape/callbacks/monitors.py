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
from pytorch_lightning.utilities.rank_zero import rank_zero_warn
from torch import Tensor, nn

from ..align import shallow_reference
from ..objective import LossFunction, check_data
from ..probe import BatchLoss, LandscapeProbe, LandscapeSnapshot, is_shallow, preserved_rng
from ..settings import FULL_QUANTITIES, QUANTITIES, OnError, ProbeSettings, check_positive_int
from ..shallow import find_shallow
from .tensorboard import finite, write_figures, write_setup, write_snapshot

__all__ = ["ConvexityMonitor", "HessianMonitor", "LandscapeMonitor", "RedundancyMonitor"]


def _positive(name: str, value: int | None) -> None:
    """A positive integer or None, else a MisconfigurationException naming ``name``."""
    if value is not None:
        try:
            check_positive_int(name, value)
        except ValueError as error:
            raise MisconfigurationException(f"{error} Pass a positive integer or None.") from None


#: Shares of ``max_overhead`` that the automatic schedule gives light and full evaluations.
LIGHT_SHARE, FULL_SHARE = 0.25, 0.75
#: Before the first full evaluation its cost is unknown; the schedule assumes this many light ones. On
#: the demo-size network (P = 1153) a full evaluation costs about 150 light ones, on tiny networks ~10.
FULL_COST_PRIOR = 100
#: An explicit schedule that spends more than this share of the wall time gets one warning.
WARN_OVERHEAD = 0.25


class LandscapeMonitor(Callback):
    """Log the landscape of the training objective to the trainer's loggers while training.

    Diagnostics run in float64 on a copy, on a fixed probe set. A *light* evaluation logs the probe loss,
    gradient norm, PL ratio and one-point convexity toward ``reference`` (a few gradients); a *full* one
    adds the Hessian (extreme eigenvalues with error bounds next to 2/lr, trace, spectral density,
    critical-point classification) and neuron redundancy. Training is not disturbed: weights, optimizer
    state, ``.grad``, train/eval mode and random streams are exactly as without the monitor.

    By default the monitor schedules itself so that its time stays within ``max_overhead`` of the training
    time: after an evaluation that took c seconds, the next of its kind waits until c/share seconds of
    training have passed (share: 1/4 of ``max_overhead`` for light evaluations, 3/4 for full ones). The run
    starts with a light evaluation and ends with a full one. ``every_n_steps``, ``every_n_epochs`` and
    ``full_every`` fix the schedule instead: reproducible steps, at whatever cost (the scalar
    ``landscape/monitor/overhead`` shows it).

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
        Make every this-many-th evaluation, counting from the first, a full one; None: full evaluations
        are scheduled by ``max_overhead``. The last one, at the end of training, always is.
    max_overhead
        Fraction of the training time the automatic schedule may spend.
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
        training data order and random streams are untouched; every DDP rank draws the same set).
    probe_size, seed
        Size and seed of the default probe set.
    reference
        θ* for one-point convexity: a model like the student (e.g. the teacher; hidden neurons are matched
        to the student's) or a flat tensor.
    loss_star
        L*, the infimum of the loss, if known (e.g. 0 for a noiseless teacher); estimated online otherwise.
    k
        Eigenvalues from each end of the spectrum.
    method
        Eigen-solver: "auto", "dense" or "lanczos".
    params
        Names of the parameters that make up θ (default: all trainable).
    dtype
        Precision of the diagnostics.
    figures
        Log matplotlib figures (spectral density, eigenvalue trajectories, neuron similarity): None at the
        end of training when a ``TensorBoardLogger`` is attached (drawing them costs a fraction of a full
        evaluation), True at every full evaluation, False never.
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
        method: Literal["auto", "dense", "lanczos"] = "auto",
        params: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float64,
        figures: bool | None = None,
        on_error: OnError = "warn",
    ) -> None:
        _positive("every_n_steps", every_n_steps)
        _positive("every_n_epochs", every_n_epochs)
        _positive("full_every", full_every)
        if isinstance(max_overhead, bool) or not isinstance(max_overhead, (int, float)) or not 0 < max_overhead < 1:
            raise MisconfigurationException(f"max_overhead must be a fraction in (0, 1), got {max_overhead!r}.")
        if loss_fn is not None and loss is not None:
            raise MisconfigurationException("pass loss_fn (loss_fn(outputs, targets)) or loss (loss(module, batch)), not both.")
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
                quantities=quantities if quantities is not None else self.allowed_quantities, loss_star=loss_star,
                k=k, method=method, params=params, dtype=dtype, on_error=on_error, probe_size=probe_size, seed=seed,
            )
        except (TypeError, ValueError) as error:
            raise MisconfigurationException(str(error)) from error
        chosen = self.settings.quantities
        outside = [q for q in chosen if q not in self.allowed_quantities]
        if outside or not chosen:
            raise MisconfigurationException(
                f"{type(self).__name__} computes some of {list(self.allowed_quantities)}, got {list(quantities)}; "
                "use LandscapeMonitor for everything."
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
        self._state_key = self._generate_state_key(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs, quantities=chosen)
        self.figures = figures
        self.reference = reference
        self._loss_fn, self._loss, self._probe_data = loss_fn, loss, probe_data
        self.probe: LandscapeProbe | None = None
        self.last_snapshot: LandscapeSnapshot | None = None
        self._evaluations = 0
        self._last_step: int | None = None
        self._last_full_step: int | None = None
        self._pending_probe_state: dict[str, Any] | None = None
        self._tensorboard: list[TensorBoardLogger] = []
        self._started = 0.0
        self._spent = 0.0
        self._cost = {"light": math.inf, "full": math.inf}  # the last evaluation's; unknown at first
        self._mark = {"light": 0.0, "full": 0.0}  # training time at the end of the last evaluation
        self._warned_overhead = False

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
        if not trainer.loggers:
            raise MisconfigurationException(f"Cannot use `{name}` callback with `Trainer(logger=False)`.")
        self._tensorboard = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if self.figures and not self._tensorboard:
            raise MisconfigurationException(
                f"{name}(figures=True) needs a TensorBoardLogger among the trainer's loggers (got "
                f"{[type(logger).__name__ for logger in trainer.loggers]}); add logger=TensorBoardLogger(...) or "
                "pass figures=False."
            )
        self._resolve_loss(pl_module)
        if "one_point" in self.quantities:
            self._check_reference(pl_module)
        if "redundancy" in self.quantities and not is_shallow(pl_module):
            problem = (
                f"redundancy needs a one-hidden-layer network (Linear → activation → Linear) inside "
                f"{type(pl_module).__name__}"
            )
            if self._explicit_quantities:
                raise MisconfigurationException(f"{problem}; leave 'redundancy' out of quantities.")
            self.quantities = tuple(q for q in self.quantities if q != "redundancy")
            if not self.quantities:
                raise MisconfigurationException(
                    f"{name}: {problem}, and it computes nothing else; use HessianMonitor or ConvexityMonitor "
                    "for this model."
                )
        self._check_probe_data(pl_module)

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

    def _make_probe(self, pl_module: LightningModule, data: Any) -> LandscapeProbe:
        try:
            return LandscapeProbe(
                pl_module,
                self._loss_fn if self._loss is None else None,
                data,
                loss=self._loss,
                reference=self.reference,
                settings=dataclasses.replace(self.settings, quantities=self.quantities),
            )
        except (TypeError, ValueError) as error:
            raise MisconfigurationException(f"{type(self).__name__}: {error}") from error

    def _resolve_loss(self, pl_module: LightningModule) -> None:
        name = type(self).__name__
        if self._loss is not None:
            return
        if self._loss_fn is None:
            candidate = getattr(pl_module, "loss_fn", None)
            if not callable(candidate):
                raise MisconfigurationException(
                    f"{name} needs the training loss. Pass {name}(loss_fn=nn.MSELoss()) (any mean-reduced "
                    f"loss_fn(outputs, targets)), or set `self.loss_fn = ...` in {type(pl_module).__name__}.__init__; "
                    "for batches that are not (inputs, targets), pass loss=lambda module, batch: ..."
                )
            self._loss_fn = candidate
        if type(pl_module).forward is LightningModule.forward:
            raise MisconfigurationException(
                f"{name} evaluates loss_fn(module(inputs), targets), but {type(pl_module).__name__} defines no "
                f"forward(); define forward(inputs), or pass loss=lambda module, batch: ... to {name}."
            )

    def _check_reference(self, pl_module: LightningModule) -> None:
        reference, names = self.reference, self.settings.params
        trainable = {n: p for n, p in pl_module.named_parameters() if (n in names if names is not None else p.requires_grad)}
        if isinstance(reference, Tensor):
            size = sum(p.numel() for p in trainable.values())
            if reference.numel() != size:
                raise MisconfigurationException(
                    f"reference is a tensor of {reference.numel()} entries but θ has {size}; pass the flat "
                    "parameters of a model like the student (torch.cat of its parameters) or the model itself."
                )
            return
        if not isinstance(reference, nn.Module):
            raise MisconfigurationException(
                f"reference must be an nn.Module like the student or a flat tensor, got {type(reference).__name__}."
            )
        if is_shallow(pl_module):
            try:
                shallow_reference(find_shallow(pl_module), reference, torch.float64, torch.device("cpu"))
            except ValueError as error:
                raise MisconfigurationException(f"reference= does not fit the model: {error}") from None
            return
        theirs = dict(reference.named_parameters())
        wrong = [n for n, p in trainable.items() if n not in theirs or theirs[n].shape != p.shape]
        if wrong:
            raise MisconfigurationException(
                f"reference= does not fit the model: it lacks parameters of the model's shapes {wrong}; pass a "
                "model of the same architecture as the LightningModule (same parameter names and shapes)."
            )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        start = time.perf_counter()
        # A checkpoint's state, or the previous fit's when ``fit`` is called again.
        state = self._probe_state()
        data = self._probe_data if self._probe_data is not None else self._draw_probe_set(trainer)
        self.probe = self._make_probe(pl_module, data)
        if state is not None:
            self.probe.load_state_dict(state)
            self._pending_probe_state = None
        self._started, self._spent = start, time.perf_counter() - start
        if self._last_step is None:  # a fresh run: the landscape at initialisation
            self._evaluate(trainer, full=self.full_every is not None)

    def _draw_probe_set(self, trainer: Trainer) -> list[Any]:
        """``probe_size`` samples of the training dataset, indexed with a private generator.

        Indexing the dataset (rather than iterating the loader) leaves the sampler and the global random
        streams alone, and gives every DDP rank the same probe set; the RNG state is restored anyway in
        case the dataset's ``__getitem__`` draws random numbers (augmentations).
        """
        name = type(self).__name__
        loader = trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        map_style = hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
        if not map_style or isinstance(dataset, torch.utils.data.IterableDataset):
            found = type(dataset).__name__ if dataset is not None else type(loader).__name__
            raise MisconfigurationException(
                f"{name} draws its probe set from the training DataLoader's dataset, which must be map-style "
                f"(with __len__ and __getitem__); got {found}. Pass {name}(probe_data=(inputs, targets)) or "
                "a DataLoader of probe batches."
            )
        generator = torch.Generator().manual_seed(self.seed)
        indices = torch.randperm(len(dataset), generator=generator)[: self.probe_size].sort().values.tolist()
        collate = getattr(loader, "collate_fn", None) or torch.utils.data.default_collate
        with preserved_rng([trainer.lightning_module.device]):
            # One batch: every extra batch costs the diagnostics a forward call (32 of size 64 made a
            # light snapshot of the demo network 5 times slower).
            return [collate([dataset[i] for i in indices])]

    # -- schedule ----------------------------------------------------------------------------------------

    def _training_time(self) -> float:
        return time.perf_counter() - self._started - self._spent

    def _affordable(self, tier: str) -> bool:
        """Whether training since the last ``tier`` evaluation has paid for one more at its share."""
        share = self.max_overhead * (LIGHT_SHARE if tier == "light" else FULL_SHARE)
        cost = self._cost[tier]
        if math.isinf(cost):
            # A light evaluation is cheap enough to just measure; a full one is guessed from a light one.
            cost = 0.0 if tier == "light" else FULL_COST_PRIOR * self._cost["light"]
        return (self._training_time() - self._mark[tier]) * share >= cost

    def _full_due(self) -> bool:
        if self.full_every is not None:
            return self._evaluations % self.full_every == 0
        return not FULL_QUANTITIES.isdisjoint(self.quantities) and self._affordable("full")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or self.probe is None or step == self._last_step:
            return
        if self.every_n_steps is None and self.every_n_epochs is None:
            full = self._full_due()
            if full or self._affordable("light"):
                self._evaluate(trainer, full)
        elif self.every_n_steps is not None and step % self.every_n_steps == 0:
            self._evaluate(trainer, self._full_due())

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch, step = trainer.current_epoch + 1, trainer.global_step
        if not trainer.is_global_zero or self.probe is None or step == self._last_step:
            return
        if self.every_n_epochs is not None and epoch % self.every_n_epochs == 0:
            self._evaluate(trainer, self._full_due())

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or self.probe is None:
            return
        step = trainer.global_step
        if step != self._last_step:
            self._evaluate(trainer, full=True, closing=True)
        elif step != self._last_full_step and not FULL_QUANTITIES.isdisjoint(self.quantities):
            # This step's light quantities are logged already; feeding the trackers again would count it twice.
            only = tuple(q for q in self.quantities if q in FULL_QUANTITIES)
            self._evaluate(trainer, full=True, quantities=only, closing=True)
        elif self.figures is None:  # the last evaluation was a full one at this step, drawn without figures
            for logger in self._tensorboard:
                write_figures(logger.experiment, self.last_snapshot, self.probe.trajectory)

    def _evaluate(self, trainer: Trainer, full: bool, quantities: tuple[str, ...] | None = None, closing: bool = False) -> None:
        start = time.perf_counter()
        step = trainer.global_step
        snapshot = self.probe.snapshot(step, full=full, quantities=quantities, learning_rate=_learning_rate(trainer))
        if quantities is None:
            self._evaluations += 1
            self.last_snapshot = snapshot
        else:  # completing this step's light snapshot: last_snapshot holds everything known at the step
            self.last_snapshot = dataclasses.replace(
                self.last_snapshot, **{q: getattr(snapshot, q) for q in quantities},
                errors=self.last_snapshot.errors + snapshot.errors,
            )
        self._last_step = step
        if full:
            self._last_full_step = step
        scalars = snapshot.scalars()
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        scalars["landscape/monitor/overhead"] = (self._spent + snapshot.seconds) / elapsed
        scalars = finite(scalars)
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
        trainer.callback_metrics.update({tag: torch.tensor(value) for tag, value in scalars.items()})
        for logger in self._tensorboard:
            write_setup(logger.experiment, _quantities_of(trainer), self.probe.describe)
            write_snapshot(logger.experiment, self.last_snapshot)
            if full and (self.figures or (closing and self.figures is None)):
                write_figures(logger.experiment, self.last_snapshot, self.probe.trajectory)
        tier = "full" if full else "light"
        self._cost[tier] = time.perf_counter() - start
        self._spent += self._cost[tier]
        # A full evaluation includes the light quantities, so it restarts both waits.
        for waiting in ("light", "full") if full else ("light",):
            self._mark[waiting] = self._training_time()
        self._warn_if_costly(elapsed)

    def _warn_if_costly(self, elapsed: float) -> None:
        share = self._spent / elapsed
        if self._warned_overhead or share <= WARN_OVERHEAD or self._evaluations < 3:
            return
        self._warned_overhead = True
        rank_zero_warn(
            f"{type(self).__name__} has spent {share:.0%} of the training time so far (every_n_steps="
            f"{self.every_n_steps}, every_n_epochs={self.every_n_epochs}, full_every={self.full_every}). Evaluate "
            f"less often, or leave these None for the automatic schedule (max_overhead={self.max_overhead})."
        )

    # -- persistence -------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "evaluations": self._evaluations,
            "last_step": self._last_step,
            "last_full_step": self._last_full_step,
            "probe": self._probe_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._evaluations = state_dict["evaluations"]
        self._last_step = state_dict["last_step"]
        self._last_full_step = state_dict["last_full_step"]
        # The probe is built when training starts, after Lightning restores callbacks.
        self._pending_probe_state = state_dict["probe"]

    def _probe_state(self) -> dict[str, Any] | None:
        if self._pending_probe_state is not None or self.probe is None:
            return self._pending_probe_state
        return self.probe.state_dict()


def _learning_rate(trainer: Trainer) -> float | None:
    """The step size of plain (momentum-free) SGD, the only optimizer for which gradient descent's
    stability limit λ_max < 2/lr holds; None otherwise (Adam's or L-BFGS's ``lr`` is no such step)."""
    if not trainer.optimizers:
        return None
    optimizer = trainer.optimizers[0]
    group = optimizer.param_groups[0]
    if type(optimizer) is not torch.optim.SGD or group.get("momentum", 0) != 0:
        return None
    return float(group["lr"])


def _quantities_of(trainer: Trainer) -> set[str]:
    """Every quantity of every landscape monitor of the trainer: the layout is written once per run."""
    return {q for callback in trainer.callbacks if isinstance(callback, LandscapeMonitor) for q in callback.quantities}


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
