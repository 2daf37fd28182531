"""When a monitoring session evaluates: by the overhead budget or a fixed schedule, what the closing
evaluation can be, and when an explicit schedule costs too much. No framework, and an injectable clock.

:class:`Pacer` keeps the clock and the :class:`~torch_landscape.monitoring.budget.OverheadBudget`. The
session asks :meth:`Pacer.decide` after each training step (and :meth:`Pacer.decide_epoch` after each epoch)
for "light", "full" or None, :meth:`Pacer.closing_plan` at the end, and tells :meth:`Pacer.record` what each
evaluation cost. Training time is the wall time since :meth:`Pacer.start` less everything the monitor spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..settings import check_positive_int
from .budget import CLOSING_MARGIN, CLOSING_MAX_SHARE, FIGURES_MAX_SHARE, MIN_LIGHT_POINTS, OverheadBudget

Decision = Literal["light", "full"]

#: An explicit schedule that spends more than this share of the wall time gets one warning.
WARN_OVERHEAD = 0.25

#: The automatic schedule's deciding (tens of microseconds) may take this share of what the budget allows per
#: step; where steps are shorter it decides only every few steps.
DECIDE_SHARE = 0.02


@dataclass(frozen=True)
class Schedule:
    """A fixed schedule; the fields left None are decided by the budget.

    Attributes
    ----------
    every_n_steps, every_n_epochs : int or None
        Evaluate every this many steps, or at the end of every this many epochs. Neither: light
        evaluations are paced by the budget.
    full_every : int or None
        Make every this-many-th evaluation, counting from the first, a full one (and the closing one);
        None: full evaluations are paced by the budget.
    """

    every_n_steps: int | None = None
    every_n_epochs: int | None = None
    full_every: int | None = None

    def __post_init__(self) -> None:
        for name in ("every_n_steps", "every_n_epochs", "full_every"):
            value = getattr(self, name)
            if value is not None:
                check_positive_int(name, value)

    @property
    def by_budget(self) -> bool:
        """Whether light evaluations are paced by the budget (no steps or epochs given)."""
        return self.every_n_steps is None and self.every_n_epochs is None

    @property
    def automatic(self) -> bool:
        """Whether nothing is fixed: every evaluation is paced by the budget."""
        return self.by_budget and self.full_every is None


@dataclass(frozen=True)
class _Outlook:
    """What one decision needs of the run: training seconds so far, progress (None: length unknown), the
    whole run's projected allowance, whether full evaluations fit at all, the closing reserve, and the share
    of the paced allowance for full evaluations."""

    training: float
    progress: float | None
    whole_run: float
    affordable: bool
    closing: float
    full_share: float


class Ledger:
    """The pacers of one training run: what all its monitors spent, for one overhead figure."""

    def __init__(self) -> None:
        self.pacers: list[Pacer] = []

    def spent(self) -> float:
        return sum(pacer.budget.total_spent for pacer in self.pacers)

    def share(self, now: float, pending: float = 0.0) -> float:
        """(s + pending) / wall time since the first start: the monitors' share of the run."""
        starts = [pacer.started for pacer in self.pacers if pacer.started is not None]
        if not starts:
            return 0.0
        return (self.spent() + pending) / max(now - min(starts), 1e-12)


