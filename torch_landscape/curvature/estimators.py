"""Hessian trace and spectral density: exact where the structure allows, stochastic otherwise."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..objective import Data, LossFunction, Objective
from ..settings import check_positive_int
from .eigen import Spectrum
from .krylov import KrylovBasis, _orthonormalize
from .operators import HessianOperator
from .policy import DENSE_THRESHOLD
from .structured import structured_diagonal

TraceMethod = Literal["auto", "exact", "dense", "hutchpp"]
DensityMethod = Literal["auto", "dense", "slq"]


def _operator(model, loss_fn, data, params, dtype) -> HessianOperator:
    if isinstance(model, HessianOperator):
        return model
    return HessianOperator(model, loss_fn, data, params=params, dtype=dtype)


def _rademacher(size: int, count: int, generator: torch.Generator, like: Tensor) -> Tensor:
    signs = torch.randint(0, 2, (size, count), generator=generator, dtype=torch.int8)
    return signs.to(dtype=like.dtype, device=like.device) * 2 - 1


@dataclass(frozen=True)
class TraceEstimate:
    """tr H with its standard error (0 when exact).

    Attributes
    ----------
    value, standard_error : float
    num_hvp : int
    method : str
        "exact" (closed-form diagonal of a shallow network), "dense" or "hutchpp".
    """

    value: float
    standard_error: float
    num_hvp: int
    method: str

    def __str__(self) -> str:
        if self.standard_error == 0:
            source = "closed-form diagonal" if self.method == "exact" else "dense Hessian"
            return f"trace = {self.value:.10g} (exact, {source})"
        return f"trace = {self.value:.6g} ± {self.standard_error:.2g} ({self.method}, {self.num_hvp} HVPs)"


def hessian_trace(
    model: nn.Module | Objective | HessianOperator,
    loss_fn: LossFunction | None = None,
    data: Data | None = None,
    method: TraceMethod = "auto",
    *,
    num_hvp: int = 99,
    params: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    dense_threshold: int = DENSE_THRESHOLD,
) -> TraceEstimate:
    """tr H, the trace of the Hessian of the objective.

    ``"exact"``: the closed-form diagonal of a one-hidden-layer network (about one forward pass,
    :func:`~torch_landscape.curvature.shallow.structured_diagonal`). ``"dense"``: the trace of the assembled
    Hessian. ``"hutchpp"``: Hutch++ (Meyer et al. 2021) with ``num_hvp`` products — a third sketch
    Q = orth(H S), the exact tr(QᵀHQ), and Hutchinson on (I − QQᵀ)H(I − QQᵀ) with Rademacher vectors:

        tr H ≈ tr(QᵀHQ) + (1/s) Σ_i g_iᵀ(I − QQᵀ)H(I − QQᵀ)g_i,

    whose standard error is the sample standard deviation of the Hutchinson terms over √s.
    ``"auto"``: exact if the structure is recognised, else dense below ``dense_threshold`` parameters,
    else Hutch++.
    """
    if method not in ("auto", "exact", "dense", "hutchpp"):
        raise ValueError(f"method must be 'auto', 'exact', 'dense' or 'hutchpp', got {method!r}.")
    for name, argument in (("num_hvp", num_hvp), ("seed", seed)):
        if isinstance(argument, bool) or not isinstance(argument, int):
            raise TypeError(f"{name} must be an integer, got {argument!r}.")
    operator = _operator(model, loss_fn, data, params, dtype)
    size = operator.shape[0]
    if method in ("auto", "exact"):
        diagonal = structured_diagonal(operator)
        if diagonal is not None:
            return TraceEstimate(float(diagonal.sum()), 0.0, 0, "exact")
        if method == "exact":
            raise ValueError(
                "method='exact' needs a one-hidden-layer network (Linear → activation → Linear) with a "
                "per-sample loss; use method='dense' or 'hutchpp'."
            )
    if method == "dense" or (method == "auto" and size <= dense_threshold):
        before = operator.num_hvp
        value = float(torch.diagonal(operator.to_dense()).sum())
        return TraceEstimate(value, 0.0, operator.num_hvp - before, "dense")
    if num_hvp < 6:
        raise ValueError(f"Hutch++ needs num_hvp >= 6 (two per third), got {num_hvp}.")
    generator = torch.Generator().manual_seed(seed)
    sketch = min(num_hvp // 3, size)
    samples = (num_hvp - sketch) // 2
    reference = operator.objective.theta
    Q = _orthonormalize(
        operator.matmat(_rademacher(size, sketch, generator, reference)), reference.new_zeros(size, 0), generator
    )
    low_rank = float(torch.trace(Q.T @ operator.matmat(Q)))
    probes = _rademacher(size, samples, generator, reference)
    probes -= Q @ (Q.T @ probes)
    terms = (probes * operator.matmat(probes)).sum(dim=0)
    standard_error = float(terms.std() / math.sqrt(samples)) if samples > 1 else math.inf
    return TraceEstimate(low_rank + float(terms.mean()), standard_error, sketch * 2 + samples, "hutchpp")


@dataclass(frozen=True)
class SpectralDensity:
    """An eigenvalue density: a discrete measure (nodes, weights) and its Gaussian smoothing on a grid.

    Attributes
    ----------
    nodes, weights : Tensor
        Eigenvalues (dense) or Ritz values (SLQ) and their weights, summing to 1.
    grid, density : Tensor
        The density Σ_i w_i N(x; node_i, σ²) on a linear grid; it integrates to about 1.
    bandwidth : float
        σ of the Gaussian smoothing.
    method : str
        "dense" (exact eigenvalues) or "slq" (stochastic Lanczos quadrature).
    num_hvp : int
    """

    nodes: Tensor
    weights: Tensor
    grid: Tensor
    density: Tensor
    bandwidth: float
    method: str
    num_hvp: int

    def histogram(self, bins: int = 50) -> tuple[Tensor, Tensor]:
        """(counts as fractions, bin edges) of the discrete measure; exact eigenvalue counts when dense."""
        low, high = float(self.nodes.min()), float(self.nodes.max())
        if high == low:
            high = low + 1.0
        edges = torch.linspace(low, high, bins + 1, dtype=torch.float64)
        counts = torch.histogram(self.nodes, bins=edges, weight=self.weights).hist
        return counts, edges


def _smooth(nodes: Tensor, weights: Tensor, num_points: int, bandwidth: float | None) -> tuple[Tensor, Tensor, float]:
    scale = float(nodes.abs().max()) or 1.0
    sigma = bandwidth if bandwidth is not None else 1e-2 * scale
    low, high = float(nodes.min()) - 5 * sigma, float(nodes.max()) + 5 * sigma
    grid = torch.linspace(low, high, num_points, dtype=torch.float64)
    kernel = torch.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return grid, kernel @ weights, sigma


def spectral_density(
    model: nn.Module | Objective | HessianOperator,
    loss_fn: LossFunction | None = None,
    data: Data | None = None,
    method: DensityMethod = "auto",
    *,
    num_probes: int = 3,
    num_steps: int = 80,
    num_points: int = 512,
    bandwidth: float | None = None,
    params: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    dense_threshold: int = DENSE_THRESHOLD,
    spectrum: Spectrum | None = None,
) -> SpectralDensity:
    """The spectral density of the Hessian, φ(t) = (1/P) Σ_i δ(t − λ_i), smoothed by a Gaussian.

    ``"dense"``: the exact eigenvalues with weights 1/P. ``"slq"``: stochastic Lanczos quadrature
    (Golub–Meurant; Ghorbani et al. 2019) in its block form, on the solvers' own Krylov basis
    (:class:`~torch_landscape.curvature.krylov.KrylovBasis`): the ``num_probes`` Gaussian probes, orthonormalised
    to V (a uniformly random b-dimensional subspace, b = ``num_probes``), start a block Krylov space of
    ``num_steps`` blocks. With T = QᵀHQ = S diag(θ) Sᵀ,

        (1/P) tr g(H) = E[(1/b) tr Vᵀ g(H) V] ≈ Σ_j w_j g(θ_j),    w_j = (1/b) Σ_{i ≤ b} S_ij²,

    a Gauss quadrature exact for polynomials g of degree < 2·``num_steps``. One batched product of b
    vectors per step. ``"auto"``: dense up to ``dense_threshold`` parameters. Default bandwidth
    σ = 10⁻²·max|λ| (PyHessian's convention).

    ``spectrum``: a Lanczos spectrum of the same operator solved from a random start without a restart
    (``Spectrum.quadrature`` is set): its Krylov space is such a quadrature already (b = its block size),
    so the density costs no further product; ``num_probes`` and ``num_steps`` are then those of the solve.
    """
    if method not in ("auto", "dense", "slq"):
        raise ValueError(f"method must be 'auto', 'dense' or 'slq', got {method!r}.")
    check_positive_int("num_points", num_points)
    if bandwidth is not None and (
        isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not 0 < bandwidth < math.inf
    ):
        raise ValueError(f"bandwidth must be a positive finite σ (or None for 1e-2·max|λ|), got {bandwidth!r}.")
    for name, value in (("num_probes", num_probes), ("num_steps", num_steps), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, got {value!r}.")
    operator = _operator(model, loss_fn, data, params, dtype)
    size = operator.shape[0]
    before = operator.num_hvp
    if method == "dense" or (method == "auto" and size <= dense_threshold):
        nodes = operator.eigh()[0].detach().cpu().double()
        weights = torch.full_like(nodes, 1.0 / size)
        grid, density, sigma = _smooth(nodes, weights, num_points, bandwidth)
        return SpectralDensity(nodes, weights, grid, density, sigma, "dense", operator.num_hvp - before)
    if num_probes < 1 or num_steps < 1:
        raise ValueError("num_probes and num_steps must be positive.")
    if spectrum is not None and spectrum.quadrature is not None and spectrum.num_parameters == size:
        nodes, weights = spectrum.quadrature
    else:
        nodes, weights = _block_quadrature(operator, min(num_probes, size), num_steps, seed)
    grid, density, sigma = _smooth(nodes, weights, num_points, bandwidth)
    return SpectralDensity(nodes, weights, grid, density, sigma, "slq", operator.num_hvp - before)


def _block_quadrature(operator: HessianOperator, probes: int, steps: int, seed: int) -> tuple[Tensor, Tensor]:
    """Nodes θ_j and weights w_j of the block Lanczos quadrature started from ``probes`` random vectors."""
    size = operator.shape[0]
    generator = torch.Generator().manual_seed(seed)
    limit = min(size, probes * steps)
    basis = KrylovBasis(operator, generator, limit)
    start = torch.randn(size, probes, generator=generator, dtype=torch.float64)
    basis.extend(start.to(device=operator.device, dtype=operator.dtype))
    while basis.m < limit:
        basis.extend(basis.HQ[:, basis.m - probes : basis.m - probes + min(probes, limit - basis.m)])
    theta, S = basis.ritz()
    weights = (S[:probes] ** 2).sum(dim=0) / probes
    return theta.detach().cpu().double(), weights.detach().cpu().double()
