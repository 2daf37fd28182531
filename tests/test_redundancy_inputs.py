"""Issue #12 for redundancy and critical points: bad arguments named early, the one-tuple (X,), a verification
tolerance in the precision of the model, and the nullity cross-check on a HessianOperator without new work."""

import copy
import math

import pytest
import torch
from torch import nn

from torch_landscape import classify_critical_point, neuron_redundancy, redundancy_nullity_check
from torch_landscape.curvature.operators import HessianOperator
from torch_landscape.objective import Objective
from torch_landscape.verdicts import divergence_verdict

F64 = torch.float64


def relu_net(dtype: torch.dtype) -> tuple[nn.Module, torch.Tensor]:
    """ReLU net (d = 3, m = 6) with neuron 5 = 2.5 × neuron 1, planted in float64 and then cast to ``dtype``."""
    generator = torch.Generator().manual_seed(11)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 1)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=F64))
        model[0].weight[5] = 2.5 * model[0].weight[1]
        model[0].bias[5] = 2.5 * model[0].bias[1]
    x = torch.randn(200, 3, generator=generator, dtype=F64)
    return model.to(dtype), x.to(dtype)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "1e-10", True])
def test_neuron_redundancy_rejects_a_bad_tol(bad):
    model, x = relu_net(F64)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        neuron_redundancy(model, x, tol=bad)
    with pytest.raises(ValueError, match="near_rtol must be a finite number >= 0"):
        neuron_redundancy(model, x, near_rtol=bad)


def test_neuron_redundancy_accepts_the_one_tuple_of_a_tensor_dataset():
    model, x = relu_net(F64)
    (batch,) = list(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=len(x)))
    assert isinstance(batch, (list, tuple)) and len(batch) == 1
    from_tuple, from_tensor = neuron_redundancy(model, batch), neuron_redundancy(model, x)
    assert from_tuple.findings == from_tensor.findings and from_tuple.effective_width == 5


def test_float32_planted_multiple_is_verified_at_the_float32_tolerance():
    """float32 rounding of neuron 5 = 2.5 × neuron 1 moves the merged outputs by a few ε₃₂·Σ|a_iφ_i| ≈ 1e-6,
    so tol = 1e-10 can never verify it; √ε₃₂ = 3.5e-4 does, with two decades of margin."""
    model, x = relu_net(torch.float32)
    report = neuron_redundancy(model, x)
    assert report.tol == pytest.approx(math.sqrt(torch.finfo(torch.float32).eps), rel=1e-12)
    claim = [f for f in report.claims if f.rule == "positive multiple"]
    assert claim and claim[0].neurons == (1, 5) and report.effective_width == 5
    assert claim[0].max_output_change < 1e-2 * report.tolerance.probes  # the margin stated above
    assert "tol 3.5e-04" in str(report)
    # Independent check of the claim: the merged float32 model against the original, in float64.
    with torch.no_grad():
        merged = report.merged_model().double()
        change = float((merged(x.double()) - copy.deepcopy(model).double()(x.double())).abs().max())
    assert change <= report.tolerance.data
    strict = neuron_redundancy(model, x, tol=1e-10)
    assert (
        model[0].weight.dtype == torch.float32 and strict.effective_width == 6
    )  # the "NOT verified" at function level
    assert not [f for f in strict.claims if f.level == "function"]
    assert neuron_redundancy(relu_net(F64)[0], relu_net(F64)[1]).tol == 1e-10  # float64 keeps 1e-10


@pytest.mark.parametrize(
    "argument, value, error",
    [
        ("probe", "yes", TypeError),
        ("k", True, ValueError),
        ("k", 0, ValueError),
        ("max_profiles", -1, ValueError),
        ("method", "exact", ValueError),
        ("tol", math.nan, ValueError),
        ("rtol_grad", -1.0, ValueError),
        ("rtol_zero", math.inf, ValueError),
        ("atol_zero", -1e-3, ValueError),
        ("length_min", 0.0, ValueError),
        ("learning_rate", 0.0, ValueError),
    ],
)
def test_classify_critical_point_rejects_bad_arguments(argument, value, error):
    model = nn.Linear(2, 1).double()
    data = (torch.randn(5, 2, dtype=F64), torch.randn(5, 1, dtype=F64))
    with pytest.raises(error, match=argument):
        classify_critical_point(model, nn.MSELoss(), data, **{argument: value})


def test_divergence_verdict_rejects_malformed_history():
    with pytest.raises(ValueError, match="finite"):
        divergence_verdict([(0, 1.0, 1.0), (1, math.nan, 1.0), (2, 0.5, 1.0)])


def test_nullity_check_on_an_operator_reuses_its_decomposition(monkeypatch):
    model, x = relu_net(F64)
    data = (x, model(x).detach())
    operator = HessianOperator(Objective(model, nn.MSELoss(), data, dtype=F64))
    operator.eigh()
    products = operator.num_hvp
    expected = redundancy_nullity_check(model, nn.MSELoss(), data)

    size = operator.shape[0]

    def guarded(original):
        def decompose(matrix, *args, **kwargs):
            if matrix.shape[-2:] == (size, size):
                raise AssertionError("the Hessian was decomposed again")
            return original(matrix, *args, **kwargs)

        return decompose

    monkeypatch.setattr(torch.linalg, "eigh", guarded(torch.linalg.eigh))
    monkeypatch.setattr(torch.linalg, "eigvalsh", guarded(torch.linalg.eigvalsh))
    check = redundancy_nullity_check(operator)
    assert operator.num_hvp == products  # nothing assembled again
    assert (check.measured_nullity, check.predicted_nullity, check.critical) == (
        expected.measured_nullity,
        expected.predicted_nullity,
        expected.critical,
    )
    assert torch.equal(check.eigenvalues, expected.eigenvalues)
    with pytest.raises(TypeError, match="loss_fn and data"):
        redundancy_nullity_check(model)


def test_merged_model_is_the_network_as_analysed():
    """#13: training the model after the analysis changes neither the merge nor the rest of the model."""
    model, x = relu_net(F64)
    model = nn.Sequential(nn.Linear(3, 3).double(), *model)  # a preprocessing layer outside the shallow part
    report = neuron_redundancy(model, x, layers=("1", "2", "3"))
    expected = report.merged_model()(x).detach()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert torch.equal(report.merged_model()(x).detach(), expected)
