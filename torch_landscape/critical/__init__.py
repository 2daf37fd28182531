"""Critical points: the Newton-step criticality test, the classification (strict saddle, nondegenerate
minimum, minimum modulo symmetry, degenerate point) and the profiles along null directions
(docs/theory.md §1.2–§1.5)."""

from .classify import CriticalPoint, classify_critical_point
from .null_profiles import NullProfile

__all__ = ["CriticalPoint", "NullProfile", "classify_critical_point"]
