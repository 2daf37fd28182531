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
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..monitoring.sinks import EvaluationCost, Sink
from .report import snapshot_report
from .tags import CONVEXITY, HESSIAN, MONITOR, PROBE, REDUNDANCY, scalars_to_log

if TYPE_CHECKING:
    from ..probe import LandscapeProbe
    from ..snapshot import LandscapeSnapshot

_H, _C, _R = HESSIAN, CONVEXITY, REDUNDANCY
OVERVIEW, CURVATURE, CRITICAL = "landscape 0: overview", "landscape 1: curvature", "landscape 2: critical point"
CONVEX, REDUNDANT, COST = "landscape 3: convexity", "landscape 4: redundancy", "landscape 5: monitor cost"

Series = tuple[str, str, str]


def _band(tag: str) -> Series:
    """A margin-chart series: the value with its error band (value ∓ bound, logged by :mod:`.tags`)."""
    return (tag, tag + "_lower", tag + "_upper")


def _raw(tag: str) -> Series:
    """A margin-chart series without a band. TensorBoard smooths line charts (default 0.6, which turns
    counts into fractions) but never margin charts: counts and eigenvalues are drawn as these."""
    return (tag, tag, tag)


#: (category, chart title saying how to read it, kind, series): "Multiline" charts take tags, "Margin"
#: charts (value, lower, upper) series. Each chart holds quantities of one scale.
CHARTS: tuple[tuple[str, str, str, tuple[Any, ...]], ...] = (
    (OVERVIEW, "probe loss L, log10", "Margin", (_raw(PROBE + "loss_log10"),)),
    (
        OVERVIEW,
        "gradient norm |grad L|, log10: very negative = close to a critical point",
        "Margin",
        (_raw(PROBE + "grad_norm_log10"),),
    ),
    (
        OVERVIEW,
        "sharpness lambda_max (band: its error bound) and 2/lr: gradient descent is unstable where lambda_max > 2/lr",
        "Margin",
        (_band(_H + "lambda_max"), _raw(_H + "eos_threshold")),
    ),
    (
        OVERVIEW,
        "lambda_min (band: its error bound) and the zero line: below 0 is a direction of descent, not a minimum",
        "Margin",
        (_band(_H + "lambda_min"), _raw(_H + "zero")),
    ),
    (
        OVERVIEW,
        "effective width vs width: below the width, some neurons are redundant",
        "Margin",
        (_raw(_R + "effective_width"), _raw(_R + "width")),
    ),
    (
        CURVATURE,
        "edge of stability lambda_max * lr / 2: above 1, gradient descent is unstable",
        "Multiline",
        (_H + "eos_ratio",),
    ),
    (CURVATURE, "trace of the Hessian: the sum of all curvatures", "Multiline", (_H + "trace",)),
    (
        CURVATURE,
        "condition number, log10: lambda_max over lambda_min (where H is certainly positive definite), "
        "_eff over the smallest positive eigenvalue",
        "Multiline",
        (_H + "cond_log10", _H + "cond_eff_log10"),
    ),
    (
        CURVATURE,
        "error bounds of lambda_max and lambda_min: how far each may be from the true eigenvalue",
        "Multiline",
        (_H + "lambda_max_error", _H + "lambda_min_error"),
    ),
    (
        CURVATURE,
        "eigen-solver converged to its tolerance (1) or stopped at its budget (0)",
        "Margin",
        (_raw(_H + "converged"),),
    ),
    (CURVATURE, "Hessian-vector products per evaluation", "Multiline", (_H + "num_hvp",)),
    (
        CRITICAL,
        "certainly negative eigenvalues (lambda + bound < 0): directions of descent, at any point",
        "Margin",
        (_raw(_H + "negative_count"),),
    ),
    (
        CRITICAL,
        "at a critical point? (1 = |grad L| is negligible at the curvature's scale)",
        "Margin",
        (_raw(_H + "critical"),),
    ),
    (
        CRITICAL,
        "Morse index and nullity, at critical points only (quotient: flat directions the symmetries do not explain)",
        "Margin",
        (_raw(_H + "morse_index"), _raw(_H + "nullity"), _raw(_H + "quotient_nullity")),
    ),
    (
        CRITICAL,
        "Newton step to a critical point over the parameter scale, log10: critical below -6 (float64)",
        "Multiline",
        (_H + "newton_ratio_log10",),
    ),
    (
        CRITICAL,
        "diverging (1): |theta| grows while L creeps down, no critical point at finite distance",
        "Margin",
        (_raw(_H + "diverging"),),
    ),
    (
        CRITICAL,
        "verdicts that contradict each other (the text report says which and why)",
        "Margin",
        (_raw(_H + "contradictions"),),
    ),
    (
        CRITICAL,
        "symmetry leak: curvature along the symmetry tangents (0 in exact arithmetic)",
        "Multiline",
        (_H + "sym_leak",),
    ),
    (
        CONVEX,
        "PL ratio |grad L|^2 / 2(L - L*): bounded away from 0 = linear convergence; falling toward 0, PL fails",
        "Multiline",
        (_C + "pl_ratio", _C + "pl_ratio_running_min", _C + "pl_ratio_window_min"),
    ),
    (
        CONVEX,
        "PL ratio at L* and at L* lowered by one more margin: far apart, the ratio is not resolved",
        "Multiline",
        (_C + "pl_ratio", _C + "pl_ratio_lower_loss_star"),
    ),
    (
        CONVEX,
        "probe loss, the L* estimate behind the PL ratio, and Aitken's extrapolation of L*",
        "Multiline",
        (PROBE + "loss", _C + "loss_star", _C + "loss_star_aitken"),
    ),
    (
        CONVEX,
        "per-step contraction (L_t - L*)/(L_t-1 - L*): below 1 is linear convergence",
        "Multiline",
        (_C + "contraction",),
    ),
    (
        CONVEX,
        "Lojasiewicz slope of log|grad L|^2 against log(L - L*): 1 under PL, above 1 at a degenerate minimum",
        "Multiline",
        (_C + "lojasiewicz_slope",),
    ),
    (
        CONVEX,
        "one-point convexity <grad L, theta - theta*> / |theta - theta*|^2: above 0 the gradient points "
        "toward the reference",
        "Multiline",
        (_C + "one_point", _C + "one_point_running_min"),
    ),
    (CONVEX, "cosine between -grad L and the direction to the reference", "Multiline", (_C + "one_point_cosine",)),
    (CONVEX, "distance to the (neuron-aligned) reference, log10", "Multiline", (_C + "distance_to_reference_log10",)),
    (
        CONVEX,
        "neurons matched to another reference neuron than at the previous evaluation",
        "Margin",
        (_raw(_C + "assignment_changes"),),
    ),
    (
        REDUNDANT,
        "effective width (on all inputs, and on the data only) vs width",
        "Margin",
        (_raw(_R + "effective_width"), _raw(_R + "effective_width_on_data"), _raw(_R + "width")),
    ),
    (
        REDUNDANT,
        "distance to the nearest redundant network, log10 (very negative = redundant)",
        "Multiline",
        (_R + "score_log10",),
    ),
    (REDUNDANT, "verified merges (each removes a neuron)", "Margin", (_raw(_R + "claims"),)),
    (COST, "seconds per evaluation", "Multiline", (MONITOR + "seconds",)),
    (COST, "share of the wall time spent monitoring", "Multiline", (MONITOR + "overhead",)),
)

