"""How neuron_redundancy scales with width on CPU (issue 4).

Times ``neuron_redundancy(model, X)`` for a random tanh and a random ReLU network at widths 256…4096
(d = 32, n = 2048, 4096 probe points, float64), with two planted duplicates so that the merge path runs,
and prints seconds and the ratio to one float64 forward pass over the same n + 4096 points. The per-neuron
rules cost O((n + N_p)·m·d), the pairwise ones O(m²·d); rule L1 (one QR, O(n·m·min(n, m))) runs only within
``l1_max_cost`` and the table says where it was skipped.

    python benchmarks/redundancy_scaling.py [--widths 256 1024 4096] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from torch_landscape.redundancy import neuron_redundancy


def network(width: int, d: int, activation: nn.Module, generator: torch.Generator) -> nn.Sequential:
    model = nn.Sequential(nn.Linear(d, width), activation, nn.Linear(width, 1)).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
        model[0].weight[1] = model[0].weight[0]  # planted duplicates
        model[0].bias[1] = model[0].bias[0]
        model[0].weight[3] = model[0].weight[2]
        model[0].bias[3] = model[0].bias[2]
    return model


def seconds(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(args.n, args.d, generator=generator, dtype=torch.float64)
    everything = torch.cat([inputs, torch.randn(4096, args.d, generator=generator, dtype=torch.float64)])
    print(f"d = {args.d}, n = {args.n}, 4096 probe points, float64, {args.threads} threads")
    print(f"{'activation':>10} {'width':>6} {'seconds':>8} {'forward s':>9} {'ratio':>6} {'eff. width':>10}  L1")
    for name, activation in (("tanh", nn.Tanh()), ("relu", nn.ReLU())):
        for width in args.widths:
            model = network(width, args.d, activation, generator)
            reports = []
            elapsed = seconds(lambda: reports.append(neuron_redundancy(model, inputs)), args.repeats)
            with torch.no_grad():
                forward = seconds(lambda: model(everything), 3)
            report = reports[-1]
            skipped = any("L1" in note for note in report.notes)
            print(
                f"{name:>10} {width:>6} {elapsed:>8.2f} {forward:>9.4f} {elapsed / forward:>6.0f} "
                f"{report.effective_width:>4}/{report.effective_width_on_data:<5}  {'skipped' if skipped else 'run'}"
            )


if __name__ == "__main__":
    main()
