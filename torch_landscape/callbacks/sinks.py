"""Where a Lightning monitor's results go: every logger gets the scalars (one row per evaluation), the
trainer's ``callback_metrics`` too (for ModelCheckpoint and EarlyStopping), and a TensorBoard logger the rest
through one :class:`~torch_landscape.writers.TensorBoardSink` shared by the monitors of a trainer, as their
overhead ledger is."""

from __future__ import annotations

from typing import Any

import torch

from ..monitoring import Ledger, MonitoringSession, Sink
from ..monitoring.sinks import EvaluationCost
from ..snapshot import LandscapeSnapshot
from ..writers import TensorBoardSink, scalars_to_log


def _renamed(scalars: dict[str, float], name: str | None) -> dict[str, float]:
    """A named monitor's tags in a shared logger: ``landscape/<name>/...``."""
    if name is None:
        return scalars
    return {tag.replace("landscape/", f"landscape/{name}/", 1): value for tag, value in scalars.items()}


class LoggerSink(Sink):
    """Scalars to a Lightning logger that is not TensorBoard (CSV, MLflow, W&B, …), one row per evaluation."""

    def __init__(self, logger: Any, name: str | None) -> None:
        self.logger, self.name = logger, name

    def write(self, snapshot: LandscapeSnapshot, previous: LandscapeSnapshot | None, cost: EvaluationCost) -> None:
        self.logger.log_metrics(_renamed(scalars_to_log(snapshot, previous, cost), self.name), step=snapshot.step)


class CallbackMetrics(Sink):
    """Scalars into ``trainer.callback_metrics``, where ModelCheckpoint and EarlyStopping can read them."""

    def __init__(self, trainer: Any, name: str | None) -> None:
        self.trainer, self.name = trainer, name

    def write(self, snapshot: LandscapeSnapshot, previous: LandscapeSnapshot | None, cost: EvaluationCost) -> None:
        scalars = _renamed(scalars_to_log(snapshot, previous, cost), self.name)
        self.trainer.callback_metrics.update({tag: torch.tensor(value) for tag, value in scalars.items()})


def tensorboard_sink(trainer: Any, writer: Any) -> TensorBoardSink:
    """The sink of ``writer``, shared by the monitors of one trainer: one custom-scalars layout grows with the
    tags of all of them (TensorBoard shows the last layout a run wrote)."""
    for callback in trainer.callbacks:
        session = getattr(callback, "session", None)
        if isinstance(session, MonitoringSession):
            for sink in session.sinks:
                if isinstance(sink, TensorBoardSink) and sink.writer is writer:
                    return sink
    return TensorBoardSink(writer)


def shared_ledger(trainer: Any) -> Ledger:
    """The ledger of the other monitors of ``trainer``, or a new one: each then logs the share of the wall time
    all of them spent (one ``landscape/monitor/overhead``, not one per monitor that overwrite each other)."""
    for callback in trainer.callbacks:
        session = getattr(callback, "session", None)
        if isinstance(session, MonitoringSession):
            return session.pacer.ledger
    return Ledger()
