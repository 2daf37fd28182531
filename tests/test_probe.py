"""LandscapeProbe: every number it reports is the core function's, it changes nothing, it fails softly,
it resumes exactly, and the plain-loop API writes what TensorBoard reads back."""

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from helpers import dense_truth, regression_data, shallow, train
from torch_landscape import Objective, hessian_eigenvalues, hessian_trace, spectral_density
from torch_landscape.convexity import PLTracker, one_point_convexity
from torch_landscape.critical.classify import classify_critical_point
from torch_landscape.probe import FULL_QUANTITIES, LandscapeProbe
from torch_landscape.redundancy import neuron_redundancy
from torch_landscape.writers import snapshot_report, snapshot_scalars

LOSS = nn.MSELoss()


@pytest.fixture(scope="module")
def setting():
    data = regression_data(96, 3)
    teacher = shallow(3, 2, nn.Tanh(), seed=5)
    model = train(shallow(3, 5, nn.Tanh()), data, steps=60)
    return model, teacher, data


def numbers(snapshot):
    """The snapshot's scalars without its timing, NaN made comparable."""
    return {
        tag: "nan" if math.isnan(v) else v
        for tag, v in snapshot_scalars(snapshot).items()
        if tag != "landscape/monitor/seconds"
    }


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
    # The probe takes the trace of the Hessian its spectrum assembled; the function its closed form: equal to
    # rounding (sums of 26 diagonal entries in another order).
    assert snapshot.trace.value == pytest.approx(hessian_trace(model, LOSS, data, dtype=torch.float64).value, rel=1e-14)
    assert torch.equal(snapshot.density.nodes, spectral_density(model, LOSS, data, dtype=torch.float64).nodes)
    critical = classify_critical_point(model, LOSS, data, k=3, learning_rate=0.1)
    assert (snapshot.critical.kind, snapshot.critical.morse_index, snapshot.critical.nullity) == (
        critical.kind,
        critical.morse_index,
        critical.nullity,
    )
    assert snapshot.critical.edge_of_stability == critical.edge_of_stability
    pl = PLTracker(0.0, learning_rate=0.1)
    assert snapshot.pl == pl.update(7, float(loss), float(gradient @ gradient))
    one_point = one_point_convexity(model, LOSS, data, reference=teacher)
    # The probe reuses its gradient where the function recomputes it: equal up to summation order (1 ulp seen).
    assert (snapshot.one_point.value, snapshot.one_point.cosine, snapshot.one_point.distance) == pytest.approx(
        (one_point.value, one_point.cosine, one_point.distance), rel=1e-14, abs=0
    )
    redundancy = neuron_redundancy(model, [data])
    assert (snapshot.redundancy.effective_width, snapshot.redundancy.score) == (
        redundancy.effective_width,
        redundancy.score,
    )

    scalars = snapshot_scalars(snapshot)
    assert scalars["landscape/hessian/lambda_max"] == spectrum.lambda_max
    assert scalars["landscape/hessian/lambda_min"] == spectrum.lambda_min
    assert scalars["landscape/hessian/eos_ratio"] == spectrum.lambda_max * 0.1 / 2
    assert scalars["landscape/hessian/eos_threshold"] == 2 / 0.1
    assert scalars["landscape/convexity/pl_ratio"] == snapshot.pl.mu > 0
    assert scalars["landscape/convexity/one_point"] == snapshot.one_point.value
    assert scalars["landscape/redundancy/effective_width"] == redundancy.effective_width
    assert scalars["landscape/redundancy/score"] == redundancy.score
    # Index and nullity describe critical points only; a count of certainly negative eigenvalues always,
    # the same in the snapshot and in the critical-point test.
    assert ("landscape/hessian/morse_index" in scalars) == critical.critical
    assert scalars["landscape/hessian/negative_count"] == critical.negative_count
    assert scalars["landscape/hessian/lambda_max_error"] == float(spectrum.error_bounds[-1])
    assert scalars["landscape/hessian/lambda_min_error"] == float(spectrum.error_bounds[0])
    assert scalars["landscape/hessian/lambda_min_lower"] == spectrum.lambda_min - float(spectrum.error_bounds[0])
    positive = critical.eigenvalues[critical.eigenvalues > critical.tau]
    assert scalars["landscape/hessian/cond_eff_log10"] == math.log10(critical.lambda_max / float(positive[0]))
    # H ≻ 0 is certain only when λ_min exceeds its error bound; otherwise the condition number is undefined.
    certain = spectrum.lambda_min > float(spectrum.error_bounds[0])
    assert (
        scalars["landscape/hessian/cond_log10"] == math.log10(spectrum.lambda_max / spectrum.lambda_min)
        if certain
        else math.isnan(scalars["landscape/hessian/cond_log10"])
    )
    assert "**" + critical.kind + "**" in snapshot_report(snapshot)
    # The loss slices run along this snapshot's extreme eigenvectors and pass through L(θ) at s = 0.
    top, bottom = snapshot.slices.lines[:2]
    assert top.directions[0].curvature == spectrum.lambda_max and bottom.directions[0].curvature == spectrum.lambda_min
    middle = len(top.values) // 2
    assert float(top.values[middle]) == pytest.approx(float(loss), rel=1e-12)


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
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), parameters, strict=True))
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 3.0)) and model[2].weight.grad is None
    assert model.training and model[0].training and not model[1].training


