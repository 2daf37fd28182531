"""Loss slices against independent ground truths: closed forms of a quadratic objective, planted flat
directions, direct loss evaluations of a model copy, and the dense torch.func Hessian."""

import copy
import math

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from torch import nn
from torch.func import jacrev
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from helpers import dense_truth, regression_data, shallow
from torch_landscape import (
    Direction,
    HessianOperator,
    Objective,
    eigenvector_direction,
    hessian_eigenvalues,
    landscape_slices,
    loss_slice,
    null_direction,
    random_direction,
    reference_direction,
)
from torch_landscape.slices import grid_cost, grid_size
from torch_landscape.writers.figures import slice_1d_figure, slice_2d_figure

EPS = torch.finfo(torch.float64).eps


def _linear_problem(at_minimum: bool):
    """A linear model with MSE: L is exactly quadratic in θ. Targets come from a planted θ*; the model
    sits at θ* (L = 0, ∇L = 0) or is displaced from it."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        if not at_minimum:
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return model, (x, y)


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_slice_of_a_quadratic_along_an_eigenvector_is_half_lambda_s_squared(which):
    model, data = _linear_problem(at_minimum=True)
    truth = torch.linalg.eigvalsh(dense_truth(model, nn.MSELoss(), data))
    lam = float(truth[-1] if which == "largest" else truth[0])
    operator = HessianOperator(model, nn.MSELoss(), data, dtype=torch.float64)
    direction = eigenvector_direction(operator, which)
    s = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    piece = loss_slice(operator, direction, s)
    expected = 0.5 * lam * s**2
    # L(θ* + s·u) = ½ uᵀHu s² exactly; the eigenvector is exact to ~P·ε·‖H‖/gap and the n-term mean
    # rounds at ~n·ε relative: 1e-12 of the largest value leaves a wide margin above both.
    assert torch.allclose(piece.values, expected, rtol=0, atol=1e-12 * float(expected.max()))
    assert abs(direction.curvature - lam) <= 1e-12 * float(truth.abs().max())
    assert abs(piece.base_loss) <= 1e-28 and all(abs(g) <= 1e-14 for g in piece.slopes)
    assert torch.allclose(piece.quadratic_model(), expected, rtol=0, atol=1e-12 * float(expected.max()))


def test_slice_of_a_displaced_quadratic_equals_its_taylor_model():
    # Off the minimum L(θ + s·u) = L(θ) + (∇L·u)s + ½(uᵀHu)s² still holds exactly: the slope is checked
    # against the gradient of the jacrev ground truth.
    model, data = _linear_problem(at_minimum=False)
    objective = Objective(model, nn.MSELoss(), data, dtype=torch.float64)
    gradient = jacrev(objective.loss)(objective.theta)
    spectrum = hessian_eigenvalues(objective, k=1, return_eigenvectors=True)
    direction = eigenvector_direction(spectrum, "largest")
    piece = loss_slice(objective, direction, torch.linspace(-2.0, 2.0, 9))
    assert abs(piece.slopes[0] - float(gradient @ direction.vector)) <= 1e-13 * float(gradient.norm())
    scale = float(piece.values.abs().max())
    assert torch.allclose(piece.values, piece.quadratic_model(), rtol=0, atol=1e-12 * scale)


def test_quadratic_model_of_a_network_is_accurate_to_third_order():
    # On a tanh network the model differs from the loss by O(s³): halving s divides the gap by ~8. This
    # checks curvature and slope against the loss itself, by finite differences (no own Hessian involved).
    x, y = regression_data(60, 2)
    model = shallow(2, 4, nn.Tanh())
    operator = HessianOperator(model, nn.MSELoss(), (x, y), dtype=torch.float64)
    direction = eigenvector_direction(operator, "largest")
    s = torch.tensor([1e-2, 5e-3, 2.5e-3])
    piece = loss_slice(operator, direction, s)
    gap = (piece.values - piece.quadratic_model()).abs()
    ratios = gap[:-1] / gap[1:]
    assert ((ratios > 6.0) & (ratios < 10.0)).all(), ratios


def _planted(kind: str):
    """A tanh network with a planted redundancy and the exact flat direction it creates."""
    x, y = regression_data(80, 2)
    model = shallow(2, 4, nn.Tanh())
    objective = Objective(model, nn.MSELoss(), (x, y), dtype=torch.float64)
    W, b, a = (objective.unflatten(objective.theta)[n].clone() for n in ("0.weight", "0.bias", "2.weight"))
    zeros = {
        name: torch.zeros(shape, dtype=torch.float64)
        for name, shape in zip(objective.names, objective.shapes, strict=True)
    }
    if kind == "zero output weight":  # neuron 3 contributes 0·tanh(w·x + b): its (w, b) are free
        a[0, 3] = 0.0
        zeros["0.weight"][3], zeros["0.bias"][3] = torch.tensor([0.6, -0.8], dtype=torch.float64), 1.0
    else:  # neurons 0 and 1 duplicate: only a_0 + a_1 matters
        W[1], b[1] = W[0], b[0]
        zeros["2.weight"][0, 0], zeros["2.weight"][0, 1] = 1.0, -1.0
    with torch.no_grad():
        model[0].weight.copy_(W), model[0].bias.copy_(b), model[2].weight.copy_(a)
    return model, (x, y), zeros


@pytest.mark.parametrize("kind", ["zero output weight", "duplicate pair"])
def test_slice_along_a_planted_null_direction_is_constant_to_rounding(kind):
    model, data, pieces = _planted(kind)
    operator = HessianOperator(model, nn.MSELoss(), data, dtype=torch.float64)
    vector = operator.objective.flatten(pieces)
    direction = null_direction(vector, operator, operator)
    piece = loss_slice(operator, direction, torch.linspace(-2.0, 2.0, 21))
    # The outputs are the same function of x at every s; only the order of rounding in the output sum
    # changes, ~ε relative per sample, so the loss moves by at most a few ε·L.
    assert (piece.values - piece.base_loss).abs().max() <= 16 * EPS * piece.base_loss
    # Its curvature uᵀHu against the dense jacrev Hessian (≈ 0: the direction is null to second order).
    truth = dense_truth(model, nn.MSELoss(), data)
    u = direction.vector
    assert abs(direction.curvature - float(u @ truth @ u)) <= 1e-12 * float(truth.abs().max())
    assert abs(direction.curvature) <= 1e-12 * float(truth.abs().max())


def _direct_loss(model, batches, theta):
    """The mean loss over all samples from a copy of the model with θ written in (independent of Objective)."""
    clone = copy.deepcopy(model).eval()
    vector_to_parameters(theta, clone.parameters())
    with torch.no_grad():
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        return float(nn.functional.mse_loss(clone(x), y))


@pytest.mark.parametrize("memory", [None, 1, 40_000])
@pytest.mark.parametrize("batched", [True, False])
def test_grid_values_equal_individual_loss_calls(memory, batched):
    x, y = regression_data(70, 3, q=2)
    batches = [(x[:30], y[:30]), (x[30:], y[30:])]  # unequal batches: the weighting is tested too
    model = shallow(3, 5, nn.Tanh(), q=2)
    objective = Objective(model, nn.MSELoss(), batches, dtype=torch.float64)
    u, v = random_direction(objective, seed=1), random_direction(objective, seed=2, include_biases=True)
    s, t = torch.linspace(-1.0, 1.0, 5), torch.linspace(-0.5, 2.0, 4)
    piece = loss_slice(objective, (u, v), (s, t), memory=memory, batched=batched)
    assert piece.values.shape == (5, 4) and piece.num_evaluations == 20
    theta = parameters_to_vector(model.parameters()).detach()
    for i, si in enumerate(s):
        for j, tj in enumerate(t):
            direct = _direct_loss(model, batches, theta + si * u.vector + tj * v.vector)
            # Batched matmuls sum in another order; batch means are weighted rather than pooled.
            assert math.isclose(float(piece.values[i, j]), direct, rel_tol=1e-13)
    assert piece.base_loss == pytest.approx(_direct_loss(model, batches, theta), rel=1e-13)


def test_filter_normalisation_has_the_rows_norms_of_theta():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Tanh(), nn.Linear(12, 2)).double()
    x = torch.randn(10, 2, 6, dtype=torch.float64)
    objective = Objective(model, nn.MSELoss(), (x, torch.zeros(10, 2, dtype=torch.float64)))
    state = torch.random.get_rng_state()
    direction = random_direction(objective, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # a private generator
    pieces = objective.unflatten(direction.vector)
    for name, theta in objective.unflatten(objective.theta).items():
        d = pieces[name]
        if theta.ndim == 1:
            assert torch.equal(d, torch.zeros_like(d))  # biases left at zero, as in Li et al.
        else:
            row_norms = torch.linalg.vector_norm(d.reshape(len(d), -1), dim=1)
            expected = torch.linalg.vector_norm(theta.reshape(len(theta), -1), dim=1)
            assert torch.allclose(row_norms, expected, rtol=1e-14, atol=0)
    with_biases = objective.unflatten(random_direction(objective, seed=3, include_biases=True).vector)
    assert torch.allclose(with_biases["0.bias"].abs(), objective.unflatten(objective.theta)["0.bias"].abs(), rtol=1e-14)
    assert torch.equal(random_direction(objective, seed=3).vector, direction.vector)
    assert not torch.equal(random_direction(objective, seed=4).vector, direction.vector)


def test_reference_direction_reaches_the_aligned_teacher():
    x = torch.randn(100, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    teacher = shallow(2, 3, nn.Tanh(), seed=5)
    with torch.no_grad():
        y = teacher(x)
    student = copy.deepcopy(teacher)
    with torch.no_grad():  # the teacher's neurons permuted and sign-flipped (the same function), then moved
        order = torch.tensor([2, 0, 1])
        student[0].weight.copy_(-teacher[0].weight[order] + 0.1)
        student[0].bias.copy_(-teacher[0].bias[order])
        student[2].weight.copy_(-teacher[2].weight[:, order] - 0.1)
    objective = Objective(student, nn.MSELoss(), (x, y))
    aligned, plain = reference_direction(objective, teacher), reference_direction(objective, teacher, align=False)
    assert aligned.name.endswith("(aligned)")
    assert aligned.vector.norm() < 0.5 * plain.vector.norm()  # the nearest realisation, not the raw teacher
    for direction in (aligned, plain):
        piece = loss_slice(objective, direction, torch.tensor([0.0, 1.0]))
        assert piece.values[1] <= 1e-28 < piece.values[0]  # s = 1 is a zero-loss realisation of the teacher


def test_slicing_never_changes_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.3), nn.Linear(6, 1)).double()
    x, y = regression_data(32, 3)
    nn.functional.mse_loss(model(x), y).backward()  # grads and running statistics that must survive
    before = copy.deepcopy(model.state_dict())
    grads = [p.grad.clone() for p in model.parameters()]
    state = torch.random.get_rng_state()
    operator = HessianOperator(model, nn.MSELoss(), (x, y), dtype=torch.float64)
    result = landscape_slices(operator, budget=20, reference=torch.zeros(operator.shape[0]), align=False)
    loss_slice(operator, random_direction(operator), [-1.0, 0.0, 1.0])
    assert result.plane.values.isfinite().all()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))


def test_landscape_slices_uses_the_spectrum_and_stays_in_budget():
    x, y = regression_data(60, 2)
    model = shallow(2, 4, nn.Tanh())
    operator = HessianOperator(model, nn.MSELoss(), (x, y), dtype=torch.float64)
    spectrum = hessian_eigenvalues(operator, k=2, return_eigenvectors=True)
    teacher = shallow(2, 4, nn.Tanh(), seed=9)
    budget = 60.0
    result = landscape_slices(
        operator, spectrum, reference=teacher, null_vector=torch.ones(operator.shape[0]), budget=budget
    )
    assert [line.names[0] for line in result.lines] == ["top eigenvector", "bottom eigenvector", "null direction"]
    assert [line.directions[0].curvature for line in result.lines[:2]] == [spectrum.lambda_max, spectrum.lambda_min]
    assert result.plane.names == ("bottom eigenvector", "toward the reference (aligned)")
    assert result.num_evaluations == sum(p.num_evaluations for p in (*result.lines, result.plane))
    lines = sum(grid_cost(len(line.coordinates[0])) for line in result.lines)
    assert lines + grid_cost(len(result.plane.coordinates[0]), 2) <= budget
    compact = result.without_vectors()
    assert all(d.vector is None for piece in (*compact.lines, compact.plane) for d in piece.directions)
    assert (
        torch.equal(compact.plane.values, result.plane.values)
        and compact.lines[0].directions[0].curvature == spectrum.lambda_max
    )
    with pytest.raises(ValueError, match="entries of θ"):
        loss_slice(operator, compact.lines[0].directions[0], [0.0])
    at_reference = landscape_slices(operator, spectrum, reference=operator.objective.theta.clone(), budget=budget)
    assert at_reference.plane.names == ("top eigenvector", "bottom eigenvector")


@pytest.mark.parametrize("dimensions", [1, 2])
def test_grid_size_fits_the_budget(dimensions):
    for budget in np.geomspace(grid_cost(5, dimensions), 1e5, 40):
        points = grid_size(budget, dimensions)
        assert points % 2 == 1 and 5 <= points <= 101
        assert grid_cost(points, dimensions) <= budget
        assert points == 101 or grid_cost(points + 2, dimensions) > budget  # the largest odd one that fits
    assert grid_size(0.0, dimensions) == 5  # below the minimum the caller should skip the slice
    assert grid_size(9 * 0.5, 2, point_cost=0.5, minimum=3) == 3  # an exact power does not round down


def test_bad_input_is_named():
    x, y = regression_data(20, 2)
    model = shallow(2, 3, nn.Tanh())
    operator = HessianOperator(model, nn.MSELoss(), (x, y), dtype=torch.float64)
    size = operator.shape[0]
    good = torch.ones(size, dtype=torch.float64)
    cases = [
        (lambda: loss_slice(operator, torch.ones(size + 1), [0.0]), ValueError, "entries of θ"),
        (lambda: loss_slice(operator, (good, good, good), [0.0]), ValueError, "one direction"),
        (lambda: loss_slice(operator, good, []), ValueError, "grid must be"),
        (lambda: loss_slice(operator, good, [0.0, math.nan]), ValueError, "grid must be"),
        (lambda: loss_slice(model, good, [0.0]), TypeError, "Objective"),
        (
            lambda: eigenvector_direction(hessian_eigenvalues(operator, k=1), "largest"),
            ValueError,
            "return_eigenvectors",
        ),
        (lambda: eigenvector_direction(operator, "top"), ValueError, "which"),
        (lambda: null_direction(torch.zeros(size), operator), ValueError, "zero"),
        (lambda: reference_direction(operator, torch.full((size,), math.nan)), ValueError, "NaN"),
        (lambda: grid_size(10.0, 3), ValueError, "dimensions"),
        (lambda: grid_size(-1.0), ValueError, "budget"),
        (lambda: landscape_slices(operator, radius=-1.0), ValueError, "radius"),
    ]
    for call, kind, words in cases:
        with pytest.raises(kind, match=words):
            call()


class _ItemModel(nn.Module):
    """A model vmap cannot trace: it reads a parameter's value in Python."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1).double()

    def forward(self, x):
        return self.linear(x) * (1.0 if self.linear.weight.sum().item() > -1e9 else 0.0)


