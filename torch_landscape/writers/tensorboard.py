"""Snapshots to TensorBoard: scalars, the custom-scalars layout, the spectrum histogram, text and figures.

:class:`TensorBoardSink` wraps a ``torch.utils.tensorboard.SummaryWriter`` (Lightning's
``TensorBoardLogger.experiment`` is one) and holds what it has written. Nothing here imports Lightning;
matplotlib only when figures are drawn.

The custom-scalars layout is built from the tags a writer has actually received, and written again when a
new chart becomes fillable: TensorBoard shows the latest layout of a run, so no chart stays empty. Charts
are grouped by question, overview first; each holds quantities of one scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..monitoring.sinks import EvaluationCost, Sink
from .report import snapshot_report
from .tags import CONVEXITY, HESSIAN, MONITOR, PROBE, REDUNDANCY, STABILITY, scalars_to_log

if TYPE_CHECKING:
    from ..probe import LandscapeProbe
    from ..snapshot import LandscapeSnapshot

_H, _C, _R, _S = HESSIAN, CONVEXITY, REDUNDANCY, STABILITY
OVERVIEW, CURVATURE, CRITICAL = "landscape 0: overview", "landscape 1: curvature", "landscape 2: critical point"
CONVEX, REDUNDANT, COST = "landscape 3: convexity", "landscape 4: redundancy", "landscape 5: monitor cost"

Series = tuple[str, str, str]


def _band(tag: str) -> Series:
    """A series drawn with its error band (value ∓ bound, logged by :mod:`.tags`)."""
    return (tag, tag + "_lower", tag + "_upper")


def _line(tag: str) -> Series:
    """A series without a band."""
    return (tag, tag, tag)


#: (category, chart title saying how to read it, series). Every chart is a custom-scalars *margin* chart,
#: which TensorBoard never smooths (its line charts would blend a count of 6 and 0 into 3.3); each holds one
#: quantity, so that one colour per run never leaves two series to tell apart. The series after the first are
#: reference lines (2/lr, zero, the width, 1, the budget). A chart appears once its first series has taken two
#: different values; what stays constant is said in the text ``landscape/not_charted`` instead.
CHARTS: tuple[tuple[str, str, tuple[Series, ...]], ...] = (
    (OVERVIEW, "probe loss L, log10", (_line(PROBE + "loss_log10"),)),
    (
        OVERVIEW,
        "gradient norm |grad L|, log10: lower = closer to a critical point",
        (_line(PROBE + "grad_norm_log10"),),
    ),
    (
        OVERVIEW,
        "sharpness lambda_max (band: its error bound) against 2/lr: above the line, gradient descent at this lr "
        "is unstable",
        (_band(_H + "lambda_max"), _line(_H + "eos_threshold")),
    ),
    (
        OVERVIEW,
        "stability ratio of the optimizer in use (band: its error bound) against 1: above 1 it is unstable along "
        "the top curvature direction (edge of stability)",
        (_band(_S + "ratio"), _line(_S + "limit")),
    ),
    (
        OVERVIEW,
        "lambda_min (band: its error bound) against zero: below zero is a direction of descent, not a minimum",
        (_band(_H + "lambda_min"), _line(_H + "zero")),
    ),
    (
        OVERVIEW,
        "effective width against the width: below it, some neurons are redundant",
        (_line(_R + "effective_width"), _line(_R + "width")),
    ),
    (
        CURVATURE,
        "sharpness the optimizer sees (adaptive methods: lambda_max of the preconditioned Hessian) against its "
        "threshold ((2 + 2 beta)/lr with momentum, 38/lr for Adam with beta1 = 0.9)",
        (_band(_S + "sharpness"), _line(_S + "threshold")),
    ),
    (CURVATURE, "trace of the Hessian: the sum of all curvatures", (_line(_H + "trace"),)),
    (
        CURVATURE,
        "condition number lambda_max / lambda_min, log10 (where H is certainly positive definite)",
        (_line(_H + "cond_log10"),),
    ),
    (
        CURVATURE,
        "effective condition number: lambda_max over the smallest positive eigenvalue, log10",
        (_line(_H + "cond_eff_log10"),),
    ),
    (
        CURVATURE,
        "eigen-solver converged to its tolerance (1) or stopped at its budget (0)",
        (_line(_H + "converged"),),
    ),
    (CURVATURE, "Hessian-vector products per evaluation", (_line(_H + "num_hvp"),)),
    (
        CRITICAL,
        "certainly negative eigenvalues (lambda + bound < 0): directions of descent, at any point",
        (_line(_H + "negative_count"),),
    ),
    (
        CRITICAL,
        "at a critical point (1) or not (0): |grad L| negligible at the curvature's scale",
        (_line(_H + "critical"),),
    ),
    (CRITICAL, "Morse index at critical points: directions of descent", (_line(_H + "morse_index"),)),
    (CRITICAL, "nullity at critical points: flat directions", (_line(_H + "nullity"),)),
    (
        CRITICAL,
        "quotient nullity: flat directions that the network's symmetries do not explain",
        (_line(_H + "quotient_nullity"),),
    ),
    (
        CRITICAL,
        "Newton step to a critical point over the parameter scale, log10: critical below -6 (float64)",
        (_line(_H + "newton_ratio_log10"),),
    ),
    (
        CRITICAL,
        "diverging (1): |theta| grows while L creeps down, no critical point at finite distance",
        (_line(_H + "diverging"),),
    ),
    (
        CRITICAL,
        "verdicts that contradict each other (the text report says which and why)",
        (_line(_H + "contradictions"),),
    ),
    (
        CONVEX,
        "PL ratio |grad L|^2 / 2(L - L*), log10: bounded below = linear convergence; falling without bound, PL fails",
        (_line(_C + "pl_ratio_log10"),),
    ),
    (
        CONVEX,
        "PL ratio resolution: the ratio with L* lowered by one margin over the ratio (near 1 = resolved)",
        (_line(_C + "pl_resolution"),),
    ),
    (
        CONVEX,
        "gap to L*, log10: L - L* (L* given, or the running minimum less a margin)",
        (_line(_C + "loss_gap_log10"),),
    ),
    (
        CONVEX,
        "per-step contraction of the gap (L_t - L*)/(L_t-1 - L*): below 1 = linear convergence",
        (_line(_C + "contraction"),),
    ),
    (
        CONVEX,
        "Lojasiewicz slope of log|grad L|^2 against log(L - L*): 1 under PL, above 1 at a degenerate minimum",
        (_line(_C + "lojasiewicz_slope"),),
    ),
    (
        CONVEX,
        "one-point convexity <grad L, theta - theta*> / |theta - theta*|^2: above 0, -grad L points toward the "
        "reference",
        (_line(_C + "one_point"),),
    ),
    (CONVEX, "cosine between -grad L and the direction to the reference", (_line(_C + "one_point_cosine"),)),
    (CONVEX, "distance to the (neuron-aligned) reference, log10", (_line(_C + "distance_to_reference_log10"),)),
    (
        CONVEX,
        "neurons matched to another reference neuron than at the previous evaluation",
        (_line(_C + "assignment_changes"),),
    ),
    (
        REDUNDANT,
        "effective width on the data only (data-level merges too) against the width",
        (_line(_R + "effective_width_on_data"), _line(_R + "width")),
    ),
    (
        REDUNDANT,
        "distance to the nearest redundant network, log10 (very negative = redundant)",
        (_line(_R + "score_log10"),),
    ),
    (REDUNDANT, "verified merges (each removes a neuron)", (_line(_R + "claims"),)),
    (COST, "seconds per evaluation", (_line(MONITOR + "seconds"),)),
    (
        COST,
        "share of the wall time spent monitoring, against max_overhead",
        (_line(MONITOR + "overhead"), _line(MONITOR + "max_overhead")),
    ),
)

READING = (
    "**Overview first** (Custom Scalars tab): loss and gradient norm in log10, the sharpness lambda_max against "
    "2/lr (plain SGD), lambda_min against zero, and the effective width against the width.",
    "**lambda_max** is logged at every evaluation with its error bound (the band); **lambda_min** where it is "
    "computed (every evaluation on small networks, full ones otherwise). A lambda_min whose band excludes 0 has a "
    "certain sign; **negative_count** counts eigenvalues certainly below 0.",
    "**morse_index** and **nullity** are logged only at critical points (critical = 1), where they mean descent "
    "and flat directions; the text report names the kind: not_critical, strict_saddle, nondegenerate_min, "
    "min_mod_symmetry or degenerate.",
    "The **PL ratio** bounded away from 0 means linear convergence, when it is resolved (resolution near 1). "
    "**one_point** > 0 means -grad L points toward the reference. **effective_width** below the width means "
    "redundant neurons; **score** is the distance to the nearest redundant network.",
    "A chart appears once its quantity has changed; quantities that stayed the same are listed in the text "
    "**landscape/not_charted**. Charts are never smoothed. TensorBoard's *Ignore outliers in chart scaling* "
    "(left panel, on by default) can cut off the first or last point of a sparse curve: untick it to see them.",
    "Your own metrics (train_loss, …) are in the Scalars and Time Series tabs, beside the landscape/ group.",
)


def custom_scalars_layout(chartable: Iterable[str], logged: Iterable[str] | None = None) -> Any:
    """The custom-scalars layout (a ``layout_pb2.Layout``) of the charts whose first series is in ``chartable``,
    each with those of its series that were ``logged`` (default: the chartable tags), in the order of
    :data:`CHARTS`."""
    from tensorboard.plugins.custom_scalar import layout_pb2

    chartable = set(chartable)
    logged = chartable if logged is None else set(logged) | chartable
    categories: dict[str, list[Any]] = {}
    for category, title, series in CHARTS:
        if series[0][0] not in chartable:
            continue
        content = layout_pb2.MarginChartContent(
            series=[
                layout_pb2.MarginChartContent.Series(value=value, lower=lower, upper=upper)
                for value, lower, upper in series
                if {value, lower, upper} <= logged
            ]
        )
        categories.setdefault(category, []).append(layout_pb2.Chart(title=title, margin=content))
    # TensorBoard draws a category's margin charts in reverse order: list them reversed so that they appear in
    # the order of CHARTS.
    return layout_pb2.Layout(
        category=[layout_pb2.Category(title=title, chart=charts[::-1]) for title, charts in categories.items()]
    )


def _write_layout(writer: Any, layout: Any) -> None:
    """What ``SummaryWriter.add_custom_scalars`` writes, for a layout proto (its dict form allows one
    series per margin chart)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="custom_scalars"))
    tensor = TensorProto(dtype="DT_STRING", string_val=[layout.SerializeToString()], tensor_shape=TensorShapeProto())
    summary = Summary(value=[Summary.Value(tag="custom_scalars__config__", tensor=tensor, metadata=metadata)])
    writer._get_file_writer().add_summary(summary)


