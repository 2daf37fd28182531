"""Each example in its quick mode (``main(quick=True)``), its numbers asserted against stated expectations.

Every paper phenomenon (issue #15) runs in the default suite; the expectations are dense float64 Hessians
computed here, closed forms, or the loss itself — never a verdict the example computes about itself. The
examples write their TensorBoard logs under pytest's tmp_path. Only the real-data usage example (no paper
claim, ~13 s) is marked ``slow``.
"""

import copy
import importlib.util
import itertools
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import dense_truth

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # the examples import their helpers as `_common`
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event_files(directory: Path) -> list[Path]:
    return list(directory.rglob("events.out.tfevents.*"))


def test_plain_pytorch_loop(tmp_path):
    # A fixed schedule (light every 20 steps, every 5th full): the automatic one depends on this machine's speed.
    out = load("plain_pytorch_loop").main(quick=True, logdir=tmp_path, every_n_steps=20, full_every=5)
    assert out["errors"] == []
    for tag in (
        "landscape/hessian/lambda_max",
        "landscape/hessian/lambda_min",
        "landscape/convexity/pl_ratio",
        "landscape/convexity/one_point",
        "landscape/redundancy/effective_width",
    ):
        assert tag in out["tags"]
    assert out["loss"] < 0.5 * out["first_loss"]  # SGD made progress (measured: ≈ 0.1× in 200 steps)
    # λ_max of the probe objective (float64, the 512 probe points) against the dense truth, within its bound.
    x, y = out["probe_data"]
    truth = float(torch.linalg.eigvalsh(dense_truth(out["model"], nn.MSELoss(), (x.double(), y.double())))[-1])
    assert abs(out["lambda_max"] - truth) <= max(out["lambda_max_bound"], 1e-12 * abs(truth))
    assert event_files(tmp_path / "plain_pytorch_loop")


def inertia(hessian: torch.Tensor, rtol: float = 1e-8) -> tuple[int, int, torch.Tensor]:
    """(#negative, #zero, eigenvalues) of a dense Hessian; zero means |λ| ≤ rtol·max|λ|.

    rtol = 1e-8: the float64 Hessians here have rounding errors ~1e-15·max|λ| and their smallest genuine
    eigenvalues ~1e-4·max|λ| (the inner-Hessian block), so any band between the two counts the same.
    """
    values = torch.linalg.eigvalsh(hessian)
    band = rtol * float(values.abs().max())
    return int((values < -band).sum()), int((values.abs() <= band).sum()), values


def test_split_neuron_escape(tmp_path):
    module = load("split_neuron_escape")
    out = module.main(quick=True, logdir=tmp_path)
    small, x, y, _ = module.build_case(out["n"])
    loss_fn = nn.MSELoss()
    d = out["d"]
    # The construction: θ̄ critical (Jᵀr = 0 up to rounding, ~1e-16 · ‖J‖‖r‖), a strict minimum of the small
    # net by the dense Hessian, L > 0, and a definite inner Hessian B.
    assert out["small_grad_norm"] < 1e-14
    assert inertia(dense_truth(small, loss_fn, (x, y)))[:2] == (0, 0)
    assert out["small_loss"] == pytest.approx(0.04, rel=1e-12)  # mean(r²) with r scaled to RMS 0.2
    assert min(out["B_eigenvalues"]) > 0
    # The split line against the dense float64 Hessian: λ = 0.5 has index 0 and one null direction, the flat
    # line e_{a_j} − e_{a_m}; λ = 1.5 has index d + 1 (Sylvester: H ≅ H_small ⊕ λ(1 − λ)B ⊕ [0]).
    hessian = dense_truth(module.split(small, 0.5), loss_fn, (x, y))
    assert inertia(hessian)[:2] == (0, 1)
    flat = torch.zeros(hessian.shape[0], dtype=torch.float64)
    a_offset = d * 3 + 3  # layout [W (3×d), b (3), a (3), c]
    flat[a_offset + module.SPLIT], flat[a_offset + 2] = 1.0, -1.0
    assert float((hessian @ flat).norm()) <= 1e-12 * float(hessian.abs().max())
    neg, zero, values = inertia(dense_truth(module.split(small, 1.5), loss_fn, (x, y)))
    assert (neg, zero) == (d + 1, 1)
    # The library agrees with the dense truth, point by point along the line.
    start, end = out["line"][0], out["line"][-1]
    assert (start["lam"], end["lam"]) == (0.5, 1.5)
    assert start["kind"] == "degenerate" and (start["index"], start["nullity"]) == (0, 1)
    assert end["kind"] == "strict_saddle" and (end["index"], end["nullity"]) == (d + 1, 1)
    for point in out["line"]:
        assert (point["index"], point["nullity"]) == (point["predicted_index"], point["predicted_nullity"])
        assert point["duplicate_score"] == 0.0  # the two copies are exact duplicates
    assert out["line_spread"] <= 1e-14  # same function for every λ: only rounding (L = 0.04)
    assert out["lambda_neg"] == pytest.approx(float(values[0]), rel=1e-10)
    # ½λ_neg t² at t = 1e-3: the cubic term is O(t) relative, 0.4 at t = 0.025 here, so within 5% at 1e-3.
    assert out["quadratic_ratio"] == pytest.approx(1.0, abs=0.05)
    # The escape path: recorded losses never rise and end clearly below L(θ̄) (quick run: ≈ 1.4% lower).
    path = out["escape_path"]
    assert all(b <= a for a, b in itertools.pairwise(path))
    assert path[-1] < 0.995 * out["small_loss"]
    assert event_files(tmp_path / "split_neuron_escape")


