"""What re-checking model, loss and data at every snapshot would cost a light snapshot.

LandscapeProbe checks its objective once, at construction (one forward pass on the first batch, the
split-batch mean-reduction test, and a forward pass over all batches for a finite loss), and builds the
objective of each snapshot with ``check=False``. This measures a light snapshot (loss, gradient, PL) both
ways, interleaved in one process, on the demo-size problem (a tanh network 32 → 32 → 3, P = 1155, 2048
probe samples, float64), and prints the ratio of the medians.

    python benchmarks/light_snapshot_checks.py [--repeats 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from torch_landscape.objective import Objective
from torch_landscape.probe import LandscapeProbe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))
    x, y = torch.randn(2048, 32), torch.randn(2048, 3)
    probe = LandscapeProbe(model, nn.MSELoss(), (x, y), quantities=["pl"])
    unchecked = probe.objective

    def checked() -> Objective:
        model_, loss_fn, data, params = probe._objective_args
        return Objective(model_, loss_fn, data, params=params, dtype=probe.dtype)

    seconds: dict[str, list[float]] = {"checked once": [], "checked every snapshot": []}
    for step in range(arguments.repeats):
        for name, build in (("checked once", unchecked), ("checked every snapshot", checked)):
            probe.objective = build
            start = time.perf_counter()
            probe.snapshot(step, full=False)
            seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, value in medians.items():
        print(f"light snapshot, {name}: {value * 1e3:.1f} ms (median of {arguments.repeats})")
    print(f"ratio once / every snapshot: {medians['checked once'] / medians['checked every snapshot']:.2f}")


if __name__ == "__main__":
    main()
