"""A run's history as data: one flat row per snapshot, a pandas DataFrame, strict JSON.

The columns are the TensorBoard tags (:func:`~.tags.snapshot_scalars`, e.g. ``landscape/hessian/lambda_max``),
so that what a dashboard reads from the event files and what an analysis reads from the export have the
same names, plus ``step``, ``full``, ``num_parameters`` and the verdicts in words (:func:`snapshot_words`)::

    frame = history_frame(monitor.history)            # needs pandas
    write_history_json(monitor.history, "run.json")   # NaN and ±inf written as null
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..snapshot import LandscapeSnapshot
from .tags import CONVEXITY, HESSIAN, REDUNDANCY, snapshot_scalars

if TYPE_CHECKING:
    import pandas

#: Where a snapshot's failures go, as the TensorBoard text of the same name.
ERRORS = "landscape/errors"


def snapshot_words(snapshot: LandscapeSnapshot) -> dict[str, str]:
    """The verdicts of ``snapshot`` that are words, under tags beside their numbers: the eigen-solver, the
    critical-point kind (and its degenerate sub-kind) with the reason, the divergence and nullity verdicts,
    the contradictions, the redundancy's activation and closest rule, and the failures. A word is present
    only where its result is."""
    out: dict[str, str] = {}
    if snapshot.spectrum is not None:
        out[HESSIAN + "method"] = snapshot.spectrum.method
        out[HESSIAN + "spectrum_ends"] = snapshot.spectrum_ends
    point = snapshot.critical
    if point is not None:
        out[HESSIAN + "critical_kind"] = point.kind
        if point.degenerate_kind is not None:
            out[HESSIAN + "degenerate_kind"] = point.degenerate_kind
        out[HESSIAN + "critical_reason"] = point.reason
    if snapshot.divergence is not None:
        out[HESSIAN + "divergence_reason"] = snapshot.divergence.reason
    if snapshot.nullity is not None:
        out[HESSIAN + "nullity_message"] = snapshot.nullity.message
    if snapshot.contradictions:
        out[HESSIAN + "contradiction_reasons"] = "; ".join(f"{c.pair}: {c.reason}" for c in snapshot.contradictions)
    if snapshot.pl is not None:
        out[CONVEXITY + "loss_star_source"] = "estimated" if snapshot.pl.loss_star_estimated else "given"
    if snapshot.redundancy is not None:
        out[REDUNDANCY + "kind"] = snapshot.redundancy.kind
        out[REDUNDANCY + "score_rule"] = snapshot.redundancy.score_rule
    if snapshot.errors:
        out[ERRORS] = "; ".join(snapshot.errors)
    return out


def history_rows(history: Sequence[LandscapeSnapshot]) -> list[dict[str, Any]]:
    """One flat row per snapshot, in order: ``step``, ``full``, ``num_parameters``, every scalar under its
    tag (NaN where undefined, as :func:`~.tags.snapshot_scalars` gives it) and the words of
    :func:`snapshot_words`. A row holds only the columns its snapshot has.

    Raises
    ------
    TypeError
        If ``history`` is not a sequence of LandscapeSnapshot (``monitor.history``, ``session.history``).
    """
    _check_history(history)
    rows = []
    for snapshot in history:
        row: dict[str, Any] = {"step": snapshot.step, "full": snapshot.full, "num_parameters": snapshot.num_parameters}
        row.update({tag: float(value) for tag, value in snapshot_scalars(snapshot).items()})
        row.update(snapshot_words(snapshot))
        rows.append(row)
    return rows


def history_frame(history: Sequence[LandscapeSnapshot]) -> pandas.DataFrame:
    """The rows of :func:`history_rows` as a pandas DataFrame, one row per snapshot, columns in the order
    they first appear; a column a snapshot lacks is NaN there.

    Raises
    ------
    ImportError
        Without pandas (an optional dependency): ``pip install pandas``.
    """
    rows = history_rows(history)
    try:
        import pandas
    except ImportError as error:
        raise ImportError(
            "history_frame needs pandas: pip install pandas (or pip install 'torch-landscape[pandas]'); "
            "history_rows and history_json need nothing more."
        ) from error
    return pandas.DataFrame.from_records(rows)


def history_json(history: Sequence[LandscapeSnapshot], indent: int | None = None) -> str:
    """The rows of :func:`history_rows` as strict JSON, an array of objects: NaN and ±inf, which JSON
    cannot hold, are written as null; every finite float is written exactly (shortest round-trip form)."""
    rows = [{key: _strict(value) for key, value in row.items()} for row in history_rows(history)]
    return json.dumps(rows, allow_nan=False, ensure_ascii=False, indent=indent)


def write_history_json(
    history: Sequence[LandscapeSnapshot], path: str | os.PathLike[str], indent: int | None = None
) -> None:
    """Write :func:`history_json` to ``path`` (UTF-8)."""
    text = history_json(history, indent=indent)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text + "\n")


def _strict(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _check_history(history: Any) -> None:
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise TypeError(
            f"history must be a sequence of LandscapeSnapshot (monitor.history, session.history), "
            f"got {type(history).__name__}."
        )
    wrong = [type(item).__name__ for item in history if not isinstance(item, LandscapeSnapshot)]
    if wrong:
        raise TypeError(f"history must hold LandscapeSnapshot only, got {wrong[0]} among them.")
