"""make demo: efficient vs redundant tanh students, watched by LandscapeMonitor (docs/theory.md §6, E4).

A teacher f*(x) = Σ_j a_j tanh(w_j·x + b_j) + c with m* = 3 neurons labels n = 500 Gaussian inputs in
d = 2 (noiseless). Two students are trained on it with Lightning (float64, full-batch L-BFGS), each with a
``LandscapeMonitor`` writing TensorBoard logs under ``runs/<student>/``, then taken to the critical point
(more L-BFGS, then Newton steps on the dense Hessian: L-BFGS alone crawls near singular minima) and
snapshotted once more:

- the exact-width student (m = 3) should end at a strongly convex minimum, ``nondegenerate_min``, in the
  efficient domain (no redundant neuron);
- the wider student (m = 4) should end at L ≈ 0 redundant (Benning–Dereich): its Hessian is singular and
  every null direction is explained by the redundant neuron the report finds.

The same training without Lightning is then repeated over several seeds, and the report says for how many
the story holds, and what the others are.

The side-by-side report printed at the end takes every number from the library (the monitor's last
snapshot, ``redundancy_nullity_check`` and ``classify_critical_point``); where a run does not tell the
expected story it says why instead.

    python examples/demo.py            # ~1 minute on 2 cores
    python examples/demo.py --quick    # fewer steps, for the tests
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn

from torch_landscape import (
    CriticalPoint,
    NullityCheck,
    classify_critical_point,
    neuron_redundancy,
    redundancy_nullity_check,
)
from torch_landscape.callbacks import LandscapeMonitor
from torch_landscape.snapshot import LandscapeSnapshot
from torch_landscape.writers import TensorBoardSink

try:
    from examples._common import lbfgs, newton_polish
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import lbfgs, newton_polish

N_SAMPLES, INPUT_DIM, TEACHER_WIDTH = 500, 2, 3
STUDENTS = (("exact_width_m3", 3), ("wider_m4", 4))  # (run name, width)
SEED = 1
GLOBAL_LOSS = 1e-20  # the float64 fits reach 1e-28…1e-32; anything above 1e-20 has not reached L = 0


def make_teacher() -> nn.Sequential:
    """m* = 3 tanh neurons with unit-circle directions 120° apart (no two mirrored), distinct biases."""
    teacher = nn.Sequential(nn.Linear(INPUT_DIM, TEACHER_WIDTH), nn.Tanh(), nn.Linear(TEACHER_WIDTH, 1)).double()
    angles = 0.3 + torch.arange(TEACHER_WIDTH, dtype=torch.float64) * 2 * math.pi / 3
    with torch.no_grad():
        teacher[0].weight.copy_(1.5 * torch.stack([angles.cos(), angles.sin()], dim=1))
        teacher[0].bias.copy_(torch.tensor([0.4, -0.3, 0.2]))
        teacher[2].weight.copy_(torch.tensor([[1.0, -1.3, 0.8]]))
        teacher[2].bias.fill_(0.1)
    return teacher.requires_grad_(False)


def make_data(teacher: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N_SAMPLES, INPUT_DIM, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        return x, teacher(x)


class Student(pl.LightningModule):
    """A one-hidden-layer tanh network trained by full-batch L-BFGS in float64."""

    def __init__(self, width: int, lbfgs_iterations: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(INPUT_DIM, width), nn.Tanh(), nn.Linear(width, 1)).double()
        self.loss_fn = nn.MSELoss()  # LandscapeMonitor picks the loss up from here
        self.lbfgs_iterations = lbfgs_iterations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        # Tolerances at float64 rounding: the point is to reach the critical point, not to stop early.
        return torch.optim.LBFGS(
            self.parameters(),
            lr=1.0,
            max_iter=self.lbfgs_iterations,
            history_size=50,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-14,
            tolerance_change=1e-30,
        )


@dataclass(frozen=True)
class SeedOutcome:
    """One student of the seed sweep: the library's numbers at its end point."""

    seed: int
    width: int
    loss: float
    grad_norm: float
    critical: bool
    kind: str
    degenerate_kind: str | None
    morse_index: int
    nullity: int
    predicted_nullity: int
    unexplained_nullity: int
    effective_width: int


