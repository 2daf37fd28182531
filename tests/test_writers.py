"""The writers: what TensorBoard reads back is the snapshot; the layout holds only charts the run fills,
with margin charts for the eigenvalues; words and numbers agree; the heat map marks the verified merges."""

import copy
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from helpers import regression_data, shallow, train
from torch_landscape.monitoring.sinks import EvaluationCost
from torch_landscape.probe import LandscapeProbe
from torch_landscape.redundancy import neuron_redundancy
from torch_landscape.snapshot import LandscapeSnapshot
from torch_landscape.writers import (
    ConsoleSink,
    TensorBoardSink,
    run_verdict,
    snapshot_report,
    snapshot_scalars,
)
from torch_landscape.writers.figures import marked_neurons, similarity_figure
from torch_landscape.writers.tensorboard import CHARTS

LOSS = nn.MSELoss()


@pytest.fixture(scope="module")
def setting():
    data = regression_data(96, 3)
    teacher = shallow(3, 2, nn.Tanh(), seed=5)
    model = train(shallow(3, 5, nn.Tanh()), data, steps=60)
    return model, teacher, data


def read(directory):
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0, "images": 0, "histograms": 0})
    events.Reload()
    return events


def layout_of(events):
    """The last custom-scalars layout written (the one TensorBoard shows)."""
    layout = layout_pb2.Layout()
    layout.ParseFromString(events.Tensors("custom_scalars__config__")[-1].tensor_proto.string_val[0])
    return layout


def test_plain_loop_log_writes_what_tensorboard_reads_back(setting, tmp_path):
    model, teacher, data = setting
    probe = LandscapeProbe(model, LOSS, data, reference=teacher)
    writer = SummaryWriter(tmp_path)
    snapshots = [probe.snapshot(step, full=step == 4, learning_rate=0.1) for step in (0, 4)]
    sink = TensorBoardSink(writer)
    for snapshot in snapshots:
        sink.log(snapshot, probe)
    writer.close()
    events = read(tmp_path)
    tags = events.Tags()
    for tag, value in snapshot_scalars(snapshots[1]).items():
        if not math.isfinite(value):  # NaN would plot as a marker that looks like data: never written
            assert all(e.step != 4 for e in events.Scalars(tag)) if tag in tags["scalars"] else True
            continue
        logged = events.Scalars(tag)[-1]
        assert logged.step == 4
        assert logged.value == pytest.approx(value, rel=1e-6)  # TensorBoard stores float32
    assert [e.step for e in events.Scalars("landscape/probe/loss")] == [0, 4]
    assert [e.step for e in events.Scalars("landscape/hessian/lambda_max")] == [0, 4]  # light ones too
    histogram = events.Histograms("landscape/hessian/spectrum")[0].histogram_value
    assert histogram.num == sum(p.numel() for p in model.parameters())
    assert {"landscape/report/text_summary", "landscape/setup/text_summary"} <= set(tags["tensors"])
    assert {
        "landscape/figures/spectral_density",
        "landscape/figures/eigenvalue_trajectories",
        "landscape/figures/neuron_similarity",
        "landscape/figures/loss_slices",
        "landscape/figures/loss_plane",
    } <= set(tags["images"])


def test_a_snapshot_logged_after_training_by_another_writer_keeps_the_runs_layout(setting, tmp_path):
    """The demo's pattern: training logged by one writer, then a last snapshot by hand through a second
    writer on the same folder. TensorBoard shows the run's latest layout: the second writer, whose single
    snapshot changed nothing, must not write an empty one over the training's."""
    model, teacher, data = setting
    model = copy.deepcopy(model)
    probe = LandscapeProbe(model, LOSS, data, loss_star=0.0)
    with SummaryWriter(tmp_path) as writer:
        sink = TensorBoardSink(writer)
        for step in range(3):
            sink.log(probe.snapshot(step, full=False, learning_rate=0.1), figures=False)
            train(model, data, steps=5)
    with SummaryWriter(tmp_path) as writer:
        TensorBoardSink(writer).log(probe.snapshot(3, full=True, learning_rate=0.1), figures=False)
    layouts = read(tmp_path).Tensors("custom_scalars__config__")
    assert layouts and all(layout_pb2.Layout.FromString(e.tensor_proto.string_val[0]).category for e in layouts)


