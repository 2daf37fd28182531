"""Spurious minima of ReLU networks where Safran–Shamir state them, a finite sample's artefacts, and linear networks.

Part A (Safran–Shamir, population; docs/theory.md §9.1, §9.3 (c)): teacher V = I_k (orthonormal) in d = k with
output weights 1, students of width n = k with output weights frozen at 1, no biases, and the population loss
½ E_x (f − f*)² over x ~ N(0, I) in closed form (``GaussianReLUObjective``). From w_i ~ N(0, I/d) starts, L-BFGS
and then Newton steps on the dense Hessian take each run to a critical point, which the library classifies.
A *certified spurious minimum* is critical to rounding (Newton-step test), ``nondegenerate_min`` (H ≻ 0),
has every w_i ≠ 0 (L is C² there) and L > 1e-6: a strict local minimum that is not global (L(V) = 0). Safran
and Shamir prove such minima exist for 6 ≤ k ≤ 20 and report that gradient methods reach them often, more
often for larger k; k = 4 below their range is the contrast. The full run also refits the k = 10 starts with
one neuron more (width k + 1): "mild over-parameterization appears to drastically reduce such local minima".

Part B (a finite sample, labelled as such): the teacher of k = 4 orthonormal neurons labels n = 200 Gaussian
inputs in d = 4, and students Σ_i a_i relu(w_i·x) with a and W trained, from N(0, 1/d) weights, are fitted
to the sample (L-BFGS, Newton polishing). Some end at minima with L > 0 (index 0, nullity = the k
rescalings (a_i, w_i) → (a_i/c, c·w_i), docs/theory.md §1.4; no neuron dead on the data). They are artefacts of
the sample: the same starts on the population loss of the same teacher and architecture (trainable a) all
reach L = 0. A ReLU Hessian on data is valid only with no data point on a kink: the kink margin is printed,
and runs that end on a kink are counted apart.

Part C (Zhou–Liang's positive result, docs/theory.md T2): one-hidden-layer *linear* networks y = a·(Wx) trained
from random inits always reach the least-squares loss; the origin is a strict saddle with Morse index h.

Run:  python examples/relu_spurious_minimum_and_linear_nets.py [--quick]
      (TensorBoard: runs/relu_spurious_minimum_and_linear_nets)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

try:
    from examples._common import (
        Report,
        fit_restarts,
        fmt,
        lbfgs,
        newton_polish,
        parse_quick,
        replay,
        writer,
    )
    from examples._population import fit, random_student
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import (
        Report,
        fit_restarts,
        fmt,
        lbfgs,
        newton_polish,
        parse_quick,
        replay,
        writer,
    )
    from _population import fit, random_student

from torch_landscape import HessianOperator, classify_critical_point, landscape_slices, redundancy_nullity_check
from torch_landscape.probe import LandscapeProbe
from torch_landscape.writers.figures import slice_2d_figure, to_image

NAME = "relu_spurious_minimum_and_linear_nets"
D = K = 4
N_SAMPLES = 200
GLOBAL_LOSS, SPURIOUS_LOSS, KINK_MARGIN, CRITICAL_GRADIENT = 1e-12, 1e-6, 1e-8, 1e-10
# The population loss cancels to rounding (~1e-15, docs/theory.md §9.1) at its global minimum L = 0.
POPULATION_GLOBAL = 1e-10
#: Safran–Shamir's k = n: 4 lies below their range 6 ≤ k ≤ 20, 8 and 10 inside it.
POPULATION_WIDTHS, QUICK_WIDTHS = (4, 8, 10), (4, 10)
OVERPARAMETERIZED = 10  # the teacher width whose starts are refitted with one neuron more


def population_category(cp, weight: torch.Tensor) -> str:
    """Global, certified spurious minimum (docs/theory.md §9.3 (c)), or what else the library says."""
    if float(weight.norm(dim=1).min()) <= 1e-6:
        return "a neuron at w_i = 0 (L not differentiable there)"
    if not cp.critical:
        return f"other: not critical (‖∇L‖ = {cp.grad_norm:.0e})"
    if cp.loss <= POPULATION_GLOBAL:
        return "global minimum"
    if cp.kind in ("nondegenerate_min", "min_mod_symmetry") and cp.loss > SPURIOUS_LOSS:
        return "certified spurious minimum"
    return f"other: {cp.kind}, index {cp.morse_index}"


def tally(runs: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in runs:
        counts[run["category"]] = counts.get(run["category"], 0) + 1
    return counts


def population_minima(report, quick: bool) -> dict:
    """Safran–Shamir's setting: k = n, V = I, output weights 1, the population loss; every start classified."""
    starts = range(4 if quick else 20)
    results = {}
    for k in QUICK_WIDTHS if quick else POPULATION_WIDTHS:
        report.section(
            f"A. population (x ~ N(0, I)), teacher V = I_{k}, student width n = k = {k}, output weights 1: "
            f"{len(starts)} starts, L-BFGS then Newton polishing"
        )
        runs = []
        for seed in starts:
            objective = fit(random_student(k, k, seed), torch.eye(k, dtype=torch.float64))
            cp = classify_critical_point(objective)
            weight = objective.student()[0]
            runs.append(
                {
                    "seed": seed,
                    "loss": cp.loss,
                    "grad_norm": cp.grad_norm,
                    "kind": cp.kind,
                    "critical": cp.critical,
                    "lambda_min": cp.lambda_min,
                    "lambda_min_bound": float(cp.error_bounds[0]),
                    "min_neuron_norm": float(weight.norm(dim=1).min()),
                    "category": population_category(cp, weight),
                    "weight": weight.clone(),
                }
            )
        counts = tally(runs)
        for label, count in sorted(counts.items()):
            report.line(f"{count:3d} / {len(runs)}  {label}")
        spurious = [run for run in runs if run["category"] == "certified spurious minimum"]
        for value in sorted({round(run["loss"], 6) for run in spurious}):
            same = [run for run in spurious if round(run["loss"], 6) == value]
            first = same[0]
            report.line(
                f"L = {value:.6f} at {len(same)} start(s) (seeds {[run['seed'] for run in same]}): ‖∇L‖ = "
                f"{fmt(first['grad_norm'], 1)}, {first['kind']}, λ_min = {fmt(first['lambda_min'])} ± "
                f"{fmt(first['lambda_min_bound'], 1)}, smallest ‖w_i‖ = {first['min_neuron_norm']:.3f}"
            )
        results[k] = {"runs": runs, "tally": counts}
    low = results[4]
    report.check(
        "k = n = 4 (below 6 ≤ k ≤ 20): every start reaches the global minimum, no spurious minimum",
        all(run["category"] == "global minimum" for run in low["runs"]),
        f"{low['tally']}",
    )
    found = {k: sum(run["category"] == "certified spurious minimum" for run in results[k]["runs"]) for k in results}
    report.check(
        "k = n in 6 ≤ k ≤ 20: certified spurious minima (critical to rounding, H ≻ 0, L > 0) at every width tried",
        all(found[k] > 0 for k in results if k >= 6),
        ", ".join(f"k = {k}: {found[k]}/{len(results[k]['runs'])}" for k in results),
    )
    if not quick:
        rates = [found[k] / len(results[k]["runs"]) for k in sorted(results)]
        report.check(
            "the rate grows with k (Safran–Shamir)",
            all(a <= b for a, b in zip(rates, rates[1:], strict=False)) and rates[-1] > rates[0],
            ", ".join(f"k = {k}: {found[k]}/{len(results[k]['runs'])}" for k in sorted(results)),
        )
        results["overparameterized"] = one_neuron_more(report, results[OVERPARAMETERIZED]["runs"])
    return results


