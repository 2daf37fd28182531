"""Snapshots in words: the Markdown report of one snapshot (TensorBoard's Text tab) and the console line.

TensorBoard renders the report as Markdown and wraps its paragraphs and lists, but not preformatted blocks,
code or long table rows. So the report opens with the snapshot's verdict in one line, then sections of short
bulleted lists and one small table; neurons read "neuron 0" or "neurons 2, 5", never a Python tuple. List
items are wrapped at :data:`WIDTH` characters in the source; paragraphs are single lines, because TensorBoard
shows a paragraph's line breaks. The console line is built from the same phrases (:func:`loss_words`,
:func:`spectrum_words`, :func:`width_words`, the kind of the point), so both say the same words and numbers;
and the words agree with the scalars (:mod:`.tags`): the same counts, the same "at the reference", the same
conditions for the Morse index.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Sequence

from ..monitoring.sinks import EvaluationCost, Sink
from ..monitoring.verdict import events, where_words
from ..redundancy import MLPRedundancy, RedundancyFinding, RedundancyReport, neurons_words
from ..snapshot import LandscapeSnapshot

#: List items are wrapped here in the source; TensorBoard joins their lines and wraps them to its width.
WIDTH = 100

#: Rows of the findings table; the rest are counted below it.
MAX_FINDINGS = 12

#: The start of a line Markdown would read as a list item, heading, quote or table row.
_LINE_MARKER = re.compile(r"\s*([-+*>#|]|\d+[.)])(\s|$)")

#: A neuron tuple or list as the core's sentences print it: "neurons (1, 4)", "neuron [3]".
_NEURON_TUPLE = re.compile(r"\bneurons? [(\[](\d+(?:, \d+)*),?[)\]]")


def loss_words(snapshot: LandscapeSnapshot) -> str:
    """The probe loss and gradient norm, as the run's verdict prints them."""
    return f"probe loss {snapshot.loss:.4g}, |grad L| {snapshot.grad_norm:.2g}"


def _eigenvalue(value: float, bound: float) -> str:
    return f"{value:.4g} ± {bound:.1g}"


def _spectrum_parts(snapshot: LandscapeSnapshot) -> list[str]:
    """λ_max (and λ_min) with error bounds, the count of certainly negative eigenvalues, 2/lr."""
    spectrum = snapshot.spectrum
    if spectrum is None:
        raise ValueError("spectrum_words needs a snapshot with a spectrum; check snapshot.spectrum first.")
    values, bounds = spectrum.eigenvalues.tolist(), spectrum.error_bounds.tolist()
    parts = [f"λ_max {_eigenvalue(values[-1], bounds[-1])}"]
    if snapshot.spectrum_ends == "both":
        parts.append(f"λ_min {_eigenvalue(values[0], bounds[0])}")
    if snapshot.negative_count is not None:
        exact = spectrum.method == "dense"
        count = snapshot.negative_count
        parts.append(f"{'' if exact else 'at least '}{count} certainly negative eigenvalue{'s' * (count != 1)}")
    if snapshot.learning_rate:
        parts.append(f"2/lr {2 / snapshot.learning_rate:.4g}")
    return parts


def _solver_words(snapshot: LandscapeSnapshot) -> str:
    spectrum = snapshot.spectrum
    assert spectrum is not None  # callers check
    status = "" if spectrum.converged else ", NOT converged: the bounds say how far off"
    return f"{spectrum.method}, {snapshot.num_hvp} HVPs{status}"


def spectrum_words(snapshot: LandscapeSnapshot) -> str:
    """λ_max (and λ_min) with error bounds, the count of certainly negative eigenvalues, 2/lr, and the solver:
    the console line's words, one list item each in the report's Hessian section."""
    return ", ".join(_spectrum_parts(snapshot)) + f" ({_solver_words(snapshot)})"


def width_words(report: RedundancyReport | MLPRedundancy) -> str:
    """``width 6 → effective width 4``, with the width on the data or the layers' widths when they add to it."""
    words = f"width {report.width} → effective width {report.effective_width}"
    if isinstance(report, MLPRedundancy):
        before, after = (" + ".join(map(str, widths)) for widths in (report.widths, report.effective_widths))
        return f"{words} (layers {before} → {after})"
    if report.effective_width_on_data is not None and report.effective_width_on_data != report.effective_width:
        words += f" ({report.effective_width_on_data} on the data)"
    return words


def console_line(snapshot: LandscapeSnapshot) -> str:
    """One line for the console at a full evaluation: the report's phrases, in the report's words."""
    parts = [f"step {snapshot.step}: {loss_words(snapshot)}"]
    if snapshot.spectrum is not None:
        parts.append(", ".join(_spectrum_parts(snapshot)))
    if snapshot.critical is not None:
        parts.append(snapshot.critical.kind)
    if snapshot.redundancy is not None:
        parts.append(width_words(snapshot.redundancy))
    return "; ".join(parts)


