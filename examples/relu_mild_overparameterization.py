"""k vs k + 1 ReLU neurons on the population loss, where Safran–Yehudai–Shamir state their results (E1; Xu–Du).

Teacher: k* = 2 orthonormal ReLU neurons (a random rotation, seeded) in d = 3, output weights 1, no biases.
Students: Σ_i relu(w_i·x) with output weights frozen at 1. The objective is the population loss
L = ½ E_x (f − f*)² over x ~ N(0, I), in closed form (``GaussianReLUObjective``, docs/theory.md §9); a finite
sample cannot show the loss of local convexity below (its Hessian misses the kink term, §9.2).

1. Width k*: at the teacher H ≻ 0 with λ_min = ¼ − 1/(2π) exactly (§9.3 (a)); gradient descent from a small init
   (0.1·N(0, I), η = 0.5) converges linearly, the PL ratio tends to λ_min, the Łojasiewicz slope is 1 (§2.4).
2. Width k* + 1, gradient descent: two students share a teacher neuron, L ~ t⁻³ (Xu–Du), the PL ratio falls to 0,
   the Łojasiewicz slope tends to 2 − 2/3 = 4/3 and the η·t ratio η·t·‖∇L‖²/L to 3 (§2.4).
3. Width k* + 1, the split global minimum θ* = (v_1/2, v_1/2, v_2): H ⪰ 0 singular (nullity d), and along
   θ(t) = θ* + tD, D = (u, u, 0)/√2 with u ⟂ the teacher, λ_min(H(θ(t))) = −(2√2/π)·t + O(t²): negative
   curvature in every neighbourhood of a global minimum, not locally convex (§9.3 (b)).
4. One-point convexity toward θ*, measured at θ* itself (∇L(θ*) = 0 to rounding, so no gradient term
   interferes): positive in every random direction tried, but along the null directions of H(θ*) the
   one-point constant ρ(r) = ⟨∇L(θ* + rD), D⟩/r falls to 0 with r: no μ > 0 holds in any ball around θ*.
5. One neuron more turns a non-global minimum into a saddle (§9.3 (d)): a certified spurious minimum of
   Safran–Shamir's k = n = 10 problem (``relu_spurious_minimum_and_linear_nets``, start 0), each neuron split into
   two halves (same function, critical): strict saddles of index d − 1.

Run:  python examples/relu_mild_overparameterization.py [--quick]
      (TensorBoard: runs/relu_mild_overparameterization)
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

try:
    from examples._common import Report, fmt, parse_quick, writer
    from examples._population import fit, random_student
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import Report, fmt, parse_quick, writer
    from _population import fit, random_student

from torch_landscape import (
    PLTracker,
    classify_critical_point,
    hessian_eigenvalues,
    one_point_convexity,
    one_point_convexity_profile,
)
from torch_landscape.population import GaussianReLUObjective, relu_network

NAME = "relu_mild_overparameterization"
K, D = 2, 3
LR = 0.5
#: docs/theory.md §9.3: λ_min at an orthonormal teacher of width k*, and the slope of λ_min near a split minimum.
LAMBDA_MIN_AT_TEACHER = 0.25 - 1 / (2 * math.pi)
SPLIT_CURVATURE_SLOPE = -2 * math.sqrt(2) / math.pi
PATH = (1e-1, 1e-2, 1e-3)
SPURIOUS_SEED, SPURIOUS_WIDTH = 0, 10  # a certified spurious minimum of relu_spurious_minimum_and_linear_nets


def teacher_and_complement(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, u): k* orthonormal teacher rows and a unit vector orthogonal to all of them (a random rotation)."""
    rotation = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]
    return rotation[:, :K].T.contiguous(), rotation[:, K].contiguous()


