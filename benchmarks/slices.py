"""What a loss slice costs, in gradients: one grid point against one gradient of the same objective.

Two nets, float64 objectives (the probe's default dtype), 2 threads:
* demo: 2 inputs -> 5 tanh -> 1 (P = 21), 500 samples, one batch (the size of examples/demo.py);
* 52k: benchmarks/problems.py size L / tanh (100 -> 512 tanh -> 1, P = 52225), 8192 samples, trained.

Every round times, back to back in one process: a gradient (``Objective.loss_and_gradient``, the mean
of 10 calls), a 1-D
slice of G points in vmapped passes (``loss_slice``), and the same G points one by one
(``batched=False``). Reported: each per-point time divided by that round's gradient time (a ratio
taken within one round, so slow load changes cancel), median [min, max] over rounds, and for
``landscape_slices(budget=B)`` the measured cost in gradients next to the cost model's
(num_evaluations × POINT_COST) and its budget B.

    python benchmarks/slices.py [--rounds 5] [--threads 2] [--skip-large]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from problems import get_problem  # noqa: E402

from torch_landscape import HessianOperator, Objective, hessian_eigenvalues, landscape_slices, loss_slice  # noqa: E402
from torch_landscape.slices import POINT_COST, eigenvector_direction  # noqa: E402


def _seconds(call, repeats: int = 1) -> float:
    """Mean seconds of ``repeats`` calls (a tiny net's gradient takes ~1 ms: one call is all noise)."""
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


GRADIENT_REPEATS = 10


def demo_objective() -> Objective:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    x = torch.randn(500, 2, generator=generator, dtype=torch.float64)
    return Objective(model, nn.MSELoss(), (x, torch.tanh(x.sum(1, keepdim=True))), dtype=torch.float64)


def large_objective() -> Objective:
    problem = get_problem("L", "tanh")
    return Objective(problem.model, nn.MSELoss(), (problem.x, problem.y), dtype=torch.float64)


def per_point_ratios(objective: Objective, points: int, rounds: int) -> tuple[list[float], list[float]]:
    """(batched, one-by-one) seconds per grid point over seconds per gradient, one ratio per round."""
    direction = eigenvector_direction(
        hessian_eigenvalues(objective, k=1, which="largest", method="lanczos", return_eigenvectors=True), "largest"
    )
    grid = torch.linspace(-1.0, 1.0, points)
    batched, single = [], []
    for _ in range(rounds):
        gradient = _seconds(objective.loss_and_gradient, GRADIENT_REPEATS)
        batched.append(_seconds(lambda: loss_slice(objective, direction, grid)) / points / gradient)
        single.append(_seconds(lambda: loss_slice(objective, direction, grid, batched=False)) / points / gradient)
    return batched, single


def budget_check(objective: Objective, budget: float, rounds: int) -> tuple[list[float], float]:
    """Measured gradients of landscape_slices(budget) (spectrum given), one per round, and the model's
    estimate."""
    operator = HessianOperator(objective)
    # The eigenvectors' accuracy does not change the slices' cost: a capped solve keeps the setup short.
    spectrum = hessian_eigenvalues(operator, k=1, which="both", method="lanczos", max_hvp=200, return_eigenvectors=True)
    # A warm-up run, which also caches L(θ) and ∇L(θ) on the operator as a snapshot's would be.
    evaluations = landscape_slices(operator, spectrum, budget=budget).num_evaluations
    measured = []
    for _ in range(rounds):
        gradient = _seconds(objective.loss_and_gradient, GRADIENT_REPEATS)
        measured.append(_seconds(lambda: landscape_slices(operator, spectrum, budget=budget)) / gradient)
    return measured, evaluations * POINT_COST


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} [{min(values):.3g}, {max(values):.3g}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-large", action="store_true", help="only the demo net")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [("demo (P=21, n=500)", demo_objective, 101, 200.0)]
    if not args.skip_large:
        cases.append(("52k (P=52225, n=8192)", large_objective, 21, 50.0))
    print(f"{args.threads} threads, float64, median of {args.rounds} interleaved rounds; POINT_COST = {POINT_COST}")
    for label, build, points, budget in cases:
        objective = build()
        batched, single = per_point_ratios(objective, points, args.rounds)
        speed_up = [b / a for a, b in zip(batched, single)]
        print(
            f"{label}: one grid point = {_spread(batched)} gradients batched (vmap, {points} points), "
            f"{_spread(single)} one by one; batching speed-up {_spread(speed_up)}x"
        )
        measured, predicted = budget_check(objective, budget, args.rounds)
        print(
            f"{label}: landscape_slices(budget={budget:g}) took {_spread(measured)} gradients; "
            f"cost model {predicted:.1f}"
        )


if __name__ == "__main__":
    main()
