"""The Hessian of the training objective as a linear operator (defined in :mod:`torch_landscape.operators`).

Kept so that ``from torch_landscape.hessian import HessianOperator`` goes on working.
"""

from .operators import AutogradHessian, HessianOperator, StructuredHessian

__all__ = ["AutogradHessian", "HessianOperator", "StructuredHessian"]