def one_neuron_more(report, runs: list[dict]) -> dict:
    """The same starts with one neuron more (the first k rows of each width-(k + 1) start are the width-k start).

    Global minima of width k + 1 are degenerate (docs/theory.md §9.3 (b)), so no Newton polishing: 150 L-BFGS
    iterations (enough for L ~ 1e-11 where width k stops at a spurious minimum), then the loss; above 1e-6 the
    library says whether the run stopped at a critical point (a spurious one) or is still descending."""
    k = OVERPARAMETERIZED
    report.section(f"A'. the same {len(runs)} starts with one neuron more: width k + 1 = {k + 1}, teacher V = I_{k}")
    outcomes = []
    for run in runs:
        student = random_student(k + 1, k, run["seed"])
        objective = fit(student, torch.eye(k, dtype=torch.float64), max_iter=150, polish=False)
        loss = float(objective.loss(objective.theta))
        if loss <= SPURIOUS_LOSS:
            label = "reaches L ≤ 1e-6"
        else:
            cp = classify_critical_point(objective)
            label = f"critical above L = 1e-6 ({cp.kind})" if cp.critical else "still descending"
        outcomes.append({"seed": run["seed"], "loss": loss, "category": label, "width_k": run["category"]})
    stuck = [o for o in outcomes if o["category"].startswith("critical")]
    before = sum(run["category"] == "certified spurious minimum" for run in runs)
    report.line(f"width {k + 1}: {tally(outcomes)}; largest L = {fmt(max(o['loss'] for o in outcomes))}")
    report.check(
        "one neuron more: far fewer starts end at a critical point above the global value (Safran–Shamir: mild "
        "over-parameterization drastically reduces spurious minima)",
        len(stuck) < before / 2,
        f"width {k}: {before}/{len(runs)} certified spurious minima; width {k + 1}: {len(stuck)}/{len(outcomes)} "
        f"critical above L = 1e-6 ({tally(outcomes)})",
    )
    return {"runs": outcomes, "stuck": len(stuck), "spurious_at_k": before, "tally": tally(outcomes)}


