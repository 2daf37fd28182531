"""The scalars of a snapshot under their TensorBoard tags: the one place that names them.

Every tag starts with ``landscape/``. Quantities that span decades (loss, gradient norm, condition
number, distance to redundancy) are also logged as ``*_log10`` so that TensorBoard's linear axes show
them; eigenvalues come with ``*_lower``/``*_upper`` = value ∓ error bound for the margin charts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..monitoring.sinks import EvaluationCost
    from ..snapshot import LandscapeSnapshot

#: TensorBoard stores scalars in float32: a larger value would read back as inf. Such a value is left out;
#: its ``*_log10`` companion (loss, gradient norm) still says how large it was.
FLOAT32_MAX = 3.4028234663852886e38

PROBE, HESSIAN, CONVEXITY, REDUNDANCY, MONITOR, STABILITY = (
    "landscape/probe/",
    "landscape/hessian/",
    "landscape/convexity/",
    "landscape/redundancy/",
    "landscape/monitor/",
    "landscape/stability/",
)


def log10(value: float) -> float:
    """log10 of a positive value, NaN otherwise (NaN scalars are not logged)."""
    return math.log10(value) if value > 0 and math.isfinite(value) else math.nan


def _with_margin(out: dict[str, float], tag: str, value: float, bound: float) -> None:
    out.update({tag: value, tag + "_error": bound, tag + "_lower": value - bound, tag + "_upper": value + bound})


def snapshot_scalars(snapshot: LandscapeSnapshot) -> dict[str, float]:
    """Every number of ``snapshot`` under its tag (NaN where a value is undefined; writers drop those)."""
    out = {
        PROBE + "loss": snapshot.loss,
        PROBE + "loss_log10": log10(snapshot.loss),
        PROBE + "grad_norm": snapshot.grad_norm,
        PROBE + "grad_norm_log10": log10(snapshot.grad_norm),
        MONITOR + "seconds": snapshot.seconds,
    }
    for part in (_spectrum, _stability, _critical, _convexity, _redundancy):
        out.update(part(snapshot))
    if snapshot.divergence is not None and math.isfinite(snapshot.divergence.norm_growth):
        out[HESSIAN + "diverging"] = float(snapshot.divergence.diverging)
    if snapshot.full:
        out[HESSIAN + "contradictions"] = float(len(snapshot.contradictions))
    return out


def _spectrum(snapshot: LandscapeSnapshot) -> dict[str, float]:
    out: dict[str, float] = {}
    spectrum = snapshot.spectrum
    if spectrum is not None:
        values, bounds = spectrum.eigenvalues, spectrum.error_bounds
        lambda_max = float(values[-1])
        _with_margin(out, HESSIAN + "lambda_max", lambda_max, float(bounds[-1]))
        out[HESSIAN + "converged"] = float(spectrum.converged)
        out[HESSIAN + "num_hvp"] = float(snapshot.num_hvp)
        if snapshot.spectrum_ends == "both":
            lambda_min = float(values[0])
            _with_margin(out, HESSIAN + "lambda_min", lambda_min, float(bounds[0]))
            out[HESSIAN + "zero"] = 0.0  # a reference line, so that λ_min's chart always shows where 0 is
            # Only a smallest eigenvalue positive beyond its error bound makes H ≻ 0 certain.
            certain = lambda_min > float(bounds[0])
            out[HESSIAN + "cond_log10"] = log10(lambda_max / lambda_min) if certain else math.nan
        if snapshot.negative_count is not None:
            out[HESSIAN + "negative_count"] = float(snapshot.negative_count)
        if snapshot.learning_rate:
            out[HESSIAN + "eos_threshold"] = 2.0 / snapshot.learning_rate
            out[HESSIAN + "eos_ratio"] = lambda_max * snapshot.learning_rate / 2.0
    if snapshot.trace is not None:
        out[HESSIAN + "trace"] = snapshot.trace.value
        out[HESSIAN + "trace_error"] = snapshot.trace.standard_error
    return out


def _stability(snapshot: LandscapeSnapshot) -> dict[str, float]:
    """The optimizer's stability ratio (band: its bound) and line at 1; its sharpness against its threshold
    where the parameter groups share one threshold."""
    reading = snapshot.stability
    if reading is None or reading.status != "ok":
        return {}
    out: dict[str, float] = {STABILITY + "limit": 1.0}
    _with_margin(out, STABILITY + "ratio", reading.ratio, reading.ratio_error)
    if math.isfinite(reading.setup.threshold):
        _with_margin(out, STABILITY + "sharpness", reading.sharpness, reading.sharpness_error)
        out[STABILITY + "threshold"] = reading.setup.threshold
    return out


def _critical(snapshot: LandscapeSnapshot) -> dict[str, float]:
    point = snapshot.critical
    if point is None:
        return {}
    out = {
        HESSIAN + "critical": float(point.critical),
        HESSIAN + "sym_leak": point.sym_leak,
        HESSIAN + "newton_ratio_log10": log10(point.newton_ratio),
    }
    if point.critical:  # index and nullity describe a critical point; elsewhere negative_count does
        counts = {
            "morse_index": point.morse_index,
            "nullity": point.nullity,
            "quotient_nullity": point.quotient_nullity,
        }
        out.update({HESSIAN + name: float(count) for name, count in counts.items() if count is not None})
    positive = point.eigenvalues[point.eigenvalues > point.tau]
    if len(positive):
        out[HESSIAN + "cond_eff_log10"] = log10(point.lambda_max / float(positive[0]))
    return out


def _convexity(snapshot: LandscapeSnapshot) -> dict[str, float]:
    out: dict[str, float] = {}
    pl = snapshot.pl
    if pl is not None:
        out.update(
            {
                CONVEXITY + "pl_ratio": pl.mu,
                CONVEXITY + "pl_ratio_log10": log10(pl.mu),
                CONVEXITY + "loss_gap_log10": log10(pl.loss - pl.loss_star),
                CONVEXITY + "pl_ratio_running_min": pl.mu_running_min,
                CONVEXITY + "pl_ratio_window_min": pl.mu_window_min,
                CONVEXITY + "loss_star": pl.loss_star,
                CONVEXITY + "loss_star_aitken": pl.loss_star_aitken,
                CONVEXITY + "contraction": pl.contraction,
                CONVEXITY + "lojasiewicz_slope": pl.lojasiewicz_slope,
                CONVEXITY + "eta_t_ratio": pl.eta_t_ratio,
            }
        )
        if pl.mu_sensitivity is not None:
            # μ with L̂* lowered by one more margin: far from pl_ratio means μ is not resolved.
            low = pl.mu_sensitivity[1]
            out[CONVEXITY + "pl_ratio_lower_loss_star"] = low
            out[CONVEXITY + "pl_resolution"] = low / pl.mu if pl.mu > 0 else math.nan
    one_point = snapshot.one_point
    if one_point is not None:
        at_reference = math.isnan(one_point.value)  # 0/0 at a rounding-level distance: "at the reference"
        out.update(
            {
                CONVEXITY + "one_point": one_point.value,
                CONVEXITY + "one_point_cosine": math.nan if at_reference else one_point.cosine,
                CONVEXITY + "distance_to_reference": one_point.distance,
                CONVEXITY + "distance_to_reference_log10": log10(one_point.distance),
            }
        )
        if snapshot.one_point_running_min is not None:
            out[CONVEXITY + "one_point_running_min"] = snapshot.one_point_running_min
        if snapshot.assignment_changes is not None:
            out[CONVEXITY + "assignment_changes"] = float(snapshot.assignment_changes)
    return out


def _redundancy(snapshot: LandscapeSnapshot) -> dict[str, float]:
    report = snapshot.redundancy
    if report is None:
        return {}
    out = {
        REDUNDANCY + "width": float(report.width),
        REDUNDANCY + "effective_width": float(report.effective_width),
        REDUNDANCY + "score": report.score,
        REDUNDANCY + "score_log10": log10(report.score),
        REDUNDANCY + "claims": float(len(report.claims)),
    }
    if report.effective_width_on_data is not None:
        out[REDUNDANCY + "effective_width_on_data"] = float(report.effective_width_on_data)
    return out


def finite(scalars: dict[str, float]) -> dict[str, float]:
    """The scalars worth logging: finite and representable in float32 (a NaN would be drawn as a marker
    that looks like data; 1e40 would be stored as inf)."""
    return {tag: value for tag, value in scalars.items() if math.isfinite(value) and abs(value) <= FLOAT32_MAX}


def scalars_to_log(
    snapshot: LandscapeSnapshot, previous: LandscapeSnapshot | None = None, cost: EvaluationCost | None = None
) -> dict[str, float]:
    """What to log for an evaluation: the snapshot's scalars, without those already logged at this step with
    the same value (``previous``: the light snapshot it completes), with the evaluation's ``cost``."""
    scalars = snapshot_scalars(snapshot)
    if previous is not None:
        logged = snapshot_scalars(previous)
        scalars = {tag: value for tag, value in scalars.items() if tag not in logged or logged[tag] != value}
    if cost is not None:
        scalars[MONITOR + "seconds"] = cost.seconds
        scalars[MONITOR + "overhead"] = cost.overhead
        scalars[MONITOR + "max_overhead"] = cost.limit
    return finite(scalars)