def descend(width: int, teacher: torch.Tensor, seed: int, steps: int, tb=None) -> dict:
    """Plain gradient descent (η = 0.5) on the population loss from 0.1·N(0, I), the PL tracker fed on a log grid."""
    generator = torch.Generator().manual_seed(100 + seed)
    objective = GaussianReLUObjective(
        relu_network(0.1 * torch.randn(width, D, generator=generator, dtype=torch.float64)), teacher
    )
    tracker = PLTracker(0.0, learning_rate=LR)
    grid = sorted({int(v) for v in torch.logspace(0, math.log10(steps), 30).tolist()} | {steps})
    theta, estimate = objective.theta.clone(), None
    for step in range(steps + 1):
        loss, gradient = objective.loss_and_gradient(theta)
        if step in grid:
            estimate = tracker.update(step, float(loss), float(gradient @ gradient))
            if tb is not None:
                for tag, value in (
                    ("loss", estimate.loss),
                    ("pl_ratio", estimate.mu),
                    ("eta_t_ratio", estimate.eta_t_ratio),
                ):
                    tb.add_scalar(f"population/width{width}/{tag}", value, step)
        theta = theta - LR * gradient
    valid = [mu for mu in tracker.mus if not math.isnan(mu)]
    return {
        "loss": estimate.loss,
        "mu_last": valid[-1],
        "slope": estimate.lojasiewicz_slope,
        "eta_t_ratio": estimate.eta_t_ratio,
        "contraction": estimate.contraction,
    }


def split_minimum(teacher: torch.Tensor) -> torch.Tensor:
    """θ* = (v_1/2, v_1/2, v_2): teacher neuron 1 split into two halves, a global minimum of width k* + 1."""
    return torch.stack([teacher[0] / 2, teacher[0] / 2, teacher[1]])


def curvature_path(teacher: torch.Tensor, u: torch.Tensor) -> dict:
    """The library's λ_min at θ(t) = θ* + tD, D = (u, u, 0)/√2, and its classification of θ* itself."""
    star = split_minimum(teacher)
    direction = torch.stack([u, u, torch.zeros_like(u)]) / math.sqrt(2)
    at_star = classify_critical_point(GaussianReLUObjective(relu_network(star), teacher))
    path = []
    for t in PATH:
        spectrum = hessian_eigenvalues(GaussianReLUObjective(relu_network(star + t * direction), teacher), k=1)
        path.append({"t": t, "lambda_min": float(spectrum.eigenvalues[0]), "bound": float(spectrum.error_bounds[0])})
    return {
        "star_kind": at_star.kind,
        "star_index": at_star.morse_index,
        "star_nullity": at_star.nullity,
        "star_grad_norm": at_star.grad_norm,
        "star_lambda_min": at_star.lambda_min,
        "path": path,
    }


def one_point_at_the_split_minimum(teacher: torch.Tensor, directions: int, seed: int) -> dict:
    """ρ(r, D) toward θ* at θ* + rD: random D (the §3.4 profile), and D along the null directions of H(θ*)."""
    star = split_minimum(teacher)
    objective = GaussianReLUObjective(relu_network(star), teacher)
    profile = one_point_convexity_profile(objective, num_directions=directions, seed=seed, radii=PATH)
    radii = profile.radii.tolist()  # PATH × the parameter scale max(‖θ*‖/√P, 1e-3)
    spectrum = hessian_eigenvalues(objective, k=D, which="smallest", return_eigenvectors=True)
    nulls = []
    for j in range(D):
        vector = spectrum.eigenvectors[:, j].to(torch.float64)
        values = [
            one_point_convexity(
                GaussianReLUObjective(relu_network((star.reshape(-1) + r * vector).view(K + 1, D)), teacher),
                reference=star.reshape(-1),
                align=False,
            ).value
            for r in radii
        ]
        nulls.append({"eigenvalue": float(spectrum.eigenvalues[j]), "rho": values})
    return {
        "grad_norm": float(objective.loss_and_gradient()[1].norm()),
        "directions": directions,
        "radii": radii,
        "random_min": profile.quantiles[:, 0].tolist(),
        "random_median": profile.quantiles[:, 3].tolist(),
        "random_frac_bad": profile.frac_bad.tolist(),
        "null": nulls,
    }


