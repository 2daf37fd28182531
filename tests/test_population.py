"""The Gaussian-input ReLU population loss (docs/theory.md §9) against Monte Carlo, finite samples and closed forms.

Monte Carlo truths use independent draws x ~ N(0, I) and report their standard error (s.e.); each comparison
is within 5 s.e. per entry: with a few hundred entries compared, a correct formula exceeds 5 s.e. somewhere
with probability below 1e-3 (normal tails), and the draws are seeded, so the test is deterministic.
"""

import math

import pytest
import torch
from torch import nn
from torch.func import jacrev

from torch_landscape import (
    HessianOperator,
    classify_critical_point,
    hessian_eigenvalues,
    one_point_convexity,
    pl_ratio,
)
from torch_landscape.curvature.operators import AutogradHessian
from torch_landscape.population import GaussianReLUObjective, arccos_kernel, gaussian_relu_loss, relu_network

D, M, K = 4, 3, 2
SAMPLES = 100_000


@pytest.fixture(scope="module")
def problem():
    """A generic student (W, a) and teacher (V, b): random, not orthonormal, output weights not 1."""
    generator = torch.Generator().manual_seed(3)
    W, V = (torch.randn(rows, D, generator=generator, dtype=torch.float64) for rows in (M, K))
    a = 1 + 0.5 * torch.randn(M, generator=generator, dtype=torch.float64)
    b = 1 + 0.5 * torch.randn(K, generator=generator, dtype=torch.float64)
    return W, a, V, b


def draws(seed: int, n: int = SAMPLES) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def residual(x, W, a, V, b):
    return torch.relu(x @ W.T) @ a - torch.relu(x @ V.T) @ b


def within(estimate: torch.Tensor, truth: torch.Tensor, standard_error: torch.Tensor, k: float = 5.0) -> bool:
    return bool(((estimate - truth).abs() <= k * standard_error).all())


def test_kernel_is_the_second_moment_of_relu_features(problem):
    W, _, V, _ = problem
    x = draws(0)
    products = torch.relu(x @ W.T)[:, :, None] * torch.relu(x @ V.T)[:, None, :]  # (n, M, K)
    standard_error = products.std(dim=0) / math.sqrt(len(x))
    assert within(products.mean(dim=0), arccos_kernel(W, V), standard_error)
    # Closed forms: κ(w, w) = ‖w‖²/2, κ(w, −w) = 0, κ(w, v) = ‖w‖‖v‖/(2π) for orthogonal w, v.
    w = W[0]
    orthogonal = V[0] - (V[0] @ w) / (w @ w) * w
    values = arccos_kernel(w[None], torch.stack([w, -w, orthogonal]))[0]
    expected = torch.stack([w @ w / 2, torch.zeros(()), w.norm() * orthogonal.norm() / (2 * math.pi)])
    assert torch.allclose(values, expected, rtol=1e-14, atol=1e-15)


def test_loss_and_gradient_against_monte_carlo(problem):
    W, a, V, b = problem
    x = draws(1)
    r = residual(x, W, a, V, b)
    half_squares = 0.5 * r**2
    loss = gaussian_relu_loss(W, a, V, b)
    assert abs(float(loss) - float(half_squares.mean())) <= 5 * float(half_squares.std()) / math.sqrt(len(x))
    # ∇L = E[r ∇f] (the expectation of the per-sample gradients: ReLU is differentiable almost surely).
    active = (x @ W.T > 0).double()
    per_sample = torch.cat(
        [
            (r[:, None, None] * a[None, :, None] * active[:, :, None] * x[:, None, :]).flatten(1),
            r[:, None] * torch.relu(x @ W.T),
        ],
        dim=1,
    )
    gradient = jacrev(lambda w, out: gaussian_relu_loss(w, out, V, b), argnums=(0, 1))(W, a)
    gradient = torch.cat([gradient[0].reshape(-1), gradient[1]])
    assert within(per_sample.mean(dim=0), gradient, per_sample.std(dim=0) / math.sqrt(len(x)))


