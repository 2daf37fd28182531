"""The quantities a landscape probe can compute: one table, from which everything else derives.

Each :class:`Quantity` names what it computes, its *tier* (computed at every evaluation, or at full ones
only), the :class:`~torch_landscape.snapshot.LandscapeSnapshot` fields it owns, what it needs of the model
or run, and the monitor family it belongs to. The presets of the Lightning monitors, the quantities that
apply to a model, completing a light snapshot by a full one at the same step, and the README's table all
read this table; the computations themselves are in :mod:`torch_landscape.evaluation`, one per name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Tier = Literal["light", "full"]
Need = Literal["reference", "neurons", "one_process"]
Family = Literal["hessian", "convexity", "redundancy", "landscape"]


@dataclass(frozen=True)
class Quantity:
    """One row of :data:`TABLE`.

    Attributes
    ----------
    name : str
        What ``quantities=`` lists.
    description : str
        What it is, in a line.
    tier : {"light", "full"}
        "light": computed at every evaluation; "full": at full evaluations only.
    refined : bool
        A light quantity that a full evaluation computes more completely (both ends of the spectrum to full
        tolerance; the trace where no closed form exists): recomputed when a full evaluation completes a
        light one at the same step. The others carry running state (PL, one-point) and are not.
    fields : tuple of str
        The snapshot fields it sets.
    needs : str or None
        "reference" (a reference θ*), "neurons" (a one-hidden-layer network or an MLP) or "one_process"
        (it reads one rank's probe samples, so not under a process group).
    family : str
        The specialised monitor that computes it (``HessianMonitor``, ``ConvexityMonitor``,
        ``RedundancyMonitor``); "landscape": only ``LandscapeMonitor``.
    """

    name: str
    description: str
    tier: Tier
    fields: tuple[str, ...]
    needs: Need | None = None
    family: Family = "landscape"
    refined: bool = False


TABLE: tuple[Quantity, ...] = (
    Quantity(
        "pl",
        "the Polyak–Łojasiewicz ratio ‖∇L‖² / (2 (L − L*)) with running minima and the L* estimate",
        "light",
        ("pl",),
        family="convexity",
    ),
    Quantity(
        "one_point",
        "one-point convexity ⟨∇L, θ − θ*⟩ / ‖θ − θ*‖² toward reference=",
        "light",
        ("one_point", "one_point_running_min", "assignment_changes"),
        needs="reference",
        family="convexity",
    ),
    Quantity(
        "spectrum",
        "the k largest and k smallest Hessian eigenvalues with error bounds (at light evaluations of large "
        "networks, λ_max alone)",
        "light",
        ("spectrum", "spectrum_ends", "negative_count"),
        family="hessian",
        refined=True,
    ),
    Quantity(
        "stability",
        "the stability ratio of the optimizer in use: the sharpness it sees over its threshold (1 = the edge of "
        "stability; SGD with momentum, Adam, AdamW, RMSprop, Adagrad); needs the optimizer",
        "light",
        ("stability",),
        family="hessian",
    ),
    Quantity("trace", "the trace of the Hessian", "light", ("trace",), family="hessian", refined=True),
    Quantity(
        "density", "the spectral density of the Hessian (histogram and figure)", "full", ("density",), family="hessian"
    ),
    Quantity(
        "critical",
        "the critical-point classification: kind, Morse index, nullity",
        "full",
        ("critical",),
        family="hessian",
    ),
    Quantity(
        "redundancy",
        "neuron redundancy of a one-hidden-layer network or MLP (rules, scores, verified merges)",
        "full",
        ("redundancy",),
        needs="neurons",
        family="redundancy",
    ),
    Quantity(
        "slices",
        "the loss along the top and bottom Hessian eigenvectors, a null direction and toward the reference",
        "full",
        ("slices",),
        needs="one_process",
    ),
)

#: The snapshot fields of the verdicts drawn from the quantities of one snapshot (every snapshot computes them).
VERDICT_FIELDS = ("divergence", "nullity", "contradictions")

#: Name → description, in table order.
QUANTITIES: dict[str, str] = {quantity.name: quantity.description for quantity in TABLE}

#: The quantities of a *full* evaluation only.
FULL_QUANTITIES = frozenset(quantity.name for quantity in TABLE if quantity.tier == "full")

_BY_NAME = {quantity.name: quantity for quantity in TABLE}


def quantity(name: str) -> Quantity:
    """The table's row for ``name``."""
    return _BY_NAME[name]


def family(name: Family) -> tuple[str, ...]:
    """The quantities a specialised monitor computes ("landscape": all of them)."""
    return tuple(q.name for q in TABLE if name == "landscape" or q.family == name)


def fields_of(names: Iterable[str]) -> tuple[str, ...]:
    """The snapshot fields the named quantities own."""
    return tuple(field for name in names for field in _BY_NAME[name].fields)


def check_quantities(quantities: Iterable[str]) -> tuple[str, ...]:
    """Validate quantity names; returns them as a tuple in table order."""
    if isinstance(quantities, str):
        quantities = (quantities,)
    if not isinstance(quantities, Iterable):
        raise TypeError(f"quantities must be a list of names from {list(QUANTITIES)}, got {type(quantities).__name__}.")
    chosen = set(quantities)
    unknown = sorted(map(repr, chosen - QUANTITIES.keys()))
    if unknown:
        raise ValueError(f"unknown quantities [{', '.join(unknown)}]; choose from {list(QUANTITIES)}.")
    return tuple(name for name in QUANTITIES if name in chosen)


def completing(names: Iterable[str]) -> tuple[str, ...]:
    """Of ``names``, those a full evaluation computes again when it completes a light one of the same step."""
    return tuple(name for name in names if _BY_NAME[name].tier == "full" or _BY_NAME[name].refined)
