"""What LandscapeMonitor costs a training run, and whether it says so: wall time with and without it.

Two problems, each trained by Lightning with and without ``LandscapeMonitor()`` (default, automatic
schedule), runs interleaved in one process to share the machine's load:

- ``readme``: the README's "Ten lines" example (tanh net, P = 33, 1024 samples, batch 64, 320 SGD steps);
- ``demo``: the demo-size net (16 inputs, width 64, P = 1153, 4096 samples, batch 64, SGD).

Printed per problem: the median training time (on_train_start to on_train_end, the closing evaluation
included) with and without the monitor and their ratio; the share of that time the monitor took, measured
(1 − plain/monitored) beside the share it logged (``landscape/monitor/overhead``, last value); how many
evaluations carried λ_max and how many were full; and, at the trained parameters, what a light snapshot, a
full one and the figures cost in training steps. The whole-script ratio of the README example (imports and
Lightning's start-up included) is what ``../shared/tools/readme_run.py --plain`` prints.

    python benchmarks/monitor_overhead.py [--problem readme demo] [--repeats 3] [--epochs-demo 100]
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
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter

from torch_landscape.callbacks import LandscapeMonitor
from torch_landscape.writers import write_figures


class Net(pl.LightningModule):
    def __init__(self, d: int, width: int, lr: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, width), nn.Tanh(), nn.Linear(width, 1))
        self.loss_fn, self.lr = nn.MSELoss(), lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = self.loss_fn(self(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def readme_problem():
    x = torch.randn(1024, 2, generator=torch.Generator().manual_seed(0))
    return (2, 8, 0.1, 20), TensorDataset(x, torch.sin(3 * x[:, :1]) * x[:, 1:])


def demo_problem(epochs: int):
    generator = torch.Generator().manual_seed(0)
    teacher = nn.Sequential(nn.Linear(16, 4), nn.Tanh(), nn.Linear(4, 1))
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    x = torch.randn(4096, 16, generator=generator)
    return (16, 64, 0.05, epochs), TensorDataset(x, teacher(x).detach())


class Clock(Callback):
    """Training time: listed first it starts before the monitor's set-up, listed last it stops after the
    monitor's closing evaluation."""

    def __init__(self, start: bool) -> None:
        self.start, self.times = start, []

    def on_train_start(self, trainer, pl_module):
        if self.start:
            self.times.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module):
        if not self.start:
            self.times.append(time.perf_counter())


def train(monitored: bool, spec, dataset, logdir: str):
    d, width, lr, epochs = spec
    pl.seed_everything(0, verbose=False)
    model = Net(d, width, lr)
    monitor = LandscapeMonitor(verbose=False) if monitored else None
    start, stop = Clock(True), Clock(False)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger(logdir),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[start] + ([monitor] if monitor else []) + [stop],
    )
    trainer.fit(model, DataLoader(dataset, batch_size=64, shuffle=True))
    return stop.times[0] - start.times[0], model, monitor, trainer


def seconds_per_call(function, repeats: int = 3) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def measure(name: str, spec, dataset, repeats: int) -> None:
    walls: dict[bool, list[float]] = {False: [], True: []}
    logged = []
    with tempfile.TemporaryDirectory() as logdir:
        for _ in range(repeats):
            for monitored in (False, True):
                wall, model, monitor, trainer = train(monitored, spec, dataset, logdir)
                walls[monitored].append(wall)
                if monitored:
                    logged.append(float(trainer.callback_metrics["landscape/monitor/overhead"]))
        plain, watched = statistics.median(walls[False]), statistics.median(walls[True])
        steps = trainer.global_step
        size = sum(p.numel() for p in model.parameters())
        history = monitor.history
        print(
            f"\n{name}: P = {size}, {steps} SGD steps, {repeats} interleaved runs each, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"  training time plain {' '.join(f'{w:.2f}' for w in walls[False])} s, monitored "
            f"{' '.join(f'{w:.2f}' for w in walls[True])} s; median ratio {watched / plain:.3f}"
        )
        measured = [1 - p / w for p, w in zip(walls[False], walls[True], strict=True)]  # each pair ran back to back
        print(
            f"  monitor's share measured {' '.join(f'{m:.3f}' for m in measured)}, logged "
            f"{' '.join(f'{x:.3f}' for x in logged)}"
        )
        print(
            f"  last run: lambda_max at {sum(s.spectrum is not None for s in history)} steps, "
            f"{sum(s.full for s in history)} full evaluations (steps {[s.step for s in history if s.full]})"
            + (f"; notes: {monitor.notes}" if monitor.notes else "")
        )
        x, y = dataset.tensors
        probe = monitor.probe
        step = seconds_per_call(
            lambda: torch.autograd.grad(nn.functional.mse_loss(model(x[:64]), y[:64]), list(model.parameters())),
            repeats=20,
        )
        light = seconds_per_call(lambda: probe.snapshot(steps, full=False), repeats=5)
        full = seconds_per_call(lambda: probe.snapshot(steps), repeats=1)
        writer = SummaryWriter(logdir)
        snapshot = probe.snapshot(steps)
        figures = seconds_per_call(lambda: write_figures(writer, snapshot, probe.trajectory), repeats=1)
        writer.close()
    print(
        f"  one batch gradient {step * 1e3:.2f} ms; in batch gradients: light snapshot {light / step:.0f}, "
        f"full {full / step:.0f}, figures {figures / step:.0f} ({light * 1e3:.1f} / {full * 1e3:.0f} / "
        f"{figures * 1e3:.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", nargs="+", default=["readme", "demo"], choices=["readme", "demo"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs-demo", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    for name in args.problem:
        spec, dataset = readme_problem() if name == "readme" else demo_problem(args.epochs_demo)
        measure(name, spec, dataset, args.repeats)


if __name__ == "__main__":
    main()
