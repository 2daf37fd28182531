"""Snapshots in words: the Markdown report of one snapshot, a console line, and a run's verdict.

The words say what the scalars say (:mod:`.tags`): the same counts, the same "at the reference", the same
conditions for the Morse index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..probe import LandscapeSnapshot


def _eigenvalue(value: float, bound: float) -> str:
    return f"{value:.4g} ± {bound:.1g}"


def spectrum_words(snapshot: LandscapeSnapshot) -> str:
    """λ_max (and λ_min) with error bounds, the count of certainly negative eigenvalues, convergence."""
    spectrum = snapshot.spectrum
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


def run_verdict(history: Sequence[LandscapeSnapshot], notes: Sequence[str] = ()) -> str:
    """The run in plain words: how it converges, where it ends, which neurons are redundant."""
    if not history:
        return "no evaluation was made."
    last = history[-1]
    words = [f"after {last.step} steps the probe loss is {last.loss:.3g} and |grad L| {last.grad_norm:.2g}"]
    pl = next((s.pl for s in reversed(history) if s.pl is not None), None)
    if pl is not None:
        words.append(_convergence(pl))
    point = next((s.critical for s in reversed(history) if s.critical is not None), None)
    if last.divergence is not None and last.divergence.diverging:
        words.append(last.divergence.reason)
    elif point is not None:
        words.append(_where(point))
    report = next((s.redundancy for s in reversed(history) if s.redundancy is not None), None)
    if report is not None:
        words.append(_redundancy(report))
    words += [f"contradiction ({c.pair}): {c.reason}" for c in last.contradictions]
    words += [f"note: {note}" for note in notes]
    return "; ".join(words) + "."


def _convergence(pl) -> str:
    if math.isfinite(pl.contraction) and pl.contraction < 1:
        return (
            f"converging linearly: the gap to L* shrinks by a factor {pl.contraction:.3g} per step "
            f"(PL ratio {pl.mu:.3g})"
        )
    if math.isfinite(pl.lojasiewicz_slope) and pl.lojasiewicz_slope > 1.2:
        return f"converging sub-linearly: Łojasiewicz slope {pl.lojasiewicz_slope:.2g} > 1, as at a degenerate minimum"
    if math.isnan(pl.mu):
        return "the loss is at its infimum to rounding"
    return f"no linear rate yet (PL ratio {pl.mu:.3g}, running min {pl.mu_running_min:.3g})"


def _where(point) -> str:
    if not point.critical:
        return f"not at a critical point yet ({point.kind})"
    return {
        "strict_saddle": f"at a strict saddle ({point.morse_index} direction(s) of descent)",
        "nondegenerate_min": "at a nondegenerate minimum: strongly convex nearby",
        "min_mod_symmetry": "at a minimum, flat only along the network's symmetries",
    }.get(
        point.kind, f"at a degenerate critical point (nullity {point.nullity}): the second-order test is inconclusive"
    )


def _redundancy(report) -> str:
    if report.effective_width >= report.width:
        return f"no redundant neuron (width {report.width})"
    claims = ", ".join(f"{finding.rule} {finding.neurons}" for finding in report.claims)
    return f"width {report.width} but effective width {report.effective_width}: {claims}"
