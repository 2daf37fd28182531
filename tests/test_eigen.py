import pytest
import torch
from torch import nn

from helpers import dense_truth, regression_data, shallow, train
from test_hessian import T1_X, T1_Y, t1_model
from torch_landscape import HessianOperator, hessian_eigenvalues


def test_linear_regression_eigenvalues_are_exact():
    for method in ("dense", "lanczos"):
        spectrum = hessian_eigenvalues(t1_model(), nn.MSELoss(), (T1_X, T1_Y), k=3, which="both", method=method)
        torch.testing.assert_close(spectrum.eigenvalues, torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64), rtol=1e-12, atol=0)
        assert spectrum.converged and spectrum.method == method


@pytest.fixture(scope="module")
def small_net():
    """~200 parameters (10-16-1 tanh, n = 512), trained so the bulk sits near 0 with a few negatives."""
    data = regression_data(512, 10)
    model = train(shallow(10, 16, nn.Tanh()), data, steps=300)
    truth = torch.linalg.eigvalsh(dense_truth(model, nn.MSELoss(), data))
    return model, data, truth


@pytest.fixture(scope="module")
def medium_net():
    """~3000 parameters (30-96-1 ReLU, n = 512), trained briefly."""
    data = regression_data(512, 30)
    model = train(shallow(30, 96, nn.ReLU()), data, steps=100)
    operator = HessianOperator(model, nn.MSELoss(), data)
    truth = torch.linalg.eigvalsh(operator.to_dense())
    return operator, truth


def _assert_matches(spectrum, truth, which, k, relative):
    expected = {"smallest": truth[:k], "largest": truth[-k:], "both": torch.cat([truth[:k], truth[-k:]])}[which]
    scale = truth.abs().max()
    error = (spectrum.eigenvalues - expected).abs()
    assert spectrum.converged
    assert (error <= relative * scale).all(), (error / scale).max()
    # The reported bounds must hold, with room only for the rounding of the dense reference itself.
    assert (error <= spectrum.error_bounds + 1e-13 * scale).all()


@pytest.mark.parametrize("which", ["largest", "smallest", "both"])
def test_lanczos_matches_dense_on_200_parameters(small_net, which):
    model, data, truth = small_net
    spectrum = hessian_eigenvalues(model, nn.MSELoss(), data, k=5, which=which, method="lanczos", tol=1e-10)
    _assert_matches(spectrum, truth, which, 5, 1e-8)


@pytest.mark.parametrize("which, block_size", [("largest", 4), ("both", 1)])
def test_lanczos_matches_dense_on_3000_parameters(medium_net, which, block_size):
    operator, truth = medium_net
    assert 2900 < operator.shape[0] < 3100
    # Residual bounds ≤ 1e-8·max|θ| imply eigenvalue errors ≤ 1e-8 of the spectral scale.
    spectrum = hessian_eigenvalues(operator, k=5, which=which, method="lanczos", tol=1e-8, block_size=block_size)
    _assert_matches(spectrum, truth, which, 5, 1e-8)


def test_dense_returns_the_requested_ends_with_bounds(small_net):
    model, data, truth = small_net
    spectrum = hessian_eigenvalues(model, nn.MSELoss(), data, k=4, which="both", method="dense", return_eigenvectors=True)
    _assert_matches(spectrum, truth, "both", 4, 1e-12)
    vectors = spectrum.eigenvectors
    torch.testing.assert_close(vectors.T @ vectors, torch.eye(8, dtype=torch.float64), rtol=0, atol=1e-12)
    auto = hessian_eigenvalues(model, nn.MSELoss(), data, k=4)
    assert auto.method == "dense"  # 193 parameters: below the dense threshold


def test_unconverged_bounds_still_cover_an_eigenvalue(small_net):
    model, data, truth = small_net
    spectrum = hessian_eigenvalues(model, nn.MSELoss(), data, k=5, which="smallest", method="lanczos", tol=1e-12, max_hvp=25)
    assert not spectrum.converged and spectrum.num_hvp <= 25
    # A residual bound says: some eigenvalue lies within ‖Hv − θv‖ of θ.
    distance = (spectrum.eigenvalues[:, None] - truth[None, :]).abs().min(dim=1).values
    assert (distance <= spectrum.error_bounds).all()


def test_warm_start_saves_products_and_is_deterministic(small_net):
    model, data, truth = small_net
    operator = HessianOperator(model, nn.MSELoss(), data)
    cold = hessian_eigenvalues(operator, k=3, which="largest", method="lanczos", tol=1e-8, return_eigenvectors=True)
    again = hessian_eigenvalues(operator, k=3, which="largest", method="lanczos", tol=1e-8)
    assert torch.equal(cold.eigenvalues, again.eigenvalues) and cold.num_hvp == again.num_hvp
    warm = hessian_eigenvalues(operator, k=3, which="largest", method="lanczos", tol=1e-8, warm_start=cold.eigenvectors)
    assert warm.num_hvp < cold.num_hvp
    torch.testing.assert_close(warm.eigenvalues, truth[-3:], rtol=1e-7, atol=0)


def test_spectrum_is_invariant_under_neuron_permutation(small_net):
    model, data, truth = small_net
    permuted = shallow(10, 16, nn.Tanh())
    order = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        permuted[0].weight.copy_(model[0].weight[order])
        permuted[0].bias.copy_(model[0].bias[order])
        permuted[2].weight.copy_(model[2].weight[:, order])
        permuted[2].bias.copy_(model[2].bias)
    spectrum = hessian_eigenvalues(permuted, nn.MSELoss(), data, k=193 // 2, method="dense")
    torch.testing.assert_close(spectrum.eigenvalues, torch.cat([truth[:96], truth[-96:]]), rtol=0, atol=1e-12 * truth.abs().max())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "k must be"),
        ({"k": 10_000}, "k must be"),
        ({"which": "top"}, "which must be"),
        ({"method": "arpack"}, "method must be"),
        ({"tol": 0.0}, "tol must be"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    arguments = {"k": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        hessian_eigenvalues(t1_model(), nn.MSELoss(), (T1_X, T1_Y), **arguments)
