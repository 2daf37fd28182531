"""A small-batch Adam classifier written as people write it, watched by ``LandscapeMonitor()`` with defaults.

A problem the size of scikit-learn's digits (1,437 samples of 64 features in 10 classes, drawn from a Gaussian
mixture so that nothing is downloaded), a 64 → 32 ReLU → 10 network (2,410 parameters), ``F.cross_entropy``
computed inline in ``training_step`` under ``import lightning as L``, Adam at batch 64 for 30 epochs (690
steps, about a second of training). The monitor evaluates the module's own ``training_step`` on a probe set
it sizes from its budget: λ_max and the stability ratio of Adam (λ_max of the preconditioned Hessian against
38/lr) at every evaluation, and at full ones both ends of the spectrum, the trace, the critical-point test
and the loss slices. No paper claim: the library as a user meets it (``make screenshot`` shows its views).

Run:  python examples/adam_classifier.py [--quick]      (TensorBoard: runs/adam_classifier)
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

try:
    from examples._common import Report, fmt, parse_quick
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import Report, fmt, parse_quick

from torch_landscape.callbacks import LandscapeMonitor

NAME = "adam_classifier"


def digits_like(seed: int = 0) -> TensorDataset:
    """1,437 samples of 64 features around 10 class centres (noise 4 against centres of spread 3)."""
    generator = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(10, 64, generator=generator)
    y = torch.randint(0, 10, (1437,), generator=generator)
    return TensorDataset(centres[y] + 4 * torch.randn(1437, 64, generator=generator), y)


class Classifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main(quick: bool = False, logdir: str | Path = "runs") -> dict:
    """Train for 30 epochs (3 when ``quick``) with the monitor's defaults; returns the run's findings."""
    report = Report("A small-batch Adam classifier under LandscapeMonitor()", "library usage example (no paper claim)")
    L.seed_everything(0, verbose=False)
    model, monitor = Classifier(), LandscapeMonitor()
    trainer = L.Trainer(
        max_epochs=3 if quick else 30,
        accelerator="cpu",
        logger=L.pytorch.loggers.TensorBoardLogger(str(logdir), name=NAME, version=""),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[monitor],
    )
    trainer.fit(model, DataLoader(digits_like(), batch_size=64, shuffle=True))
    history, last = monitor.history, monitor.last_snapshot
    points = [s.step for s in history if s.spectrum is not None]
    report.section(f"after {trainer.global_step} Adam steps: {len(history)} evaluations, the monitor's verdict")
    report.line(monitor.session.verdict)
    if last.spectrum is not None and last.stability is not None:
        report.line(
            f"λ_max {fmt(last.spectrum.lambda_max)} ± {fmt(last.spectrum.error_bounds[-1])}; "
            f"stability ratio {fmt(last.stability.ratio)}"
        )
    report.check(
        "the monitor drew a curve and ended with a full evaluation, without errors",
        len(points) >= 5 and last.full and not last.errors,
        f"λ_max at {len(points)} steps, {sum(s.full for s in history)} full; errors {list(last.errors)}",
    )
    out = report.finish(Path(logdir) / NAME)
    return out | {"monitor": monitor, "model": model, "steps": trainer.global_step}


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
