"""Curvature of the objective: the Hessian as a linear operator, its eigenvalues with error bounds, trace and
density, the structure of one-hidden-layer networks, and the continuous symmetries that make some
directions flat (docs/theory.md §1, §6)."""

from .eigen import Spectrum, hessian_eigenvalues
from .estimators import SpectralDensity, TraceEstimate, hessian_trace, spectral_density
from .operators import HessianOperator, LinearOperator, MatrixOperator, QuotientOperator
from .preconditioned import PreconditionedOperator
from .shallow import ShallowNetwork, Square, find_shallow
from .symmetry import QuotientBasis, SymmetryTangents, quotient_basis, symmetry_tangents

__all__ = [
    "HessianOperator",
    "LinearOperator",
    "MatrixOperator",
    "PreconditionedOperator",
    "QuotientBasis",
    "QuotientOperator",
    "ShallowNetwork",
    "SpectralDensity",
    "Spectrum",
    "Square",
    "SymmetryTangents",
    "TraceEstimate",
    "find_shallow",
    "hessian_eigenvalues",
    "hessian_trace",
    "quotient_basis",
    "spectral_density",
    "symmetry_tangents",
]
