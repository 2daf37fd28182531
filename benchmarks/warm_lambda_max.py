#!/usr/bin/env python
"""Warm-started λ_max between SGD steps at a monitoring tolerance (issue 10's Krylov target).

On a benchmark net of benchmarks/problems.py (default L: 52k parameters, tanh, trained 300 Adam steps)
it runs SGD on mini-batches and, after every step, computes λ_max of the full-data Hessian with

    hessian_eigenvalues(model, loss, data, k=1, which="largest", method="lanczos", tol=1e-3,
                        warm_start=v_prev, return_eigenvectors=True)

where v_prev is the previous evaluation's eigenvector, and prints per evaluation: the HVP count, λ_max
with its bound, the time as a multiple of one full-data gradient measured right before, and — every
``--check-every`` steps — a cold float64 reference (tol 1e-10) to show that the bound holds.
The target: ≤ 5 HVPs per warm evaluation, every bound a bound. Nothing is asserted.

Usage::

    python benchmarks/warm_lambda_max.py                  # L, 20 SGD steps
    python benchmarks/warm_lambda_max.py --size M --steps 40
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from problems import RESULTS, get_problem, setup_threads  # noqa: E402

from torch_landscape import hessian_eigenvalues  # noqa: E402

LOSS = nn.MSELoss()


def gradient_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 3) -> float:
    params = list(model.parameters())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.autograd.grad(LOSS(model(x), y), params)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="L")
    parser.add_argument("--act", default="tanh")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--lr-times-lambda", type=float, default=1.0, help="SGD step size as a multiple of 1/λ_max")
    parser.add_argument("--check-every", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    setup_threads(args.threads)
    problem = get_problem(args.size, args.act)
    model, x, y = problem.model, problem.x, problem.y
    data = (x, y)
    lines = [
        f"## Warm-started λ_max between SGD steps ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"{problem.header()}; tol={args.tol:g} (relative to |λ_max|), SGD batch {args.batch}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        "",
    ]
    print("\n".join(lines), flush=True)

    cold = hessian_eigenvalues(
        model, LOSS, data, k=1, which="largest", method="lanczos", tol=args.tol, return_eigenvectors=True
    )
    lr = args.lr_times_lambda / cold.lambda_max
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    header = (
        "| step | HVPs | λ_max | bound | converged | time / gradient | reference λ_max (f64, cold) | error ≤ bound |"
    )
    rows = [
        header,
        "|" + "---|" * 8,
        f"| 0 (cold) | {cold.num_hvp} | {cold.lambda_max:.6g} | {float(cold.error_bounds[-1]):.1e} | "
        f"{cold.converged} | | | |",
    ]
    print("\n".join(rows), flush=True)
    previous = cold.eigenvectors
    counts = []
    for step in range(1, args.steps + 1):
        index = torch.randint(0, x.shape[0], (args.batch,), generator=generator)
        optimizer.zero_grad()
        LOSS(model(x[index]), y[index]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        grad_s = gradient_seconds(model, x, y)
        start = time.perf_counter()
        spectrum = hessian_eigenvalues(
            model,
            LOSS,
            data,
            k=1,
            which="largest",
            method="lanczos",
            tol=args.tol,
            warm_start=previous,
            return_eigenvectors=True,
        )
        seconds = time.perf_counter() - start
        previous = spectrum.eigenvectors
        counts.append(spectrum.num_hvp)
        reference, holds = "", ""
        if step % args.check_every == 0:
            exact = hessian_eigenvalues(
                model, LOSS, data, k=1, which="largest", method="lanczos", tol=1e-10, dtype=torch.float64
            )
            error = abs(spectrum.lambda_max - exact.lambda_max)
            reference = f"{exact.lambda_max:.6g} (±{float(exact.error_bounds[-1]):.0e})"
            holds = f"{error:.1e} ≤ {float(spectrum.error_bounds[-1]):.1e}: {error <= float(spectrum.error_bounds[-1])}"
        row = (
            f"| {step} | {spectrum.num_hvp} | {spectrum.lambda_max:.6g} | {float(spectrum.error_bounds[-1]):.1e} | "
            f"{spectrum.converged} | {seconds / grad_s:.1f} | {reference} | {holds} |"
        )
        rows.append(row)
        print(row, flush=True)
    summary = (
        f"\nWarm evaluations: median {statistics.median(counts)} HVPs, max {max(counts)} "
        f"(target ≤ 5); cold start {cold.num_hvp}."
    )
    print(summary)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"warm_lambda_max_{args.size}.md").write_text("\n".join(lines + rows) + "\n" + summary + "\n")


if __name__ == "__main__":
    main()