@dataclass
class Result:
    name: str
    width: int
    seconds: float
    snapshot: LandscapeSnapshot
    critical: CriticalPoint
    nullity: NullityCheck
    log_dir: Path
    model: nn.Module
    outcome: SeedOutcome | None = None
    story: list[str] = field(default_factory=list)


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # a Lightning deprecation, not ours
    # every_n_steps=1 is deliberate here (the demo is about the charts); the monitor would warn of its cost.
    warnings.filterwarnings("ignore", message="LandscapeMonitor has spent.*")


def train_student(
    name: str,
    width: int,
    x: torch.Tensor,
    y: torch.Tensor,
    teacher: nn.Module,
    runs: Path,
    steps: int,
    lbfgs_iterations: int,
    full_every: int = 5,
    seed: int = SEED,
) -> tuple[Student, LandscapeMonitor, float, Path]:
    """Train one student with a LandscapeMonitor; its TensorBoard logs go to ``runs/name`` (replaced)."""
    log_dir = runs / name
    shutil.rmtree(log_dir, ignore_errors=True)  # one event file per run, so reruns do not overlay
    pl.seed_everything(seed, verbose=False)
    student = Student(width, lbfgs_iterations)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=len(x))  # full batch
    monitor = LandscapeMonitor(
        every_n_steps=1,  # a light evaluation (loss, gradient, PL, one-point) every L-BFGS step
        full_every=full_every,  # Hessian, critical point and redundancy every full_every-th step, and at the end
        reference=teacher,  # one-point convexity toward the neuron-aligned teacher
        loss_star=0.0,  # noiseless labels: the infimum is 0
        probe_data=(x, y),  # the whole training set
        k=3,
        on_error="raise",
    )
    trainer = pl.Trainer(
        max_epochs=steps,
        accelerator="cpu",
        devices=1,
        deterministic=True,
        logger=TensorBoardLogger(str(runs), name="", version=name, default_hp_metric=False),
        callbacks=[monitor],
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(student, loader)
    return student, monitor, time.perf_counter() - start, log_dir


def polish(
    student: Student, monitor: LandscapeMonitor, x: torch.Tensor, y: torch.Tensor, log_dir: Path, iterations: int
) -> LandscapeSnapshot:
    """More L-BFGS, then Newton steps, to the critical point; a last full snapshot, logged beside the training's."""
    from torch.utils.tensorboard import SummaryWriter

    lbfgs(student.net, x, y, max_iter=iterations, gtol=1e-10)
    newton_polish(student.net, student.loss_fn, (x, y))
    step = monitor.last_snapshot.step + 1
    snapshot = monitor.probe.snapshot(step, full=True)
    with SummaryWriter(str(log_dir)) as writer:
        TensorBoardSink(writer).log(snapshot, monitor.probe)
    return snapshot


def outcome(
    seed: int,
    width: int,
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    critical: CriticalPoint | None = None,
    redundancy=None,
) -> tuple[SeedOutcome, CriticalPoint, NullityCheck]:
    """The library's verdict on a trained student (critical point with null-direction profiles, redundancy,
    nullity check)."""
    loss_fn, data = nn.MSELoss(), (x, y)
    # profiles=True: at a degenerate point, also walk the null directions (is the minimum non-isolated?).
    critical = critical or classify_critical_point(net, loss_fn, data, profiles=True)
    redundancy = redundancy or neuron_redundancy(net, data, loss_fn=loss_fn)
    nullity = redundancy_nullity_check(net, loss_fn, data, redundancy)
    return (
        SeedOutcome(
            seed,
            width,
            critical.loss,
            critical.grad_norm,
            critical.critical,
            critical.kind,
            critical.degenerate_kind,
            critical.morse_index,
            critical.nullity,
            nullity.predicted_nullity,
            nullity.unexplained_nullity,
            redundancy.effective_width,
        ),
        critical,
        nullity,
    )


def story(o: SeedOutcome) -> tuple[bool, str]:
    """Whether an outcome tells the demo's story, and in words what it is."""
    if not o.critical:
        return False, (
            f"did not reach a critical point within the iteration budget (L = {o.loss:.1e}, "
            f"|grad L| = {o.grad_norm:.1e}; the library says {o.kind})"
        )
    if o.loss > GLOBAL_LOSS:
        what = "a non-global local minimum" if o.morse_index == 0 else "a non-global critical point"
        convex = ", strongly convex there: a genuine spurious minimum" if o.kind == "nondegenerate_min" else ""
        return False, f"{what}: L = {o.loss:.1e} > 0 at |grad L| = {o.grad_norm:.1e}, {o.kind}{convex}"
    if o.width == TEACHER_WIDTH:
        if o.kind == "nondegenerate_min" and o.effective_width == o.width:
            return True, "a strongly convex (nondegenerate) minimum in the efficient domain"
        return False, f"NOT the expected story: {o.kind}, effective width {o.effective_width} of {o.width}"
    if o.morse_index == 0 and o.effective_width < o.width and o.nullity == o.predicted_nullity > 0:
        return True, (
            f"redundant (width {o.width} -> {o.effective_width}), a non-isolated minimum: nullity "
            f"{o.nullity} = predicted {o.predicted_nullity}"
            + (f", profiles: {o.degenerate_kind}" if o.degenerate_kind else "")
        )
    return False, (
        f"NOT the expected story: {o.kind}, index {o.morse_index}, effective width {o.effective_width} "
        f"of {o.width}, nullity {o.nullity} vs predicted {o.predicted_nullity}"
    )


def analyse(
    name: str,
    width: int,
    student: Student,
    snapshot: LandscapeSnapshot,
    seconds: float,
    log_dir: Path,
    x: torch.Tensor,
    y: torch.Tensor,
) -> Result:
    """The final landscape (library functions only) and the story it tells."""
    outcome_, critical, nullity = outcome(SEED, width, student.net, x, y, redundancy=snapshot.redundancy)
    result = Result(name, width, seconds, snapshot, critical, nullity, log_dir, student.net, outcome_)
    holds, text = story(outcome_)
    result.story.append(("as expected: " if holds else "") + text)
    if (
        holds
        and width > TEACHER_WIDTH
        and snapshot.pl.mu_running_min > 0
        and critical.degenerate_kind == "nonisolated_min"
    ):
        result.story.append(
            f"the PL ratio stayed >= {snapshot.pl.mu_running_min:.1e} on the way: the null directions "
            "are flat (a manifold of minima, not higher-order growth), so a singular Hessian rules out "
            "strong convexity but not fast convergence"
        )
    return result


def sweep(seeds: range, x: torch.Tensor, y: torch.Tensor, iterations: int) -> list[SeedOutcome]:
    """Both students for every seed, trained as above without Lightning (L-BFGS from PyTorch's default init,
    then Newton polishing), each judged by the library."""
    outcomes = []
    for seed in seeds:
        for _, width in STUDENTS:
            torch.manual_seed(seed)
            net = nn.Sequential(nn.Linear(INPUT_DIM, width), nn.Tanh(), nn.Linear(width, 1)).double()
            lbfgs(net, x, y, max_iter=iterations, gtol=1e-10)
            newton_polish(net, nn.MSELoss(), (x, y))
            outcomes.append(outcome(seed, width, net, x, y)[0])
    return outcomes


def sweep_report(outcomes: list[SeedOutcome]) -> list[str]:
    lines = ["", f"Over {len({o.seed for o in outcomes})} seeds (same training, no Lightning):"]
    for _, width in STUDENTS:
        mine = [o for o in outcomes if o.width == width]
        verdicts = [story(o) for o in mine]
        lines.append(f"  width {width}: the story holds for {sum(h for h, _ in verdicts)} of {len(mine)} seeds")
        lines += [
            f"    seed {o.seed}: L = {o.loss:.1e}, |grad L| = {o.grad_norm:.1e}; {text}"
            for o, (_, text) in zip(mine, verdicts, strict=True)
        ]
    return lines


def _pm(value: float, bound: float) -> str:
    return f"{value:.3e} ± {bound:.1e}"


def report(results: list[Result], outcomes: list[SeedOutcome] = ()) -> str:
    """The side-by-side table, the findings, and the verdicts."""
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, cell) -> None:
        rows.append((label, [cell(r) for r in results]))

    def spectrum(r: Result, end: int) -> str:
        s = r.snapshot.spectrum
        return _pm(float(s.eigenvalues[end]), float(s.error_bounds[end]))

    def pl_text(r: Result) -> str:
        pl_ = r.snapshot.pl
        now = "n/a (L at rounding level)" if math.isnan(pl_.mu) else f"{pl_.mu:.3e}"
        return f"{now}; min {pl_.mu_running_min:.2e}"

    def one_point(r: Result) -> str:
        op = r.snapshot.one_point
        now = "n/a" if math.isnan(op.value) else f"{op.value:.2e}"
        return f"{now} at dist {op.distance:.0e}; min {r.snapshot.one_point_running_min:.2e}"

    row("student width m", lambda r: str(r.width))
    row("training time", lambda r: f"{r.seconds:.1f} s")
    row("final loss L", lambda r: f"{r.snapshot.loss:.3e}")
    row("|grad L|", lambda r: f"{r.snapshot.grad_norm:.1e}")
    row("lambda_min (Hessian)", lambda r: spectrum(r, 0))
    row("lambda_max (Hessian)", lambda r: spectrum(r, -1))
    row("PL ratio (L* = 0)", pl_text)
    row("one-point convexity", one_point)  # toward the neuron-aligned teacher; min over the run
    row("effective width", lambda r: f"{r.snapshot.redundancy.effective_width} of {r.width}")
    row("Hessian nullity", lambda r: f"{r.nullity.measured_nullity} (predicted {r.nullity.predicted_nullity})")
    row(
        "critical point",
        lambda r: r.critical.kind + (f" ({r.critical.degenerate_kind})" if r.critical.degenerate_kind else ""),
    )

    label_width = max(len(label) for label, _ in rows) + 2
    cell_width = max(30, *(len(cell) for _, cells in rows for cell in cells)) + 2
    lines = [
        "",
        "=" * (label_width + cell_width * len(results)),
        "".ljust(label_width) + "".join(f"{r.name} ({r.width} neurons)".ljust(cell_width) for r in results),
    ]
    lines.append("-" * (label_width + cell_width * len(results)))
    lines += [label.ljust(label_width) + "".join(cell.ljust(cell_width) for cell in cells) for label, cells in rows]
    lines.append("=" * (label_width + cell_width * len(results)))
    for r in results:
        lines += ["", f"[{r.name}] {r.critical.reason}"]
        claims = r.snapshot.redundancy.claims
        if claims:
            lines.append(f"  redundancy: {len(claims)} verified merge(s):")
            lines += [
                f"    {f.rule} of neuron(s) {list(f.neurons)}: score {f.score:.1e}, output change "
                f"{f.max_output_change:.1e} ({f.detail})"
                for f in claims
            ]
        else:
            lines.append(
                f"  redundancy: none verified; closest rule {r.snapshot.redundancy.score_rule!r} at score "
                f"{r.snapshot.redundancy.score:.1e} (efficient)"
            )
        lines.append(f"  nullity check: {r.nullity.message}")
        if r.nullity.sources and r.nullity.predicted_nullity:
            lines.append("    predicted from: " + "; ".join(r.nullity.sources))
        lines += [f"  => {line}" for line in r.story]
    lines += sweep_report(list(outcomes))
    lines += [
        "",
        "TensorBoard logs: " + ", ".join(str(r.log_dir) for r in results),
        f"Open them with:  .venv/bin/tensorboard --logdir {results[0].log_dir.parent}",
        "  (custom-scalars tab: the charts grouped by story; text tab: the per-step reports)",
    ]
    return "\n".join(lines)