def test_untraceable_model_names_the_fix():
    x, y = regression_data(10, 2)
    objective = Objective(_ItemModel(), nn.MSELoss(), (x, y))
    direction = torch.ones(objective.num_parameters, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="batched=False"):
        loss_slice(objective, direction, [0.0, 1.0])
    one_by_one = loss_slice(objective, direction, [0.0, 1.0], batched=False)
    assert one_by_one.values[0] == pytest.approx(one_by_one.base_loss, rel=1e-15)


def test_figures_draw_the_slices_and_their_models():
    x, y = regression_data(60, 2)
    operator = HessianOperator(shallow(2, 4, nn.Tanh()), nn.MSELoss(), (x, y), dtype=torch.float64)
    result = landscape_slices(
        operator, reference=shallow(2, 4, nn.Tanh(), seed=9), null_vector=torch.ones(operator.shape[0]), budget=30
    )
    lines = slice_1d_figure(result.lines, step=7)
    FigureCanvasAgg(lines).draw()
    panels = lines.axes
    assert len(panels) == 3
    top = result.lines[0].directions[0]
    assert panels[0].get_title() == f"top eigenvector\nλ = {top.curvature:.4g} ± {top.error_bound:.1g}"
    model = next(line for line in panels[0].lines if line.get_label() == "quadratic model")
    assert np.array_equal(model.get_ydata(), result.lines[0].quadratic_model().numpy())
    legend = [text.get_text() for text in lines.legends[0].get_texts()]  # one legend for all the panels
    assert legend == ["loss", "quadratic model", "θ (now)"]
    plane = slice_2d_figure(result.plane, step=7)
    FigureCanvasAgg(plane).draw()
    assert "θ* (reference)" in [text.get_text() for text in plane.axes[0].get_legend().get_texts()]
    flat = result.plane.__class__(
        result.plane.coordinates, torch.ones_like(result.plane.values), result.plane.directions, 1.0, (0.0, 0.0), 1
    )
    FigureCanvasAgg(slice_2d_figure(flat, step=7)).draw()  # a constant slice still draws


def test_direction_without_curvature_has_no_quadratic_model():
    x, y = regression_data(20, 2)
    objective = Objective(shallow(2, 3, nn.Tanh()), nn.MSELoss(), (x, y))
    piece = loss_slice(objective, Direction("mine", torch.ones(objective.num_parameters, dtype=torch.float64)), [0.0])
    with pytest.raises(ValueError, match="curvature"):
        piece.quadratic_model()


def test_the_first_slices_in_a_process_import_nothing():
    """Issue 25: the first evaluation paid 0.3 s (seconds on a loaded machine) for torch's compiler stack
    (sympy, dynamo), imported by the dispatch mode that measured a grid point's memory. In a fresh
    interpreter the first slices import no module."""
    import subprocess
    import sys

    script = """
import sys, torch
from torch import nn
from torch_landscape import Objective
from torch_landscape.slices import loss_slice
torch.manual_seed(0)
objective = Objective(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), nn.MSELoss(),
                      (torch.randn(8, 2), torch.randn(8, 1)))
before = set(sys.modules)
loss_slice(objective, torch.ones(objective.num_parameters, dtype=torch.float64), torch.linspace(-1, 1, 5))
print(sorted(set(sys.modules) - before))
"""
    imported = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"
