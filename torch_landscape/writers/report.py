"""Snapshots in words: the Markdown report of one snapshot, a console line, and a run's verdict.

The words say what the scalars say (:mod:`.tags`): the same counts, the same "at the reference", the same
conditions for the Morse index.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..monitoring.sinks import EvaluationCost, Sink
from ..snapshot import LandscapeSnapshot


def _eigenvalue(value: float, bound: float) -> str:
    return f"{value:.4g} ± {bound:.1g}"


def spectrum_words(snapshot: LandscapeSnapshot) -> str:
    """λ_max (and λ_min) with error bounds, the count of certainly negative eigenvalues, convergence."""
    spectrum = snapshot.spectrum
    if spectrum is None:
        raise ValueError("spectrum_words needs a snapshot with a spectrum; check snapshot.spectrum first.")
    values, bounds = spectrum.eigenvalues.tolist(), spectrum.error_bounds.tolist()
    words = [f"λ_max {_eigenvalue(values[-1], bounds[-1])}"]
    if snapshot.spectrum_ends == "both":
        words.append(f"λ_min {_eigenvalue(values[0], bounds[0])}")
    if snapshot.negative_count is not None:
        exact = spectrum.method == "dense"
        count = snapshot.negative_count
        words.append(f"{'' if exact else 'at least '}{count} certainly negative eigenvalue{'s' * (count != 1)}")
    if snapshot.learning_rate:
        words.append(f"2/lr {2 / snapshot.learning_rate:.4g}")
    status = "" if spectrum.converged else ", NOT converged: the bounds say how far off"
    return ", ".join(words) + f" ({spectrum.method}, {snapshot.num_hvp} HVPs{status})"


def snapshot_report(snapshot: LandscapeSnapshot) -> str:
    """A Markdown report: spectrum, trace, critical point, convexity, redundancy findings and failures."""
    kind = "full" if snapshot.full else "light"
    lines = [f"**step {snapshot.step}** ({kind}): probe loss {snapshot.loss:.6g}, |grad L| {snapshot.grad_norm:.3g}"]
    if snapshot.spectrum is not None:
        lines.append(f"- Hessian: {spectrum_words(snapshot)}")
    if snapshot.trace is not None:
        lines.append(f"- {snapshot.trace}")
    point = snapshot.critical
    if point is not None:
        counts = f" (Morse index {point.morse_index}, nullity {point.nullity})" if point.critical else ""
        lines.append(f"- critical point **{point.kind}**{counts}: {point.reason}")
    if snapshot.divergence is not None and snapshot.divergence.diverging:
        lines.append(f"- **{snapshot.divergence.reason}**")
    if snapshot.nullity is not None:
        lines.append(f"- nullity check: {snapshot.nullity.message}")
    lines += [f"- **contradiction** ({c.pair}): {c.reason}" for c in snapshot.contradictions]
    pl = snapshot.pl
    if pl is not None:
        lines.append(
            f"- PL ratio {pl.mu:.4g} (running min {pl.mu_running_min:.4g}) with L* = {pl.loss_star:.6g}"
            f"{' (estimated)' if pl.loss_star_estimated else ''}"
        )
    one_point = snapshot.one_point
    if one_point is not None:
        if math.isnan(one_point.value):
            lines.append(f"- at the reference (distance {one_point.distance:.2g}, rounding level)")
        else:
            lines.append(
                f"- one-point convexity {one_point.value:.4g} (cosine {one_point.cosine:.3g}) at distance "
                f"{one_point.distance:.4g} from the reference"
            )
    if snapshot.redundancy is not None:
        lines.append("```\n" + str(snapshot.redundancy) + "\n```")
    lines += [f"- failed: {error}" for error in snapshot.errors]
    return "\n".join(lines)


def console_line(snapshot: LandscapeSnapshot) -> str:
    """One line for the console at a full evaluation."""
    parts = [f"step {snapshot.step}: loss {snapshot.loss:.3g}, |grad L| {snapshot.grad_norm:.2g}"]
    if snapshot.spectrum is not None:
        parts.append(spectrum_words(snapshot).split(" (")[0])
    if snapshot.critical is not None:
        parts.append(snapshot.critical.kind)
    if snapshot.redundancy is not None:
        report = snapshot.redundancy
        parts.append(f"width {report.width} → effective {report.effective_width}")
    return "; ".join(parts)


class ConsoleSink(Sink):
    """A monitoring session on the console: one line per full evaluation, the notes, and the verdict.

    Parameters
    ----------
    emit
        Where a line goes (``print``; the Lightning monitors pass Lightning's rank-zero info log).
    name
        What the lines are prefixed with.
    """

    def __init__(self, emit: Callable[[str], None] = print, name: str = "torch_landscape") -> None:
        self.emit, self.name = emit, name

    def write(self, snapshot: LandscapeSnapshot, previous: LandscapeSnapshot | None, cost: EvaluationCost) -> None:
        if snapshot.full:
            self.emit(f"{self.name} {console_line(snapshot)}")

    def note(self, text: str) -> None:
        self.emit(f"{self.name}: {text}.")

    def event(self, step: int, text: str) -> None:
        self.emit(f"{self.name}: {text}.")

    def close(self, verdict: str, step: int) -> None:
        self.emit(f"{self.name}: {verdict}")
