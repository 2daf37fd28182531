"""What LandscapeMonitor costs a training run: wall time with and without it, default schedule.

The demo-size problem: a tanh teacher (16 inputs, 4 hidden neurons) and a tanh student of width 64
(P = 1153 parameters) trained by Lightning with SGD on 4096 samples, batch 64, with a TensorBoardLogger in
both runs; the monitored run adds ``LandscapeMonitor(reference=teacher)`` and nothing else. Runs alternate
(plain, monitored) to share the machine's load. Reported: the ratios of the median wall and CPU times,
and, steadier on a shared machine, the ratio computed from the time spent inside the monitor's own hooks
(monitored wall time over monitored wall time less that). Then, at the trained parameters, what a light
snapshot, a full one and the figures cost in training steps.

    python benchmarks/monitor_overhead.py [--epochs 100] [--repeats 3] [--threads 2] [--width 64]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter

from torch_landscape.callbacks import LandscapeMonitor
from torch_landscape.writers import write_figures

D_IN, TEACHER_WIDTH, SAMPLES, BATCH = 16, 4, 4096, 64


class Student(pl.LightningModule):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(D_IN, width), nn.Tanh(), nn.Linear(width, 1))
        self.loss_fn = nn.MSELoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def problem() -> tuple[nn.Module, TensorDataset]:
    generator = torch.Generator().manual_seed(0)
    teacher = nn.Sequential(nn.Linear(D_IN, TEACHER_WIDTH), nn.Tanh(), nn.Linear(TEACHER_WIDTH, 1))
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    x = torch.randn(SAMPLES, D_IN, generator=generator)
    return teacher, TensorDataset(x, teacher(x).detach())


class TimedMonitor(LandscapeMonitor):
    """LandscapeMonitor with a stopwatch around each of its hooks: on a shared machine the time the monitor
    itself spends is a steadier measure of its cost than the difference of two noisy wall times."""

    seconds = 0.0

    def _timed(self, hook, *args):
        start = time.perf_counter()
        hook(*args)
        self.seconds += time.perf_counter() - start

    def on_train_start(self, *args):
        self._timed(super().on_train_start, *args)

    def on_train_batch_end(self, *args):
        self._timed(super().on_train_batch_end, *args)

    def on_train_epoch_end(self, *args):
        self._timed(super().on_train_epoch_end, *args)

    def on_train_end(self, *args):
        self._timed(super().on_train_end, *args)


def train(monitored: bool, epochs: int, width: int, teacher: nn.Module, dataset: TensorDataset, logdir: str):
    pl.seed_everything(0, verbose=False)
    student = Student(width)
    monitor = TimedMonitor(reference=teacher) if monitored else None
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=TensorBoardLogger(logdir, name="monitored" if monitored else "plain"),
        callbacks=[monitor] if monitor else [], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(student, DataLoader(dataset, batch_size=BATCH, shuffle=True))
    return time.perf_counter() - wall, time.process_time() - cpu, student, monitor


def seconds_per_call(function, repeats: int = 3) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=int, default=64, help="student width (64: P = 1153)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    teacher, dataset = problem()
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    hooks: list[float] = []
    with tempfile.TemporaryDirectory() as logdir:
        for _ in range(args.repeats):
            for monitored in (False, True):
                wall, cpu, student, monitor = train(monitored, args.epochs, args.width, teacher, dataset, logdir)
                runs[monitored].append((wall, cpu))
                if monitored:
                    hooks.append(monitor.seconds)
        steps = args.epochs * len(dataset) // BATCH
        print(f"demo network: P = {sum(p.numel() for p in student.parameters())}, {steps} SGD steps (batch {BATCH}), "
              f"{args.threads} threads, {args.repeats} alternating runs each, load average {os.getloadavg()[0]:.1f}")
        medians = {}
        for monitored, name in ((False, "plain"), (True, "monitored")):
            walls, cpus = zip(*runs[monitored])
            medians[monitored] = statistics.median(walls), statistics.median(cpus)
            print(f"{name:<10} wall {' '.join(f'{w:6.2f}' for w in walls)} s (median {medians[monitored][0]:.2f}), "
                  f"CPU {' '.join(f'{c:6.2f}' for c in cpus)} s (median {medians[monitored][1]:.2f})")
        print(f"ratio monitored/plain: wall time {medians[True][0] / medians[False][0]:.3f}, "
              f"CPU time {medians[True][1] / medians[False][1]:.3f}")
        own = [wall / (wall - seconds) for (wall, _), seconds in zip(runs[True], hooks)]
        print(f"time inside the monitor's hooks: {' '.join(f'{s:.2f}' for s in hooks)} s, i.e. monitored/unmonitored "
              f"{' '.join(f'{r:.3f}' for r in own)} (median {statistics.median(own):.3f})")
        print(f"full evaluations of the last monitored run at steps {[s.step for s in monitor.history if s.full]}")

        step = medians[False][0] / steps
        x, y = dataset.tensors
        probe = monitor.probe
        gradient = seconds_per_call(
            lambda: torch.autograd.grad(nn.functional.mse_loss(student(x[:BATCH]), y[:BATCH]), list(student.parameters()))
        )
        light = seconds_per_call(lambda: probe.snapshot(steps, full=False))
        full = seconds_per_call(lambda: probe.snapshot(steps), repeats=1)
        writer = SummaryWriter(logdir)
        snapshot = probe.snapshot(steps)
        figures = seconds_per_call(lambda: write_figures(writer, snapshot, probe.trajectory), repeats=1)
        writer.close()
    print(f"one training step {step * 1e3:.2f} ms (its gradient alone {gradient * 1e3:.2f} ms); in training steps:")
    for name, seconds in (("light snapshot", light), ("full snapshot", full), ("the three figures", figures)):
        print(f"  {name:<18} {seconds * 1e3:8.1f} ms = {seconds / step:7.1f} steps")


if __name__ == "__main__":
    main()
