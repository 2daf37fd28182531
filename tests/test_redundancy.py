"""Neuron redundancy (issue 4; docs/theory.md §4, T3, T4, T6).

Tolerances: merges are verified at tol = 1e-10·(1 + max|f|) (theory §4.4); float64 rounding of the merged
outputs is ~1e-15, so the tests assert the verified bound itself. Null vectors are exact up to rounding of
the Hessian, ~1e-16·‖H‖·√P, so ‖Hv‖ ≤ 1e-12·‖H‖ leaves four orders of margin. Merged weights are built by
closed-form formulas from the planted ones (sums, one SVD/eigh for rank rules), hence 1e-10.
"""

import math

import pytest
import torch
from torch import nn

from helpers import dense_truth
from torch_landscape.curvature.shallow import Square
from torch_landscape.redundancy import neuron_redundancy, redundancy_nullity_check

D, N = 3, 200


def build(W, b, A, c, activation):
    """nn.Sequential(Linear, activation, Linear) in float64 holding W, b, A (q×m), c."""
    model = nn.Sequential(
        nn.Linear(W.shape[1], W.shape[0], bias=b is not None),
        activation,
        nn.Linear(W.shape[0], A.shape[0], bias=c is not None),
    ).double()
    with torch.no_grad():
        model[0].weight.copy_(W)
        model[2].weight.copy_(A)
        if b is not None:
            model[0].bias.copy_(b)
        if c is not None:
            model[2].bias.copy_(c)
    return model