def test_light_snapshot_logs_curvature_but_no_full_quantity(setting):
    """A light snapshot on the dense path (P = 26 <= LIGHT_DENSE_THRESHOLD) carries the exact extreme
    eigenvalues and the closed-form trace; the dense float64 Hessian is the truth (to 1e-10·‖H‖: eigh
    backward error on a 26 × 26 matrix is ~1e-15·‖H‖, the bound allows for it)."""
    model, teacher, data = setting
    snapshot = LandscapeProbe(model, LOSS, data, reference=teacher).snapshot(3, full=False)
    assert snapshot.pl is not None and snapshot.one_point is not None and not snapshot.full
    assert all(getattr(snapshot, q) is None for q in FULL_QUANTITIES)
    truth = torch.linalg.eigvalsh(dense_truth(model, LOSS, data))
    scale = float(truth.abs().max())
    scalars = snapshot_scalars(snapshot)
    assert scalars["landscape/hessian/lambda_max"] == pytest.approx(float(truth[-1]), abs=1e-10 * scale)
    assert scalars["landscape/hessian/lambda_min"] == pytest.approx(float(truth[0]), abs=1e-10 * scale)
    assert scalars["landscape/hessian/trace"] == pytest.approx(float(truth.sum()), abs=1e-10 * scale)
    assert scalars["landscape/hessian/converged"] == 1.0
    assert not any(tag.startswith("landscape/redundancy") for tag in scalars)
    assert "landscape/hessian/morse_index" not in scalars


def test_light_lanczos_lambda_max_is_warm_started_and_bounded():
    """Above LIGHT_DENSE_THRESHOLD a light snapshot solves for λ_max alone at ``light_tol``, warm-started
    from the previous top eigenvector: along an SGD run every value lies within its reported bound of the
    dense truth, and warm solves take few products (a cold one needs a minimum Krylov basis)."""
    data = regression_data(128, 6)
    model = train(shallow(6, 40, nn.Tanh()), data, steps=40)  # P = 321
    probe = LandscapeProbe(model, LOSS, data, quantities=["spectrum", "trace"], light_tol=1e-3)
    counts = []
    for step in range(4):
        snapshot = probe.snapshot(step, full=False)
        assert snapshot.spectrum_ends == "largest" and snapshot.spectrum.method == "lanczos"
        truth = torch.linalg.eigvalsh(dense_truth(model, LOSS, data))
        scalars = snapshot_scalars(snapshot)
        error = abs(scalars["landscape/hessian/lambda_max"] - float(truth[-1]))
        assert error <= scalars["landscape/hessian/lambda_max_error"]
        assert scalars["landscape/hessian/lambda_max_error"] <= 2e-3 * float(truth[-1])  # light_tol, with margin
        assert "landscape/hessian/lambda_min" not in scalars
        assert scalars["landscape/hessian/trace"] == pytest.approx(float(truth.sum()), rel=1e-10)
        counts.append(snapshot.num_hvp)
        _sgd_step(model, data, lr=0.02)
    assert max(counts[1:]) <= counts[0] and max(counts[1:]) <= 8
    assert [math.isnan(low) for _, low, _ in probe.trajectory] == [True] * 4


def test_an_unconverged_solve_is_warned_about_once_and_flagged(monkeypatch):
    """Cut the eigen-solver short: the snapshot still reports a bound that holds, says converged = 0, and
    warns once (training goes on)."""
    import torch_landscape.evaluation as probe_module

    data = regression_data(128, 6)
    model = train(shallow(6, 40, nn.Tanh()), data, steps=40)  # P = 321: the light path is Lanczos
    solve = probe_module.hessian_eigenvalues
    monkeypatch.setattr(probe_module, "hessian_eigenvalues", lambda *a, **k: solve(*a, **{**k, "max_hvp": 3}))
    probe = LandscapeProbe(model, LOSS, data, quantities=["spectrum"])
    with pytest.warns(RuntimeWarning, match="stopped before its tolerance") as caught:
        first, second = probe.snapshot(0, full=False), probe.snapshot(1, full=False)
    assert len([w for w in caught if "tolerance" in str(w.message)]) == 1
    truth = float(torch.linalg.eigvalsh(dense_truth(model, LOSS, data))[-1])
    for snapshot in (first, second):
        scalars = snapshot_scalars(snapshot)
        assert scalars["landscape/hessian/converged"] == 0.0
        # Some eigenvalue lies within the bound; λ_max itself is above the Ritz value (Rayleigh quotient).
        assert scalars["landscape/hessian/lambda_max"] <= truth + 1e-12 * truth