def run(runs: Path = Path("runs"), quick: bool = False) -> tuple[list[Result], list[SeedOutcome]]:
    """Train both students, analyse them, sweep the seeds; returns (results, sweep) (the report: :func:`report`)."""
    _quiet_lightning()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    teacher = make_teacher()
    x, y = make_data(teacher)
    steps, iterations, full_every = (10, 25, 10) if quick else (20, 25, 5)
    polish_iterations = 600
    results = []
    for name, width in STUDENTS:
        print(
            f"training {name}: {width} tanh neurons on {N_SAMPLES} teacher-labelled points "
            f"(L-BFGS, {steps} steps of up to {iterations} iterations, then up to {polish_iterations} more and "
            "Newton polishing) ...",
            flush=True,
        )
        student, monitor, seconds, log_dir = train_student(
            name, width, x, y, teacher, runs, steps, iterations, full_every
        )
        snapshot = polish(student, monitor, x, y, log_dir, polish_iterations)
        results.append(analyse(name, width, student, snapshot, seconds, log_dir, x, y))
    seeds = range(2, 4) if quick else range(1, 7)  # quick: two seeds besides the Lightning run's seed 1
    print(f"the same for seeds {seeds.start}..{seeds.stop - 1} without Lightning ...", flush=True)
    return results, sweep(seeds, x, y, steps * iterations + polish_iterations)


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer L-BFGS steps (for the tests)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="TensorBoard log root (default runs/)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results, outcomes = run(args.runs, args.quick)
    print(report(results, outcomes))
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
