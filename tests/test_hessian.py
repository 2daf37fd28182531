import pytest
import torch
from torch import nn
from torch.func import jacrev

from helpers import dense_truth, regression_data, shallow
from torch_landscape import HessianOperator, Objective, find_shallow, hessian_eigenvalues, hessian_trace
from torch_landscape.curvature.operators import AutogradHessian, StructuredHessian
from torch_landscape.curvature.structured import structured_diagonal, structured_hessian

# docs/theory.md T1: linear regression on four points, H = (2/n) X̃ᵀX̃ = diag(8, 0.5, 2) at every θ.
T1_X = torch.tensor([[2.0, 0.5], [2.0, -0.5], [-2.0, 0.5], [-2.0, -0.5]], dtype=torch.float64)
T1_Y = torch.tensor([[1.0], [-2.0], [0.5], [3.0]], dtype=torch.float64)


def t1_model() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(2, 1).double()


def test_linear_regression_hessian_is_the_closed_form():
    operator = HessianOperator(t1_model(), nn.MSELoss(), (T1_X, T1_Y))
    expected = torch.diag(torch.tensor([8.0, 0.5, 2.0], dtype=torch.float64))  # θ = (w1, w2, c)
    x_tilde = torch.cat([T1_X, torch.ones(4, 1, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(expected, 2 / 4 * x_tilde.T @ x_tilde)  # the formula itself
    # Exact in binary floating point: all entries are sums of powers of two.
    torch.testing.assert_close(operator.to_dense(), expected, rtol=1e-12, atol=0)
    vector = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(operator @ vector, expected @ vector, rtol=1e-12, atol=0)
    assert operator.num_hvp == 3 + 1


ACTIVATIONS = [nn.Tanh(), nn.Sigmoid(), nn.ReLU(), nn.GELU(), nn.Softplus(), nn.SiLU(), nn.LeakyReLU(0.1)]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize("q, bias", [(1, True), (2, False)])
def test_structured_dense_hessian_matches_autograd(activation, q, bias):
    model = shallow(3, 5, activation, q=q, bias=bias)
    data = regression_data(40, 3, q=q)
    truth = dense_truth(model, nn.MSELoss(), data)
    operator = HessianOperator(model, nn.MSELoss(), data)
    structured = structured_hessian(operator.objective)
    assert structured is not None
    # Sums of ~n·P float64 products of O(1) terms: agreement to 1e-13 of the largest entry.
    tolerance = 1e-13 * truth.abs().max()
    torch.testing.assert_close(structured, truth, rtol=0, atol=tolerance)
    torch.testing.assert_close(structured_diagonal(operator.objective), truth.diagonal(), rtol=0, atol=tolerance)
    columns = operator.matmat(torch.eye(operator.shape[0], dtype=torch.float64))  # structured products
    torch.testing.assert_close(columns, truth, rtol=0, atol=tolerance)


def test_cross_entropy_and_generic_models_take_exact_paths():
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4)).double()
    x = torch.randn(30, 3, dtype=torch.float64)
    labels = torch.randint(0, 4, (30,))
    operator = HessianOperator(classifier, nn.CrossEntropyLoss(), (x, labels))
    truth = dense_truth(classifier, nn.CrossEntropyLoss(), (x, labels))
    # Cross-entropy's output Hessian is a dense 4×4 block per sample: still the structured path.
    assert structured_hessian(operator.objective) is not None
    torch.testing.assert_close(operator.to_dense(), truth, rtol=0, atol=1e-13 * truth.abs().max())

    deep = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    data = regression_data(20, 3)
    deep_operator = HessianOperator(deep, nn.MSELoss(), data)
    assert structured_hessian(deep_operator.objective) is None  # not shallow: column-by-column
    truth = dense_truth(deep, nn.MSELoss(), data)
    torch.testing.assert_close(deep_operator.to_dense(), truth, rtol=0, atol=1e-13 * truth.abs().max())


class _ScaledForward(nn.Module):
    """Looks shallow by its modules, but its forward doubles the input: the structure must not be trusted."""

    def __init__(self):
        super().__init__()
        self.hidden, self.act, self.out = nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)

    def forward(self, x):
        return self.out(self.act(self.hidden(2 * x)))


def test_structure_is_verified_against_the_forward():
    torch.manual_seed(0)
    model = _ScaledForward().double()
    data = regression_data(20, 3)
    operator = HessianOperator(model, nn.MSELoss(), data)
    assert structured_hessian(operator.objective) is None
    truth = dense_truth(model, nn.MSELoss(), data)
    torch.testing.assert_close(operator.to_dense(), truth, rtol=0, atol=1e-13 * truth.abs().max())


