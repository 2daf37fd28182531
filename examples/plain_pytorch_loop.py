"""The plain-PyTorch loop: a MonitoringSession in a hand-written training loop (no Lightning).

A tanh teacher–student regression (d = 4, teacher width 3, student width 5) trained with minibatch SGD. The
session gets what the Lightning monitors get, in five lines: the automatic schedule within 5% of the wall
time (light evaluations: loss, gradient norm, PL ratio, one-point convexity toward the teacher, λ_max; full
ones: both ends of the spectrum with error bounds, trace, density, critical point, redundancy, slices), the
closing full evaluation with figures, and the run's verdict; ``TensorBoardSink`` writes it all to TensorBoard.

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

from torch_landscape.monitoring import MonitoringSession
from torch_landscape.probe import LandscapeProbe
from torch_landscape.writers import ConsoleSink, TensorBoardSink, snapshot_report, snapshot_scalars

NAME = "plain_pytorch_loop"


def main(quick: bool = False, logdir: str | Path = "runs", **schedule: int) -> dict:
    """Train and monitor; ``schedule`` (every_n_steps, full_every) fixes the evaluations instead of the budget."""
    report = Report("Plain PyTorch loop with a MonitoringSession", "library usage example (no paper claim)")
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    x = torch.randn(2000, 4)
    y = teacher(x).detach()
    student = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    lr = 0.1
    steps = 200 if quick else 2000
    generator = torch.Generator().manual_seed(0)

    # The probe reads the student, never writes it; it evaluates in float64 on a copy, on fixed probe data.
    # The session decides when to evaluate, within max_overhead of the wall time, and reports to its sinks.
    writer = SummaryWriter(str(Path(logdir) / NAME))
    probe = LandscapeProbe(student, nn.MSELoss(), (x[:512], y[:512]), reference=teacher, loss_star=0.0)
    session = MonitoringSession(
        probe, sinks=[TensorBoardSink(writer), ConsoleSink()], total_steps=steps, optimizer=optimizer, **schedule
    )
    session.start()
    for step in range(1, steps + 1):
        batch = torch.randint(0, len(x), (64,), generator=generator)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(student(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
        session.after_step(step)
    verdict = session.close()
    writer.close()
    snap, first_loss = session.last_snapshot, session.history[0].loss
    report.section(f"after {steps} SGD steps: {len(session.history)} evaluations, the session's verdict")
    report.line(verdict)
    report.line(f"probe loss {fmt(snap.loss)}, ‖∇L‖ {fmt(snap.grad_norm)}")
    spectrum = snap.spectrum
    if spectrum is not None:
        ends = f"λ_min = {fmt(spectrum.eigenvalues[0])} ± {fmt(spectrum.error_bounds[0])}, " if snap.full else ""
        report.line(
            f"{ends}λ_max = {fmt(spectrum.lambda_max)} ± {fmt(spectrum.error_bounds[-1])}; λ_max·η/2 = "
            f"{spectrum.lambda_max * lr / 2:.3f} (< 1: stable)"
        )
    if snap.critical is not None and snap.redundancy is not None:
        report.line(
            f"critical point test: {snap.critical.kind}; effective width {snap.redundancy.effective_width} of "
            f"{snap.redundancy.width}"
        )
    for note in session.notes:
        report.line(f"note: {note}")
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
        lambda_max=snap.spectrum.lambda_max if snap.spectrum is not None else float("nan"),
        lambda_max_bound=float(snap.spectrum.error_bounds[-1]) if snap.spectrum is not None else float("nan"),
        model=student,
        probe_data=(x[:512], y[:512]),
    )
    return out


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
