"""Neuron alignment of a reference into a model's gauge (docs/theory.md §3.3, T10 alignment cases)."""

import copy
import itertools

import pytest
import torch
from torch import nn

from helpers import shallow
from torch_landscape.convexity import one_point_convexity
from torch_landscape.convexity.align import align_reference
from torch_landscape.curvature.shallow import Square

F64 = torch.float64
# Alignment of an exactly transformed teacher only applies symmetries and a Hungarian matching to it:
# the theory's bound is 1e-12 (a few roundings of O(1) numbers; γ comes from a polished polynomial root).
EXACT = 1e-12


def transformed(teacher: nn.Sequential, permutation, flips=(), scales=None, sigmoid_flips=()) -> nn.Sequential:
    """The teacher with permuted neurons, odd sign flips (u, a) → (−u, −a), sigmoid flips (with
    c → c + a) and positive rescalings (γu, a/γ): the same function, other parameters."""
    student = copy.deepcopy(teacher)
    W, b, A, c = student[0].weight, student[0].bias, student[2].weight, student[2].bias
    with torch.no_grad():
        W.copy_(W[permutation])
        b.copy_(b[permutation])
        A.copy_(A[:, permutation])
        for i in sigmoid_flips:
            c += A[:, i]
        for i in (*flips, *sigmoid_flips):
            W[i], b[i], A[:, i] = -W[i], -b[i], -A[:, i]
        if scales is not None:
            W.mul_(scales[:, None])
            b.mul_(scales)
            A.div_(scales)
    return student


def inputs(n: int = 50, d: int = 3, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("q", [1, 2])
def test_tanh_permutation_and_sign_flip_recovered(q):
    teacher = shallow(3, 4, nn.Tanh(), q=q)
    student = transformed(teacher, [2, 0, 3, 1], flips=[1])
    alignment = align_reference(student, teacher)
    assert alignment.distance <= EXACT
    assert alignment.assignment == (2, 0, 3, 1)
    assert alignment.signs == (1, -1, 1, 1)


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.LeakyReLU(0.2)], ids=["relu", "leaky_relu"])
@pytest.mark.parametrize("q", [1, 2])
def test_relu_rescaling_recovered(activation, q):
    teacher = shallow(3, 4, activation, q=q)
    gamma = 0.5 + 1.5 * torch.rand(4, generator=torch.Generator().manual_seed(4), dtype=F64)  # γ ∈ [0.5, 2]
    student = transformed(teacher, [3, 1, 0, 2], scales=gamma)
    alignment = align_reference(student, teacher)
    assert alignment.distance <= EXACT
    assert alignment.assignment == (3, 1, 0, 2)
    assert torch.allclose(torch.tensor(alignment.scales, dtype=F64), gamma, rtol=EXACT, atol=0)


def test_sigmoid_flip_with_output_bias_correction_recovered():
    teacher = shallow(3, 4, nn.Sigmoid(), q=2)
    student = transformed(teacher, [1, 3, 0, 2], sigmoid_flips=[0, 2])
    alignment = align_reference(student, teacher)
    assert alignment.distance <= EXACT
    assert alignment.signs == (-1, 1, -1, 1)


def test_linear_network_permutation_sign_and_scale_recovered():
    teacher = shallow(3, 4, nn.Identity())
    gamma = torch.tensor([0.5, 1.7, 1.0, 2.0], dtype=F64)
    student = transformed(teacher, [1, 0, 3, 2], flips=[2], scales=gamma)
    assert align_reference(student, teacher).distance <= EXACT


@pytest.mark.parametrize("activation", [nn.Tanh(), nn.ReLU(), nn.Sigmoid(), nn.Softplus()], ids=str)
def test_overparameterised_split_projects_to_distance_zero(activation):
    """T10 (iv): a student = teacher plus a duplicate that shares one neuron's output weight."""
    teacher = shallow(3, 3, activation)
    student = shallow(3, 4, activation, seed=9)
    with torch.no_grad():
        student[0].weight[:3], student[0].bias[:3] = teacher[0].weight, teacher[0].bias
        student[0].weight[3], student[0].bias[3] = teacher[0].weight[0], teacher[0].bias[0]
        a = teacher[2].weight[0, 0].item()
        student[2].weight[0, :3] = teacher[2].weight[0]
        student[2].weight[0, 0], student[2].weight[0, 3] = 0.3 * a, 0.7 * a
        student[2].bias.copy_(teacher[2].bias)
    alignment = align_reference(student, teacher)
    assert alignment.distance <= EXACT
    assert alignment.assignment == (0, 1, 2, 0)