def test_the_layout_charts_what_changed_and_says_what_stayed_the_same(setting, tmp_path):
    """Three snapshots with training between them: a chart appears for each quantity that changed, with its band
    and reference lines; the quantities that stayed the same (here the dense path's 0 products, the solver's
    convergence, the width) are listed in the text landscape/not_charted instead of drawn flat."""
    model, teacher, data = setting
    model = copy.deepcopy(model)
    probe = LandscapeProbe(model, LOSS, data, reference=teacher, loss_star=0.0)
    writer = SummaryWriter(tmp_path)
    sink = TensorBoardSink(writer)
    for step in range(3):
        sink.log(probe.snapshot(step, full=step != 1, learning_rate=0.1), figures=False)
        train(model, data, steps=5)
    sink.close("verdict", 3)
    writer.close()
    events = read(tmp_path)
    logged = set(events.Tags()["scalars"])
    layout = layout_of(events)
    drawn = {
        chart.title: [series.value for series in chart.margin.series]
        for category in layout.category
        for chart in category.chart
    }
    for title, series in drawn.items():
        assert set(series) <= logged, title
        values = [event.value for event in events.Scalars(series[0])]
        assert len(values) >= 2 and max(values) > min(values), title  # the quantity changed
    constant = {title for title, _, _ in sink.not_charted()}
    assert "Hessian-vector products per evaluation" in constant and "seconds per evaluation" not in constant
    assert constant.isdisjoint(drawn) and constant | set(drawn) == {
        title for _, title, series in CHARTS if series[0][0] in logged
    }
    text = events.Tensors("landscape/not_charted/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "Hessian-vector products per evaluation: **0** at all 3 evaluations" in text
    margins = {
        series.value: series
        for category in layout.category
        for chart in category.chart
        for series in chart.margin.series
    }
    assert margins["landscape/hessian/lambda_max"].upper == "landscape/hessian/lambda_max_upper"
    assert margins["landscape/hessian/lambda_min"].lower == "landscape/hessian/lambda_min_lower"
    assert "landscape/hessian/eos_threshold" in margins and layout.category[0].title == "landscape 0: overview"
    # The required tags of the public API.
    assert {
        "landscape/hessian/lambda_max",
        "landscape/hessian/lambda_min",
        "landscape/hessian/trace",
        "landscape/hessian/converged",
        "landscape/convexity/pl_ratio",
        "landscape/convexity/one_point",
        "landscape/redundancy/effective_width",
        "landscape/redundancy/score",
    } <= logged


def test_counts_are_drawn_unsmoothed_and_never_beside_a_continuous_quantity():
    """TensorBoard smooths line charts (turning counts into fractions) but not margin charts."""
    counts = {
        "negative_count",
        "morse_index",
        "nullity",
        "quotient_nullity",
        "width",
        "effective_width",
        "effective_width_on_data",
        "claims",
        "assignment_changes",
        "critical",
        "converged",
        "diverging",
        "contradictions",
    }
    for _, title, series in CHARTS:
        kinds = {value.rsplit("/", 1)[1] in counts for value, _, _ in series}
        assert len(kinds) == 1, title


def _saddle():
    """A point away from any critical point with certainly negative curvature: a fresh network."""
    data = regression_data(64, 3)
    return shallow(3, 6, nn.Tanh(), seed=3), data


def test_index_and_nullity_only_at_critical_points_and_words_agree_with_numbers():
    model, data = _saddle()
    snapshot = LandscapeProbe(model, LOSS, data).snapshot(0)
    scalars = snapshot_scalars(snapshot)
    report = snapshot_report(snapshot)
    assert not snapshot.critical.critical
    assert "landscape/hessian/morse_index" not in scalars and "landscape/hessian/nullity" not in scalars
    negative = int(scalars["landscape/hessian/negative_count"])
    assert negative >= 1 and scalars["landscape/hessian/lambda_min_upper"] < 0
    assert f"{negative} certainly negative eigenvalue" in report
    assert "Morse index" not in report


def test_at_the_reference_one_point_convexity_is_words_not_a_number():
    """Least squares with H's eigenvalues from ~2e4 down to ~2e-2, at θ = θ* + d·u with θ* the exact solution
    and u the flattest eigenvector: <grad L, d>/|d|^2 is λ_min(H) at |d| = 1e-3, but at |d| = 1e-12 the
    gradient's rounding (ε·λ_max·|θ| ≈ 1e-10) swamps λ_min·|d|; there it is "at the reference", not a
    number (a distance the core's own rule, 100·ε·|θ|, still takes for a number)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator, dtype=torch.float64) * torch.tensor(
        [100.0, 1.0, 0.1], dtype=torch.float64
    )
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + torch.randn(
        64, 1, generator=generator, dtype=torch.float64
    )
    design = torch.cat([x, torch.ones(64, 1, dtype=x.dtype)], 1)
    solution = torch.linalg.lstsq(design, y).solution[:, 0]
    values, vectors = torch.linalg.eigh(2 * design.T @ design / 64)
    snapshots = {}
    for distance in (1e-12, 1e-3):
        model = nn.Linear(3, 1).double()
        with torch.no_grad():
            model.weight.copy_((solution[:3] + distance * vectors[:3, 0])[None])
            model.bias.copy_(solution[3:] + distance * vectors[3:, 0])
        probe = LandscapeProbe(model, LOSS, (x, y), reference=solution, quantities=["one_point", "spectrum"])
        snapshots[distance] = probe.snapshot(0, full=False)
    near, far = snapshots[1e-12], snapshots[1e-3]
    assert near.one_point.distance > 100 * 2.2e-16 * float(solution.norm())  # not the core's rounding rule
    assert "landscape/convexity/one_point" not in finite_scalars(near)
    assert "at the reference" in snapshot_report(near)
    assert snapshot_scalars(far)["landscape/convexity/one_point"] == pytest.approx(float(values[0]), rel=1e-6)


def finite_scalars(snapshot):
    return {tag: value for tag, value in snapshot_scalars(snapshot).items() if math.isfinite(value)}


def test_the_heat_map_marks_exactly_the_verified_merges():
    data = regression_data(80, 2)
    model = shallow(2, 4, nn.Tanh(), seed=2)
    with torch.no_grad():  # neuron 3 duplicates neuron 0; neuron 2's output weight is 0
        model[0].weight[3] = model[0].weight[0]
        model[0].bias[3] = model[0].bias[0]
        model[2].weight[0, 2] = 0.0
    report = neuron_redundancy(model, [data])
    claims = sorted(tuple(sorted(finding.neurons)) for finding in report.claims if finding.original)
    assert claims == [(0, 3), (2,)]
    figure = similarity_figure(report, 0)
    axes = figure.axes[0]
    boxes = sorted((round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in axes.patches if p.get_gid() == "merge")
    crosses = [tuple(line.get_xdata()) for line in axes.lines if line.get_gid() == "merge"]
    assert boxes == [(0, 3), (3, 0)] and crosses == [(2,)]
    assert sorted(tuple(sorted(n)) for n in marked_neurons(report)) == claims


def test_a_run_escaping_to_infinity_is_said_so_in_the_scalars_the_report_and_the_verdict():
    """The diverging width-6 tanh student of tests/fixtures (issue #17): the probe's path of (step, L, ‖θ‖)
    continues the run's history, and the escape is named at the next full snapshot."""
    saved = torch.load(Path(__file__).parent / "fixtures" / "diverging_tanh.pt")
    width = saved["state"]["0.weight"].shape[0]
    model = nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, 1)).double()
    model.load_state_dict(saved["state"])
    history = saved["history"].tolist()
    probe = LandscapeProbe(model, LOSS, (saved["x"], saved["y"]), quantities=["spectrum", "critical", "redundancy"])
    state = probe.state_dict()
    probe.load_state_dict({**state, "path": [tuple(row) for row in history[:-1]]})
    snapshot = probe.snapshot(int(history[-1][0]))
    assert snapshot.critical.kind == "not_critical" and snapshot.divergence.diverging
    assert snapshot_scalars(snapshot)["landscape/hessian/diverging"] == 1.0
    pair = snapshot.divergence.pairs[0].neurons
    report = snapshot_report(snapshot)
    assert "**diverging: no critical point at finite distance**" in report
    assert f"carried by neurons {pair[0]}, {pair[1]} (output weights" in " ".join(report.split())  # not a tuple
    assert str(pair) not in report and str(pair) in run_verdict([snapshot])


