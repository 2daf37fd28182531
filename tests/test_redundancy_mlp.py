"""Neuron redundancy of every hidden layer of a deep MLP (mlp_redundancy), against planted structure.

Ground truth is the planted structure itself: a neuron of the first hidden layer whose column of the next
weight matrix is zero, and two identical neurons (rows of W_2, b_2) in the second. Removing the first and
folding the duplicate's output weights into its twin leaves the function unchanged in exact arithmetic, so
the merged model must reproduce the outputs up to float64 rounding. Tolerance 1e-12 relative to max|f|:
each output is a sum of a few dozen products of O(1) terms, rounding ~1e-16 each, so 1e-12 leaves 10⁴
headroom and still fails on any real change (the smallest planted neuron moves f by ~1e-1).
"""

import pytest
import torch
from torch import nn

from helpers import dense_truth
from torch_landscape.probe import LandscapeProbe
from torch_landscape.redundancy import (
    MLPRedundancy,
    find_mlp,
    mlp_redundancy,
    neuron_redundancy,
    redundancy_nullity_check,
)
from torch_landscape.writers import snapshot_scalars

SIZES = (3, 6, 5, 4, 2)  # d, three hidden layers, q


def mlp(seed, sizes=SIZES, activation=nn.Tanh):
    torch.manual_seed(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), activation()]
    return nn.Sequential(*layers[:-1]).double()


def planted(seed=0):
    """Neuron 4 of hidden layer 1 has a zero output column; neurons 1 and 3 of hidden layer 2 are duplicates."""
    model = mlp(seed)
    with torch.no_grad():
        model[2].weight[:, 4] = 0.0
        model[2].weight[3] = model[2].weight[1]
        model[2].bias[3] = model[2].bias[1]
    return model


def inputs(n, seed, scale=1.0):
    return scale * torch.randn(n, SIZES[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def relative_change(model, merged, x):
    with torch.no_grad():
        reference = model(x)
        return float((merged(x) - reference).abs().max() / reference.abs().max())


def test_planted_duplicates_in_the_second_layer_and_a_dead_output_in_the_first_are_merged_exactly():
    model, X = planted(), inputs(200, 1)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    report = mlp_redundancy(model, X)

    assert report.layer_names == ("0", "2", "4")
    assert report.widths == (6, 5, 4) and report.effective_widths == (5, 4, 4)
    assert (report.width, report.effective_width) == (15, 13) and report.redundant
    claims = [[(f.rule, f.neurons, f.level) for f in layer.claims] for layer in report.layers]
    assert claims == [[("zero output weight", (4,), "function")], [("duplicate", (1, 3), "function")], []]
    # Global numbering: layer 2 starts after the 6 neurons of layer 1.
    assert [(f.rule, f.neurons) for f in report.claims] == [("zero output weight", (4,)), ("duplicate", (7, 9))]
    assert report.similarity_matrix().shape == (15, 15)

    merged = report.merged_model()
    assert [tuple(layer.weight.shape) for layer in merged[::2]] == [(5, 3), (4, 5), (4, 4), (2, 4)]
    # On the data and on fresh points three times wider than the data (function level, not only the data).
    for points in (X, inputs(1000, 2, scale=3.0)):
        assert relative_change(model, merged, points) <= 1e-12
    assert report.max_output_change.probes <= report.tolerance.probes
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    with pytest.raises(ValueError, match="layers\\[l\\].merged_model"):
        report.merged_model("data")


def test_clean_random_mlp_has_no_claim():
    report = mlp_redundancy(mlp(7), inputs(200, 3))
    assert report.claims == () and report.effective_widths == report.widths and not report.redundant
    assert report.score > 1e-6  # far from every redundant set, not merely unverified


def test_one_hidden_layer_mlp_gives_the_shallow_report():
    model = mlp(3, sizes=(3, 5, 1))
    with torch.no_grad():
        model[2].weight[:, 2] = 0.0
    X = inputs(100, 4)
    (layer,) = mlp_redundancy(model, X).layers
    shallow = neuron_redundancy(model, X)
    assert [(f.rule, f.neurons) for f in layer.claims] == [(f.rule, f.neurons) for f in shallow.claims]


def test_a_merge_within_the_layers_tolerance_that_moves_the_whole_model_is_withdrawn():
    """Layer 2's pre-activations include one of size 1e4 (a saturated neuron), so its own tolerance
    tol·(1 + max|g|) is ~1e-6, while a near-duplicate pair (rows differing by 1e-8) moves g, and through the
    unsaturated neurons f, by ~1e-8 > tol·(1 + max|f|) ≈ 1e-10: the whole-model check must refuse it."""
    model, X = mlp(5), inputs(200, 6)
    with torch.no_grad():
        model[2].weight[3] = model[2].weight[1] + 1e-8
        model[2].bias[3] = model[2].bias[1]
        model[4].bias[0] = 1e4
    layer = mlp_redundancy(model, X).layers[1]
    tried = [f for f in layer.findings if f.neurons == (1, 3)]
    assert tried and not any(f.verified for f in tried)
    assert layer.effective_width == layer.width == 5
    assert any("withdrawn" in note for note in layer.notes)
    # The same pair is accepted by the layer's own check: the whole-model check is what refused it.
    hidden = torch.tanh(model[0](X)).detach()
    alone = neuron_redundancy(model, hidden, layers=("2", "3", "4"), seed=1)
    assert any(f.neurons == (1, 3) and f.verified for f in alone.findings)


def test_models_that_are_not_plain_mlps_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="neuron_redundancy\\(model, layer_inputs, layers="):
        find_mlp(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.LayerNorm(4), nn.Linear(4, 1)))

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp(0)

        def forward(self, x):
            return 2 * self.body(x)

    with pytest.raises(ValueError, match="forward is not its Linear"):
        mlp_redundancy(Scaled(), inputs(20, 1))


