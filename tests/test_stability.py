"""The edge of stability of the optimizer in use (docs/theory.md §1.8) against independent truths.

* Thresholds: on a quadratic L = ½ θᵀAθ the real torch optimizer is run at 0.98 and 1.02 times the step size
  where the reading says r = 1. With SGD the iteration is exactly the linear recurrence of §1.8. Adaptive
  methods are made exact by freezing their preconditioner: the test plants a second moment v (and a step
  count of 10¹⁷ so that both bias corrections are 1 to float64 precision) and sets β2 (RMSprop: α) to
  1 − 2⁻⁵⁰, so that each step moves v by 9·10⁻¹⁶·(g² − v) (Adagrad: plants a sum of 10²⁰ that g² hardly
  adds to). The test checks that v stayed within 10⁻⁶ of the planted value over the stable run (a grown v
  would lower the ratio and could be what stabilised it); in the diverging run, which stops at 10⁴ times its
  start, v may grow a little, which only damps the divergence observed. Margins of ±2 % then put the top
  mode's growth factor clearly below or above 1.
* The preconditioned sharpness: λ_max(P^{-1/2} H P^{-1/2}) with P built here from the optimizer's state
  after a few real steps and H from jacrev(jacrev(L)) in float64, within the reported bound.
* The optimizer is only read: state, parameter groups and parameters stay bit-identical.
"""

import copy
import math

import pytest
import torch
from torch import nn

from helpers import dense_truth, regression_data, shallow
from torch_landscape.curvature import HessianOperator, MatrixOperator, PreconditionedOperator, hessian_eigenvalues
from torch_landscape.stability import preconditioned_sharpness, stability_reading, stability_setup

FROZEN_BETA = 1 - 2**-50  # second-moment decay of the frozen-preconditioner runs (see the module docstring)
FROZEN_STEP = 1e17  # FROZEN_BETA^step = e^-89: both bias corrections are 1 to float64 precision


