"""Verdicts a researcher can trust (issue #17): Newton-step criticality, escape to infinity, near-redundancy,
contradictions between verdicts.

Ground truths: a least-squares problem (H constant, so the distance to the minimiser is the exact Newton step,
checked against the pseudo-inverse of the independent jacrev(jacrev) Hessian); two fixtures saved from the
runs the issue describes (tests/fixtures/make_verdict_fixtures.py): the diverging width-6 tanh student of
``efficient_vs_redundant_tanh`` and the demo's seed-5 wider student, whose two output weights ≈ 1.2e-9 make
each hidden neuron predict d + 1 = 3 null directions (docs/theory.md §4.5, rule A1).
"""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import dense_truth, planted_tanh
from torch_landscape import classify_critical_point, neuron_redundancy, redundancy_nullity_check
from torch_landscape.curvature.eigen import Spectrum
from torch_landscape.monitoring.verdict import events, where_words
from torch_landscape.objective import Objective
from torch_landscape.snapshot import LandscapeSnapshot
from torch_landscape.verdicts import contradictions, divergence_verdict

F64 = torch.float64
MSE = nn.MSELoss()
FIXTURES = Path(__file__).parent / "fixtures"


def least_squares(spread: float, offset: torch.Tensor):
    """f = w·x + c on the four points (±2, ±spread): H = diag(8, 2·spread², 2), θ = θ* + offset."""
    x = torch.tensor([[2, spread], [2, -spread], [-2, spread], [-2, -spread]], dtype=F64)
    y = torch.tensor([[1.0], [-2.0], [0.5], [3.0]], dtype=F64)
    solution = torch.linalg.lstsq(torch.cat([x, torch.ones(4, 1, dtype=F64)], 1), y).solution[:, 0]
    model = nn.Linear(2, 1).double()
    with torch.no_grad():
        model.weight.copy_((solution[:2] + offset[:2])[None])
        model.bias.copy_(solution[2:] + offset[2:])
    return model, (x, y)


def tanh_net(path: str) -> tuple[nn.Module, tuple, dict]:
    saved = torch.load(FIXTURES / path)
    width = saved["state"]["0.weight"].shape[0]
    model = nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, 1)).double()
    model.load_state_dict(saved["state"])
    return model, (saved["x"], saved["y"]), saved


@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_ill_conditioned_quadratic_is_judged_by_its_newton_step(method):
    """Same ‖∇L‖ = 2e-9 twice: 1e-3 from the minimiser along λ = 2e-6 (not critical), 1e-9 along λ = 2 (critical).

    The old test (‖∇L‖ ≤ 1e-6·λ_max·‖θ‖/√P ≈ 3e-6) called both critical: cond = 4e6 hid a distance 1e-3.
    """
    far, _ = least_squares(1e-3, torch.tensor([0.0, 1e-3, 0.0], dtype=F64))
    near, data = least_squares(1e-3, torch.tensor([0.0, 0.0, 1e-9], dtype=F64))
    far_point = classify_critical_point(far, MSE, data, method=method, k=1)
    near_point = classify_critical_point(near, MSE, data, method=method, k=1)
    assert far_point.grad_norm == pytest.approx(2e-9, rel=1e-6) and near_point.grad_norm == pytest.approx(
        2e-9, rel=1e-6
    )
    assert far_point.kind == "not_critical" and far_point.morse_index is None and far_point.nullity is None
    assert near_point.kind == "nondegenerate_min" and near_point.critical
    # Ground truth: ‖H⁺∇L‖ from the jacrev(jacrev) Hessian and the gradient at the rounded θ. The dense step
    # is the shortest with residual ≤ gtol (~1e-13): shorter by at most gtol/λ_min = 5e-8 relative. MINRES
    # (3 steps on P = 3) gives a feasible step, within its stopping residual of the exact one.
    for model, point, distance in ((far, far_point, 1e-3), (near, near_point, 1e-9)):
        hessian = dense_truth(model, MSE, data)
        gradient = Objective(model, MSE, data, dtype=F64).loss_and_gradient()[1]
        exact = float(torch.linalg.vector_norm(torch.linalg.pinv(hessian) @ gradient))
        assert exact == pytest.approx(distance, rel=1e-6)  # θ* + offset, rounded
        if method == "dense":
            assert exact - point.gtol / 2e-6 * 1.01 <= point.newton_step <= exact * (1 + 1e-9)
        else:
            assert point.newton_step == pytest.approx(exact, rel=1e-6)
    assert far_point.newton_ratio > 1e-6 >= near_point.newton_ratio
    assert "Newton step" in str(far_point) and "do not apply" in far_point.reason


