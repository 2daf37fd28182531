"""Continuous-symmetry tangents and the quotient basis against closed forms (docs/theory.md §1.4, T2, T6, T10)."""

import pytest
import torch
from torch import nn
from torch.func import jacrev

from helpers import shallow
from torch_landscape.curvature.shallow import Square
from torch_landscape.curvature.symmetry import quotient_basis, symmetry_tangents
from torch_landscape.objective import Objective

F64 = torch.float64


def random_problem(activation: nn.Module, q: int = 1, bias: bool = True, seed: int = 0):
    """T10: n = 40, d = 3, m = 4 at random parameters (not a critical point)."""
    model = shallow(3, 4, activation, q=q, bias=bias, seed=seed)
    generator = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(40, 3, generator=generator, dtype=F64)
    y = torch.randn(40, q, generator=generator, dtype=F64)
    return model, (x, y)


def truth(objective: Objective):
    """Independent dense Hessian and gradient (reverse-over-reverse; see helpers.dense_truth)."""
    hessian = jacrev(jacrev(objective.loss))(objective.theta)
    return hessian, objective.loss_and_gradient()[1]


def rescaling_generator(objective: Objective, neuron: int) -> torch.Tensor:
    """diag(G′) of neuron i's rescaling, written out by hand: +1 on w_i and b_i, −1 on A_{:,i}."""
    mask = {name: torch.zeros(shape, dtype=F64) for name, shape in zip(objective.names, objective.shapes, strict=True)}
    mask["0.weight"][neuron] = 1.0
    if "0.bias" in mask:
        mask["0.bias"][neuron] = 1.0
    if "2.weight" in mask:
        mask["2.weight"][:, neuron] = -1.0
    return objective.flatten(mask)


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.LeakyReLU(0.2)], ids=["relu", "leaky_relu"])
@pytest.mark.parametrize("q", [1, 2])
def test_rescaling_tangents_satisfy_lemma_s_at_random_points(activation, q):
    model, data = random_problem(activation, q=q)
    objective = Objective(model, nn.MSELoss(), data, dtype=F64)
    tangents = symmetry_tangents(objective)
    hessian, gradient = truth(objective)
    assert tangents.count == 4
    scale = float(torch.linalg.matrix_norm(hessian, ord=2))
    for i in range(4):
        generator = rescaling_generator(objective, i)
        expected = generator * objective.theta  # v_i = G′θ
        # The library's tangents are exactly the hand-built ones (up to rounding of a copy: 0 error).
        assert torch.equal(tangents.vectors[:, i], expected)
        # Lemma S: H v = −G′ᵀ∇L at every θ; theory measured ~1e-15, 1e-12·‖H‖ leaves rounding room.
        residual = hessian @ expected + generator * gradient
        assert float(torch.linalg.vector_norm(residual)) <= 1e-12 * scale
        assert abs(float(gradient @ expected)) <= 1e-12


def test_rescaling_respects_frozen_output_weights_and_params_subsets():
    model, data = random_problem(nn.ReLU())
    with torch.no_grad():
        model[2].weight[0, 1] = 0.0
    model[2].weight.requires_grad_(False)
    objective = Objective(model, nn.MSELoss(), data, dtype=F64)
    # Frozen A: rescaling changes f, except for neuron 1 whose output weight is 0 (it is then free).
    tangents = symmetry_tangents(objective)
    assert tangents.count == 1
    w, b = model[0].weight.detach(), model[0].bias.detach()
    expected = objective.flatten(
        {
            "0.weight": torch.zeros_like(w).index_copy(0, torch.tensor([1]), w[1:2]),
            "0.bias": torch.zeros_like(b).index_copy(0, torch.tensor([1]), b[1:2]),
            "2.bias": torch.zeros(1, dtype=F64),
        }
    )
    assert torch.allclose(tangents.vectors[:, 0].abs(), expected.abs(), rtol=0, atol=1e-15)

    # θ = (W, A) with the hidden bias frozen at a non-zero value: rescaling would move b, so none.
    model, data = random_problem(nn.ReLU())
    assert symmetry_tangents(Objective(model, nn.MSELoss(), data, params=["2.weight", "0.weight"])).count == 0
    # ... frozen at zero, it is a symmetry again, in the layout of the subset (W then A).
    with torch.no_grad():
        model[0].bias.zero_()
    objective = Objective(model, nn.MSELoss(), data, params=["2.weight", "0.weight"], dtype=F64)
    tangents = symmetry_tangents(objective)
    assert objective.names == ["0.weight", "2.weight"]
    assert tangents.count == 4
    assert torch.equal(tangents.vectors[:, 2], rescaling_generator(objective, 2) * objective.theta)