def gaussian(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# T3 teacher: n = 200, d = 3, m = 3, W, b, a ~ N(0, 1), c = 0.3.
W_T, B_T, A_T, X = gaussian(3, D, seed=0), gaussian(3, seed=1), gaussian(1, 3, seed=2), gaussian(N, D, seed=3)
C_T = torch.tensor([0.3], dtype=torch.float64)
TANH_07 = math.tanh(0.7)


def teacher(activation):
    return build(W_T, B_T, A_T, C_T, activation)


def student(case):
    """T4: the teacher plus a fourth neuron planted redundantly, at zero loss."""
    W, b, a, c = torch.cat([W_T, W_T[:1]]), torch.cat([B_T, B_T[:1]]), torch.cat([A_T, A_T[:, :1]], dim=1), C_T.clone()
    A0 = float(A_T[0, 0])
    if case == "duplicate":
        a[0, 0], a[0, 3] = 0.3 * A0, 0.7 * A0
    elif case == "antipodal":
        W[3], b[3] = -W_T[0], -B_T[0]
        a[0, 0], a[0, 3] = 0.6 * A0, -0.4 * A0
    elif case == "sigmoid":
        W[3], b[3] = -W_T[0], -B_T[0]
        a[0, 0], a[0, 3] = A0 + 0.5, 0.5
        c -= 0.5
    elif case == "zero":
        W[3], b[3], a[0, 3] = gaussian(D, seed=4), 0.4, 0.0
    elif case == "constant":
        W[3], b[3], a[0, 3] = 0.0, 0.7, 0.9
        c -= 0.9 * TANH_07
    return build(W, b, a, c, nn.Sigmoid() if case == "sigmoid" else nn.Tanh())


def canonical(model, sigmoid):
    """Neurons as rows (w, b, a) and c, up to the discrete symmetries: sign flips (tanh: (u, a) → (−u, −a);
    sigmoid: (u, a, c) → (−u, −a, c + a), as σ(−z) = 1 − σ(z)) and permutations."""
    W, b = model[0].weight.detach(), model[0].bias.detach()
    a, c = model[2].weight.detach()[0], model[2].bias.detach().clone()
    rows = []
    for w_i, b_i, a_i in zip(W, b, a, strict=True):
        if w_i[0] < 0:
            if sigmoid:
                c += a_i
            w_i, b_i, a_i = -w_i, -b_i, -a_i
        rows.append(torch.cat([w_i, b_i[None], a_i[None]]))
    rows = torch.stack(rows)
    return rows[torch.argsort(rows[:, 0])], c


CASES = {  # case: (rule, neurons, expected nullity)
    "duplicate": ("duplicate", (0, 3), 5),
    "antipodal": ("mirrored", (0, 3), 5),
    "sigmoid": ("mirrored", (0, 3), 5),
    "zero": ("zero output weight", (3,), 4),
    "constant": ("constant neuron", (3,), 2),
}


def stated_null_vectors(case):
    """docs/theory.md T4's exact null vectors in θ = [W (12), b (4), a (4), c (1)]."""
    P = 21
    u = lambda i: [3 * i, 3 * i + 1, 3 * i + 2, 12 + i]  # noqa: E731
    a, c = lambda i: 16 + i, 20  # noqa: E731
    vectors = []

    def vector(entries):
        v = torch.zeros(P, dtype=torch.float64)
        for index, value in entries:
            v[index] += value
        vectors.append(v)

    if case == "duplicate":
        vector([(a(0), 1), (a(3), -1)])
        for k in range(4):
            vector([(u(0)[k], 0.7), (u(3)[k], -0.3)])
    elif case == "antipodal":
        vector([(a(0), 1), (a(3), 1)])
    elif case == "sigmoid":
        vector([(a(0), 1), (a(3), 1), (c, -1)])
    elif case == "zero":
        for k in range(4):
            vector([(u(3)[k], 1)])
    else:
        vector([(a(3), 1), (c, -TANH_07)])
        vector([(u(3)[3], 1), (c, -0.9 * (1 - TANH_07**2))])
    return torch.stack(vectors, dim=1)


@pytest.mark.parametrize("case", list(CASES))
def test_t4_planted_redundancy_found_merged_to_teacher_and_hessian_nullity(case):
    model = student(case)
    is_sigmoid = case == "sigmoid"
    y = teacher(nn.Sigmoid() if is_sigmoid else nn.Tanh())(X).detach()
    data = (X, y)
    assert nn.functional.mse_loss(model(X), y).item() <= 1e-28
    rule, neurons, nullity = CASES[case]

    report = neuron_redundancy(model, data)
    claim = [f for f in report.claims if f.rule == rule and f.neurons == neurons]
    assert claim and claim[0].level == "function" and claim[0].score == 0.0
    assert report.score == 0.0 and report.width == 4 and report.effective_width == 3
    assert report.max_output_change.data <= report.tolerance.data <= 1e-10 * (1 + y.abs().max().item())
    assert report.max_output_change.probes <= 1e-10 * (1 + 10 * y.abs().max().item())
    merged = report.merged_model()
    rows, c = canonical(merged, is_sigmoid)
    rows_t, c_t = canonical(teacher(nn.Sigmoid() if is_sigmoid else nn.Tanh()), is_sigmoid)
    assert torch.allclose(rows, rows_t, rtol=0, atol=1e-10) and torch.allclose(c, c_t, rtol=0, atol=1e-10)

    check = redundancy_nullity_check(model, nn.MSELoss(), data, report)
    assert check.critical and not check.inconsistent
    assert check.measured_nullity == check.predicted_nullity == nullity and check.unexplained_nullity == 0
    hessian = dense_truth(model, nn.MSELoss(), data)
    norm = torch.linalg.matrix_norm(hessian, ord=2)
    stated = stated_null_vectors(case)
    assert (torch.linalg.vector_norm(hessian @ stated, dim=0) <= 1e-12 * norm).all()
    basis = check.predicted_vectors  # the stated vectors lie in the predicted null space
    assert torch.linalg.vector_norm(stated - basis @ (basis.T @ stated)) <= 1e-8 * torch.linalg.vector_norm(stated)
    assert check.max_residual <= 1e-12


@pytest.mark.parametrize(
    "activation", [nn.Tanh(), nn.Sigmoid(), nn.Softplus(), nn.GELU()], ids=lambda a: type(a).__name__
)
def test_t3_efficient_teacher_has_no_finding(activation):
    model = teacher(activation)
    data = (X, model(X).detach())
    report = neuron_redundancy(model, data)
    assert report.findings == () and report.effective_width == report.effective_width_on_data == 3
    assert report.score > 1e-3 and all(value > 1e-3 for value in report.scores.values())
    assert not report.redundant and "no finding" in str(report)
    if isinstance(activation, (nn.Tanh, nn.Sigmoid)):  # Fukumizu: irreducible ⇔ H = GN ≻ 0 at the teacher
        check = redundancy_nullity_check(model, nn.MSELoss(), data, report)
        assert check.measured_nullity == check.predicted_nullity == 0 and not check.inconsistent


def relu_network(activation=None):
    """Data in the half-space x₀ ≥ 0.1. Neuron 1 = 2.5·neuron 0; neuron 2 is dead on the data (alive for
    x₀ < 0); neurons 3 and 4 are active on every data point."""
    x = gaussian(100, 2, seed=5)
    x[:, 0] = x[:, 0].abs() + 0.1
    W, b = gaussian(5, 2, seed=6), gaussian(5, seed=7)
    W[1], b[1] = 2.5 * W[0], 2.5 * b[0]
    W[2], b[2] = torch.tensor([-1.0, 0.0]), 0.0
    W[3], b[3] = torch.tensor([1.0, 0.3]), 5.0
    W[4], b[4] = torch.tensor([0.5, -0.2]), 5.0
    return build(W, b, gaussian(1, 5, seed=8), torch.tensor([0.2]), activation or nn.ReLU()), x


def test_relu_positive_multiple_at_function_level_dead_and_always_active_on_data_only():
    model, x = relu_network()
    report = neuron_redundancy(model, x)
    rules = {f.rule: f for f in report.claims}
    assert rules["positive multiple"].neurons == (0, 1) and rules["positive multiple"].level == "function"
    assert rules["dead on data"].neurons == (2,) and rules["dead on data"].level == "data"
    assert rules["always active on data"].neurons == (3, 4) and rules["always active on data"].level == "data"
    assert report.effective_width == 4 and report.effective_width_on_data == 2
    assert report.max_output_change_on_data <= report.tolerance.data
    on_data = report.merged_model("data")
    assert (on_data(x) - model(x)).abs().max() <= report.tolerance.data
    # Not claimed off the data: the data-level network differs there; the function-level one does not.
    far = gaussian(500, 2, seed=9) * 3
    assert (on_data(far) - model(far)).abs().max() > 1.0
    assert (report.merged_model()(far) - model(far)).abs().max() <= 1e-10 * (1 + model(far).abs().max())


def test_leaky_relu_neurons_linear_on_data_merge_on_data_only():
    model, x = relu_network(nn.LeakyReLU(0.1))
    report = neuron_redundancy(model, x)
    linear = [f for f in report.claims if f.rule == "linear on data"]
    assert linear and linear[0].neurons == (2, 3, 4) and linear[0].level == "data"  # inactive 2 counts (slope 0.1)
    assert report.effective_width == 4 and report.effective_width_on_data == 2


def test_relu_same_activation_pattern_merges_on_data():
    # |x₁| ≥ 1 and |x₀| ≤ 1, so x₁ > 0 ⇔ x₁ + 0.2x₀ > 0 on the data; output weights of equal sign.
    x = torch.rand(80, 2, generator=torch.Generator().manual_seed(10), dtype=torch.float64) * 2 - 1
    x[:, 1] = torch.sign(x[:, 1]) * (1 + x[:, 1].abs())
    W = torch.tensor([[0.0, 1.0], [0.2, 1.0], [1.0, -0.5]], dtype=torch.float64)
    model = build(W, torch.tensor([0.0, 0.0, 0.1]), torch.tensor([[1.0, 2.0, -1.0]]), torch.tensor([0.0]), nn.ReLU())
    report = neuron_redundancy(model, x)
    pattern = [f for f in report.claims if f.rule == "same activation pattern"]
    assert pattern and pattern[0].neurons == (0, 1) and pattern[0].level == "data"
    assert report.effective_width == 3 and report.effective_width_on_data == 2
    assert (report.merged_model("data")(x) - model(x)).abs().max() <= report.tolerance.data


def test_relu_antipodal_group_merges_at_function_level():
    W, b = gaussian(6, 2, seed=11), gaussian(6, seed=12)
    W[3:], b[3:] = -1.7 * W[:3], -1.7 * b[:3]  # u_{j} = −1.7 u_i
    model = build(W, b, gaussian(1, 6, seed=13), torch.tensor([0.2]), nn.ReLU())
    report = neuron_redundancy(model)
    assert [f.rule for f in report.claims] == ["antipodal group"]
    assert report.effective_width == 5 and report.max_output_change.probes <= report.tolerance.probes


def test_quadratic_t6_rank_reduction_and_orbit_nullity():
    """T6 (k = 4, d = 3, r = 2, n = 40, v ≡ 1 frozen): minimal width rank M = 2; Hessian nullity 7 of which the
    O(k) orbit explains kr − r(r+1)/2 = 5 (the other 2 are higher-order, §1.5)."""
    rotation = torch.linalg.qr(gaussian(4, 4, seed=14))[0]
    W = rotation @ torch.cat([gaussian(2, D, seed=15), torch.zeros(2, D, dtype=torch.float64)])
    model = build(W, None, torch.ones(1, 4, dtype=torch.float64), None, Square())
    model[2].weight.requires_grad_(False)
    x = gaussian(40, D, seed=16)
    data = (x, model(x).detach())
    report = neuron_redundancy(model, data)
    assert report.effective_width == 2 and [f.rule for f in report.claims] == ["rank"]
    merged = report.merged_model()
    assert torch.equal(merged[2].weight, torch.ones(1, 2, dtype=torch.float64))  # the frozen slots stay +1
    assert not merged[2].weight.requires_grad
    assert (merged(x) - model(x)).abs().max() <= report.tolerance.data
    check = redundancy_nullity_check(model, nn.MSELoss(), data, report)
    assert (check.measured_nullity, check.predicted_nullity, check.unexplained_nullity) == (7, 5, 2)
    assert not check.inconsistent


def test_quadratic_with_biases_uses_the_constant_output():
    """x̃ᵀM̃x̃ + c with M̃ = Σ a_i ũ_iũ_iᵀ of rank 4 (d + 1): the constant entry moves into c (Wedderburn), so 5 → 3."""
    model = build(gaussian(5, D, seed=17), gaussian(5, seed=18), gaussian(1, 5, seed=19), torch.tensor([0.1]), Square())
    report = neuron_redundancy(model, X)
    assert report.effective_width == 3 and report.max_output_change.probes <= report.tolerance.probes


@pytest.mark.parametrize("q", [1, 2])
def test_linear_network_width_is_rank_of_AW(q):
    model = build(gaussian(4, D, seed=20), gaussian(4, seed=21), gaussian(q, 4, seed=22), torch.zeros(q), nn.Identity())
    data = (X, model(X).detach())
    report = neuron_redundancy(model, data)
    assert report.effective_width == q and report.scores["rank"] == 0.0
    assert report.max_output_change.probes <= report.tolerance.probes
    check = redundancy_nullity_check(model, nn.MSELoss(), data, report)
    assert not check.inconsistent and check.unexplained_nullity == 0


def test_t2_linear_network_minimum_modulo_gl1():
    """T2(a): h = 1 at (β*/1.5, 1.5), no biases: the one null direction is the GL(1) tangent (w, −a)."""
    hadamard = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float64)
    x = hadamard[:, 1:]
    beta = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    y = (x @ beta + 0.3)[:, None]
    model = build((beta / 1.5)[None], None, torch.tensor([[1.5]]), None, nn.Identity())
    check = redundancy_nullity_check(model, nn.MSELoss(), (x, y))
    assert check.critical and check.measured_nullity == check.predicted_nullity == 1 and not check.inconsistent


