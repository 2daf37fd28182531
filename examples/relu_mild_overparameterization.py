"""ReLU students with k vs k + 1 neurons learning a k-neuron ReLU teacher (Safran–Yehudai–Shamir; Xu–Du; E1).

Teacher: k = 2 orthonormal ReLU neurons in d = 3, output weights fixed to 1, no biases (docs/theory.md §0.2).
Students of width k and k + 1 (same conventions) are trained by plain gradient descent (η = 0.05) from a small
random init (0.1·N(0, I)) on a large Gaussian sample, the empirical stand-in for the population loss.
Expected: at width k, a nondegenerate minimum (local strong convexity), PL ratio → λ_min, linear rate; at
k + 1, two students share one teacher neuron, the loss decays polynomially (Xu–Du: Θ(t⁻³)), the PL ratio
falls toward 0 with the polynomial signature (Łojasiewicz slope ≠ 1, η·t·‖∇L‖²/L → 3), and one-point
convexity around the end point is positive in most directions but not all (the §3.4 proxy).

Last, "a non-global minimum of k neurons becomes a saddle at k + 1": a spurious minimum θ̄ of the width-4 ReLU
teacher–student problem of ``relu_spurious_minimum_and_linear_nets`` (trainable output weights, seed 10) is
embedded in width 5 by a new neuron with output weight 0 and input weight u. The embedded point is critical iff
D(u) = (2/n) Σ_x r_x relu(u·x) = ∂L/∂a_new vanishes (the other partial derivatives are θ̄'s, or carry the
factor a_new = 0); u is found on the unit sphere by bisection between a direction with D > 0 and one with
D < 0. There the (a_new, u) block of the Hessian is [[h, gᵀ], [g, 0]] with g = (2/n) Σ_x r_x 1{u·x > 0} x ≠ 0
(docs/theory.md §1.6, R-zero): indefinite, so the embedded point is a strict saddle although θ̄ was a minimum.

Run:  python examples/relu_mild_overparameterization.py [--quick]
      (TensorBoard: runs/relu_mild_overparameterization)
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

try:
    from examples._common import Report, fmt, lbfgs, newton_polish, parse_quick, writer
    from examples.relu_spurious_minimum_and_linear_nets import (
        K,
        relu_student,
        teacher_data,
    )
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import Report, fmt, lbfgs, newton_polish, parse_quick, writer
    from relu_spurious_minimum_and_linear_nets import K, relu_student, teacher_data

from torch_landscape import (
    classify_critical_point,
    neuron_redundancy,
    one_point_convexity_profile,
)
from torch_landscape.probe import LandscapeProbe
from torch_landscape.writers import TensorBoardSink

NAME = "relu_mild_overparameterization"


def relu_net(weight: torch.Tensor) -> nn.Sequential:
    """Σ_i relu(w_i·x): output weights fixed to 1, no biases."""
    m, d = weight.shape
    net = nn.Sequential(nn.Linear(d, m, bias=False), nn.ReLU(), nn.Linear(m, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(weight)
        net[2].weight.fill_(1.0)
    net[2].weight.requires_grad_(False)
    return net


def train(width, teacher, x, y, *, steps, lr, logdir, tag):
    generator = torch.Generator().manual_seed(width)
    net = relu_net(0.1 * torch.randn(width, x.shape[1], generator=generator, dtype=torch.float64))
    loss_fn = nn.MSELoss()
    probe = LandscapeProbe(net, loss_fn, (x, y), loss_star=0.0, k=3, quantities=["pl"])
    tb = writer(logdir, f"{NAME}/{tag}")
    sink = TensorBoardSink(tb)
    optimizer = torch.optim.SGD([net[0].weight], lr=lr)
    grid = sorted({int(v) for v in torch.logspace(0, math.log10(steps), 30).tolist()} | {steps})
    snap = None
    for step in range(steps + 1):
        if step in grid:
            snap = probe.snapshot(step, learning_rate=lr)
            sink.log(snap, probe)
        if step == steps:
            break
        optimizer.zero_grad()
        loss_fn(net(x), y).backward()
        optimizer.step()
    tb.close()
    return net, snap


SPURIOUS_SEED = 10  # a spurious minimum of relu_spurious_minimum_and_linear_nets (L = 0.039, min_mod_symmetry)


def embed(net: nn.Sequential, u: torch.Tensor) -> nn.Sequential:
    """The width k + 1 network: ``net`` plus a neuron with input weight u and output weight 0."""
    w, a = net[0].weight.detach(), net[2].weight.detach()
    big = nn.Sequential(
        nn.Linear(w.shape[1], w.shape[0] + 1, bias=False), nn.ReLU(), nn.Linear(w.shape[0] + 1, 1, bias=False)
    ).double()
    with torch.no_grad():
        big[0].weight.copy_(torch.cat([w, u.unsqueeze(0)]))
        big[2].weight.copy_(torch.cat([a, a.new_zeros(1, 1)], dim=1))
    return big


def zero_of_new_neuron_slope(residual: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """A unit u with D(u) = (2/n) Σ r_x relu(u·x) = 0: bisection on the arc between the largest and smallest D
    among 256 random directions (D is continuous on the sphere)."""

    def slope(u: torch.Tensor) -> torch.Tensor:
        return 2 * (residual * torch.relu(x @ u)).mean(dim=0)

    candidates = torch.randn(x.shape[1], 256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    candidates /= candidates.norm(dim=0)
    values = slope(candidates)
    high, low = candidates[:, values.argmax()], candidates[:, values.argmin()]
    for _ in range(100):
        middle = (high + low) / (high + low).norm()
        if slope(middle.unsqueeze(1))[0] > 0:
            high = middle
        else:
            low = middle
    u = (high + low) / (high + low).norm()
    return u, float(slope(u.unsqueeze(1))[0])


def width_escape(report) -> dict:
    """A spurious minimum of width k, embedded at width k + 1 with a zero output weight: a strict saddle."""
    loss_fn = nn.MSELoss()
    _, x, y = teacher_data()
    net = relu_student(K, SPURIOUS_SEED)
    lbfgs(net, x, y, max_iter=200, gtol=1e-13)
    newton_polish(net, loss_fn, (x, y))
    small = classify_critical_point(net, loss_fn, (x, y))
    with torch.no_grad():
        residual = net(x) - y
    u, slope = zero_of_new_neuron_slope(residual, x)
    g = 2 * (residual * (x @ u > 0).unsqueeze(1) * x).mean(dim=0)
    big = embed(net, u)
    cp = classify_critical_point(big, loss_fn, (x, y))
    report.section(
        f"a non-global minimum of width k = {K} embedded at width k + 1 (ReLU teacher–student of "
        f"relu_spurious_minimum_and_linear_nets, seed {SPURIOUS_SEED})"
    )
    report.line(
        f"width {K}: L = {fmt(small.loss)} > 0, {small.kind}, index {small.morse_index}, nullity "
        f"{small.nullity} (rescaling rank {small.symmetry_rank})"
    )
    report.line(
        f"new neuron u with D(u) = ∂L/∂a_new = {slope:+.1e}; ‖g‖ = ‖(2/n)Σ r 1{{u·x > 0}} x‖ = {fmt(float(g.norm()))}"
    )
    report.line(
        f"width {K + 1}: L = {fmt(cp.loss)}, ‖∇L‖ = {fmt(cp.grad_norm)}, {cp.kind}, index {cp.morse_index}, "
        f"λ_min = {fmt(cp.lambda_min)}"
    )
    report.check(
        f"the width-{K} minimum (index 0, L > 0) is a strict saddle at width {K + 1}",
        small.morse_index == 0 and small.loss > 1e-3 and cp.kind == "strict_saddle",
        f"{small.kind} → {cp.kind} (index {cp.morse_index})",
    )
    return {
        "small_kind": small.kind,
        "small_loss": small.loss,
        "small_index": small.morse_index,
        "slope": slope,
        "g_norm": float(g.norm()),
        "kind": cp.kind,
        "index": cp.morse_index,
        "grad_norm": cp.grad_norm,
        "lambda_min": cp.lambda_min,
        "loss": cp.loss,
        "model": big,
    }


def main(quick: bool = False, logdir: str | Path = "runs") -> dict:
    report = Report(
        "Mild over-parameterization: ReLU students of width k = 2 and k + 1 = 3 (d = 3)",
        "Safran, Yehudai & Shamir, COLT 2021, arXiv:2006.01005; Xu & Du, COLT 2023; docs/theory.md §6 E1, §2.4, §3.4",
    )
    k, d = 2, 3
    n = 1000 if quick else 4000
    steps = 800 if quick else 6000
    lr = 0.05
    generator = torch.Generator().manual_seed(0)
    teacher_w = torch.linalg.qr(torch.randn(d, k, generator=generator, dtype=torch.float64))[0].T  # orthonormal rows
    teacher = relu_net(teacher_w)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = teacher(x).detach()
    loss_fn = nn.MSELoss()
    results = {}
    for width in (k, k + 1):
        report.section(
            f"student width {width} ({'= k' if width == k else '= k + 1'}), n = {n} Gaussian samples, {steps} GD steps"
        )
        net, snap = train(width, teacher, x, y, steps=steps, lr=lr, logdir=logdir, tag=f"width{width}")
        pl = snap.pl
        if width == k:
            # GD's linear rate leaves ‖∇L‖ just above the criticality threshold; polish with L-BFGS to classify.
            lbfgs(net, x, y, max_iter=200)
        cp = classify_critical_point(net, loss_fn, (x, y))
        red = neuron_redundancy(net, (x, y))
        report.line(
            f"L = {fmt(pl.loss)}; PL ratio {fmt(pl.mu)} (running min {fmt(pl.mu_running_min)}); contraction "
            f"{pl.contraction:.5f}/step; Łojasiewicz slope {pl.lojasiewicz_slope:.3f}; η·t ratio {pl.eta_t_ratio:.3f}"
        )
        report.line(
            ("after L-BFGS polish, " if width == k else "")
            + f"classification: {cp.kind} (index {cp.morse_index}, nullity {cp.nullity}, λ_min = "
            f"{fmt(cp.lambda_min)}, λ_max = {fmt(cp.lambda_max)})"
        )
        report.line(
            f"redundancy: effective width {red.effective_width} (on data {red.effective_width_on_data}) of "
            f"{red.width}; smallest score {fmt(red.score)} ({red.score_rule})"
        )
        entry = {
            "loss": pl.loss,
            "mu": pl.mu,
            "mu_running_min": pl.mu_running_min,
            "slope": pl.lojasiewicz_slope,
            "eta_t_ratio": pl.eta_t_ratio,
            "contraction": pl.contraction,
            "kind": cp.kind,
            "lambda_min": cp.lambda_min,
            "score": red.score,
        }
        if width == k:
            report.check(
                "width k: nondegenerate minimum (local strong convexity), PL ratio ≈ λ_min-scale, "
                "Łojasiewicz slope ≈ 1 (linear rate)",
                cp.kind == "nondegenerate_min" and abs(pl.lojasiewicz_slope - 1) < 0.2,
                f"{cp.kind}, λ_min = {fmt(cp.lambda_min)}, μ = {fmt(pl.mu)}, slope {pl.lojasiewicz_slope:.3f}",
            )
        else:
            profile = one_point_convexity_profile(net, loss_fn, (x, y), num_directions=50 if quick else 200)
            med = profile.quantiles[:, 3]
            entry.update(
                profile_median=med.tolist(),
                profile_frac_bad=profile.frac_bad.tolist(),
                profile_min=profile.quantiles[:, 0].tolist(),
            )
            for r, m_, f_, q in zip(
                profile.radii.tolist(),
                med.tolist(),
                profile.frac_bad.tolist(),
                profile.quantiles[:, 0].tolist(),
                strict=True,
            ):
                report.line(
                    f"one-point convexity around the end point, r = {r:.1e}: median {m_:.3e}, min {q:.2e}, "
                    f"frac_bad {f_:.1%}  (§3.4 proxy)"
                )
            report.check(
                "width k+1: PL ratio falls toward 0 with the polynomial signature "
                "(μ below half of width k's, slope > 1.15, η·t ratio in (2, 4), Xu–Du: 3)",
                pl.mu < 0.5 * results[f"width{k}"]["mu_running_min"]
                and pl.lojasiewicz_slope > 1.15
                and 2.0 < pl.eta_t_ratio < 4.0,
                f"μ = {fmt(pl.mu)}, slope {pl.lojasiewicz_slope:.3f}, η·t ratio {pl.eta_t_ratio:.3f}",
            )
            report.check(
                "one-point convexity in most directions: median > 0 and frac_bad > 0 (proxy)",
                bool((med > 0).all()) and bool((profile.frac_bad > 0).any()),
                f"medians {[f'{v:.2e}' for v in med.tolist()]}, "
                f"frac_bad {[f'{v:.0%}' for v in profile.frac_bad.tolist()]}",
            )
        results[f"width{width}"] = entry
    results["embedding"] = width_escape(report)
    return report.finish(
        Path(logdir) / NAME,
        results=results,
        note="Note: a finite sample, not the population loss. Within one ReLU activation pattern two "
        "students sharing a teacher neuron are exactly flat in their difference, so the cubic "
        "growth (and the t⁻³ rate) is the population picture; with n samples it holds until the "
        "students' angle falls below the data's angular resolution.",
    )


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