READING = (
    "**Overview first** (Custom Scalars tab): loss and gradient norm in log10, the sharpness lambda_max against "
    "2/lr (plain SGD only), lambda_min against the zero line, and the effective width.",
    "**lambda_max** is logged at every evaluation with its error bound (margin chart: value +- bound); "
    "**lambda_min** where it is computed (every evaluation on small networks, full ones otherwise). A lambda_min "
    "whose band excludes 0 has a certain sign; **negative_count** counts eigenvalues certainly below 0.",
    "**morse_index** and **nullity** are logged only at critical points (critical = 1), where they mean "
    "descent and flat directions; the text report names the kind: not_critical, strict_saddle, "
    "nondegenerate_min, min_mod_symmetry or degenerate.",
    "The **PL ratio** bounded away from 0 means linear convergence; **one_point** > 0 means -grad L points "
    "toward the reference. **effective_width** below the width means redundant neurons; **score** is the "
    "distance to the nearest redundant network.",
    "Eigenvalues and counts (index, nullity, widths, claims) are drawn as margin charts in the Custom "
    "Scalars tab, which TensorBoard never smooths. In the Scalars tab set smoothing to 0: its default 0.6 "
    "blends neighbouring evaluations (a count of 6 and 0 reads 3.3).",
)

_MARGIN_VALUES = {series[0] for _, _, kind, charts in CHARTS if kind == "Margin" for series in charts}


