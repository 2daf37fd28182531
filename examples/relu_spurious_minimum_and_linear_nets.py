"""A ReLU network trapped at a spurious minimum by a dead neuron, and linear networks that never are (Zhou–Liang).

Part A (theory.md §6 E5/E8, Cheridito–Jentzen–Rossmannek): a width-2 ReLU network on the 1-D target |x|
(grid on [−1, 1]). The global minimum is relu(x) + relu(−x), L = 0. If one neuron is dead on the data (its
pre-activation negative at every point), it gets no gradient, the other neuron fits what one ReLU can, and
full-batch L-BFGS stops at a critical point with L > 0. Small perturbations keep the neuron dead, so it is a
(non-strict) local minimum: index 0, with the dead neuron's null directions, which the redundancy module's
"dead on data" finding (D1) explains. Random inits then show how often this trap is hit.

Part B (Zhou–Liang's positive result, theory.md T2): one-hidden-layer *linear* networks y = a·(Wx) trained from
random inits always reach the least-squares loss; the origin is a strict saddle with Morse index h (the
hidden width).

Run:  python examples/relu_spurious_minimum_and_linear_nets.py [--quick]
      (TensorBoard: runs/relu_spurious_minimum_and_linear_nets)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

try:
    from examples._common import Report, fit_restarts, fmt, lbfgs, parse_quick, replay, shallow, writer
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import Report, fit_restarts, fmt, lbfgs, parse_quick, replay, shallow, writer

from torch_landscape import classify_critical_point, neuron_redundancy, redundancy_nullity_check
from torch_landscape.probe import LandscapeProbe

NAME = "relu_spurious_minimum_and_linear_nets"


def dead_neuron_trap(report, logdir, quick):
    loss_fn = nn.MSELoss()
    x = torch.linspace(-1, 1, 41 if quick else 101, dtype=torch.float64).unsqueeze(1)
    y = x.abs()

    def trapped_init(attempt):
        # Neuron 0 alive (w = 1, b = 0.1); neuron 1 dead on every data point (w = 1, b = −2 ⇒ z ≤ −1 on [−1, 1]).
        net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1)).double()
        with torch.no_grad():
            net[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
            net[0].bias.copy_(torch.tensor([0.1, -2.0]))
            net[2].weight.copy_(torch.tensor([[0.5, 0.7]]))
            net[2].bias.zero_()
        return net

    report.section("A. width-2 ReLU on |x|, one neuron dead at init; full-batch L-BFGS")
    net, _, states = fit_restarts(trapped_init, x, y, restarts=1, max_iter=300, chunk=20)
    probe = LandscapeProbe(net, loss_fn, (x, y), loss_star=0.0, k=3)
    tb = writer(logdir, f"{NAME}/relu_dead_neuron")
    replay(probe, net, states, tb)
    tb.close()
    cp = classify_critical_point(net, loss_fn, (x, y))
    red = neuron_redundancy(net, (x, y), loss_fn=loss_fn)
    check = redundancy_nullity_check(net, loss_fn, (x, y), report=red)
    # The neuron dead on the data (index 1) must be named by a verified finding; report its rule.
    dead = [f for f in red.findings if f.verified and 1 in f.neurons]
    report.line(f"L = {fmt(cp.loss)} (global minimum 0), ‖∇L‖ = {fmt(cp.grad_norm)}")
    report.line(f"classification: {cp.kind}, index {cp.morse_index}, nullity {cp.nullity} — {cp.reason}")
    for f in red.findings:
        if f.verified:
            report.line(f"finding: {f.rule} on neurons {f.neurons} (score {fmt(f.score)}, {f.level} level)")
    report.line(f"effective width on data {red.effective_width_on_data} of {red.width}; Hessian nullity "
                f"{check.measured_nullity}, predicted by redundancy + symmetries {check.predicted_nullity}")
    report.check("a critical point with L > 0 recognised as a minimum (critical, Morse index 0)",
                 cp.critical and cp.morse_index == 0 and cp.loss > 1e-3,
                 f"critical={cp.critical}, index {cp.morse_index}, L = {fmt(cp.loss)}")
    report.check("the trap is the dead neuron: a redundancy finding names it and explains the null directions",
                 bool(dead) and check.unexplained_nullity == 0 and check.predicted_nullity >= 3,
                 f"findings on the dead neuron: {[(f.rule, f.neurons) for f in dead]}, nullity {check.measured_nullity} vs predicted "
                 f"{check.predicted_nullity} (unexplained {check.unexplained_nullity})")

    inits = 6 if quick else 20
    report.section(f"A'. {inits} random inits (N(0,1) weights), L-BFGS to convergence")
    counts = {}
    for seed in range(inits):
        net = shallow(1, 2, nn.ReLU(), generator=torch.Generator().manual_seed(seed))
        loss = lbfgs(net, x, y, max_iter=400)
        cp_i = classify_critical_point(net, loss_fn, (x, y))
        red_i = neuron_redundancy(net, (x, y))
        is_dead = any(f.verified and f.rule in ("dead on data", "zero output weight") for f in red_i.findings)
        label = ("global (L≈0)" if loss < 1e-10 else
                 f"L>0, {cp_i.kind}, index {cp_i.morse_index}" + (", a neuron removable (dead / zero output)" if is_dead else ""))
        counts[label] = counts.get(label, 0) + 1
    for label, count in sorted(counts.items()):
        report.line(f"{count:3d} × {label}")
    return dict(relu_loss=cp.loss, relu_kind=cp.kind, relu_index=cp.morse_index, relu_critical=cp.critical,
                relu_dead_findings=len(dead), relu_unexplained_nullity=check.unexplained_nullity,
                relu_random_outcomes=counts)


def linear_nets(report, logdir, quick):
    loss_fn = nn.MSELoss()
    generator = torch.Generator().manual_seed(5)
    n, d, h = 50, 3, 2
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.3 * torch.randn(n, 1, generator=generator, dtype=torch.float64)
    beta = torch.linalg.lstsq(x, y).solution  # the least-squares fit: L* of the linear network (model, not metric)
    loss_star = float(loss_fn(x @ beta, y))

    def linear_net(seed):
        net = nn.Sequential(nn.Linear(d, h, bias=False), nn.Identity(), nn.Linear(h, 1, bias=False)).double()
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
        return net

    report.section(f"B. linear networks y = a·(Wx), d = {d}, h = {h}, n = {n}; least-squares L* = {loss_star:.6f}")
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
        cp_i = classify_critical_point(net, loss_fn, (x, y), probe=seed == 0)
        gaps.append(cp_i.loss - loss_star)
        kinds.append(cp_i.kind)
        indices.append(cp_i.morse_index)
        if seed == 0:
            report.line(f"init 0: {cp_i.kind} (index {cp_i.morse_index}, nullity {cp_i.nullity}, quotient nullity "
                        f"{cp_i.quotient_nullity}); with null-direction probes: {cp_i.degenerate_kind}")
    report.line(f"L − L* over {inits} random inits: max {max(gaps):.1e}; classifications {sorted(set(kinds))}")
    report.line("note: with h = 2 hidden units and one output the minimisers {a·W = β_LS} form a manifold of dimension "
                f"{h * d + h} − {d} = {h * d + h - d} > dim GL({h}) = {h * h}, so one flat direction is not a symmetry and "
                "the second-order test alone reports 'degenerate' (the probes resolve it)")
    report.check("every random init reaches the global minimum (L − L* ≤ 1e-10) and ends at a minimum (index 0)",
                 max(gaps) <= 1e-10 and max(indices) == 0,
                 f"max L − L* = {max(gaps):.1e}, kinds {sorted(set(kinds))}, max index {max(indices)}")
    origin = linear_net(0)
    with torch.no_grad():
        for p in origin.parameters():
            p.zero_()
    cp0 = classify_critical_point(origin, loss_fn, (x, y))
    report.line(f"origin: {cp0.kind}, index {cp0.morse_index}, nullity {cp0.nullity}, λ_min = {fmt(cp0.lambda_min)}, "
                f"λ_max = {fmt(cp0.lambda_max)}")
    report.check(f"the origin is a strict saddle of index h = {h}", cp0.kind == "strict_saddle" and cp0.morse_index == h,
                 f"{cp0.kind}, index {cp0.morse_index}")
    return dict(linear_max_gap=max(gaps), linear_kinds=kinds, linear_max_index=max(indices), origin_kind=cp0.kind, origin_index=cp0.morse_index, h=h)


def main(quick: bool = False, logdir: str | Path = "runs") -> dict:
    report = Report("ReLU spurious minimum (dead neuron) vs linear networks (no spurious minima)",
                    "Zhou & Liang, ICLR 2018, arXiv:1710.11205; Cheridito–Jentzen–Rossmannek (2022); theory.md §6 E5, E8, T2")
    results = dead_neuron_trap(report, logdir, quick)
    results.update(linear_nets(report, logdir, quick))
    return report.finish(Path(logdir) / NAME, results=results)


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
