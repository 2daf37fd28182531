#!/usr/bin/env python
"""The cost of the adaptive stability curve against the λ_max curve (issue 23's target: at most 1.2×).

Command (it writes benchmarks/results/stability_cost.md)::

    PYTHONPATH=. .venv/bin/python benchmarks/stability_cost.py                       # both problems, 3 runs
    PYTHONPATH=. .venv/bin/python benchmarks/stability_cost.py --problems example --runs 5

An Adam trajectory is recorded first: the model's and the optimizer's state at E evaluation points, every K
steps after a warm-up (``example``: the 1441-parameter network of examples/edge_of_stability.py at its edge
of stability, Adam η = 0.003; ``L``: the 52k-parameter tanh network of benchmarks/problems.py, Adam
η = 10⁻³). Then, in one process, each run walks the points and times at each, in an order that alternates
point by point and run by run:

* A, the λ_max curve as the probe draws it: a fresh float64 ``HessianOperator`` and
  ``hessian_eigenvalues(k=1, which="largest", method="lanczos", tol=LIGHT_TOL)`` warm-started from A's
  previous eigenvector;
* B, the adaptive curve on its own: a fresh operator and ``stability_reading(optimizer, operator)``
  warm-started from B's previous eigenvector;
* B|A, the adaptive reading on the operator A has just used (the gradient graph is built): what a probe that
  draws both curves pays on top of λ_max;
* g, one float64 full-data gradient: the unit of the per-point costs.

Reported per run: ΣB/ΣA and ΣB|A/ΣA in time, the Hessian-vector products of each, and the costs per point
in gradients; the summary gives the ranges over the runs. Nothing is asserted.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))
from problems import RESULTS, get_problem, setup_threads  # noqa: E402

from torch_landscape.curvature import HessianOperator, hessian_eigenvalues  # noqa: E402
from torch_landscape.settings import LIGHT_TOL  # noqa: E402
from torch_landscape.stability import stability_reading  # noqa: E402

LOSS = nn.MSELoss()


def trajectory(name: str) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor], list[tuple[dict, dict]], float]:
    """The model, its data, (model state, Adam state) at each evaluation point, and the Adam step size."""
    if name == "example":
        from edge_of_stability import problem

        data, model = problem()
        lr, warmup, every, points = 0.003, 100, 10, 40
    else:
        loaded = get_problem(name, "tanh")
        model, data = loaded.model, (loaded.x, loaded.y)
        lr, warmup, every, points = 1e-3, 20, 5, 30
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    states = []
    for step in range(warmup + every * points):
        if step >= warmup and (step - warmup) % every == 0:
            states.append((copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())))
        optimizer.zero_grad()
        LOSS(model(data[0]), data[1]).backward()
        optimizer.step()
    return model, data, states, lr


def gradient_seconds(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    model64 = copy.deepcopy(model).double()
    x, y = data[0].double(), data[1].double()
    start = time.perf_counter()
    torch.autograd.grad(LOSS(model64(x), y), list(model64.parameters()))
    return time.perf_counter() - start


def one_run(model, data, states, lr, run: int) -> dict:
    """Time A, B and B|A at every point of the trajectory (order alternating), and one gradient."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    warm_a = warm_b = warm_ba = None
    totals = dict.fromkeys(("A", "B", "B|A", "g", "hvp_A", "hvp_B", "hvp_B|A"), 0.0)
    for index, (model_state, optimizer_state) in enumerate(states):
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        totals["g"] += gradient_seconds(model, data)
        for task in ("A", "B") if (index + run) % 2 == 0 else ("B", "A"):
            start = time.perf_counter()
            operator = HessianOperator(model, LOSS, data, dtype=torch.float64)
            if task == "A":
                spectrum = hessian_eigenvalues(
                    operator,
                    k=1,
                    which="largest",
                    method="lanczos",
                    tol=LIGHT_TOL,
                    warm_start=warm_a,
                    return_eigenvectors=True,
                )
                totals["A"] += time.perf_counter() - start
                totals["hvp_A"] += spectrum.num_hvp
                warm_a = spectrum.eigenvectors
                start = time.perf_counter()
                shared = stability_reading(optimizer, operator, warm_start=warm_ba)
                totals["B|A"] += time.perf_counter() - start
                totals["hvp_B|A"] += shared.num_hvp
                warm_ba = shared.eigenvector
            else:
                reading = stability_reading(optimizer, operator, warm_start=warm_b)
                totals["B"] += time.perf_counter() - start
                totals["hvp_B"] += reading.num_hvp
                warm_b = reading.eigenvector
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default="example,L", help="comma-separated: example, S, M, L")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    setup_threads(args.threads)
    lines = [
        f"## Stability ratio: cost of the adaptive curve against the λ_max curve ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"`PYTHONPATH=. .venv/bin/python benchmarks/stability_cost.py --problems {args.problems} --runs {args.runs}`; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, {args.threads} threads",
        "",
        "| problem | P | run | B/A (time) | B\\|A / A (time) | A per point (gradients) | B per point (gradients) "
        "| HVPs A | HVPs B | HVPs B\\|A |",
        "|" + "---|" * 10,
    ]
    print("\n".join(lines), flush=True)
    summary = []
    for name in args.problems.split(","):
        model, data, states, lr = trajectory(name)
        size = sum(p.numel() for p in model.parameters())
        ratios, shared = [], []
        for run in range(args.runs):
            totals = one_run(model, data, states, lr, run)
            ratios.append(totals["B"] / totals["A"])
            shared.append(totals["B|A"] / totals["A"])
            unit = totals["g"]
            row = (
                f"| {name} | {size} | {run + 1} | {ratios[-1]:.2f} | {shared[-1]:.2f} | {totals['A'] / unit:.1f} | "
                f"{totals['B'] / unit:.1f} | {totals['hvp_A']:.0f} | {totals['hvp_B']:.0f} | {totals['hvp_B|A']:.0f} |"
            )
            lines.append(row)
            print(row, flush=True)
        summary.append(
            f"- {name} (P = {size}, {len(states)} points): adaptive/λ_max {min(ratios):.2f}–{max(ratios):.2f}, "
            f"on the shared operator {min(shared):.2f}–{max(shared):.2f} (target ≤ 1.2)"
        )
    lines += ["", *summary]
    print("\n".join(["", *summary]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stability_cost.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