def test_linear_network_gl_tangents_satisfy_lemma_s():
    model, data = random_problem(nn.Identity(), q=2)
    objective = Objective(model, nn.MSELoss(), data, dtype=F64)
    hessian, gradient = truth(objective)
    W, b, A = (objective.unflatten(objective.theta)[name] for name in ("0.weight", "0.bias", "2.weight"))
    tangents = symmetry_tangents(objective).vectors
    scale = float(torch.linalg.matrix_norm(hessian, ord=2))

    def generator(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """G′_M x = (M W_x, M b_x, −A_x M, 0) for W → GW, b → Gb, A → AG⁻¹."""
        p = objective.unflatten(x)
        return objective.flatten(
            {
                "0.weight": M @ p["0.weight"],
                "0.bias": M @ p["0.bias"],
                "2.weight": -p["2.weight"] @ M,
                "2.bias": torch.zeros(2, dtype=F64),
            }
        )

    manual = []
    for k in range(4):
        for j in range(4):
            M = torch.zeros(4, 4, dtype=F64)
            M[k, j] = 1.0
            v = generator(M, objective.theta)
            # G′_Mᵀ = G′_{Mᵀ} under the Euclidean inner product.
            residual = hessian @ v + generator(M.T, gradient)
            assert float(torch.linalg.vector_norm(residual)) <= 1e-12 * scale
            manual.append(v)
    manual = torch.stack(manual, dim=1)
    # Same span: U = [W b] is 4×4 of full rank, so all 16 generators act independently.
    assert tangents.shape[1] == 16
    assert torch.linalg.matrix_rank(torch.cat([manual, tangents], dim=1)) == 16


def quadratic_student(k: int, d: int, r: int, n: int, seed: int = 0):
    """T6: f(x) = Σ_j (w_j·x)², output weights frozen at 1, at a zero-loss point W = Q [W_t; 0]."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=F64)
    teacher = torch.randn(r, d, generator=generator, dtype=F64)
    rotation, _ = torch.linalg.qr(torch.randn(k, k, generator=generator, dtype=F64))
    model = nn.Sequential(nn.Linear(d, k, bias=False), Square(), nn.Linear(k, 1, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(rotation @ torch.cat([teacher, torch.zeros(k - r, d, dtype=F64)]))
        model[2].weight.fill_(1.0)
    model[2].weight.requires_grad_(False)
    return model, (x, ((x @ teacher.T) ** 2).sum(dim=1, keepdim=True))


@pytest.mark.parametrize("k,d,r", [(4, 3, 3), (4, 3, 2), (5, 3, 1), (3, 3, 3)])
def test_quadratic_orbit_tangents_are_null_and_have_orbit_dimension(k, d, r):
    model, data = quadratic_student(k, d, r, 40)
    objective = Objective(model, nn.MSELoss(), data, dtype=F64)
    hessian, _ = truth(objective)
    basis = quotient_basis(symmetry_tangents(objective).vectors, objective.theta)
    # dim{SW : S skew} at rank W = r is kr − r(r+1)/2 (docs/theory.md T6).
    assert basis.rank == k * r - r * (r + 1) // 2
    generator = torch.Generator().manual_seed(1)
    W = model[0].weight.detach()
    for _ in range(3):
        S = torch.randn(k, k, generator=generator, dtype=F64)
        tangent = ((S - S.T) @ W).reshape(-1)
        # ‖H(SW)‖/‖SW‖ at a zero-loss point: theory measured ~1e-14; 1e-12 leaves room.
        assert float(torch.linalg.vector_norm(hessian @ tangent)) <= 1e-12 * float(torch.linalg.vector_norm(tangent))
        # ... and SW lies in the span the library found.
        assert float(torch.linalg.vector_norm(basis.project(tangent))) <= 1e-12 * float(
            torch.linalg.vector_norm(tangent)
        )


def test_quotient_basis_is_orthonormal_complement_and_compresses():
    model, data = random_problem(nn.ReLU(), q=2)
    objective = Objective(model, nn.MSELoss(), data, dtype=F64)
    hessian, _ = truth(objective)
    tangents = symmetry_tangents(objective).vectors
    basis = quotient_basis(tangents, objective.theta)
    size = objective.num_parameters
    Q = basis.extend(torch.eye(size - basis.rank, dtype=F64))
    eye = torch.eye(size - basis.rank, dtype=F64)
    # Householder products are orthogonal to rounding: 1e-14 on a 26×22 matrix.
    assert torch.allclose(Q.T @ Q, eye, rtol=0, atol=1e-14)
    assert float((tangents.T @ Q).abs().max()) <= 1e-14 * float(tangents.abs().max())
    assert torch.allclose(basis.compress(hessian), Q.T @ hessian @ Q, rtol=0, atol=1e-13)
    assert torch.allclose(basis.restrict(Q), eye, rtol=0, atol=1e-14)
    x = torch.randn(size, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(basis.project(x), Q @ (Q.T @ x), rtol=0, atol=1e-13)


def test_no_tangents_without_a_known_continuous_symmetry():
    data = (torch.randn(10, 3, dtype=F64), torch.randn(10, 1, dtype=F64))
    tanh = shallow(3, 4, nn.Tanh())
    assert symmetry_tangents(Objective(tanh, nn.MSELoss(), data)).count == 0
    linear = nn.Linear(3, 1).double()
    result = symmetry_tangents(Objective(linear, nn.MSELoss(), data))
    assert result.count == 0 and "only through a one-hidden-layer net" in result.note
    deep = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    assert symmetry_tangents(Objective(deep, nn.MSELoss(), data)).count == 0

    class Doubled(nn.Module):
        """A forward that is not output(σ(hidden(x))): rescaling would still be a symmetry, but the tool
        cannot vouch for forwards it does not recognise."""

        def __init__(self):
            super().__init__()
            self.net = shallow(3, 4, nn.ReLU())
            self.scale = nn.Parameter(torch.full((), 2.0, dtype=F64))

        def forward(self, x):
            return self.scale * self.net(x)

    assert symmetry_tangents(Objective(Doubled(), nn.MSELoss(), data)).count == 0
    # θ = the shallow part only: the forward check is what rejects it.
    inner = ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    assert symmetry_tangents(Objective(Doubled(), nn.MSELoss(), data, params=inner)).count == 0


def test_zero_neurons_give_no_tangent():
    model, data = random_problem(nn.ReLU())
    with torch.no_grad():
        model[0].weight[3] = 0.0
        model[0].bias[3] = 0.0
        model[2].weight[0, 3] = 0.0
    # docs/theory.md §1.4: drop tangents with ‖v‖ ≤ 1e-12·max(‖θ‖, 1), e.g. all-zero neurons.
    assert symmetry_tangents(Objective(model, nn.MSELoss(), data)).count == 3


def test_quadratic_network_with_trainable_output_weights():
    """σ(z) = z², A trainable: rescaling of degree 2, (u_i, a_i) → (γu_i, a_i/γ²), and O(D) with
    D = diag(a). The O(D) maps depend on a, so Lemma S reads H v = −(∂v/∂θ)ᵀ∇L (differentiate
    L(Φ_c(θ)) = L(θ) in θ and c): checked with an independent Jacobian of the hand-written v(θ)."""
    model, data = random_problem(Square())
    objective = Objective(model, nn.MSELoss(), data, dtype=F64)
    hessian, gradient = truth(objective)
    scale = float(torch.linalg.matrix_norm(hessian, ord=2))

    def rescaling(theta: torch.Tensor, i: int) -> torch.Tensor:
        generator = rescaling_generator(objective, i)
        return torch.where(generator < 0, 2 * generator, generator) * theta  # diag(+1 on u_i, −2 on a_i) θ

    def orthogonal(theta: torch.Tensor, i: int, j: int) -> torch.Tensor:
        p = objective.unflatten(theta)
        a, e = p["2.weight"][0], torch.eye(4, dtype=F64)
        S = a[j] * torch.outer(e[i], e[j]) - a[i] * torch.outer(e[j], e[i])  # D S skew
        return objective.flatten(
            {
                "0.weight": S @ p["0.weight"],
                "0.bias": S @ p["0.bias"],
                "2.weight": torch.zeros_like(p["2.weight"]),
                "2.bias": torch.zeros_like(p["2.bias"]),
            }
        )

    manual = [lambda t, i=i: rescaling(t, i) for i in range(4)]
    manual += [lambda t, i=i, j=j: orthogonal(t, i, j) for i in range(4) for j in range(i + 1, 4)]
    theta = objective.theta
    for tangent in manual:
        v = tangent(theta)
        residual = hessian @ v + jacrev(tangent)(theta).T @ gradient
        assert float(torch.linalg.vector_norm(residual)) <= 1e-12 * scale
        assert abs(float(gradient @ v)) <= 1e-12
    library = symmetry_tangents(objective).vectors
    hand = torch.stack([tangent(theta) for tangent in manual], dim=1)
    assert library.shape[1] == 10
    assert torch.linalg.matrix_rank(torch.cat([hand, library], dim=1)) == torch.linalg.matrix_rank(hand) == 10