def snapshot_verdict(snapshot: LandscapeSnapshot) -> str:
    """Where the snapshot stands, in one line: the probe loss non-finite (in the words of the run's events), else
    escaping to infinity or the kind of point (the first clause of the run verdict's words; the report's
    sections give the evidence), then the loss and gradient."""
    if math.isfinite(snapshot.loss):
        where = [_clauses(words)[0] for words in where_words([snapshot])]
    else:
        where = events(None, snapshot)[:1]
    return _plain("; ".join([*where, loss_words(snapshot)]))


def snapshot_report(snapshot: LandscapeSnapshot) -> str:
    """The Markdown report: the verdict line first, the stability threshold crossed (in bold), then
    contradictions, Hessian, critical point, convexity, redundancy and failures, each a short list (the
    redundancy findings a table).

    TensorBoard shows the line breaks of a paragraph (``white-space: break-spaces``) but not those of a list
    item: paragraphs are single lines that it wraps; list items are wrapped in the source."""
    kind = "full" if snapshot.full else "light"
    verdict = snapshot_verdict(snapshot)
    blocks = [_escape(f"**step {snapshot.step}** ({kind} evaluation): {verdict}.")]
    blocks.append(_section("", [f"**{_escape(text)}**" for text in events(None, snapshot) if text not in verdict]))
    contradictions = [f"**{c.pair}**: {_escape(_plain(c.reason))}" for c in snapshot.contradictions]
    blocks.append(_section("**Contradictions**", contradictions))
    blocks.append(_hessian(snapshot))
    blocks.append(_critical(snapshot))
    blocks.append(_convexity(snapshot))
    if snapshot.redundancy is not None:
        blocks.append(_redundancy(snapshot.redundancy))
    blocks.append(_section("**Failed**", [_escape(error) for error in snapshot.errors]))
    return "\n\n".join(block for block in blocks if block)


def _hessian(snapshot: LandscapeSnapshot) -> str:
    items = _spectrum_parts(snapshot) if snapshot.spectrum is not None else []
    if snapshot.trace is not None:
        items.append(str(snapshot.trace))
    solver = f" ({_solver_words(snapshot)})" if snapshot.spectrum is not None else ""
    return _section(f"**Hessian**{solver}", items)


def _critical(snapshot: LandscapeSnapshot) -> str:
    """The kind of the point, its index and nullity where they apply, the reason clause by clause, the escape
    to infinity and the nullity cross-check."""
    point, items = snapshot.critical, []
    escape = snapshot.divergence if snapshot.divergence is not None and snapshot.divergence.diverging else None
    if escape is not None:
        first, *rest = _clauses(_plain(escape.reason))
        items += [f"**{_escape(first)}**", *map(_escape, rest)]
    if point is not None and point.critical:
        quotient = f", quotient nullity {point.quotient_nullity}" if point.symmetry_rank else ""
        items.append(f"Morse index {point.morse_index}, nullity {point.nullity}{quotient}")
    if point is not None:
        items += [_escape(clause) for clause in _clauses(_plain(point.reason))]
    if snapshot.nullity is not None:
        items.append(f"nullity check: {_escape(_plain(snapshot.nullity.message))}")
    heading = "**Critical point**" + (f": **{point.kind}**" if point is not None else "")
    return _section(heading, items) if items else ""


def _convexity(snapshot: LandscapeSnapshot) -> str:
    items = []
    pl = snapshot.pl
    if pl is not None:
        given = "estimated from the losses so far" if pl.loss_star_estimated else "given"
        if math.isnan(pl.mu):
            items.append(f"no PL ratio: L − L* is at rounding level, with L* = {pl.loss_star:.6g} ({given})")
        else:
            running = f" (running min {pl.mu_running_min:.4g})" if math.isfinite(pl.mu_running_min) else ""
            lowered = pl.mu_sensitivity[1] if pl.mu_sensitivity is not None else math.nan
            margin = f"; {lowered:.3g} with L* lowered by one margin" if math.isfinite(lowered) else ""
            items.append(f"PL ratio {pl.mu:.4g}{running} at L* = {pl.loss_star:.6g} ({given}{margin})")
    one_point = snapshot.one_point
    if one_point is not None:
        if math.isnan(one_point.value):
            items.append(f"at the reference (distance {one_point.distance:.2g}, rounding level)")
        else:
            items.append(
                f"one-point convexity {one_point.value:.4g} (cosine {one_point.cosine:.3g}) at distance "
                f"{one_point.distance:.4g} from the reference"
            )
    return _section("**Convexity**", [_escape(item) for item in items])