def test_vector_outputs_duplicate_and_zero_column():
    W, b, A = gaussian(4, D, seed=23), gaussian(4, seed=24), gaussian(2, 4, seed=25)
    W[3], b[3] = W[1], b[1]
    W = torch.cat([W, gaussian(1, D, seed=26)])
    b = torch.cat([b, torch.tensor([0.3], dtype=torch.float64)])
    A = torch.cat([A, torch.zeros(2, 1, dtype=torch.float64)], dim=1)
    model = build(W, b, A, torch.zeros(2), nn.Tanh())
    report = neuron_redundancy(model, X)
    assert {(f.rule, f.neurons) for f in report.claims} == {("duplicate", (1, 3)), ("zero output weight", (4,))}
    assert report.effective_width == 3 and report.merged_model()(X).shape == (N, 2)


def test_no_data_uses_function_level_rules_only():
    model = student("duplicate")
    report = neuron_redundancy(model)
    assert report.effective_width == 3 and report.effective_width_on_data is None
    assert report.max_output_change.data is None and report.max_output_change.probes <= report.tolerance.probes
    with pytest.raises(ValueError, match="level"):
        report.merged_model("data")


def test_near_miss_is_reported_but_not_claimed():
    model = student("duplicate")
    with torch.no_grad():
        model[0].weight[3, 0] += 1e-8  # ρ_dup ~ 1e-9: a candidate, but the merge moves f by ~1e-9
    report = neuron_redundancy(model, X, candidate_score=1e-6)
    assert report.effective_width == 4 and 0 < report.scores["duplicate"] < 1e-6
    near = [f for f in report.findings if f.rule == "duplicate"]
    assert near and not near[0].verified and near[0].max_output_change > report.tolerance.probes


