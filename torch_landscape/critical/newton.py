"""The first-order test of a critical point: the shortest step to a zero gradient up to rounding (docs/theory.md §1.2).

:func:`criticality` is the one home of the test; :func:`~torch_landscape.critical.classify.classify_critical_point` and
:func:`~torch_landscape.redundancy.redundancy_nullity_check` both use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..curvature.eigen import _rounding
from ..curvature.operators import HessianOperator

#: MINRES steps for the Newton step ‖H⁺∇L‖ on the Lanczos path (one Hessian-vector product each); the dense
#: path computes it exactly from the eigendecomposition.
NEWTON_KRYLOV_STEPS = 50


@dataclass(frozen=True)
class _Spectra:
    """Stage 1: the eigenvalues of H (with error bounds) and of H_q, and H applied to the symmetry tangents."""

    values: Tensor
    bounds: Tensor
    vectors: Tensor | None  # all eigenvectors on the dense path, None on the Lanczos path
    quotient_values: Tensor
    quotient_vectors: Tensor | None
    image: Tensor  # H V
    converged: bool
    dense: bool


def gradient_rounding(size: int, dtype: torch.dtype, scale: float, norm: float, loss: float) -> float:
    """The rounding level of a computed ∇L, 10·√P·ε·(s‖θ‖ + √(2s|L|)): θ is known to ε‖θ‖, which moves ∇L
    by up to s·ε‖θ‖ (s = max|λ|), and the sum over samples of r_j∇f_j (≤ √(2s|L|) for a mean squared error,
    Cauchy–Schwarz) is rounded at ε relative."""
    eps = torch.finfo(dtype).eps
    return 10 * math.sqrt(size) * eps * (scale * norm + math.sqrt(2 * scale * abs(loss)))


def _dense_bounds(values: Tensor) -> Tensor:
    """√P·ε·max|λ| for each eigenvalue: eigh is backward stable, and by Weyl's inequality a perturbation of H of
    that norm moves no eigenvalue further."""
    scale = float(values.abs().max()) if len(values) else 0.0
    return torch.full_like(values, _rounding(len(values), scale, values.dtype))


def criticality(
    operator: HessianOperator, *, rtol_grad: float | None = None, length_min: float = 1e-3
) -> tuple[bool, float, float]:
    """(critical, Newton step, gtol): the criticality test of :func:`classify_critical_point` on the dense path,
    from the operator's cached eigendecomposition (its one home; the redundancy cross-check uses it too)."""
    values, vectors = operator.eigh()
    size = len(values)
    spectra = _Spectra(values, _dense_bounds(values), vectors, values, None, values.new_zeros(size, 0), True, True)
    rtol_grad = rtol_grad if rtol_grad is not None else default_rtol_grad(operator.dtype)
    grad_norm = float(torch.linalg.vector_norm(operator.gradient))
    tolerances = _tolerances(operator, spectra, 0.0, grad_norm, _Constants(rtol_grad, 0.0, 0.0, 0.0, length_min))
    return tolerances.critical, tolerances.newton.step, tolerances.gtol


@dataclass(frozen=True)
class _Newton:
    """Stage 2: the shortest step that zeroes the gradient of the quadratic model up to rounding."""

    step: float  # inf where no step does
    null_gradient: float  # nan where not computed (the lower bound sufficed)
    how: str
    at_least: bool = False  # step is a lower bound (‖∇L‖ − gtol)/‖H‖, already beyond the tolerance


