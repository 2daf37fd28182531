"""A run in words: its verdict from the snapshots of its evaluations, and the events worth saying when they
happen. Every claim rests on a resolved number; what is not resolved is said to be so."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..convexity.pl import PLEstimate
from ..critical.classify import CriticalPoint
from ..redundancy import MLPRedundancy, RedundancyReport, neurons_words
from ..snapshot import LandscapeSnapshot

#: μ with L̂* lowered by one more margin within this factor of μ: the PL ratio does not hinge on L̂*.
RESOLVED_FACTOR = 1.25

#: A rate is claimed from at least this many evaluations with the gap L − L* above rounding.
RATE_POINTS = 3


def stability_ratio(snapshot: LandscapeSnapshot) -> float:
    """The optimizer's stability ratio (sharpness over threshold; above 1 unstable along the top direction):
    the snapshot's reading, else λ_max·lr/2 for plain SGD; NaN when neither is known."""
    return stability_bounds(snapshot)[0]


def stability_bounds(snapshot: LandscapeSnapshot) -> tuple[float, float]:
    """(stability ratio, its error bound): see :func:`stability_ratio`; (NaN, NaN) when neither is known."""
    reading = snapshot.stability
    if reading is not None and reading.status == "ok":
        return reading.ratio, reading.ratio_error
    if snapshot.learning_rate is None or snapshot.spectrum is None:
        return math.nan, math.nan
    half = snapshot.learning_rate / 2
    return snapshot.spectrum.lambda_max * half, float(snapshot.spectrum.error_bounds[-1]) * half


def run_verdict(history: Sequence[LandscapeSnapshot], notes: Sequence[str] = ()) -> str:
    """The run in plain words, verdict first: diverged, or how it converges and where it ends (each from the
    latest evaluation that measured it, with its step), which neurons are redundant, and the schedule's notes."""
    if not history:
        return "no evaluation was made."
    diverged = next((s for s in history if not math.isfinite(s.loss)), None)
    if diverged is not None:
        words = [_divergence(history, diverged)]
    else:
        last = history[-1]
        words = [f"after {last.step} steps the probe loss is {last.loss:.4g} and |grad L| {last.grad_norm:.2g}"]
        words += [_convergence(history)] if any(s.pl is not None for s in history) else []
        ratio = stability_ratio(last)
        if ratio > 1:
            words.append(f"stability ratio {ratio:.3g} > 1: the optimizer is past its edge of stability")
        words += where_words(history)
        words += _redundancy(history)
        words += [f"contradiction ({c.pair}): {c.reason}" for c in last.contradictions]
    words += [f"note: {note}" for note in notes]
    return "; ".join(words) + "."


def events(previous: LandscapeSnapshot | None, current: LandscapeSnapshot) -> list[str]:
    """What changed at ``current`` that a person should hear of at once: the probe loss becoming non-finite,
    and the stability threshold crossed (either way)."""
    found = []
    if not math.isfinite(current.loss) and (previous is None or math.isfinite(previous.loss)):
        found.append(f"the probe loss is {current.loss} at step {current.step}: training diverged")
    # A crossing is said only between readings resolved on either side of 1 (beyond their error bounds): a
    # reading drowned in rounding (a loss of 1e30 on its way to overflow) says nothing either way.
    before, before_error = stability_bounds(previous) if previous is not None else (math.nan, math.nan)
    now, now_error = stability_bounds(current)
    above_before = before - before_error > 1
    if now - now_error > 1 and not above_before:
        found.append(
            f"stability ratio {now:.3g} > 1 at step {current.step}: the optimizer is unstable along the top "
            "curvature direction at this learning rate (edge of stability)"
        )
    elif above_before and now + now_error < 1:
        found.append(f"stability ratio {now:.3g} at step {current.step}: back below the edge of stability")
    return found


def _divergence(history: Sequence[LandscapeSnapshot], diverged: LandscapeSnapshot) -> str:
    finite = [s for s in history if s.step < diverged.step and math.isfinite(s.loss)]
    words = f"diverged at step {diverged.step}: the probe loss is {diverged.loss}"
    if not finite:
        return words
    last = finite[-1]
    words += f"; the last finite evaluation (step {last.step}) had L = {last.loss:.4g}, |grad L| = {last.grad_norm:.2g}"
    if last.spectrum is not None:
        words += f", lambda_max = {last.spectrum.lambda_max:.4g}"
    above = [ratio for ratio, error in map(stability_bounds, finite) if ratio - error > 1]  # resolved ones
    ratio = max(above, default=math.nan)
    if ratio > 1:
        words += f" (the stability ratio reached {ratio:.3g} > 1: unstable at this learning rate)"
    return words


