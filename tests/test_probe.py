"""LandscapeProbe: every number it reports is the core function's, it changes nothing, it fails softly,
it resumes exactly, and the plain-loop API writes what TensorBoard reads back."""

import math
import random
import re

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from helpers import regression_data, shallow, train
from torch_landscape import Objective, hessian_eigenvalues, hessian_trace, spectral_density
from torch_landscape.callbacks.tensorboard import custom_scalars_layout
from torch_landscape.convexity import PLTracker, one_point_convexity
from torch_landscape.critical import classify_critical_point
from torch_landscape.probe import FULL_QUANTITIES, QUANTITIES, LandscapeProbe
from torch_landscape.redundancy import neuron_redundancy

LOSS = nn.MSELoss()


@pytest.fixture(scope="module")
def setting():
    data = regression_data(96, 3)
    teacher = shallow(3, 2, nn.Tanh(), seed=5)
    model = train(shallow(3, 5, nn.Tanh()), data, steps=60)
    return model, teacher, data


def numbers(snapshot):
    """The snapshot's scalars without its timing, NaN made comparable."""
    return {tag: "nan" if math.isnan(v) else v for tag, v in snapshot.scalars().items() if tag != "landscape/monitor/seconds"}


def _sgd_step(model, data, lr=0.05):
    x, y = data
    model.zero_grad()
    LOSS(model(x), y).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    model.zero_grad(set_to_none=True)


def test_snapshot_numbers_are_the_core_functions(setting):
    model, teacher, data = setting
    probe = LandscapeProbe(model, LOSS, data, reference=teacher, k=3, loss_star=0.0)
    snapshot = probe.snapshot(7, learning_rate=0.1)
    assert snapshot.errors == ()
    loss, gradient = Objective(model, LOSS, data, dtype=torch.float64).loss_and_gradient()
    assert snapshot.loss == float(loss) and snapshot.grad_norm == float(gradient.norm())

    spectrum = hessian_eigenvalues(model, LOSS, data, k=3, dtype=torch.float64)
    assert torch.equal(snapshot.spectrum.eigenvalues, spectrum.eigenvalues)
    assert torch.equal(snapshot.spectrum.error_bounds, spectrum.error_bounds)
    assert snapshot.trace.value == hessian_trace(model, LOSS, data, dtype=torch.float64).value
    assert torch.equal(snapshot.density.nodes, spectral_density(model, LOSS, data, dtype=torch.float64).nodes)
    critical = classify_critical_point(model, LOSS, data, k=3, learning_rate=0.1)
    assert (snapshot.critical.kind, snapshot.critical.morse_index, snapshot.critical.nullity) == (
        critical.kind, critical.morse_index, critical.nullity)
    assert snapshot.critical.edge_of_stability == critical.edge_of_stability
    pl = PLTracker(0.0, learning_rate=0.1)
    assert snapshot.pl == pl.update(7, float(loss), float(gradient @ gradient))
    one_point = one_point_convexity(model, LOSS, data, reference=teacher)
    assert (snapshot.one_point.value, snapshot.one_point.cosine, snapshot.one_point.distance) == (
        one_point.value, one_point.cosine, one_point.distance)
    redundancy = neuron_redundancy(model, [data])
    assert (snapshot.redundancy.effective_width, snapshot.redundancy.score) == (redundancy.effective_width, redundancy.score)

    scalars = snapshot.scalars()
    assert scalars["landscape/hessian/lambda_max"] == spectrum.lambda_max
    assert scalars["landscape/hessian/lambda_min"] == spectrum.lambda_min
    assert scalars["landscape/hessian/eos_ratio"] == spectrum.lambda_max * 0.1 / 2
    assert scalars["landscape/hessian/eos_threshold"] == 2 / 0.1
    assert scalars["landscape/convexity/pl_ratio"] == snapshot.pl.mu > 0
    assert scalars["landscape/convexity/one_point"] == one_point.value
    assert scalars["landscape/redundancy/effective_width"] == redundancy.effective_width
    assert scalars["landscape/redundancy/score"] == redundancy.score
    index = scalars["landscape/hessian/morse_index"]  # NaN away from a critical point (issue #17)
    assert index == critical.morse_index if critical.critical else math.isnan(index) and critical.morse_index is None
    assert scalars["landscape/hessian/negative_count"] == critical.negative_count
    assert scalars["landscape/hessian/lambda_max_error"] == float(spectrum.error_bounds[-1])
    assert scalars["landscape/hessian/lambda_min_error"] == float(spectrum.error_bounds[0])
    positive = critical.eigenvalues[critical.eigenvalues > critical.tau]
    assert scalars["landscape/hessian/cond_eff"] == critical.lambda_max / float(positive[0])
    # H ≻ 0 is certain only when λ_min exceeds its error bound; otherwise the condition number is undefined.
    certain = spectrum.lambda_min > float(spectrum.error_bounds[0])
    assert scalars["landscape/hessian/cond"] == spectrum.lambda_max / spectrum.lambda_min if certain else \
        math.isnan(scalars["landscape/hessian/cond"])
    assert "**" + critical.kind + "**" in snapshot.report()