def test_full_snapshot_assembles_and_decomposes_the_hessian_once(setting, monkeypatch):
    """Spectrum, trace, density and the critical-point test of one full snapshot share one assembly
    and one P × P eigendecomposition."""
    model, teacher, data = setting
    import torch_landscape.curvature.operators as hessian_module

    assemblies, decompositions = [], []
    assemble, decompose = hessian_module.structured_hessian, torch.linalg.eigh
    size = sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(hessian_module, "structured_hessian", lambda o: assemblies.append(1) or assemble(o))
    monkeypatch.setattr(
        torch.linalg,
        "eigh",
        lambda a, *r, **k: (decompositions.append(1) if a.shape[-1] == size else None) or decompose(a, *r, **k),
    )
    snapshot = LandscapeProbe(model, LOSS, data, reference=teacher).snapshot(0)
    assert snapshot.errors == ()
    assert (len(assemblies), len(decompositions), snapshot.num_hvp) == (1, 1, 0)


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
    custom = LandscapeProbe(
        model,
        loss=lambda m, b: LOSS(m(b["features"]), b["labels"]),
        data=batches,
        quantities=["pl", "spectrum", "trace"],
    )
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


def test_redundancy_on_a_network_that_is_no_mlp_is_refused_when_asked_and_dropped_by_default():
    deep = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.LayerNorm(3), nn.Linear(3, 1)).double()
    data = regression_data(20, 2)
    with pytest.raises(ValueError, match="redundancy needs a one-hidden-layer network"):
        LandscapeProbe(deep, LOSS, data, quantities=["redundancy"])
    assert "redundancy" not in LandscapeProbe(deep, LOSS, data).quantities
    with pytest.raises(ValueError, match="exactly one of loss_fn"):
        LandscapeProbe(deep, LOSS, data, loss=lambda m, b: 0)


def test_a_full_evaluation_by_products_is_guessed_from_a_light_ones_product_cost(setting):
    """The schedule's guess of a full evaluation that assembles H from P products: the light snapshot's own
    seconds plus P products at the cost the light one measured. None where a light one is a fair yardstick:
    a one-hidden-layer net assembled from its structure, a full snapshot."""
    model, _, data = setting
    structured = LandscapeProbe(model, LOSS, data)
    assert structured.full_cost_guess(structured.snapshot(0, full=False)) is None
    batch_loss = LandscapeProbe(model, data=[data], loss=lambda module, batch: LOSS(module(batch[0]), batch[1]))
    light = batch_loss.snapshot(0, full=False)
    assert light.num_hvp > 0  # P = 26 > LIGHT_PRODUCTS_THRESHOLD: λ_max by Lanczos
    per_product = batch_loss._product_seconds
    assert per_product > 0
    assert batch_loss.full_cost_guess(light) == light.seconds + light.num_parameters * per_product
    assert batch_loss.full_cost_guess(batch_loss.snapshot(1, full=True)) is None


def test_a_hessian_of_p_products_is_assembled_only_near_a_critical_point():
    """A loss the probe cannot see into (``loss=``) makes the Hessian cost P products. Above
    FULL_PRODUCTS_THRESHOLD a full evaluation solves both ends by Lanczos; the critical-point test assembles H
    only where the lower bound on the Newton step does not already certify that θ is far from a critical point.
    Ground truths: eigvalsh of the jacrev(jacrev) Hessian, and the dense classification of the same point."""
    torch.manual_seed(0)
    x = torch.randn(200, 3, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 1)).double()  # P = 321 > 256
    batch_loss = lambda module, batch: LOSS(module(batch[0]), batch[1])  # noqa: E731
    far = LandscapeProbe(model, data=[(x, torch.sin(x[:, :1]))], loss=batch_loss, quantities=["spectrum", "critical"])
    snapshot = far.snapshot(0, full=True)
    assert snapshot.critical.method == "lanczos" and snapshot.critical.newton_at_least
    truth = torch.linalg.eigvalsh(dense_truth(model, LOSS, (x, torch.sin(x[:, :1]))))
    spectrum = snapshot.spectrum
    assert abs(spectrum.lambda_max - float(truth[-1])) <= float(spectrum.error_bounds[-1])
    assert abs(spectrum.lambda_min - float(truth[0])) <= float(spectrum.error_bounds[0])
    # θ = 0 with targets 0: L = 0 and ∇L = 0, a critical point, so the test assembles H and decides densely.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    zero = torch.zeros(200, 1, dtype=torch.float64)
    near = LandscapeProbe(model, data=[(x, zero)], loss=batch_loss, quantities=["spectrum", "critical"])
    critical = near.snapshot(0, full=True).critical
    dense = classify_critical_point(model, LOSS, (x, zero), method="dense")
    assert critical.method == "dense" and critical.critical
    assert (critical.kind, critical.morse_index, critical.nullity) == (dense.kind, dense.morse_index, dense.nullity)