def test_probe_runs_redundancy_on_a_deep_mlp():
    model = planted()
    X = inputs(64, 8)
    with torch.no_grad():
        data = (X, model(X))  # zero loss: θ is critical, so the cross-check gives a verdict
    probe = LandscapeProbe(model, nn.MSELoss(), data, quantities=["critical", "redundancy"], method="dense")
    snapshot = probe.snapshot(0)
    assert snapshot.errors == ()
    # The per-layer cross-check ran on the snapshot's report: the 8 directions counted in the test above.
    assert snapshot.nullity.critical and snapshot.nullity.predicted_nullity == 8 and not snapshot.nullity.inconsistent
    assert isinstance(snapshot.redundancy, MLPRedundancy)
    expected = mlp_redundancy(model, [data])
    assert snapshot.redundancy.effective_widths == expected.effective_widths == (5, 4, 4)
    scalars = snapshot_scalars(snapshot)
    assert scalars["landscape/redundancy/width"] == 15 and scalars["landscape/redundancy/effective_width"] == 13
    assert scalars["landscape/redundancy/claims"] == 2


def test_nullity_cross_check_per_layer_predicts_null_directions_of_the_dense_hessian():
    """At a zero-loss point (targets = the model's own outputs, so θ is critical with G = 0) the planted
    structure predicts, by hand: the zero-output neuron's (w_4, b_4), 3 + 1 directions; and for the duplicate
    pair of layer 2, Δa_1 = −Δa_3 for each of the 4 outputs of its sub-network (their u-directions need
    a_1 ∥ a_3, which random weights do not give): 8 in all. Each predicted vector must be null for the
    independent reverse-over-reverse float64 Hessian, to 1e-10·max|λ| (rounding of a 93×93 float64 Hessian
    is ~1e-14 relative)."""
    model, X = planted(), inputs(64, 1)
    with torch.no_grad():
        data = (X, model(X))
    report = mlp_redundancy(model, X)
    for check in (
        redundancy_nullity_check(model, nn.MSELoss(), data, report),
        redundancy_nullity_check(model, nn.MSELoss(), data),
    ):
        assert check.critical and not check.inconsistent
        assert check.predicted_nullity == 8 <= check.measured_nullity
        hessian = dense_truth(model, nn.MSELoss(), data)
        scale = float(torch.linalg.eigvalsh(hessian).abs().max())
        assert float(torch.linalg.vector_norm(hessian @ check.predicted_vectors, dim=0).max()) <= 1e-10 * scale
        assert any("layer '2': feature dependence on the data and probe points" in s for s in check.sources)


def test_float32_relu_mlp_positive_multiple_in_the_second_layer():
    """u_4 = 2·u_0 in layer 2 of a float32 ReLU MLP: relu(2z) = 2·relu(z), so folding a_4 into a_0 is exact
    in exact arithmetic; float32 rounding leaves ~1e-7 relative, and the default float32 tolerance is
    √ε ≈ 3.5e-4 · (1 + max|f|). The layer is probed on the images of the model's probe points: probing it
    around its own (non-negative) inputs would refute neurons dead on every input the prefix produces there,
    and the whole-model check then withdrew the layer's merges, this one included."""
    model = mlp(0, sizes=(3, 6, 5, 1), activation=nn.ReLU).float()
    with torch.no_grad():
        model[2].weight[4] = 2.0 * model[2].weight[0]
        model[2].bias[4] = 2.0 * model[2].bias[0]
    X = inputs(300, 9).float()
    report = mlp_redundancy(model, X)
    assert ("positive multiple", (6, 10)) in [(f.rule, f.neurons) for f in report.claims]
    merged = report.merged_model()
    assert merged[2].weight.dtype == torch.float32
    # Fresh points of the probes' law: layer 2 also has neurons dead on every image of it (claimed at function
    # level, as "dead on data and probes" is for one hidden layer), which wider inputs can wake up.
    fresh = inputs(1000, 10).float()
    with torch.no_grad():
        assert float((merged(fresh) - model(fresh)).abs().max()) <= report.tol * (1 + float(model(fresh).abs().max()))