def test_snapshot_changes_nothing_in_the_model_or_the_random_streams(setting):
    _, teacher, data = setting
    model = shallow(3, 5, nn.Tanh())
    model[0].weight.grad = torch.full_like(model[0].weight, 3.0)
    model.train()
    model[1].eval()  # a mixed mode must come back mixed
    parameters = [p.detach().clone() for p in model.parameters()]

    def draws():
        return torch.rand(3), np.random.rand(3), random.random()

    def seed():
        torch.manual_seed(11), np.random.seed(11), random.seed(11)

    seed()
    expected = draws()
    seed()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data), batch_size=32, shuffle=True)
    probe = LandscapeProbe(model, LOSS, loader, reference=teacher)  # reading a shuffling loader draws numbers
    probe.snapshot(0)
    after = draws()
    assert torch.equal(after[0], expected[0]) and np.array_equal(after[1], expected[1]) and after[2] == expected[2]
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), parameters))
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 3.0)) and model[2].weight.grad is None
    assert model.training and model[0].training and not model[1].training


def test_light_snapshot_computes_no_full_quantity(setting):
    model, teacher, data = setting
    snapshot = LandscapeProbe(model, LOSS, data, reference=teacher).snapshot(3, full=False)
    assert snapshot.pl is not None and snapshot.one_point is not None
    assert all(getattr(snapshot, q) is None for q in FULL_QUANTITIES)
    assert not any(tag.startswith(("landscape/hessian", "landscape/redundancy")) for tag in snapshot.scalars())


def test_failures_are_recorded_warned_once_and_raised_on_request(setting):
    _, _, data = setting
    model = shallow(3, 5, nn.Tanh())
    probe = LandscapeProbe(model, LOSS, data, quantities=["spectrum"])
    with torch.no_grad():
        model[0].weight[0, 0] = math.nan  # a diverged run
    with pytest.warns(RuntimeWarning, match="loss failed at step 1") as caught:
        first, second = probe.snapshot(1), probe.snapshot(2)
    assert len(caught) == 1
    assert math.isnan(first.loss) and first.spectrum is None
    assert first.errors and second.errors[0].startswith("loss: FloatingPointError")
    with pytest.raises(FloatingPointError):
        LandscapeProbe(model, LOSS, data, on_error="raise").snapshot(0)


def test_batch_loss_escape_hatch_gives_the_loss_fn_numbers(setting):
    model, _, (x, y) = setting
    batches = [{"features": x[:50], "labels": y[:50]}, {"features": x[50:], "labels": y[50:]}]
    custom = LandscapeProbe(model, loss=lambda m, b: LOSS(m(b["features"]), b["labels"]), data=batches,
                            quantities=["pl", "spectrum", "trace"])
    plain = LandscapeProbe(model, LOSS, [(x[:50], y[:50]), (x[50:], y[50:])], quantities=["pl", "spectrum", "trace"])
    a, b = custom.snapshot(0), plain.snapshot(0)
    assert a.errors == () and a.loss == pytest.approx(b.loss, rel=1e-14)
    torch.testing.assert_close(a.spectrum.eigenvalues, b.spectrum.eigenvalues, rtol=1e-10, atol=1e-12)
    assert a.trace.value == pytest.approx(b.trace.value, rel=1e-10)


