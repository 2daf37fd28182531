"""Symmetric linear operators that the eigen-solvers and estimators accept, and the Hessian among them.

The solvers need only a :class:`LinearOperator`: ``shape``, ``dtype``, ``device`` and ``matmat(V) = H V``.
Members here:

* :class:`MatrixOperator` — an explicit symmetric matrix (tests, synthetic spectra);
* :class:`HessianOperator` — H = ∇²L(θ) of an objective. Constructing one picks the cheapest kind for the
  model and size (:func:`hessian_operator_class`): :class:`AutogradHessian` (reverse-over-reverse through
  a gradient graph built once) or :class:`StructuredHessian` (one-hidden-layer networks, whose exact
  Hessian and products come from the structure, :mod:`torch_landscape.curvature.shallow`);
* :class:`QuotientOperator` — Bᵀ H B for an orthonormal basis B of a subspace (the Hessian on the
  complement of the symmetry directions).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..objective import Data, LossFunction, Objective, as_objective, check_finite, describe_size
from .shallow import shallow_layers
from .structured import STRUCTURE, shallow_structure, structured_hessian, structured_products

#: Up to this many parameters a one-hidden-layer network's products come from its structure; above it too
#: when the structure is at hand already (its L and ∇L, or the exact trace, asked for first, as a probe
#: does), else through the kept gradient graph. benchmarks/products.py (2 CPU threads, per vector, in
#: gradients, load 0.8): a structured product costs less (P = 321: 0.76-0.86 vs 1.34-1.46 through the graph;
#: 2,561: 0.60-0.82 vs 1.43-1.95; 10,241: 1.10-1.20 vs 2.54-2.68) but its set-up more (1.6-2.6 against
#: the graph's 0.8-1.5), which pays after a few products; a probe builds the structure anyway.
STRUCTURED_PRODUCT_LIMIT = 2048


@runtime_checkable
class LinearOperator(Protocol):
    """What the solvers need: a square symmetric operator that multiplies a block of vectors."""

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def matmat(self, vectors: Tensor) -> Tensor:
        """H V for V of shape (P, k)."""
        ...


def twice_differentiable() -> contextlib.AbstractContextManager:
    """Scaled-dot-product attention by its math kernel within: the fused CPU kernels (flash attention) have
    no second derivative, the math kernel's operations do, and its values are exact (issue 22)."""
    return sdpa_kernel(SDPBackend.MATH)


def available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