def write_spectrum_histogram(writer: Any, snapshot: LandscapeSnapshot) -> None:
    """The spectral density as histogram ``landscape/hessian/spectrum``, in eigenvalue counts (expected
    counts for a stochastic Lanczos quadrature)."""
    density, size = snapshot.density, snapshot.num_parameters
    if density is None:
        raise ValueError("write_spectrum_histogram needs a snapshot with a spectral density (snapshot.density).")
    fractions, edges = density.histogram()
    nodes, weights = density.nodes, density.weights * size
    writer.add_histogram_raw(
        HESSIAN + "spectrum",
        min=float(nodes.min()),
        max=float(nodes.max()),
        num=size,
        sum=float((weights * nodes).sum()),
        sum_squares=float((weights * nodes**2).sum()),
        bucket_limits=edges[1:],
        bucket_counts=fractions * size,
        global_step=snapshot.step,
    )


def setup_text(description: str, skipped: Sequence[str] = ()) -> str:
    """The text ``landscape/setup``: what is measured and on what, what this run skips, how to read the charts."""
    parts = [description] if description else []
    if skipped:
        parts.append("Not logged here:\n\n" + "\n".join(f"- {item}" for item in skipped))
    parts.append("How to read the charts:\n\n" + "\n".join(f"- {text}" for text in READING))
    return "\n\n".join(parts)


