"""Efficient vs redundant tanh students (Benning–Dereich; docs/theory.md §6 E4).

A tanh teacher with m* = 3 hidden neurons (d = 2, biases) labels n = 500 Gaussian inputs. Students of width
3 (exact) and 4 or 6 (wider) are fitted by full-batch float64 L-BFGS, with noiseless labels and with label
noise σ = 0.1. Benning–Dereich: efficient minimisers (no neuron can be removed) generically have strongly
convex neighbourhoods; redundant ones are never isolated, so their Hessian is singular, and the redundancy
rules explain the null directions (docs/theory.md §4.5). With noise the wider student may end efficient or
redundant, or at no critical point at all (weights escaping while two neurons merge); the report checks the
statement that applies to the case that occurred, and none where no minimiser was reached.

Run:  python examples/efficient_vs_redundant_tanh.py [--quick]      (TensorBoard: runs/efficient_vs_redundant_tanh)
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
        parse_quick,
        replay,
        shallow,
        writer,
    )
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import Report, fit_restarts, fmt, parse_quick, replay, shallow, writer

from torch_landscape import (
    classify_critical_point,
    neuron_redundancy,
    redundancy_nullity_check,
)
from torch_landscape.probe import LandscapeProbe

NAME = "efficient_vs_redundant_tanh"


def fit_student(width, x, y, teacher, *, seed, restarts, max_iter, loss_star, tb):
    """Best of ``restarts`` L-BFGS runs from N(0, 1) inits, its path replayed through a LandscapeProbe."""
    model, attempt, states = fit_restarts(
        lambda attempt: shallow(
            x.shape[1], width, nn.Tanh(), generator=torch.Generator().manual_seed(1000 * seed + attempt)
        ),
        x,
        y,
        restarts=restarts,
        max_iter=max_iter,
        good=1e-20 if loss_star == 0.0 else -1.0,
    )
    probe = LandscapeProbe(model, nn.MSELoss(), (x, y), reference=teacher, loss_star=loss_star, k=4)
    return model, replay(probe, model, states, tb), attempt


def main(quick: bool = False, logdir: str | Path = "runs") -> dict:
    report = Report(
        "Efficient vs redundant tanh students (teacher m* = 3, d = 2)",
        "Benning & Dereich, arXiv:2504.08867 (2025); Sussmann (1992); docs/theory.md §6 E4, §4.5",
    )
    torch.manual_seed(0)
    d, m_star, n = 2, 3, (100 if quick else 500)
    generator = torch.Generator().manual_seed(7)
    teacher = shallow(d, m_star, nn.Tanh(), generator=generator, scale=1.5)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        clean = teacher(x)
    noise = 0.1 * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    wide = 4 if quick else 6
    settings = [("noiseless", 0.0)] if quick else [("noiseless", 0.0), ("noisy σ=0.1", 0.1)]
    results = {}
    for label, sigma in settings:
        y = clean + (noise if sigma else 0.0)
        for width in (m_star, wide):
            key = f"{label.split()[0]}_m{width}"
            report.section(f"{label} labels, student width m = {width}")
            tb = writer(logdir, f"{NAME}/{key}")
            model, snap, attempt = fit_student(
                width,
                x,
                y,
                teacher,
                seed=width + (100 if sigma else 0),
                restarts=6 if not quick else 3,
                max_iter=300 if quick else 1500,
                loss_star=0.0 if sigma == 0 else None,
                tb=tb,
            )
            tb.close()
            cp = snap.critical or classify_critical_point(model, nn.MSELoss(), (x, y))
            red = snap.redundancy or neuron_redundancy(model, (x, y), loss_fn=nn.MSELoss())
            nullity = redundancy_nullity_check(model, nn.MSELoss(), (x, y), report=red)
            verified = [f for f in red.findings if f.verified]
            report.line(
                f"init #{attempt}; L = {fmt(cp.loss)}, ‖∇L‖ = {fmt(cp.grad_norm)}; "
                f"λ_min = {fmt(cp.lambda_min)}, λ_max = {fmt(cp.lambda_max)}"
            )
            report.line(f"classification: {cp.kind} (index {cp.morse_index}, nullity {cp.nullity}) — {cp.reason}")
            report.line(
                f"effective width {red.effective_width} of {red.width}; distance to redundancy "
                f"{fmt(red.score)} ({red.score_rule})"
            )
            for f in verified:
                report.line(f"  finding: {f.rule} on neurons {f.neurons}, score {fmt(f.score)} ({f.level})")
            report.line(
                f"Hessian nullity {nullity.measured_nullity}, predicted by redundancy + symmetries "
                f"{nullity.predicted_nullity} (unexplained {nullity.unexplained_nullity})"
            )
            if snap.pl is not None and sigma == 0:
                report.line(
                    f"PL ratio at the last light evaluation: {fmt(snap.pl.mu)} "
                    f"(running min {fmt(snap.pl.mu_running_min)})"
                )
            results[key] = {
                "kind": cp.kind,
                "loss": cp.loss,
                "lambda_min": cp.lambda_min,
                "nullity": cp.nullity,
                "width": red.width,
                "effective_width": red.effective_width,
                "predicted_nullity": nullity.predicted_nullity,
                "measured_nullity": nullity.measured_nullity,
                "findings": [f.rule for f in verified],
            }
            if width == m_star:
                report.check(
                    "exact width: nondegenerate_min, efficient (effective width = width)",
                    cp.kind == "nondegenerate_min" and red.effective_width == width,
                    f"{cp.kind}, effective width {red.effective_width}/{width}",
                )
            elif sigma == 0:
                report.check(
                    "wider, noiseless: L ≈ 0, redundant (effective width < width), singular Hessian "
                    "with nullity ≥ predicted",
                    cp.loss < 1e-12
                    and red.effective_width < width
                    and cp.kind != "nondegenerate_min"
                    and nullity.measured_nullity >= nullity.predicted_nullity > 0,
                    f"L = {fmt(cp.loss)}, effective width {red.effective_width}/{width}, {cp.kind}, "
                    f"nullity {nullity.measured_nullity} ≥ predicted {nullity.predicted_nullity}",
                )
            elif not cp.critical:  # BD speak of minimisers: a run that reached none gives nothing to check
                report.line(
                    f"[not checked] wider, noisy: no critical point reached (‖∇L‖ = {fmt(cp.grad_norm)}, λ_max = "
                    f"{fmt(cp.lambda_max)}, closest redundancy {red.score_rule} at score {fmt(red.score)}); "
                    "Benning–Dereich's statements concern minimisers"
                )
            elif red.effective_width < width:  # each branch tests what BD say about the case that occurred
                report.check(
                    "wider, noisy, redundant: never isolated (a critical point with nullity ≥ the predicted ≥ 1)",
                    nullity.measured_nullity >= nullity.predicted_nullity >= 1,
                    f"{cp.kind}, effective width {red.effective_width}/{width}, nullity {nullity.measured_nullity} "
                    f"(predicted {nullity.predicted_nullity})",
                )
            else:
                report.check(
                    "wider, noisy, efficient (no redundancy found): a nondegenerate minimum, strongly convex nearby "
                    "(BD: efficient minimisers generically are)",
                    cp.kind == "nondegenerate_min",
                    f"{cp.kind}, effective width {red.effective_width}/{width}, λ_min = {fmt(cp.lambda_min)}",
                )
    return report.finish(Path(logdir) / NAME, results=results)


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
