"""Each example in its quick mode (``main(quick=True)``), its numbers asserted against stated expectations.

Every example runs in the default suite (none is marked ``slow``); the expectations are dense float64 Hessians
computed here, closed forms (docs/theory.md §9.3), Monte Carlo, or the loss itself — never a verdict the example
computes about itself. Tolerances on measured rates come from their scatter over six seeds, stated beside them.
The examples write their TensorBoard logs under pytest's tmp_path.
"""

import importlib.util
import itertools
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import jacrev

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


def population_hessian(weight: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Dense float64 truth: jacrev twice of the closed-form population loss in W (output weights 1)."""
    from torch_landscape.population import gaussian_relu_loss

    m, k = weight.shape[0], teacher.shape[0]
    ones, teacher_ones = torch.ones(m, dtype=torch.float64), torch.ones(k, dtype=torch.float64)

    def loss(flat):
        return gaussian_relu_loss(flat.view(m, -1), ones, teacher, teacher_ones)

    return jacrev(jacrev(loss))(weight.reshape(-1))


def test_relu_spurious_minimum_and_linear_nets(tmp_path):
    module = load("relu_spurious_minimum_and_linear_nets")
    out = module.main(quick=True, logdir=tmp_path)
    population = out["population"]
    # Safran–Shamir's setting below their range: k = n = 4 (4 quick starts, 20 in the full run) ends at the
    # global minimum every time; a global minimum is a permutation of V = I, where λ_min = ¼ − 1/(2π) in closed
    # form (docs/theory.md §9.3 (a); the library's dense bound is ~1e-15).
    for run in population[4]["runs"]:
        assert run["category"] == "global minimum" and abs(run["loss"]) <= 1e-10
        assert run["kind"] == "nondegenerate_min" and abs(run["lambda_min"] - (0.25 - 1 / (2 * math.pi))) < 1e-12
    # Inside their range (k = n = 10): certified spurious minima, checked here against the dense Hessian of the
    # closed form and, for the loss, against Monte Carlo. Measured on the 4 quick starts: 2 (seeds 0, 3).
    spurious = [run for run in population[10]["runs"] if run["category"] == "certified spurious minimum"]
    assert spurious
    teacher = torch.eye(10, dtype=torch.float64)
    for run in spurious:
        values = torch.linalg.eigvalsh(population_hessian(run["weight"], teacher))
        # H ≻ 0: the smallest eigenvalue (≈ 0.03) is 1e12 times the rounding of a 100 × 100 float64 Hessian.
        assert float(values[0]) > 1e-3 and float(values[0]) == pytest.approx(run["lambda_min"], rel=1e-10)
        assert run["grad_norm"] < 1e-13 and run["kind"] == "nondegenerate_min"
        assert run["min_neuron_norm"] > 0.1  # every w_i away from 0: L is C² at the point (docs/theory.md §9.2)
    # The loss of a spurious minimum is positive in the population, not an artefact of the formula: Monte Carlo
    # over 1e5 draws agrees within 5 standard errors and puts L far above 0.
    x = torch.randn(100_000, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    half_squares = 0.5 * (torch.relu(x @ spurious[0]["weight"].T).sum(1) - torch.relu(x).sum(1)) ** 2
    standard_error = float(half_squares.std()) / math.sqrt(len(x))
    assert abs(float(half_squares.mean()) - spurious[0]["loss"]) <= 5 * standard_error < 0.1 * spurious[0]["loss"]
    # The finite sample (n = 200, a trainable): minima at L > 0 with nullity = the k rescalings, no neuron dead on
    # the data, and from the same starts the population loss reaches its global minimum.
    k, loss_fn = module.K, nn.MSELoss()
    _, x, y = module.teacher_data()
    minima = [run for run in out["finite_sample"]["runs"] if run["category"] == "finite-sample minimum"]
    assert minima  # measured on the 12 quick seeds: 2 (seeds 9, 10)
    for run in minima:
        assert run["unexplained"] == 0 and run["dead"] == []
        assert run["population_category"] == "global minimum" and abs(run["population_loss"]) < 1e-10
        net = module.relu_student(k, 0)
        net.load_state_dict(run["state"])
        # A ReLU Hessian on data is that of the current activation region: valid only with the data off the kinks.
        assert run["margin"] > 1e-6
        assert run["grad_norm"] < 1e-12 and run["loss"] > 1e-3
        # Dense float64 truth: exactly k null directions (the per-neuron rescalings, Lemma S), the rest positive;
        # the rescaling tangents (w_i on w_i, −a_i on a_i) are null vectors.
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
    # Full rank (r = d = 3): Morse–Bott modulo O(k) — nullity = the orbit dimension kr − r(r+1)/2 (docs/theory.md
    # T6; equal to k(k−1)/2 = 6 only because r = k − 1 here), PL bounded away from 0 (measured μ_min ≈ 2.3),
    # Łojasiewicz slope 1 (linear rate) and a contraction < 1 per step.
    r = 3
    assert full["kind"] == "min_mod_symmetry" and full["nullity"] == k * r - r * (r + 1) // 2
    assert full["quotient_nullity"] == 0
    assert full["mu_running_min"] > 1.0 and abs(full["slope"] - 1) < 0.1 and full["contraction"] < 0.99
    # Rank-deficient M*: quartic growth, PL fails — slope 2θ_Ł = 1.5, η·t·‖∇L‖²/L → 2 (docs/theory.md §2.4).
    assert low["mu"] < 0.1 * full["mu_running_min"] and abs(low["slope"] - 1.5) < 0.1
    # Not a Morse–Bott minimum: degenerate, or not yet critical in the Newton-step sense at a polynomial rate
    # (off the minimum set the Hessian may still have small negative eigenvalues, so no index is asserted).
    assert abs(low["eta_t_ratio"] - 2) < 0.25 and low["kind"] in ("degenerate", "not_critical")


def test_relu_mild_overparameterization(tmp_path):
    module = load("relu_mild_overparameterization")
    out = module.main(quick=True, logdir=tmp_path)
    exact, wide, curvature, one_point, split = (
        out[key] for key in ("exact", "wide", "curvature", "one_point", "split")
    )
    smallest = 0.25 - 1 / (2 * math.pi)
    # Width k*: at the teacher λ_min = ¼ − 1/(2π) in closed form (docs/theory.md §9.3 (a); dense bound ~1e-15). GD's
    # PL ratio at its last valid evaluation tends to it: 0.09084–0.09085 measured over seeds 0–5 (1e-4
    # relative), so 1e-3.
    assert exact["kind"] == "nondegenerate_min" and abs(exact["lambda_min"] - smallest) < 1e-12
    assert exact["mu_last"] == pytest.approx(smallest, rel=1e-3)
    # Width k* + 1: the polynomial signature of cubic growth (§2.4). Measured over seeds 0–5 at these 400 steps:
    # slope 1.09–1.30, η·t ratio 3.03–4.00 (→ 4/3 and 3; 1.25–1.33 and 3.02–3.23 at the full run's 1600); under
    # PL the slope is 1 and η·t·‖∇L‖²/L grows like 2ηtμ (≈ 36 at width k* here).
    assert wide["mu_last"] < 0.1 * smallest and wide["slope"] > 1.05 and 2.8 < wide["eta_t_ratio"] < 4.3
    # The split global minimum θ*: index 0 and nullity d by the dense Hessian of the closed form; along θ(t) the
    # library's λ_min equals the dense truth and λ_min/t → −2√2/π (§9.3 (b)): the correction is O(t), measured
    # 2% at t = 0.1, so 1e-3 at t = 1e-3.
    teacher, u = module.teacher_and_complement(0)
    star = module.split_minimum(teacher)
    negative, zero, _ = inertia(population_hessian(star, teacher))
    assert (negative, zero) == (0, module.D) == (curvature["star_index"], curvature["star_nullity"])
    direction = torch.stack([u, u, torch.zeros_like(u)]) / math.sqrt(2)
    for point in curvature["path"]:
        truth = float(torch.linalg.eigvalsh(population_hessian(star + point["t"] * direction, teacher))[0])
        assert point["lambda_min"] == pytest.approx(truth, rel=1e-10) and truth < 0
    last = curvature["path"][-1]
    assert last["lambda_min"] / last["t"] == pytest.approx(module.SPLIT_CURVATURE_SLOPE, rel=1e-3)
    # One-point convexity toward θ*, at θ* itself (∇L(θ*) = 0 to rounding): positive in every random direction,
    # but ∝ r along H(θ*)'s null directions (cubic growth: ρ(r) = 3c·r + O(r²); measured 0.0996–0.1006 per decade).
    assert one_point["grad_norm"] < 1e-15 and min(one_point["random_min"]) > 0.01
    assert all(0.09 < f < 0.11 for f in module.one_point_decay(one_point))
    # One neuron more: the certified spurious minimum of k = n = 10 split at neuron 0 is critical, with exactly
    # d − 1 = 9 negative eigenvalues of the dense Hessian of the closed form.
    assert split["small_kind"] == "nondegenerate_min" and split["small_loss"] > 1e-3
    (first,) = split["splits"]
    assert first["kind"] == "strict_saddle" and first["grad_norm"] < 1e-13 and first["index"] == 9
    assert abs(first["loss"] - split["small_loss"]) < 1e-14  # the same function


def test_real_data_goog_volume(tmp_path):
    out = load("real_data_goog_volume").main(quick=True, logdir=tmp_path)
    assert math.isfinite(out["loss"]) and out["loss"] < 1.0  # better than predicting the mean
    assert out["monitor_had_hessian"]
    assert out["kind"] != "nondegenerate_min" or out["effective_width"] == out["width"]
    assert event_files(tmp_path / "real_data_goog_volume")


def test_adam_classifier(tmp_path):
    """The user's case: inline F.cross_entropy under `import lightning as L`, Adam, defaults. The closing λ_max
    against the dense float64 Hessian of the cross-entropy of the network itself on the monitor's probe set
    (not the module's training_step the monitor evaluates), within its bound."""
    out = load("adam_classifier").main(quick=True, logdir=tmp_path)
    monitor, model = out["monitor"], out["model"]
    last = monitor.last_snapshot
    assert last.full and last.step == out["steps"] == 69 and not last.errors
    assert sum(s.spectrum is not None for s in monitor.history) >= 5
    # The probe evaluates the module's training_step on the batches it drew (BatchLossModel.batches).
    batches = monitor.session.probe.objective().model.batches
    x, y = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    eigenvalues = torch.linalg.eigvalsh(dense_truth(model.net, nn.CrossEntropyLoss(), (x.double(), y)))
    spectrum = last.spectrum
    # Within the reported bounds (float64 Lanczos; the 1e-10 floor is rounding at these magnitudes, λ ≲ 10).
    assert abs(spectrum.lambda_max - float(eigenvalues[-1])) <= max(float(spectrum.error_bounds[-1]), 1e-10)
    assert abs(float(spectrum.eigenvalues[0]) - float(eigenvalues[0])) <= max(float(spectrum.error_bounds[0]), 1e-10)
    assert event_files(tmp_path / "adam_classifier")
