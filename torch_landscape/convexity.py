"""Polyak–Łojasiewicz and one-point strong convexity diagnostics (docs/theory.md §2, §3).

The computations live in :mod:`torch_landscape.pl` (the PL ratio along a run) and
:mod:`torch_landscape.one_point` (one-point strong convexity against an aligned reference); this module
keeps the names importable from one place.
"""

from .one_point import (
    OnePointConvexity,
    OnePointProfile,
    one_point_convexity,
    one_point_convexity_profile,
    reference_point,
)
from .pl import PLEstimate, PLTracker, aitken_extrapolation, pl_ratio

__all__ = [
    "OnePointConvexity",
    "OnePointProfile",
    "PLEstimate",
    "PLTracker",
    "aitken_extrapolation",
    "one_point_convexity",
    "one_point_convexity_profile",
    "pl_ratio",
    "reference_point",
]
