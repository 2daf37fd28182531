"""Writers: snapshots turned into what people read — TensorBoard tags, the custom-scalars layout,
histograms, figures, the Markdown report and the console verdict. The core never imports this package."""

from .report import console_line, run_verdict, snapshot_report
from .tags import snapshot_scalars
from .tensorboard import custom_scalars_layout, log_snapshot, write_figures, write_scalars, write_setup, write_snapshot

__all__ = [
    "console_line",
    "custom_scalars_layout",
    "log_snapshot",
    "run_verdict",
    "snapshot_report",
    "snapshot_scalars",
    "write_figures",
    "write_scalars",
    "write_setup",
    "write_snapshot",
]
