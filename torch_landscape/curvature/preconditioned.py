"""The Hessian seen through a diagonal preconditioner: M = D^{-1/2} (H + diag(w)) D^{-1/2}.

An optimizer that steps θ ← θ − η D⁻¹ g (Adam, RMSprop, Adagrad with their second-moment state frozen, or
SGD with a different step per parameter group) sees the curvature D⁻¹(H + diag(w)), w the coupled weight
decay. That matrix is not symmetric, but it is similar to the symmetric M above (M = D^{1/2}·D⁻¹(H + W)·D^{-1/2}),
so both have the same eigenvalues and λ_max(D⁻¹H) comes from the same Krylov solver and error bounds as
λ_max(H) (docs/theory.md §1.8).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .operators import LinearOperator, SymmetricOperator


class PreconditionedOperator(SymmetricOperator):
    """M = D^{-1/2} (H + diag(w)) D^{-1/2} for a positive diagonal D and an optional diagonal shift w.

    Parameters
    ----------
    operator
        H, any symmetric :class:`~torch_landscape.curvature.operators.LinearOperator` (a ``HessianOperator``).
    diagonal
        D, shape (P,), every entry positive; ``inf`` marks a coordinate the optimizer does not move (its row
        and column of M are 0).
    shift
        w, shape (P,) or a number (the coupled weight decay, which adds w·θ to the gradient); None for 0.

    Attributes
    ----------
    scale : Tensor
        D^{-1/2}, on the operator's device and dtype (0 where D is infinite).
    num_hvp : int
        Products with M computed so far (each is one product with H), and the products with H that its dense
        assembly needed (none when H's dense form was there already).
    """

    def __init__(self, operator: LinearOperator, diagonal: Tensor, shift: Tensor | float | None = None) -> None:
        if not isinstance(operator, LinearOperator):
            raise TypeError(
                f"operator must be a linear operator with shape, dtype, device and matmat (a HessianOperator), got "
                f"{type(operator).__name__}."
            )
        size = operator.shape[0]
        self.operator = operator
        self.shape = (size, size)
        self.dtype, self.device = operator.dtype, operator.device
        self.num_hvp = 0
        self.scale = _check_diagonal(diagonal, size).to(device=self.device, dtype=self.dtype).rsqrt()
        self.shift = None if shift is None else _check_shift(shift, size, self.dtype, self.device)

    def _products(self, block: Tensor) -> Tensor:
        scaled = self.scale[:, None] * block
        image = self.operator.matmat(scaled)
        if self.shift is not None:
            image = image + self.shift[:, None] * scaled
        return self.scale[:, None] * image

    def _assemble(self, chunk_size: int) -> Tensor:
        """From H's own dense form when it has one (cached by H, or structured: no further products)."""
        to_dense = getattr(self.operator, "to_dense", None)
        if to_dense is None:
            return super()._assemble(chunk_size)
        before = getattr(self.operator, "num_hvp", 0)
        dense = to_dense().to(self.dtype)
        self.num_hvp += getattr(self.operator, "num_hvp", 0) - before  # 0 when H was assembled already
        if self.shift is not None:
            dense = dense + torch.diag(self.shift)
        return self.scale[:, None] * dense * self.scale[None, :]


def _check_diagonal(diagonal: object, size: int) -> Tensor:
    if not isinstance(diagonal, Tensor) or not diagonal.is_floating_point():
        raise TypeError(f"diagonal must be a floating-point tensor of shape ({size},), got {type(diagonal).__name__}.")
    if diagonal.shape != (size,):
        raise ValueError(
            f"diagonal must have shape ({size},), one entry per parameter of the operator, got {tuple(diagonal.shape)}."
        )
    if not bool((diagonal > 0).all()):  # NaN fails too
        raise ValueError(
            "diagonal must be positive (a preconditioner such as √v̂ + ε; inf for a parameter the optimizer does not "
            "move), got entries ≤ 0 or NaN."
        )
    return diagonal


def _check_shift(shift: object, size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    if isinstance(shift, bool) or not isinstance(shift, (int, float, Tensor)):
        raise TypeError(f"shift must be a number or a tensor of shape ({size},), got {type(shift).__name__}.")
    values = torch.as_tensor(shift, dtype=dtype, device=device)
    if values.ndim == 0:
        values = values.expand(size)
    if values.shape != (size,) or not bool(torch.isfinite(values).all()):
        raise ValueError(f"shift must be finite, a number or of shape ({size},), got shape {tuple(values.shape)}.")
    return values
