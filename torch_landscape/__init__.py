"""torch_landscape: watch the optimization landscape while you train.

Hessian spectra with error bounds, convexity checks (PL, one-point strong convexity, critical-point
classification) and neuron redundancy, for any PyTorch model and loss. The monitoring session
(:mod:`torch_landscape.monitoring`) runs them on a budget from any training loop; the Lightning callbacks in
``torch_landscape.callbacks`` are its adapters. The stages live in subpackages: :mod:`.curvature`,
:mod:`.critical`, :mod:`.convexity`, :mod:`.redundancy`, :mod:`.slices`, :mod:`.verdicts`.
"""

from .convexity import (
    Alignment,
    OnePointConvexity,
    OnePointProfile,
    PLEstimate,
    PLTracker,
    aitken_extrapolation,
    align_reference,
    one_point_convexity,
    one_point_convexity_profile,
    pl_ratio,
)
from .critical import CriticalPoint, NullProfile, classify_critical_point
from .curvature import (
    HessianOperator,
    PreconditionedOperator,
    QuotientBasis,
    ShallowNetwork,
    SpectralDensity,
    Spectrum,
    SymmetryTangents,
    TraceEstimate,
    find_shallow,
    hessian_eigenvalues,
    hessian_trace,
    quotient_basis,
    spectral_density,
    symmetry_tangents,
)
from .objective import Objective
from .probe import LandscapeProbe
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
from .settings import ProbeSettings
from .slices import (
    Direction,
    LandscapeSlices,
    LossSlice,
    eigenvector_direction,
    landscape_slices,
    loss_slice,
    null_direction,
    random_direction,
    reference_direction,
)
from .snapshot import LandscapeSnapshot
from .snapshot_state import snapshot_from_state, snapshot_to_state
from .stability import (
    StabilityReading,
    StabilitySetup,
    StabilityThreshold,
    preconditioned_sharpness,
    stability_reading,
    stability_setup,
)
from .verdicts import Contradiction, Divergence, DivergingPair, contradictions, divergence_verdict

__all__ = [
    # The objective
    "Objective",
    # Curvature
    "HessianOperator",
    "Spectrum",
    "hessian_eigenvalues",
    "TraceEstimate",
    "hessian_trace",
    "SpectralDensity",
    "spectral_density",
    "ShallowNetwork",
    "find_shallow",
    "SymmetryTangents",
    "symmetry_tangents",
    "QuotientBasis",
    "quotient_basis",
    "PreconditionedOperator",
    # The edge of stability of the optimizer in use
    "StabilitySetup",
    "StabilityThreshold",
    "StabilityReading",
    "stability_setup",
    "stability_reading",
    "preconditioned_sharpness",
    # Critical points
    "CriticalPoint",
    "NullProfile",
    "classify_critical_point",
    # Convexity
    "PLEstimate",
    "PLTracker",
    "pl_ratio",
    "aitken_extrapolation",
    "OnePointConvexity",
    "OnePointProfile",
    "one_point_convexity",
    "one_point_convexity_profile",
    "Alignment",
    "align_reference",
    # Neuron redundancy
    "RedundancyReport",
    "RedundancyFinding",
    "OutputChange",
    "MLPRedundancy",
    "NullityCheck",
    "neuron_redundancy",
    "mlp_redundancy",
    "redundancy_nullity_check",
    # Loss slices
    "Direction",
    "LossSlice",
    "LandscapeSlices",
    "loss_slice",
    "landscape_slices",
    "eigenvector_direction",
    "null_direction",
    "random_direction",
    "reference_direction",
    # Verdicts
    "Divergence",
    "DivergingPair",
    "divergence_verdict",
    "Contradiction",
    "contradictions",
    # Snapshots
    "ProbeSettings",
    "LandscapeProbe",
    "LandscapeSnapshot",
    "snapshot_to_state",
    "snapshot_from_state",
]
__version__ = "0.1.0"
