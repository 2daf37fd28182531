"""LandscapeMonitor under DDP (2 CPU processes, gloo): both ranks take part in every evaluation, each with
half of the probe set, and get identical snapshots at the same steps (the schedule is decided on rank zero
and broadcast); the eigenvalues logged are those of the whole probe set, equal to a single-process core
call at the trained parameters to 1e-10 (the same per-sample sums, grouped in two partial sums), and only
rank zero logs."""

import subprocess
import sys
import textwrap

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from torch_landscape import (
    classify_critical_point,
    hessian_eigenvalues,
    hessian_trace,
    neuron_redundancy,
)

SCRIPT = textwrap.dedent(
    """
    import os
    import sys

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.loggers import TensorBoardLogger
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from torch_landscape.callbacks import LandscapeMonitor


    class Student(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
            self.loss_fn = nn.MSELoss()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return self.loss_fn(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)


    if __name__ == "__main__":
        out, schedule = sys.argv[1], sys.argv[2]
        torch.set_num_threads(1)
        pl.seed_everything(0)
        generator = torch.Generator().manual_seed(1)
        x = torch.randn(96, 3, generator=generator)
        y = torch.sin(x.sum(dim=1, keepdim=True))
        if schedule == "fixed":
            monitor = LandscapeMonitor(every_n_steps=2, full_every=1, probe_size=64,
                                       quantities=["pl", "spectrum", "trace", "critical", "redundancy"])
        else:  # automatic: when to evaluate depends on the budget and clock, unless rank zero decides for all
            # Rank one is given another budget: were it to decide for itself, it would evaluate at other steps.
            budget = 0.5 if os.environ.get("LOCAL_RANK", "0") == "0" else 0.01
            monitor = LandscapeMonitor(probe_size=64, max_overhead=budget, quantities=["pl", "spectrum"])
        epochs = 1 if schedule == "fixed" else 10
        trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=epochs,
                             logger=TensorBoardLogger(out), callbacks=[monitor], enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=False)
        trainer.fit(Student(), DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
        snapshot = monitor.last_snapshot
        torch.save(
            {
                "state": trainer.lightning_module.state_dict(),
                "step": trainer.global_step,
                "computed": snapshot is not None,
                "history": [(s.step, s.full, s.loss, s.grad_norm, s.spectrum.eigenvalues.tolist())
                            for s in monitor.history],
                "eigenvalues": snapshot.spectrum.eigenvalues if snapshot else None,
                "trace": snapshot.trace.value if snapshot and snapshot.trace else None,
                "critical": snapshot.critical.kind if snapshot and snapshot.critical else None,
                "redundancy": (snapshot.redundancy.effective_width, snapshot.redundancy.effective_width_on_data,
                               snapshot.redundancy.score) if snapshot and snapshot.redundancy else None,
                "log_dir": trainer.logger.log_dir,
                "data": (x, y),
            },
            f"{out}/rank{trainer.global_rank}.pt",
        )
    """
)


def _run(tmp_path, schedule):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), schedule], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    zero, one = (
        torch.load(tmp_path / "rank0.pt", weights_only=False),
        torch.load(tmp_path / "rank1.pt", weights_only=False),
    )
    for a, b in zip(zero["state"].values(), one["state"].values(), strict=True):
        assert torch.equal(a, b)
    # Both ranks evaluated, at the same steps, and got the same numbers (they ran the same iterations).
    assert zero["computed"] and one["computed"]
    assert zero["history"] == one["history"]
    for key in ("eigenvalues", "trace", "critical", "redundancy"):
        assert torch.equal(zero[key], one[key]) if isinstance(zero[key], torch.Tensor) else zero[key] == one[key], key
    return zero


def test_ddp_ranks_share_each_evaluation_of_the_full_probe_set_and_rank_zero_logs(tmp_path):
    zero = _run(tmp_path, "fixed")

    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    model.load_state_dict({name.removeprefix("net."): value for name, value in zero["state"].items()})
    x, y = zero["data"]
    # The whole probe set, drawn as a single process draws it: not one rank's shard.
    chosen = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:64].sort().values
    probe = (x[chosen], y[chosen])
    expected = hessian_eigenvalues(model, nn.MSELoss(), probe, k=5, dtype=torch.float64)
    torch.testing.assert_close(zero["eigenvalues"], expected.eigenvalues, rtol=1e-10, atol=1e-10)
    assert zero["trace"] == pytest.approx(
        hessian_trace(model, nn.MSELoss(), probe, dtype=torch.float64).value, rel=1e-10
    )
    assert zero["critical"] == classify_critical_point(model, nn.MSELoss(), probe, k=5).kind
    # Redundancy ran on every rank with the whole probe inputs (not all-gathered: each rank holds them).
    report = neuron_redundancy(model, [probe])
    assert zero["redundancy"][:2] == (report.effective_width, report.effective_width_on_data)
    assert zero["redundancy"][2] == pytest.approx(report.score, rel=1e-10, abs=1e-12)

    files = list((tmp_path / "lightning_logs").rglob("events.out.tfevents*"))
    assert len(files) == 1  # one writer: rank zero's
    events = EventAccumulator(str(files[0]))
    events.Reload()
    logged = {event.step: event.value for event in events.Scalars("landscape/hessian/lambda_max")}
    assert logged[zero["step"]] == pytest.approx(float(expected.eigenvalues[-1]), rel=1e-6)


def test_ddp_automatic_schedule_is_decided_on_rank_zero_for_all_ranks(tmp_path):
    zero = _run(tmp_path, "automatic")
    # Both ranks followed rank zero's budget (max_overhead=0.5: 20 evaluations in 30 steps when measured);
    # without the broadcast, rank one (max_overhead=0.01) evaluates at other steps and the run hangs or the
    # histories differ.
    assert len(zero["history"]) >= 5