def one_point_decay(one_point: dict) -> list[float]:
    """ρ(r_{i+1})/ρ(r_i) along each null direction of H(θ*) with ρ above rounding: 0.1 per decade when ρ ∝ r."""
    return [
        n["rho"][i + 1] / n["rho"][i] for n in one_point["null"] if n["rho"][-1] > 1e-12 for i in range(len(PATH) - 1)
    ]


def split_neurons(quick: bool) -> dict:
    """A certified spurious minimum of width k = 10 (V = I), each neuron j split into halves ½w_j, ½w_j."""
    teacher = torch.eye(SPURIOUS_WIDTH, dtype=torch.float64)
    objective = fit(random_student(SPURIOUS_WIDTH, SPURIOUS_WIDTH, SPURIOUS_SEED), teacher)
    small = classify_critical_point(objective)
    weight = objective.student()[0]
    splits = []
    for j in range(1 if quick else SPURIOUS_WIDTH):
        halves = torch.cat([weight, weight[j : j + 1] / 2])
        halves[j] = weight[j] / 2
        point = classify_critical_point(GaussianReLUObjective(relu_network(halves), teacher))
        splits.append(
            {
                "neuron": j,
                "kind": point.kind,
                "index": point.morse_index,
                "nullity": point.nullity,
                "grad_norm": point.grad_norm,
                "lambda_min": point.lambda_min,
                "loss": point.loss,
            }
        )
    return {
        "small_kind": small.kind,
        "small_loss": small.loss,
        "small_grad_norm": small.grad_norm,
        "small_lambda_min": small.lambda_min,
        "splits": splits,
    }


def robustness(seed: int, steps: int = 1600) -> dict[str, bool]:
    """The full run's checks of parts 1–4 for another teacher rotation and init (``main`` uses seed 0): which hold."""
    teacher, u = teacher_and_complement(seed)
    at_teacher = classify_critical_point(GaussianReLUObjective(relu_network(teacher), teacher))
    exact, wide = descend(K, teacher, seed, steps), descend(K + 1, teacher, seed, steps)
    last = curvature_path(teacher, u)["path"][-1]
    return {
        "teacher": at_teacher.kind == "nondegenerate_min"
        and abs(at_teacher.lambda_min - LAMBDA_MIN_AT_TEACHER) < 1e-12,
        "exact_rate": abs(exact["mu_last"] / LAMBDA_MIN_AT_TEACHER - 1) < 1e-3 and abs(exact["slope"] - 1) < 0.15,
        # At 1600 steps, seeds 0–9: slope 1.17–1.33, η·t ratio 2.91–3.39 (still approaching 4/3 and 3).
        "wide_rate": abs(wide["slope"] - 4 / 3) < 0.2 and abs(wide["eta_t_ratio"] - 3) < 0.5,
        "curvature": abs(last["lambda_min"] / last["t"] / SPLIT_CURVATURE_SLOPE - 1) < 1e-3,
        "one_point": all(0.09 < f < 0.11 for f in one_point_decay(one_point_at_the_split_minimum(teacher, 20, seed))),
    }