def test_efficient_vs_redundant_tanh(tmp_path):
    out = load("efficient_vs_redundant_tanh").main(quick=True, logdir=tmp_path)
    exact, wide = out["noiseless_m3"], out["noiseless_m4"]
    assert exact["kind"] == "nondegenerate_min" and exact["effective_width"] == 3
    assert wide["effective_width"] < wide["width"]
    assert wide["kind"] != "nondegenerate_min" and wide["measured_nullity"] >= wide["predicted_nullity"] > 0
    assert event_files(tmp_path / "efficient_vs_redundant_tanh")


def test_relu_spurious_minimum_and_linear_nets(tmp_path):
    module = load("relu_spurious_minimum_and_linear_nets")
    out = module.main(quick=True, logdir=tmp_path)
    k, loss_fn = module.K, nn.MSELoss()
    _, x, y = module.teacher_data()
    runs = out["relu"][k]["runs"]
    by_category = {}
    for run in runs:
        by_category.setdefault(run["category"], []).append(run)
    # Measured on the 12 quick seeds: 8 global, 2 spurious minima (seeds 9, 10), 1 on a kink, 1 still moving.
    assert len(by_category["global minimum"]) >= 6
    spurious = by_category["spurious minimum"]
    assert len(spurious) >= 2
    for run in spurious:
        assert run["unexplained"] == 0  # the library's nullity cross-check explains every null direction
    nondegenerate = [run for run in spurious if run["kind"] == "min_mod_symmetry"]
    assert len(nondegenerate) >= 2
    for run in nondegenerate:
        net = module.relu_student(k, 0)
        net.load_state_dict(run["state"])
        # A ReLU Hessian is that of the current activation region: valid only with the data off the kinks.
        assert run["margin"] > 1e-6
        assert run["grad_norm"] < 1e-12 and run["loss"] > 1e-3  # critical, and far above the global L = 0
        # Dense float64 truth: exactly k null directions (the per-neuron rescalings, Lemma S) and the rest
        # positive, so a minimum modulo the symmetry; the rescaling tangents (w_i on w_i, −a_i on a_i) are
        # null vectors.
        hessian = dense_truth(net, loss_fn, (x, y))
        negative, zero, values = inertia(hessian)
        assert (negative, zero) == (0, k)
        w, a = net[0].weight.detach(), net[2].weight.detach()
        for i in range(k):
            tangent = torch.zeros(hessian.shape[0], dtype=torch.float64)
            tangent[i * module.D : (i + 1) * module.D] = w[i]
            tangent[k * module.D + i] = -a[0, i]
            assert float((hessian @ tangent).norm()) <= 1e-10 * float(values.abs().max()) * float(tangent.norm())
        assert run["kind"] == "min_mod_symmetry" and (run["index"], run["nullity"]) == (0, k)
        assert run["quotient_nullity"] == 0
    # Linear networks: every run reaches the least-squares value, and the origin is the strict saddle of T2,
    # λ_min = −‖(2/n)Xᵀy‖ (with multiplicity h).
    assert out["linear_max_gap"] <= 1e-10
    lx, ly = module.linear_data()
    assert out["origin_kind"] == "strict_saddle" and out["origin_index"] == out["h"]
    assert out["origin_lambda_min"] == pytest.approx(-float((2 / len(lx) * lx.T @ ly).norm()), rel=1e-10)


