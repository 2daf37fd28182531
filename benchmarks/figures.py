#!/usr/bin/env python
"""Pixel size and drawing time of the landscape figures: this tree's ``writers/figures.py`` against another
revision's (issue #24: figures legible at 2x, drawing time of the three usual figures within ~1.5x).

The snapshot: a tanh student of width 5 (d = 3, P = 26) on 96 regression samples, one neuron a planted
duplicate of another (a verified merge for the heat map), trained 120 Adam steps with a light snapshot every
10 and a full one (every quantity, slices included) at 0, 60 and 120: a 13-point eigenvalue trajectory.
Each figure is built and rendered with Agg (``to_image``) by both versions in turn, ``--repeats`` rounds;
printed per figure: pixel sizes, the median time of each version, and the range of the per-round ratio
this/other. The "three usual figures" (spectral density, eigenvalue trajectories, neuron similarity: what
a default monitor draws at the end) are also summed per round. Nothing is asserted.

With ``--save DIR`` both versions' PNGs are written there at full and at half size (how TensorBoard's image
card shows them before it is enlarged), and this version's placeholder image.

Usage::

    python benchmarks/figures.py                            # against main, 5 rounds
    python benchmarks/figures.py --against d18a9ec --repeats 7 --save /tmp/figures
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.tensorboard import summary  # noqa: E402

from torch_landscape.probe import LandscapeProbe  # noqa: E402
from torch_landscape.snapshot import LandscapeSnapshot  # noqa: E402
from torch_landscape.writers import figures as current  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
USUAL = ("spectral_density", "eigenvalue_trajectories", "neuron_similarity")


def other_version(revision: str) -> types.ModuleType:
    """``writers/figures.py`` as of ``revision``, loaded as a sibling module (its relative imports resolve)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:torch_landscape/writers/figures.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("torch_landscape.writers._figures_other")
    module.__package__ = "torch_landscape.writers"
    exec(compile(source, f"{revision}:figures.py", "exec"), module.__dict__)
    return module


def snapshot_and_trajectory() -> tuple[LandscapeSnapshot, list[tuple[int, float, float]]]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(96, 3, generator=generator, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(3, 4, generator=generator, dtype=torch.float64)).sum(1, keepdim=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    torch.manual_seed(5)
    teacher = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1)).double()
    with torch.no_grad():  # neuron 4 duplicates neuron 0 and keeps doing so under training: a verified merge
        model[0].weight[4] = model[0].weight[0]
        model[0].bias[4] = model[0].bias[0]
        model[2].weight[0, 4] = model[2].weight[0, 0]
    probe = LandscapeProbe(model, nn.MSELoss(), (x, y), reference=teacher)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(0, 121, 10):
        snapshot = probe.snapshot(step, full=step in (0, 60, 120), learning_rate=0.05)
        for _ in range(10):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    return snapshot, probe.trajectory


def drawings(module: types.ModuleType, snapshot: LandscapeSnapshot, trajectory: list) -> dict[str, Callable]:
    assert snapshot.density is not None and snapshot.redundancy is not None and snapshot.slices is not None
    density, redundancy, slices, step = snapshot.density, snapshot.redundancy, snapshot.slices, snapshot.step
    return {
        "spectral_density": lambda: module.spectral_density_figure(density, step),
        "eigenvalue_trajectories": lambda: module.eigenvalue_trajectory_figure(trajectory, snapshot.learning_rate),
        "neuron_similarity": lambda: module.similarity_figure(redundancy, step),
        "loss_slices": lambda: module.slice_1d_figure(slices.lines, step),
        "loss_plane": lambda: module.slice_2d_figure(slices.plane, step),
    }


def timed(module: types.ModuleType, draw: Callable) -> tuple[float, np.ndarray, int]:
    """Seconds to build, render and PNG-encode a figure as ``SummaryWriter.add_image`` does; the image; PNG bytes."""
    start = time.perf_counter()
    image = module.to_image(draw())
    encoded = summary.image("figure", image, dataformats="HWC").value[0].image.encoded_image_string
    return time.perf_counter() - start, image, len(encoded)


def _size(size: tuple[int, int, int]) -> str:
    width, height, encoded = size
    return f"{width}×{height} ({encoded / 1e3:.0f})"


def save(image, path: Path) -> None:
    from PIL import Image

    picture = Image.fromarray(image)
    picture.save(path)
    picture.resize((picture.width // 2, picture.height // 2), Image.LANCZOS).save(path.with_suffix(".half.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="main", help="the git revision to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--save", type=Path, default=None, help="a folder for the PNGs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    other = other_version(args.against)
    snapshot, trajectory = snapshot_and_trajectory()
    versions = {"this": drawings(current, snapshot, trajectory), args.against: drawings(other, snapshot, trajectory)}
    modules = {"this": current, args.against: other}
    for name in versions["this"]:  # warm up: fonts, mathtext, caches
        for label, module in modules.items():
            _, image, _ = timed(module, versions[label][name])
            if args.save is not None:
                args.save.mkdir(parents=True, exist_ok=True)
                save(image, args.save / f"{name}.{label}.png")
    times: dict[tuple[str, str], list[float]] = {}
    sizes: dict[tuple[str, str], tuple[int, int, int]] = {}
    for round_ in range(args.repeats):
        order = list(modules) if round_ % 2 == 0 else list(reversed(modules))  # interleaved, alternating first
        for name in versions["this"]:
            for label in order:
                seconds, image, encoded = timed(modules[label], versions[label][name])
                times.setdefault((name, label), []).append(seconds)
                sizes[name, label] = (image.shape[1], image.shape[0], encoded)
    print(f"figures: this tree against {args.against}, {args.repeats} interleaved rounds, 1 thread")
    print("time: build + render with Agg + PNG-encode as add_image does\n")
    other = args.against
    print(f"| figure | pixels (PNG kB) {other} | this | ms {other} (median) | this | ratio this/{other} (range) |")
    print("|---|---|---|---|---|---|")
    for name in versions["this"]:
        mine, theirs = times[name, "this"], times[name, other]
        ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
        print(
            f"| {name} | {_size(sizes[name, other])} | {_size(sizes[name, 'this'])} "
            f"| {1e3 * statistics.median(theirs):.0f} | {1e3 * statistics.median(mine):.0f} "
            f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |"
        )
    usual = [
        sum(times[name, "this"][i] for name in USUAL) / sum(times[name, args.against][i] for name in USUAL)
        for i in range(args.repeats)
    ]
    spread = f"{statistics.median(usual):.2f} ({min(usual):.2f}–{max(usual):.2f})"
    print(f"\nthe three usual figures together: ratio this/{other} {spread}")
    reason = (
        "figures were not drawn: they would cost about 0.6 s beyond the budget (max_overhead=0.05); "
        "pass figures=True to draw them at every full evaluation"
    )
    placeholder = [timed(current, lambda: current.placeholder_figure(reason)) for _ in range(args.repeats)]
    _, image, encoded = placeholder[-1]
    seconds = statistics.median(seconds for seconds, _, _ in placeholder)
    print(f"placeholder_figure: {_size((image.shape[1], image.shape[0], encoded))}, {1e3 * seconds:.0f} ms (median)")
    if args.save is not None:
        save(image, args.save / "placeholder.this.png")
        print(f"PNGs in {args.save}")


if __name__ == "__main__":
    main()