def _newton_step(
    operator: HessianOperator,
    gradient: Tensor,
    spectra: _Spectra,
    gtol: float,
    scale: float,
    reach: float,
    step_tol: float,
) -> _Newton:
    """min ‖x‖ subject to ‖∇L − Hx‖ ≤ gtol: the distance to a critical point of the quadratic model.

    Dense path, exact: with c = Vᵀ∇L, the components on eigenvalues within their error bound of 0 cannot be
    removed (their norm is ``null_gradient``; above gtol no step exists); otherwise the minimiser is the
    Tikhonov step x = (H² + μI)⁻¹H∇L, ‖x‖² = Σ (c_iλ_i/(μ + λ_i²))², with μ ≥ 0 chosen by bisection so that
    the residual Σ (μc_i/(μ + λ_i²))² (plus the unremovable part) equals gtol² (Morozov's discrepancy
    principle). Along curvature λ a gradient component c_i costs |c_i|/λ, however small ‖∇L‖ is.
    Lanczos path: every feasible x has ‖H‖‖x‖ ≥ ‖Hx‖ ≥ ‖∇L‖ − gtol, and ‖H‖ ≤ max(|λ| + bound) over the
    computed ends, so (‖∇L‖ − gtol)/‖H‖ bounds the shortest step from below; where that alone exceeds
    ``step_tol``·``reach`` the point is certainly not critical and no solve is made (away from critical
    points, as in most of training). Otherwise MINRES (:data:`NEWTON_KRYLOV_STEPS` at most) stopped at
    residual gtol; its iterate is a feasible step, so its norm bounds the shortest from above. If it stops
    short (or needs a step beyond ``reach``, the parameter scale, where the test has failed anyway),
    ``null_gradient`` is its residual and no step is certified.
    """
    grad_norm = float(torch.linalg.vector_norm(gradient))
    if grad_norm <= gtol:
        return _Newton(0.0, grad_norm, "|grad| at rounding level")
    if spectra.vectors is None and len(spectra.values):
        norm_bound = float((spectra.values.abs() + spectra.bounds).max())
        shortest = (grad_norm - gtol) / norm_bound if norm_bound > 0 else math.inf
        if shortest > step_tol * reach:
            return _Newton(shortest, math.nan, "at least (|grad| - gtol)/|H|, no solve needed", at_least=True)
    if spectra.vectors is None:
        from scipy.sparse.linalg import minres

        target = gradient.detach().cpu().double().numpy()
        # scipy stops at ‖r‖ ≤ rtol·(‖H‖‖x‖ + ‖g‖); for ‖x‖ within the parameter scale that is ≤ gtol.
        rtol = gtol / (10 * (scale * reach + grad_norm))
        solution, _ = minres(operator.to_scipy(), target, rtol=rtol, maxiter=NEWTON_KRYLOV_STEPS)
        x = torch.as_tensor(solution, dtype=gradient.dtype, device=gradient.device)
        residual = float(torch.linalg.vector_norm(gradient - operator.matvec(x)))
        norm = float(torch.linalg.vector_norm(x)) if residual <= gtol else math.inf
        return _Newton(norm, residual, f"MINRES, at most {NEWTON_KRYLOV_STEPS} steps")
    values, coefficients = spectra.values.double(), (spectra.vectors.T @ gradient).double()
    null = values.abs() <= spectra.bounds.double()
    stuck = float(torch.linalg.vector_norm(coefficients[null]))
    if stuck > gtol:
        return _Newton(math.inf, stuck, "exact")
    values, coefficients = values[~null], coefficients[~null]
    squares = values.square()

    def residual_at(mu: float) -> float:
        return math.sqrt(stuck**2 + float((mu * coefficients / (mu + squares)).square().sum()))

    low, high = -300.0, 300.0  # log10 μ; the residual grows monotonically from `stuck` (μ = 0) to ‖∇L‖ (μ = ∞)
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if residual_at(10.0**middle) <= gtol else (low, middle)
    mu = 10.0**low
    step = float(torch.linalg.vector_norm(coefficients * values / (mu + squares)))
    return _Newton(step, stuck, "exact")


@dataclass(frozen=True)
class _Tolerances:
    """Stage 2: the scales and tolerances of docs/theory.md §1.2, and the criticality verdict."""

    grad_norm: float
    scale: float  # s = max |λ|
    length: float  # ℓ̄ = max(‖θ‖/√P, length_min)
    gtol: float  # rounding level of the gradient
    band: float  # max(rtol_zero·s, atol_zero): zero whatever the gradient
    tau: float  # the zero band at a critical point
    step_tol: float
    newton: _Newton
    newton_ratio: float
    critical: bool


@dataclass(frozen=True)
class _Constants:
    """The constants of the criticality test and of the zero band τ (docs/theory.md §1.2), defaults resolved."""

    rtol_grad: float
    rtol_zero: float
    atol_zero: float
    c_grad: float
    length_min: float


def default_rtol_grad(dtype: torch.dtype) -> float:
    """The largest relative Newton step of a critical point: 1e-6 in float64, 1e-3 in lower precision."""
    return 1e-6 if dtype == torch.float64 else 1e-3


def default_rtol_zero(dtype: torch.dtype) -> float:
    """The relative zero band of eigenvalues: 1e-8 in float64, 1e-4 in lower precision (docs/theory.md §1.2)."""
    return 1e-8 if dtype == torch.float64 else 1e-4


def _tolerances(
    operator: HessianOperator, spectra: _Spectra, sym_leak: float, grad_norm: float, constants: _Constants
) -> _Tolerances:
    rtol_grad, length_min = constants.rtol_grad, constants.length_min
    theta = operator.objective.theta
    size = theta.numel()
    scale = float(spectra.values.abs().max()) if len(spectra.values) else 0.0
    norm = float(torch.linalg.vector_norm(theta))
    length = max(norm / math.sqrt(size), length_min)
    gtol = gradient_rounding(size, theta.dtype, scale, norm, float(operator.loss))
    band = max(constants.rtol_zero * scale, constants.atol_zero)
    # The Newton step is judged against the median |θ_i|, which a few weights escaping to infinity do not
    # inflate: against ‖θ‖ the divergence the test should catch would itself loosen the test.
    reach = max(float(theta.abs().median()), length_min) * math.sqrt(size)
    newton = _newton_step(operator, operator.gradient, spectra, gtol, scale, reach, rtol_grad)
    newton_ratio = newton.step / reach
    critical = newton_ratio <= rtol_grad
    tau = max(band, constants.c_grad * grad_norm / length, 10 * sym_leak)
    return _Tolerances(grad_norm, scale, length, gtol, band, tau, rtol_grad, newton, newton_ratio, critical)


def certainly_negative(values: Tensor, bounds: Tensor, band: float) -> int:
    """#{λ + max(error bound, band) < 0}: eigenvalues below 0 beyond doubt. Unlike the Morse index it needs no
    critical point, and its tolerance does not grow with ‖∇L‖ (the probe's scalars and this module's test
    both count with it)."""
    return int((values + bounds.clamp_min(band) < 0).sum())