def write_snapshot(writer: Any, snapshot: LandscapeSnapshot) -> None:
    """Everything of a snapshot but the scalars and figures: spectrum histogram, text report, errors."""
    if snapshot.density is not None:
        write_spectrum_histogram(writer, snapshot)
    if snapshot.full:
        writer.add_text("landscape/report", snapshot_report(snapshot), snapshot.step)
    if snapshot.errors:
        writer.add_text("landscape/errors", "\n".join(f"- {error}" for error in snapshot.errors), snapshot.step)


def write_figures(writer: Any, snapshot: LandscapeSnapshot, trajectory: Sequence[tuple[int, float, float]]) -> None:
    """The figures a snapshot supports: spectral density, eigenvalue trajectories (up to this snapshot),
    neuron similarity heat map, and the loss along the directions that matter (lines and a plane)."""
    from . import figures as plots

    step = snapshot.step
    drawn = []
    if snapshot.density is not None:
        drawn.append(("spectral_density", plots.spectral_density_figure(snapshot.density, step)))
    if snapshot.spectrum is not None and trajectory:
        drawn.append(
            ("eigenvalue_trajectories", plots.eigenvalue_trajectory_figure(trajectory, snapshot.learning_rate))
        )
    if snapshot.redundancy is not None:
        drawn.append(("neuron_similarity", plots.similarity_figure(snapshot.redundancy, step)))
    if snapshot.slices is not None:
        drawn.append(("loss_slices", plots.slice_1d_figure(snapshot.slices.lines, step)))
        drawn.append(("loss_plane", plots.slice_2d_figure(snapshot.slices.plane, step)))
    for name, figure in drawn:
        writer.add_image(f"landscape/figures/{name}", plots.to_image(figure), step, dataformats="HWC")


