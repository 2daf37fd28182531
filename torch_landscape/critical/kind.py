"""Stages 3 and 4 of :func:`~torch_landscape.critical.classify.classify_critical_point` (docs/theory.md §1.3–§1.5).

From the evidence of stages 1–2 (spectra, tolerances, counts): the kind of the point and the sentence that
justifies it (:func:`_kind`), then the null-direction profiles at a degenerate point and the notes on what the
counts mean (:func:`_explain`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..curvature.operators import HessianOperator
from ..curvature.symmetry import QuotientBasis, SymmetryTangents
from .newton import _Spectra, _Tolerances, certainly_negative
from .null_profiles import NullProfile, null_profile, summarise_profiles

Kind = Literal["not_critical", "strict_saddle", "nondegenerate_min", "min_mod_symmetry", "degenerate"]

#: Largest principal angle (radians) between the numerical null space and the symmetry tangents for the
#: null space to count as the symmetry orbit's tangent space (docs/theory.md §1.3).
NULL_ALIGNMENT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class _Evidence:
    """Stages 1–2: the spectra of H and H_q, the tolerances, the counts at τ/10, τ, 10τ (critical θ only)."""

    spectra: _Spectra
    tolerances: _Tolerances
    counts: tuple[tuple[float, int, int, int], ...]
    basis: QuotientBasis
    tangents: SymmetryTangents | None
    sym_leak: float


def _counts(spectra: _Spectra, tolerances: _Tolerances) -> tuple[tuple[float, int, int, int], ...]:
    """(τ′, index, nullity, quotient nullity) for τ′ = τ/10, τ, 10τ (stage 3, at a critical point)."""

    def count(values: Tensor, band: float) -> tuple[int, int]:
        return int((values < -band).sum()), int((values.abs() <= band).sum())

    tau = tolerances.tau
    return tuple(
        (band, *count(spectra.values, band), count(spectra.quotient_values, band)[1])
        for band in (tau / 10, tau, 10 * tau)
    )


def _ambiguous(counts: tuple, spectra: _Spectra) -> bool:
    return bool(counts) and (counts[0][1:] != counts[2][1:] or not spectra.converged)


def _not_critical(evidence: _Evidence) -> str:
    """The sentence for a point the Newton-step test rejects: why no critical point is near."""
    spectra, tolerances = evidence.spectra, evidence.tolerances
    newton = tolerances.newton
    negative = certainly_negative(spectra.values, spectra.bounds, tolerances.band)
    if math.isinf(newton.step) and spectra.dense:
        why = f"no step removes the gradient: {newton.null_gradient:.3g} of it lies along numerically flat directions"
    elif math.isinf(newton.step):
        why = (
            f"{newton.how} left a residual {newton.null_gradient:.3g}: no step within the parameter scale is certified"
        )
    else:
        length = "at least " if newton.at_least else ""
        why = (
            f"the shortest step to a zero gradient (up to rounding) of the quadratic model is {length}"
            f"{newton.step:.3g}, {tolerances.newton_ratio:.3g} of the parameter scale (> {tolerances.step_tol:g}; "
            f"{newton.how})"
        )
    return (
        f"not a critical point: |grad| = {tolerances.grad_norm:.3g} is above its rounding level "
        f"{tolerances.gtol:.3g} and {why}; index and nullity do not apply here; {negative} eigenvalue(s) "
        f"are certainly negative (beyond max(error bound, {tolerances.band:.3g}))"
    )


def _null_alignment(evidence: _Evidence, nullity: int) -> float:
    """Largest principal angle from the numerical null space of H into span(V) (dense path; else NaN)."""
    spectra, basis = evidence.spectra, evidence.basis
    if spectra.vectors is None or not nullity:  # eigenvectors: the dense path only
        return math.nan
    if nullity > basis.rank:
        return math.pi / 2
    null_space = spectra.vectors[:, spectra.values.abs() <= evidence.tolerances.tau]
    cosines = torch.linalg.svdvals(basis.tangent_basis.T @ null_space)
    return float(torch.arccos(cosines.min().clamp(-1.0, 1.0)))


def _kind(evidence: _Evidence) -> tuple[Kind, str, float]:
    """Stage 3: the kind, the sentence that justifies it, and the null-space alignment (docs/theory.md §1.3)."""
    spectra, tolerances, basis, tangents = evidence.spectra, evidence.tolerances, evidence.basis, evidence.tangents
    if not tolerances.critical:
        return "not_critical", _not_critical(evidence), math.nan
    values = spectra.values
    _, index, nullity, quotient_nullity = evidence.counts[1]
    null_alignment = _null_alignment(evidence, nullity)
    family = tangents.family if tangents is not None else ""
    step = f" (Newton step {tolerances.newton.step:.3g} = {tolerances.newton_ratio:.3g} x parameter scale)"
    kind: Kind
    if index:
        kind, text = (
            "strict_saddle",
            (
                f"strict saddle{step}: {index} eigenvalue(s) below -tau = {-tolerances.tau:.3g}, "
                f"the most negative {float(values[0]):.6g}"
            ),
        )
    elif not nullity:
        kind, text = (
            "nondegenerate_min",
            (
                f"nondegenerate minimum{step}: H is positive definite (lambda_min = {float(values[0]):.6g}, condition "
                f"number {float(values[-1] / values[0]):.4g}): L is strongly convex near theta"
            ),
        )
    elif (
        basis.rank
        and not quotient_nullity
        and nullity <= basis.rank
        and (math.isnan(null_alignment) or null_alignment < NULL_ALIGNMENT_TOLERANCE)
    ):  # NaN: Lanczos path
        kind, text = (
            "min_mod_symmetry",
            (
                f"minimum modulo symmetry{step}: H is positive semidefinite with {nullity} null direction(s), all "
                f"along the orbit of the {family} (rank {basis.rank}); the quotient Hessian is positive definite "
                f"(lambda_min(H_q) = {float(spectra.quotient_values[0]):.6g}): Morse-Bott, so locally PL with mu about "
                f"lambda_min(H_q), but not strongly convex"
            ),
        )
    else:
        explained = f", {basis.rank} of them along the {family}" if basis.rank else ""
        kind, text = (
            "degenerate",
            (
                f"degenerate critical point{step}: H is positive semidefinite with nullity {nullity}{explained}; "
                f"{max(quotient_nullity, nullity - basis.rank)} null direction(s) are not explained by a known "
                "symmetry, so the second-order test is inconclusive"
            ),
        )
    return kind, text, null_alignment


def _explain(
    kind: Kind,
    text: str,
    evidence: _Evidence,
    operator: HessianOperator,
    k: int,
    run_profiles: bool,
    max_profiles: int,
    seed: int,
) -> tuple[tuple[NullProfile, ...], str | None, str]:
    """Stage 4: the null-direction profiles at a degenerate point, and the reason: the kind's sentence (with
    the profiles' summary) followed by the notes on what the counts mean.

    Returns (profiles, degenerate kind, reason)."""
    spectra, counts, basis, tangents = evidence.spectra, evidence.counts, evidence.basis, evidence.tangents
    notes: list[str] = []
    profiles: tuple[NullProfile, ...] = ()
    degenerate_kind = None
    if kind == "degenerate":
        profiles, degenerate_kind, note = _profiles(evidence, operator, run_profiles, max_profiles, seed)
        if degenerate_kind is not None:
            text += f"; {note}"
        else:
            notes.append(note)
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
            "(index/nullity/quotient nullity at tau/10, tau, 10 tau: "
            f"{'; '.join('/'.join(map(str, c[1:])) for c in counts)})"
        )
    if tangents is not None and tangents.note and not basis.rank and kind != "nondegenerate_min":
        notes.append(f"symmetries: {tangents.note}")
    return profiles, degenerate_kind, "; ".join([text, *notes]) + "."


def _profiles(
    evidence: _Evidence, operator: HessianOperator, profiles: bool, max_profiles: int, seed: int
) -> tuple[tuple[NullProfile, ...], str | None, str]:
    """The profiles along the null directions of H_q (dense path, ``profiles``), their verdict and summary."""
    spectra, tolerances, vectors = evidence.spectra, evidence.tolerances, evidence.spectra.quotient_vectors
    null = torch.nonzero(spectra.quotient_values.abs() <= tolerances.tau).flatten().tolist()
    if not profiles:
        return (), None, "null-direction profiles not run (profiles=True runs them)"
    if vectors is None or not null:  # eigenvectors: the dense path only
        return (), None, "the null-direction profiles need the dense path and a null direction of H_q; not run"
    if len(null) > max_profiles:
        generator = torch.Generator().manual_seed(seed)
        null = [null[i] for i in torch.randperm(len(null), generator=generator)[:max_profiles].tolist()]
    loss = float(operator.loss)
    found = tuple(
        null_profile(operator.objective, evidence.basis, vectors, i, loss, tolerances.scale, tolerances.length)
        for i in null
    )
    degenerate_kind, summary = summarise_profiles(found)
    return found, degenerate_kind, summary
