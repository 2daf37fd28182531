"""torch_landscape: watch the optimization landscape while you train.

Hessian spectra with error bounds, convexity checks (PL, one-point strong convexity, critical-point
classification) and neuron redundancy, for any PyTorch model and loss; Lightning callbacks in
``torch_landscape.callbacks``.
"""

from .eigen import Spectrum, hessian_eigenvalues
from .estimators import SpectralDensity, TraceEstimate, hessian_trace, spectral_density
from .hessian import HessianOperator
from .objective import Objective
from .shallow import ShallowNetwork, Square, find_shallow

__all__ = [
    "HessianOperator",
    "Objective",
    "ShallowNetwork",
    "SpectralDensity",
    "Spectrum",
    "Square",
    "TraceEstimate",
    "find_shallow",
    "hessian_eigenvalues",
    "hessian_trace",
    "spectral_density",
]
__version__ = "0.1.0"
