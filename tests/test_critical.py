"""Critical-point classification against the closed forms of docs/theory.md §5 (T1, T2, T3, T6)."""

import math

import pytest
import torch
from torch import nn

from helpers import shallow
from test_symmetry import quadratic_student
from torch_landscape.critical.classify import classify_critical_point

F64 = torch.float64
MSE = nn.MSELoss()


def linear_regression(spread: float = 0.5):
    """T1: f = w·x + c on four points; H = (2/n) X̃ᵀX̃ = diag(8, 2·spread², 2) at every θ."""
    x = torch.tensor([[2, spread], [2, -spread], [-2, spread], [-2, -spread]], dtype=F64)
    y = torch.tensor([[1.0], [-2.0], [0.5], [3.0]], dtype=F64)
    model = nn.Linear(2, 1).double()
    solution = torch.linalg.lstsq(torch.cat([x, torch.ones(4, 1, dtype=F64)], 1), y).solution[:, 0]
    with torch.no_grad():
        model.weight.copy_(solution[:2][None])
        model.bias.copy_(solution[2:])
    return model, (x, y)


def hadamard_data():
    """T2: X = columns 2–4 of the 4×4 Hadamard matrix (XᵀX = 4I, X ⟂ 1), y = Xβ* + 0.3."""
    hadamard = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=F64)
    x = hadamard[:, 1:]
    beta = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    return x, (x @ beta + 0.3)[:, None], beta


