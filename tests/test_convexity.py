"""PL and one-point convexity against closed forms (docs/theory.md §2, §3, T1, T10 estimator units)."""

import copy
import math

import pytest
import torch
from torch import nn

from helpers import dense_truth, shallow
from test_critical import linear_regression, teacher_problem
from torch_landscape.convexity import (
    PLTracker,
    aitken_extrapolation,
    one_point_convexity,
    one_point_convexity_profile,
    pl_ratio,
)

F64 = torch.float64
MSE = nn.MSELoss()
HESSIAN_T1 = torch.diag(torch.tensor([8.0, 0.5, 2.0], dtype=F64))  # T1: H = diag(8, 0.5, 2) in (w1, w2, c)
LOSS_STAR_T1 = 1.890625


def shifted(model: nn.Linear, delta) -> nn.Linear:
    moved = copy.deepcopy(model)
    with torch.no_grad():
        moved.weight += torch.tensor(delta[:2], dtype=F64)
        moved.bias += delta[2]
    return moved


@pytest.mark.parametrize("t", [0.5, -2.0])
def test_t1_pl_ratio_is_exact_along_the_axes(t):
    model, data = linear_regression()
    # L − L* = ½·λ·t² ≥ 0.0625 here, so rounding of L (~4e-16) enters μ at ~1e-14: 1e-12 relative (T1).
    assert pl_ratio(shifted(model, (0.0, t, 0.0)), MSE, data, LOSS_STAR_T1) == pytest.approx(0.5, rel=1e-12)
    assert pl_ratio(shifted(model, (t, 0.0, 0.0)), MSE, data, LOSS_STAR_T1) == pytest.approx(8.0, rel=1e-12)
    assert pl_ratio(shifted(model, (0.0, 0.0, t)), MSE, data, LOSS_STAR_T1) == pytest.approx(2.0, rel=1e-12)


def test_t1_pl_ratio_near_the_minimum_and_at_it():
    model, data = linear_regression()
    # t = 1e-3: L − L* = 2.5e-7, and rounding of L (4e-16) limits μ to ~2e-9 relative.
    assert pl_ratio(shifted(model, (0.0, 1e-3, 0.0)), MSE, data, LOSS_STAR_T1) == pytest.approx(0.5, rel=1e-8)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        delta = torch.randn(3, generator=generator, dtype=F64).tolist()
        assert 0.5 - 1e-12 <= pl_ratio(shifted(model, delta), MSE, data, LOSS_STAR_T1) <= 8 + 1e-12
    # At θ*, L − L* is rounding: NaN, never ±inf.
    assert math.isnan(pl_ratio(model, MSE, data, LOSS_STAR_T1))


def test_pl_ratio_rejects_loss_star_above_the_loss():
    model, data = linear_regression()
    with pytest.raises(ValueError, match="loss_star above the loss"):
        pl_ratio(model, MSE, data, LOSS_STAR_T1 + 1e-6)
    with pytest.raises(TypeError, match="loss_star"):
        pl_ratio(model, MSE, data)


def test_t1_one_point_convexity_is_the_rayleigh_quotient():
    model, data = linear_regression()
    reference = torch.tensor([-0.5625, 0.25, 0.625], dtype=F64)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        delta = torch.randn(3, generator=generator, dtype=F64)
        result = one_point_convexity(shifted(model, delta.tolist()), MSE, data, reference, align=False)
        rayleigh = float(delta @ HESSIAN_T1 @ delta / (delta @ delta))
        # ⟨∇L, θ − θ*⟩ = δᵀHδ exactly for a quadratic: 1e-12 relative (T1).
        assert result.value == pytest.approx(rayleigh, rel=1e-12)
        assert result.value >= 0.5 - 1e-12
        assert result.distance == pytest.approx(float(torch.linalg.vector_norm(delta)), rel=1e-12)
        gradient = HESSIAN_T1 @ delta
        assert result.cosine == pytest.approx(float(gradient @ delta / (gradient.norm() * delta.norm())), rel=1e-12)
    assert math.isnan(one_point_convexity(model, MSE, data, reference, align=False).value)