def test_hessian_against_monte_carlo_and_the_finite_sample_hessian(problem):
    """H = E[∇f∇fᵀ] + Σ_i a_i E[r δ(w_i·x) x xᵀ] (docs/theory.md §9.2): the first term is what autograd of the
    finite-sample loss converges to (relu″ = 0 there), the second lives on the kinks, and is sampled on the
    hyperplane w_i·x = 0: x given w_i·x = 0 is P_i x with P_i = I − ŵ_iŵ_iᵀ, and w_i·x has density
    1/(‖w_i‖√(2π)) at 0."""
    W, a, V, b = problem
    x = draws(2)
    n = len(x)
    jacobian = (a[None, :, None] * (x @ W.T > 0).double()[:, :, None] * x[:, None, :]).reshape(n, -1)
    outer = jacobian[:, :, None] * jacobian[:, None, :]
    estimate, variance = outer.mean(dim=0), outer.var(dim=0) / n

    def finite_sample_loss(flat):
        return 0.5 * residual(x, flat.view(M, D), a, V, b).pow(2).mean()

    # Dense autograd of the finite-sample objective is exactly the Gauss–Newton estimate (to rounding).
    finite = jacrev(jacrev(finite_sample_loss))(W.reshape(-1))
    assert torch.allclose(finite, estimate, rtol=1e-10, atol=1e-12)
    kinks = draws(3)  # independent draws, so that the variances of the two terms add
    for i in range(M):
        w = W[i]
        on_kink = kinks - torch.outer(kinks @ w, w) / (w @ w)
        terms = (a[i] * residual(on_kink, W, a, V, b))[:, None, None] * on_kink[:, :, None] * on_kink[:, None, :]
        terms = terms / (w.norm() * math.sqrt(2 * math.pi))
        block = slice(i * D, (i + 1) * D)
        estimate[block, block] += terms.mean(dim=0)
        variance[block, block] += terms.var(dim=0) / len(kinks)
    hessian = jacrev(jacrev(lambda flat: gaussian_relu_loss(flat.view(M, D), a, V, b)))(W.reshape(-1))
    assert within(estimate, hessian, variance.sqrt())
    # The kink term is not small here: without it the finite-sample Hessian misses the population one.
    assert not within(finite, hessian, variance.sqrt())


def test_hessian_at_parallel_and_identical_neurons_is_the_derivative_of_the_gradient():
    """κ is C² at parallel pairs: autograd's Hessian there (two copies of one neuron, and a neuron parallel to
    the teacher's) matches central differences of the gradient. The difference quotient errs by O(h) (the
    third derivative jumps at parallel pairs): 3e-7 measured at h = 1e-6, so 1e-5."""
    V = torch.eye(3, dtype=torch.float64)[:2]
    W = torch.stack(
        [0.5 * V[0] + 0.01 * torch.tensor([0, 0, 1.0]), 0.5 * V[0] + 0.01 * torch.tensor([0, 0, 1.0]), V[1]]
    )
    ones = torch.ones(3, dtype=torch.float64)

    def loss(flat):
        return gaussian_relu_loss(flat.view(3, 3), ones, V, ones[:2])

    theta = W.reshape(-1)
    hessian = jacrev(jacrev(loss))(theta)
    h = 1e-6
    columns = [
        (jacrev(loss)(theta + h * e) - jacrev(loss)(theta - h * e)) / (2 * h) for e in torch.eye(9, dtype=torch.float64)
    ]
    assert float((hessian - torch.stack(columns, dim=1)).abs().max()) < 1e-5


def test_zero_at_the_teacher_and_symmetric_under_permutations(problem):
    W, a, V, b = problem
    # At the teacher (any permutation of it) L = 0 up to rounding of the expanded square (terms ~‖v‖², ε·k²).
    assert abs(float(gaussian_relu_loss(V.flip(0), b.flip(0), V, b))) < 1e-14
    # Permuting the student's neurons (rows of W with their a_i) permutes θ: equal loss, the gradient and the
    # Hessian permuted alike.
    order = torch.tensor([2, 0, 1])
    index = (order[:, None] * D + torch.arange(D)).reshape(-1)  # θ = W.flatten(): neuron i owns D entries

    def loss(flat, out):
        return gaussian_relu_loss(flat.view(M, D), out, V, b)

    theta = W.reshape(-1)
    assert float(loss(theta[index], a[order])) == pytest.approx(float(loss(theta, a)), rel=1e-14)
    assert torch.allclose(jacrev(loss)(theta[index], a[order]), jacrev(loss)(theta, a)[index], rtol=1e-12, atol=1e-14)
    hessian = jacrev(jacrev(loss))(theta, a)
    assert torch.allclose(
        jacrev(jacrev(loss))(theta[index], a[order]), hessian[index][:, index], rtol=1e-12, atol=1e-14
    )


def test_the_objective_in_the_library_at_the_teacher():
    """Width k = k* at an orthonormal teacher, output weights frozen at 1: the population Hessian is E[∇f∇fᵀ],
    whose smallest eigenvalue is ¼ − 1/(2π) for every k ≤ d (docs/theory.md §9.3); the library's dense
    eigenvalues carry a bound of √P·ε·s, so 1e-13 absolute."""
    V = torch.linalg.qr(torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0].T
    objective = GaussianReLUObjective(relu_network(V), V)
    assert objective.names == ["0.weight"] and objective.num_parameters == 15
    operator = HessianOperator(objective)
    assert isinstance(operator, AutogradHessian)  # no samples to sum structured terms over
    truth = jacrev(jacrev(objective.loss))(objective.theta)
    assert torch.allclose(operator.to_dense(), truth, rtol=1e-13, atol=1e-15)
    point = classify_critical_point(objective)
    assert point.kind == "nondegenerate_min" and point.critical and point.grad_norm < 1e-14
    assert point.lambda_min == pytest.approx(0.25 - 1 / (2 * math.pi), abs=1e-13)
    spectrum = hessian_eigenvalues(objective, k=2, which="smallest")
    assert float(spectrum.eigenvalues[0]) == pytest.approx(0.25 - 1 / (2 * math.pi), abs=1e-13)