def test_a_run_without_figures_says_why_in_the_images_tab(setting, tmp_path):
    model, teacher, data = setting
    probe = LandscapeProbe(model, LOSS, data, quantities=["spectrum"])
    with SummaryWriter(tmp_path) as writer:
        sink = TensorBoardSink(writer)
        sink.log(probe.snapshot(0, full=False), figures=False)
        sink.note("figures were not drawn: they would cost about 0.6 s beyond the budget (max_overhead=0.05)")
        sink.close("verdict", 0)
    events = read(tmp_path)
    assert events.Tags()["images"] == ["landscape/figures/not_drawn"]
    image = events.Images("landscape/figures/not_drawn")[0]
    assert image.width >= 400 and image.height >= 100


def test_the_console_says_a_failing_evaluation_once_per_streak():
    """A run that diverged keeps being evaluated (each fails at the loss, cheaply); the console says so once,
    not at every full evaluation, and again once the loss is finite."""
    lines = []
    sink = ConsoleSink(emit=lines.append, name="M")
    cost = EvaluationCost(0.0, 0.0, 0.05)
    losses = [0.5, math.nan, math.nan, math.inf, 0.4]
    for step, loss in enumerate(losses):
        sink.write(LandscapeSnapshot(step, 3, loss, abs(loss), 0.0, full=True), None, cost)
    assert [line.split(":")[0] for line in lines] == ["M step 0", "M step 1", "M step 4"]