def teacher_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(V, X, y): k orthonormal teacher rows V, Gaussian inputs, labels Σ_j relu(v_j·x)."""
    generator = torch.Generator().manual_seed(0)
    teacher = torch.linalg.qr(torch.randn(D, K, generator=generator, dtype=torch.float64))[0].T
    x = torch.randn(N_SAMPLES, D, generator=generator, dtype=torch.float64)
    return teacher, x, torch.relu(x @ teacher.T).sum(dim=1, keepdim=True)


def relu_student(width: int, seed: int) -> nn.Sequential:
    """Σ_i a_i relu(w_i·x), no biases, W and a ~ N(0, 1/d)."""
    generator = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(D, width, bias=False), nn.ReLU(), nn.Linear(width, 1, bias=False)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) / D**0.5)
    return net


def kink_margin(net: nn.Sequential, x: torch.Tensor) -> float:
    """min_{i,x} |w_i·x| / ‖w_i‖: how far the data are from every neuron's kink (0: Hessian undefined)."""
    w = net[0].weight.detach()
    return float(((x @ w.T).abs() / w.norm(dim=1).clamp_min(1e-300)).min())


def dead_neurons(net: nn.Sequential, x: torch.Tensor) -> list[int]:
    """Neurons with w_i·x ≤ 0 at every data point (a feature that is zero on the sample)."""
    return [int(i) for i in torch.nonzero(((x @ net[0].weight.detach().T) > 0).sum(dim=0) == 0).flatten()]


def category(loss: float, margin: float, cp) -> str:
    """Global (L ≤ 1e-12), finite-sample minimum, on a kink, or other.

    A minimum above L = 1e-6: index 0 and ‖∇L‖ ≤ 1e-10 (the Newton-polished critical points reach ~1e-16; a run
    still moving, e.g. with weights drifting off, stays far above), besides the library's criticality test.
    """
    if margin <= KINK_MARGIN:
        return "on a kink (Hessian undefined)"
    if loss <= GLOBAL_LOSS:
        return "global minimum"
    if cp.critical and cp.grad_norm <= CRITICAL_GRADIENT and cp.morse_index == 0 and loss > SPURIOUS_LOSS:
        return "finite-sample minimum"
    return f"other: {cp.kind}, index {cp.morse_index}" + (", not critical" if cp.grad_norm > CRITICAL_GRADIENT else "")


