"""When a landscape monitor evaluates: the pacing half of :class:`~.monitors.LandscapeMonitor`.

The monitor holds the state (``_budget``, ``_started``, ``_horizon``, ``_evaluations``, the schedule
arguments, ``_tensorboard``, ``_group``, ``notes``); these methods decide from it, through
:class:`~torch_landscape.monitoring.budget.OverheadBudget`, whether a light or a full evaluation is due, what the
closing evaluation can be, and when an explicit schedule costs too much.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytorch_lightning import Trainer
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_warn

from ..monitoring.budget import CLOSING_MAX_SHARE, FIGURES_MAX_SHARE
from ..settings import FULL_QUANTITIES

if TYPE_CHECKING:
    from ..monitoring.budget import OverheadBudget

#: An explicit schedule that spends more than this share of the wall time gets one warning.
WARN_OVERHEAD = 0.25


class Pacing:
    """The schedule methods of a landscape monitor (a mixin: the state is the monitor's)."""

    _budget: OverheadBudget
    _started: float
    _horizon: int | None
    _evaluations: int
    _last_step: int | None
    _warned_overhead: bool
    _tensorboard: list[Any]
    _group: Any
    quantities: tuple[str, ...]
    every_n_steps: int | None
    every_n_epochs: int | None
    full_every: int | None
    figures: bool | None
    max_overhead: float
    notes: list[str]
    probe: Any

    def _training_time(self) -> float:
        return time.perf_counter() - self._started - self._budget.total_spent

    def _progress(self, step: int) -> float | None:
        return step / self._horizon if self._horizon else None

    def _has_full(self) -> bool:
        """Whether full evaluations add anything: the full-only quantities, or both ends of the spectrum."""
        return not FULL_QUANTITIES.isdisjoint(self.quantities) or "spectrum" in self.quantities

    def _fulls_affordable(self, step: int) -> bool:
        """Whether full evaluations fit this run at all: explicitly scheduled, or at most CLOSING_MAX_SHARE of
        its projected allowance each."""
        if not self._has_full():
            return False
        whole_run = self._budget.projected(self._training_time(), self._progress(step))
        return self.full_every is not None or self._budget.predicted("full") <= CLOSING_MAX_SHARE * whole_run

    def _closing_cost(self, step: int) -> float:
        """What the closing evaluation is predicted to cost: the reserve the schedule keeps for it. Figures
        count only when asked for, or when they are a small share of what the whole run may spend; a full
        evaluation only when the run can pay for it at all (else the run ends with a light one, said so, and
        the light evaluations get the budget instead of a reserve that would never be spent)."""
        if not self._fulls_affordable(step):
            return self._budget.predicted("light")
        whole_run = self._budget.projected(self._training_time(), self._progress(step))
        figures = self._budget.predicted_figures()
        wanted = self._tensorboard and (
            self.figures or (self.figures is None and figures <= FIGURES_MAX_SHARE * whole_run)
        )
        return self._budget.predicted("full") + (figures if wanted else 0.0)

    def _full_due(self, step: int) -> bool:
        if self.full_every is not None:
            return self._evaluations % self.full_every == 0
        return self._fulls_affordable(step) and self._budget.due(
            "full", self._training_time(), self._progress(step), self._closing_cost(step)
        )

    def _light_due(self, step: int) -> bool:
        # Without affordable full evaluations the light ones get the whole allowance.
        return self._budget.due(
            "light",
            self._training_time(),
            self._progress(step),
            self._closing_cost(step),
            with_full=self._fulls_affordable(step),
        )

    def _skip(self, trainer: Trainer) -> bool:
        step = trainer.global_step
        # The last step belongs to the closing evaluation; one evaluation per step.
        last = self._horizon is not None and step >= self._horizon
        return self.probe is None or step == self._last_step or last

    def _decided(self, trainer: Trainer, decide: Callable[[], Any]) -> Any:
        """``decide()`` (a schedule decision, from rank zero's clock and budget) on rank zero, and the same
        answer on every rank under DDP, so that all ranks take part in the same evaluations."""
        if self._group is None:
            return decide()
        return trainer.strategy.broadcast(decide() if trainer.is_global_zero else None, src=0)

    def _due_now(self, step: int) -> bool | None:
        """Whether the automatic schedule evaluates at ``step``: None (no), True (full) or False (light)."""
        full = self._full_due(step)
        return full if full or self._light_due(step) else None

    def _closing_plan(self) -> tuple[bool, bool]:
        """Whether the closing evaluation is full and draws figures: what was promised, scaled down (and
        said so) where the automatic budget cannot pay for it."""
        if not self._has_full():
            return False, False
        training = self._training_time()
        full = self.full_every is not None or self._budget.affords(self._budget.predicted("full"), training)
        if not full:
            self._note(
                f"the closing full evaluation was skipped: it would cost about {self._budget.predicted('full'):.2g} s, "
                f"beyond the budget (max_overhead={self.max_overhead}); pass full_every= or a larger max_overhead"
            )
        if not self._tensorboard or self.figures is False:
            return full, False
        # An explicit full schedule (full_every) has opted out of the budget, figures included.
        figures = full and (
            self.figures
            or self.full_every is not None
            or self._budget.affords(self._budget.predicted("full") + self._budget.predicted_figures(), training)
        )
        if full and not figures:
            self._note(
                f"figures were not drawn: they would cost about {self._budget.predicted_figures():.2g} s beyond the "
                f"budget (max_overhead={self.max_overhead}); pass figures=True to draw them at every full evaluation"
            )
        return full, figures

    def _note(self, text: str) -> None:
        self.notes.append(text)
        rank_zero_info(f"{type(self).__name__}: {text}.")

    def _warn_if_costly(self, step: int) -> None:
        """One warning when an explicit schedule spends more than WARN_OVERHEAD (the automatic one keeps
        to its budget by construction), with the interval that would keep to ``max_overhead``."""
        automatic = self.every_n_steps is None and self.every_n_epochs is None and self.full_every is None
        training = self._training_time()
        share = self._budget.share(training)
        if automatic or self._warned_overhead or share <= WARN_OVERHEAD or self._evaluations < 3:
            return
        self._warned_overhead = True
        suggestion = self._budget.every_n_steps_for(step, training)
        rank_zero_warn(
            f"{type(self).__name__} has spent {share:.0%} of the training time so far (every_n_steps="
            f"{self.every_n_steps}, every_n_epochs={self.every_n_epochs}, full_every={self.full_every}). "
            f"Light evaluations every {suggestion} steps would keep it near max_overhead={self.max_overhead}; or "
            "leave every_n_steps, every_n_epochs and full_every at None for the automatic schedule."
        )