def test_far_from_a_critical_point_the_lower_bound_on_the_newton_step_suffices():
    """‖x‖ ≥ (‖∇L‖ − gtol)/‖H‖ for any step x that zeroes the gradient: where that bound already exceeds the
    tolerance, the Lanczos path says not critical without a MINRES solve, reporting the bound ("at least").
    Ground truth: ‖H⁺∇L‖ and ‖H‖ from the jacrev(jacrev) Hessian; the dense path agrees on the kind."""
    model, data = least_squares(0.5, torch.tensor([0.3, -0.2, 0.1], dtype=F64))
    point = classify_critical_point(model, MSE, data, method="lanczos", k=1)
    hessian = dense_truth(model, MSE, data)
    gradient = Objective(model, MSE, data, dtype=F64).loss_and_gradient()[1]
    exact = float(torch.linalg.vector_norm(torch.linalg.pinv(hessian) @ gradient))
    norm = float(torch.linalg.matrix_norm(hessian, ord=2))
    assert point.newton_at_least and "at least" in point.reason and math.isnan(point.null_gradient)
    # The bound divides by max(|λ| + its error bound) ≥ ‖H‖: at most the true shortest step, and within the
    # Ritz bounds (relative 1e-6 here) of (‖∇L‖ − gtol)/‖H‖.
    assert point.newton_step <= exact
    assert point.newton_step == pytest.approx((float(gradient.norm()) - point.gtol) / norm, rel=1e-6)
    assert point.kind == classify_critical_point(model, MSE, data, method="dense").kind == "not_critical"
    assert where_words([LandscapeSnapshot(0, 0, point.loss, point.grad_norm, 0.0, critical=point, full=True)]) == [
        f"not at a critical point: the Newton step to one is at least {point.newton_ratio:.2g} of the scale"
    ]


def test_gradient_along_a_flat_direction_means_no_critical_point():
    """L(θ) = mean(w·x + c) is linear in θ: H = 0 and ∇L = (mean x, 1) ≠ 0, so no step reaches a zero gradient."""
    model, (x, y) = least_squares(0.5, torch.zeros(3, dtype=F64))
    # (the 0·square term only keeps a second-order graph for autograd's Hessian-vector products)
    point = classify_critical_point(model, lambda out, target: out.mean() + 0.0 * out.square().mean(), (x, y))
    assert point.kind == "not_critical" and math.isinf(point.newton_step)
    assert point.null_gradient == pytest.approx(1.0, rel=1e-12)  # mean x = 0 on these points: ∇L = e_c
    assert "no step removes the gradient" in point.reason
    words = where_words([LandscapeSnapshot(0, 0, point.loss, point.grad_norm, 0.0, critical=point, full=True)])
    assert words == [
        f"not at a critical point: |grad L| {point.grad_norm:.2g} is above its rounding level {point.gtol:.2g} "
        "and no step within the parameter scale is certified to reach one"
    ]


def test_diverging_student_is_not_critical_and_named_as_diverging():
    model, data, saved = tanh_net("diverging_tanh.pt")
    point = classify_critical_point(model, MSE, data)
    # The run: L creeps down, ‖θ‖ grows; the quadratic model's zero-gradient point is far in
    # relative terms even though ‖∇L‖ looks small against λ_max·‖θ‖.
    assert point.kind == "not_critical" and point.newton_ratio > 1e-6
    verdict = divergence_verdict(saved["history"].tolist(), model)
    assert verdict.diverging and verdict.reason.startswith("diverging: no critical point at finite distance")
    assert verdict.norm_growth > 1e-3 and verdict.elasticity < 1e-3
    pair = verdict.pairs[0]
    weights = model[2].weight.detach()[0]
    i, j = pair.neurons
    assert weights[i] * weights[j] < 0 and min(abs(weights[i]), abs(weights[j])) > 100  # large, opposite
    assert pair.cancellation < 1e-3 and pair.distance < 1e-2
    assert str(pair.neurons) in verdict.reason


def test_converging_run_is_not_diverging():
    """Gradient descent on the T1 least-squares problem: ‖θ‖ grows monotonically towards ‖θ*‖, L falls fast."""
    model, data = least_squares(0.5, torch.tensor([0.3, -0.1, -0.5], dtype=F64))
    x, y = data
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    history = []
    for step in range(60):
        optimizer.zero_grad()
        loss = MSE(model(x), y)
        loss.backward()
        history.append(
            (step, float(loss.detach()), float(torch.cat([p.detach().flatten() for p in model.parameters()]).norm()))
        )
        optimizer.step()
    verdict = divergence_verdict(history, model)
    assert not verdict.diverging and verdict.norm_growth > 1e-3 and verdict.elasticity > 1e-3  # growing, not creeping
    assert not divergence_verdict(history[:2]).diverging  # too few snapshots to judge
    with pytest.raises(ValueError, match="window"):
        divergence_verdict(history, window=2)
    with pytest.raises(ValueError, match="min_growth"):
        divergence_verdict(history, min_growth=math.nan)