def test_quadratic_activations(tmp_path):
    out = load("quadratic_activations").main(quick=True, logdir=tmp_path)
    full, low = out["full_rank"], out["rank_deficient"]
    k = 4
    # SJL: over-parameterised (k ≥ d), no spurious minima: every init reaches L = 0 (measured ≈ 5e-30).
    assert max(full["init_losses"]) <= 1e-20
    # Full rank: Morse–Bott modulo O(k) — nullity = orbit dimension k(k−1)/2 = 6 (docs/theory.md T6), PL bounded
    # away from 0 (measured μ_min ≈ 2.3), Łojasiewicz slope 1 (linear rate) and a contraction < 1 per step.
    assert full["kind"] == "min_mod_symmetry" and full["nullity"] == k * (k - 1) // 2 and full["quotient_nullity"] == 0
    assert full["mu_running_min"] > 1.0 and abs(full["slope"] - 1) < 0.1 and full["contraction"] < 0.99
    # Rank-deficient M*: quartic growth, PL fails — slope 2θ_Ł = 1.5, η·t·‖∇L‖²/L → 2 (docs/theory.md §2.4).
    assert low["mu"] < 0.1 * full["mu_running_min"] and abs(low["slope"] - 1.5) < 0.1
    # Not a Morse–Bott minimum: degenerate, or not yet critical in the Newton-step sense at a polynomial rate
    # (off the minimum set the Hessian may still have small negative eigenvalues, so no index is asserted).
    assert abs(low["eta_t_ratio"] - 2) < 0.25 and low["kind"] in ("degenerate", "not_critical")


def test_relu_mild_overparameterization(tmp_path):
    module = load("relu_mild_overparameterization")
    out = module.main(quick=True, logdir=tmp_path)
    k_run, k1_run, embedding = out["width2"], out["width3"], out["embedding"]
    # k = k*: strongly convex near the global minimum. Population closed form (docs/theory.md E1): λ_min = ½ − 1/π
    # ≈ 0.1817; n = 1000 samples move it by O(1/√n) ≈ 3%, so 5%. The PL ratio tends to λ_min (§2.4).
    assert k_run["kind"] == "nondegenerate_min"
    assert k_run["lambda_min"] == pytest.approx(0.5 - 1 / math.pi, rel=0.05)
    assert k_run["mu_running_min"] == pytest.approx(k_run["lambda_min"], rel=0.05)
    # k* + 1: not locally strongly convex (λ_min collapses), PL fails (μ falls, Łojasiewicz slope > 1,
    # η·t ratio near Xu–Du's 3), one-point convexity fails in some directions but holds in most.
    assert k1_run["lambda_min"] < 1e-3 * k_run["lambda_min"]
    assert k1_run["mu"] < 0.5 * k_run["mu_running_min"] and k1_run["slope"] > 1.15 and 2 < k1_run["eta_t_ratio"] < 4
    assert all(m > 0 for m in k1_run["profile_median"])
    assert max(k1_run["profile_frac_bad"]) > 0 and max(k1_run["profile_frac_bad"]) < 0.5
    # A non-global minimum of k neurons is a strict saddle at k + 1: the embedded point is critical (D(u) = 0
    # by bisection, the rest by construction) and the dense Hessian has a negative eigenvalue, along which
    # the loss falls.
    assert embedding["small_index"] == 0 and embedding["small_loss"] > 1e-3
    assert abs(embedding["slope"]) < 1e-14 and embedding["grad_norm"] < 1e-12 and embedding["g_norm"] > 1e-3
    big = embedding["model"]
    x, y = load("relu_spurious_minimum_and_linear_nets").teacher_data()[1:]
    negative, _, values = inertia(dense_truth(big, nn.MSELoss(), (x, y)))
    assert negative >= 1 and embedding["index"] == negative and embedding["kind"] == "strict_saddle"
    assert embedding["lambda_min"] == pytest.approx(float(values[0]), rel=1e-8)
    vectors = torch.linalg.eigh(dense_truth(big, nn.MSELoss(), (x, y)))[1]
    theta = nn.utils.parameters_to_vector(big.parameters()).detach()
    moved = copy.deepcopy(big)
    nn.utils.vector_to_parameters(theta + 1e-3 * vectors[:, 0], moved.parameters())
    with torch.no_grad():
        assert float(nn.functional.mse_loss(moved(x), y)) < embedding["loss"]


@pytest.mark.slow
def test_real_data_goog_volume(tmp_path):
    out = load("real_data_goog_volume").main(quick=True, logdir=tmp_path)
    assert math.isfinite(out["loss"]) and out["loss"] < 1.0  # better than predicting the mean
    assert out["monitor_had_hessian"]
    assert out["kind"] != "nondegenerate_min" or out["effective_width"] == out["width"]
    assert event_files(tmp_path / "real_data_goog_volume")