def test_trainable_output_weights_have_the_rescaling_symmetry():
    """With a trainable, (w_i, a_i) → (γw_i, a_i/γ) leaves L unchanged (positive homogeneity, in the population
    as on data): at the teacher the library finds the k rescaling tangents as the only null directions."""
    V = torch.eye(4, dtype=torch.float64)[:3]
    objective = GaussianReLUObjective(relu_network(V, train_output=True), V)
    assert objective.names == ["0.weight", "2.weight"]
    point = classify_critical_point(objective)
    assert point.kind == "min_mod_symmetry" and (point.nullity, point.symmetry_rank) == (3, 3)
    assert point.quotient_nullity == 0


def test_pl_and_one_point_convexity_on_the_population_objective():
    """Away from the teacher the PL ratio and one-point convexity are the formulas of docs/theory.md §2.1 and
    §3.1 evaluated with the closed-form L and ∇L."""
    generator = torch.Generator().manual_seed(1)
    V = torch.eye(3, dtype=torch.float64)[:2]
    W = V + 0.3 * torch.randn(2, 3, generator=generator, dtype=torch.float64)
    objective = GaussianReLUObjective(relu_network(W), relu_network(V))
    loss = gaussian_relu_loss(W, torch.ones(2, dtype=torch.float64), V, torch.ones(2, dtype=torch.float64))
    gradient = jacrev(objective.loss)(objective.theta)
    assert pl_ratio(objective, loss_star=0.0) == pytest.approx(float(gradient @ gradient / (2 * loss)), rel=1e-12)
    convexity = one_point_convexity(objective, reference=V.reshape(-1), align=False)
    difference = objective.theta - V.reshape(-1)
    assert convexity.value == pytest.approx(float(gradient @ difference / (difference @ difference)), rel=1e-12)


@pytest.mark.parametrize(
    ("model", "teacher", "match"),
    [
        (
            nn.Sequential(nn.Linear(3, 2, bias=False), nn.Tanh(), nn.Linear(2, 1, bias=False)),
            torch.eye(3),
            "activation tanh",
        ),
        (nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1, bias=False)), torch.eye(3), "a hidden bias"),
        (relu_network(torch.eye(3)), torch.eye(4), "input dimension is 4"),
        (relu_network(torch.eye(3)), torch.ones(3), "k × d tensor"),
    ],
)
def test_bad_input_is_refused_with_the_fix(model, teacher, match):
    with pytest.raises(ValueError, match=match):
        GaussianReLUObjective(model, teacher)


def test_no_per_sample_loss():
    objective = GaussianReLUObjective(relu_network(torch.eye(2)), torch.eye(2))
    with pytest.raises(TypeError, match="no per-sample loss"):
        objective.loss_fn(torch.zeros(1), torch.zeros(1))


@pytest.mark.parametrize(("k", "d"), [(2, 3), (3, 3), (4, 6)])
def test_smallest_curvature_at_an_orthonormal_teacher(k, d):
    """docs/theory.md §9.3 (a): λ_min = ¼ − 1/(2π) with multiplicity k(k − 1)/2, eigenvectors (s, −s) on a pair of
    neurons, s = (v_i + v_j)/√2. Dense float64 eigenvalues err by ~√P·ε·max|λ| < 1e-14: band 1e-12."""
    V = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(k), dtype=torch.float64))[0][:k]
    ones = torch.ones(k, dtype=torch.float64)
    hessian = jacrev(jacrev(lambda flat: gaussian_relu_loss(flat.view(k, d), ones, V, ones)))(V.reshape(-1))
    values = torch.linalg.eigvalsh(hessian)
    smallest = 0.25 - 1 / (2 * math.pi)
    assert abs(float(values[0]) - smallest) < 1e-12
    assert int(((values - smallest).abs() < 1e-12).sum()) == k * (k - 1) // 2
    pair = torch.zeros(k, d, dtype=torch.float64)
    pair[0], pair[1] = (V[0] + V[1]) / 2, -(V[0] + V[1]) / 2  # (s, −s)/√2, unit length
    direction = pair.reshape(-1)
    assert float(direction @ hessian @ direction) == pytest.approx(smallest, abs=1e-12)