def finite_sample_minima(report, quick: bool) -> dict:
    """The n = 200 sample (a trainable): minima at L > 0, and the same starts on the population loss."""
    loss_fn = nn.MSELoss()
    teacher, x, y = teacher_data()
    seeds = range(12 if quick else 20)
    report.section(
        f"B. a finite sample (n = {N_SAMPLES}, d = {D}), teacher k = {K} orthonormal, student width {K} with "
        f"trainable output weights, {len(seeds)} seeds: L-BFGS, then Newton polishing"
    )
    runs = []
    for seed in seeds:
        net = relu_student(K, seed)
        lbfgs(net, x, y, max_iter=200, gtol=1e-13)
        newton_polish(net, loss_fn, (x, y))
        cp = classify_critical_point(net, loss_fn, (x, y))
        margin = kink_margin(net, x)
        label = category(cp.loss, margin, cp)
        minimum = label == "finite-sample minimum"
        population = fit(relu_student(K, seed), teacher)
        population_cp = classify_critical_point(population)
        runs.append(
            {
                "seed": seed,
                "loss": cp.loss,
                "grad_norm": cp.grad_norm,
                "kind": cp.kind,
                "critical": cp.critical,
                "index": cp.morse_index,
                "nullity": cp.nullity,
                "quotient_nullity": cp.quotient_nullity,
                "symmetry_rank": cp.symmetry_rank,
                "margin": margin,
                "category": label,
                "dead": dead_neurons(net, x),
                # Which null directions the library explains (rescalings, redundancies) at the minima.
                "unexplained": redundancy_nullity_check(net, loss_fn, (x, y)).unexplained_nullity if minimum else None,
                "population_loss": population_cp.loss,
                "population_category": population_category(population_cp, population.student()[0]),
                "state": {k: v.clone() for k, v in net.state_dict().items()},
            }
        )
    counts = tally(runs)
    for label, count in sorted(counts.items()):
        report.line(f"{count:3d} / {len(runs)}  {label}")
    minima = [run for run in runs if run["category"] == "finite-sample minimum"]
    for run in minima:
        report.line(
            f"seed {run['seed']:2d}: L = {fmt(run['loss'])}, ‖∇L‖ = {fmt(run['grad_norm'], 1)}, {run['kind']}, index "
            f"{run['index']}, nullity {run['nullity']} = rescaling rank {run['symmetry_rank']} + quotient nullity "
            f"{run['quotient_nullity']}, kink margin {fmt(run['margin'], 1)}, neurons dead on the data "
            f"{run['dead']}, unexplained null directions {run['unexplained']}; the same start on the population "
            f"loss: {run['population_category']} (L = {fmt(run['population_loss'], 1)})"
        )
    population = tally([{"category": run["population_category"]} for run in runs])
    report.line(f"the same {len(runs)} starts on the population loss: {population}")
    report.check(
        f"the sample has minima at L > {SPURIOUS_LOSS:g} (critical, Morse index 0); every null direction is explained "
        "(the k rescalings), none has a neuron dead on the data",
        bool(minima) and all(run["unexplained"] == 0 and not run["dead"] for run in minima),
        f"{[(run['seed'], run['kind'], run['nullity'], run['unexplained'], run['dead']) for run in minima]}",
    )
    report.check(
        "they are artefacts of the sample: from the same starts the population loss reaches its global minimum",
        all(run["population_category"] == "global minimum" for run in minima),
        f"{[(run['seed'], run['population_category']) for run in minima]}",
    )
    return {"runs": runs, "tally": counts, "population_tally": population}


