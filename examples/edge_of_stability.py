"""The edge of stability of the optimizer in use: SGD with momentum and Adam, full batch (docs/theory.md §1.8).

Cohen et al. (2021, 2022): under full-batch training the curvature the optimizer sees rises (progressive
sharpening) until it reaches the optimizer's own stability threshold, and then hovers there while the loss
keeps falling, non-monotonically. For SGD with momentum β the sharpness is λ_max(H) and the threshold
(2 + 2β)/η; for Adam it is the preconditioned sharpness λ_max(P⁻¹H), P = diag(√v̂ + ε), against
(2 + 2β1)/(η(1 − β1)) = 38/η. ``torch_landscape.stability.stability_reading`` reads both from the running
optimizer, without touching it, as one ratio r = sharpness/threshold (1 = at the edge).

A tanh network 10 → 32 → 32 → 1 (1441 parameters) is trained on a fixed regression of 500 points, once with
SGD (momentum 0.5, η = 0.075: threshold 40) and once with Adam (η = 0.003: threshold 12 667), and r is read
every 10 steps, warm-started from the previous reading's eigenvector.

Run:  python examples/edge_of_stability.py [--quick]      (full run: writes docs/edge_of_stability.png)
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

try:
    from examples._common import MSE, Report, fmt
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import MSE, Report, fmt

from torch_landscape.curvature import HessianOperator
from torch_landscape.stability import stability_reading

FIGURE = Path(__file__).resolve().parents[1] / "docs" / "edge_of_stability.png"

#: name → (label, optimizer factory). The step sizes put the threshold where this network's sharpening
#: reaches it within ~250 steps.
RUNS: dict[str, tuple[str, Callable[..., torch.optim.Optimizer]]] = {
    "sgd_momentum": ("SGD, momentum 0.5, η = 0.075", lambda p: torch.optim.SGD(p, lr=0.075, momentum=0.5)),
    "adam": ("Adam, β1 = 0.9, η = 0.003", lambda p: torch.optim.Adam(p, lr=0.003)),
}


def problem() -> tuple[tuple[torch.Tensor, torch.Tensor], nn.Module]:
    """A fixed regression (standardised sin·cos plus a product of two inputs) and the untrained network."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(500, 10, generator=generator)
    y = torch.sin(2 * x[:, :1]) * torch.cos(x[:, 1:2]) + 0.5 * x[:, 2:3] * x[:, 3:4]
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    return (x, (y - y.mean()) / y.std()), net


def train(make: Callable[..., torch.optim.Optimizer], steps: int, every: int, report: Report) -> dict:
    """Full-batch training with a stability reading every ``every`` steps (float64, on a copy of θ)."""
    data, net = problem()
    optimizer = make(net.parameters())
    keys = ("step", "loss", "ratio", "ratio_error", "sharpness", "sharpness_error", "num_hvp")
    trace: dict[str, list] = {key: [] for key in keys}
    warm, threshold, start = None, math.nan, time.perf_counter()
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            operator = HessianOperator(net, MSE, data, dtype=torch.float64)
            reading = stability_reading(optimizer, operator, warm_start=warm)
            warm = reading.eigenvector if reading.eigenvector is not None else warm
            if step == 0:
                report.line(reading.setup.describe())
            if reading.status == "ok":  # Adam has no preconditioner before its first step
                threshold = reading.setup.threshold
                loss = float(operator.loss)  # free: the solve built the gradient graph
                values = (step, loss, reading.ratio, reading.ratio_error, reading.sharpness, reading.sharpness_error)
                for key, value in zip(keys, (*values, reading.num_hvp), strict=True):
                    trace[key].append(value)
                if step % (10 * every) == 0 or step == steps:
                    report.line(
                        f"step {step:4d}: loss {fmt(loss)}, sharpness {reading.sharpness:9.4g} ± "
                        f"{fmt(reading.sharpness_error, 1)} (threshold {threshold:.5g}), ratio {reading.ratio:.3f}"
                    )
        if step == steps:
            break
        optimizer.zero_grad()
        MSE(net(data[0]), data[1]).backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    # The trained network and its optimizer come back too: the test checks the last reading against them.
    return {**trace, "threshold": threshold, "seconds": seconds, **summary(trace), "model": net, "optimizer": optimizer}