def linear_network(weight: torch.Tensor, output: torch.Tensor) -> nn.Sequential:
    h = weight.shape[0]
    model = nn.Sequential(nn.Linear(3, h, bias=False), nn.Identity(), nn.Linear(h, 1, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(weight)
        model[2].weight.copy_(output)
    return model


def test_t1_linear_regression_minimum_is_nondegenerate():
    model, data = linear_regression()
    assert torch.allclose(model.weight.detach(), torch.tensor([[-0.5625, 0.25]], dtype=F64), rtol=0, atol=1e-14)
    point = classify_critical_point(model, MSE, data, learning_rate=0.1)
    assert point.kind == "nondegenerate_min"
    assert (point.morse_index, point.nullity, point.symmetry_rank) == (0, 0, 0)
    # Exact eigenvalues {0.5, 2, 8}; eigh of a 3×3 diagonal matrix: 1e-12 relative (theory T1).
    assert torch.allclose(point.eigenvalues, torch.tensor([0.5, 2.0, 8.0], dtype=F64), rtol=1e-12, atol=0)
    assert point.loss == pytest.approx(1.890625, rel=1e-12)
    assert point.edge_of_stability == pytest.approx(8 * 0.1 / 2, rel=1e-12)
    assert "strongly convex" in point.reason and "nondegenerate_min" in str(point)


def test_t1_away_from_the_minimum_is_not_critical():
    model, data = linear_regression()
    with torch.no_grad():
        model.bias += 0.1
    point = classify_critical_point(model, MSE, data)
    assert point.kind == "not_critical" and not point.critical
    assert point.grad_norm == pytest.approx(2 * 0.1, rel=1e-12)  # ∇L = H·δ = H_cc · 0.1 e_c, H_cc = 2
    assert "do not apply" in point.reason and point.morse_index is None and point.nullity is None
    # H = diag(8, 0.5, 2) and θ − θ* = 0.1 e_c: the exact Newton step is 0.1 (up to the rounding-level slack).
    assert point.newton_step == pytest.approx(0.1, rel=1e-9) and point.negative_count == 0


def test_t1_eigenvalue_near_the_band_is_ambiguous():
    # spread² = 1e-7 puts λ = 2e-7 within a decade of τ = 1e-8·8: the nullity depends on the tolerance.
    model, data = linear_regression(spread=math.sqrt(1e-7))
    point = classify_critical_point(model, MSE, data)
    assert point.ambiguous
    nullities = [count[2] for count in point.counts]
    assert nullities[0] == 0 and nullities[2] == 1
    assert "ambiguous" in point.reason


def test_t2a_linear_network_minimum_modulo_gl1():
    x, y, beta = hadamard_data()
    model = linear_network((beta / 1.5)[None], torch.tensor([[1.5]], dtype=F64))
    point = classify_critical_point(model, MSE, (x, y))
    assert point.kind == "min_mod_symmetry"
    assert point.loss == pytest.approx(0.09, rel=1e-12)
    # Theory T2 tolerance 1e-10 (absolute) on {0, 4.5, 4.5, 9.16667} and the quotient {4.5, 4.5, 9.16667}.
    expected = torch.tensor([0.0, 4.5, 4.5, 2 * (1.5**2 + float(beta @ beta) / 1.5**2)], dtype=F64)
    assert expected[3] == pytest.approx(9.16667, abs=1e-5)
    assert torch.allclose(point.eigenvalues, expected, rtol=0, atol=1e-10)
    assert torch.allclose(point.quotient_eigenvalues, expected[1:], rtol=0, atol=1e-10)
    assert (point.nullity, point.quotient_nullity, point.symmetry_rank) == (1, 0, 1)
    assert point.null_alignment < 1e-6  # the null vector is (w, −a) itself
    assert point.sym_leak <= 1e-12  # Lemma S at an exact critical point: rounding only
    assert point.quotient_lambda_min == pytest.approx(4.5, abs=1e-10)


@pytest.mark.parametrize("h", [1, 2])
def test_t2b_origin_is_a_strict_saddle_of_index_h(h):
    x, y, _ = hadamard_data()
    point = classify_critical_point(linear_network(torch.zeros(h, 3), torch.zeros(1, h)), MSE, (x, y))
    assert point.kind == "strict_saddle"
    assert point.morse_index == h and point.nullity == h * 2  # 0 with multiplicity h(d − 1)
    root21 = math.sqrt(21.0)  # ‖g_β‖ = 2‖β*‖ = √21 = 4.58258
    expected = torch.tensor([-root21] * h + [0.0] * (2 * h) + [root21] * h, dtype=F64)
    assert torch.allclose(point.eigenvalues, expected, rtol=0, atol=1e-10)


def teacher_problem(activation: nn.Module, n: int = 200, seed: int = 0):
    """T3: n = 200, d = 3, m = 3, W, b, a ~ N(0, 1) (seeded), c = 0.3, labels from the teacher itself."""
    generator = torch.Generator().manual_seed(seed)
    model = shallow(3, 3, activation)
    with torch.no_grad():
        for p in (model[0].weight, model[0].bias, model[2].weight):
            p.copy_(torch.randn(p.shape, generator=generator, dtype=F64))
        model[2].bias.fill_(0.3)
        x = torch.randn(n, 3, generator=generator, dtype=F64)
        y = model(x)
    return model, (x, y)


@pytest.mark.parametrize("activation", [nn.Tanh(), nn.Sigmoid(), nn.Softplus(), nn.GELU()], ids=str)
def test_t3_teacher_is_a_nondegenerate_minimum(activation):
    model, data = teacher_problem(activation)
    point = classify_critical_point(model, MSE, data)
    assert point.kind == "nondegenerate_min", point.reason
    assert point.loss <= 1e-28 and point.grad_norm <= 1e-13  # theory T3 (labels are the teacher's outputs)
    assert point.lambda_min > 0 and not point.ambiguous
    assert len(point.eigenvalues) == 16


def test_relu_teacher_is_a_minimum_modulo_rescaling():
    """A ReLU network's rescaling directions are always flat: H alone says 'degenerate'; the quotient
    Hessian shows the strong convexity transverse to the orbit."""
    model, data = teacher_problem(nn.ReLU())
    point = classify_critical_point(model, MSE, data)
    assert point.kind == "min_mod_symmetry", point.reason
    assert (point.nullity, point.symmetry_rank, point.quotient_nullity) == (3, 3, 0)
    assert point.null_alignment < 1e-6
    assert classify_critical_point(model, MSE, data, symmetries=False).kind == "degenerate"


def test_lanczos_path_agrees_with_dense():
    model, data = teacher_problem(nn.Tanh())
    dense = classify_critical_point(model, MSE, data)
    lanczos = classify_critical_point(model, MSE, data, method="lanczos", k=3)
    assert lanczos.method == "lanczos" and lanczos.kind == dense.kind
    # k = 3 from each end of 16 eigenvalues; Lanczos stops at residual 1e-9·max|θ|, and the refined
    # bound makes isolated eigenvalues far more accurate: 1e-8 relative (theory T10 dense vs Lanczos).
    assert len(lanczos.eigenvalues) == 6
    assert torch.allclose(lanczos.eigenvalues[:3], dense.eigenvalues[:3], rtol=1e-8, atol=0)
    assert torch.allclose(lanczos.eigenvalues[3:], dense.eigenvalues[-3:], rtol=1e-8, atol=0)
    assert "counts among" in lanczos.reason

    x, y, beta = hadamard_data()
    model = linear_network((beta / 1.5)[None], torch.tensor([[1.5]], dtype=F64))
    point = classify_critical_point(model, MSE, (x, y), method="lanczos", k=1)
    assert point.kind == "min_mod_symmetry"
    assert "nullity = k: only a lower bound" in point.reason  # one eigenvalue from each end, and it is 0
    assert point.quotient_eigenvalues.tolist() == pytest.approx([4.5, 2 * (1.5**2 + 5.25 / 1.5**2)], abs=1e-10)


# (k, d, r, n, nullity kd − min(n, D_r), orbit dimension kr − r(r+1)/2), docs/theory.md T6.
QUADRATIC = [(4, 3, 3, 40, 6, 6), (4, 3, 3, 4, 8, 6), (4, 3, 2, 40, 7, 5), (5, 3, 1, 40, 12, 4), (3, 3, 3, 40, 3, 3)]


@pytest.mark.parametrize("k,d,r,n,nullity,orbit", QUADRATIC)
def test_t6_quadratic_nullities(k, d, r, n, nullity, orbit):
    model, data = quadratic_student(k, d, r, n)
    point = classify_critical_point(model, MSE, data)
    assert (point.nullity, point.symmetry_rank) == (nullity, orbit)
    assert point.quotient_nullity == nullity - orbit
    assert not point.ambiguous
    assert point.kind == ("min_mod_symmetry" if nullity == orbit else "degenerate")
    if point.kind == "degenerate":
        assert "profiles not run" in point.reason


def test_t6_null_profile_finds_quartic_growth():
    """r < d: the null directions outside the orbit grow like t⁴ (theory T6: slope 4.0 ± 0.1)."""
    model, data = quadratic_student(4, 3, 2, 40)
    point = classify_critical_point(model, MSE, data, profiles=True)
    assert point.degenerate_kind == "degenerate_min_higher_order"
    assert len(point.profiles) == 2
    for profile in point.profiles:
        assert profile.verdict == "higher_order" and profile.order == pytest.approx(4.0, abs=0.1)


@pytest.mark.slow
def test_t6_null_profile_flat_under_interpolation():
    """n < D_r: the extra null directions are tangent to the interpolating set (theory T6)."""
    model, data = quadratic_student(4, 3, 3, 4)
    point = classify_critical_point(model, MSE, data, profiles=True)
    assert point.degenerate_kind == "nonisolated_min"
    assert all(profile.verdict == "flat" for profile in point.profiles)


def test_classification_leaves_model_and_global_rng_alone():
    model, data = teacher_problem(nn.ReLU())
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    state = torch.random.get_rng_state()
    classify_critical_point(model, MSE, data, profiles=True)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_t2a_on_cuda():
    x, y, beta = hadamard_data()
    model = linear_network((beta / 1.5)[None], torch.tensor([[1.5]], dtype=F64)).cuda()
    point = classify_critical_point(model, MSE, (x.cuda(), y.cuda()))
    assert point.kind == "min_mod_symmetry"
    assert point.quotient_eigenvalues.tolist() == pytest.approx([4.5, 4.5, 9.1666666666667], abs=1e-10)


@pytest.mark.parametrize("activation", [nn.Tanh(), nn.ReLU()], ids=["tanh", "relu"])
def test_lanczos_classification_reuses_a_given_spectrum(activation):
    """Issue 25: one Krylov solve serves the spectrum and the classification. Given the spectrum at both ends,
    the classification solves nothing more for H (for ReLU only the quotient, started from its vectors) and
    reaches the verdict of the dense path, with H's eigenvalues those given."""
    from torch_landscape import HessianOperator, hessian_eigenvalues

    model, data = teacher_problem(activation)
    dense = classify_critical_point(model, MSE, data)
    operator = HessianOperator(model, MSE, data)
    spectrum = hessian_eigenvalues(operator, k=3, which="both", method="lanczos", tol=1e-9, return_eigenvectors=True)
    solved = operator.num_hvp
    given = classify_critical_point(operator, method="lanczos", k=3, spectrum=spectrum)
    alone = HessianOperator(model, MSE, data)
    again = classify_critical_point(alone, method="lanczos", k=3)
    assert given.kind == again.kind == dense.kind, (given.reason, dense.reason)
    assert (given.morse_index, given.nullity) == (again.morse_index, again.nullity)
    assert torch.equal(given.eigenvalues, spectrum.eigenvalues)
    # The quotient's extremes to the same tolerance as a second cold solve finds them (1e-9 relative).
    scale = float(dense.eigenvalues.abs().max())
    torch.testing.assert_close(given.quotient_eigenvalues, again.quotient_eigenvalues, rtol=0, atol=1e-8 * scale)
    # Without the spectrum, the classification pays for H's solve again (the same solve: same k, tol, seed);
    # with it only for the Newton step, the quotient (warm-started, no dearer than cold) and the tangents.
    used, cold = operator.num_hvp - solved, alone.num_hvp
    assert used == cold - spectrum.num_hvp if isinstance(activation, nn.Tanh) else used <= cold - spectrum.num_hvp
    largest = hessian_eigenvalues(operator, k=1, which="largest")
    with pytest.raises(ValueError, match="both ends"):
        classify_critical_point(operator, method="lanczos", spectrum=largest)
