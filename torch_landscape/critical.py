"""Classify the current parameters as a critical point of the objective (theory.md §1.2–§1.5).

:func:`classify_critical_point` runs in stages: spectrum (:func:`_spectra`) → tolerances and the Newton-step
criticality test (:func:`~torch_landscape.newton._tolerances`) → kind (:func:`_kind`) → explanation (:func:`_explain`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from .eigen import lanczos_spectrum
from .operators import HessianOperator, QuotientOperator
from .newton import _dense_bounds, _Spectra, _Tolerances, _tolerances
from .objective import Data, LossFunction, Objective, as_objective
from .null_probes import ProbeResult, profile_probe, summarise_probes
from .symmetry import QuotientBasis, SymmetryTangents, quotient_basis, symmetry_tangents

Kind = Literal["not_critical", "strict_saddle", "nondegenerate_min", "min_mod_symmetry", "degenerate"]

#: ``method="auto"`` classifies from the full spectrum up to this many parameters (theory.md §0.3,
#: dense_max_P). It is above eigen.DENSE_THRESHOLD because classification needs the eigenvalues near 0,
#: where networks have a large cluster that Lanczos resolves slowly: on a trained ReLU network with
#: P = 1201 (2 loaded cores) the dense path took 5 s and block Lanczos at both ends 50-80 s.
DENSE_MAX_PARAMETERS = 2000

#: Largest principal angle (radians) between the numerical null space and the symmetry tangents for the
#: null space to count as the symmetry orbit's tangent space (theory.md §1.3).
NULL_ALIGNMENT_TOLERANCE = 1e-3


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
        on the Lanczos path an upper bound from MINRES.
    null_gradient : float
        The part of ∇L no step can remove: its component along eigenvalues within their error bound of 0
        (dense), or the final MINRES residual (Lanczos). Above ``gtol``: no critical point nearby.
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
        With probes: "degenerate_saddle", "nonisolated_min", "degenerate_min_higher_order" or "inconclusive".
    probes : tuple[ProbeResult, ...]
        The profile probes run (empty unless ``probe=True`` and the point is degenerate).
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
    morse_index: Optional[int]
    nullity: Optional[int]
    lambda_min: float
    lambda_max: float
    quotient_nullity: Optional[int]
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
    newton_step: float = math.nan
    newton_ratio: float = math.nan
    null_gradient: float = math.nan
    step_tol: float = math.nan
    negative_count: int = 0
    negative_tol: float = 0.0
    edge_of_stability: Optional[float] = None
    degenerate_kind: Optional[str] = None
    probes: tuple[ProbeResult, ...] = ()
    eigenvalues: Tensor = field(default=None, repr=False)
    quotient_eigenvalues: Tensor = field(default=None, repr=False)
    error_bounds: Tensor = field(default=None, repr=False)

    def __str__(self) -> str:
        kind = self.kind if self.degenerate_kind is None else f"{self.kind} ({self.degenerate_kind})"
        lines = [
            f"critical point: {kind}{' [ambiguous]' if self.ambiguous else ''}",
            f"  loss {self.loss:.6g}, |grad| {self.grad_norm:.3g} (rounding level {self.gtol:.3g}); Newton step "
            f"|H^+ grad| {self.newton_step:.3g} = {self.newton_ratio:.3g} x parameter scale (tolerance "
            f"{self.step_tol:.3g}), unremovable gradient {self.null_gradient:.3g}",
        ]
        if self.critical:
            lines.append(f"  eigenvalues [{self.lambda_min:.6g}, {self.lambda_max:.6g}], index {self.morse_index}, "
                         f"nullity {self.nullity} (tau {self.tau:.3g}, {self.method})")
        else:
            lines.append(f"  eigenvalues [{self.lambda_min:.6g}, {self.lambda_max:.6g}], {self.negative_count} certainly "
                         f"negative (beyond max(error bound, {self.negative_tol:.3g}), {self.method}); index and "
                         "nullity not applicable away from a critical point")
        if self.symmetry_rank:
            quotient = f"; quotient nullity {self.quotient_nullity}" if self.critical else ""
            lines.append(f"  symmetry: {self.symmetry_family}, rank {self.symmetry_rank}, leak {self.sym_leak:.3g}"
                         f"{quotient}, quotient lambda_min {self.quotient_lambda_min:.6g}")
        if self.edge_of_stability is not None:
            lines.append(f"  edge of stability lambda_max*lr/2 = {self.edge_of_stability:.4g}")
        lines.append(f"  {self.reason}")
        return "\n".join(lines)


def _spectra(operator: HessianOperator, basis: QuotientBasis, tangents: Tensor, dense: bool, k: int, tol: float,
             seed: int) -> _Spectra:
    size = operator.shape[0]
    if dense:
        hessian = operator.to_dense()
        values, vectors = operator.eigh()
        # Without symmetries the quotient is H itself: share its decomposition.
        quotient_values, quotient_vectors = (
            torch.linalg.eigh(basis.compress(hessian)) if basis.rank else (values, vectors)
        )
        return _Spectra(values, _dense_bounds(values), vectors, quotient_values, quotient_vectors, hessian @ tangents,
                        True, True)
    spectrum = lanczos_spectrum(operator, k, "both", tol=tol, seed=seed)
    values, bounds, converged = spectrum.eigenvalues.to(tangents), spectrum.error_bounds.to(tangents), spectrum.converged
    quotient_values = values
    if basis.rank:
        quotient = lanczos_spectrum(QuotientOperator(operator, basis), min(k, size - basis.rank), "both", tol=tol,
                                    seed=seed)
        quotient_values, converged = quotient.eigenvalues.to(tangents), converged and quotient.converged
    image = operator.matmat(tangents) if tangents.shape[1] else tangents
    return _Spectra(values, bounds, None, quotient_values, None, image, converged, False)


def default_rtol_zero(dtype: torch.dtype) -> float:
    """The relative zero band of eigenvalues: 1e-8 in float64, 1e-4 in lower precision (theory.md §1.2)."""
    return 1e-8 if dtype == torch.float64 else 1e-4


def certainly_negative(values: Tensor, bounds: Tensor, band: float) -> int:
    """#{λ + max(error bound, band) < 0}: eigenvalues below 0 beyond doubt. Unlike the Morse index it needs no
    critical point, and its tolerance does not grow with ‖∇L‖ (the probe's scalars and this module's test
    both count with it)."""
    return int((values + bounds.clamp_min(band) < 0).sum())


def classify_critical_point(
    model: nn.Module | Objective | HessianOperator,
    loss_fn: LossFunction | None = None,
    data: Data | None = None,
    *,
    params: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float64,
    method: Literal["auto", "dense", "lanczos"] = "auto",
    dense_threshold: int = DENSE_MAX_PARAMETERS,
    k: int = 10,
    tol: float = 1e-9,
    rtol_grad: float | None = None,
    rtol_zero: float | None = None,
    atol_zero: float = 0.0,
    c_grad: float = 1.0,
    length_min: float = 1e-3,
    symmetries: bool = True,
    learning_rate: float | None = None,
    probe: bool = False,
    max_probes: int = 8,
    seed: int = 0,
) -> CriticalPoint:
    """Classify θ by a Newton-step criticality test and the spectra of H and of the quotient Hessian (§1.2–§1.4).

    With s = max |λ|, ℓ̄ = max(‖θ‖/√P, ``length_min``), ε the unit roundoff and ε_sym = max_i |v_iᵀHv_i|/‖v_i‖²
    over the continuous-symmetry tangents v_i:

        gtol = 10·√P·ε·(s‖θ‖ + √(2s|L|))                   (the rounding level of ∇L)
        Newton step  δ = min{‖x‖ : ‖∇L − Hx‖ ≤ gtol}           (∞ if no x does)
        critical  ⇔  δ ≤ rtol_grad · ℓ̃√P,   ℓ̃ = max(median_i |θ_i|, length_min)
        τ = max(rtol_zero · s, atol_zero, c_grad · ‖∇L‖/ℓ̄, 10 ε_sym)
        index = #{λ < −τ},  nullity = #{|λ| ≤ τ},  quotient nullity = #{|λ(H_q)| ≤ τ}      (critical θ only)
        certainly negative = #{λ + max(error bound, rtol_zero·s, atol_zero) < 0}            (every θ)

    δ is the distance to the nearest point where the quadratic model's gradient vanishes up to rounding: a
    direction of curvature λ carrying gradient g_λ is |g_λ|/λ away, so an ill-conditioned landscape cannot pass
    on a small ‖∇L‖ alone (scaling ‖∇L‖ by λ_max overstates nearness by the condition number), and a gradient
    beyond rounding along a numerically flat direction means there is no critical point near θ at all.
    Exact on the dense path (see :func:`torch_landscape.newton._newton_step`); an upper bound from MINRES on
    the Lanczos path.

    The kind is "not_critical" (index and nullity are then None: they would describe the quadratic model
    only), "strict_saddle" (index > 0), "nondegenerate_min" (H ≻ 0: a strongly convex neighbourhood),
    "min_mod_symmetry" (H ⪰ 0, H_q ≻ 0 and the null space is the symmetry orbit's tangent space:
    Morse–Bott, locally PL with μ ≈ λ_min(H_q), never strongly convex) or "degenerate" (H ⪰ 0 with null
    directions the known symmetries do not explain: the second-order test is inconclusive).

    Parameters
    ----------
    model, loss_fn, data, params, dtype
        The objective (see :class:`~torch_landscape.objective.Objective`); an ``Objective`` or a
        ``HessianOperator`` (whose cached Hessian and eigendecomposition are then reused) may be passed as
        ``model``. Float64 by default, on a copy.
    method
        "dense" (all eigenvalues, exact), "lanczos" (the k smallest and largest of H and of H_q: index
        and nullities are then counts among those, and a count equal to k is a lower bound; the Newton step
        from :data:`~torch_landscape.newton.NEWTON_KRYLOV_STEPS` MINRES steps), or "auto" (dense up to ``dense_threshold`` parameters,
        default :data:`DENSE_MAX_PARAMETERS`).
    k, tol
        Eigenvalues from each end and the relative residual tolerance of the Lanczos path.
    rtol_grad, rtol_zero
        The largest relative Newton step δ/(ℓ̃√P) of a critical point, and the relative zero band. Default
        1e-6 and 1e-8 in float64, 1e-3 and 1e-4 in lower precision (theory.md §1.2).
    atol_zero, c_grad, length_min
        The other constants of τ and ℓ̄ above.
    symmetries
        Use the known continuous symmetries (:mod:`torch_landscape.symmetry`) for the quotient.
    learning_rate
        If given, ``edge_of_stability`` = λ_max · lr / 2.
    probe
        At a degenerate point on the dense path, run the profile probes of theory.md §1.5 along at most
        ``max_probes`` null directions of H_q (chosen with a private generator seeded by ``seed``), each
        four warm-started L-BFGS solves; they are evidence, not proof.
    """
    _check_arguments(method, k, probe, max_probes, tol=tol, rtol_grad=rtol_grad, rtol_zero=rtol_zero,
                     atol_zero=atol_zero, length_min=length_min, learning_rate=learning_rate)
    if isinstance(model, HessianOperator):  # reuse its loss, gradient, dense matrix and decomposition
        operator, objective = model, model.objective
    else:
        objective = as_objective(model, loss_fn, data, params=params, dtype=dtype)
        operator = HessianOperator(objective)
    theta, size = objective.theta, objective.num_parameters
    double = objective.dtype == torch.float64
    rtol_grad = rtol_grad if rtol_grad is not None else (1e-6 if double else 1e-3)
    rtol_zero = rtol_zero if rtol_zero is not None else default_rtol_zero(objective.dtype)
    dense = method == "dense" or (method == "auto" and size <= dense_threshold)

    tangents = symmetry_tangents(objective) if symmetries else None
    vectors = tangents.vectors if tangents is not None else theta.new_zeros(size, 0)
    basis = quotient_basis(vectors, theta)
    grad_norm = float(torch.linalg.vector_norm(operator.gradient))
    k = min(k, size)
    spectra = _spectra(operator, basis, vectors, dense, k, tol, seed)
    sym_leak = float(((vectors * spectra.image).sum(0).abs() / (vectors**2).sum(0)).max()) if vectors.shape[1] else 0.0
    tolerances = _tolerances(operator, spectra, sym_leak, grad_norm, rtol_grad=rtol_grad, rtol_zero=rtol_zero,
                             atol_zero=atol_zero, c_grad=c_grad, length_min=length_min)
    counts = _counts(spectra, tolerances) if tolerances.critical else ()
    kind, text, null_alignment = _kind(spectra, tolerances, counts, basis, tangents)
    probes, degenerate_kind, notes = _explain(kind, spectra, tolerances, counts, basis, tangents, objective, k,
                                              float(operator.loss), probe=probe, max_probes=max_probes, seed=seed)
    if degenerate_kind is not None:
        text += f"; {notes.pop(0)}"
    values, quotient_values = spectra.values, spectra.quotient_values
    _, index, nullity, quotient_nullity = counts[1] if counts else (None, None, None, None)
    return CriticalPoint(
        kind=kind, reason="; ".join([text, *notes]) + ".", loss=float(operator.loss), grad_norm=grad_norm,
        critical=tolerances.critical, morse_index=index, nullity=nullity, lambda_min=float(values[0]),
        lambda_max=float(values[-1]), quotient_nullity=quotient_nullity,
        quotient_lambda_min=float(quotient_values[0]) if len(quotient_values) else math.nan,
        symmetry_rank=basis.rank, symmetry_family=tangents.family if tangents is not None and basis.rank else "",
        sym_leak=sym_leak, null_alignment=null_alignment, ambiguous=_ambiguous(counts, spectra),
        counts=counts, tau=tolerances.tau, gtol=tolerances.gtol, method="dense" if dense else "lanczos",
        newton_step=tolerances.newton.step, newton_ratio=tolerances.newton_ratio,
        null_gradient=tolerances.newton.null_gradient, step_tol=rtol_grad,
        negative_count=certainly_negative(values, spectra.bounds, tolerances.band),
        negative_tol=tolerances.band,
        edge_of_stability=float(values[-1]) * learning_rate / 2 if learning_rate is not None else None,
        degenerate_kind=degenerate_kind, probes=probes, eigenvalues=values.detach().cpu().double(),
        quotient_eigenvalues=quotient_values.detach().cpu().double(),
        error_bounds=spectra.bounds.detach().cpu().double(),
    )


def _check_arguments(method: str, k: int, probe: bool, max_probes: int, **numbers: Optional[float]) -> None:
    """The library's own errors for arguments that would otherwise fail deep inside, or be silently misread."""
    if method not in ("auto", "dense", "lanczos"):
        raise ValueError(f"method must be 'auto', 'dense' or 'lanczos', got {method!r}.")
    for name, value in (("k", k), ("max_probes", max_probes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if not isinstance(probe, bool):
        raise TypeError(f"probe must be True or False, got {probe!r}.")
    for name, value in numbers.items():
        if value is None:
            continue
        zero_allowed = name == "atol_zero"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0 or (value == 0 and not zero_allowed):
            raise ValueError(f"{name} must be a finite number {'>= 0' if zero_allowed else '> 0'}, got {value!r}.")


def _counts(spectra: _Spectra, tolerances: _Tolerances) -> tuple[tuple[float, int, int, int], ...]:
    """(τ′, index, nullity, quotient nullity) for τ′ = τ/10, τ, 10τ (stage 3, at a critical point)."""
    def count(values: Tensor, band: float) -> tuple[int, int]:
        return int((values < -band).sum()), int((values.abs() <= band).sum())

    tau = tolerances.tau
    return tuple((band, *count(spectra.values, band), count(spectra.quotient_values, band)[1])
                 for band in (tau / 10, tau, 10 * tau))


def _ambiguous(counts: tuple, spectra: _Spectra) -> bool:
    return bool(counts) and (counts[0][1:] != counts[2][1:] or not spectra.converged)


def _kind(spectra: _Spectra, tolerances: _Tolerances, counts: tuple, basis: QuotientBasis,
          tangents: Optional[SymmetryTangents]) -> tuple[Kind, str, float]:
    """Stage 3: the kind, the sentence that justifies it, and the null-space alignment (theory.md §1.3)."""
    values, newton = spectra.values, tolerances.newton
    if not tolerances.critical:
        negative = certainly_negative(values, spectra.bounds, tolerances.band)
        if math.isinf(newton.step) and spectra.dense:
            why = (f"no step removes the gradient: {newton.null_gradient:.3g} of it lies along numerically flat "
                   "directions")
        elif math.isinf(newton.step):
            why = (f"{newton.how} left a residual {newton.null_gradient:.3g}: no step within the parameter scale "
                   "is certified")
        else:
            why = (f"the shortest step to a zero gradient (up to rounding) of the quadratic model is {newton.step:.3g}, "
                   f"{tolerances.newton_ratio:.3g} of the parameter scale (> {tolerances.step_tol:g}; {newton.how})")
        text = (f"not a critical point: |grad| = {tolerances.grad_norm:.3g} is above its rounding level "
                f"{tolerances.gtol:.3g} and {why}; index and nullity do not apply here; {negative} eigenvalue(s) "
                f"are certainly negative (beyond max(error bound, {tolerances.band:.3g}))")
        return "not_critical", text, math.nan
    _, index, nullity, quotient_nullity = counts[1]
    null_alignment = math.nan
    if spectra.dense and nullity:
        null_space = spectra.vectors[:, values.abs() <= tolerances.tau]
        if nullity > basis.rank:
            null_alignment = math.pi / 2
        else:
            cosines = torch.linalg.svdvals(basis.tangent_basis.T @ null_space)
            null_alignment = float(torch.arccos(cosines.min().clamp(-1.0, 1.0)))
    step = f" (Newton step {newton.step:.3g} = {tolerances.newton_ratio:.3g} x parameter scale)"
    if index:
        return "strict_saddle", (f"strict saddle{step}: {index} eigenvalue(s) below -tau = {-tolerances.tau:.3g}, "
                                 f"the most negative {float(values[0]):.6g}"), null_alignment
    if not nullity:
        return "nondegenerate_min", (
            f"nondegenerate minimum{step}: H is positive definite (lambda_min = {float(values[0]):.6g}, condition "
            f"number {float(values[-1] / values[0]):.4g}): L is strongly convex near theta"), null_alignment
    if (basis.rank and not quotient_nullity and nullity <= basis.rank
            and (math.isnan(null_alignment) or null_alignment < NULL_ALIGNMENT_TOLERANCE)):  # NaN: Lanczos path
        return "min_mod_symmetry", (
            f"minimum modulo symmetry{step}: H is positive semidefinite with {nullity} null direction(s), all along "
            f"the orbit of the {tangents.family} (rank {basis.rank}); the quotient Hessian is positive definite "
            f"(lambda_min(H_q) = {float(spectra.quotient_values[0]):.6g}): Morse-Bott, so locally PL with mu about "
            f"lambda_min(H_q), but not strongly convex"), null_alignment
    explained = f", {basis.rank} of them along the {tangents.family}" if basis.rank else ""
    return "degenerate", (
        f"degenerate critical point{step}: H is positive semidefinite with nullity {nullity}{explained}; "
        f"{max(quotient_nullity, nullity - basis.rank)} null direction(s) are not explained by a known symmetry, "
        "so the second-order test is inconclusive"), null_alignment


def _explain(kind: Kind, spectra: _Spectra, tolerances: _Tolerances, counts: tuple, basis: QuotientBasis,
             tangents: Optional[SymmetryTangents], objective: Objective, k: int, loss: float, *, probe: bool,
             max_probes: int, seed: int) -> tuple[tuple[ProbeResult, ...], Optional[str], list[str]]:
    """Stage 4: the profile probes at a degenerate point and the notes on what the counts mean.

    Returns (probes, degenerate kind, notes); with probes run, the first note is their summary."""
    notes: list[str] = []
    probes: tuple[ProbeResult, ...] = ()
    degenerate_kind = None
    if kind == "degenerate":
        null = torch.nonzero(spectra.quotient_values.abs() <= tolerances.tau).flatten().tolist()
        if probe and spectra.dense and null:
            if len(null) > max_probes:
                generator = torch.Generator().manual_seed(seed)
                null = [null[i] for i in torch.randperm(len(null), generator=generator)[:max_probes].tolist()]
            probes = tuple(profile_probe(objective, basis, spectra.quotient_vectors, i, loss, tolerances.scale,
                                          tolerances.length) for i in null)
            degenerate_kind, summary = summarise_probes(probes)
            notes.append(summary)
        elif probe:
            notes.append("the null-direction probes need the dense path and a null direction of H_q; not run")
        else:
            notes.append("null-direction probes not run (probe=True runs them)")
    if not spectra.dense and counts:
        counted = (("index", counts[1][1]), ("nullity", counts[1][2]), ("quotient nullity", counts[1][3]))
        saturated = [name for name, value in counted if value >= k]
        note = f"Lanczos path: index and nullities are counts among the {k} smallest and {k} largest eigenvalues"
        if not spectra.converged:
            note += ", which did not all converge"
        if saturated:
            note += f" ({', '.join(saturated)} = k: only a lower bound)"
        notes.append(note)
    if _ambiguous(counts, spectra) and spectra.converged:
        notes.append(
            "ambiguous: an eigenvalue lies within a decade of tau, so the counts depend on the tolerance "
            f"(index, nullity, quotient nullity at tau/10, tau, 10 tau: {[c[1:] for c in counts]})"
        )
    if tangents is not None and tangents.note and not basis.rank and kind != "nondegenerate_min":
        notes.append(f"symmetries: {tangents.note}")
    return probes, degenerate_kind, notes