@pytest.mark.parametrize("q, bias", [(1, True), (3, False)])
def test_structured_products_over_several_batches_one_vector_or_a_block(q, bias):
    """The products a Lanczos solve makes (one vector at a time) and a block, over batches of unequal sizes
    weighted by their share of the samples, against the jacrev(jacrev) Hessian."""
    model = shallow(3, 6, nn.Tanh(), q=q, bias=bias)
    x, y = regression_data(45, 3, q=q)
    batches = [(x[:10], y[:10]), (x[10:30], y[10:30]), (x[30:], y[30:])]
    truth = dense_truth(model, nn.MSELoss(), batches)
    operator = HessianOperator(model, nn.MSELoss(), batches)
    assert isinstance(operator, StructuredHessian)
    eye = torch.eye(operator.shape[0], dtype=torch.float64)
    tolerance = 1e-13 * truth.abs().max()
    torch.testing.assert_close(operator.matmat(eye), truth, rtol=0, atol=tolerance)
    torch.testing.assert_close(torch.stack([operator.matvec(e) for e in eye], 1), truth, rtol=0, atol=tolerance)


def test_params_subset_is_the_dense_sub_block():
    model = shallow(3, 5, nn.Tanh())
    data = regression_data(30, 3)
    names = [name for name, _ in model.named_parameters()]
    full = dense_truth(model, nn.MSELoss(), data)
    sizes = [p.numel() for p in model.parameters()]
    starts = torch.tensor([0] + sizes).cumsum(0)
    chosen = [1, 2]  # hidden bias and output weight
    index = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in chosen])
    sub = HessianOperator(model, nn.MSELoss(), data, params=[names[i] for i in chosen]).to_dense()
    torch.testing.assert_close(sub, full[index][:, index], rtol=0, atol=1e-13 * full.abs().max())


def test_to_scipy_wraps_the_same_operator():
    model = shallow(3, 4, nn.Tanh())
    operator = HessianOperator(model, nn.MSELoss(), regression_data(20, 3))
    dense = operator.to_dense().numpy()
    linear_operator = operator.to_scipy()
    vector = torch.randn(operator.shape[0], dtype=torch.float64).numpy()
    assert linear_operator.shape == operator.shape
    assert abs(linear_operator @ vector - dense @ vector).max() <= 1e-13 * abs(dense).max() * abs(vector).max()


def test_non_finite_hvp_and_too_large_dense_are_named(monkeypatch):
    model = shallow(3, 4, nn.Tanh())
    operator = HessianOperator(model, nn.MSELoss(), regression_data(20, 3))
    vector = torch.full((operator.shape[0],), float("inf"), dtype=torch.float64)
    with pytest.raises(FloatingPointError, match="Hessian-vector product"):
        operator @ vector
    with pytest.raises(ValueError, match="shape"):
        operator.matvec(torch.zeros(3, dtype=torch.float64))
    monkeypatch.setattr("torch_landscape.curvature.operators.available_memory", lambda device: 1000)
    with pytest.raises(MemoryError, match="KiB.*lanczos"):
        operator.to_dense()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    model = shallow(3, 5, nn.Tanh())
    data = regression_data(30, 3)
    truth = dense_truth(model, nn.MSELoss(), data)
    operator = HessianOperator(model.cuda(), nn.MSELoss(), tuple(t.cuda() for t in data))
    assert operator.to_dense().device.type == "cuda"
    torch.testing.assert_close(operator.to_dense().cpu(), truth, rtol=0, atol=1e-12 * truth.abs().max())


