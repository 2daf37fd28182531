"""When to take a snapshot so that monitoring costs a set share of the wall time (no Lightning here).

A monitor spends s seconds beside T seconds of training; its share of the wall time is s / (T + s). To keep
that at most o (``max_overhead``) it may spend r·T with r = o / (1 − o). Short runs would then get almost
nothing — a 320-step toy run trains for half a second — so the allowance is never below ``min_seconds``
over the whole run. Spending is paced by progress p (the share of the run's steps done, when the run's
length is known): by p the monitor may have spent

    A(T, p) = max(r·T, p·min_seconds),

of which the closing evaluation's predicted cost is set aside first, so the run always ends with the
evaluation it was promised (or with a cheaper one, said so, when even that would break the budget). The
rest is shared between light and full evaluations; each tier waits until its share has paid for one more
at its last measured cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Tier = Literal["light", "full"]

#: The least a run's monitoring may spend in all, in seconds: enough for about twenty light and three full
#: evaluations of a small network, so that a short run still draws curves (the README example: 320 steps,
#: half a second of training, whole script about 4 s).
MIN_SECONDS = 0.3

#: Share of the pacing allowance that light evaluations may use; full evaluations get the rest.
LIGHT_SHARE = 0.6

#: Before a full evaluation has been measured its cost is guessed as this many light ones. Measured: about
#: 10 on networks of tens of parameters, about 150 at P = 1153 with 2048 probe samples.
FULL_COST_PRIOR = 30.0

#: Before figures have been drawn once their cost is guessed at this many seconds (importing matplotlib
#: and drawing three figures on 2 cores).
FIGURES_COST_PRIOR = 0.6

#: The automatic schedule keeps the closing figures' cost aside only while it is at most this share of the
#: run's projected allowance; otherwise the evaluations come first and figures are drawn if money is left.
FIGURES_MAX_SHARE = 0.25

#: Likewise the closing full evaluation: reserved only while it is at most this share of the projected
#: allowance; a full evaluation the whole run cannot pay for would starve the light ones and never happen.
CLOSING_MAX_SHARE = 0.5


@dataclass
class OverheadBudget:
    """The monitor's budget: what it has spent, what each kind of evaluation costs, and what is due.

    Parameters
    ----------
    max_overhead
        o: the share of the wall time the monitor may take, in (0, 1).
    min_seconds
        The least the whole run may spend, whatever its length (see the module docstring).
    light_share
        Share of the pacing allowance for light evaluations when there are full ones too.

    Attributes
    ----------
    spent : dict
        Seconds spent per tier ("light", "full") and on set-up ("setup").
    cost : dict
        The last measured cost of one evaluation per tier (None until measured), and of drawing figures.
    forfeited : dict
        Allowance per tier left unspent beyond one evaluation and not carried forward, so that
        evaluations stay evenly spaced.
    """

    max_overhead: float
    min_seconds: float = MIN_SECONDS
    light_share: float = LIGHT_SHARE
    spent: dict[str, float] = field(default_factory=lambda: {"setup": 0.0, "light": 0.0, "full": 0.0})
    cost: dict[str, float | None] = field(default_factory=lambda: {"light": None, "full": None, "figures": None})
    forfeited: dict[str, float] = field(default_factory=lambda: {"light": 0.0, "full": 0.0})

    def __post_init__(self) -> None:
        o = self.max_overhead
        if isinstance(o, bool) or not isinstance(o, (int, float)) or not 0 < o < 1:
            raise ValueError(f"max_overhead must be a fraction in (0, 1) such as 0.05, got {o!r}.")
        if not self.min_seconds >= 0 or not 0 < self.light_share <= 1:
            raise ValueError("min_seconds must be >= 0 and light_share in (0, 1].")

    @property
    def total_spent(self) -> float:
        """Seconds spent so far on everything."""
        return sum(self.spent.values())

    def record(self, tier: str, seconds: float, *, figures: float | None = None) -> None:
        """Count ``seconds`` against ``tier`` ("setup", "light" or "full") and remember the cost."""
        self.spent[tier] += seconds
        if tier != "setup":
            self.cost[tier] = seconds - (figures or 0.0)
        if figures is not None:
            self.cost["figures"] = figures

    def predicted(self, tier: Tier) -> float:
        """The cost of the next ``tier`` evaluation: the last one measured, or a guess from the other."""
        light, full = self.cost["light"], self.cost["full"]
        if tier == "light":
            return light if light is not None else (full / FULL_COST_PRIOR if full is not None else 0.0)
        return full if full is not None else FULL_COST_PRIOR * (light or 0.0)

    def predicted_figures(self) -> float:
        figures = self.cost["figures"]
        return figures if figures is not None else FIGURES_COST_PRIOR

    def allowance(self, training_seconds: float, progress: float | None) -> float:
        """A(T, p) = max(r·T, p·min_seconds): what may have been spent by now (p None: length unknown)."""
        rate = self.max_overhead / (1.0 - self.max_overhead)
        floor = self.min_seconds * min(max(progress, 0.0), 1.0) if progress is not None else 0.0
        return max(rate * training_seconds, floor)

    def due(
        self, tier: Tier, training_seconds: float, progress: float | None, closing_cost: float, with_full: bool = True
    ) -> bool:
        """Whether the pacing allowance, less the closing evaluation's reserve, pays for one more ``tier``
        evaluation. ``with_full``: whether full evaluations share the allowance at all."""
        reserve = closing_cost * (progress if progress is not None else 1.0)
        available = self.allowance(training_seconds, progress) - reserve - self.spent["setup"]
        share = 1.0 if not with_full else (self.light_share if tier == "light" else 1.0 - self.light_share)
        cost = self.predicted(tier)
        credit = share * available - self.spent[tier] - self.forfeited[tier]
        if credit > cost:
            # Allowance left unspent beyond one evaluation (a slow stretch of training, a cheap tier) is not
            # carried forward: it would fire evaluations on consecutive steps instead of evenly spaced ones.
            self.forfeited[tier] += credit - cost
        return cost <= credit

    def projected(self, training_seconds: float, progress: float | None) -> float:
        """The whole run's allowance as projected now: A at p = 1 if the run goes on at this pace."""
        if progress is None or progress <= 0:
            return self.allowance(training_seconds, None)
        return self.allowance(training_seconds / min(progress, 1.0), 1.0)

    def affords(self, seconds: float, training_seconds: float) -> bool:
        """Whether spending ``seconds`` more now, at the end of the run, stays within the whole budget."""
        return self.total_spent + seconds <= self.allowance(training_seconds, 1.0)

    def share(self, training_seconds: float) -> float:
        """s / (T + s): the monitor's share of the wall time so far."""
        spent = self.total_spent
        return spent / max(training_seconds + spent, 1e-12)

    def every_n_steps_for(self, steps: int, training_seconds: float) -> int:
        """The light-evaluation interval in steps that would have kept the share at ``max_overhead``."""
        light = self.predicted("light")
        rate = self.max_overhead / (1.0 - self.max_overhead)
        per_step = training_seconds / max(steps, 1)
        return max(1, math.ceil(light / max(rate * per_step, 1e-12)))
