#!/usr/bin/env python
"""Evaluation time of LandscapeProbe with 1 and with 2 processes (gloo, CPU), interleaved in one run.

Two processes are spawned once. Each repeat times, one after the other, (a) rank zero alone evaluating a
probe on the whole probe set (no process group) and (b) both ranks evaluating a probe with
``process_group=WORLD``, each on its half; barriers separate the two, so rank one waits while (a) runs.
Every process uses one CPU thread, so the ratio (a)/(b) is what a second process buys (2 at best; less
the all-reduces and the solver work that every rank repeats). Both probes evaluate the same parameters,
and the script checks that they report the same λ_max and trace (to 1e-10). On a machine with fewer free
cores than processes the two ranks share cores and the wall-time ratio says little, so the CPU time of
each process is measured too (``time.process_time``): one process's CPU time over the larger of the two
ranks' is the ratio on free cores, less the time a rank waits at an all-reduce.
Nothing is asserted beyond that; the machine load is printed with the times.

Usage::

    python benchmarks/ddp_probe.py                        # 4096 samples, 2-hidden-layer tanh net
    python benchmarks/ddp_probe.py --samples 16384 --width 128 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from torch_landscape import LandscapeProbe


def _problem(samples: int, width: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A 2-hidden-layer tanh regression net (products through autograd, not the one-hidden-layer structure)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(samples, 20, generator=generator)
    y = torch.sin(x[:, :1] * x[:, 1:2])
    return model, (x, y)


def _timed(probe: LandscapeProbe, full: bool) -> tuple[tuple[float, float], float, float, int]:
    """((wall seconds, CPU seconds of the slowest rank), λ_max, trace, products) of one snapshot."""
    start, cpu = time.perf_counter(), time.process_time()
    snapshot = probe.snapshot(0, full=full)
    seconds = torch.tensor([time.perf_counter() - start, time.process_time() - cpu], dtype=torch.float64)
    if probe.process_group is not None:
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX, group=probe.process_group)
    trace = snapshot.trace.value if snapshot.trace is not None else float("nan")
    return tuple(seconds.tolist()), float(snapshot.spectrum.lambda_max), trace, snapshot.num_hvp


def _worker(rank: int, store: str, args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    model, data = _problem(args.samples, args.width)
    options = {"quantities": ["spectrum", "trace"], "k": args.k, "method": "lanczos", "on_error": "raise"}
    single = LandscapeProbe(model, nn.MSELoss(), data, **options) if rank == 0 else None
    shared = LandscapeProbe(model, nn.MSELoss(), data, process_group=dist.group.WORLD, **options)
    one, two = [], []
    for repeat in range(args.repeats + 1):  # the first repeat warms up and is not counted
        for full in (False, True):
            dist.barrier()
            if rank == 0:
                result_one = _timed(single, full)
            dist.barrier()
            result_two = _timed(shared, full)
            dist.barrier()
            if rank == 0:
                if abs(result_one[1] - result_two[1]) > 1e-10 * abs(result_one[1]) or abs(
                    result_one[2] - result_two[2]
                ) > 1e-10 * abs(result_one[2]):
                    raise SystemExit(f"1 and 2 processes disagree: {result_one} vs {result_two}")
                if repeat:
                    one.append((full, result_one[0]))
                    two.append((full, result_two[0]))
    if rank == 0:
        parameters = sum(p.numel() for p in model.parameters())
        print(
            f"P = {parameters}, {args.samples} probe samples, float64, 1 thread per process, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        for full, name in ((False, "light (λ_max, warm)"), (True, f"full (k={args.k} each end, Hutch++ trace)")):
            a, b = (
                [statistics.median(times[i] for f, times in runs if f == full) for i in (0, 1)] for runs in (one, two)
            )
            print(
                f"{name:38s} wall: 1 process {a[0]:7.3f} s, 2 processes {b[0]:7.3f} s, ratio {a[0] / b[0]:4.2f};"
                f"  CPU: {a[1]:7.3f} s, {b[1]:7.3f} s per rank, ratio {a[1] / b[1]:4.2f}"
            )
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_worker, args=(os.path.join(folder, "store"), args), nprocs=2, join=True)


if __name__ == "__main__":
    main()
