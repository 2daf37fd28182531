import pytest
import torch
from scipy.stats import wasserstein_distance
from torch import nn

from helpers import dense_truth, regression_data, shallow, train
from torch_landscape import HessianOperator, hessian_eigenvalues, hessian_trace, spectral_density


@pytest.fixture(scope="module")
def trained():
    data = regression_data(256, 6)
    model = train(shallow(6, 12, nn.Tanh()), data, steps=200)
    return model, data, dense_truth(model, nn.MSELoss(), data)


def test_exact_and_dense_traces_equal_the_dense_truth(trained):
    model, data, truth = trained
    for method in ("exact", "dense"):
        estimate = hessian_trace(model, nn.MSELoss(), data, method=method)
        assert estimate.standard_error == 0.0 and estimate.method == method
        # Sums of P diagonal entries each exact to ~1e-16 relative.
        assert estimate.value == pytest.approx(float(truth.trace()), rel=1e-12)
    assert hessian_trace(model, nn.MSELoss(), data).method == "exact"  # auto prefers the closed form


def test_hutchpp_is_within_four_standard_errors(trained):
    model, data, truth = trained
    operator = HessianOperator(model, nn.MSELoss(), data)
    exact = float(truth.trace())
    # Over 200 seeds at this budget |error| > 4 s.e. happened 0.5% of the time (the s.e. of 33 samples
    # is itself a little noisy); seeds are fixed so the check is reproducible.
    for seed in range(5):
        estimate = hessian_trace(operator, method="hutchpp", num_hvp=99, seed=seed)
        assert estimate.num_hvp <= 99 and estimate.standard_error > 0
        assert abs(estimate.value - exact) <= 4 * estimate.standard_error


def test_exact_trace_refuses_non_shallow_models():
    deep = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    with pytest.raises(ValueError, match="one-hidden-layer"):
        hessian_trace(deep, nn.MSELoss(), regression_data(10, 2), method="exact")
    with pytest.raises(ValueError, match="method must be"):
        hessian_trace(deep, nn.MSELoss(), regression_data(10, 2), method="girard")


def test_dense_density_is_the_exact_spectrum(trained):
    model, data, truth = trained
    density = spectral_density(model, nn.MSELoss(), data, method="dense", num_points=2000)
    eigenvalues = torch.linalg.eigvalsh(truth)
    torch.testing.assert_close(density.nodes, eigenvalues, rtol=0, atol=1e-12 * eigenvalues.abs().max())
    assert density.weights.sum().item() == pytest.approx(1.0, abs=1e-12)
    # Gaussian mixture on a grid reaching 5σ past the extreme nodes: the mass left out is < 1e-6.
    assert torch.trapezoid(density.density, density.grid).item() == pytest.approx(1.0, abs=1e-4)
    counts, edges = density.histogram(bins=20)
    # The edges start and end at the nodes, which differ from eigvalsh's values by rounding (checked above).
    expected = torch.histogram(eigenvalues.clamp(edges[0], edges[-1]), bins=edges).hist / len(eigenvalues)
    torch.testing.assert_close(counts, expected, rtol=0, atol=1e-12)


def test_slq_density_is_close_to_the_exact_spectrum(trained):
    model, data, truth = trained
    eigenvalues = torch.linalg.eigvalsh(truth)
    density = spectral_density(model, nn.MSELoss(), data, method="slq", num_probes=4, num_steps=40)
    assert density.method == "slq" and density.num_hvp <= 4 * 40
    assert density.weights.sum().item() == pytest.approx(1.0, abs=1e-10)
    # Wasserstein-1 of the quadrature measure against the spectral measure, relative to the spread;
    # measured ~5e-3 here (PyHessian's SLQ: 3e-4…2e-2 in shared/measured.md).
    distance = wasserstein_distance(density.nodes.numpy(), eigenvalues.numpy(), density.weights.numpy())
    assert distance / float(eigenvalues.max() - eigenvalues.min()) < 2e-2


def test_block_quadrature_is_gaussian_on_a_planted_spectrum():
    from test_operators import planted
    from torch_landscape.curvature.estimators import _block_quadrature

    values = torch.cat([torch.tensor([4.0, 3.0, -1.5]), torch.linspace(-0.5, 1.0, 117)]).double()
    operator = planted(values, seed=4)
    probes, steps, seed = 3, 5, 7
    nodes, weights = _block_quadrature(operator, probes, steps, seed)
    assert len(nodes) == probes * steps and weights.sum().item() == pytest.approx(1.0, abs=1e-13)
    # The same start block as the solver draws; the quadrature depends only on its span.
    start = torch.randn(120, probes, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    V = torch.linalg.qr(start)[0]
    # Block Gauss quadrature is exact for polynomials of degree < 2·steps: Σ_j w_j θ_j^p = tr(Vᵀ H^p V)/b.
    power = torch.eye(120, dtype=torch.float64)
    for degree in range(2 * steps):
        expected = torch.trace(V.T @ power @ V) / probes
        moment = (weights * nodes**degree).sum()
        # Rounding of a degree-9 moment with |λ| ≤ 4: ~1e-15·4^9 relative to the largest term.
        assert abs(float(moment - expected)) <= 1e-11 * 4.0**degree, degree
        power = power @ operator.matrix


def test_density_reuses_the_quadrature_of_a_cold_lanczos_solve(trained):
    """Issue 25: a full evaluation solved for the spectrum and then ran its own SLQ. A Lanczos solve from a
    random start without restart is that quadrature already: the density from it costs no product."""
    model, data, truth = trained
    eigenvalues = torch.linalg.eigvalsh(truth)
    operator = HessianOperator(model, nn.MSELoss(), data)
    spectrum = hessian_eigenvalues(operator, k=3, which="both", method="lanczos", tol=1e-6)
    assert spectrum.quadrature is not None and len(spectrum.quadrature[0]) == spectrum.num_hvp
    before = operator.num_hvp
    density = spectral_density(operator, method="slq", spectrum=spectrum)
    assert operator.num_hvp == before and density.num_hvp == 0
    assert density.weights.sum().item() == pytest.approx(1.0, abs=1e-10)
    # One probe over as many steps as the solve took: W1 within the tolerance of the 4-probe SLQ test above.
    distance = wasserstein_distance(density.nodes.numpy(), eigenvalues.numpy(), density.weights.numpy())
    assert distance / float(eigenvalues.max() - eigenvalues.min()) < 2e-2
    warm = hessian_eigenvalues(operator, k=3, which="both", method="lanczos", warm_start=torch.ones(truth.shape[0]))
    assert warm.quadrature is None  # a warm start is not a random probe: its quadrature would be biased