def test_seed5_near_zero_neurons_are_near_redundant_and_explain_the_nullity():
    model, data, _ = tanh_net("demo_seed5.pt")
    report = neuron_redundancy(model, data)
    near = {finding.neurons for finding in report.near_redundant}
    assert near == {(2,), (4,)} and not report.redundant  # |a| ≈ 1.2e-9: not exact at tol 1e-10
    assert all(f.rule == "zero output weight" and f.fit_change < 1e-16 for f in report.near_redundant)
    assert "NEAR-REDUNDANT" in str(report) and "no verified function-level merge" not in str(report)
    point = classify_critical_point(model, MSE, data)
    check = redundancy_nullity_check(model, MSE, data, report)
    # Two near-zero output weights: d + 1 = 3 null directions each (theory §4.5, A1), all measured.
    assert point.critical and point.nullity == 6 and check.measured_nullity == 6
    assert check.predicted_nullity == 6 and check.unexplained_nullity == 0 and not check.inconsistent
    assert contradictions(point, report, check) == ()
    # Without near-redundancy the same numbers are the false counterexample, and the check says so.
    strict = neuron_redundancy(model, data, near_rtol=0.0)
    strict_check = redundancy_nullity_check(model, MSE, data, strict)
    flagged = contradictions(point, strict, strict_check)
    assert [c.pair for c in flagged] == ["efficient vs non-isolated"] and "6 unexplained" in flagged[0].reason


def test_contradiction_index_zero_beside_a_certainly_negative_eigenvalue():
    """T2b origin (λ = ±√21) moved 1e-9 along the negative eigenvector: critical by its Newton step; a zero
    band inflated with the gradient (c_grad = 1e7) hides λ = −4.58 from the index, not from the count."""
    x = torch.tensor([[1, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]], dtype=F64)
    y = (x @ torch.tensor([1.0, -2.0, 0.5], dtype=F64) + 0.3)[:, None]
    model = nn.Sequential(nn.Linear(3, 1, bias=False), nn.Identity(), nn.Linear(1, 1, bias=False)).double()
    with torch.no_grad():
        model[0].weight.zero_()
        model[2].weight.zero_()
    hessian = dense_truth(model, MSE, (x, y))
    values, vectors = torch.linalg.eigh(hessian)
    with torch.no_grad():
        model[0].weight += 1e-9 * vectors[:3, 0]
        model[2].weight += 1e-9 * vectors[3:, 0]
    point = classify_critical_point(model, MSE, (x, y), symmetries=False, c_grad=1e7)
    assert point.critical and point.morse_index == 0 and point.negative_count == 1
    assert values[0] == pytest.approx(-math.sqrt(21), rel=1e-12)
    assert [c.pair for c in contradictions(point)] == ["index 0 vs certainly negative eigenvalue"]
    assert contradictions(classify_critical_point(model, MSE, (x, y), symmetries=False)) == ()  # index 1
    # By default the GL(1) tangent (w, −a) of this tiny θ has a Rayleigh quotient of order 1 (Lemma S: only
    # at an exact critical point is it 0), so 10·ε_sym inflates τ the same way; the check names it.
    assert [c.pair for c in contradictions(classify_critical_point(model, MSE, (x, y)))] == [
        "index 0 vs certainly negative eigenvalue"
    ]


def test_contradiction_critical_beside_diverging():
    model, data, saved = tanh_net("diverging_tanh.pt")
    loose = classify_critical_point(model, MSE, data, rtol_grad=1e-2)  # a tolerance that lets it pass
    verdict = divergence_verdict(saved["history"].tolist(), model)
    assert loose.critical and verdict.diverging
    assert [c.pair for c in contradictions(loose, divergence=verdict)] == ["critical vs diverging"]


def test_contradiction_redundant_beside_nondegenerate():
    # Verdicts of two different θ put side by side (as when redundancy and Hessian come from different
    # snapshots): a verified redundancy (a_3 = 0) beside the positive definite Hessian of the a_3 = 1 network.
    # At one θ the pair cannot arise from rounding: the null directions of a merge verified to tol have
    # curvature ≤ ~tol², far inside the zero band.
    planted, data = planted_tanh(output_weight=0.0)
    active, _ = planted_tanh(output_weight=1.0)
    labels = (data[0], active(data[0]).detach())
    report = neuron_redundancy(planted, data)
    point = classify_critical_point(active, MSE, labels)
    assert report.redundant and point.kind == "nondegenerate_min"
    assert [c.pair for c in contradictions(point, report)] == ["redundant vs nondegenerate"]