def linear_data() -> tuple[torch.Tensor, torch.Tensor]:
    """n = 50 Gaussian inputs in d = 3, y = x·(1, −2, 0.5) + 0.3·noise."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    beta = torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    return x, x @ beta + 0.3 * torch.randn(50, 1, generator=generator, dtype=torch.float64)


def linear_nets(report, logdir, quick):
    loss_fn = nn.MSELoss()
    x, y = linear_data()
    n, d, h = len(x), x.shape[1], 2
    beta = torch.linalg.lstsq(x, y).solution  # the least-squares fit: L* of the linear network (model, not metric)
    loss_star = float(loss_fn(x @ beta, y))

    def linear_net(seed):
        net = nn.Sequential(nn.Linear(d, h, bias=False), nn.Identity(), nn.Linear(h, 1, bias=False)).double()
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
        return net

    report.section(f"C. linear networks y = a·(Wx), d = {d}, h = {h}, n = {n}; least-squares L* = {loss_star:.6f}")
    inits = 4 if quick else 10
    gaps, kinds, indices = [], [], []
    for seed in range(inits):
        if seed == 0:
            net, _, states = fit_restarts(linear_net, x, y, restarts=1, max_iter=200, chunk=10)
            probe = LandscapeProbe(net, loss_fn, (x, y), loss_star=loss_star, k=3)
            tb = writer(logdir, f"{NAME}/linear_net")
            replay(probe, net, states, tb)
            tb.close()
        else:
            net = linear_net(seed)
            lbfgs(net, x, y, max_iter=200)
        cp_i = classify_critical_point(net, loss_fn, (x, y), profiles=seed == 0)
        gaps.append(cp_i.loss - loss_star)
        kinds.append(cp_i.kind)
        indices.append(cp_i.morse_index)
        if seed == 0:
            report.line(
                f"init 0: {cp_i.kind} (index {cp_i.morse_index}, nullity {cp_i.nullity}, quotient nullity "
                f"{cp_i.quotient_nullity}); with null-direction profiles: {cp_i.degenerate_kind}"
            )
    report.line(f"L − L* over {inits} random inits: max {max(gaps):.1e}; classifications {sorted(set(kinds))}")
    report.line(
        "note: with h = 2 hidden units and one output the minimisers {a·W = β_LS} form a manifold of dimension "
        f"{h * d + h} − {d} = {h * d + h - d} > dim GL({h}) = {h * h}, so one flat direction is not a symmetry and "
        "the second-order test alone reports 'degenerate' (the probes resolve it)"
    )
    report.check(
        "every random init reaches the global minimum value (L − L* ≤ 1e-10: no spurious minimum)",
        max(gaps) <= 1e-10,
        f"max L − L* = {max(gaps):.1e}, kinds {sorted(set(kinds))}, max index {max(indices)}",
    )
    origin = linear_net(0)
    with torch.no_grad():
        for p in origin.parameters():
            p.zero_()
    cp0 = classify_critical_point(origin, loss_fn, (x, y))
    report.line(
        f"origin: {cp0.kind}, index {cp0.morse_index}, nullity {cp0.nullity}, λ_min = {fmt(cp0.lambda_min)}, "
        f"λ_max = {fmt(cp0.lambda_max)}"
    )
    report.check(
        f"the origin is a strict saddle of index h = {h}",
        cp0.kind == "strict_saddle" and cp0.morse_index == h,
        f"{cp0.kind}, index {cp0.morse_index}",
    )
    return {
        "linear_max_gap": max(gaps),
        "linear_kinds": kinds,
        "linear_max_index": max(indices),
        "origin_kind": cp0.kind,
        "origin_index": cp0.morse_index,
        "origin_lambda_min": cp0.lambda_min,
        "h": h,
    }


def draw_a_finite_sample_minimum(finite: dict, logdir) -> None:
    """The picture (a TensorBoard image): the sample loss on the plane through a finite-sample minimum spanned by
    its flattest eigenvector and the direction to the teacher (neurons matched, rescaled); at t = 1 the global
    minimum, at t = 0 the finite-sample one, each in its own basin."""
    minima = [run for run in finite["runs"] if run["category"] == "finite-sample minimum"]
    if not minima:
        return
    teacher_rows, x, y = teacher_data()
    net, teacher = relu_student(K, 0), relu_student(K, 0)
    net.load_state_dict(minima[0]["state"])
    with torch.no_grad():
        teacher[0].weight.copy_(teacher_rows)
        teacher[2].weight.fill_(1.0)
    operator = HessianOperator(net, nn.MSELoss(), (x, y), dtype=torch.float64)
    plane = landscape_slices(operator, reference=teacher, budget=120).plane
    tb = writer(logdir, f"{NAME}/finite_sample_minimum_seed_{minima[0]['seed']}")
    tb.add_image(
        "landscape/figures/loss_plane_to_the_teacher", to_image(slice_2d_figure(plane, 0)), 0, dataformats="HWC"
    )
    tb.close()


def main(quick: bool = False, logdir: str | Path = "runs") -> dict:
    report = Report(
        "Spurious minima of ReLU networks: the population (Safran–Shamir), a finite sample, and linear networks",
        "Safran & Shamir, ICML 2018; Zhou & Liang, ICLR 2018, arXiv:1710.11205; docs/theory.md §9.3, §6 E5, T2",
    )
    population = population_minima(report, quick)
    finite = finite_sample_minima(report, quick)
    draw_a_finite_sample_minimum(finite, logdir)
    results = {"population": population, "finite_sample": finite}
    results.update(linear_nets(report, logdir, quick))
    return report.finish(Path(logdir) / NAME, results=results)


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
