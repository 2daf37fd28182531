"""What ``LandscapeMonitor()`` with its defaults draws on ordinary runs, and what it costs them.

Three runs as a user writes them (Lightning, the loss computed in ``training_step``, the monitor with no
arguments), each trained with and without the monitor, interleaved in one process:

- ``readme``: the README's ten-line example (tanh 2 → 8 → 1, 1,024 samples, batch 64, 320 SGD steps);
- ``classifier``: ``examples/adam_classifier.py``, a small-batch Adam classifier the size of scikit-learn's
  digits (64 → 32 ReLU → 10, 2,410 parameters, cross-entropy, batch 64, 30 epochs: 690 steps);
- ``tanh64``: a 3 → 64 → 1 tanh regression (321 parameters, 8,192 samples, batch 128, SGD), long enough to
  train for about 30 s on 2 cores.

Printed per run: training time with and without the monitor (median, and the measured share
1 − plain/monitored), the share the monitor logged, how many evaluations carried λ_max and how many were
full (the closing one included?), what one light and one full evaluation took (the probe's seconds, medians),
and the monitor's notes. Targets (issues #24, #25): ≥ 20 λ_max points and
≥ 2 full evaluations including the closing one on ``classifier``; ≥ 30 λ_max points and the closing full
evaluation on ``readme`` and ``tanh64``; the share within max(max_overhead, the 1.25 s floor over the run).

    python benchmarks/default_runs.py [--runs readme classifier tanh64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torch_landscape.callbacks import LandscapeMonitor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from adam_classifier import Classifier, digits_like  # noqa: E402


class Regression(L.LightningModule):
    def __init__(self, d: int, width: int, lr: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, width), nn.Tanh(), nn.Linear(width, 1))
        self.lr = lr

    def training_step(self, batch, batch_idx):
        loss = F.mse_loss(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def readme():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 2, generator=generator)
    return lambda: Regression(2, 8, 0.1), TensorDataset(x, torch.sin(3 * x[:, :1]) * x[:, 1:]), 64, 20


def classifier():
    return Classifier, digits_like(), 64, 30


def tanh64(epochs: int):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8192, 3, generator=generator)
    y = torch.sin(2 * x[:, :1]) * torch.cos(x[:, 1:2]) + 0.1 * x[:, 2:]
    return lambda: Regression(3, 64, 0.05), TensorDataset(x, y), 128, epochs


def train(make, dataset, batch_size: int, epochs: int, monitored: bool, logdir: str):
    L.seed_everything(0, verbose=False)
    monitor = LandscapeMonitor() if monitored else None
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=L.pytorch.loggers.TensorBoardLogger(logdir),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[monitor] if monitor else [],
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    start = time.perf_counter()
    trainer.fit(make(), loader)
    return time.perf_counter() - start, monitor, trainer


def measure(name: str, problem, repeats: int) -> None:
    make, dataset, batch_size, epochs = problem
    walls: dict[bool, list[float]] = {False: [], True: []}
    logged, counts = [], []
    with tempfile.TemporaryDirectory() as logdir:
        for _ in range(repeats):
            for monitored in (False, True):
                wall, monitor, trainer = train(make, dataset, batch_size, epochs, monitored, logdir)
                walls[monitored].append(wall)
                if monitor is not None:
                    logged.append(float(trainer.callback_metrics["landscape/monitor/overhead"]))
                    history = monitor.history
                    points = sum(s.spectrum is not None for s in history)
                    # The probe's own seconds per evaluation (without writing to the loggers), medians per tier.
                    light = statistics.median([s.seconds for s in history if not s.full] or [math.nan])
                    full = statistics.median([s.seconds for s in history if s.full] or [math.nan])
                    counts.append((points, sum(s.full for s in history), history[-1].full, light, full, monitor.notes))
    measured = [1 - plain / watched for plain, watched in zip(walls[False], walls[True], strict=True)]
    print(f"\n{name}: {trainer.global_step} steps, {repeats} interleaved pairs, load {os.getloadavg()[0]:.1f}")
    print(
        f"  training plain {' '.join(f'{w:.2f}' for w in walls[False])} s, monitored "
        f"{' '.join(f'{w:.2f}' for w in walls[True])} s; median ratio "
        f"{statistics.median(walls[True]) / statistics.median(walls[False]):.3f}"
    )
    print(f"  share measured {' '.join(f'{m:.3f}' for m in measured)}, logged {' '.join(f'{x:.3f}' for x in logged)}")
    for points, full, closing, light_seconds, full_seconds, notes in counts:
        print(
            f"  lambda_max at {points} steps, {full} full evaluations, closing full: {closing}; one light "
            f"{1e3 * light_seconds:.0f} ms, one full {full_seconds:.2f} s (medians); notes: {list(notes)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["readme", "classifier", "tanh64"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tanh64-epochs", type=int, default=150)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    problems = {"readme": readme, "classifier": classifier, "tanh64": lambda: tanh64(args.tanh64_epochs)}
    for name in args.runs:
        measure(name, problems[name](), args.repeats)


if __name__ == "__main__":
    main()
