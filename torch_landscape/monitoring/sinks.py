"""Where a monitoring session sends what it measured: the :class:`Sink` interface.

The session knows no framework and no file format; a sink turns its calls into TensorBoard events
(:class:`~torch_landscape.writers.TensorBoardSink`), console lines
(:class:`~torch_landscape.writers.ConsoleSink`), a logger's metrics, or anything else. Every method has a
do-nothing default, so a sink implements only what it shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..snapshot import LandscapeSnapshot


@dataclass(frozen=True)
class EvaluationCost:
    """What one evaluation cost.

    Attributes
    ----------
    seconds : float
        Wall time of the evaluation, writing included up to the moment it is reported.
    overhead : float
        The monitors' share of the run's wall time so far, this evaluation included.
    limit : float
        The share they may take (``max_overhead``); NaN for a fixed schedule.
    """

    seconds: float
    overhead: float
    limit: float = math.nan


class Sink:
    """Receives a monitoring session's results. Subclasses override what they show."""

    #: Whether :meth:`draw` shows figures (the session budgets figures only for a sink that draws).
    draws_figures: bool = False

    def start(self, description: str, skipped: Sequence[str]) -> None:
        """Once, at the first evaluation: what is measured and on what, and what this run cannot show."""

    def write(self, snapshot: LandscapeSnapshot, previous: LandscapeSnapshot | None, cost: EvaluationCost) -> None:
        """An evaluation. ``previous`` is the light snapshot of the same step that ``snapshot`` completes (its
        values were written already), else None."""

    def draw(self, snapshot: LandscapeSnapshot, trajectory: Sequence[tuple[int, float, float]]) -> None:
        """The figures of a full snapshot; ``trajectory`` holds (step, λ_min, λ_max) up to it."""

    def note(self, text: str) -> None:
        """Something the schedule scaled down, or a warning worth showing once."""

    def event(self, step: int, text: str) -> None:
        """Something that happened at ``step`` and should be heard of at once (divergence, the stability
        threshold crossed)."""

    def close(self, verdict: str, step: int) -> None:
        """The end of the run, with its verdict in words."""
