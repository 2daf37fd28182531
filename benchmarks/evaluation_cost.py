#!/usr/bin/env python
"""What one evaluation of LandscapeProbe.snapshot costs, in gradients, and where the time goes (issue 25).

Issue 25's probe-set nets (tanh 3 → h → 1, 2,048 samples, float64 as the probe evaluates it: P = 51, 321,
2,561; ``--hidden`` for others), each timed in one process, interleaved in rounds: one float64 gradient of
the same net on the same samples (the unit, the median of 5 in each round), warm light snapshots
(``full=False``, after two to warm up) and full ones. Each snapshot's time is split among the probe's
stages (the objective and its first order, each quantity, the verdicts, the slices) by timing the probe's
own methods. Ratios per round; the range over rounds is printed. Nothing is asserted; the load is printed.

The cost depends on the probe's orchestration (torch_landscape/probe.py) as well as on the core.

Usage::

    python benchmarks/evaluation_cost.py                      # P = 51, 321, 2561; 3 rounds
    python benchmarks/evaluation_cost.py --hidden 64 --rounds 5 --light 5
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import collections  # noqa: E402
import copy  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from problems import RESULTS  # noqa: E402

import torch_landscape.probe as probe_module  # noqa: E402
from torch_landscape import evaluation  # noqa: E402
from torch_landscape.probe import LandscapeProbe  # noqa: E402

SPENT: collections.Counter[str] = collections.Counter()


def _timed(name, function):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT[name] += time.perf_counter() - start

    return timed


# The probe's stages: the point (objective, operator, first order), one computation per quantity, the verdicts.
evaluation.COMPUTATIONS.update({name: _timed(name, f) for name, f in evaluation.COMPUTATIONS.items()})
probe_module.point_at = _timed("point", probe_module.point_at)
probe_module.verdict_values = _timed("verdicts", probe_module.verdict_values)


def probe_problem(hidden: int):
    """Issue 25's nets: tanh 3 → hidden → 1 on 2,048 samples, trained 200 Adam steps (a trained point)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 3, generator=generator)
    y = torch.sin(3 * x[:, :1]) * x[:, 1:2]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return model, x, y


def gradient_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """One float64 gradient of the net on the probe set: the median of 5."""
    double, xd, yd = copy.deepcopy(model).double(), x.double(), y.double()
    parameters = list(double.parameters())
    times = []
    for _ in range(5):
        start = time.perf_counter()
        torch.autograd.grad(nn.functional.mse_loss(double(xd), yd), parameters)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def span(values: list[float], digits: int = 1) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def snapshot(probe: LandscapeProbe, step: int, full: bool) -> tuple[float, dict[str, float], int]:
    SPENT.clear()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = probe.snapshot(step, full=full)
    if result.errors:
        raise RuntimeError(f"the snapshot failed: {result.errors}")
    return time.perf_counter() - start, dict(SPENT), result.num_hvp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[10, 64, 512])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--light", type=int, default=3, help="warm light snapshots per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        f"## One evaluation of LandscapeProbe.snapshot, in float64 gradients ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"torch {torch.__version__}, {args.threads} threads, {args.rounds} interleaved rounds; load average at the "
        f"start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs. Ranges over rounds of seconds / one gradient in "
        "the same round; the stages' shares are of the median round.",
        "",
        "| P | gradient (ms) | first light | light (warm) | light products | full | full (s) | full products |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    shares = []
    for hidden in args.hidden:
        model, x, y = probe_problem(hidden)
        size = sum(p.numel() for p in model.parameters())
        probe = LandscapeProbe(model, nn.MSELoss(), (x, y))
        gradient = gradient_seconds(model, x, y)
        first = snapshot(probe, 0, False)[0] / gradient
        rows: dict[str, list] = collections.defaultdict(list)
        step = 1
        for _ in range(args.rounds):
            gradient = gradient_seconds(model, x, y)
            rows["gradient"].append(gradient)
            for _ in range(args.light):
                seconds, spent, products = snapshot(probe, step, False)
                step += 1
                rows["light"].append(seconds / gradient)
                rows["light spent"].append({k: v / gradient for k, v in spent.items()})
                rows["light products"].append(products)
            seconds, spent, products = snapshot(probe, step, True)
            step += 1
            rows["full"].append(seconds / gradient)
            rows["full seconds"].append(seconds)
            rows["full spent"].append({k: v / gradient for k, v in spent.items()})
            rows["full products"].append(products)

        lines.append(
            f"| {size} | {1e3 * statistics.median(rows['gradient']):.2f} | {first:.1f} | {span(rows['light'])} | "
            f"{span(rows['light products'], 0)} | {span(rows['full'], 0)} | {span(rows['full seconds'], 2)} | "
            f"{span(rows['full products'], 0)} |"
        )
        print(lines[-1], flush=True)
        for kind in ("light", "full"):
            middle = sorted(range(len(rows[kind])), key=rows[kind].__getitem__)[len(rows[kind]) // 2]
            spent = rows[f"{kind} spent"][middle]
            total = rows[kind][middle]
            parts = ", ".join(f"{name.strip('_').replace('compute_', '')} {value:.1f}" for name, value in spent.items())
            shares.append(
                f"- P = {size}, {kind} ({total:.1f} gradients): {parts}; outside these stages "
                f"{total - sum(spent.values()):.1f}"
            )
    lines += ["", "Where the gradients go (median round):", "", *shares]
    lines.append(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    print("\n".join(lines[-len(shares) - 4 :]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "evaluation_cost.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
