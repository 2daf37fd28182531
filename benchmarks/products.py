#!/usr/bin/env python
"""What a Hessian-vector product costs, in gradients of the same objective, by each way of computing it.

For each net it builds the library's objective and times, interleaved in rounds in one process (medians
per round, the range over rounds reported):

* one gradient, L and ∇L by a plain backward pass (the unit);
* the kept gradient graph's set-up (forward + ``create_graph`` backward) and one product through it, a
  backward pass of the scalar g·v (what :class:`~torch_landscape.HessianOperator` does);
* a block of 8 through the same graph batched by torch (``is_grads_batched``, a vmap), per vector;
* a fresh double backward per product (forward, ``create_graph`` backward, backward: no graph kept);
* for one-hidden-layer nets the structure's set-up (L, ∇L and the per-sample pieces,
  :func:`~torch_landscape.curvature.structured.shallow_structure`) and structured products, one vector
  and a block of 8 (per vector).

Nets: the probe-set nets of issue 25 (tanh 3 → h → 1 on 2,048 samples, float64 as the probe evaluates:
P = 51, 321, 2,561, 10,241) and benchmarks/problems.py's L (52k parameters, 8,192 samples, float32).
The figures behind ``STRUCTURED_PRODUCT_LIMIT`` and the one-at-a-time products of
torch_landscape/curvature/operators.py. Nothing is asserted; the load is printed.

Usage::

    python benchmarks/products.py                  # all nets, 3 rounds
    python benchmarks/products.py --nets 321 2561 --rounds 5
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

from torch_landscape import Objective  # noqa: E402
from torch_landscape.curvature.structured import shallow_structure, structured_products  # noqa: E402

BLOCK = 8


def probe_net(hidden: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor], torch.dtype]:
    """Issue 25's probe-set nets: tanh 3 → hidden → 1, 2,048 samples, evaluated in float64."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 3, generator=generator)
    y = torch.sin(3 * x[:, :1]) * x[:, 1:2]
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 1)), (x, y), torch.float64


def nets(names: list[str]):
    for name in names:
        if name == "L":
            problem = get_problem("L", "tanh")
            yield "L (52k, float32)", problem.model, (problem.x, problem.y), torch.float32
        else:
            model, data, dtype = probe_net((int(name) - 1) // 5)
            yield f"P = {name} (float64)", model, data, dtype


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(objective: Objective) -> dict[str, float]:
    """One round: each way's seconds (per vector for products)."""
    size = objective.num_parameters
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(size, BLOCK, generator=generator, dtype=torch.float64).to(objective.theta)
    out: dict[str, float] = {"gradient": statistics.median(seconds(objective.loss_and_gradient) for _ in range(3))}
    theta = objective.theta.detach().requires_grad_(True)

    def graph():
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(objective.loss(theta), theta, create_graph=True)
        return gradient

    out["graph set-up"] = seconds(graph)
    gradient = graph()

    def kept(i: int):
        with torch.enable_grad():
            return torch.autograd.grad(gradient @ vectors[:, i], theta, retain_graph=True)[0]

    kept(0)  # the first backward through a new graph allocates its buffers
    out["kept graph, one vector"] = statistics.median(seconds(lambda i=i: kept(i)) for i in range(BLOCK))

    def batched():
        with torch.enable_grad():
            torch.autograd.grad(gradient, theta, vectors.T.contiguous(), retain_graph=True, is_grads_batched=True)

    batched()  # (imports sympy on first use)
    out[f"kept graph, batched block of {BLOCK}"] = seconds(batched) / BLOCK

    def fresh(i: int):
        return torch.autograd.grad(graph() @ vectors[:, i], theta)[0]

    out["fresh double backward"] = statistics.median(seconds(lambda i=i: fresh(i)) for i in range(3))
    if shallow_layers_hold(objective):
        copy = Objective(objective.model, objective.loss_fn, objective.batches, dtype=objective.dtype, check=False)
        out["structure set-up"] = seconds(lambda: shallow_structure(copy))
        products = structured_products(copy)
        if products is not None:
            products(vectors[:, :1])
            out["structured, one vector"] = statistics.median(
                seconds(lambda i=i: products(vectors[:, i : i + 1])) for i in range(BLOCK)
            )
            out[f"structured, block of {BLOCK}"] = seconds(lambda: products(vectors)) / BLOCK
    return out


def shallow_layers_hold(objective: Objective) -> bool:
    from torch_landscape.curvature.shallow import shallow_layers

    return shallow_layers(objective) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", default=["51", "321", "2561", "10241", "L"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    setup_threads(args.threads)
    lines = [
        f"## Hessian-vector products, in gradients ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"torch {torch.__version__}, {args.threads} threads, {args.rounds} interleaved rounds; load average at "
        f"the start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs. Each cell: the range over rounds of "
        "(seconds / one gradient's seconds in the same round).",
        "",
    ]
    print("\n".join(lines), flush=True)
    rows = ["| net | way | gradients (range) |", "|---|---|---|"]
    for label, model, data, dtype in nets(args.nets):
        objective = Objective(model, nn.MSELoss(), data, dtype=dtype)
        rounds = []
        for _ in range(args.rounds):
            result = measure(objective)
            rounds.append({k: v / result["gradient"] for k, v in result.items() if k != "gradient"})
        for key in rounds[0]:
            values = [r[key] for r in rounds]
            rows.append(f"| {label} | {key} | {min(values):.2f}–{max(values):.2f} |")
            print(rows[-1], flush=True)
    rows.append(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "products.md").write_text("\n".join(lines + rows) + "\n")


if __name__ == "__main__":
    main()