def test_one_point_convexity_aligns_a_permuted_teacher():
    """Student = teacher with permuted, sign-flipped neurons plus a perturbation δ: alignment must see
    ‖δ‖, and μ must be the local curvature δᵀHδ/‖δ‖² (to O(‖δ‖))."""
    teacher, data = teacher_problem(nn.Tanh())
    student = copy.deepcopy(teacher)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        order = [2, 0, 1]
        student[0].weight.copy_(teacher[0].weight[order])
        student[0].bias.copy_(teacher[0].bias[order])
        student[2].weight.copy_(teacher[2].weight[:, order])
        student[0].weight[1] *= -1
        student[0].bias[1] *= -1
        student[2].weight[:, 1] *= -1
        delta = [1e-5 * torch.randn(p.shape, generator=generator, dtype=F64) for p in student.parameters()]
        for p, d in zip(student.parameters(), delta, strict=True):
            p += d
    delta = torch.cat([d.reshape(-1) for d in delta])
    aligned = one_point_convexity(student, MSE, data, teacher)
    # The aligned reference is the permuted, flipped teacher: distance ‖δ‖ to rounding of O(1) entries.
    assert aligned.distance == pytest.approx(float(delta.norm()), rel=1e-9)
    assert aligned.assignment == (2, 0, 1)
    hessian = dense_truth(student, MSE, data)
    # ⟨∇L(θ* + δ), δ⟩ = δᵀH δ + O(‖δ‖³): relative error O(‖δ‖) ≈ 1e-5 times third-derivative ratios.
    assert aligned.value == pytest.approx(float(delta @ hessian @ delta / (delta @ delta)), rel=1e-3)
    unaligned = one_point_convexity(student, MSE, data, teacher, align=False)
    assert unaligned.distance > 1.0 and aligned.value > 0


def test_one_point_convexity_against_a_smaller_teacher():
    """Over-parameterised student: teacher neuron 0 split in two; the projection sees only the noise."""
    teacher, data = teacher_problem(nn.Tanh())
    student = shallow(3, 4, nn.Tanh(), seed=3)
    with torch.no_grad():
        student[0].weight.copy_(teacher[0].weight[[0, 1, 2, 0]])
        student[0].bias.copy_(teacher[0].bias[[0, 1, 2, 0]])
        a = teacher[2].weight[0]
        student[2].weight.copy_(torch.stack([0.3 * a[0], a[1], a[2], 0.7 * a[0]])[None])
        student[2].bias.copy_(teacher[2].bias)
    exact = one_point_convexity(student, MSE, data, teacher)
    assert exact.distance <= 1e-12 and math.isnan(exact.value)
    assert exact.assignment == (0, 1, 2, 0)


def test_aitken_is_exact_on_a_geometric_sequence():
    sequence = [0.3 + 2 * 0.9**t for t in range(60)]
    for t in (1, 10, 30, 58):
        # The cancellation-free form loses ~ε·L/|Δ²L| ≈ 1e-13 at t = 58 (Δ² ≈ 2e-5): 1e-12 (T10).
        assert aitken_extrapolation(*sequence[t - 1 : t + 2]) == pytest.approx(0.3, abs=1e-12)
    assert math.isnan(aitken_extrapolation(1.0, 1.0, 1.0))  # no convergence to extrapolate
    assert math.isnan(aitken_extrapolation(1.0, 2.0, 3.0))  # increasing: ρ = 1
    assert math.isnan(aitken_extrapolation(1.0, 0.5, 0.9))  # oscillating: ρ < 0


def exact_pl_run(mu=0.7, rho=0.9, loss_star=0.3, steps=80, every=1):
    """L_t = L* + 2ρ^t with ‖∇L‖² = 2μ(L_t − L*): PL with constant exactly μ along the run."""
    for step in range(0, steps, every):
        gap = 2 * rho**step
        yield step, loss_star + gap, 2 * mu * gap


def test_tracker_with_known_loss_star_is_exact():
    tracker = PLTracker(0.3, learning_rate=0.01)
    for step, loss, grad_sq in exact_pl_run(every=2):
        estimate = tracker.update(step, loss, grad_sq)
    # L − L* ≥ 2·0.9^78 ≈ 5e-4 and rounding of L is 1e-16: μ to ~1e-12 relative.
    assert estimate.mu == pytest.approx(0.7, rel=1e-10)
    assert estimate.mu_running_min == pytest.approx(0.7, rel=1e-10)
    assert estimate.contraction == pytest.approx(0.9, rel=1e-10)  # per step, over evaluations 2 steps apart
    assert estimate.loss_star_aitken == pytest.approx(0.3, abs=1e-10)
    assert estimate.lojasiewicz_slope == pytest.approx(1.0, abs=1e-9)  # PL ⇔ slope 1
    assert estimate.eta_t_ratio == pytest.approx(0.01 * 78 * 2 * 0.7, rel=1e-10)
    assert estimate.mu_sensitivity is None and not estimate.loss_star_estimated