class TensorBoardSink(Sink):
    """A monitoring session's results in a ``SummaryWriter``: scalars and the custom-scalars layout grown
    with them, the spectrum histogram, the text report, the setup text, events, the verdict and the figures.

    It keeps, per tag, the first value and whether it has changed: a chart appears in the layout once its
    quantity has taken two different values (the layout is written again then; TensorBoard shows the last one
    a run wrote), and at the end of the run the text ``landscape/not_charted`` lists what stayed constant.

    Parameters
    ----------
    writer
        A ``torch.utils.tensorboard.SummaryWriter`` (or Lightning's ``TensorBoardLogger.experiment``).
    """

    draws_figures = True

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self._first: dict[str, float] = {}  # the first value of every tag written
        self._counts: dict[str, int] = {}
        self._varying: set[str] = set()
        self._charts: tuple[Any, ...] | None = None
        self._started = False
        self._drew = False
        self._undrawn = ""  # why figures were not drawn, as the session's notes say

    def start(self, description: str, skipped: Sequence[str]) -> None:
        if not self._started:
            self.writer.add_text("landscape/setup", setup_text(description, skipped), 0)
            self._started = True

    def write(
        self, snapshot: LandscapeSnapshot, previous: LandscapeSnapshot | None = None, cost: EvaluationCost | None = None
    ) -> None:
        self.scalars(scalars_to_log(snapshot, previous, cost), snapshot.step)
        write_snapshot(self.writer, snapshot)

    def scalars(self, scalars: dict[str, float], step: int) -> None:
        """``add_scalar`` for each value, and the layout brought up to date."""
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
            first = self._first.setdefault(tag, value)
            self._counts[tag] = self._counts.get(tag, 0) + 1
            if value != first:
                self._varying.add(tag)
        self._update_layout()

    def draw(self, snapshot: LandscapeSnapshot, trajectory: Sequence[tuple[int, float, float]]) -> None:
        write_figures(self.writer, snapshot, trajectory)
        self._drew = True

    def event(self, step: int, text: str) -> None:
        self.writer.add_text("landscape/events", text, step)

    def note(self, text: str) -> None:
        if text.startswith(("figures were not drawn", "the closing full evaluation was skipped")):
            self._undrawn = text

    def close(self, verdict: str, step: int) -> None:
        self.writer.add_text("landscape/verdict", verdict, step)
        if not self._drew:  # the Images tab says why it is empty
            from . import figures as plots

            reason = self._undrawn or "no figures were drawn in this run: figures=False, or no full evaluation"
            image = plots.to_image(plots.placeholder_figure(reason))
            self.writer.add_image("landscape/figures/not_drawn", image, step, dataformats="HWC")
        constant = self.not_charted()
        if constant:
            lines = [f"- {title}: **{value:.6g}** at all {count} evaluations" for title, value, count in constant]
            text = "These stayed the same over the run, so they have no chart:\n\n" + "\n".join(lines)
            self.writer.add_text("landscape/not_charted", text, step)
        self.writer.flush()

    def not_charted(self) -> list[tuple[str, float, int]]:
        """(chart title, value, evaluations) of every chart whose quantity was logged but never changed."""
        return [
            (title, self._first[series[0][0]], self._counts[series[0][0]])
            for _, title, series in CHARTS
            if series[0][0] in self._first and series[0][0] not in self._varying
        ]

    def log(self, snapshot: LandscapeSnapshot, probe: LandscapeProbe | None = None, *, figures: bool = True) -> None:
        """A snapshot taken by hand (outside a session): the setup text once (``probe.describe()``), scalars,
        histogram and text, and with ``figures`` the figures of full snapshots (trajectories from ``probe``)."""
        self.start(probe.describe() if probe is not None else "", ())
        self.write(snapshot, None, EvaluationCost(snapshot.seconds, math.nan))
        if figures and snapshot.full:
            self.draw(snapshot, probe.trajectory if probe is not None else ())

    def _update_layout(self) -> None:
        """Write the layout again when a new chart, or a new series of one, can be drawn. Never an empty one:
        TensorBoard shows a run's latest layout, and a second writer on the run's folder (a snapshot logged by
        hand after training) would blank the training's."""
        chartable = {series[0][0] for _, _, series in CHARTS if series[0][0] in self._varying}
        drawn = {tag for _, _, series in CHARTS if series[0][0] in chartable for s in series for tag in s}
        key = (frozenset(chartable), frozenset(drawn & self._first.keys()))
        if chartable and key != self._charts:
            _write_layout(self.writer, custom_scalars_layout(chartable, self._first))
            self._charts = key
