"""Peak memory of a full snapshot against the probe-set size n: it must grow linearly in n (issue 22, item 4).

For each n (default 12.5k, 25k, 50k, 100k samples) a fresh Python process builds a one-hidden-layer tanh
network 4 → 8 → 1 (P = 49), a probe set of n samples in one batch (the worst case: no batch bounds an
intermediate), constructs ``LandscapeProbe`` with every quantity that applies (float64) and takes one full
snapshot — spectrum, critical point, trace, density, PL, redundancy, the Hessian-nullity cross-check, the
slices. The process reports its peak resident set size (VmHWM from /proc/self/status) before building the
data and after the snapshot. The parent fits peak = intercept + slope·n by least squares and prints the
slope (bytes per sample, beside the 40 bytes of the float64 copy of one sample), the intercept, and each
point's deviation from the line. Before the fix of issue 22 the cross-check's full SVD built an n × n
matrix: 0.8 GB at n = 8k and an attempted 80 GB at n = 100k.

    python benchmarks/probe_memory.py [--sizes 12500 25000 50000 100000] [--threads 2]

Measured (torch 2.13 CPU, two runs): peak ≈ 413–440 MiB + 2.4–2.8 kB × n, every point within 6 % of its
line; 690 MiB at n = 100k. The code before the fix: 652 MiB at n = 6.25k and 1564 MiB at 12.5k.

Linux only (VmHWM). Memory, not time: the processes may share the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
from torch import nn

D, M = 4, 8


def peak_rss() -> int:
    """This process's peak resident set size in bytes (VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this benchmark needs Linux.")


def child(n: int, threads: int) -> None:
    """One full snapshot on n samples; prints a JSON line with the peak RSS before and after."""
    from torch_landscape import LandscapeProbe

    torch.set_num_threads(threads)
    before = peak_rss()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, D, generator=generator)
    y = torch.tanh(x @ torch.randn(D, 3, generator=generator)) @ torch.randn(3, 1, generator=generator)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, M), nn.Tanh(), nn.Linear(M, 1))
    probe = LandscapeProbe(model, nn.MSELoss(), (x, y))
    snapshot = probe.snapshot(step=0, full=True)
    computed = [name for name in ("spectrum", "critical", "redundancy", "nullity", "slices") if getattr(snapshot, name)]
    print(json.dumps({"n": n, "before": before, "peak": peak_rss(), "errors": snapshot.errors, "computed": computed}))


def fit(sizes: list[int], peaks: list[int]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through (n, peak)."""
    mean_n, mean_p = sum(sizes) / len(sizes), sum(peaks) / len(peaks)
    slope = sum((n - mean_n) * (p - mean_p) for n, p in zip(sizes, peaks, strict=True)) / sum(
        (n - mean_n) ** 2 for n in sizes
    )
    return slope, mean_p - slope * mean_n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[12500, 25000, 50000, 100000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.threads)
        return
    print(f"one-hidden-layer tanh {D} → {M} → 1 (P = {D * M + 2 * M + 1}), one batch, float64, {args.threads} threads")
    print(f"{'n':>8} {'peak MiB':>9} {'before MiB':>10} {'line MiB':>9} {'deviation':>9}  computed / errors")
    rows = []
    for n in args.sizes:
        command = [sys.executable, __file__, "--child", str(n), "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            print(f"{n:>8} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if len(rows) < 2:
        raise SystemExit("fewer than two sizes finished: no line to fit.")
    sizes, peaks = [row["n"] for row in rows], [row["peak"] for row in rows]
    slope, intercept = fit(sizes, peaks)
    for row in rows:
        line = intercept + slope * row["n"]
        print(
            f"{row['n']:>8} {row['peak'] / 2**20:>9.1f} {row['before'] / 2**20:>10.1f} {line / 2**20:>9.1f} "
            f"{(row['peak'] - line) / line:>+9.1%}  {', '.join(row['computed'])}"
            + (f"; errors: {row['errors']}" if row["errors"] else "")
        )
    print(
        f"peak RSS ≈ {intercept / 2**20:.0f} MiB + {slope:.0f} bytes × n  ({slope / ((D + 1) * 8):.0f}× the float64 "
        f"copy of a sample; the intercept holds the interpreter and torch, {rows[0]['before'] / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