def test_frozen_unit_output_weights_project_onto_the_simplex():
    """Safran–Yehudai–Shamir setting: ReLU, no biases, a ≡ 1 frozen; teacher neuron 0 split as 0.4/0.6."""
    teacher = nn.Sequential(nn.Linear(3, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False)).double()
    student = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False)).double()
    with torch.no_grad():
        teacher[2].weight.fill_(1.0)
        student[2].weight.fill_(1.0)
        v = teacher[0].weight
        student[0].weight.copy_(torch.stack([0.4 * v[0], v[1], 0.6 * v[0], torch.zeros(3, dtype=F64)]))
    student[2].weight.requires_grad_(False)
    alignment = align_reference(student, teacher)
    assert alignment.distance <= EXACT
    assert alignment.assignment[:3] == (0, 1, 0)
    assert alignment.scales[0] == pytest.approx(0.4, abs=EXACT) and alignment.scales[2] == pytest.approx(0.6, abs=EXACT)


@pytest.mark.parametrize(
    "activation", [nn.Tanh(), nn.Sigmoid(), nn.ReLU(), nn.Identity(), nn.Softplus(), Square()], ids=str
)
def test_aligned_reference_computes_the_reference_function(activation):
    """Ground truth independent of the cost: whatever the student, the aligned reference must be the
    teacher moved along its own symmetries (and, over-parameterised, a realisation of it)."""
    teacher = shallow(3, 3, activation, q=2)
    generator = torch.Generator().manual_seed(11)
    x = inputs()
    for width in (3, 5):
        student = shallow(3, width, activation, q=2, seed=width)
        with torch.no_grad():
            student[0].weight[:3] = -teacher[0].weight + 0.05 * torch.randn(3, 3, generator=generator, dtype=F64)
            student[0].bias[:3] = -teacher[0].bias
        alignment = align_reference(student, teacher)
        aligned = copy.deepcopy(student)
        with torch.no_grad():
            for name, p in aligned.named_parameters():
                p.copy_(alignment.parameters[name])
        # Outputs of O(1) built from a few roundings: 1e-12 absolute.
        assert torch.allclose(aligned(x), teacher(x), rtol=0, atol=EXACT)


def test_alignment_is_optimal_over_the_discrete_group_for_tanh():
    """Brute force oracle (m = 4: 4!·2⁴ maps): for tanh the cost is exactly the squared distance."""
    teacher = shallow(3, 4, nn.Tanh())
    student = shallow(3, 4, nn.Tanh(), seed=5)
    own = torch.cat([torch.cat([student[0].weight, student[0].bias[:, None]], 1), student[2].weight.T], 1).detach()
    ref = torch.cat([torch.cat([teacher[0].weight, teacher[0].bias[:, None]], 1), teacher[2].weight.T], 1).detach()
    best = min(
        float(((own - torch.tensor(signs, dtype=F64)[:, None] * ref[list(perm)]) ** 2).sum())
        for perm in itertools.permutations(range(4))
        for signs in itertools.product((1, -1), repeat=4)
    )
    bias_gap = float(((student[2].bias - teacher[2].bias).detach() ** 2).sum())
    alignment = align_reference(student, teacher)
    # Both are sums of the same 20 squares: agreement to rounding.
    assert alignment.distance**2 == pytest.approx(best + bias_gap, rel=1e-12)


def test_reference_of_another_architecture_is_rejected():
    model = shallow(3, 4, nn.Tanh())
    cases = {
        "inputs": shallow(2, 4, nn.Tanh()),
        "outputs": shallow(3, 4, nn.Tanh(), q=2),
        "activation": shallow(3, 4, nn.ReLU()),
        "bias": shallow(3, 4, nn.Tanh(), bias=False),
        "hidden neurons, more than": shallow(3, 5, nn.Tanh()),
        "not a one-hidden-layer": nn.Linear(3, 1).double(),
    }
    for needle, reference in cases.items():
        with pytest.raises(ValueError, match=needle):
            align_reference(model, reference)
    with pytest.raises(ValueError, match="activation"):
        align_reference(shallow(3, 4, nn.LeakyReLU(0.1)), shallow(3, 4, nn.LeakyReLU(0.2)))


def test_non_shallow_model_with_alignment_asks_for_align_false():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = inputs()
    data = (x, torch.zeros(len(x), 1, dtype=F64))
    reference = torch.zeros(sum(p.numel() for p in model.parameters()), dtype=F64)
    with pytest.raises(ValueError, match="alignment needs a one-hidden-layer network.*align=False"):
        one_point_convexity(model, nn.MSELoss(), data, reference)
    assert one_point_convexity(model, nn.MSELoss(), data, reference, align=False).distance > 0