def test_report_views_model_untouched_and_merged_model_is_new():
    model = student("duplicate").float()
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    rng = torch.get_rng_state()
    report = neuron_redundancy(model, X.float(), loss_fn=nn.MSELoss())
    assert torch.equal(torch.get_rng_state(), rng) and model.training
    assert all(torch.equal(p, before[name]) and p.grad is None for name, p in model.named_parameters())
    similarity = report.similarity_matrix()
    assert similarity.shape == (4, 4) and abs(similarity[0, 3] - 1) < 1e-12
    assert report.output_weight_norm.shape == report.input_weight_norm.shape == (4,)
    assert set(report.neuron_scores) >= {"zero output weight", "constant neuron"}
    merged = report.merged_model()
    assert isinstance(merged, nn.Sequential) and merged[0].out_features == 3 and merged[2].weight.dtype == torch.float32
    assert model[0].out_features == 4 and merged[0].weight is not model[0].weight
    assert "duplicate" in str(report) and "verified" in str(report)


def test_gradient_norms_at_a_critical_point_and_its_merge():
    model = student("antipodal")
    data = (X, teacher(nn.Tanh())(X).detach())
    report = neuron_redundancy(model, data, loss_fn=nn.MSELoss())
    assert report.gradient_norm <= 1e-12 and report.merged_gradient_norm <= 1e-12  # §4.4 step 3


