"""The Hessian of the training objective as a linear operator."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .objective import Data, LossFunction, Objective, check_finite, describe_size
from .shallow import structured_hessian, structured_products


def _available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


class HessianOperator:
    """H = ∇²L(θ), the Hessian of the objective at the model's current parameters, as a linear operator.

    For a one-hidden-layer network products come from its structure
    (:func:`~torch_landscape.shallow.structured_products`): a block of vectors is a few large matrix
    products. For any other model they are reverse-over-reverse: the gradient graph g(θ) = ∇L(θ) is built
    once (``create_graph``) and H·v = ∂(g·v)/∂θ is one backward pass through it, about one gradient; a
    block V is one vmapped backward (``is_grads_batched``).

    Parameters
    ----------
    model, loss_fn, data, params, dtype
        As for :class:`~torch_landscape.objective.Objective` (or pass an ``Objective`` as ``model``).

    Attributes
    ----------
    shape : tuple[int, int]
        (P, P).
    num_hvp : int
        Hessian-vector products computed so far (a block of k vectors counts k).
    """

    def __init__(
        self,
        model: nn.Module | Objective,
        loss_fn: LossFunction | None = None,
        data: Data | None = None,
        params: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if isinstance(model, Objective):
            self.objective = model
        else:
            if loss_fn is None or data is None:
                raise TypeError("HessianOperator needs model, loss_fn and data (or an Objective).")
            self.objective = Objective(model, loss_fn, data, params=params, dtype=dtype)
        size = self.objective.num_parameters
        self.shape = (size, size)
        self.dtype = self.objective.dtype
        self.device = self.objective.device
        self.num_hvp = 0
        self._products: Callable[[Tensor], Tensor] | None = None
        self._loss_and_gradient: tuple[Tensor, Tensor] | None = None
        self._dense: Tensor | None = None
        self._eigh: tuple[Tensor, Tensor] | None = None

    @property
    def loss(self) -> Tensor:
        """L(θ)."""
        return self._first_order()[0]

    @property
    def gradient(self) -> Tensor:
        """∇L(θ)."""
        return self._first_order()[1]

    def _first_order(self) -> tuple[Tensor, Tensor]:
        if self._loss_and_gradient is None:
            self._loss_and_gradient = self.objective.loss_and_gradient()
        return self._loss_and_gradient

    def _product_function(self) -> Callable[[Tensor], Tensor]:
        if self._products is None:
            self._products = structured_products(self.objective) or self._autograd_products()
        return self._products

    def _autograd_products(self) -> Callable[[Tensor], Tensor]:
        """Reverse-over-reverse products through a gradient graph built once (about one gradient each)."""
        theta = self.objective.theta.detach().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(self.objective.loss(theta), theta, create_graph=True)

        def products(block: Tensor) -> Tensor:
            with torch.enable_grad():
                if block.shape[1] == 1:
                    return torch.autograd.grad(gradient, theta, block[:, 0], retain_graph=True)[0][:, None]
                vectors = block.T.contiguous()
                return torch.autograd.grad(gradient, theta, vectors, retain_graph=True, is_grads_batched=True)[0].T

        return products

    def matvec(self, vector: Tensor) -> Tensor:
        """H v for one vector of length P."""
        if vector.shape != (self.shape[0],):
            raise ValueError(f"matvec expects a vector of shape ({self.shape[0]},), got {tuple(vector.shape)}.")
        return self.matmat(vector[:, None])[:, 0]

    def matmat(self, vectors: Tensor) -> Tensor:
        """H V for a block V of shape (P, k), all columns in one batched pass."""
        if vectors.ndim != 2 or vectors.shape[0] != self.shape[0]:
            raise ValueError(f"matmat expects a block of shape ({self.shape[0]}, k), got {tuple(vectors.shape)}.")
        block = vectors.to(device=self.device, dtype=self.dtype)
        product = self._product_function()(block)
        self.num_hvp += block.shape[1]
        return check_finite(product, "a Hessian-vector product")

    def __matmul__(self, other: Tensor) -> Tensor:
        return self.matvec(other) if other.ndim == 1 else self.matmat(other)

    def to_dense(self, chunk_size: int = 256) -> Tensor:
        """The full P×P Hessian, symmetrised and cached (do not modify it); raises MemoryError (naming the
        size) if it cannot fit.

        One-hidden-layer networks are assembled from their structure (:mod:`torch_landscape.shallow`),
        which costs far less than P Hessian-vector products; any other model column block by block.
        """
        if self._dense is not None:  # θ is fixed: spectrum, density and trace share one assembly
            return self._dense
        size = self.shape[0]
        needed = 3 * size * size * torch.empty((), dtype=self.dtype).element_size()
        if needed > _available_memory(self.device):
            raise MemoryError(
                f"a dense Hessian of {size} parameters needs about {describe_size(3 * size * size, self.dtype)}"
                " of memory, more than is available; use method='lanczos' (matrix-free) or params=[...] to "
                "restrict to a subset."
            )
        dense = structured_hessian(self.objective)
        if dense is None:
            dense = torch.empty(self.shape, dtype=self.dtype, device=self.device)
            eye = torch.eye(size, dtype=self.dtype, device=self.device)
            for start in range(0, size, chunk_size):
                dense[:, start : start + chunk_size] = self.matmat(eye[:, start : start + chunk_size])
        check_finite(dense, "the dense Hessian")
        self._dense = (dense + dense.T) / 2
        return self._dense

    def eigh(self) -> tuple[Tensor, Tensor]:
        """All eigenvalues (ascending) and eigenvectors of :meth:`to_dense`, computed once and cached (do not
        modify them): the spectrum, the density and the critical-point test of one θ share one
        decomposition."""
        if self._eigh is None:
            self._eigh = torch.linalg.eigh(self.to_dense())
        return self._eigh

    def to_scipy(self) -> Any:
        """A ``scipy.sparse.linalg.LinearOperator`` (float64 NumPy in and out) wrapping this operator."""
        from scipy.sparse.linalg import LinearOperator

        def matmat(block: np.ndarray) -> np.ndarray:
            block = torch.as_tensor(np.asarray(block).reshape(self.shape[0], -1))
            return self.matmat(block).detach().cpu().to(torch.float64).numpy()

        return LinearOperator(self.shape, matvec=lambda v: matmat(v).ravel(), matmat=matmat, dtype=np.float64)

    def __repr__(self) -> str:
        return f"HessianOperator(P={self.shape[0]}, dtype={self.dtype}, device={self.device}, num_hvp={self.num_hvp})"
