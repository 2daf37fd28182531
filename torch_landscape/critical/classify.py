"""Classify the current parameters as a critical point of the objective (docs/theory.md §1.2–§1.5).

:func:`classify_critical_point` runs in stages: spectrum (:func:`_spectra`) → tolerances and the Newton-step
criticality test (:func:`~torch_landscape.critical.newton._tolerances`) → kind → explanation (both in
:mod:`torch_landscape.critical.kind`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from ..curvature.eigen import Spectrum, lanczos_spectrum
from ..curvature.operators import HessianOperator, QuotientOperator
from ..curvature.policy import CRITICAL_DENSE_THRESHOLD
from ..curvature.symmetry import QuotientBasis, quotient_basis, symmetry_tangents
from ..objective import Data, LossFunction, Objective, as_objective
from .kind import NULL_ALIGNMENT_TOLERANCE as NULL_ALIGNMENT_TOLERANCE
from .kind import Kind, _ambiguous, _counts, _Evidence, _explain, _kind
from .newton import (
    _Constants,
    _dense_bounds,
    _Spectra,
    _tolerances,
    certainly_negative,
    default_rtol_grad,
    default_rtol_zero,
)
from .null_profiles import NullProfile


@dataclass(frozen=True)
class CriticalPoint:
    """What the first- and second-order tests say about θ (see :func:`classify_critical_point`).

    Attributes
    ----------
    kind : str
        "not_critical", "strict_saddle", "nondegenerate_min", "min_mod_symmetry" or "degenerate".
    reason : str
        The evidence in words.
    loss, grad_norm : float
        L(θ) and ‖∇L(θ)‖.
    critical : bool
        ``newton_ratio`` ≤ ``step_tol``: a point where the gradient vanishes up to rounding is that close.
    gtol : float
        The rounding level of the gradient, 10·√P·ε·(s‖θ‖ + √(2s|L|)) (see :func:`classify_critical_point`).
    newton_step, newton_ratio : float
        min{‖x‖ : ‖∇L − Hx‖ ≤ gtol}, the distance to a critical point of the quadratic model (∞ if none),
        and its ratio to the parameter scale √P·max(median_i |θ_i|, ``length_min``). Exact on the dense path;
        on the Lanczos path an upper bound from MINRES, or, where the lower bound (‖∇L‖ − gtol)/‖H‖ already
        exceeds the tolerance (no solve needed; the reason says "at least"), that lower bound.
    null_gradient : float
        The part of ∇L no step can remove: its component along eigenvalues within their error bound of 0
        (dense), or the final MINRES residual (Lanczos; NaN where the lower bound sufficed). Above ``gtol``: no
        critical point nearby.
    newton_at_least : bool
        Whether ``newton_step`` is the lower bound (‖∇L‖ − gtol)/‖H‖ rather than a step found.
    step_tol : float
        The relative Newton-step tolerance used (``rtol_grad``).
    morse_index, nullity : int or None
        #{λ < −τ} and #{|λ| ≤ τ} among the eigenvalues computed (all of them on the dense path); None away
        from a critical point, where they would describe the quadratic model only.
    negative_count : int
        Eigenvalues that are certainly negative, λ + max(error bound, ``negative_tol``) < 0, at any θ: the
        tolerance does not grow with ‖∇L‖. A critical point with index 0 and ``negative_count`` > 0 is a
        contradiction (:func:`torch_landscape.verdicts.contradictions`).
    negative_tol : float
        max(rtol_zero·s, atol_zero): the eigenvalues indistinguishable from 0 whatever the gradient.
    lambda_min, lambda_max : float
        Extreme eigenvalues of H.
    quotient_nullity : int or None
        #{|λ| ≤ τ} of the quotient Hessian H_q = Q_⊥ᵀ H Q_⊥ (= nullity without symmetries); None away from a
        critical point.
    quotient_lambda_min : float
        λ_min(H_q): at a minimum modulo symmetry, the PL constant to expect (Rebjock–Boumal).
    symmetry_rank, symmetry_family : int, str
        r = dim span of the continuous-symmetry tangents, and which group they come from.
    sym_leak : float
        ε_sym = max_i |v_iᵀ H v_i| / ‖v_i‖² (0 at an exact critical point, by Lemma S).
    null_alignment : float
        Largest principal angle (radians) from the null space of H into span(V) (dense path; NaN on the
        Lanczos path, away from a critical point or without a null space).
    ambiguous : bool
        Some eigenvalue of H or H_q has |λ| within a decade of τ, so the counts depend on the tolerance.
    counts : tuple[tuple[float, int, int, int], ...]
        (τ′, morse index, nullity, quotient nullity) for τ′ = τ/10, τ, 10τ; empty away from a critical point.
    tau : float
        The zero band used for the counts at a critical point.
    method : str
        "dense" (every eigenvalue) or "lanczos" (the computed ends only).
    edge_of_stability : float or None
        λ_max·lr/2 when a learning rate was given: gradient descent is stable near θ only if it is < 1.
    degenerate_kind : str or None
        With profiles: "degenerate_saddle", "nonisolated_min", "degenerate_min_higher_order" or "inconclusive".
    profiles : tuple[NullProfile, ...]
        The null-direction profiles run (empty unless ``profiles=True`` and the point is degenerate).
    eigenvalues, quotient_eigenvalues : Tensor
        Ascending, float64, CPU: all of them (dense) or the computed ends (Lanczos).
    error_bounds : Tensor
        A bound on |λ_computed − λ_true| for each of ``eigenvalues``.
    """

    kind: Kind
    reason: str
    loss: float
    grad_norm: float
    critical: bool
    morse_index: int | None
    nullity: int | None
    lambda_min: float
    lambda_max: float
    quotient_nullity: int | None
    quotient_lambda_min: float
    symmetry_rank: int
    symmetry_family: str
    sym_leak: float
    null_alignment: float
    ambiguous: bool
    counts: tuple[tuple[float, int, int, int], ...]
    tau: float
    gtol: float
    method: str
    eigenvalues: Tensor = field(repr=False)
    quotient_eigenvalues: Tensor = field(repr=False)
    error_bounds: Tensor = field(repr=False)
    newton_step: float = math.nan
    newton_ratio: float = math.nan
    null_gradient: float = math.nan
    newton_at_least: bool = False
    step_tol: float = math.nan
    negative_count: int = 0
    negative_tol: float = 0.0
    edge_of_stability: float | None = None
    degenerate_kind: str | None = None
    profiles: tuple[NullProfile, ...] = ()

    def __str__(self) -> str:
        kind = self.kind if self.degenerate_kind is None else f"{self.kind} ({self.degenerate_kind})"
        lines = [
            f"critical point: {kind}{' [ambiguous]' if self.ambiguous else ''}",
            f"  loss {self.loss:.6g}, |grad| {self.grad_norm:.3g} (rounding level {self.gtol:.3g}); Newton step "
            f"|H^+ grad| {self.newton_step:.3g} = {self.newton_ratio:.3g} x parameter scale (tolerance "
            f"{self.step_tol:.3g})"
            + (f", unremovable gradient {self.null_gradient:.3g}" if math.isfinite(self.null_gradient) else ""),
        ]
        if self.critical:
            lines.append(
                f"  eigenvalues [{self.lambda_min:.6g}, {self.lambda_max:.6g}], index {self.morse_index}, "
                f"nullity {self.nullity} (tau {self.tau:.3g}, {self.method})"
            )
        else:
            lines.append(
                f"  eigenvalues [{self.lambda_min:.6g}, {self.lambda_max:.6g}], {self.negative_count} certainly "
                f"negative (beyond max(error bound, {self.negative_tol:.3g}), {self.method}); index and "
                "nullity not applicable away from a critical point"
            )
        if self.symmetry_rank:
            quotient = f"; quotient nullity {self.quotient_nullity}" if self.critical else ""
            lines.append(
                f"  symmetry: {self.symmetry_family}, rank {self.symmetry_rank}, leak {self.sym_leak:.3g}"
                f"{quotient}, quotient lambda_min {self.quotient_lambda_min:.6g}"
            )
        if self.edge_of_stability is not None:
            lines.append(f"  edge of stability lambda_max*lr/2 = {self.edge_of_stability:.4g}")
        lines.append(f"  {self.reason}")
        return "\n".join(lines)


def _spectra(
    operator: HessianOperator,
    basis: QuotientBasis,
    tangents: Tensor,
    dense: bool,
    k: int,
    tol: float,
    seed: int,
    given: Spectrum | None,
) -> _Spectra:
    size = operator.shape[0]
    if dense:
        hessian = operator.to_dense()
        values, vectors = operator.eigh()
        # Without symmetries the quotient is H itself: share its decomposition.
        quotient_values, quotient_vectors = (
            torch.linalg.eigh(basis.compress(hessian)) if basis.rank else (values, vectors)
        )
        return _Spectra(
            values, _dense_bounds(values), vectors, quotient_values, quotient_vectors, hessian @ tangents, True, True
        )
    spectrum = given if given is not None else lanczos_spectrum(operator, k, "both", tol=tol, seed=seed)
    values, bounds, converged = (
        spectrum.eigenvalues.to(tangents),
        spectrum.error_bounds.to(tangents),
        spectrum.converged,
    )
    quotient_values = values
    if basis.rank:
        # The quotient's extremes lie near those of H restricted to the complement: start from them.
        warm = None
        if spectrum.eigenvectors is not None:
            warm = basis.restrict(spectrum.eigenvectors.to(tangents)).sum(dim=1)
            warm = warm if bool(torch.linalg.vector_norm(warm) > 0) else None
        quotient = lanczos_spectrum(
            QuotientOperator(operator, basis), min(k, size - basis.rank), "both", tol=tol, seed=seed, warm_start=warm
        )
        quotient_values, converged = quotient.eigenvalues.to(tangents), converged and quotient.converged
    image = operator.matmat(tangents) if tangents.shape[1] else tangents
    return _Spectra(values, bounds, None, quotient_values, None, image, converged, False)


def classify_critical_point(
    model: nn.Module | Objective | HessianOperator,
    loss_fn: LossFunction | None = None,
    data: Data | None = None,
    *,
    params: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float64,
    method: Literal["auto", "dense", "lanczos"] = "auto",
    dense_threshold: int = CRITICAL_DENSE_THRESHOLD,
    k: int = 10,
    tol: float = 1e-9,
    rtol_grad: float | None = None,
    rtol_zero: float | None = None,
    atol_zero: float = 0.0,
    c_grad: float = 1.0,
    length_min: float = 1e-3,
    symmetries: bool = True,
    learning_rate: float | None = None,
    profiles: bool = False,
    max_profiles: int = 8,
    seed: int = 0,
    spectrum: Spectrum | None = None,
) -> CriticalPoint:
    """Classify θ by a Newton-step criticality test and the spectra of H and of the quotient Hessian (§1.2–§1.5).

    With s = max |λ|, ℓ̄ = max(‖θ‖/√P, ``length_min``), ℓ̃ = max(median_i |θ_i|, ``length_min``), ε the unit
    roundoff and ε_sym = max_i |v_iᵀHv_i|/‖v_i‖² over the continuous-symmetry tangents v_i:

        gtol = 10·√P·ε·(s‖θ‖ + √(2s|L|))                   (the rounding level of ∇L)
        δ = min{‖x‖ : ‖∇L − Hx‖ ≤ gtol}  (∞ if none);   critical ⇔ δ ≤ rtol_grad·ℓ̃√P
        τ = max(rtol_zero · s, atol_zero, c_grad · ‖∇L‖/ℓ̄, 10 ε_sym)
        index = #{λ < −τ},  nullity = #{|λ| ≤ τ},  quotient nullity = #{|λ(H_q)| ≤ τ}      (critical θ only)
        certainly negative = #{λ + max(error bound, rtol_zero·s, atol_zero) < 0}            (every θ)

    δ (the Newton step) is exact on the dense path and a MINRES upper bound on the Lanczos path. The kind
    (docs/theory.md §1.3): "not_critical", "strict_saddle", "nondegenerate_min", "min_mod_symmetry" or "degenerate".

    Parameters
    ----------
    model, loss_fn, data, params, dtype
        The objective (:class:`~torch_landscape.objective.Objective`), float64 on a copy; an ``Objective`` or a
        ``HessianOperator`` (whose cached Hessian and eigendecomposition are reused) may be passed as ``model``.
    method, dense_threshold, k, tol
        "dense" (every eigenvalue), "lanczos" (the k smallest and largest of H and H_q to relative residual
        ``tol``; a count equal to k is a lower bound) or "auto" (dense up to ``dense_threshold`` parameters).
    rtol_grad, rtol_zero, atol_zero, c_grad, length_min
        The constants above; rtol_grad and rtol_zero default to 1e-6 and 1e-8 in float64, 1e-3 and 1e-4 below.
    symmetries
        Use the known continuous symmetries (:mod:`torch_landscape.curvature.symmetry`) for the quotient.
    learning_rate
        If given, ``edge_of_stability`` = λ_max · lr / 2.
    profiles, max_profiles, seed
        At a degenerate point on the dense path, run the null-direction profiles (docs/theory.md §1.5) along at most
        ``max_profiles`` null directions of H_q, chosen with a generator seeded by ``seed``: evidence, not proof.
    spectrum
        On the Lanczos path, the eigenvalues of H at this θ already computed at both ends
        (``hessian_eigenvalues(operator, k, which="both", tol=..., return_eigenvectors=True)``): used with their
        error bounds instead of a second solve, and their eigenvectors start the quotient's solve. Its
        tolerance, not ``tol``, then decides how close to τ a count can be trusted (``ambiguous``). Ignored on the
        dense path, which uses the operator's cached eigendecomposition.
    """
    numbers = dict(tol=tol, rtol_grad=rtol_grad, rtol_zero=rtol_zero, atol_zero=atol_zero, length_min=length_min)
    _check_arguments(method, k, profiles, max_profiles, **numbers, learning_rate=learning_rate)
    if isinstance(model, HessianOperator):  # reuse its loss, gradient, dense matrix and decomposition
        operator = model
    else:
        operator = HessianOperator(as_objective(model, loss_fn, data, params=params, dtype=dtype))
    objective = operator.objective
    rtol_grad = rtol_grad if rtol_grad is not None else default_rtol_grad(objective.dtype)
    rtol_zero = rtol_zero if rtol_zero is not None else default_rtol_zero(objective.dtype)
    constants = _Constants(rtol_grad, rtol_zero, atol_zero, c_grad, length_min)
    dense = method == "dense" or (method == "auto" and objective.num_parameters <= dense_threshold)
    k = min(k, objective.num_parameters)
    _check_spectrum(spectrum, objective.num_parameters)
    evidence = _evidence(operator, constants, symmetries, dense, k, tol, seed, None if dense else spectrum)
    kind, text, null_alignment = _kind(evidence)
    found, degenerate_kind, reason = _explain(kind, text, evidence, operator, k, profiles, max_profiles, seed)
    return _critical_point(operator, evidence, kind, reason, null_alignment, found, degenerate_kind, learning_rate)


def _evidence(
    operator: HessianOperator,
    constants: _Constants,
    symmetries: bool,
    dense: bool,
    k: int,
    tol: float,
    seed: int,
    spectrum: Spectrum | None,
) -> _Evidence:
    """Stages 1–2: the symmetry tangents and quotient basis, the spectra of H and H_q, the tolerances."""
    objective = operator.objective
    tangents = symmetry_tangents(objective) if symmetries else None
    vectors = tangents.vectors if tangents is not None else objective.theta.new_zeros(objective.num_parameters, 0)
    basis = quotient_basis(vectors, objective.theta)
    grad_norm = float(torch.linalg.vector_norm(operator.gradient))
    spectra = _spectra(operator, basis, vectors, dense, k, tol, seed, spectrum)
    sym_leak = float(((vectors * spectra.image).sum(0).abs() / (vectors**2).sum(0)).max()) if vectors.shape[1] else 0.0
    tolerances = _tolerances(operator, spectra, sym_leak, grad_norm, constants)
    counts = _counts(spectra, tolerances) if tolerances.critical else ()
    return _Evidence(spectra, tolerances, counts, basis, tangents, sym_leak)


def _critical_point(
    operator: HessianOperator,
    evidence: _Evidence,
    kind: Kind,
    reason: str,
    null_alignment: float,
    profiles: tuple[NullProfile, ...],
    degenerate_kind: str | None,
    learning_rate: float | None,
) -> CriticalPoint:
    """The result: the evidence, the verdict and the profiles in the fields of :class:`CriticalPoint`."""
    spectra, tolerances, counts, basis, tangents = (
        evidence.spectra,
        evidence.tolerances,
        evidence.counts,
        evidence.basis,
        evidence.tangents,
    )
    values, quotient_values = spectra.values, spectra.quotient_values
    _, index, nullity, quotient_nullity = counts[1] if counts else (None, None, None, None)
    return CriticalPoint(
        kind=kind,
        reason=reason,
        loss=float(operator.loss),
        grad_norm=tolerances.grad_norm,
        critical=tolerances.critical,
        morse_index=index,
        nullity=nullity,
        lambda_min=float(values[0]),
        lambda_max=float(values[-1]),
        quotient_nullity=quotient_nullity,
        quotient_lambda_min=float(quotient_values[0]) if len(quotient_values) else math.nan,
        symmetry_rank=basis.rank,
        symmetry_family=tangents.family if tangents is not None and basis.rank else "",
        sym_leak=evidence.sym_leak,
        null_alignment=null_alignment,
        ambiguous=_ambiguous(counts, spectra),
        counts=counts,
        tau=tolerances.tau,
        gtol=tolerances.gtol,
        method="dense" if spectra.dense else "lanczos",
        newton_step=tolerances.newton.step,
        newton_ratio=tolerances.newton_ratio,
        null_gradient=tolerances.newton.null_gradient,
        newton_at_least=tolerances.newton.at_least,
        step_tol=tolerances.step_tol,
        negative_count=certainly_negative(values, spectra.bounds, tolerances.band),
        negative_tol=tolerances.band,
        edge_of_stability=float(values[-1]) * learning_rate / 2 if learning_rate is not None else None,
        degenerate_kind=degenerate_kind,
        profiles=profiles,
        eigenvalues=values.detach().cpu().double(),
        quotient_eigenvalues=quotient_values.detach().cpu().double(),
        error_bounds=spectra.bounds.detach().cpu().double(),
    )


def _check_spectrum(spectrum: Spectrum | None, size: int) -> None:
    if spectrum is None:
        return
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"spectrum must be a Spectrum from hessian_eigenvalues, got {type(spectrum).__name__}.")
    if spectrum.num_parameters != size or len(spectrum.eigenvalues) < 2:
        raise ValueError(
            f"spectrum is of {spectrum.num_parameters} parameters with {len(spectrum.eigenvalues)} eigenvalues; pass "
            f"one of this θ's {size} parameters at both ends (hessian_eigenvalues(..., which='both'))."
        )


def _check_arguments(method: str, k: int, profiles: bool, max_profiles: int, **numbers: float | None) -> None:
    """The library's own errors for arguments that would otherwise fail deep inside, or be silently misread."""
    if method not in ("auto", "dense", "lanczos"):
        raise ValueError(f"method must be 'auto', 'dense' or 'lanczos', got {method!r}.")
    for name, value in (("k", k), ("max_profiles", max_profiles)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if not isinstance(profiles, bool):
        raise TypeError(f"profiles must be True or False, got {profiles!r}.")
    for name, number in numbers.items():
        if number is None:
            continue
        zero_allowed = name == "atol_zero"
        if (
            isinstance(number, bool)
            or not isinstance(number, (int, float))
            or not math.isfinite(number)
            or number < 0
            or (number == 0 and not zero_allowed)
        ):
            raise ValueError(f"{name} must be a finite number {'>= 0' if zero_allowed else '> 0'}, got {number!r}.")
