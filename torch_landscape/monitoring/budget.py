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

#: The least a run's monitoring may spend in all, in seconds, so that a short run still draws curves: enough for
#: MIN_LIGHT_POINTS light and two full evaluations of a network of a few thousand parameters (the small-batch
#: Adam classifier of examples/adam_classifier.py, 2,410 parameters, about a second of training: light
#: evaluations of 15 ms, full ones of 0.3 s), and for many more of a small one (the README example).
MIN_SECONDS = 1.25

#: The λ_max points a run's default probe set is sized to afford (beside two full evaluations).
TARGET_POINTS = 30

#: A run's first full evaluation comes only where this many light evaluations still fit beside it and the
#: closing one: the λ_max curve of a short run is not given up for a second full evaluation.
MIN_LIGHT_POINTS = 20

#: Share of the pacing allowance that light evaluations may use; full evaluations get the rest. Light ones draw
#: the curves (λ_max and the stability ratio at every evaluation); a full one costs 5–50 light ones.
LIGHT_SHARE = 0.75

#: Before a full evaluation has been measured its cost is guessed as this many light ones. Measured: 5–8 on
#: networks of tens of parameters (dense path), 20–25 at P = 2,410 (Krylov path, an inline loss).
FULL_COST_PRIOR = 20.0

#: Before figures have been drawn once their cost is guessed at this many seconds (importing matplotlib
#: and drawing three figures on 2 cores).
FIGURES_COST_PRIOR = 0.6

#: The automatic schedule keeps the closing figures' cost aside only while it is at most this share of the
#: run's projected allowance; otherwise the evaluations come first and figures are drawn if money is left.
FIGURES_MAX_SHARE = 0.25

#: Likewise the closing full evaluation: reserved only while it is at most this share of the projected
#: allowance; a full evaluation the whole run cannot pay for would starve the light ones and never happen.
CLOSING_MAX_SHARE = 0.5

