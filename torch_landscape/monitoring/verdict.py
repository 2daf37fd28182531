"""A run's verdict in words, from the snapshots of its evaluations and the notes of its schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..snapshot import LandscapeSnapshot


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


def _convergence(pl: Any) -> str:
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


def _where(point: Any) -> str:
    if not point.critical:
        return f"not at a critical point yet ({point.kind})"
    return {
        "strict_saddle": f"at a strict saddle ({point.morse_index} direction(s) of descent)",
        "nondegenerate_min": "at a nondegenerate minimum: strongly convex nearby",
        "min_mod_symmetry": "at a minimum, flat only along the network's symmetries",
    }.get(
        point.kind, f"at a degenerate critical point (nullity {point.nullity}): the second-order test is inconclusive"
    )


def _redundancy(report: Any) -> str:
    if report.effective_width >= report.width:
        return f"no redundant neuron (width {report.width})"
    claims = ", ".join(f"{finding.rule} {finding.neurons}" for finding in report.claims)
    return f"width {report.width} but effective width {report.effective_width}: {claims}"
