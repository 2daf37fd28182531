"""Hessian eigenvalues: exact dense, and a matrix-free block Krylov solver with residual error bounds."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from ..objective import Data, LossFunction, Objective
from .krylov import KrylovBasis, _orthonormalize
from .operators import HessianOperator, LinearOperator
from .policy import DENSE_THRESHOLD

Which = Literal["largest", "smallest", "both"]
Method = Literal["auto", "dense", "lanczos"]


@dataclass(frozen=True)
class Spectrum:
    """Eigenvalues of the Hessian with an error bound for each.

    Attributes
    ----------
    eigenvalues : Tensor
        Ascending, float64, on the CPU. For ``which="both"`` the k smallest followed by the k largest.
    error_bounds : Tensor
        Same length: a bound on the distance from each value to an eigenvalue of H, plus a rounding
        allowance √P·ε·max|λ|. Dense path: the residual ‖Hv − λv‖ (‖v‖ = 1) of the computed pair. Lanczos:
        the residual norm, which holds for any unit vector (so also when the solve was cut short by
        ``max_hvp``); for a converged solve, min(‖r‖, ‖r‖²/δ) where the gap δ to the neighbouring Ritz
        values is certified (their residual intervals are disjoint and the value has settled), which
        assumes the Krylov space has seen every eigenvalue within δ. A Krylov method can miss an
        eigenvalue only if the start block is (nearly) orthogonal to its eigenspace.
    converged : bool
        Whether every bound reached ``tolerance``.
    num_hvp : int
        Hessian-vector products used (the dense path counts those of its assembly, 0 when structured).
    method : str
        "dense" or "lanczos".
    eigenvectors : Tensor or None
        (P, len(eigenvalues)) unit eigenvectors (Ritz vectors) on the model's device, when requested.
    num_parameters : int
        P.
    tolerance : float
        The relative tolerance worked to: ``tol``, or, where the bounds stalled at the rounding floor of the
        products above it (float32 at large P; a warning says so), the tolerance reached there. The dense
        path's rounding level √P·ε.
    quadrature : tuple[Tensor, Tensor] or None
        Lanczos from a random start without a restart: every Ritz value θ_j with the weight
        w_j = (1/b) Σ_{i ≤ b} S_ij² of the b start vectors, the Gauss quadrature of stochastic Lanczos
        quadrature (:func:`~torch_landscape.curvature.estimators.spectral_density` reuses it). None otherwise.
    """

    eigenvalues: Tensor
    error_bounds: Tensor
    converged: bool
    num_hvp: int
    method: str
    num_parameters: int
    eigenvectors: Tensor | None = field(default=None, repr=False)
    tolerance: float = math.nan
    quadrature: tuple[Tensor, Tensor] | None = field(default=None, repr=False)

    @property
    def lambda_min(self) -> float:
        """The smallest eigenvalue found (the smallest of H if the smallest end was asked for)."""
        return float(self.eigenvalues[0])

    @property
    def lambda_max(self) -> float:
        """The largest eigenvalue found (the largest of H if the largest end was asked for)."""
        return float(self.eigenvalues[-1])

    def __str__(self) -> str:
        values = ", ".join(
            f"{v:.6g}±{e:.1g}" for v, e in zip(self.eigenvalues.tolist(), self.error_bounds.tolist(), strict=True)
        )
        status = "converged" if self.converged else "NOT converged"
        return f"Spectrum({self.method}, P={self.num_parameters}, {status}, {self.num_hvp} HVPs): [{values}]"


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


def dense_spectrum(
    operator: HessianOperator, k: int | None = None, which: Which = "both", return_eigenvectors: bool = False
) -> Spectrum:
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
        tolerance=_rounding(operator.shape[0], 1.0, operator.dtype),
    )


def _positive_int(value: object, name: str, fix: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}); {fix}.")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}; {fix}.")


def check_solver_arguments(
    size: int | None,
    *,
    k: object = 1,
    which: object = "largest",
    tol: object = 1e-6,
    block_size: object = None,
    max_hvp: object = None,
    warm_start: object = None,
    method: object = "auto",
) -> None:
    """Raise the library's TypeError/ValueError, naming the argument and the fix, for bad solver input.

    ``size`` (P) may be None before the operator exists; the checks that need it are then skipped.
    """
    if which not in ("largest", "smallest", "both"):
        raise ValueError(f"which must be 'largest', 'smallest' or 'both', got {which!r}.")
    if method not in ("auto", "dense", "lanczos"):
        raise ValueError(f"method must be 'auto', 'dense' or 'lanczos', got {method!r}.")
    _positive_int(k, "k", "pass how many eigenvalues to compute at each end, e.g. k=5")
    if size is not None and isinstance(k, numbers.Integral) and int(k) > size:
        raise ValueError(f"k must be an integer between 1 and the number of parameters ({size}), got {k}.")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol must be a positive number such as 1e-6, got {tol!r}.")
    if not float(tol) > 0:  # also catches NaN
        raise ValueError(f"tol must be positive (relative to max|λ|), e.g. 1e-6, or 1e-3 for monitoring; got {tol}.")
    _positive_int(
        block_size, "block_size", "use 1 (one vector per product) or a small block such as 4", allow_none=True
    )
    _positive_int(
        max_hvp, "max_hvp", "give a budget of Hessian-vector products, or None for the default", allow_none=True
    )
    if warm_start is None:
        return
    if not isinstance(warm_start, Tensor) or not warm_start.is_floating_point():
        raise TypeError(f"warm_start must be a floating-point tensor of shape (P,) or (P, j), got {warm_start!r:.60}.")
    if size is not None and (warm_start.ndim not in (1, 2) or warm_start.shape[0] != size or warm_start.numel() == 0):
        raise ValueError(
            f"warm_start must have shape ({size},) or ({size}, j), one column per vector of the P = {size} "
            f"parameters, got {tuple(warm_start.shape)}; pass the previous Spectrum.eigenvectors of the same "
            "parameters."
        )
    if not bool(torch.isfinite(warm_start).all()):
        raise ValueError("warm_start has NaN or infinite entries; pass finite vectors (or None for a random start).")


def lanczos_spectrum(
    operator: LinearOperator,
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
    """The k largest and/or smallest eigenpairs of a symmetric operator by block Lanczos.

    A :class:`KrylovBasis` grows by the part of H·(last block) outside it (full reorthogonalisation); one
    Krylov space serves both ends of the spectrum. When it reaches ``max_basis`` vectors it is
    thick-restarted: the Ritz vectors nearest the wanted end(s) are kept with their images.

    Stops when every wanted Ritz pair (θ, v) has an error bound ≤ tol·max|θ| (see :func:`_error_bounds`),
    when the bounds have stalled near the products' rounding floor above that (:func:`_at_precision_floor`;
    converged at the tolerance reached, ``Spectrum.tolerance``, with a warning), after ``max_hvp`` products
    (``converged=False``; the bounds are then the residual norms ‖Hv − θv‖, which hold whatever the state of
    the solve), or when the basis spans the whole space (exact).
    """
    size = operator.shape[0]
    check_solver_arguments(
        size, k=k, which=which, tol=tol, block_size=block_size, max_hvp=max_hvp, warm_start=warm_start
    )
    generator = torch.Generator().manual_seed(seed)
    wanted = k * (2 if which == "both" else 1)
    block = min(block_size or 1, size)
    max_hvp = max_hvp if max_hvp is not None else max(20 * wanted, 1000 if which != "largest" else 300)
    max_basis, min_basis = _basis_limits(size, wanted, block, which, max_basis, warm_start is not None)
    start = _start_block(operator, block, generator, warm_start)
    basis = KrylovBasis(operator, generator, max_basis + block)
    used = basis.extend(start)
    next_check, ritz, converged, restarted, at_floor = 0, None, False, False, False
    history: list[tuple[int, float]] = []  # (products, the largest wanted bound) at each check
    while True:
        complete = basis.m >= size
        if (used >= next_check and basis.m >= min_basis) or complete or used >= max_hvp:
            # Rayleigh–Ritz and the residuals cost O(m³) + O(P·m·k), ~7% of a product for top-10 at 52k
            # parameters; checking after every ~5% more products wastes at most that many products.
            next_check = used + max(1, used // 20)
            ritz = _rayleigh_ritz(basis, k, which, ritz, complete)
            history.append((used, float(ritz.bounds[ritz.wanted].max())))
            converged = basis.m >= min_basis and history[-1][1] <= tol * ritz.scale
            at_floor = not converged and _at_precision_floor(history, _rounding(size, ritz.scale, operator.dtype))
            if converged or at_floor or complete or used >= max_hvp:
                break
        step = min(block, size - basis.m, max_hvp - used)
        new = basis.HQ[:, basis.m - step :]  # the block Lanczos recurrence; extend() orthonormalises it
        if basis.m + step > max_basis:
            new = _orthonormalize(new, basis.Q, generator)  # its direction, before the basis is compressed
            theta, S = basis.ritz()
            keep = _restart_indices(basis.m, which, max(max_basis // 2, 2 * wanted + 2 * step)).to(theta.device)
            basis.compress(S[:, keep], theta[keep])
            ritz, restarted = None, True  # the compressed basis's Ritz values are those kept: none moved
        used += basis.extend(new)
    # A solve cut short has not resolved the spectrum near its Ritz values: only the residual holds.
    bounds = (ritz.bounds if converged or at_floor or complete else ritz.residuals)[ritz.wanted]
    index = ritz.extended[ritz.wanted]
    tolerance = max(tol, float(bounds.max()) / ritz.scale) if at_floor and ritz.scale > 0 else tol
    if at_floor:
        warnings.warn(
            f"torch_landscape: the eigen-solver stopped at the precision of {operator.dtype} products (P = {size}): "
            f"its error bounds stopped falling at {tolerance:.2g} of max|λ|, above tol={tol:g}; it reports "
            f"convergence at that tolerance (Spectrum.tolerance). Evaluate in float64 for more.",
            RuntimeWarning,
            stacklevel=2,
        )
    return Spectrum(
        eigenvalues=ritz.values[index].detach().cpu().double(),
        error_bounds=(bounds + _rounding(size, ritz.scale, operator.dtype)).detach().cpu().double(),
        # Converged means the tolerance was met, also when the basis spans the whole space (issue 22).
        converged=bool((bounds <= tolerance * ritz.scale).all()),
        num_hvp=used,
        method="lanczos",
        num_parameters=size,
        eigenvectors=(basis.Q @ ritz.vectors[:, index]).detach() if return_eigenvectors else None,
        tolerance=tolerance,
        # The first b basis vectors are the orthonormalised Gaussian start block: a random b-dimensional subspace.
        quadrature=None if warm_start is not None or restarted else _quadrature(ritz, block),
    )


def _quadrature(ritz: _Ritz, block: int) -> tuple[Tensor, Tensor]:
    weights = (ritz.vectors[:block] ** 2).sum(dim=0) / block
    return ritz.values.detach().cpu().double(), weights.detach().cpu().double()


def _at_precision_floor(history: list[tuple[int, float]], floor: float) -> bool:
    """Whether the largest wanted bound has stalled within a decade of the products' rounding floor √P·ε·max|θ|:
    it did not halve over the last quarter of the products (at least 10). Issue 25: top-10 in float32 at 805k
    parameters and tol 1e-6 ran 300 products with its bounds stuck at 1e-4·λ_max, the floor there."""
    used, latest = history[-1]
    window = max(10, used // 4)
    before = [bound for products, bound in history if products <= used - window]
    since = [bound for products, bound in history if products > used - window]
    return latest <= 10 * floor and bool(before) and min(since) > 0.5 * min(before)


@dataclass(frozen=True)
class _Ritz:
    """One Rayleigh–Ritz step: the Ritz values (ascending) and coefficient vectors of the whole basis, and
    for the k + 1 pairs nearest each wanted end (``extended``; ``wanted`` marks the k of them asked for)
    their residual norms and error bounds (:func:`_error_bounds`)."""

    values: Tensor
    vectors: Tensor
    extended: Tensor
    wanted: Tensor
    residuals: Tensor
    bounds: Tensor
    scale: float


def _rayleigh_ritz(basis: KrylovBasis, k: int, which: Which, previous: _Ritz | None, complete: bool) -> _Ritz:
    theta, S = basis.ritz()
    index = _select(basis.m, min(k, basis.m), which).to(theta.device)
    # One more Ritz pair at each end than wanted: every wanted pair's neighbours have residuals.
    extended = _select(basis.m, min(k + 1, basis.m), which).to(theta.device)
    residuals = basis.residual_norms(S[:, extended], theta[extended])
    scale = float(theta.abs().max())
    if complete:  # all of H's eigenvalues are Ritz values of a complete basis: nothing can still move
        moved = torch.zeros_like(residuals)
    elif previous is None or len(previous.extended) != len(extended):
        moved = torch.full_like(residuals, math.inf)
    else:  # by rank; movement within the values' own rounding (float32 Ritz values jitter) is none
        moved = (theta[extended] - previous.values[previous.extended]).abs()
        moved = (moved - 10 * torch.finfo(theta.dtype).eps * scale).clamp_min(0)
    bounds = _error_bounds(theta[extended], residuals, moved)
    return _Ritz(theta, S, extended, torch.isin(extended, index), residuals, bounds, scale)


def _basis_limits(
    size: int, wanted: int, block: int, which: Which, max_basis: int | None, warm: bool
) -> tuple[int, int]:
    """(max_basis, min_basis): the basis size that triggers a thick restart, and the least size checked."""
    if max_basis is None:
        # Q and HQ together use at most ~2 GB, and never fewer vectors than the wanted ones need.
        max_basis = int(min(size, max(4 * wanted + 2 * block, min(600, 2e9 / (16 * size)))))
    max_basis = max(min(max_basis, size), min(size, 2 * wanted + 2 * block))
    # Too small a basis can hold a Ritz pair with a tiny residual that is not yet the extreme one. That
    # happens in the dense cluster near 0 (the smallest end), hardly among the few large outliers; a warm
    # start (last step's eigenvectors) already spans the likely extremes. Beyond this minimum, a Ritz
    # value must also have settled between two Rayleigh–Ritz steps before its refined bound counts.
    margin = 20 if which != "largest" else 3
    return max_basis, min(max_basis, wanted + (margin if not warm else margin // 2))


def _start_block(operator: LinearOperator, block: int, generator: torch.Generator, warm_start: Tensor | None) -> Tensor:
    """The first Lanczos block: random, or random combinations of the warm-start vectors."""
    size = operator.shape[0]
    start = torch.randn(size, block, generator=generator, dtype=torch.float64).to(operator.device, operator.dtype)
    if warm_start is None:
        return start
    warm = warm_start.reshape(size, -1).to(device=operator.device, dtype=operator.dtype)
    # The warm vectors seed the first block without widening it (a block of j vectors costs about twice
    # the products of a single-vector solve): random combinations of them, plus a little noise so that the
    # block is not exactly invariant when they already are eigenvectors.
    mixing = torch.randn(warm.shape[1], block, generator=generator, dtype=torch.float64).to(warm)
    return warm @ mixing + 1e-3 * start


def _error_bounds(values: Tensor, residuals: Tensor, moved: Tensor) -> Tensor:
    """Error bounds of Ritz values θ_i (ascending, contiguous at the wanted ends) with residuals ‖r_i‖.

    Some eigenvalue lies within ‖r_i‖ of θ_i (for any unit vector). If no other eigenvalue lies within
    δ of θ_i, one lies within ‖r_i‖²/δ (Kato–Temple). δ is the distance from θ_i to the nearest
    neighbouring interval [θ_j − ‖r_j‖, θ_j + ‖r_j‖], and the refinement min(‖r_i‖, ‖r_i‖²/δ) is used
    only where that gap is certified: the neighbours' intervals are disjoint from θ_i's own (δ > ‖r_i‖),
    and θ_i has settled — it moved by no more than the refined bound since the previous Rayleigh–Ritz
    (a Ritz value still drifting towards an eigenvalue the Krylov space has not resolved, e.g. one of a
    close pair, would otherwise claim a gap that is not there). Elsewhere the bound is ‖r_i‖.

    (Measured on the planted traps of tests/test_eigen.py at tolerances 1e-2 to 1e-8: comparing the
    movement with the bound claimed at the previous step instead stops top-1 solves up to three products
    earlier and misses 14 of 1,920 bounds, against 6 with this rule.)
    """
    if len(values) < 2:
        return residuals.clone()
    gap = (values[:, None] - values[None, :]).abs() - residuals[None, :]
    gap.fill_diagonal_(math.inf)
    gap = gap.min(dim=1).values
    refined = torch.minimum(residuals, residuals**2 / gap.clamp_min(torch.finfo(values.dtype).tiny))
    return torch.where((gap > residuals) & (moved <= refined), refined, residuals)


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
        Relative accuracy: Lanczos stops when the error bound of every wanted eigenvalue is at most
        tol·max|θ|, i.e. relative to the largest |λ| (for which="largest", to |λ_max| itself). 1e-6
        gives about six significant digits of λ_max; 1e-3 is a monitoring tolerance (a warm-started λ_max
        between training steps then takes a few products). The dense path is exact whatever ``tol``.
    block_size, max_hvp
        Lanczos block size and budget of Hessian-vector products.
    warm_start
        (P, j) vectors to start Lanczos from, e.g. the eigenvectors of the previous training step.
    seed
        Seed of the random start block (a private generator: the global RNG is untouched).
    return_eigenvectors
        Also return the eigenvectors in ``Spectrum.eigenvectors``.
    """
    check_solver_arguments(
        None, k=k, which=which, tol=tol, block_size=block_size, max_hvp=max_hvp, warm_start=warm_start, method=method
    )
    if isinstance(model, (nn.Module, Objective)):
        operator = HessianOperator(model, loss_fn, data, params=params, dtype=dtype)
    elif isinstance(model, LinearOperator):
        operator = model
    else:
        raise TypeError(
            f"model must be an nn.Module, an Objective or an operator with shape and matmat, got "
            f"{type(model).__name__}."
        )
    size = operator.shape[0]
    check_solver_arguments(size, k=k, warm_start=warm_start)
    if method == "dense" or (method == "auto" and size <= dense_threshold):
        return dense_spectrum(operator, k, which, return_eigenvectors)
    return lanczos_spectrum(
        operator,
        k,
        which,
        tol=tol,
        block_size=block_size,
        max_hvp=max_hvp,
        warm_start=warm_start,
        seed=seed,
        return_eigenvectors=return_eigenvectors,
    )
