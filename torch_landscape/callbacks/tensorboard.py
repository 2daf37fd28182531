"""Writing landscape snapshots to TensorBoard: scalars, the spectrum histogram, a custom-scalars layout,
the text report and figures.

Every function takes a ``torch.utils.tensorboard.SummaryWriter`` (Lightning's ``TensorBoardLogger.experiment``
is one) and imports neither Lightning nor matplotlib, so the plain-loop API works without them.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..probe import LandscapeSnapshot

# A chart per story, titled with how to read it; (category, title, tags, quantity that produces them).
_H, _C, _R = "landscape/hessian/", "landscape/convexity/", "landscape/redundancy/"
_CHARTS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("landscape 1: curvature", "sharpness lambda_max and 2/lr: gradient descent is unstable where lambda_max > 2/lr",
     (_H + "lambda_max", _H + "eos_threshold"), "spectrum"),
    ("landscape 1: curvature", "lambda_min: below 0 is negative curvature, a direction of descent (a saddle)",
     (_H + "lambda_min",), "spectrum"),
    ("landscape 1: curvature", "error bounds |computed - true eigenvalue|: trust the values above to this much",
     (_H + "lambda_max_error", _H + "lambda_min_error"), "spectrum"),
    ("landscape 1: curvature", "trace of the Hessian: the sum of all curvatures (its standard error, 0 if exact)",
     (_H + "trace", _H + "trace_error"), "trace"),
    ("landscape 1: curvature", "condition number lambda_max/lambda_min (only where H is positive definite) and "
     "lambda_max over the smallest positive eigenvalue", (_H + "cond", _H + "cond_eff"), "spectrum"),
    ("landscape 2: critical point", "Morse index (directions of descent) and nullity (flat directions; "
     "quotient: those the network's symmetries do not explain)",
     (_H + "morse_index", _H + "nullity", _H + "quotient_nullity"), "critical"),
    ("landscape 2: critical point", "at a critical point? (1 = the gradient is at rounding level)",
     (_H + "critical",), "critical"),
    ("landscape 2: critical point", "probe loss L(theta): the mean loss over the fixed probe set",
     ("landscape/probe/loss",), ""),
    ("landscape 2: critical point", "gradient norm |grad L| on the probe set: 0 at a critical point",
     ("landscape/probe/grad_norm",), ""),
    ("landscape 3: convexity", "PL ratio |grad L|^2 / 2(L - L*): bounded away from 0 means linear convergence; "
     "falling toward 0, PL fails", (_C + "pl_ratio", _C + "pl_ratio_running_min", _C + "pl_ratio_window_min"), "pl"),
    ("landscape 3: convexity", "PL ratio at L* and at L* lowered by one more margin: far apart, the ratio is "
     "not resolved", (_C + "pl_ratio", _C + "pl_ratio_lower_loss_star"), "pl"),
    ("landscape 3: convexity", "probe loss, the L* estimate behind the PL ratio, and Aitken's extrapolation of L*",
     ("landscape/probe/loss", _C + "loss_star", _C + "loss_star_aitken"), "pl"),
    ("landscape 3: convexity", "per-step contraction (L_t - L*)/(L_t-1 - L*): below 1 is linear convergence",
     (_C + "contraction",), "pl"),
    ("landscape 3: convexity", "Lojasiewicz slope of log|grad L|^2 against log(L - L*): 1 under PL, above 1 "
     "at a degenerate minimum", (_C + "lojasiewicz_slope",), "pl"),
    ("landscape 3: convexity", "one-point convexity <grad L, theta - theta*> / |theta - theta*|^2: "
     "above 0 the gradient points toward the reference", (_C + "one_point", _C + "one_point_running_min"), "one_point"),
    ("landscape 3: convexity", "cosine between -grad L and the direction to the reference, and the distance to it",
     (_C + "one_point_cosine", _C + "distance_to_reference"), "one_point"),
    ("landscape 3: convexity", "neurons matched to another reference neuron than at the previous evaluation",
     (_C + "assignment_changes",), "one_point"),
    ("landscape 4: redundancy", "effective width (on all inputs, and on the data only) vs width: below the width, "
     "some neurons are redundant", (_R + "effective_width", _R + "effective_width_on_data", _R + "width"), "redundancy"),
    ("landscape 4: redundancy", "distance to the redundant set (0: exactly redundant), and verified merges",
     (_R + "score", _R + "claims"), "redundancy"),
    ("landscape 5: monitor cost", "seconds per snapshot, and the share of training wall time spent monitoring",
     ("landscape/monitor/seconds", "landscape/monitor/overhead"), ""),
)

# How to read each quantity's charts, written once as text next to the layout.
_READING: dict[str, str] = {
    "spectrum": "**lambda_max** is the sharpness: gradient descent with learning rate lr is stable near theta only while "
    "lambda_max < 2/lr (eos_threshold; eos_ratio = lambda_max lr/2 against 1). **lambda_min < 0** is a direction of "
    "negative curvature: not a minimum. Each eigenvalue comes with an error bound (*_error).",
    "trace": "**trace** is the sum of all curvatures (exact for one-hidden-layer networks, else Hutch++ with a standard error).",
    "density": "The histogram **landscape/hessian/spectrum** and the density figure show where all eigenvalues lie.",
    "critical": "**morse_index** counts descent directions, **nullity** flat ones; the text report names the kind: "
    "not_critical, strict_saddle, nondegenerate_min (strongly convex nearby), min_mod_symmetry (flat only along "
    "the network's symmetries) or degenerate.",
    "pl": "The **PL ratio** |grad L|^2 / 2(L - L*) bounded away from 0 means linear convergence; falling toward 0, "
    "the PL inequality fails (polynomial convergence, as at a degenerate minimum).",
    "one_point": "**one_point** > 0 means the negative gradient points toward the (neuron-aligned) reference.",
    "redundancy": "**effective_width** below the width means some neurons are redundant (duplicate, mirrored, dead, "
    "zero output weight...); **score** is the distance to the nearest redundant network, 0 on it.",
}

# Writers that already hold a layout: TensorBoard reads only the first layout of each run.
_WITH_LAYOUT: "weakref.WeakSet[Any]" = weakref.WeakSet()


def custom_scalars_layout(quantities: Iterable[str]) -> dict[str, dict[str, list[Any]]]:
    """The custom-scalars layout ``{category: {chart title: ["Multiline", [tag regexes]]}}`` for the charts
    of ``quantities`` (tag regexes anchored at both ends)."""
    quantities = set(quantities) | {""}
    layout: dict[str, dict[str, list[Any]]] = {}
    for category, title, tags, quantity in _CHARTS:
        if quantity in quantities:
            layout.setdefault(category, {})[title] = ["Multiline", [re.escape(tag) + "$" for tag in tags]]
    return layout


def write_setup(writer: Any, quantities: Iterable[str], describe: Callable[[], str]) -> bool:
    """Once per writer: the custom-scalars layout for ``quantities`` and a text ``landscape/setup`` with
    ``describe()`` (what is measured, on what) and how to read each chart. True if written."""
    if writer in _WITH_LAYOUT:
        return False
    quantities = set(quantities)
    writer.add_custom_scalars(custom_scalars_layout(quantities))
    reading = [f"- {text}" for quantity, text in _READING.items() if quantity in quantities]
    writer.add_text("landscape/setup", "\n\n".join([describe(), "How to read the charts:\n\n" + "\n".join(reading)]), 0)
    _WITH_LAYOUT.add(writer)
    return True


def finite(scalars: dict[str, float]) -> dict[str, float]:
    """The scalars worth logging: a NaN (e.g. the PL ratio at L = L*) would be drawn as a marker that looks
    like data."""
    return {tag: value for tag, value in scalars.items() if math.isfinite(value)}


def write_scalars(writer: Any, scalars: dict[str, float], step: int) -> None:
    """``add_scalar`` for every tag with a finite value."""
    for tag, value in finite(scalars).items():
        writer.add_scalar(tag, value, step)


def write_spectrum_histogram(writer: Any, snapshot: "LandscapeSnapshot") -> None:
    """The spectral density as histogram ``landscape/hessian/spectrum``, in eigenvalue counts (expected
    counts for a stochastic Lanczos quadrature)."""
    density, size = snapshot.density, snapshot.num_parameters
    fractions, edges = density.histogram()
    counts = fractions * size
    nodes, weights = density.nodes, density.weights * size
    writer.add_histogram_raw(
        "landscape/hessian/spectrum",
        min=float(nodes.min()),
        max=float(nodes.max()),
        num=size,
        sum=float((weights * nodes).sum()),
        sum_squares=float((weights * nodes**2).sum()),
        bucket_limits=edges[1:],
        bucket_counts=counts,
        global_step=snapshot.step,
    )


def write_snapshot(writer: Any, snapshot: "LandscapeSnapshot") -> None:
    """Everything of a snapshot but the scalars and figures: spectrum histogram, text report, errors."""
    step = snapshot.step
    if snapshot.density is not None:
        write_spectrum_histogram(writer, snapshot)
    if snapshot.critical is not None or snapshot.redundancy is not None:
        writer.add_text("landscape/report", snapshot.report(), step)
    if snapshot.errors:
        writer.add_text("landscape/errors", "\n".join(f"- {error}" for error in snapshot.errors), step)


def write_figures(writer: Any, snapshot: "LandscapeSnapshot", trajectory: Sequence[tuple[int, Sequence[float]]]) -> None:
    """The matplotlib figures a snapshot supports: spectral density, eigenvalue trajectories (up to this
    snapshot), neuron similarity heat map."""
    from . import figures as plots

    step = snapshot.step
    if snapshot.density is not None:
        writer.add_figure("landscape/figures/spectral_density", plots.spectral_density_figure(snapshot.density, step), step, close=True)
    if snapshot.spectrum is not None and trajectory:
        writer.add_figure(
            "landscape/figures/eigenvalue_trajectories",
            plots.eigenvalue_trajectory_figure(trajectory, snapshot.learning_rate), step, close=True,
        )
    if snapshot.redundancy is not None:
        writer.add_figure(
            "landscape/figures/neuron_similarity", plots.similarity_figure(snapshot.redundancy.similarity_matrix(), step),
            step, close=True,
        )
