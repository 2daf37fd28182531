"""Quadratic activations, over-parameterised: full-rank vs rank-deficient planted target (Soltanolkotabi et al.; E7).

f(x) = Σ_j (w_j·x)² = xᵀWᵀWx (``torch_landscape.Square``, output weights fixed to 1, no biases), Gaussian
inputs, labels from a planted M* = W_tᵀW_t of rank r. The student has k = 4 ≥ d = 3 neurons and is trained by
plain gradient descent from a small random init. SJL: with k ≥ d there are no spurious minima, GD reaches
L = 0. How fast depends on M* (docs/theory.md §2.4): full rank r = d gives a minimum that is Morse–Bott modulo the
O(k) symmetry (PL holds, linear convergence, Łojasiewicz slope 1); rank-deficient r < d gives quartic growth
in the directions that would add rank (p = 4, θ_Ł = 3/4): PL fails, L ~ t⁻², slope 2θ_Ł = 1.5, η·t·‖∇L‖²/L → 2.

Run:  python examples/quadratic_activations.py [--quick]      (TensorBoard: runs/quadratic_activations)
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

try:
    from examples._common import Report, fmt, parse_quick, writer
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import Report, fmt, parse_quick, writer

from torch_landscape import classify_critical_point
from torch_landscape.curvature import Square
from torch_landscape.probe import LandscapeProbe
from torch_landscape.writers import TensorBoardSink

NAME = "quadratic_activations"


def quadratic_net(d: int, k: int, generator: torch.Generator, scale: float) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(d, k, bias=False), Square(), nn.Linear(k, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(scale * torch.randn(k, d, generator=generator, dtype=torch.float64))
        net[2].weight.fill_(1.0)
    net[2].weight.requires_grad_(False)  # SJL: output weights fixed
    return net


def run(rank: int, *, d: int, k: int, n: int, steps: int, lr: float, logdir, report) -> dict:
    generator = torch.Generator().manual_seed(10 + rank)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    w_t = torch.randn(rank, d, generator=generator, dtype=torch.float64) / math.sqrt(d)
    y = ((x @ w_t.T) ** 2).sum(dim=1, keepdim=True)  # the planted xᵀM*x, M* = W_tᵀW_t of rank r
    net = quadratic_net(d, k, generator, scale=0.3)
    loss_fn = nn.MSELoss()
    probe = LandscapeProbe(net, loss_fn, (x, y), loss_star=0.0, k=3, quantities=["pl"])
    tb = writer(logdir, f"{NAME}/rank{rank}")
    sink = TensorBoardSink(tb)
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=lr)
    # Evaluate on a log-spaced grid of steps: the polynomial regime needs long horizons, the PL tracker's
    # contraction and η·t ratio work with any spacing.
    grid = sorted({int(v) for v in torch.logspace(0, math.log10(steps), 40 if steps > 2000 else 25).tolist()} | {steps})
    snap = valid = None
    for step in range(steps + 1):
        if step in grid:
            snap = probe.snapshot(step, learning_rate=lr)
            sink.log(snap, probe)
            if math.isfinite(snap.pl.mu) and math.isfinite(snap.pl.contraction):
                valid = snap  # the last evaluation above the rounding floor (full rank reaches L ≈ 1e-30)
        if step == steps:
            break
        optimizer.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
    final = probe.snapshot(steps, full=True, quantities=["critical"], learning_rate=lr)
    sink.log(final, probe)
    tb.close()
    cp = classify_critical_point(net, loss_fn, (x, y), profiles=rank < d)
    pl = valid.pl
    report.line(
        f"final L = {fmt(snap.pl.loss)}; at step {pl.step}, the last evaluation above rounding: L = {fmt(pl.loss)}; "
        f"PL ratio μ = {fmt(pl.mu)} "
        f"(running min {fmt(pl.mu_running_min)}); per-step contraction {pl.contraction:.6f}; "
        f"Łojasiewicz slope {pl.lojasiewicz_slope:.3f}; η·t·‖∇L‖²/L = {pl.eta_t_ratio:.3f}"
    )
    probes = ", ".join(f"{p.verdict} (order {p.order:.2f})" for p in getattr(cp, "probes", ()) or ())
    report.line(
        f"classification: {cp.kind} (index {cp.morse_index}, nullity {cp.nullity}, quotient nullity "
        f"{cp.quotient_nullity}, symmetry rank {cp.symmetry_rank})"
        + (f"; null-direction profiles: {probes}" if probes else "")
    )
    return {
        "loss": pl.loss,
        "mu": pl.mu,
        "mu_running_min": pl.mu_running_min,
        "contraction": pl.contraction,
        "slope": pl.lojasiewicz_slope,
        "eta_t_ratio": pl.eta_t_ratio,
        "kind": cp.kind,
        "nullity": cp.nullity,
        "index": cp.morse_index,
        "negative": cp.negative_count,
        "quotient_nullity": cp.quotient_nullity,
    }


def gd_final_loss(d: int, k: int, n: int, steps: int, lr: float, seed: int) -> float:
    """Plain GD from another random init on the full-rank problem of :func:`run`; the final loss."""
    generator = torch.Generator().manual_seed(10 + d)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    w_t = torch.randn(d, d, generator=generator, dtype=torch.float64) / math.sqrt(d)
    y = ((x @ w_t.T) ** 2).sum(dim=1, keepdim=True)
    net = quadratic_net(d, k, torch.Generator().manual_seed(1000 + seed), scale=0.3)
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        return float(nn.functional.mse_loss(net(x), y))


def main(quick: bool = False, logdir: str | Path = "runs") -> dict:
    report = Report(
        "Quadratic activations: full-rank vs rank-deficient planted M* (d = 3, k = 4)",
        "Soltanolkotabi, Javanmard & Lee, IEEE T-IT 2019, arXiv:1707.04926; docs/theory.md §2.4, §6 E7, T6",
    )
    d, k, n = 3, 4, (100 if quick else 400)
    steps = 1500 if quick else 20000
    lr = 0.01
    results = {}
    report.section(f"full rank: r = d = {d}")
    full = results["full_rank"] = run(d, d=d, k=k, n=n, steps=min(steps, 1500), lr=lr, logdir=logdir, report=report)
    report.check(
        "linear convergence: PL holds (μ bounded away from 0, slope ≈ 1, contraction < 1), min_mod_symmetry at the end",
        full["mu_running_min"] > 1e-3
        and abs(full["slope"] - 1) < 0.15
        and full["contraction"] < 0.999
        and full["kind"] == "min_mod_symmetry",
        f"μ_min = {fmt(full['mu_running_min'])}, slope {full['slope']:.3f}, contraction "
        f"{full['contraction']:.5f}, {full['kind']}",
    )
    inits = 3 if quick else 10
    report.section(
        f"full rank, {inits} more random inits (plain GD, {min(steps, 1500)} steps): does every run reach L = 0?"
    )
    finals = [gd_final_loss(d, k, n, min(steps, 1500), lr, seed) for seed in range(1, inits + 1)]
    report.line(f"final losses: {', '.join(fmt(v, 1) for v in finals)}")
    report.check(
        "no spurious minimum: every init reaches the global minimum (L ≤ 1e-20)",
        max(finals) <= 1e-20,
        f"max final L = {fmt(max(finals))}",
    )
    full["init_losses"] = finals
    report.section("rank-deficient: r = 1")
    low = results["rank_deficient"] = run(1, d=d, k=k, n=n, steps=steps, lr=lr, logdir=logdir, report=report)
    report.check(
        "polynomial convergence: PL fails (μ → 0), Łojasiewicz slope ≈ 2θ_Ł = 1.5, η·t ratio → 2",
        low["mu"] < 0.1 * full["mu_running_min"] and 1.3 < low["slope"] < 1.7 and 1.5 < low["eta_t_ratio"] < 2.6,
        f"μ = {fmt(low['mu'])}, slope {low['slope']:.3f}, η·t ratio {low['eta_t_ratio']:.3f}",
    )
    report.check(
        "not a Morse–Bott minimum: classified degenerate, or not yet critical (GD at a polynomial rate "
        "does not reach the gradient threshold in this budget)",
        low["kind"] in ("degenerate", "not_critical"),
        f"{low['kind']}, {low['negative']} certainly negative eigenvalue(s) on the way, nullity {low['nullity']}, "
        f"quotient nullity {low['quotient_nullity']}",
    )
    return report.finish(Path(logdir) / NAME, results=results)


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