def report_exact(report, teacher: torch.Tensor, seed: int, steps: int, tb) -> dict:
    """Part 1: width k*, at the teacher and along gradient descent."""
    report.section(f"1. width k* = {K}: the teacher itself, and gradient descent from 0.1·N(0, I) ({steps} steps)")
    at_teacher = classify_critical_point(GaussianReLUObjective(relu_network(teacher), teacher))
    exact = descend(K, teacher, seed, steps, tb)
    report.line(
        f"at the teacher: {at_teacher.kind}, λ_min = {at_teacher.lambda_min:.15f} (¼ − 1/(2π) = "
        f"{LAMBDA_MIN_AT_TEACHER:.15f}), ‖∇L‖ = {fmt(at_teacher.grad_norm, 1)}"
    )
    report.line(
        f"GD: L = {fmt(exact['loss'])}, PL ratio at the last valid evaluation {exact['mu_last']:.5f}, Łojasiewicz "
        f"slope {exact['slope']:.3f}"
    )
    report.check(
        "width k*: a nondegenerate minimum with λ_min = ¼ − 1/(2π); the PL ratio tends to it (within 1e-3: a linear "
        "rate along the slowest direction)",
        at_teacher.kind == "nondegenerate_min"
        and abs(at_teacher.lambda_min - LAMBDA_MIN_AT_TEACHER) < 1e-12
        and abs(exact["mu_last"] / LAMBDA_MIN_AT_TEACHER - 1) < 1e-3,
        f"{at_teacher.kind}, λ_min = {at_teacher.lambda_min:.6f}, last PL ratio {exact['mu_last']:.5f}",
    )
    return {**exact, "kind": at_teacher.kind, "lambda_min": at_teacher.lambda_min}


def report_wide(report, teacher: torch.Tensor, seed: int, steps: int, tb) -> dict:
    """Part 2: width k* + 1 along gradient descent."""
    report.section(f"2. width k* + 1 = {K + 1}: gradient descent from 0.1·N(0, I) ({steps} steps)")
    wide = descend(K + 1, teacher, seed, steps, tb)
    report.line(
        f"L = {fmt(wide['loss'])}, PL ratio {fmt(wide['mu_last'])}, Łojasiewicz slope {wide['slope']:.3f} (4/3 for "
        f"cubic growth), η·t ratio {wide['eta_t_ratio']:.3f} (Xu–Du: 3)"
    )
    report.check(
        "width k* + 1: PL fails (PL ratio below a tenth of λ_min), polynomial signature: slope > 1.05, η·t ratio "
        "in (2.5, 5) (under PL: slope 1, η·t ratio ≈ 2ηtμ, tens here)",
        wide["mu_last"] < 0.1 * LAMBDA_MIN_AT_TEACHER and wide["slope"] > 1.05 and 2.5 < wide["eta_t_ratio"] < 5,
        f"PL ratio {fmt(wide['mu_last'])}, slope {wide['slope']:.3f}, η·t ratio {wide['eta_t_ratio']:.3f}",
    )
    return wide


def report_curvature(report, teacher: torch.Tensor, u: torch.Tensor) -> dict:
    """Part 3: the split global minimum and the negative curvature next to it."""
    report.section("3. width k* + 1: the split global minimum θ* = (v_1/2, v_1/2, v_2), and θ(t) = θ* + t(u, u, 0)/√2")
    curvature = curvature_path(teacher, u)
    report.line(
        f"θ*: L = 0, ‖∇L‖ = {fmt(curvature['star_grad_norm'], 1)}, {curvature['star_kind']}, index "
        f"{curvature['star_index']}, nullity {curvature['star_nullity']} (d = {D}), λ_min = "
        f"{fmt(curvature['star_lambda_min'], 1)}"
    )
    for point in curvature["path"]:
        report.line(
            f"t = {point['t']:.0e}: λ_min(H) = {point['lambda_min']:+.6e} ± {fmt(point['bound'], 1)}, λ_min/t = "
            f"{point['lambda_min'] / point['t']:+.5f} (−2√2/π = {SPLIT_CURVATURE_SLOPE:+.5f})"
        )
    last = curvature["path"][-1]
    report.check(
        "not locally convex: λ_min(H) < 0 at every t, λ_min/t → −2√2/π (docs/theory.md §9.3 (b)); θ* itself "
        "index 0 with nullity d",
        all(p["lambda_min"] + p["bound"] < 0 for p in curvature["path"])
        and abs(last["lambda_min"] / last["t"] / SPLIT_CURVATURE_SLOPE - 1) < 1e-3
        and (curvature["star_index"], curvature["star_nullity"]) == (0, D),
        f"λ_min/t at t = {last['t']:.0e}: {last['lambda_min'] / last['t']:+.5f}; θ* {curvature['star_kind']}",
    )
    return curvature