def custom_scalars_layout(tags: Iterable[str]) -> Any:
    """The custom-scalars layout (a ``layout_pb2.Layout``) of the charts that ``tags`` fill.

    A Multiline chart appears when any of its tags was logged and lists them all as anchored regexes (so
    that runs with other tags get the identical chart: TensorBoard merges the layouts of all runs and would
    show differing charts of one title twice); a Margin chart when its first series was logged, with the
    series that were (exact tags)."""
    from tensorboard.plugins.custom_scalar import layout_pb2

    tags = set(tags)
    categories: dict[str, list[Any]] = {}
    for index in _fillable(tags):
        category, title, kind, series = CHARTS[index]
        if kind == "Multiline":
            content = {"multiline": layout_pb2.MultilineChartContent(tag=[re.escape(tag) + "$" for tag in series])}
        else:
            content = {
                "margin": layout_pb2.MarginChartContent(
                    series=[
                        layout_pb2.MarginChartContent.Series(value=value, lower=lower, upper=upper)
                        for value, lower, upper in series
                        if value in tags
                    ]
                )
            }
        categories.setdefault(category, []).append(layout_pb2.Chart(title=title, **content))
    # TensorBoard draws a category's line charts first, then its margin charts in reverse order: list them
    # so that they appear in the order of CHARTS.
    ordered = {
        title: [c for c in charts if c.HasField("multiline")] + [c for c in charts if c.HasField("margin")][::-1]
        for title, charts in categories.items()
    }
    return layout_pb2.Layout(
        category=[layout_pb2.Category(title=title, chart=charts) for title, charts in ordered.items()]
    )


def _fillable(tags: set[str]) -> tuple[int, ...]:
    return tuple(
        index
        for index, (_, _, kind, series) in enumerate(CHARTS)
        if (series[0][0] in tags if kind == "Margin" else not tags.isdisjoint(series))
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
    with them, the spectrum histogram, the text report, the setup text, the verdict and the figures.

    Parameters
    ----------
    writer
        A ``torch.utils.tensorboard.SummaryWriter`` (or Lightning's ``TensorBoardLogger.experiment``).
    """

    draws_figures = True

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self._tags: set[str] = set()
        self._charts: tuple[Any, ...] | None = None
        self._started = False

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
        """``add_scalar`` for each value (finite ones, see :func:`~.tags.finite`), and the layout brought up to date."""
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        self._update_layout(scalars)

    def draw(self, snapshot: LandscapeSnapshot, trajectory: Sequence[tuple[int, float, float]]) -> None:
        write_figures(self.writer, snapshot, trajectory)

    def event(self, step: int, text: str) -> None:
        self.writer.add_text("landscape/events", text, step)

    def close(self, verdict: str, step: int) -> None:
        self.writer.add_text("landscape/verdict", verdict, step)
        self.writer.flush()

    def log(self, snapshot: LandscapeSnapshot, probe: LandscapeProbe | None = None, *, figures: bool = True) -> None:
        """A snapshot taken by hand (outside a session): the setup text once (``probe.describe()``), scalars,
        histogram and text, and with ``figures`` the figures of full snapshots (trajectories from ``probe``)."""
        self.start(probe.describe() if probe is not None else "", ())
        self.write(snapshot, None, EvaluationCost(snapshot.seconds, math.nan))
        if figures and snapshot.full:
            self.draw(snapshot, probe.trajectory if probe is not None else ())

    def _update_layout(self, tags: Iterable[str]) -> None:
        """Write the layout again when the tags received so far fill a new chart (TensorBoard shows the last)."""
        self._tags.update(tags)
        charts = (_fillable(self._tags), frozenset(self._tags & _MARGIN_VALUES))
        if charts != self._charts:
            _write_layout(self.writer, custom_scalars_layout(self._tags))
            self._charts = charts
