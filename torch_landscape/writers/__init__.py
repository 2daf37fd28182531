"""Writers: snapshots turned into what people read — TensorBoard tags, the custom-scalars layout,
histograms, figures, the Markdown report and the console — and a run's history as rows, a DataFrame or
JSON. :class:`TensorBoardSink` and :class:`ConsoleSink` are the sinks of a
:class:`~torch_landscape.monitoring.MonitoringSession`. The core never imports this package."""

from ..monitoring.verdict import run_verdict
from .export import history_frame, history_json, history_rows, snapshot_words, write_history_json
from .report import ConsoleSink, console_line, snapshot_report
from .tags import scalars_to_log, snapshot_scalars
from .tensorboard import TensorBoardSink, custom_scalars_layout, write_figures, write_snapshot

__all__ = [
    "ConsoleSink",
    "TensorBoardSink",
    "console_line",
    "custom_scalars_layout",
    "history_frame",
    "history_json",
    "history_rows",
    "run_verdict",
    "scalars_to_log",
    "snapshot_report",
    "snapshot_scalars",
    "snapshot_words",
    "write_figures",
    "write_history_json",
    "write_snapshot",
]