class Pacer:
    """The schedule of one run: what is due after each step, and the closing evaluation.

    Parameters
    ----------
    max_overhead
        The share of the wall time the monitor may take, in (0, 1).
    schedule
        What is fixed instead of paced by the budget.
    full_available
        Whether full evaluations add anything (:func:`~torch_landscape.quantities.completing`).
    figures
        None: figures at the end if the budget allows; True: at every full evaluation; False: never.
    can_draw
        Whether anything can show figures (a TensorBoard sink).
    distributed
        Decide at every step (the ranks must meet at each decision).
    clock
        Seconds, monotonic (``time.perf_counter``; tests pass their own).
    ledger
        Shared with the other pacers of one training run (several monitors on one trainer): training time and
        the overhead share then count what all of them spent.

    Attributes
    ----------
    budget : OverheadBudget
    notes : list of str
        What the schedule scaled down, and why.
    """

    def __init__(
        self,
        max_overhead: float = 0.05,
        schedule: Schedule | None = None,
        *,
        full_available: bool = True,
        figures: bool | None = None,
        can_draw: bool = False,
        distributed: bool = False,
        clock: Callable[[], float] = time.perf_counter,
        ledger: Ledger | None = None,
    ) -> None:
        self.budget = OverheadBudget(max_overhead)
        self.ledger = ledger if ledger is not None else Ledger()
        self.ledger.pacers.append(self)
        self.schedule = schedule if schedule is not None else Schedule()
        self.full_available, self.figures, self.can_draw = full_available, figures, can_draw
        self.distributed = distributed
        self.clock = clock
        self.horizon: int | None = None
        self.evaluations = 0
        self.last_step: int | None = None
        self.last_full_step: int | None = None
        self.notes: list[str] = []
        self._started: float | None = None
        self._stride, self._undecided, self._decide_seconds = 1, 0, math.inf
        self._first_full = False  # the pending decision is the run's first full evaluation, paid pro rata
        self._gap = 0  # steps between the last two evaluations
        self._warned = False

    # -- time --------------------------------------------------------------------------------------------

    def start(self, horizon: int | None = None, since: float | None = None) -> None:
        """Start the clock (at ``since``, a reading of :attr:`clock`, when the monitor's set-up began earlier:
        that time is then counted as spent); ``horizon`` is the step at which training ends, if known."""
        now = self.clock()
        self._started, self.horizon = (now if since is None else since), horizon
        if since is not None:
            self.record_overhead(now - since)

    @property
    def started(self) -> float | None:
        """When :meth:`start` was called (by :attr:`clock`), or None."""
        return self._started

    def training_time(self) -> float:
        """Wall time since :meth:`start` less what the monitors of this run spent."""
        if self._started is None:
            return 0.0
        return self.clock() - self._started - self.ledger.spent()

    def share(self, pending: float = 0.0) -> float:
        """The monitors' share of the run's wall time, counting ``pending`` seconds not yet recorded."""
        return self.ledger.share(self.clock(), pending)

    def record(
        self, decision: Decision, step: int, seconds: float, figures: float | None = None, completes: bool = False
    ) -> None:
        """Count an evaluation at ``step`` of ``seconds`` (``figures`` of them drawing); ``completes``: it
        completed the light evaluation of the same step, not a new one. The run's first evaluation and its first
        full one (:meth:`decide`) are paid pro rata like the set-up rather than from their tier's share, so that
        the curves stay evenly spaced around them."""
        one_off = self.last_step is None or (decision == "full" and self._first_full)
        self._first_full = False
        self.budget.record(decision, seconds, figures=figures, one_off=one_off, progress=self._progress(step))
        self.evaluations += int(not completes)
        if self.last_step is not None and step > self.last_step:
            self._gap = step - self.last_step
        self.last_step = step
        if decision == "full":
            self.last_full_step = step

    def record_overhead(self, seconds: float) -> None:
        """Count time spent on anything but an evaluation (set-up, deciding, drawing after the fact)."""
        self.budget.record("setup", seconds)

    # -- deciding ----------------------------------------------------------------------------------------

    def initial(self, cheap: bool) -> Decision:
        """The evaluation at the start of a run: full where explicitly scheduled or ``cheap``."""
        return "full" if self.full_available and (self.schedule.full_every is not None or cheap) else "light"

    def decide(self, step: int) -> Decision | None:
        """What is due after training step ``step``: "light", "full" or None."""
        if step == self.last_step:
            return None
        schedule = self.schedule
        if not schedule.by_budget:
            if schedule.every_n_steps is None or step % schedule.every_n_steps:
                return None
            return self._tier(self._full_due(step, self._outlook(step)))
        # Deciding costs tens of microseconds: where the budget allows less per step, decide every few steps so
        # that deciding stays below DECIDE_SHARE of it (every step when distributed).
        self._undecided += 1
        if self._undecided < self._stride and not self.distributed:
            return None
        if self.last_step is not None and step - self.last_step < self._gap / 4:
            # The light and full tiers keep separate accounts: without this, one would fall due the step after
            # the other. Its turn comes a little later; the allowance it waits for is not lost.
            return None
        self._undecided, begin = 0, self.clock()
        outlook = self._outlook(step)
        self._first_full = self._first_full_due(outlook)
        full = self._first_full or self._full_due(step, outlook)
        due = self._tier(full) if full or self._tier_due("light", outlook) else None
        if self.horizon:
            per_step = outlook.whole_run / self.horizon
        else:
            per_step = self.budget.allowance(outlook.training, None) / max(step, 1)
        # The quickest decision measured: one preempted by the system would stop deciding for hundreds of steps.
        self._decide_seconds = min(self._decide_seconds, self.clock() - begin)
        self._stride = max(1, math.ceil(self._decide_seconds / max(DECIDE_SHARE * per_step, 1e-12)))
        return due

    def decide_epoch(self, epoch: int, step: int) -> Decision | None:
        """What is due at the end of epoch ``epoch`` (counted from 0) with ``every_n_epochs``."""
        every = self.schedule.every_n_epochs
        if every is None or (epoch + 1) % every or step == self.last_step:
            return None
        return self._tier(self._full_due(step, self._outlook(step)))

    def closing_plan(self) -> tuple[bool, bool]:
        """Whether the closing evaluation is full and draws figures: what was promised, scaled down (and
        said so in :attr:`notes`) where the budget cannot pay for it."""
        if not self.full_available:
            return False, False
        budget, training, explicit = self.budget, self.training_time(), self.schedule.full_every is not None
        full = explicit or budget.affords(budget.predicted("full"), training)
        if not full:
            self.note(
                f"the closing full evaluation was skipped: it would cost about {budget.predicted('full'):.2g} s, "
                f"beyond the budget (max_overhead={budget.max_overhead}); pass full_every= or a larger max_overhead"
            )
        if not self.can_draw or self.figures is False:
            return full, False
        # An explicit full schedule (full_every) has opted out of the budget, figures included.
        figures = full and (
            bool(self.figures)
            or explicit
            or budget.affords(budget.predicted("full") + budget.predicted_figures(), training)
        )
        if full and not figures:
            self.note(
                f"figures were not drawn: they would cost about {budget.predicted_figures():.2g} s beyond the "
                f"budget (max_overhead={budget.max_overhead}); pass figures=True to draw them at every full evaluation"
            )
        return full, figures

    def draws_at_full(self) -> bool:
        """Whether every full evaluation draws figures (``figures=True``)."""
        return bool(self.figures) and self.can_draw

    def note(self, text: str) -> None:
        self.notes.append(text)

    def costly_warning(self, step: int) -> str | None:
        """Once, when an explicit schedule has spent more than WARN_OVERHEAD of the wall time (the automatic
        one keeps to its budget by construction): the warning, with the interval that would fit."""
        share, schedule = self.share(), self.schedule
        if schedule.automatic or self._warned or share <= WARN_OVERHEAD or self.evaluations < 3:
            return None
        self._warned = True
        suggestion = self.budget.every_n_steps_for(step, self.training_time())
        return (
            f"has spent {share:.0%} of the training time so far (every_n_steps={schedule.every_n_steps}, "
            f"every_n_epochs={schedule.every_n_epochs}, full_every={schedule.full_every}). Light evaluations every "
            f"{suggestion} steps would keep it near max_overhead={self.budget.max_overhead}; or leave every_n_steps, "
            "every_n_epochs and full_every at None for the automatic schedule."
        )

    @staticmethod
    def _tier(full: bool) -> Decision:
        return "full" if full else "light"

    def _progress(self, step: int) -> float | None:
        return step / self.horizon if self.horizon else None

    def _outlook(self, step: int) -> _Outlook:
        """The run as projected after ``step``, computed once per decision."""
        budget, training, progress = self.budget, self.training_time(), self._progress(step)
        whole_run = budget.projected(training, progress)
        # Full evaluations fit at all when explicitly scheduled, or at most CLOSING_MAX_SHARE of the whole run each.
        affordable = self.full_available and (
            self.schedule.full_every is not None or budget.predicted("full") <= CLOSING_MAX_SHARE * whole_run
        )
        closing = self._closing_cost(whole_run, affordable)
        share = budget.full_share(whole_run, closing) if affordable else 0.0
        return _Outlook(training, progress, whole_run, affordable, closing, share)

    def _closing_cost(self, whole_run: float, affordable: bool) -> float:
        """The reserve kept for the closing evaluation. Figures count only when asked for, or when they are a
        small share of what the whole run may spend; a full evaluation only when the run can pay for it at all
        (else the run ends with a light one, said so, and the light evaluations get the budget instead)."""
        budget = self.budget
        if not affordable:
            return CLOSING_MARGIN * budget.predicted("light")
        figures = budget.predicted_figures()
        wanted = self.can_draw and (
            bool(self.figures) or (self.figures is None and figures <= FIGURES_MAX_SHARE * whole_run)
        )
        return CLOSING_MARGIN * (budget.predicted("full") + (figures if wanted else 0.0))

    def _first_full_due(self, outlook: _Outlook) -> bool:
        """Whether the run's first full evaluation is due (automatic schedule): once three light ones have been
        measured, if the projected run pays for it beside the closing evaluation (without the reserve's margin)
        and MIN_LIGHT_POINTS light ones. It is paid pro rata over the rest of the run, like the set-up: a short
        run then shows where training started as well as where it ended, and the schedule learns what a full
        evaluation costs."""
        budget = self.budget
        if self.last_full_step is not None or not self.schedule.automatic or self.evaluations < 3:
            return False
        needed = budget.spent["setup"] + outlook.closing / CLOSING_MARGIN + budget.predicted("full")
        return outlook.affordable and needed + MIN_LIGHT_POINTS * budget.predicted("light") <= outlook.whole_run

    def _full_due(self, step: int, outlook: _Outlook) -> bool:
        if self.schedule.full_every is not None:
            return self.full_available and self.evaluations % self.schedule.full_every == 0
        if self.horizon and self.last_full_step is not None and outlook.affordable:
            # Closer to the closing full evaluation than half the last gap between full ones: it adds little.
            if self.horizon - step < (step - self.last_full_step) / 2:
                return False
        return outlook.full_share > 0 and self._tier_due("full", outlook)

    def _tier_due(self, tier: Decision, outlook: _Outlook) -> bool:
        return self.budget.due(tier, outlook.training, outlook.progress, outlook.closing, outlook.full_share)

    # -- persistence -------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "evaluations": self.evaluations,
            "last_step": self.last_step,
            "last_full_step": self.last_full_step,
            "costs": dict(self.budget.cost),
            "notes": list(self.notes),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evaluations = state["evaluations"]
        self.last_step, self.last_full_step = state["last_step"], state["last_full_step"]
        self.budget.cost.update(state.get("costs", {}))
        self.notes = list(state.get("notes", []))
