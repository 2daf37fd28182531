"""Property: plant a random redundancy of a kind the activation admits into a random shallow network; it is
found at function level and the merged network reproduces the outputs (docs/theory.md §4.2, §4.4).

Tolerance: the report's own bound tol·(1 + max|f|) with tol = 1e-10; fresh points (not the probe set) get
10× that, since the probe set only samples the input space. Weights ~ N(0, 1) and inputs ~ N(0, I) with
d ≤ 3 keep |z| < 20, below softplus's linear threshold, so the identity σ(z) − σ(−z) = z holds to rounding.
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from torch_landscape.curvature.shallow import Square
from torch_landscape.redundancy import neuron_redundancy

ACTIVATIONS = {
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
    "square": Square,
}


def plantable(kind: str, has_c: bool) -> list[str]:
    kinds = ["duplicate", "zero output weight"]
    if has_c:
        kinds.append("constant neuron")
    if kind == "tanh" or (kind == "sigmoid" and has_c):
        kinds.append("mirrored")
    if kind in ("relu", "leaky_relu", "identity", "square"):
        kinds.append("multiple")
    if kind in ("relu", "leaky_relu", "softplus", "gelu", "silu"):
        kinds.append("antipodal group")
    return kinds


@st.composite
def planted_networks(draw):
    kind = draw(st.sampled_from(sorted(ACTIVATIONS)))
    d, m, q = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    has_b, has_c = draw(st.booleans()), draw(st.booleans())
    plant = draw(st.sampled_from(plantable(kind, has_c)))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    randn = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    U, A = randn(m, d + 1), randn(q, m)
    k = int(torch.randint(m, (1,), generator=generator))
    if plant == "duplicate":
        new_u, new_a = U[k : k + 1].clone(), randn(q, 1)
    elif plant == "zero output weight":
        new_u, new_a = randn(1, d + 1), torch.zeros(q, 1, dtype=torch.float64)
    elif plant == "constant neuron":
        new_u, new_a = torch.cat([torch.zeros(1, d, dtype=torch.float64), randn(1, 1)], dim=1), randn(q, 1)
    elif plant == "mirrored":
        new_u, new_a = -U[k : k + 1], randn(q, 1)
    elif plant == "multiple":
        gamma = float(torch.rand(1, generator=generator)) * 2.5 + 0.5
        if kind in ("identity", "square") and bool(torch.randint(2, (1,), generator=generator)):
            gamma = -gamma
        new_u, new_a = gamma * U[k : k + 1], randn(q, 1)
    else:  # 2q + 1 antipodal pairs u_j = −γu_i (γ > 0 for ReLU-type, else 1): more than the ≤ 2q neurons
        # their summed linear part needs
        pairs = 2 * q + 1
        base = randn(pairs, d + 1)
        scale = 1.0
        if kind in ("relu", "leaky_relu"):
            scale = torch.rand(pairs, 1, generator=generator, dtype=torch.float64) + 0.5
        new_u, new_a = torch.cat([base, -scale * base]), randn(q, 2 * pairs)
    U, A = torch.cat([U, new_u]), torch.cat([A, new_a], dim=1)
    if not has_b:
        U[:, -1] = 0
    width = U.shape[0]
    model = nn.Sequential(nn.Linear(d, width, bias=has_b), ACTIVATIONS[kind](), nn.Linear(width, q, bias=has_c))
    model = model.double()
    with torch.no_grad():
        model[0].weight.copy_(U[:, :-1])
        if has_b:
            model[0].bias.copy_(U[:, -1])
        model[2].weight.copy_(A)
        if has_c:
            model[2].bias.copy_(randn(q))
    return model, plant, d, kind


@settings(max_examples=40, deadline=None)
@given(planted_networks())
def test_planted_redundancy_is_found_and_the_merge_is_exact(case):
    model, plant, d, kind = case
    x = torch.randn(60, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    report = neuron_redundancy(model, x, num_probe_points=512)
    claims = [f for f in report.claims if f.level == "function"]
    assert claims, f"{plant} planted in a {kind} network was not found:\n{report}"
    assert report.effective_width < report.width
    assert report.max_output_change.probes <= report.tolerance.probes
    assert report.max_output_change.data <= report.tolerance.data
    fresh = torch.randn(300, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = model(fresh)
    bound = 1e-9 * (1 + expected.abs().max())  # 10·tol: fresh points, not the probe set
    assert (report.merged_model()(fresh) - expected).abs().max() <= bound
