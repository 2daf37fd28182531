"""Convexity along a run (docs/theory.md §2, §3): the Polyak–Łojasiewicz ratio and L* (:mod:`.pl`),
one-point strong convexity toward a reference (:mod:`.one_point`) aligned under the network's symmetries
(:mod:`.align`)."""

from .align import Alignment, align_reference
from .one_point import (
    OnePointConvexity,
    OnePointProfile,
    one_point_convexity,
    one_point_convexity_profile,
    reference_point,
)
from .pl import PLEstimate, PLTracker, aitken_extrapolation, pl_ratio

__all__ = [
    "Alignment",
    "OnePointConvexity",
    "OnePointProfile",
    "PLEstimate",
    "PLTracker",
    "aitken_extrapolation",
    "align_reference",
    "one_point_convexity",
    "one_point_convexity_profile",
    "pl_ratio",
    "reference_point",
]