class SymmetricOperator:
    """Shared behaviour of the operators here: checked and counted products, dense form, SciPy view.

    Subclasses set ``shape``, ``dtype`` and ``device`` and implement ``_products(block)``.

    Attributes
    ----------
    num_hvp : int
        Products computed so far (a block of k vectors counts k).
    product_seconds : float
        The wall time they took (what a product costs, for the monitor's schedule).
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    num_hvp: int = 0
    product_seconds: float = 0.0
    _dense: Tensor | None = None
    _eigh: tuple[Tensor, Tensor] | None = None

    def _products(self, block: Tensor) -> Tensor:
        raise NotImplementedError

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
        begin = time.perf_counter()
        product = self._products(block)
        self.product_seconds += time.perf_counter() - begin
        self.num_hvp += block.shape[1]
        return check_finite(product, "a Hessian-vector product")

    def __matmul__(self, other: Tensor) -> Tensor:
        return self.matvec(other) if other.ndim == 1 else self.matmat(other)

    def _check_dense_memory(self) -> None:
        size = self.shape[0]
        needed = 3 * size * size * torch.empty((), dtype=self.dtype).element_size()
        if needed > available_memory(self.device):
            raise MemoryError(
                f"a dense Hessian of {size} parameters needs about {describe_size(3 * size * size, self.dtype)}"
                " of memory, more than is available; use method='lanczos' (matrix-free) or params=[...] to "
                "restrict to a subset."
            )

    def _assemble(self, chunk_size: int) -> Tensor:
        """The matrix column block by column block, by products with unit vectors."""
        size = self.shape[0]
        dense = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        eye = torch.eye(size, dtype=self.dtype, device=self.device)
        for start in range(0, size, chunk_size):
            dense[:, start : start + chunk_size] = self.matmat(eye[:, start : start + chunk_size])
        return dense

    def to_dense(self, chunk_size: int = 256) -> Tensor:
        """The full P×P matrix, symmetrised and cached (do not modify it); raises MemoryError (naming the
        size) if it cannot fit."""
        if self._dense is None:  # the operator is fixed: spectrum, density and trace share one assembly
            self._check_dense_memory()
            dense = check_finite(self._assemble(chunk_size), "the dense Hessian")
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
        from scipy.sparse.linalg import LinearOperator as ScipyOperator

        def matmat(block: np.ndarray) -> np.ndarray:
            columns = torch.as_tensor(np.asarray(block).reshape(self.shape[0], -1))
            return self.matmat(columns).detach().cpu().to(torch.float64).numpy()

        return ScipyOperator(self.shape, matvec=lambda v: matmat(v).ravel(), matmat=matmat, dtype=np.float64)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(P={self.shape[0]}, dtype={self.dtype}, device={self.device}, "
            f"num_hvp={self.num_hvp})"
        )


class MatrixOperator(SymmetricOperator):
    """An explicit symmetric matrix as an operator (synthetic spectra, small exact problems)."""

    def __init__(self, matrix: Tensor) -> None:
        if not isinstance(matrix, Tensor) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError("MatrixOperator needs a square 2-d tensor.")
        if not torch.equal(matrix, matrix.T):
            raise ValueError("MatrixOperator needs a symmetric matrix; pass (M + M.T) / 2.")
        self.matrix = matrix
        self.shape = (matrix.shape[0], matrix.shape[0])
        self.dtype, self.device = matrix.dtype, matrix.device
        self.num_hvp = 0

    def _products(self, block: Tensor) -> Tensor:
        return self.matrix @ block

    def _assemble(self, chunk_size: int) -> Tensor:
        return self.matrix.clone()


class QuotientOperator(SymmetricOperator):
    """H_q = Bᵀ H B on R^{P−r}, for an orthonormal basis B of the complement of r directions.

    ``basis`` provides ``size`` (P), ``rank`` (r), ``extend`` (x ↦ B x) and ``restrict`` (y ↦ Bᵀ y), as
    :class:`~torch_landscape.curvature.symmetry.QuotientBasis` does.
    """

    def __init__(self, operator: LinearOperator, basis: Any) -> None:
        self.operator, self.basis = operator, basis
        size = basis.size - basis.rank
        self.shape = (size, size)
        self.dtype, self.device = operator.dtype, operator.device
        self.num_hvp = 0

    def _products(self, block: Tensor) -> Tensor:
        return self.basis.restrict(self.operator.matmat(self.basis.extend(block)))


class HessianOperator(SymmetricOperator):
    """H = ∇²L(θ), the Hessian of the objective at the model's current parameters, as a linear operator.

    ``HessianOperator(model, loss_fn, data)`` returns the kind that suits the model and size
    (:func:`hessian_operator_class`): an :class:`AutogradHessian` or a :class:`StructuredHessian`.

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
    objective : Objective
        L as a function of flat θ.
    """

    objective: Objective

    def __new__(
        cls,
        model: nn.Module | Objective | None = None,
        loss_fn: LossFunction | None = None,
        data: Data | None = None,
        params: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
    ) -> HessianOperator:
        if model is None:  # copy and pickle re-create the instance without arguments, then fill its state
            return super().__new__(cls)
        objective = as_objective(model, loss_fn, data, params=params, dtype=dtype)
        kind = hessian_operator_class(objective) if cls is HessianOperator else cls
        operator = super().__new__(kind)
        operator.objective = objective
        return operator

    def __init__(
        self,
        model: nn.Module | Objective,
        loss_fn: LossFunction | None = None,
        data: Data | None = None,
        params: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        size = self.objective.num_parameters
        self.shape = (size, size)
        self.dtype = self.objective.dtype
        self.device = self.objective.device
        self.num_hvp = 0
        self._graph: tuple[Tensor, Tensor] | None = None
        self._product_function: Callable[[Tensor], Tensor] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The kept gradient graph can be neither copied nor pickled: a copy builds its own when it needs one.
        return {**self.__dict__, "_graph": None, "_product_function": None}

    @property
    def loss(self) -> Tensor:
        """L(θ)."""
        return self._first_order()[0]

    @property
    def gradient(self) -> Tensor:
        """∇L(θ)."""
        return self._first_order()[1]

    def _first_order(self) -> tuple[Tensor, Tensor]:
        # Shared through the objective: whatever computes L and ∇L at this θ first serves every other user.
        return self.objective.memo("first order", self._compute_first_order)

    def _compute_first_order(self) -> tuple[Tensor, Tensor]:
        # The products will need the gradient graph: L and ∇L come with it, for the price of its
        # create_graph backward instead of a plain gradient and then the graph.
        self._gradient_graph()
        return self.objective.first_order()

    def _gradient_graph(self) -> tuple[Tensor, Tensor]:
        """(θ, g(θ) = ∇L(θ) with ``create_graph``): built once, kept for the operator's life; L and ∇L
        are recorded on the objective on the way."""
        if self._graph is None:
            theta = self.objective.theta.detach().requires_grad_(True)
            with torch.enable_grad(), twice_differentiable():
                loss = self.objective.loss(theta)
                (gradient,) = torch.autograd.grad(loss, theta, create_graph=True)
            self.objective.memo(
                "first order", lambda: self.objective.reduce_first_order(loss.detach(), gradient.detach())
            )
            self._graph = theta, gradient
        return self._graph

    def _products(self, block: Tensor) -> Tensor:
        if self._product_function is None:
            self._product_function = self._make_products()
        # With a process group each rank's function multiplies by its share of H: the sum is H V.
        return self.objective.all_reduce(self._product_function(block))

    def _make_products(self) -> Callable[[Tensor], Tensor]:
        """Reverse-over-reverse products through the kept gradient graph, H v = ∂(g·v)/∂θ, one backward
        pass of the scalar g·v per vector (about one gradient each).

        One at a time, not batched: torch's batched backward (``is_grads_batched``, a vmap) cost 2.3-4.2
        gradients per vector at 52k parameters against 1.0-1.5 one by one, and a backward with a vector
        ``grad_outputs`` makes torch import sympy on first use (0.3-0.8 s); a scalar's does neither
        (benchmarks/products.py)."""
        theta, gradient = self._gradient_graph()

        def products(block: Tensor) -> Tensor:
            with torch.enable_grad():
                columns = [
                    torch.autograd.grad(gradient @ block[:, i], theta, retain_graph=True)[0]
                    for i in range(block.shape[1])
                ]
            return torch.stack(columns, dim=1)

        return products


class AutogradHessian(HessianOperator):
    """The Hessian of any objective: products through a kept gradient graph, dense form by P products."""


class StructuredHessian(HessianOperator):
    """The Hessian of a one-hidden-layer network's objective (Linear → activation → Linear).

    L, ∇L, the dense matrix (:func:`~torch_landscape.curvature.structured.structured_hessian`, far cheaper
    than P products) and the exact diagonal come from the network's structure, computed once per θ
    (:func:`~torch_landscape.curvature.structured.shallow_structure`); products come from the structure up
    to ``STRUCTURED_PRODUCT_LIMIT`` parameters and through the kept gradient graph above, where that is
    cheaper.
    """

    def _compute_first_order(self) -> tuple[Tensor, Tensor]:
        structure = shallow_structure(self.objective)
        if structure is None:
            return super()._compute_first_order()
        return self.objective.reduce_first_order(structure.loss, structure.gradient)

    def _make_products(self) -> Callable[[Tensor], Tensor]:
        if self.shape[0] <= STRUCTURED_PRODUCT_LIMIT or self.objective.memoized(STRUCTURE):
            products = structured_products(self)
            if products is not None:
                return products
        return super()._make_products()

    def _assemble(self, chunk_size: int) -> Tensor:
        dense = structured_hessian(self)
        return self.objective.all_reduce(dense) if dense is not None else super()._assemble(chunk_size)


def hessian_operator_class(objective: Objective) -> type[HessianOperator]:
    """The Hessian operator for the objective: structured when the model has the layers of a
    one-hidden-layer network holding all of θ, autograd otherwise.

    The test is structural and costs nothing; whether the forward really is output(σ(hidden(x))) is
    checked (one forward pass) only when the structure is first used — by a dense assembly, or by the
    products of a network small enough for them to win — and the generic path is taken if it is not.
    """
    structured = objective.sample_mean and shallow_layers(objective) is not None  # a population loss: autograd
    return StructuredHessian if structured else AutogradHessian
