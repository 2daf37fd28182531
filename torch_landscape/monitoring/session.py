"""A monitoring session: a landscape probe run on a budget from any training loop.

The session owns what links a run's evaluations: the probe, when to evaluate (a
:class:`~torch_landscape.monitoring.pacer.Pacer`), the history of snapshots, the notes of what was scaled
down, the closing evaluation and the run's verdict; it sends every result to its sinks. It knows no
framework: the Lightning callbacks are adapters that call it from their hooks, and a plain loop calls it
directly::

    probe = LandscapeProbe(model, nn.MSELoss(), (x_probe, y_probe))
    session = MonitoringSession(probe, sinks=[TensorBoardSink(SummaryWriter("runs/x"))], total_steps=steps,
                                optimizer=optimizer)
    session.start()
    for step in range(1, steps + 1):
        train_one_step()
        session.after_step(step)
    print(session.close())
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from ..curvature.policy import uses_dense
from ..probe import LandscapeProbe
from ..quantities import completing
from ..snapshot import LandscapeSnapshot
from ..snapshot_state import snapshot_from_state, snapshot_to_state
from ..stability import stability_setup
from .pacer import Decision, Ledger, Pacer, Schedule
from .sinks import EvaluationCost, Sink
from .verdict import events, run_verdict

T = TypeVar("T")


class MonitoringSession:
    """Evaluate a probe while a model trains, within a share of the wall time, and report to sinks.

    Parameters
    ----------
    probe
        What to measure and on what (:class:`~torch_landscape.probe.LandscapeProbe`).
    sinks
        Where results go (:class:`~torch_landscape.monitoring.sinks.Sink`); none: they stay in
        :attr:`history`.
    max_overhead
        The share of the wall time the automatic schedule may spend, in (0, 1): set-up, evaluations,
        writing, figures and the closing evaluation all count; the whole run may spend at least 1.25 s
        (``budget.MIN_SECONDS``), so that short runs still draw curves (:mod:`~torch_landscape.monitoring.budget`).
    every_n_steps, every_n_epochs, full_every
        A fixed schedule instead (:class:`~torch_landscape.monitoring.pacer.Schedule`).
    figures
        None: figures at the end if the budget allows; True: at every full evaluation; False: never.
    total_steps
        The step at which training ends, if known: the budget is paced over the run, and that step belongs
        to the closing evaluation.
    optimizer
        The optimizer training the model (read, never written): its stability ratio at every evaluation, the
        sharpness it sees over its threshold (:mod:`~torch_landscape.stability`), and for plain SGD the 2/lr
        line.
    skipped
        What this run cannot show (said once in the setup text).
    about
        Lines for the setup text on how the run was set up (e.g. how the probe set was sized).
    agree
        Under several processes, ``agree(decide)`` returns rank zero's ``decide()`` on every rank, so that all
        ranks take part in the same evaluations; None in one process.
    clock
        Seconds, monotonic; tests pass a simulated one.
    ledger
        Shared by the sessions of one training run (several monitors on one trainer), so that each logs the
        share of the wall time all of them spent.
    name
        How warnings and notes name the monitor.

    Attributes
    ----------
    history : list of LandscapeSnapshot
        Every snapshot of the run, light and full, in order; a full evaluation completing a light one of the
        same step replaces it.
    notes : list of str
        What the schedule scaled down, and why.
    """

    def __init__(
        self,
        probe: LandscapeProbe,
        *,
        sinks: Sequence[Sink] = (),
        max_overhead: float = 0.05,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = None,
        full_every: int | None = None,
        figures: bool | None = None,
        total_steps: int | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        skipped: Sequence[str] = (),
        about: Sequence[str] = (),
        agree: Callable[[Callable[[], Any]], Any] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        ledger: Ledger | None = None,
        name: str = "MonitoringSession",
    ) -> None:
        if not callable(getattr(probe, "snapshot", None)):
            raise TypeError(f"probe must be a LandscapeProbe, got {type(probe).__name__}.")
        if figures not in (None, True, False):
            raise ValueError(f"figures must be True, False or None, got {figures!r}.")
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)):
            raise TypeError(f"total_steps must be an integer or None, got {total_steps!r}.")
        self.probe = probe
        self.sinks = list(sinks)
        self.optimizer = optimizer
        self.skipped = list(skipped)
        self.about = list(about)
        self.pacer = Pacer(
            max_overhead,
            Schedule(every_n_steps, every_n_epochs, full_every),
            full_available=bool(completing(probe.quantities)),
            figures=figures,
            can_draw=any(sink.draws_figures for sink in self.sinks),
            distributed=agree is not None,
            clock=clock,
            ledger=ledger,
        )
        self.name = name
        self._total_steps = total_steps
        self._agree = agree
        self._started = False
        self.history: list[LandscapeSnapshot] = []
        #: (step, text) of what happened: divergence, the stability threshold crossed.
        self.events: list[tuple[int, str]] = []
        self.last_snapshot: LandscapeSnapshot | None = None

    @property
    def notes(self) -> list[str]:
        return self.pacer.notes

    @property
    def verdict(self) -> str:
        """The run so far in words (:func:`~torch_landscape.monitoring.verdict.run_verdict`)."""
        return run_verdict(self.history, self.notes)

    # -- the run -----------------------------------------------------------------------------------------

    def start(self, step: int = 0, since: float | None = None) -> LandscapeSnapshot | None:
        """Start the clock and evaluate the landscape where training starts (full where the Hessian is small
        enough to be cheap, so the schedule learns its cost); a resumed run (:meth:`load_state_dict`) only
        restarts the clock. ``since``: when the set-up began (a reading of the session's clock), if earlier:
        the set-up is then counted as spent."""
        if self._started:
            return None
        self._started = True
        self.pacer.start(self._total_steps, since)
        description = "\n".join([self.probe.describe(), *(f"- {line}" for line in self.about)])
        if self.optimizer is not None:
            lines = stability_setup(self.optimizer, self.probe.objective()).describe().splitlines()
            description += "\n" + "\n".join([f"- {lines[0]}", *(f"  - {line.strip()}" for line in lines[1:])])
        for sink in self.sinks:
            sink.start(description, self.skipped)
        if self.pacer.last_step is not None:
            return None
        probe = self.probe
        cheap = uses_dense(probe.num_parameters, "light", probe.method)
        return self.evaluate(step, self.pacer.initial(cheap))

    def after_step(self, step: int) -> LandscapeSnapshot | None:
        """After training step ``step``: evaluate if due. Returns the snapshot, or None."""
        self._ensure_started(step)
        begin, spent = self.pacer.clock(), self.pacer.budget.total_spent
        decision = self._decided(lambda: self.pacer.decide(step))
        snapshot = self.evaluate(step, decision) if decision is not None else None
        # The deciding is spent too (evaluations count themselves).
        self.pacer.record_overhead(max(self.pacer.clock() - begin - (self.pacer.budget.total_spent - spent), 0.0))
        return snapshot

    def after_epoch(self, epoch: int, step: int) -> LandscapeSnapshot | None:
        """At the end of epoch ``epoch`` (from 0), after step ``step``: evaluate if ``every_n_epochs`` says so."""
        self._ensure_started(step)
        decision = self._decided(lambda: self.pacer.decide_epoch(epoch, step))
        return self.evaluate(step, decision) if decision is not None else None

    def close(self, step: int | None = None) -> str:
        """The closing evaluation at ``step`` (default: the last step evaluated or the run's end) — full with
        figures where promised and affordable, else scaled down and said so — and the run's verdict, which
        every sink receives and which is returned."""
        if step is None:
            step = self._total_steps if self._total_steps is not None else self.pacer.last_step or 0
        self._ensure_started(step)
        full, figures = self._decided(self.pacer.closing_plan)
        for text in self.notes:
            for sink in self.sinks:
                sink.note(text)
        last = self.last_snapshot
        if step != self.pacer.last_step:
            self.evaluate(step, "full" if full else "light", figures=figures)
        elif full and last is not None and not last.full:
            self.evaluate(step, "full", figures=figures)
        elif figures and last is not None and last.full:
            begin = self.pacer.clock()
            self._draw(last)
            self.pacer.record_overhead(self.pacer.clock() - begin)
        begin, verdict = self.pacer.clock(), self.verdict
        for sink in self.sinks:
            sink.close(verdict, step)
        self.pacer.record_overhead(self.pacer.clock() - begin)  # the closing text and any placeholder image
        return verdict

    def evaluate(self, step: int, decision: Decision, figures: bool = False) -> LandscapeSnapshot:
        """Evaluate now, at ``step`` ("light" or "full"), counted against the budget, and report it. A full
        evaluation at the step of the last light one completes it."""
        begin = self.pacer.clock()
        previous = self.last_snapshot
        completes = decision == "full" and previous is not None and previous.step == step and not previous.full
        if completes and previous is not None:
            snapshot = self.probe.complete(previous)
            self.history.pop()
        else:
            previous = None
            snapshot = self.probe.snapshot(step, full=decision == "full", optimizer=self.optimizer)
        for text in events(self.history[-1] if self.history else None, snapshot):
            self.events.append((step, text))
            for sink in self.sinks:
                sink.event(step, text)
        self.history.append(snapshot)
        self.last_snapshot = snapshot
        seconds = self.pacer.clock() - begin
        limit = self.pacer.budget.max_overhead if self.pacer.schedule.automatic else math.nan
        cost = EvaluationCost(seconds, self.pacer.share(pending=seconds), limit)
        for sink in self.sinks:
            sink.write(snapshot, previous, cost)
        drawing = None
        if figures or (decision == "full" and self.pacer.draws_at_full()):
            drawing = self._draw(snapshot)
        self.pacer.record(decision, step, self.pacer.clock() - begin, drawing, completes)
        if decision == "light" and self.pacer.budget.cost["full"] is None:
            self.pacer.budget.guess_full(self.probe.full_cost_guess(snapshot))
        warning = self.pacer.costly_warning(step)
        if warning is not None:
            warnings.warn(f"{self.name} {warning}", UserWarning, stacklevel=3)
        return snapshot

    def _draw(self, snapshot: LandscapeSnapshot) -> float:
        begin = self.pacer.clock()
        for sink in self.sinks:
            if sink.draws_figures:
                sink.draw(snapshot, self.probe.trajectory)
        return self.pacer.clock() - begin

    def _ensure_started(self, step: int) -> None:
        if not self._started:  # a loop that never called start(): the first call starts the run here
            self.start(step)

    def _decided(self, decide: Callable[[], T]) -> T:
        return decide() if self._agree is None else self._agree(decide)

    # -- persistence -------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs: the schedule's counts and costs, the probe's running state, the history."""
        history = [snapshot_to_state(snapshot) for snapshot in self.history]
        events = [[step, text] for step, text in self.events]
        state = {"pacer": self.pacer.state_dict(), "probe": self.probe.state_dict(), "history": history}
        return state | {"events": events}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (before :meth:`start`): the run continues as if never interrupted."""
        self.pacer.load_state_dict(state["pacer"])
        self.probe.load_state_dict(state["probe"])
        self.history = [snapshot_from_state(snapshot) for snapshot in state.get("history", [])]
        self.last_snapshot = self.history[-1] if self.history else None
        self.events = [(int(step), str(text)) for step, text in state.get("events", [])]