class Quadratic(nn.Module):
    """f(X) = Σ_k X[:, block k] @ w_k: with targets 0 and MSE, L = (1/n)‖Xθ‖² = ½ θᵀAθ for XᵀX = (n/2)A."""

    def __init__(self, sizes: list[int], generator: torch.Generator) -> None:
        super().__init__()
        self.sizes = sizes
        self.blocks = nn.ParameterList(
            nn.Parameter(torch.randn(size, generator=generator, dtype=torch.float64)) for size in sizes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(part @ w for part, w in zip(torch.split(x, self.sizes, dim=1), self.blocks, strict=True))


def quadratic(eigenvalues: list[float], sizes: list[int], seed: int = 0, coupled: bool = True):
    """(model, data, A) with A = Q diag(eigenvalues) Qᵀ (Q random; block diagonal by ``sizes`` if not coupled)."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.tensor(eigenvalues, dtype=torch.float64)
    size = len(eigenvalues)
    if coupled:
        q, _ = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    else:
        q = torch.block_diag(
            *(torch.linalg.qr(torch.randn(s, s, generator=generator, dtype=torch.float64))[0] for s in sizes)
        )
    A = q @ torch.diag(values) @ q.T
    x = math.sqrt(size / 2) * q @ torch.diag(values.sqrt()) @ q.T  # XᵀX/n = A/2
    data = (x, torch.zeros(size, dtype=torch.float64))
    return Quadratic(sizes, generator), data, (A + A.T) / 2


def plant(optimizer: torch.optim.Optimizer, model: nn.Module, seed: int = 1) -> None:
    """A frozen second moment (random in [0.5, 2]) for an adaptive optimizer; SGD needs none."""
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        second = 0.5 + 1.5 * torch.rand(p.shape, generator=generator, dtype=torch.float64)
        state = {"step": torch.tensor(FROZEN_STEP)}
        if isinstance(optimizer, torch.optim.Adam):
            state.update(exp_avg=torch.zeros_like(p), exp_avg_sq=second, max_exp_avg_sq=second.clone())
        elif isinstance(optimizer, torch.optim.RMSprop):
            state.update(square_avg=second, momentum_buffer=torch.zeros_like(p), grad_avg=torch.zeros_like(p))
        elif isinstance(optimizer, torch.optim.Adagrad):
            # Adagrad's sum only grows: by g² a step, up to ~10¹⁴ in total before a diverging run stops.
            state.update(sum=1e20 * second)
        else:
            continue
        optimizer.state[p] = state


def run(make, model, data, steps: int = 600) -> tuple[float, torch.Tensor, torch.Tensor]:
    """‖θ_N‖/‖θ_0‖ after the real optimizer's steps (stopping once it exceeds 10⁴), and the planted and the
    final second moment (empty for SGD)."""
    model = copy.deepcopy(model)
    optimizer = make(model.parameters())
    plant(optimizer, model)
    planted = second_moment(optimizer, model).clone()
    first = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).norm()
    growth = 1.0
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(data[0]), data[1]).backward()
        optimizer.step()
        growth = float(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).norm() / first)
        if growth > 1e4:
            break
    return growth, planted, second_moment(optimizer, model)


def second_moment(optimizer, model) -> torch.Tensor:
    states = [optimizer.state.get(p, {}) for p in model.parameters()]  # SGD's momentum buffer is no second moment
    parts = [s[k] for s in states for k in ("exp_avg_sq", "square_avg", "sum") if k in s]
    return torch.cat([t.reshape(-1) for t in parts]) if parts else torch.zeros(0)


def ratio_at(make, model, data, lr: float) -> float:
    model = copy.deepcopy(model)
    optimizer = make(model.parameters(), lr)
    plant(optimizer, model)
    reading = stability_reading(optimizer, HessianOperator(model, nn.MSELoss(), data), method="dense")
    assert reading.status == "ok", reading
    return reading.ratio


def edge_lr(make, model, data) -> float:
    """The step size where the reading says r = 1: r is proportional to η except for AdamW's factor
    (1 + q), q = 1 − ηw, so η ← η/r(η) is exact in one step, and a contraction by ~0.1 for AdamW here."""
    lr = 0.1
    for _ in range(12):
        lr /= ratio_at(make, model, data, lr)
    assert ratio_at(make, model, data, lr) == pytest.approx(1, abs=1e-10)
    return lr


OPTIMIZERS = {
    "sgd": lambda params, lr=0.1: torch.optim.SGD(params, lr=lr),
    "heavy_ball": lambda params, lr=0.1: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "dampened": lambda params, lr=0.1: torch.optim.SGD(params, lr=lr, momentum=0.5, dampening=0.3),
    "nesterov": lambda params, lr=0.1: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True),
    "sgd_weight_decay": lambda params, lr=0.1: torch.optim.SGD(params, lr=lr, momentum=0.8, weight_decay=0.7),
    "adam": lambda params, lr=0.1: torch.optim.Adam(params, lr=lr, betas=(0.9, FROZEN_BETA)),
    "adam_beta1_0": lambda params, lr=0.1: torch.optim.Adam(params, lr=lr, betas=(0.0, FROZEN_BETA), eps=0.3),
    "adam_weight_decay": lambda params, lr=0.1: torch.optim.Adam(
        params, lr=lr, betas=(0.8, FROZEN_BETA), weight_decay=2.0
    ),
    # η·w ≈ 0.16 at the edge: the decoupled decay moves the threshold by 8 %, four times the margin.
    "adamw": lambda params, lr=0.1: torch.optim.AdamW(params, lr=lr, betas=(0.9, FROZEN_BETA), weight_decay=0.05),
    "amsgrad": lambda params, lr=0.1: torch.optim.Adam(params, lr=lr, betas=(0.7, FROZEN_BETA), amsgrad=True),
    "rmsprop": lambda params, lr=0.1: torch.optim.RMSprop(params, lr=lr, alpha=FROZEN_BETA, momentum=0.6),
    "rmsprop_centered": lambda params, lr=0.1: torch.optim.RMSprop(params, lr=lr, alpha=FROZEN_BETA, centered=True),
    "adagrad": lambda params, lr=0.1: torch.optim.Adagrad(params, lr=lr, weight_decay=0.5),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_real_optimizer_is_stable_below_the_edge_and_diverges_above(name):
    make = OPTIMIZERS[name]
    model, data, _ = quadratic([10.0, 4.0, 2.0, 1.0, 0.5, 0.2], [6])
    edge = edge_lr(make, model, data)
    below, planted, frozen = run(lambda params: make(params, 0.98 * edge), model, data)
    above, _, _ = run(lambda params: make(params, 1.02 * edge), model, data)
    assert below < 1e-2, (name, below)  # the top mode contracts (its factor is ≤ 0.97 a step here)
    assert above > 1e3, (name, above)
    # The premise of exactness: the planted preconditioner did not move over the stable run.
    torch.testing.assert_close(frozen, planted, rtol=1e-6, atol=0)


def test_closed_form_thresholds():
    """The thresholds of docs/theory.md §1.8, by hand, for a plain and a preconditioned case."""
    model, data, _ = quadratic([3.0, 1.0], [2])
    setups = {
        "sgd": (torch.optim.SGD(model.parameters(), lr=0.1), 2 / 0.1),
        "heavy_ball": (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), 3.8 / 0.1),
        "dampened": (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5, dampening=0.5), 3 / 0.05),
        "nesterov": (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True), 3.8 / (0.1 * 2.8)),
        "adam": (torch.optim.Adam(model.parameters(), lr=0.01), 38 / 0.01),
        "adamw": (torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.5), 1.9 * 1.995 / (0.01 * 0.1)),
        "rmsprop": (torch.optim.RMSprop(model.parameters(), lr=0.01, momentum=0.5), 3 / 0.01),
    }
    objective = HessianOperator(model, nn.MSELoss(), data).objective
    for name, (optimizer, expected) in setups.items():
        plant(optimizer, model)
        setup = stability_setup(optimizer, objective)
        assert setup.status == "ok", name
        assert setup.threshold == pytest.approx(expected, rel=1e-14), name
        assert setup.groups[0].threshold == setup.threshold and setup.exact


@pytest.mark.parametrize("name", ["heavy_ball", "adam"])
def test_groups_with_different_steps_share_one_exact_edge(name):
    """Two coupled groups with steps η and 5η: the edge is λ_max(S^{1/2}AS^{1/2}), neither the global λ_max
    at the larger step nor the larger group's own block; the real optimizer confirms it."""
    model, data, A = quadratic([10.0, 6.0, 3.0, 1.0, 0.5, 0.2], [3, 3], seed=12)
    base = {"heavy_ball": dict(momentum=0.9), "adam": dict(betas=(0.9, FROZEN_BETA))}[name]
    kind = {"heavy_ball": torch.optim.SGD, "adam": torch.optim.Adam}[name]

    def make(params, lr=0.1):
        first, second = list(params)
        return kind([{"params": [first], "lr": lr}, {"params": [second], "lr": 5 * lr}], **base)

    edge = edge_lr(make, model, data)
    assert run(lambda params: make(params, 0.98 * edge), model, data)[0] < 1e-2
    assert run(lambda params: make(params, 1.02 * edge), model, data)[0] > 1e3
    optimizer = make(model.parameters(), edge)
    plant(optimizer, model)
    setup = stability_setup(optimizer, HessianOperator(model, nn.MSELoss(), data).objective)
    assert setup.exact and math.isnan(setup.threshold) and [g.lr for g in setup.groups] == [edge, 5 * edge]
    if name == "heavy_ball":  # the naive readings are far from the edge here, so the test can tell them apart
        naive = 5 * edge * float(torch.linalg.eigvalsh(A)[-1]) / 3.8
        own_block = 5 * edge * float(torch.linalg.eigvalsh(A[3:, 3:])[-1]) / 3.8
        assert naive > 1.5 and own_block < 0.9, (naive, own_block)


def test_groups_with_different_momenta_are_flagged_and_exact_when_uncoupled():
    """Different momenta: no one eigenproblem decides stability in general (exact = False), but where H does
    not couple the groups the ratio is the larger of the two groups' own ratios, and exact there."""
    model, data, _ = quadratic([10.0, 1.0, 8.0, 0.5], [2, 2], seed=4, coupled=False)

    def make(params, lr=0.1):
        first, second = list(params)
        return torch.optim.SGD([{"params": [first], "momentum": 0.9}, {"params": [second], "momentum": 0.0}], lr=lr)

    edge = edge_lr(make, model, data)
    # The first block (λ 10, edge 3.8/η) stays; the second (λ 8, edge 2/η) decides: η = 2/8.
    assert edge == pytest.approx(2 / 8, rel=1e-9)
    assert run(lambda params: make(params, 0.98 * edge), model, data)[0] < 1e-2
    assert run(lambda params: make(params, 1.02 * edge), model, data)[0] > 1e3
    setup = stability_setup(make(model.parameters(), edge), HessianOperator(model, nn.MSELoss(), data).objective)
    assert not setup.exact
    assert "different recurrences" in setup.describe()


@pytest.fixture(scope="module")
def net_and_data():
    data = regression_data(64, 3)
    return shallow(3, 6, nn.Tanh(), seed=2), data


def trained(net_and_data, make, steps=8):
    """A copy of the network after a few real full-batch steps of ``make``, and its optimizer."""
    model = copy.deepcopy(net_and_data[0])
    optimizer = make(model.parameters())
    x, y = net_and_data[1]
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    return model, optimizer


def preconditioner_by_hand(optimizer, model) -> tuple[torch.Tensor, float, float]:
    """P (flat), the coupled weight decay and the threshold, from the state as torch's step uses it."""
    group = optimizer.param_groups[0]
    parts = []
    for p in model.parameters():
        state = optimizer.state[p]
        if isinstance(optimizer, torch.optim.Adam):
            v = state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"]
            parts.append((v / (1 - group["betas"][1] ** float(state["step"]))).sqrt() + group["eps"])
        elif isinstance(optimizer, torch.optim.RMSprop):
            v = state["square_avg"] - (state["grad_avg"] ** 2 if group["centered"] else 0)
            parts.append(v.sqrt() + group["eps"])
    lr, decay = group["lr"], group["weight_decay"]
    if isinstance(optimizer, torch.optim.Adam):
        beta = group["betas"][0]
        kept = 1 - lr * decay if group["decoupled_weight_decay"] else 1
        return (
            torch.cat([t.reshape(-1) for t in parts]),
            0 if kept != 1 else decay,
            (1 + beta) * (1 + kept) / (lr * (1 - beta)),
        )
    return torch.cat([t.reshape(-1) for t in parts]), decay, (2 + 2 * group["momentum"]) / lr


ADAPTIVE = {
    "adam": lambda params: torch.optim.Adam(params, lr=0.01),
    "adam_weight_decay": lambda params: torch.optim.Adam(params, lr=0.01, weight_decay=0.1),
    "adamw": lambda params: torch.optim.AdamW(params, lr=0.01, weight_decay=0.1),
    "amsgrad": lambda params: torch.optim.Adam(params, lr=0.01, amsgrad=True),
    "rmsprop": lambda params: torch.optim.RMSprop(params, lr=0.001, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("name", sorted(ADAPTIVE))
@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_preconditioned_sharpness_matches_the_dense_float64_truth(net_and_data, name, method):
    model, optimizer = trained(net_and_data, ADAPTIVE[name])
    diagonal, decay, threshold = preconditioner_by_hand(optimizer, model)
    H = dense_truth(model, nn.MSELoss(), net_and_data[1]) + decay * torch.eye(len(diagonal), dtype=torch.float64)
    scale = diagonal.rsqrt()
    truth = float(torch.linalg.eigvalsh(scale[:, None] * H * scale[None, :])[-1])
    operator = HessianOperator(model, nn.MSELoss(), net_and_data[1], dtype=torch.float64)
    reading = stability_reading(optimizer, operator, method=method, tol=1e-8)
    assert reading.setup.preconditioned and reading.setup.threshold == pytest.approx(threshold, rel=1e-14)
    # The reported bound holds, up to the rounding between two float64 Hessians (~1e-14 relative measured).
    assert abs(reading.sharpness - truth) <= reading.sharpness_error + 1e-12 * abs(truth)
    assert abs(reading.ratio - truth / threshold) <= reading.ratio_error + 1e-12 * abs(truth / threshold)
    assert reading.converged and reading.sharpness_error <= 1e-7 * abs(truth)


def test_a_budget_cut_solve_still_reports_a_bound(net_and_data):
    model, optimizer = trained(net_and_data, ADAPTIVE["adam"])
    diagonal, _, _ = preconditioner_by_hand(optimizer, model)
    scale = diagonal.rsqrt()
    H = dense_truth(model, nn.MSELoss(), net_and_data[1])
    values = torch.linalg.eigvalsh(scale[:, None] * H * scale[None, :])
    reading = stability_reading(
        optimizer, HessianOperator(model, nn.MSELoss(), net_and_data[1]), method="lanczos", max_hvp=3
    )
    assert not reading.converged and reading.num_hvp == 3
    # The residual bound holds for some eigenvalue (not necessarily the top one: §1.1.2).
    assert float((values - reading.sharpness).abs().min()) <= reading.sharpness_error


def test_sgd_with_one_step_size_reuses_the_lambda_max_spectrum(net_and_data):
    model, optimizer = trained(net_and_data, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01))
    operator = HessianOperator(model, nn.MSELoss(), net_and_data[1])
    spectrum = hessian_eigenvalues(operator, k=1, which="largest", method="dense")
    reading = stability_reading(optimizer, operator, spectrum=spectrum)
    truth = float(torch.linalg.eigvalsh(dense_truth(model, nn.MSELoss(), net_and_data[1]))[-1]) + 0.01
    assert reading.setup.plain and reading.num_hvp == 0 and reading.eigenvector is None
    assert abs(reading.sharpness - truth) <= reading.sharpness_error + 1e-12 * truth
    assert reading.ratio == pytest.approx(reading.sharpness * 0.05 / 3.8, rel=1e-14)
    solved = stability_reading(optimizer, operator, method="lanczos", tol=1e-10)  # its own solve agrees
    assert abs(solved.sharpness - truth) <= solved.sharpness_error + 1e-12 * truth


def test_the_warm_start_carries_the_eigenvector_between_readings():
    """On ~400 parameters (Lanczos path) a reading from the previous eigenvector takes fewer products."""
    data = regression_data(256, 10)
    model = shallow(10, 32, nn.Tanh(), seed=5)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    warm, counts = None, []
    for _ in range(3):
        for _ in range(2):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(data[0]), data[1]).backward()
            optimizer.step()
        operator = HessianOperator(model, nn.MSELoss(), data)
        cold = stability_reading(optimizer, operator)
        reading = stability_reading(optimizer, operator, warm_start=warm)
        assert reading.eigenvector is not None and reading.eigenvector.shape == (operator.shape[0], 1)
        assert abs(reading.ratio - cold.ratio) <= reading.ratio_error + cold.ratio_error
        counts.append((cold.num_hvp, reading.num_hvp))
        warm = reading.eigenvector
    assert all(warm_count < cold_count for cold_count, warm_count in counts[1:]), counts


def snapshot_of(optimizer, model):
    state = {
        id(p): {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()} for p, s in optimizer.state.items()
    }
    groups = [{k: ([id(p) for p in v] if k == "params" else v) for k, v in g.items()} for g in optimizer.param_groups]
    return state, groups, [p.detach().clone() for p in model.parameters()], len(optimizer.state)


def assert_same(before, after):
    state, groups, params, count = before
    assert count == after[3] and state.keys() == after[0].keys()
    for key, entries in state.items():
        assert entries.keys() == after[0][key].keys()
        for name, value in entries.items():
            other = after[0][key][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other
    assert groups == after[1]
    assert all(torch.equal(a, b) for a, b in zip(params, after[2], strict=True))


@pytest.mark.parametrize("name", ["heavy_ball", *sorted(ADAPTIVE)])
def test_the_optimizer_is_left_bit_identical(net_and_data, name):
    make = ADAPTIVE.get(name, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))
    model, optimizer = trained(net_and_data, make, steps=3)
    # A parameter outside the optimizer's state: reading it must not create an entry (state is a defaultdict).
    extra = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer.add_param_group({"params": [extra]})
    model.register_parameter("extra", extra)
    data = net_and_data[1]
    before = snapshot_of(optimizer, model)
    reading = stability_reading(optimizer, HessianOperator(model, nn.MSELoss(), data), method="lanczos")
    stability_setup(optimizer, HessianOperator(model, nn.MSELoss(), data).objective)
    assert_same(before, snapshot_of(optimizer, model))
    assert reading.status == "ok" and reading.setup.num_stepped == reading.setup.num_parameters - (name != "heavy_ball")


def test_unsupported_and_not_yet_available():
    model, data, _ = quadratic([2.0, 1.0], [2])
    objective = HessianOperator(model, nn.MSELoss(), data).objective

    class Custom(torch.optim.SGD):
        pass

    cases = {
        "LBFGS": torch.optim.LBFGS(model.parameters()),
        "Custom": Custom(model.parameters(), lr=0.1),
        "maximize": torch.optim.SGD(model.parameters(), lr=0.1, maximize=True),
    }
    for name, optimizer in cases.items():
        setup = stability_setup(optimizer, objective)
        assert setup.status == "unsupported" and setup.reason.startswith("unsupported: "), name
        assert type(optimizer).__name__ in setup.reason and setup.reason in setup.describe()
    for make in (torch.optim.Adam, torch.optim.RMSprop, torch.optim.Adagrad):
        optimizer = make(model.parameters())
        reading = stability_reading(optimizer, HessianOperator(model, nn.MSELoss(), data))
        assert reading.status == "not available yet" and math.isnan(reading.ratio)
        assert reading.setup.reason.endswith("has no state before its first step")
    # A schedule at its end (CosineAnnealingLR to 0): nothing moves, and the reason says so, not "no state".
    adam = torch.optim.Adam(model.parameters(), lr=0.1)
    model(data[0]).square().mean().backward()
    adam.step()
    for group in adam.param_groups:
        group["lr"] = 0.0
    reading = stability_reading(adam, HessianOperator(model, nn.MSELoss(), data))
    assert reading.status == "not available yet" and reading.setup.reason.endswith("has lr 0 for every parameter of θ")
    # SGD needs no state: its edge is known before the first step.
    assert stability_setup(torch.optim.SGD(model.parameters(), lr=0.1), objective).status == "ok"


def test_bad_inputs_name_the_argument():
    model, data, _ = quadratic([2.0, 1.0], [2])
    operator = HessianOperator(model, nn.MSELoss(), data)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        stability_reading("sgd", operator)
    with pytest.raises(TypeError, match="operator must be the HessianOperator"):
        stability_reading(optimizer, MatrixOperator(torch.eye(2, dtype=torch.float64)))
    with pytest.raises(ValueError, match="optimizer holds none of the parameters"):
        stability_reading(torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1), operator)
    other = hessian_eigenvalues(MatrixOperator(torch.eye(3, dtype=torch.float64)), k=1, which="largest")
    with pytest.raises(ValueError, match="spectrum must be a Spectrum of this operator's 2 parameters"):
        stability_reading(optimizer, operator, spectrum=other)
    with pytest.raises(ValueError, match="warm_start must have shape"):
        stability_reading(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5), operator, warm_start=torch.ones(3))
    with pytest.raises(ValueError, match="diagonal must be positive"):
        PreconditionedOperator(operator, torch.tensor([1.0, -1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"diagonal must have shape \(2,\)"):
        preconditioned_sharpness(operator, torch.ones(3, dtype=torch.float64))


def test_preconditioned_operator_is_the_scaled_matrix():
    generator = torch.Generator().manual_seed(0)
    m = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    H = MatrixOperator((m + m.T) / 2)
    diagonal = torch.tensor([0.5, 2.0, math.inf, 1.0, 4.0], dtype=torch.float64)
    shift = torch.tensor([0.1, 0.0, 0.3, 0.2, 0.0], dtype=torch.float64)
    scale = torch.tensor([0.5, 2.0, math.inf, 1.0, 4.0], dtype=torch.float64).rsqrt()
    expected = scale[:, None] * (H.matrix + torch.diag(shift)) * scale[None, :]
    operator = PreconditionedOperator(H, diagonal, shift)
    block = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(operator.matmat(block), expected @ block, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(operator.to_dense(), expected, rtol=0, atol=1e-15)
    assert operator.num_hvp == 3 and H.num_hvp == 3  # its dense form came from H's, with no product
    assert bool((operator.to_dense()[2] == 0).all())  # a coordinate that is not stepped drops out
