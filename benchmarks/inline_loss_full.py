#!/usr/bin/env python
"""A full evaluation when the Hessian costs P products: Lanczos (the default above FULL_PRODUCTS_THRESHOLD)
against the assembled Hessian (the default before), in one process.

A loss the probe cannot see into (``loss=``, as a loss computed in ``training_step``) leaves no one-hidden-layer
structure to assemble the Hessian from: assembling it costs P Hessian-vector products. The nets are tanh
3 → h → 1 on 1,333 samples (float64, as the probe evaluates), at a random initialisation nudged between
evaluations, so away from a critical point. Each round times one full ``LandscapeProbe.snapshot`` each way
(interleaved); the ranges over rounds are printed with the products made. Nothing is asserted.

    python benchmarks/inline_loss_full.py [--hidden 64 128 256 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

import torch_landscape.curvature.policy as policy
from torch_landscape.probe import LandscapeProbe


def full_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dense: bool) -> tuple[float, int]:
    """(seconds, products) of one full snapshot, assembled (``dense``) or by Lanczos above 256 parameters."""
    threshold = policy.FULL_PRODUCTS_THRESHOLD
    policy.FULL_PRODUCTS_THRESHOLD = 10**9 if dense else threshold
    try:
        probe = LandscapeProbe(
            model, data=[(x, y)], loss=lambda module, batch: nn.functional.mse_loss(module(batch[0]), batch[1])
        )
        probe.snapshot(0, full=False)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(1e-3 * torch.randn_like(parameter))
        start = time.perf_counter()
        snapshot = probe.snapshot(1, full=True)
        return time.perf_counter() - start, snapshot.num_hvp
    finally:
        policy.FULL_PRODUCTS_THRESHOLD = threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 128, 256, 400])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, 2 threads, load {os.getloadavg()[0]:.1f}")
    print("| P | Lanczos (s) | its products | assembled (s) | its products |")
    print("|---|---|---|---|---|")
    for hidden in args.hidden:
        torch.manual_seed(0)
        x = torch.randn(1333, 3)
        y = torch.sin(2 * x[:, :1]) * torch.cos(x[:, 1:2])
        model = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        runs: dict[bool, list[tuple[float, int]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for dense in (False, True):
                runs[dense].append(full_seconds(model, x, y, dense))
        size = sum(p.numel() for p in model.parameters())
        cells = []
        for dense in (False, True):
            seconds = [s for s, _ in runs[dense]]
            products = sorted({n for _, n in runs[dense]})
            cells += [
                f"{min(seconds):.2f}–{max(seconds):.2f}",
                "–".join(map(str, products[:: max(len(products) - 1, 1)])),
            ]
        print(f"| {size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
