"""The plain-PyTorch loop: LandscapeProbe + SummaryWriter in a hand-written training loop (no Lightning).

A tanh teacher–student regression (d = 4, teacher width 3, student width 5) trained with minibatch SGD. Every
20 steps a light snapshot (loss, gradient norm, PL ratio, one-point convexity toward the teacher) on a fixed
probe batch; every 200 steps and at the end a full one (Hessian extremes with error bounds, trace, density,
critical-point classification, redundancy). ``log_snapshot(writer, snapshot)`` writes it all to TensorBoard.

Run:  python examples/plain_pytorch_loop.py [--quick]      (TensorBoard: runs/plain_pytorch_loop)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

try:
    from examples._common import Report, fmt, parse_quick
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import Report, fmt, parse_quick

from torch_landscape.probe import LandscapeProbe
from torch_landscape.writers import log_snapshot, snapshot_report, snapshot_scalars

NAME = "plain_pytorch_loop"


def main(quick: bool = False, logdir: str | Path = "runs") -> dict:
    report = Report(
        "Plain PyTorch loop with LandscapeProbe and SummaryWriter", "library usage example (no paper claim)"
    )
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    x = torch.randn(2000, 4)
    y = teacher(x).detach()
    student = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    lr = 0.1

    # The probe reads the student, never writes it; it evaluates in float64 on a copy, on fixed probe data.
    probe = LandscapeProbe(student, nn.MSELoss(), (x[:512], y[:512]), reference=teacher, loss_star=0.0)
    writer = SummaryWriter(str(Path(logdir) / NAME))
    steps = 200 if quick else 2000
    generator = torch.Generator().manual_seed(0)
    snap, first_loss = None, float("nan")
    for step in range(steps + 1):
        if step % 20 == 0 or step == steps:
            snap = probe.snapshot(step, full=(step % 200 == 0 or step == steps), learning_rate=lr)
            log_snapshot(writer, snap, probe)
            first_loss = snap.loss if step == 0 else first_loss
        if step == steps:
            break
        batch = torch.randint(0, len(x), (64,), generator=generator)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(student(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
    writer.close()
    report.section(f"after {steps} SGD steps")
    report.line(f"probe loss {fmt(snap.loss)}, ‖∇L‖ {fmt(snap.grad_norm)}")
    report.line(
        f"λ_min = {fmt(snap.spectrum.eigenvalues[0])} ± {fmt(snap.spectrum.error_bounds[0])}, λ_max = "
        f"{fmt(snap.spectrum.eigenvalues[-1])} ± {fmt(snap.spectrum.error_bounds[-1])}; λ_max·η/2 = "
        f"{float(snap.spectrum.eigenvalues[-1]) * lr / 2:.3f} (< 1: stable)"
    )
    report.line(
        f"PL ratio {fmt(snap.pl.mu)} (running min {fmt(snap.pl.mu_running_min)}); one-point convexity toward "
        f"the aligned teacher {fmt(snap.one_point.value)} (running min {fmt(snap.one_point_running_min)})"
    )
    report.line(
        f"critical point test: {snap.critical.kind}; effective width {snap.redundancy.effective_width} of "
        f"{snap.redundancy.width}"
    )
    report.line("the snapshot's own Markdown report (also in TensorBoard's text tab):")
    for line in snapshot_report(snap).splitlines()[:12]:
        report.line("  | " + line)
    report.check(
        "training went down and the probe logged every quantity without errors",
        snap.loss < 0.5 * first_loss and not snap.errors,
        f"probe loss {fmt(first_loss)} → {fmt(snap.loss)}, errors: {list(snap.errors)}",
    )
    out = report.finish(Path(logdir) / NAME)
    out.update(
        loss=snap.loss,
        first_loss=first_loss,
        errors=list(snap.errors),
        tags=sorted(snapshot_scalars(snap)),
        steps=steps,
        lambda_max=float(snap.spectrum.eigenvalues[-1]),
        lambda_max_bound=float(snap.spectrum.error_bounds[-1]),
        model=student,
        probe_data=(x[:512], y[:512]),
    )
    return out


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