def test_tracker_estimated_loss_star_is_conservative():
    """T10: once min L − Δ is below the true L*, μ is underestimated, never overestimated."""
    tracker = PLTracker()
    for step, loss, grad_sq in exact_pl_run():
        estimate = tracker.update(step, loss, grad_sq)
    final_gap = 2 * 0.9**79
    margin = 1e-3 * (2.3 - (0.3 + final_gap))  # Δ = 1e-3·(L_0 − min L) > min L − L* here
    assert estimate.loss_star_estimated
    assert estimate.loss_star == pytest.approx(0.3 + final_gap - margin, rel=1e-12) and estimate.loss_star < 0.3
    assert 0 < estimate.mu < 0.7
    assert estimate.mu_sensitivity[0] == estimate.mu and estimate.mu_sensitivity[1] < estimate.mu
    # Post hoc, with the final L̂*: every μ_t is at most the true 0.7 (rounding: 1e-12 relative).
    history = tracker.mu_history()
    assert int(torch.isnan(history).sum()) == 0
    assert float(history.max()) <= 0.7 * (1 + 1e-12)
    # ... and exact with the true L*.
    assert torch.allclose(tracker.mu_history(0.3), torch.full((80,), 0.7, dtype=F64), rtol=1e-10, atol=0)


def test_tracker_nan_at_loss_star_and_rejects_losses_below_it():
    tracker = PLTracker(0.3)
    estimate = tracker.update(0, 0.3, 0.0)
    assert math.isnan(estimate.mu) and math.isnan(estimate.mu_running_min)
    assert math.isnan(tracker.update(1, 0.3 * (1 + 1e-16), 1e-30).mu)  # rounding level: NaN, not 5e14
    with pytest.raises(ValueError, match="loss_star above the loss"):
        tracker.update(2, 0.29, 1.0)


def test_tracker_lojasiewicz_slope_of_polynomial_convergence():
    """‖∇L‖² = (L − L*)^{3/2}: growth of order p = 4 (θ_Ł = 3/4), slope 2θ_Ł = 1.5."""
    tracker = PLTracker(0.0)
    for step in range(1, 200):
        gap = step**-2.0
        estimate = tracker.update(step, gap, gap**1.5)
    assert estimate.lojasiewicz_slope == pytest.approx(1.5, abs=1e-10)


def test_tracker_state_dict_round_trip():
    first, second = PLTracker(window=5), PLTracker(window=5)
    run = list(exact_pl_run(steps=30))
    for step, loss, grad_sq in run[:-1]:
        first.update(step, loss, grad_sq)
    second.load_state_dict(first.state_dict())
    assert second.update(*run[-1]) == first.update(*run[-1])
    assert torch.equal(second.mu_history(), first.mu_history())


def test_one_point_profile_on_a_quadratic_is_the_rayleigh_quotient():
    model, data = linear_regression()
    state = torch.random.get_rng_state()
    profile = one_point_convexity_profile(model, MSE, data, num_directions=64, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # a private generator
    # ρ(r, D) = DᵀHD for a quadratic, at every radius: in [0.5, 8], and the same at every r (1e-9:
    # the gradient at θ* is rounding, ~1e-16, divided by r ≥ 1e-3·‖θ*‖/√3).
    assert float(profile.values.min()) >= 0.5 - 1e-9 and float(profile.values.max()) <= 8 + 1e-9
    assert torch.allclose(profile.values[0], profile.values[2], rtol=1e-9, atol=0)
    assert profile.quantiles.shape == (3, 4) and float(profile.frac_bad.max()) < 0.05
    assert "proxy" in str(profile)


def test_convexity_functions_leave_the_model_alone():
    teacher, data = teacher_problem(nn.ReLU())
    student = shallow(3, 3, nn.ReLU(), seed=4)
    student.train()
    before = [p.detach().clone() for p in student.parameters()]
    one_point_convexity(student, MSE, data, teacher)
    pl_ratio(student, MSE, data, 0.0)
    one_point_convexity_profile(student, MSE, data, teacher, num_directions=4, quotient=True)
    assert student.training and all(p.grad is None for p in student.parameters())
    assert all(torch.equal(p, b) for p, b in zip(student.parameters(), before, strict=True))


def test_tracker_lojasiewicz_slope_needs_enough_points():
    tracker = PLTracker(0.0)
    for step in range(1, 7):  # six valid points: the last half holds three, too few for a rate
        estimate = tracker.update(step, step**-2.0, step**-3.0)
    assert math.isnan(estimate.lojasiewicz_slope)
    estimate = tracker.update(7, 7**-2.0, 7**-3.0)
    estimate = tracker.update(8, 8**-2.0, 8**-3.0)
    assert estimate.lojasiewicz_slope == pytest.approx(1.5, abs=1e-10)
