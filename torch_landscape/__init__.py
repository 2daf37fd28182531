"""torch_landscape: watch the optimization landscape while you train.

Hessian spectra with error bounds, convexity checks (PL, one-point strong convexity, critical-point
classification) and neuron redundancy, for any PyTorch model and loss; Lightning callbacks in
``torch_landscape.callbacks``.
"""

from .align import Alignment, align_reference
from .convexity import (
    OnePointConvexity,
    OnePointProfile,
    PLEstimate,
    PLTracker,
    aitken_extrapolation,
    one_point_convexity,
    one_point_convexity_profile,
    pl_ratio,
)
from .critical import CriticalPoint, ProbeResult, classify_critical_point
from .eigen import Spectrum, hessian_eigenvalues
from .estimators import SpectralDensity, TraceEstimate, hessian_trace, spectral_density
from .objective import Objective
from .operators import HessianOperator
from .probe import LandscapeProbe, LandscapeSnapshot
from .redundancy import (
    MLPRedundancy,
    NullityCheck,
    OutputChange,
    RedundancyFinding,
    RedundancyReport,
    mlp_redundancy,
    neuron_redundancy,
    redundancy_nullity_check,
)
from .shallow import ShallowNetwork, Square, find_shallow
from .slices import (
    Direction,
    LandscapeSlices,
    LossSlice,
    eigenvector_direction,
    grid_cost,
    grid_size,
    landscape_slices,
    loss_slice,
    null_direction,
    random_direction,
    reference_direction,
)
from .symmetry import QuotientBasis, SymmetryTangents, quotient_basis, symmetry_tangents
from .verdicts import Contradiction, Divergence, DivergingPair, contradictions, divergence_verdict

__all__ = [
    "aitken_extrapolation",
    "align_reference",
    "Alignment",
    "classify_critical_point",
    "Contradiction",
    "contradictions",
    "CriticalPoint",
    "Direction",
    "Divergence",
    "divergence_verdict",
    "DivergingPair",
    "eigenvector_direction",
    "find_shallow",
    "grid_cost",
    "grid_size",
    "hessian_eigenvalues",
    "hessian_trace",
    "HessianOperator",
    "landscape_slices",
    "LandscapeProbe",
    "LandscapeSlices",
    "LandscapeSnapshot",
    "loss_slice",
    "LossSlice",
    "mlp_redundancy",
    "MLPRedundancy",
    "neuron_redundancy",
    "null_direction",
    "NullityCheck",
    "Objective",
    "one_point_convexity",
    "one_point_convexity_profile",
    "OnePointConvexity",
    "OnePointProfile",
    "OutputChange",
    "pl_ratio",
    "PLEstimate",
    "PLTracker",
    "ProbeResult",
    "quotient_basis",
    "QuotientBasis",
    "random_direction",
    "redundancy_nullity_check",
    "RedundancyFinding",
    "RedundancyReport",
    "reference_direction",
    "ShallowNetwork",
    "spectral_density",
    "SpectralDensity",
    "Spectrum",
    "Square",
    "symmetry_tangents",
    "SymmetryTangents",
    "TraceEstimate",
]
__version__ = "0.1.0"