#: The closing evaluation's reserve is its predicted cost times this: evaluations vary in cost by a fifth
#: from one to the next, and a reserve of exactly one would leave the closing full evaluation unaffordable
#: half the time on a run that spends its whole allowance.
CLOSING_MARGIN = 1.25


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
    full_guess : float or None
        A full evaluation's cost guessed by the probe before one is measured
        (:meth:`~torch_landscape.probe.LandscapeProbe.full_cost_guess`).
    one_offs : list of (float, float)
        (progress, seconds) of the one-off evaluations made during the run, each paid pro rata over the rest of
        it (the set-up's other costs are paid over the whole run).
    """

    max_overhead: float
    min_seconds: float = MIN_SECONDS
    light_share: float = LIGHT_SHARE
    spent: dict[str, float] = field(default_factory=lambda: {"setup": 0.0, "light": 0.0, "full": 0.0})
    cost: dict[str, float | None] = field(default_factory=lambda: {"light": None, "full": None, "figures": None})
    forfeited: dict[str, float] = field(default_factory=lambda: {"light": 0.0, "full": 0.0})
    one_offs: list[tuple[float, float]] = field(default_factory=list)
    cheapest_light: float = math.inf
    full_guess: float | None = None

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

    def record(
        self,
        tier: str,
        seconds: float,
        *,
        figures: float | None = None,
        one_off: bool = False,
        progress: float | None = None,
    ) -> None:
        """Count ``seconds`` against ``tier`` ("setup", "light" or "full") and remember the cost. ``one_off``: an
        evaluation outside the pacing (the run's first, its first full one), paid like the set-up, not from its
        tier's share, pro rata over what is left of the run from ``progress``."""
        self.spent["setup" if one_off else tier] += seconds
        if one_off and progress is not None and 0 < progress < 1:
            self.one_offs.append((progress, seconds))
        if tier != "setup":
            self.cost[tier] = seconds - (figures or 0.0)
        if tier == "light":
            self.cheapest_light = min(self.cheapest_light, seconds)
        if figures is not None:
            self.cost["figures"] = figures

    def guess_full(self, seconds: float | None) -> None:
        """Take the probe's guess of a full evaluation's cost (None: no guess), the least so far: a guess that
        went up and down would move the closing reserve, stalling the light evaluations."""
        if seconds is not None:
            self.full_guess = seconds if self.full_guess is None else min(self.full_guess, seconds)

    def predicted(self, tier: Tier) -> float:
        """The cost of the next ``tier`` evaluation: the last one measured, or a guess from the other (a full
        one from the cheapest light one, since the first light ones start their solver cold, or ``full_guess``
        where that is more)."""
        light, full = self.cost["light"], self.cost["full"]
        if tier == "light":
            return light if light is not None else (full / FULL_COST_PRIOR if full is not None else 0.0)
        if full is not None:
            return full
        return max(FULL_COST_PRIOR * (self.cheapest_light if light is not None else 0.0), self.full_guess or 0.0)

    def predicted_figures(self) -> float:
        figures = self.cost["figures"]
        return figures if figures is not None else FIGURES_COST_PRIOR

    def allowance(self, training_seconds: float, progress: float | None) -> float:
        """A(T, p) = max(r·T, p·min_seconds): what may have been spent by now (p None: length unknown)."""
        rate = self.max_overhead / (1.0 - self.max_overhead)
        floor = self.min_seconds * min(max(progress, 0.0), 1.0) if progress is not None else 0.0
        return max(rate * training_seconds, floor)

    def full_share(self, whole_run: float, closing_cost: float) -> float:
        """The share of the paced allowance for full evaluations during a run projected to allow ``whole_run``
        seconds: 1 − ``light_share`` if that pays for one beside the closing reserve and the set-up, else 0 (a
        share no full evaluation can be paid from would be lost: the light evaluations get it)."""
        share = 1.0 - self.light_share
        return share if share * (whole_run - closing_cost - self.spent["setup"]) >= self.predicted("full") else 0.0

    def due(
        self, tier: Tier, training_seconds: float, progress: float | None, closing_cost: float, full_share: float
    ) -> bool:
        """Whether the pacing allowance, less the closing evaluation's reserve, pays for one more ``tier``
        evaluation; full evaluations get ``full_share`` of it (:meth:`full_share`), light ones the rest."""
        # The closing evaluation's reserve and the one-off costs (set-up, the first evaluations) are paid pro rata
        # over the run (from when they were spent), so that the curves stay evenly spaced around them.
        paced = progress if progress is not None else 1.0
        later = self.one_offs if progress is not None else []  # a run of unknown length pays everything at once
        setup = (self.spent["setup"] - sum(seconds for _, seconds in later)) * paced
        setup += sum(seconds * max(paced - start, 0.0) / (1.0 - start) for start, seconds in later)
        available = self.allowance(training_seconds, progress) - closing_cost * paced - setup
        share = full_share if tier == "full" else 1.0 - full_share
        cost = self.predicted(tier)
        # The shares move as the costs are learnt: the tiers together never spend beyond what is available.
        joint = available - sum(self.spent[t] + self.forfeited[t] for t in ("light", "full"))
        credit = min(share * available - self.spent[tier] - self.forfeited[tier], joint)
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


#: A light evaluation's cost in gradients on the probe set (measured 8–14 from P = 33 to 2,410, dense or
#: warm-started Lanczos with 3–4 products), and its part that does not grow with the probe set.
LIGHT_GRADIENTS = 12.0
LIGHT_FIXED_SECONDS = 0.004

#: What a training framework adds to a step beyond its forward and backward (Lightning: about a millisecond):
#: a lower bound, so that the projected training time, and the probe set sized from it, err on the small side.
STEP_OVERHEAD_SECONDS = 1e-3


def affordable_probe_size(
    samples: int,
    gradient_seconds: float,
    *,
    max_overhead: float,
    total_steps: int | None,
    batch_size: int | None,
    minimum: int = 256,
) -> int:
    """The most probe samples (of ``samples``, whose gradient took ``gradient_seconds``) with which
    TARGET_POINTS light evaluations and two full ones (the run's first and its closing one) fit the budget a
    run is projected to have.

    The run's training time is projected as ``total_steps`` steps of a forward and backward on ``batch_size``
    samples (in float32, half the float64 probe gradient's cost per sample) plus STEP_OVERHEAD_SECONDS; its
    allowance is max(o/(1 − o)·T, MIN_SECONDS); it pays for TARGET_POINTS light evaluations out of
    LIGHT_SHARE of it, and two full ones of FULL_COST_PRIOR light ones each, each light one LIGHT_FIXED_SECONDS
    + LIGHT_GRADIENTS gradients, whose cost is proportional to the probe set. Never below ``minimum`` (or all
    the samples, if fewer).
    """
    per_sample = gradient_seconds / max(samples, 1)
    training = 0.0
    if total_steps and batch_size:
        training = total_steps * (per_sample * batch_size / 2 + STEP_OVERHEAD_SECONDS)
    allowance = max(max_overhead / (1.0 - max_overhead) * training, MIN_SECONDS)
    per_light = allowance / (TARGET_POINTS / LIGHT_SHARE + 2 * FULL_COST_PRIOR) - LIGHT_FIXED_SECONDS
    affordable = int(per_light / (LIGHT_GRADIENTS * per_sample)) if per_light > 0 and per_sample > 0 else samples
    return min(samples, max(affordable, minimum))