def test_tied_weights_are_counted_once_and_take_the_autograd_path():
    """Issue 22: a hidden and an output layer sharing one square weight gave a raw KeyError. θ holds the shared
    tensor once, as model.parameters() does, and the Hessian is that of f(x) = W tanh(W x + b) + c in (W, b, c)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    net[2].weight = net[0].weight
    x, y = regression_data(30, 3, q=3)

    def loss(theta):  # written out by hand, independent of functional_call's tying
        W, b, c = theta[:9].view(3, 3), theta[9:12], theta[12:]
        return nn.functional.mse_loss(torch.tanh(x @ W.T + b) @ W.T + c, y)

    theta = torch.cat([net[0].weight.detach().reshape(-1), net[0].bias.detach(), net[2].bias.detach()])
    truth = torch.linalg.eigvalsh(jacrev(jacrev(loss))(theta))
    operator = HessianOperator(net, nn.MSELoss(), (x, y))
    assert type(operator) is AutogradHessian and operator.shape == (15, 15)
    with pytest.raises(ValueError, match=r"tied weights: 0\.weight, 2\.weight"):
        find_shallow(net)
    scale = float(truth.abs().max())
    for method in ("dense", "lanczos"):
        spectrum = hessian_eigenvalues(net, nn.MSELoss(), (x, y), k=3, method=method, tol=1e-10)
        # Both paths to 1e-10 of the spectral scale (the Lanczos tolerance; dense is exact to ~1e-15).
        expected = torch.cat([truth[:3], truth[-3:]])
        assert spectrum.converged
        torch.testing.assert_close(spectrum.eigenvalues, expected, rtol=0, atol=1e-10 * scale)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, dropout=0.0, batch_first=True)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.encoder(x).mean(dim=1))


def _attention_by_hand(parameters: dict, x: torch.Tensor) -> torch.Tensor:
    """_Attention's forward written out (post-norm encoder layer, 2 heads, ReLU feed-forward).

    The ground truth differentiates this: jacrev(jacrev(...)) through nn.TransformerEncoderLayer itself gives
    a Hessian that is not even symmetric (0.2 of its largest entry) in torch 2.13."""

    def norm(z, name):
        mean, variance = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
        return (z - mean) / torch.sqrt(variance + 1e-5) * parameters[f"encoder.{name}.weight"] + parameters[
            f"encoder.{name}.bias"
        ]

    def linear(z, name):
        return z @ parameters[f"{name}.weight"].T + parameters[f"{name}.bias"]

    attention = "encoder.self_attn"
    projected = x @ parameters[f"{attention}.in_proj_weight"].T + parameters[f"{attention}.in_proj_bias"]
    q, k, v = (t.view(*x.shape[:2], 2, 2).transpose(1, 2) for t in projected.split(4, dim=-1))
    heads = torch.softmax(q @ k.transpose(-1, -2) / 2**0.5, dim=-1) @ v
    hidden = norm(x + linear(heads.transpose(1, 2).reshape(x.shape), f"{attention}.out_proj"), "norm1")
    hidden = norm(hidden + linear(torch.relu(linear(hidden, "encoder.linear1")), "encoder.linear2"), "norm2")
    return linear(hidden.mean(dim=1), "head")


def test_transformer_block_on_cpu_has_exact_hessian_quantities():
    """Issue 22: on a CPU the fused attention kernel has no second derivative; the library's own double
    backward runs attention by its math kernel, whose values are exact."""
    torch.manual_seed(0)
    model = _Attention().double()
    x = torch.randn(12, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randn(12, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    objective = Objective(model, nn.MSELoss(), (x, y))
    truth = torch.linalg.eigvalsh(
        jacrev(jacrev(lambda theta: nn.functional.mse_loss(_attention_by_hand(objective.unflatten(theta), x), y)))(
            objective.theta
        )
    )
    scale = float(truth.abs().max())
    dense = hessian_eigenvalues(model, nn.MSELoss(), (x, y), k=2, method="dense")
    lanczos = hessian_eigenvalues(model, nn.MSELoss(), (x, y), k=2, method="lanczos", tol=1e-10)
    expected = torch.cat([truth[:2], truth[-2:]])
    # Dense: float64 rounding of sums over 12 samples and P = 177 terms; Lanczos: its tolerance, 1e-10 of the scale.
    torch.testing.assert_close(dense.eigenvalues, expected, rtol=0, atol=1e-12 * scale)
    assert lanczos.converged
    torch.testing.assert_close(lanczos.eigenvalues, expected, rtol=0, atol=1e-10 * scale)
    trace = hessian_trace(model, nn.MSELoss(), (x, y))
    assert trace.value == pytest.approx(float(truth.sum()), rel=1e-12)


def test_one_forward_pass_serves_loss_gradient_trace_products_and_dense_hessian():
    """Issue 25: a light evaluation rebuilt the shallow structure twice and the trace ran its own forward. At
    one θ the structure is set up once, from one forward pass of the model per batch, and L, ∇L, the exact
    diagonal, the products and the dense Hessian all come from it, equal to the independent truth."""
    model = shallow(3, 6, nn.Tanh())
    data = regression_data(50, 3)
    truth = dense_truth(model, nn.MSELoss(), data)
    objective = Objective(model, nn.MSELoss(), data)
    loss, gradient = objective.loss_and_gradient()  # autograd, before the counting starts
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    operator = HessianOperator(objective)
    block = torch.randn(operator.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    products = operator.matmat(block)
    trace = hessian_trace(operator)
    assert len(calls) == 1 and trace.method == "exact"
    # L is summed exactly as Objective.loss sums it; ∇L and H in closed form agree with autograd and the
    # jacrev truth to float64 rounding of sums over 50 samples (1e-13 of the largest entry).
    assert operator.loss == loss
    torch.testing.assert_close(operator.gradient, gradient, rtol=0, atol=1e-13 * float(gradient.abs().max()))
    scale = float(truth.abs().max())
    torch.testing.assert_close(products, truth @ block, rtol=0, atol=1e-13 * scale * 3)
    assert trace.value == pytest.approx(float(truth.trace()), rel=1e-13)
    torch.testing.assert_close(operator.to_dense(), truth, rtol=0, atol=1e-13 * scale)
    assert len(calls) == 1


def test_the_kept_gradient_graph_gives_loss_and_gradient_with_it():
    """A generic model's L and ∇L come with the gradient graph its products need: one forward pass in all."""
    torch.manual_seed(0)
    deep = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    data = regression_data(20, 3)
    objective = Objective(deep, nn.MSELoss(), data)
    loss, gradient = objective.loss_and_gradient()
    truth = dense_truth(deep, nn.MSELoss(), data)
    calls = []
    deep.register_forward_hook(lambda *_: calls.append(1))
    operator = HessianOperator(objective)
    assert type(operator) is AutogradHessian
    # The same operations in the same order as a plain gradient: equal to the last bit.
    assert operator.loss == loss and torch.equal(operator.gradient, gradient)
    vector = torch.ones(operator.shape[0], dtype=torch.float64)
    torch.testing.assert_close(operator @ vector, truth @ vector, rtol=0, atol=1e-13 * float(truth.abs().sum()))
    assert len(calls) == 1