def test_contradiction_nullity_below_prediction():
    # The report of the planted network (a_3 = 0: the three e_{u_3} are null) applied to the network with
    # a_3 = 1 at its own zero loss, where those directions have curvature ~1: 3 predicted, none measured.
    planted, data = planted_tanh(output_weight=0.0)
    report = neuron_redundancy(planted, data)
    assert not redundancy_nullity_check(planted, MSE, data, report).inconsistent  # right for its own network
    active, _ = planted_tanh(output_weight=1.0)
    labels = (data[0], active(data[0]).detach())
    check = redundancy_nullity_check(active, MSE, labels, report)
    assert check.critical and check.inconsistent and check.measured_nullity < check.predicted_nullity
    assert [c.pair for c in contradictions(nullity=check)] == ["nullity below prediction"]


@pytest.mark.parametrize("activation", [nn.Tanh(), nn.ReLU()], ids=["tanh", "relu"])
def test_diverging_pairs_are_every_pair_within_the_thresholds(activation):
    """The pair search screens all pairs at once (issue 25: a pairwise Python loop took 4.7 s for 512
    neurons); against the definition pair by pair on a net with planted duplicate, mirrored and near pairs."""
    from torch_landscape.verdicts import _diverging_pairs

    torch.manual_seed(0)
    m = 60
    net = nn.Sequential(nn.Linear(3, m), activation, nn.Linear(m, 2)).double()
    with torch.no_grad():
        for i, j, sign, jitter in ((0, 1, 1.0, 1e-3), (2, 3, -1.0, 1e-9), (4, 5, 1.0, 0.2), (6, 7, 1.0, 0.0)):
            net[0].weight[j] = sign * net[0].weight[i] + jitter
            net[0].bias[j] = sign * net[0].bias[i]
            net[2].weight[:, i] = 40.0
            net[2].weight[:, j] = -sign * 40.0 * (1 + jitter)
    found = _diverging_pairs(net, 0.05, 0.05, 10.0, None)
    W, b, A = net[0].weight.detach(), net[0].bias.detach(), net[2].weight.detach()
    U = torch.cat([W, b[:, None]], dim=1)
    weights = torch.linalg.vector_norm(A, dim=0)
    expected = set()
    for i in range(m):
        for j in range(i + 1, m):
            for sign in (1.0, -1.0) if isinstance(activation, nn.Tanh) else (1.0,):
                distance = torch.linalg.vector_norm(U[i] - sign * U[j]) / (U[i].norm() + U[j].norm())
                cancellation = torch.linalg.vector_norm(A[:, i] + sign * A[:, j]) / (weights[i] + weights[j])
                leverage = torch.minimum(weights[i], weights[j]) / weights.median()
                if distance <= 0.05 and cancellation <= 0.05 and leverage >= 10:
                    expected.add((i, j))
    assert {pair.neurons for pair in found} == expected
    assert {(0, 1), (6, 7)} <= expected and (4, 5) not in expected
    assert ((2, 3) in expected) == isinstance(activation, nn.Tanh)  # mirrored: tanh only


def test_the_stability_threshold_is_said_crossed_only_between_resolved_readings():
    """Plain SGD at lr = 0.1 (threshold 2/lr = 20): λ_max 30 ± 0.1 is certainly unstable; −6e3 ± 1e5 (a Hessian
    of norm 1e20 on its way to overflow, rounding at 1e4) says nothing; 10 ± 0.1 is certainly back below."""

    def at(step, value, bound):
        spectrum = Spectrum(torch.tensor([value]), torch.tensor([bound]), True, 3, "lanczos", 5)
        return LandscapeSnapshot(step, 5, 1.0, 1.0, 0.0, learning_rate=0.1, spectrum=spectrum)

    unstable, drowned, stable = at(1, 30.0, 0.1), at(2, -6e3, 1e5), at(3, 10.0, 0.1)
    assert events(None, unstable) == [
        "stability ratio 1.5 > 1 at step 1: the optimizer is unstable along the top curvature direction at this "
        "learning rate (edge of stability)"
    ]
    assert events(unstable, drowned) == [] and events(drowned, stable) == []
    assert events(unstable, stable) == ["stability ratio 0.5 at step 3: back below the edge of stability"]
    assert events(at(4, 20.5, 1.0), unstable) == events(None, unstable)  # 1.025 ± 0.05 was not certainly above
