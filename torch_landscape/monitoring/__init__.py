"""Monitoring without a framework: a :class:`MonitoringSession` runs a landscape probe on a budget from any
training loop (:mod:`.pacer` decides when, :mod:`.budget` keeps the share of the wall time), keeps the run's
history and verdict (:mod:`.verdict`), and reports to :class:`Sink` objects (TensorBoard and the console in
:mod:`torch_landscape.writers`)."""

from .budget import OverheadBudget
from .pacer import Ledger, Pacer, Schedule
from .session import MonitoringSession
from .sinks import EvaluationCost, Sink
from .verdict import run_verdict

__all__ = [
    "EvaluationCost",
    "Ledger",
    "MonitoringSession",
    "OverheadBudget",
    "Pacer",
    "Schedule",
    "Sink",
    "run_verdict",
]
