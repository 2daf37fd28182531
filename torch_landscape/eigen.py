"""Hessian eigenvalues: exact dense, and a matrix-free block Krylov solver with residual error bounds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from .hessian import HessianOperator
from .objective import Data, LossFunction, Objective

Which = Literal["largest", "smallest", "both"]
Method = Literal["auto", "dense", "lanczos"]

#: ``method="auto"`` assembles the exact Hessian up to this many parameters. Measured on 2 CPU cores
#: (benchmarks/hessian_engine.py): at P ≈ 1000 assembly plus eigh takes about as long as a matrix-free
#: solve for k = 5 at both ends, and below it the dense path is both faster and exact.
DENSE_THRESHOLD = 1024


@dataclass(frozen=True)
class Spectrum:
    """Eigenvalues of the Hessian with an error bound for each.

    Attributes
    ----------
    eigenvalues : Tensor
        Ascending, float64, on the CPU. For ``which="both"`` the k smallest followed by the k largest.
    error_bounds : Tensor
        Same length: a bound on |λ_computed − λ_true|, the residual norm ‖Hv − λv‖ (‖v‖ = 1) plus a
        rounding allowance √P·ε·‖H‖. For a symmetric matrix some eigenvalue lies within ‖Hv − λv‖ of λ;
        a Krylov method can miss an eigenvalue only if the start block is orthogonal to its eigenspace.
    converged : bool
        Whether every bound reached the requested tolerance.
    num_hvp : int
        Hessian-vector products used (the dense path counts those of its assembly, 0 when structured).
    method : str
        "dense" or "lanczos".
    eigenvectors : Tensor or None
        (P, len(eigenvalues)) unit eigenvectors (Ritz vectors) on the model's device, when requested.
    num_parameters : int
        P.
    """

    eigenvalues: Tensor
    error_bounds: Tensor
    converged: bool
    num_hvp: int
    method: str
    num_parameters: int
    eigenvectors: Optional[Tensor] = field(default=None, repr=False)

    @property
    def lambda_min(self) -> float:
        """The smallest eigenvalue found (the smallest of H if the smallest end was asked for)."""
        return float(self.eigenvalues[0])

    @property
    def lambda_max(self) -> float:
        """The largest eigenvalue found (the largest of H if the largest end was asked for)."""
        return float(self.eigenvalues[-1])

    def __str__(self) -> str:
        values = ", ".join(f"{v:.6g}±{e:.1g}" for v, e in zip(self.eigenvalues.tolist(), self.error_bounds.tolist()))
        status = "converged" if self.converged else "NOT converged"
        return (
            f"Spectrum({self.method}, P={self.num_parameters}, {status}, {self.num_hvp} HVPs): [{values}]"
        )


def _rounding(size: int, scale: float, dtype: torch.dtype) -> float:
    return math.sqrt(size) * torch.finfo(dtype).eps * scale


def _select(count: int, k: int, which: str) -> Tensor:
    """Indices into ascending eigenvalues 0..count-1 for the k smallest and/or largest, ascending."""
    k = min(k, count)
    if which == "smallest":
        return torch.arange(k)
    if which == "largest":
        return torch.arange(count - k, count)
    return torch.unique(torch.cat([torch.arange(k), torch.arange(count - k, count)]))


def dense_spectrum(operator: HessianOperator, k: int | None = None, which: Which = "both",
                   return_eigenvectors: bool = False) -> Spectrum:
    """Exact eigenvalues from the assembled Hessian (``torch.linalg.eigh``); all of them when k is None."""
    before = operator.num_hvp
    dense = operator.to_dense()
    values, vectors = operator.eigh()
    index = _select(len(values), k if k is not None else len(values), which).to(values.device)
    values, vectors = values[index], vectors[:, index]
    residuals = torch.linalg.vector_norm(dense @ vectors - vectors * values, dim=0)
    scale = float(values.abs().max()) if len(values) else 0.0
    bounds = residuals + _rounding(operator.shape[0], scale, operator.dtype)
    return Spectrum(
        eigenvalues=values.detach().cpu().double(),
        error_bounds=bounds.detach().cpu().double(),
        converged=True,
        num_hvp=operator.num_hvp - before,
        method="dense",
        num_parameters=operator.shape[0],
        eigenvectors=vectors.detach() if return_eigenvectors else None,
    )


def _orthonormalize(block: Tensor, basis: Tensor, generator: torch.Generator) -> Tensor:
    """Orthonormal columns spanning ``block`` minus its part in span(basis); random where it is deficient.

    Classical Gram–Schmidt twice against the basis ("twice is enough"), then a QR within the block.
    """
    block = block.clone()
    for attempt in range(4):
        for _ in range(2):
            if basis.shape[1]:
                block -= basis @ (basis.T @ block)
        norms = torch.linalg.vector_norm(block, dim=0)
        q, r = torch.linalg.qr(block)
        scale = max(float(norms.max()), torch.finfo(block.dtype).tiny)
        deficient = r.diagonal().abs() <= 1e-10 * scale
        if not deficient.any():
            if basis.shape[1]:
                q -= basis @ (basis.T @ q)
                q, _ = torch.linalg.qr(q)
            return q
        fresh = torch.randn(block.shape[0], int(deficient.sum()), generator=generator, dtype=torch.float64)
        block[:, deficient] = fresh.to(block)
    raise RuntimeError("could not extend the Krylov basis (the operator has rank below the block size)")


def lanczos_spectrum(
    operator: HessianOperator,
    k: int,
    which: Which = "both",
    tol: float = 1e-6,
    block_size: int | None = None,
    max_hvp: int | None = None,
    max_basis: int | None = None,
    warm_start: Tensor | None = None,
    seed: int = 0,
    return_eigenvectors: bool = False,
) -> Spectrum:
    """The k largest and/or smallest eigenpairs by block Lanczos with full reorthogonalisation.

    The Krylov basis Q and its image HQ are both kept, so the Rayleigh–Ritz matrix T = QᵀHQ and the
    residual of every Ritz pair, ‖HQs − θQs‖, are exact without extra Hessian-vector products. One
    Krylov space serves both ends of the spectrum. When the basis reaches ``max_basis`` vectors it is
    thick-restarted: the wanted Ritz vectors (and as many neighbours) are kept with their images.

    Stops when every wanted pair has ‖Hv − θv‖ ≤ tol·max|θ|, or after ``max_hvp`` products
    (``converged=False``), or when the basis spans the whole space (exact).
    """
    size = operator.shape[0]
    dtype, device = operator.dtype, operator.device
    generator = torch.Generator().manual_seed(seed)
    wanted = min(k, size) * (2 if which == "both" else 1)
    block = max(1, min(block_size or 1, size))
    max_hvp = max_hvp if max_hvp is not None else max(20 * wanted, 1000 if which != "largest" else 300)
    if max_basis is None:
        # Q and HQ together use at most ~2 GB, and never fewer vectors than the wanted ones need.
        max_basis = int(min(size, max(4 * wanted + 2 * block, min(600, 2e9 / (16 * size)))))
    max_basis = max(min(max_basis, size), min(size, 2 * wanted + 2 * block))

    start = torch.randn(size, block, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    if warm_start is not None:
        warm = warm_start.reshape(size, -1).to(device=device, dtype=dtype)
        # The warm vectors seed the first block without widening it (a block of j vectors costs about
        # twice the products of a single-vector solve): random combinations of them, plus a little noise
        # so that the block is not exactly invariant when they already are eigenvectors.
        mixing = torch.randn(warm.shape[1], block, generator=generator, dtype=torch.float64).to(warm)
        start = warm @ mixing + 1e-3 * start
    # Too small a basis can hold a Ritz pair with a tiny residual that is not yet the extreme one. That
    # happens in the dense cluster near 0 (the smallest end), hardly among the few large outliers; a warm
    # start (last step's eigenvectors) already spans the likely extremes.
    margin = 20 if which != "largest" else 5
    min_basis = min(size, wanted + (margin if warm_start is None else margin // 2))
    # Preallocated basis, image and projection: growing them by concatenation would copy O(m²P).
    capacity = max_basis + block
    Q = torch.empty(size, capacity, dtype=dtype, device=device)
    HQ = torch.empty_like(Q)
    T = torch.zeros(capacity, capacity, dtype=dtype, device=device)
    m = 0

    def append(new: Tensor) -> None:
        nonlocal m
        image = operator.matmat(new)
        j = new.shape[1]
        coupling = Q[:, :m].T @ image
        T[:m, m : m + j], T[m : m + j, :m] = coupling, coupling.T
        T[m : m + j, m : m + j] = new.T @ image
        Q[:, m : m + j], HQ[:, m : m + j] = new, image
        m += j

    append(_orthonormalize(start, Q[:, :0], generator))
    used = block
    next_check = 0
    while True:
        complete = m >= size
        if (used >= next_check and m >= min_basis) or complete or used >= max_hvp:
            # Rayleigh–Ritz costs O(m³); doing it after every ~5% more products keeps it negligible.
            next_check = used + max(1, used // 20)
            theta, S = torch.linalg.eigh((T[:m, :m] + T[:m, :m].T) / 2)
            index = _select(m, min(k, m), which).to(theta.device)
            # One more Ritz pair at each end than wanted, so that every gap is to a pair with a residual.
            extended = _select(m, min(k + 1, m), which).to(theta.device)
            residual = HQ[:, :m] @ S[:, extended] - (Q[:, :m] @ S[:, extended]) * theta[extended]
            bounds = _refined_bounds(theta[extended], torch.linalg.vector_norm(residual, dim=0))
            norms = bounds[torch.isin(extended, index)]
            scale = float(theta.abs().max())
            converged = m >= min_basis and bool((norms <= tol * scale).all())
            if converged or complete or used >= max_hvp:
                ritz = Q[:, :m] @ S[:, index] if return_eigenvectors else None
                break
        # Next block: the part of H·(last block) outside the basis (the block Lanczos recurrence).
        step = min(block, size - m, max_hvp - used)
        new = _orthonormalize(HQ[:, m - step : m], Q[:, :m], generator)
        if m + step > max_basis:
            theta, S = torch.linalg.eigh((T[:m, :m] + T[:m, :m].T) / 2)
            keep = _restart_indices(m, which, max(max_basis // 2, 2 * wanted + 2 * step)).to(theta.device)
            r = len(keep)
            Q[:, :r], HQ[:, :r] = Q[:, :m] @ S[:, keep], HQ[:, :m] @ S[:, keep]
            T.zero_()
            T[:r, :r] = torch.diag(theta[keep])
            m = r
            new = _orthonormalize(new, Q[:, :m], generator)
        append(new)
        used += step
    values = theta[index]
    bounds = norms + _rounding(size, scale, dtype)
    return Spectrum(
        eigenvalues=values.detach().cpu().double(),
        error_bounds=bounds.detach().cpu().double(),
        converged=converged or complete,
        num_hvp=used,
        method="lanczos",
        num_parameters=size,
        eigenvectors=ritz.detach() if ritz is not None else None,
    )


def _refined_bounds(values: Tensor, residuals: Tensor) -> Tensor:
    """min(‖r‖, ‖r‖²/gap) for Ritz values with residual norms ‖r‖.

    ‖r‖ bounds the distance to the nearest eigenvalue; when the other eigenvalues stay at least ``gap``
    away, the error is at most ‖r‖²/gap (Kato–Temple). The gap is taken to the nearest other Ritz value
    less that value's own residual, as Lanczos codes do.
    """
    if len(values) < 2:
        return residuals
    gap = (values[:, None] - values[None, :]).abs() - residuals[None, :]
    gap.fill_diagonal_(math.inf)
    gap = gap.min(dim=1).values
    refined = residuals**2 / gap.clamp_min(torch.finfo(values.dtype).tiny)
    return torch.where(gap > residuals, torch.minimum(residuals, refined), residuals)


def _restart_indices(count: int, which: str, keep: int) -> Tensor:
    """The ``keep`` Ritz indices (of ``count``, ascending) nearest the wanted end(s) of the spectrum."""
    position = torch.arange(count)
    if which == "smallest":
        distance = position
    elif which == "largest":
        distance = count - 1 - position
    else:
        distance = torch.minimum(position, count - 1 - position)
    return torch.sort(torch.argsort(distance, stable=True)[: max(1, min(keep, count))]).values


def hessian_eigenvalues(
    model: nn.Module | Objective | HessianOperator,
    loss_fn: LossFunction | None = None,
    data: Data | None = None,
    k: int = 5,
    which: Which = "both",
    method: Method = "auto",
    *,
    params: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    tol: float = 1e-6,
    block_size: int | None = None,
    max_hvp: int | None = None,
    warm_start: Tensor | None = None,
    seed: int = 0,
    return_eigenvectors: bool = False,
    dense_threshold: int = DENSE_THRESHOLD,
) -> Spectrum:
    """The k largest and/or k smallest eigenvalues of the Hessian H = ∇²L(θ), with error bounds.

    Parameters
    ----------
    model, loss_fn, data, params, dtype
        The objective L (see :class:`~torch_landscape.objective.Objective`); or pass a ready
        ``HessianOperator`` or ``Objective`` as ``model``.
    k
        How many eigenvalues from each requested end.
    which
        ``"largest"``, ``"smallest"`` or ``"both"``.
    method
        ``"dense"``: assemble H and call ``torch.linalg.eigh`` (exact, all eigenvalues available).
        ``"lanczos"``: matrix-free block Lanczos (:func:`lanczos_spectrum`).
        ``"auto"``: dense when P ≤ ``dense_threshold``, otherwise Lanczos.
    tol
        Lanczos stops when every residual ‖Hv − θv‖ ≤ tol · max|θ| (the error bound of each eigenvalue).
    block_size, max_hvp
        Lanczos block size and budget of Hessian-vector products.
    warm_start
        (P, j) vectors to start Lanczos from, e.g. the eigenvectors of the previous training step.
    seed
        Seed of the random start block (a private generator: the global RNG is untouched).
    return_eigenvectors
        Also return the eigenvectors in ``Spectrum.eigenvectors``.
    """
    if which not in ("largest", "smallest", "both"):
        raise ValueError(f"which must be 'largest', 'smallest' or 'both', got {which!r}.")
    if method not in ("auto", "dense", "lanczos"):
        raise ValueError(f"method must be 'auto', 'dense' or 'lanczos', got {method!r}.")
    if isinstance(model, HessianOperator):
        operator = model
    else:
        operator = HessianOperator(model, loss_fn, data, params=params, dtype=dtype)
    size = operator.shape[0]
    if not isinstance(k, int) or k <= 0 or k > size:
        raise ValueError(f"k must be an integer between 1 and the number of parameters ({size}), got {k!r}.")
    if tol <= 0:
        raise ValueError(f"tol must be positive, got {tol}.")
    if method == "dense" or (method == "auto" and size <= dense_threshold):
        return dense_spectrum(operator, k, which, return_eigenvectors)
    return lanczos_spectrum(
        operator, k, which, tol=tol, block_size=block_size, max_hvp=max_hvp, warm_start=warm_start,
        seed=seed, return_eigenvectors=return_eigenvectors,
    )
