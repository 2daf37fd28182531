"""Real data nobody planted: Google's daily trading volume from its price range (Lightning + LandscapeMonitor).

Data: ``goog.npz`` from matplotlib's bundled sample data (mpl-data/sample_data; Yahoo! Finance daily prices
of GOOG, 2004-08-19 to 2008-10-10, 1047 trading days), shipped with matplotlib, an optional dependency of
torch_landscape[lightning]: no download. (scikit-learn's diabetes set is not a dependency of this project.)
Task: predict the day's log volume from its log high/low range, its |log close/open| and the previous day's
log volume (the volume–volatility relation), standardised. A plain shallow tanh network of width 8 is trained
with Adam under Lightning, with a LandscapeMonitor on the full data, then polished by L-BFGS; the report
says what the monitors see at the end: no teacher, no known L*, no planted structure.

Run:  python examples/real_data_goog_volume.py [--quick]      (TensorBoard: runs/real_data_goog_volume)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

try:
    from examples._common import Report, fmt, lbfgs, parse_quick
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import Report, fmt, lbfgs, parse_quick

from torch_landscape import (
    classify_critical_point,
    neuron_redundancy,
    redundancy_nullity_check,
)

NAME = "real_data_goog_volume"


def load() -> tuple[torch.Tensor, torch.Tensor]:
    from matplotlib import cbook

    prices = cbook.get_sample_data("goog.npz")["price_data"]  # bundled with matplotlib, no download
    log_volume = np.log(prices["volume"].astype(np.float64))
    log_range = np.log(prices["high"] / prices["low"])
    abs_return = np.abs(np.log(prices["close"] / prices["open"]))
    features = np.stack([log_range[1:], abs_return[1:], log_volume[:-1]], axis=1)
    target = log_volume[1:, None]
    features = (features - features.mean(0)) / features.std(0)
    target = (target - target.mean()) / target.std()
    return torch.tensor(features), torch.tensor(target)


def main(quick: bool = False, logdir: str | Path = "runs") -> dict:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader, TensorDataset

    from torch_landscape.callbacks import LandscapeMonitor

    report = Report(
        "Real data: GOOG daily log volume from price range (1046 days, 3 features), tanh width 8",
        "no paper claim: what the monitors report on data nobody planted (docs/theory.md §1–§4)",
    )
    x, y = load()
    if quick:
        x, y = x[:300], y[:300]
    width = 8
    torch.manual_seed(0)

    class Regressor(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, width), nn.Tanh(), nn.Linear(width, 1)).double()
            self.loss_fn = nn.MSELoss()

        def forward(self, inputs):
            return self.net(inputs)

        def training_step(self, batch, batch_idx):
            inputs, targets = batch
            loss = self.loss_fn(self(inputs), targets)
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.02)

    model = Regressor()
    loader = DataLoader(
        TensorDataset(x, y), batch_size=len(x)
    )  # full batch: the monitor's objective is the training loss
    monitor = LandscapeMonitor(every_n_steps=10, full_every=5, probe_data=(x, y), k=4)
    trainer = pl.Trainer(
        max_epochs=60 if quick else 400,
        logger=TensorBoardLogger(str(logdir), name=NAME, version=0),
        callbacks=[monitor],
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=10,
    )
    trainer.fit(model, loader)
    snap = monitor.last_snapshot
    report.section(f"after {trainer.global_step} Adam steps (monitored under Lightning)")
    report.line(f"L = {fmt(snap.loss)}, ‖∇L‖ = {fmt(snap.grad_norm)}")
    if snap.critical is not None:
        report.line(
            f"classification: {snap.critical.kind} (index {snap.critical.morse_index}, "
            f"λ_min = {fmt(snap.critical.lambda_min)}, λ_max = {fmt(snap.critical.lambda_max)})"
        )
    if snap.pl is not None:
        report.line(f"PL ratio {fmt(snap.pl.mu)} with L̂* = {fmt(snap.pl.loss_star)} estimated online")
    if snap.redundancy is not None:
        report.line(
            f"effective width {snap.redundancy.effective_width} of {width}; distance to redundancy "
            f"{fmt(snap.redundancy.score)} ({snap.redundancy.score_rule})"
        )

    report.section("polished by full-batch L-BFGS to a critical point, then classified")
    net = model.net
    lbfgs(net, x, y, max_iter=300 if quick else 2000)
    loss_fn = nn.MSELoss()
    cp = classify_critical_point(net, loss_fn, (x, y))
    red = neuron_redundancy(net, (x, y), loss_fn=loss_fn)
    check = redundancy_nullity_check(net, loss_fn, (x, y), report=red)
    report.line(f"L = {fmt(cp.loss)} (variance of the standardised target: 1), ‖∇L‖ = {fmt(cp.grad_norm)}")
    report.line(
        f"classification: {cp.kind}, index {cp.morse_index}, nullity {cp.nullity}, λ_min = {fmt(cp.lambda_min)}, "
        f"λ_max = {fmt(cp.lambda_max)}, condition {cp.lambda_max / abs(cp.lambda_min):.1e}"
    )
    report.line(
        f"effective width {red.effective_width} of {red.width}; smallest redundancy score {fmt(red.score)} "
        f"({red.score_rule}); Hessian nullity {check.measured_nullity}, predicted {check.predicted_nullity}"
    )
    consistent = (cp.kind != "nondegenerate_min") or red.effective_width == red.width
    report.check(
        "consistency (Benning–Dereich, one direction): a nondegenerate minimum is efficient (no verified redundancy)",
        consistent,
        f"{cp.kind}, effective width {red.effective_width}/{red.width}",
    )
    out = report.finish(Path(logdir) / NAME)
    out.update(
        kind=cp.kind,
        loss=cp.loss,
        grad_norm=cp.grad_norm,
        critical=cp.critical,
        effective_width=red.effective_width,
        width=width,
        monitor_loss=snap.loss,
        monitor_had_hessian=snap.spectrum is not None,
    )
    return out


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