def report_one_point(report, teacher: torch.Tensor, directions: int, seed: int) -> dict:
    """Part 4: one-point convexity toward θ*, at the certified critical point θ*."""
    report.section("4. one-point convexity toward θ*, at θ* + rD (θ* critical: ‖∇L(θ*)‖ at rounding)")
    one_point = one_point_at_the_split_minimum(teacher, directions, seed)
    for i, r in enumerate(one_point["radii"]):
        null = [format(n["rho"][i], ".2e") for n in one_point["null"]]
        report.line(
            f"r = {r:.0e}: random D: min ρ {one_point['random_min'][i]:.3e}, median "
            f"{one_point['random_median'][i]:.3e}; null directions of H(θ*): ρ = {null}"
        )
    decay = one_point_decay(one_point)
    report.check(
        "one-point strongly convex in most directions (ρ > 0 in every random D), not locally: along the null "
        "directions of H(θ*) ρ ∝ r → 0 (a factor 0.1 per decade of r, within 0.09–0.11)",
        min(one_point["random_min"]) > 0 and all(0.09 < f < 0.11 for f in decay),
        f"random min ρ {min(one_point['random_min']):.3e}; null-direction ρ per decade of r: "
        f"{[format(f, '.3f') for f in decay]}",
    )
    return one_point


def report_split(report, quick: bool) -> dict:
    """Part 5: a certified spurious minimum with one neuron split in halves."""
    report.section(
        f"5. a certified spurious minimum of k = n = {SPURIOUS_WIDTH} (V = I, start {SPURIOUS_SEED}) with one neuron "
        "split into halves"
    )
    split = split_neurons(quick)
    report.line(
        f"width {SPURIOUS_WIDTH}: L = {split['small_loss']:.6f}, ‖∇L‖ = {fmt(split['small_grad_norm'], 1)}, "
        f"{split['small_kind']}, λ_min = {fmt(split['small_lambda_min'])}"
    )
    for s in split["splits"]:
        report.line(
            f"neuron {s['neuron']} split: ‖∇L‖ = {fmt(s['grad_norm'], 1)}, {s['kind']}, index {s['index']}, nullity "
            f"{s['nullity']}, λ_min = {fmt(s['lambda_min'])}"
        )
    report.check(
        f"one neuron more: the spurious minimum becomes a strict saddle (index d − 1 = {SPURIOUS_WIDTH - 1}) whichever "
        "neuron is split",
        split["small_kind"] == "nondegenerate_min"
        and split["small_loss"] > 1e-3
        and all(s["kind"] == "strict_saddle" and s["index"] == SPURIOUS_WIDTH - 1 for s in split["splits"]),
        f"{split['small_kind']} → {sorted({(s['kind'], s['index']) for s in split['splits']})}",
    )
    return split


def main(quick: bool = False, logdir: str | Path = "runs", seed: int = 0) -> dict:
    report = Report(
        f"Mild over-parameterization on the population loss: ReLU students of width k* = {K} and k* + 1 (d = {D})",
        "Safran, Yehudai & Shamir, COLT 2021, arXiv:2006.01005; Xu & Du, COLT 2023; docs/theory.md §9, §6 E1, §2.4",
    )
    teacher, u = teacher_and_complement(seed)
    steps = 400 if quick else 1600
    tb = writer(logdir, NAME)
    results = {
        "exact": report_exact(report, teacher, seed, steps, tb),
        "wide": report_wide(report, teacher, seed, steps, tb),
        "curvature": report_curvature(report, teacher, u),
        "one_point": report_one_point(report, teacher, 50 if quick else 200, seed),
        "split": report_split(report, quick),
    }
    tb.close()
    return report.finish(Path(logdir) / NAME, results=results)


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