def _redundancy(report: RedundancyReport | MLPRedundancy) -> str:
    """The widths, the distance to redundancy, the merged network's output change, the notes, and the findings
    as a table."""
    change, tolerance = report.max_output_change, report.tolerance
    items = [
        f"distance to redundancy {report.score:.3g} ({report.score_rule})",
        f"max output change of the merged network: {_on_points(change.data, change.probes)} "
        f"(tolerance {_on_points(tolerance.data, tolerance.probes)})",
    ]
    notes = report.notes if isinstance(report, RedundancyReport) else _layer_notes(report)
    items += [_escape(_plain(note)) for note in notes]
    heading = f"**Redundancy** ({report.kind}): {width_words(report)}"
    findings = report.findings
    if not findings:
        return _section(heading, [*items, "no finding: no rule holds or nearly holds"])
    rows = [
        "| neurons | rule | score | verified | max output change |",
        "|---|---|---|---|---|",
        *(_finding_row(finding) for finding in findings[:MAX_FINDINGS]),
    ]
    more = len(findings) - MAX_FINDINGS
    table = "\n".join(rows) + (f"\n\n{more} more findings: see the redundancy report's findings." if more > 0 else "")
    return _section(heading, items) + "\n\n" + table


def _finding_row(finding: RedundancyFinding) -> str:
    if finding.verified:
        verified = "yes" if finding.level == "function" else "on the data only"
    elif finding.near:
        verified = f"near-redundant (fit change {finding.fit_change:.1g})"
    else:
        verified = "no"
    cells = [neurons_words(finding.neurons), finding.rule, f"{finding.score:.2g}", verified]
    return "| " + " | ".join([*cells, f"{finding.max_output_change:.2g}"]) + " |"


def _on_points(data: float | None, probes: float | None) -> str:
    where = [
        f"{value:.2g} on the {name}" for value, name in ((data, "data"), (probes, "probe points")) if value is not None
    ]
    return ", ".join(where) or "not measured"


def _layer_notes(report: MLPRedundancy) -> list[str]:
    """Each layer's notes once, prefixed by the layers they hold for unless they hold for all."""
    layers: dict[str, list[str]] = {}
    for name, layer in zip(report.layer_names, report.layers, strict=True):
        for note in layer.notes:
            layers.setdefault(note, []).append(name)
    return [
        note if len(names) == len(report.layers) else f"layer{'s' * (len(names) > 1)} {', '.join(names)}: {note}"
        for note, names in layers.items()
    ]


def _section(heading: str, items: Sequence[str]) -> str:
    """A bold heading and its items as a Markdown list (a blank line between them, or there is no list)."""
    if not items:
        return ""
    return (heading + "\n\n" if heading else "") + "\n".join(_wrap(item, "- ") for item in items)


def _wrap(text: str, marker: str) -> str:
    """A list item: ``text`` after ``marker`` in lines of at most WIDTH characters (a longer word stays whole),
    continuation lines indented under the marker; a word that would open a line as a list item, heading or
    table row ("-", "1.", "#", "|") moves to the end of the line before."""
    indent = " " * len(marker)
    lines = textwrap.wrap(
        text, WIDTH, initial_indent=marker, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )
    joined: list[str] = []
    for line in lines:
        while joined and _LINE_MARKER.match(line):
            word, _, rest = line.strip().partition(" ")
            joined[-1] += " " + word
            line = indent + rest if rest else ""
        if line.strip():
            joined.append(line)
    return "\n".join(joined)


def _clauses(text: str) -> list[str]:
    """A reason split at its top-level "; " (not inside parentheses or brackets), final period dropped."""
    clauses, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        if depth == 0 and text.startswith("; ", index):
            clauses.append(text[start:index])
            start = index + 2
    clauses.append(text[start:])
    return [clause.strip().rstrip(".") for clause in clauses if clause.strip()]


def _plain(text: str) -> str:
    """The core's neuron tuples in words: "neurons (1, 4)" → "neurons 1, 4"."""
    return _NEURON_TUPLE.sub(lambda match: neurons_words(int(i) for i in match.group(1).split(", ")), text)


def _escape(text: str) -> str:
    """Characters Markdown would read as emphasis or code (L*, a*b, `x`) escaped; "**" of our own bold kept."""
    return re.sub(r"(?<!\*)\*(?!\*)", r"\\*", text).replace("`", r"\`")


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
        self._failing = False  # the last evaluation's loss was not finite: said once, not at every evaluation

    def write(self, snapshot: LandscapeSnapshot, previous: LandscapeSnapshot | None, cost: EvaluationCost) -> None:
        failing = not math.isfinite(snapshot.loss)
        if snapshot.full and not (failing and self._failing):
            self.emit(f"{self.name} {console_line(snapshot)}")
        self._failing = failing

    def note(self, text: str) -> None:
        self.emit(f"{self.name}: {text}.")

    def event(self, step: int, text: str) -> None:
        self.emit(f"{self.name}: {text}.")

    def close(self, verdict: str, step: int) -> None:
        self.emit(f"{self.name}: {verdict}")