def test_nullity_check_off_a_critical_point_gives_no_verdict():
    model = student("duplicate")
    data = (X, torch.zeros(N, 1, dtype=torch.float64))
    check = redundancy_nullity_check(model, nn.MSELoss(), data)
    assert not check.critical and not check.inconsistent and "not a critical point" in check.message


class Holder(nn.Module):
    """A LightningModule-like holder: the network under self.net, a loss module beside it."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(D, 4), nn.Tanh(), nn.Linear(4, 1))
        self.loss_fn = nn.MSELoss()

    def forward(self, x):
        return self.net(x)


class Flat(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(D, 4), nn.Tanh(), nn.Linear(4, 1)
        self.criterion = nn.MSELoss()

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("holder", [Holder, Flat])
def test_modules_holding_the_network_are_found_and_merged_as_their_own_class(holder):
    model = holder().double()
    hidden = model.net[0] if holder is Holder else model.fc1
    with torch.no_grad():
        hidden.weight[3], hidden.bias[3] = hidden.weight[0], hidden.bias[0]
    report = neuron_redundancy(model, X)
    merged = report.merged_model()
    assert type(merged) is holder and report.effective_width == 3
    assert (merged(X) - model(X)).abs().max() <= report.tolerance.data


@pytest.mark.parametrize(
    "model, match",
    [
        (nn.Sequential(nn.Linear(D, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1)), "3 nn.Linear"),
        (nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 1)), "convolutional"),
        (nn.Sequential(nn.Linear(D, 4), nn.Softsign(), nn.Linear(4, 1)), "Softsign is not supported"),
    ],
    ids=["deeper", "conv", "activation"],
)
def test_unsupported_models_say_what_is_supported_and_how_to_point_at_layers(model, match):
    with pytest.raises(ValueError, match=match) as error:
        neuron_redundancy(model, X)
    assert "Supported" in str(error.value) and "layers=" in str(error.value)


def test_mismatched_inputs_and_probe_points_are_refused():
    model = student("duplicate")
    with pytest.raises(ValueError, match="takes 3 features"):
        neuron_redundancy(model, gaussian(10, 5, seed=27))
    with pytest.raises(ValueError, match="takes 3 features"):
        neuron_redundancy(model, gaussian(10, seed=27))
    with pytest.raises(ValueError, match="probe_points"):
        neuron_redundancy(model, X, probe_points=gaussian(10, 2, seed=28))


def test_deeper_net_analysed_through_layers_needs_that_layers_inputs():
    model = nn.Sequential(nn.Linear(D, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    with pytest.raises(ValueError, match="takes 5 features"):
        neuron_redundancy(model, X, layers=("2", "3", "4"))
    hidden = torch.tanh(model[0](X)).detach()
    assert neuron_redundancy(model, hidden, layers=("2", "3", "4")).width == 4


def test_dead_relu_with_nonzero_output_weight_is_named_dead():
    model = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
        model[0].bias.copy_(torch.tensor([0.1, -2.0]))  # neuron 1: z ≤ −1 on every input in [−1, 1]
        model[2].weight.copy_(torch.tensor([[0.5, 0.7]]))
    x = torch.linspace(-1, 1, 41, dtype=torch.float64)[:, None]
    report = neuron_redundancy(model, (x, model(x).detach()))
    assert [(f.rule, f.neurons) for f in report.findings if f.verified] == [("dead on data", (1,))]


class SkipAroundHidden(nn.Module):
    """out(tanh(hidden(x)) + x): a one-hidden-layer network with a skip connection around its hidden layer."""

    def __init__(self, plain: bool = False) -> None:
        super().__init__()
        self.hidden, self.act, self.out = nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1)
        self.plain = plain

    def forward(self, x):
        h = self.act(self.hidden(x))
        return self.out(h if self.plain else h + x)


def test_merges_are_verified_on_the_whole_model():
    """Neurons 0 and 2 are duplicates: merging them keeps out(tanh(hidden(x))) but not the model with the skip
    connection (the merged hidden layer is narrower than x). The claim is made for the plain network only."""
    torch.manual_seed(0)
    skip = SkipAroundHidden().double()
    with torch.no_grad():
        skip.hidden.weight[2] = skip.hidden.weight[0]
        skip.hidden.bias[2] = skip.hidden.bias[0]
    x = torch.randn(200, 3, dtype=torch.float64)
    report = neuron_redundancy(skip, x)
    assert report.effective_width == 3 and not report.claims
    assert any("skip connection" in note for note in report.notes)
    plain = SkipAroundHidden(plain=True).double()
    plain.load_state_dict(skip.state_dict())
    report = neuron_redundancy(plain, x)
    assert report.effective_width == 2 and [tuple(f.neurons) for f in report.claims] == [(0, 2)]
    merged = report.merged_model()
    assert float((merged(x) - plain(x)).abs().max()) <= report.tolerance.data
