"""The operator protocol, the Hessian kinds the factory picks, the quotient operator, and the shared Lanczos
on synthetic operators whose eigenvalues are planted exactly."""

import copy

import pytest
import torch
from torch import nn

from helpers import dense_truth, regression_data, shallow
from torch_landscape import HessianOperator
from torch_landscape.curvature.eigen import lanczos_spectrum
from torch_landscape.curvature.operators import (
    AutogradHessian,
    LinearOperator,
    MatrixOperator,
    QuotientOperator,
    StructuredHessian,
)
from torch_landscape.curvature.symmetry import quotient_basis


def planted(values: torch.Tensor, seed: int = 0) -> MatrixOperator:
    """Q diag(values) Qᵀ with a random orthogonal Q: the eigenvalues are exactly ``values``."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(values), len(values), generator=generator, dtype=torch.float64))
    matrix = (q * values) @ q.T
    return MatrixOperator((matrix + matrix.T) / 2)


def test_hessians_follow_the_protocol_and_the_factory_picks_the_kind():
    data = regression_data(40, 3)
    net = shallow(3, 5, nn.Tanh())
    deep = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    for model, kind in ((net, StructuredHessian), (deep, AutogradHessian)):
        operator = HessianOperator(model, nn.MSELoss(), data)
        assert type(operator) is kind and isinstance(operator, (HessianOperator, LinearOperator))
        truth = dense_truth(model, nn.MSELoss(), data)
        block = torch.randn(operator.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        # Products and the assembled matrix against the independent torch.func Hessian; float64 rounding of
        # sums over 40 samples and P ≤ 50 terms stays below 1e-12 of the largest entry.
        scale = float(truth.abs().max())
        torch.testing.assert_close(operator.matmat(block), truth @ block, rtol=0, atol=1e-12 * scale * 3)
        torch.testing.assert_close(operator.to_dense(), truth, rtol=0, atol=1e-12 * scale)
        assert operator.num_hvp == 3 + (0 if kind is StructuredHessian else operator.shape[0])


def test_a_hessian_operator_can_be_copied():
    operator = HessianOperator(shallow(3, 4, nn.Tanh()), nn.MSELoss(), regression_data(20, 3))
    dense = operator.to_dense()
    clone = copy.deepcopy(operator)
    assert type(clone) is StructuredHessian and torch.equal(clone.to_dense(), dense)
    # After products through its kept gradient graph, which the copy rebuilds for itself.
    deep = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    operator = HessianOperator(deep, nn.MSELoss(), regression_data(20, 3))
    vector = torch.ones(operator.shape[0], dtype=torch.float64)
    product = operator @ vector
    assert torch.equal(copy.deepcopy(operator) @ vector, product)
    with pytest.raises(TypeError, match="loss_fn and data"):
        HessianOperator(shallow(3, 4, nn.Tanh()))


def test_matrix_operator_refuses_a_non_symmetric_matrix():
    with pytest.raises(ValueError, match="symmetric"):
        MatrixOperator(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))


def test_quotient_operator_is_the_compressed_matrix():
    operator = planted(torch.linspace(-1.0, 3.0, 12, dtype=torch.float64))
    tangents = torch.randn(12, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    basis = quotient_basis(tangents, torch.zeros(12, dtype=torch.float64))
    quotient = QuotientOperator(operator, basis)
    assert quotient.shape == (10, 10) and isinstance(quotient, LinearOperator)
    # B = Q_⊥ formed column by column; H_q = Bᵀ H B.
    complement = basis.extend(torch.eye(10, dtype=torch.float64))
    torch.testing.assert_close(complement.T @ complement, torch.eye(10, dtype=torch.float64), rtol=0, atol=1e-14)
    torch.testing.assert_close(quotient.to_dense(), complement.T @ operator.matrix @ complement, rtol=0, atol=1e-13)
    assert (complement.T @ tangents).abs().max() < 1e-13


@pytest.mark.parametrize(
    "name, values",
    [
        # a cluster of three near-equal top eigenvalues, a few separated negative ones, a bulk
        (
            "clustered",
            torch.cat(
                [torch.tensor([5.0, 5.0 - 1e-3, 5.0 - 2e-3, -1.0, -0.9, -0.8, -0.7]), torch.linspace(-0.5, 1.0, 143)]
            ),
        ),
        # an exactly repeated eigenvalue (multiplicity 4) at both ends
        ("repeated", torch.cat([torch.full((4,), 3.0), torch.full((4,), -2.0), torch.linspace(-1.0, 1.0, 142)])),
        # a negative definite spectrum: separated ends around a bulk
        (
            "negative",
            -torch.cat([torch.tensor([5.0, 4.0, 3.0, 2.5, 0.01, 0.02, 0.03, 0.04]), torch.linspace(0.1, 1.0, 142)]),
        ),
    ],
)
@pytest.mark.parametrize("block_size", [1, 4])
def test_thick_restarted_lanczos_finds_planted_eigenvalues(name, values, block_size):
    values = values.double()
    truth = torch.sort(values).values
    operator = planted(values, seed=2)
    spectrum = lanczos_spectrum(operator, 4, "both", tol=1e-10, block_size=block_size, max_basis=24, max_hvp=3000)
    # More products than basis vectors: the basis was compressed (thick restart) at least once.
    assert spectrum.converged and spectrum.num_hvp > 24
    scale = float(truth.abs().max())
    if name == "repeated" and block_size == 1:
        # One start vector spans one direction of each eigenspace: the copies of a repeated eigenvalue are
        # found only with a block at least as wide as the multiplicity. Each reported value must still be
        # within its bound of an eigenvalue, and the extremes are found.
        distance = (spectrum.eigenvalues[:, None] - truth[None, :]).abs().min(dim=1).values
        assert (distance <= spectrum.error_bounds).all()
        assert abs(spectrum.lambda_min + 2.0) <= 1e-10 * scale and abs(spectrum.lambda_max - 3.0) <= 1e-10 * scale
        return
    expected = torch.cat([truth[:4], truth[-4:]])
    error = (spectrum.eigenvalues - expected).abs()
    # Bounds ≤ 1e-10·max|λ| were requested; the errors must be inside the reported bounds (plus the dense
    # eigenvalues' own float64 rounding, ~1e-15 relative).
    assert (error <= spectrum.error_bounds + 1e-14 * scale).all(), (name, error, spectrum.error_bounds)
    assert float(spectrum.error_bounds.max()) <= 1e-10 * scale * 1.01 + 1e-13 * scale


def test_products_above_the_limit_use_the_structure_when_it_is_at_hand(monkeypatch):
    """Above STRUCTURED_PRODUCT_LIMIT a one-hidden-layer net's products go through the kept gradient graph,
    unless its structure is built already (for L and ∇L, or the exact trace): then no graph is built at all.
    Both against the jacrev truth (float64 rounding of sums over 40 samples: 1e-12 of the largest entry)."""
    monkeypatch.setattr("torch_landscape.curvature.operators.STRUCTURED_PRODUCT_LIMIT", 10)
    data = regression_data(40, 3)
    model = shallow(3, 5, nn.Tanh())
    truth = dense_truth(model, nn.MSELoss(), data)
    block = torch.randn(truth.shape[0], 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    bare, warm = HessianOperator(model, nn.MSELoss(), data), HessianOperator(model, nn.MSELoss(), data)
    warm.gradient  # noqa: B018  (the structure, built for L and ∇L)
    for operator, graph in ((bare, True), (warm, False)):
        product = operator.matmat(block)
        assert (operator._graph is not None) == graph
        torch.testing.assert_close(product, truth @ block, rtol=0, atol=1e-12 * float(truth.abs().max()) * 3)