def test_state_dict_resumes_with_identical_numbers(setting):
    _, teacher, data = setting
    options = dict(reference=teacher, quantities=["pl", "one_point", "spectrum"], method="lanczos", k=2)
    model = shallow(3, 5, nn.Tanh())
    probe = LandscapeProbe(model, LOSS, data, **options)
    for step in range(2):
        probe.snapshot(step)
        _sgd_step(model, data)
    state = probe.state_dict()
    copy = shallow(3, 5, nn.Tanh())
    copy.load_state_dict(model.state_dict())
    resumed = LandscapeProbe(copy, LOSS, data, **options)
    resumed.load_state_dict(state)
    for step in range(2, 4):
        a, b = probe.snapshot(step), resumed.snapshot(step)
        assert numbers(a) == numbers(b) and a.pl == b.pl
        assert torch.equal(a.spectrum.eigenvalues, b.spectrum.eigenvalues)  # same warm start, same Krylov space
        _sgd_step(model, data), _sgd_step(copy, data)
    assert probe.trajectory == resumed.trajectory and len(probe.trajectory) == 4


def test_plain_loop_log_writes_what_tensorboard_reads_back(setting, tmp_path):
    model, teacher, data = setting
    probe = LandscapeProbe(model, LOSS, data, reference=teacher)
    writer = SummaryWriter(tmp_path)
    snapshots = [probe.snapshot(step, full=step == 4, learning_rate=0.1) for step in (0, 4)]
    for snapshot in snapshots:
        probe.log(writer, snapshot)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0, "images": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    for tag, value in snapshots[1].scalars().items():
        if not math.isfinite(value):  # NaN would plot as a marker that looks like data: never written
            assert all(e.step != 4 for e in events.Scalars(tag)) if tag in tags["scalars"] else True
            continue
        logged = events.Scalars(tag)[-1]
        assert logged.step == 4
        assert logged.value == pytest.approx(value, rel=1e-6)  # TensorBoard stores float32
    assert [e.step for e in events.Scalars("landscape/probe/loss")] == [0, 4]
    assert "landscape/hessian/spectrum" in tags["histograms"]
    histogram = events.Histograms("landscape/hessian/spectrum")[0].histogram_value
    assert histogram.num == sum(p.numel() for p in model.parameters())
    assert {"landscape/report/text_summary", "landscape/setup/text_summary"} <= set(tags["tensors"])
    assert {"landscape/figures/spectral_density", "landscape/figures/eigenvalue_trajectories",
            "landscape/figures/neuron_similarity"} <= set(tags["images"])
    assert "custom_scalars__config__" in tags["tensors"]


def test_every_custom_scalars_chart_shows_logged_tags(setting):
    model, teacher, data = setting
    probe = LandscapeProbe(model, LOSS, data, reference=teacher)
    probe.snapshot(0, full=False)  # assignment changes need a previous one-point evaluation
    logged = set(probe.snapshot(1, learning_rate=0.1).scalars()) | {"landscape/monitor/overhead"}

    for category, charts in custom_scalars_layout(QUANTITIES).items():
        for title, (kind, patterns) in charts.items():
            assert kind == "Multiline"
            for pattern in patterns:
                assert any(re.match(pattern, tag) for tag in logged), (category, title, pattern)
    for required in ("landscape/hessian/lambda_max", "landscape/hessian/lambda_min", "landscape/hessian/trace",
                     "landscape/convexity/pl_ratio", "landscape/convexity/one_point",
                     "landscape/redundancy/effective_width", "landscape/redundancy/score"):
        assert required in logged


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(quantities=["hessian_max"]), "unknown quantities"),
        (dict(quantities=["one_point"]), "one_point needs reference"),
        (dict(quantities=[]), "quantities is empty"),
        (dict(k=0), "k must be a positive integer"),
        (dict(method="power"), "method must be"),
        (dict(on_error="ignore"), "on_error must be"),
    ],
)
def test_bad_probe_configuration_names_the_fix(setting, arguments, message):
    model, _, data = setting
    with pytest.raises(ValueError, match=message):
        LandscapeProbe(model, LOSS, data, **arguments)


def test_redundancy_on_a_deep_network_is_refused_when_asked_and_dropped_by_default():
    deep = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    data = regression_data(20, 2)
    with pytest.raises(ValueError, match="redundancy needs a one-hidden-layer network"):
        LandscapeProbe(deep, LOSS, data, quantities=["redundancy"])
    assert "redundancy" not in LandscapeProbe(deep, LOSS, data).quantities
    with pytest.raises(ValueError, match="exactly one of loss_fn"):
        LandscapeProbe(deep, LOSS, data, loss=lambda m, b: 0)