def _convergence(history: Sequence[LandscapeSnapshot]) -> str:
    estimates = [s.pl for s in history if s.pl is not None]
    pl = estimates[-1]
    if not _resolved(pl):
        low = pl.mu_sensitivity[1] if pl.mu_sensitivity is not None else math.nan
        return (
            f"PL ratio not resolved (L* unknown: {pl.mu:.3g} at the estimate L* = {pl.loss_star:.6g}, {low:.3g} with "
            "it lowered by one margin); no rate is claimed — pass loss_star= if the infimum is known"
        )
    if math.isnan(pl.mu):
        return f"the loss is at L* = {pl.loss_star:.6g} to rounding"
    rate = _rate(estimates, pl.loss_star)
    if rate is None:
        return f"PL ratio {pl.mu:.3g} (resolved); too few evaluations above rounding for a rate"
    factor, first, last = rate
    if factor < 1:
        return (
            f"converging linearly: the gap to L* shrank by a factor {factor:.4g} per step from step {first} to "
            f"{last} (PL ratio {pl.mu:.3g}, running min {pl.mu_running_min:.3g})"
        )
    return f"the gap to L* did not shrink from step {first} to {last} (factor {factor:.4g} per step)"


def _resolved(pl: PLEstimate) -> bool:
    """Known L*, or a PL ratio that changes by less than RESOLVED_FACTOR when L̂* is lowered by its margin."""
    if not pl.loss_star_estimated:
        return True
    if pl.mu_sensitivity is None:
        return False
    mu, low = pl.mu_sensitivity
    return math.isfinite(mu) and math.isfinite(low) and low > 0 and mu / low <= RESOLVED_FACTOR


def _rate(estimates: list[PLEstimate], loss_star: float) -> tuple[float, int, int] | None:
    """The per-step factor of the gap L − L* over the last half of the evaluations (at least RATE_POINTS of
    them, all above L* by more than rounding): ((L_last − L*)/(L_first − L*))^(1/(t_last − t_first))."""
    floor = 1e3 * 2.2e-16 * max(abs(e.loss) for e in estimates)
    valid = [e for e in estimates if e.loss - loss_star > floor]
    recent = valid[len(valid) // 2 :]
    if len(recent) < RATE_POINTS or recent[-1].step <= recent[0].step:
        return None
    ratio = (recent[-1].loss - loss_star) / (recent[0].loss - loss_star)
    return ratio ** (1.0 / (recent[-1].step - recent[0].step)), recent[0].step, recent[-1].step


def where_words(history: Sequence[LandscapeSnapshot]) -> list[str]:
    """Where training stands: escaping to infinity, else from the latest critical-point test (with its step
    when older than the run)."""
    escape = history[-1].divergence
    if escape is not None and escape.diverging:
        return [escape.reason]
    latest = next((s for s in reversed(history) if s.critical is not None), None)
    if latest is None:
        return []
    point: CriticalPoint = latest.critical  # type: ignore[assignment]
    when = "" if latest is history[-1] else f" (at step {latest.step}, the last full evaluation)"
    if not point.critical and math.isinf(point.newton_ratio):
        return [
            f"not at a critical point{when}: |grad L| {point.grad_norm:.2g} is above its rounding level "
            f"{point.gtol:.2g} and no step within the parameter scale is certified to reach one"
        ]
    if not point.critical:
        step = f"{'at least ' if point.newton_at_least else ''}{point.newton_ratio:.2g}"
        return [f"not at a critical point{when}: the Newton step to one is {step} of the scale"]
    words = {
        "strict_saddle": f"at a strict saddle{when}: {point.morse_index} direction(s) of descent",
        "nondegenerate_min": f"at a nondegenerate minimum{when}: strongly convex nearby",
        "min_mod_symmetry": f"at a minimum{when}, flat only along the network's symmetries",
    }
    return [
        words.get(
            point.kind,
            f"at a degenerate critical point{when} (nullity {point.nullity}): the second-order test is inconclusive",
        )
    ]


def _redundancy(history: Sequence[LandscapeSnapshot]) -> list[str]:
    latest = next((s for s in reversed(history) if s.redundancy is not None), None)
    if latest is None:
        return []
    report: RedundancyReport | MLPRedundancy = latest.redundancy  # type: ignore[assignment]
    if report.effective_width >= report.width:
        return [f"no redundant neuron (width {report.width})"]
    claims = ", ".join(f"{finding.rule} ({neurons_words(finding.neurons)})" for finding in report.claims)
    return [f"width {report.width} but effective width {report.effective_width}: {claims}"]