def summary(trace: dict[str, list]) -> dict:
    """Where r first reaches 0.95, and r over the last half of the run (the hovering)."""
    ratios, steps = trace["ratio"], trace["step"]
    edge = next((step for step, r in zip(steps, ratios, strict=True) if r >= 0.95), None)
    late = [r for step, r in zip(steps, ratios, strict=True) if step >= steps[-1] / 2]
    return {
        "initial_ratio": ratios[0],
        "max_ratio": max(ratios),
        "edge_step": edge,
        "late_median": statistics.median(late),
        "late_min": min(late),
        "late_max": max(late),
        "max_ratio_error": max(trace["ratio_error"]),
        "mean_hvp": statistics.fmean(trace["num_hvp"]),
    }


def draw(results: dict[str, dict], path: Path) -> None:
    """Sharpness against threshold (top) and the loss (bottom), one column per optimizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(5.5 * len(results), 5.5), sharex="col")
    names = {"sgd_momentum": ("λ_max(H)", "(2 + 2β)/η"), "adam": ("λ_max(P⁻¹H)", "38/η")}
    for column, (name, out) in enumerate(results.items()):
        top, bottom = axes[0, column], axes[1, column]
        sharpness, threshold = names[name]
        top.plot(out["step"], out["sharpness"], color="tab:blue", label=f"sharpness {sharpness}")
        top.axhline(
            out["threshold"], color="tab:red", linestyle="--", label=f"threshold {threshold} = {out['threshold']:.5g}"
        )
        top.set_title(RUNS[name][0])
        top.legend(loc="lower right", fontsize=8)
        bottom.semilogy(out["step"], out["loss"], color="tab:gray")
        bottom.set_xlabel("step (full batch)")
        bottom.set_ylabel("training loss")
    axes[0, 0].set_ylabel("sharpness")
    fig.suptitle("Edge of stability: `python examples/edge_of_stability.py`", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(quick: bool = False, figure: str | Path | None = None) -> dict:
    """Train with both optimizers; ``figure``: where to save the picture (the full run's default is docs/)."""
    report = Report(
        "Edge of stability of the optimizer in use: SGD with momentum and Adam, full batch",
        "Cohen et al., ICLR 2021 (arXiv:2103.00065) and arXiv:2207.14484 (2022); docs/theory.md §1.8",
    )
    steps, every = (320, 20) if quick else (800, 10)
    results = {}
    for name, (label, make) in RUNS.items():
        report.section(f"{label}: {steps} full-batch steps, r read every {every}")
        out = results[name] = train(make, steps, every, report)
        report.check(
            "progressive sharpening to the threshold: r rises from below 0.3 to at least 0.95",
            out["initial_ratio"] < 0.3 and out["max_ratio"] >= 0.95,
            f"r = {out['initial_ratio']:.3f} at the first reading, first ≥ 0.95 at step {out['edge_step']}",
        )
        if not quick:
            report.check(
                "then hovering at the edge: over the last half of the run r stays near 1 (median within 0.85–1.1, "
                "never above 1.3) while the loss keeps falling",
                0.85 <= out["late_median"] <= 1.1
                and out["late_max"] < 1.3
                and out["loss"][-1] < out["loss"][len(out["loss"]) // 2],
                f"median {out['late_median']:.3f}, range {out['late_min']:.3f}–{out['late_max']:.3f}; loss "
                f"{fmt(out['loss'][len(out['loss']) // 2])} → {fmt(out['loss'][-1])}",
            )
        report.line(
            f"{len(out['step'])} readings, {out['mean_hvp']:.1f} Hessian-vector products each on average, largest "
            f"ratio bound {fmt(out['max_ratio_error'], 1)}; {out['seconds']:.1f} s"
        )
    path = Path(figure) if figure is not None else (None if quick else FIGURE)
    if path is not None:
        draw(results, path)
        report.line(f"figure: {path}")
    return report.finish(results=results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run (seconds), as in the test suite")
    parser.add_argument(
        "--figure", default=None, help="where to save the figure (full run: docs/edge_of_stability.png)"
    )
    args = parser.parse_args()
    main(quick=args.quick, figure=args.figure)
