"""Classify the current parameters as a critical point of the objective (theory.md §1.2–§1.5)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from .eigen import lanczos_spectrum
from .hessian import HessianOperator
from .objective import Data, LossFunction, Objective, as_objective
from .symmetry import QuotientBasis, quotient_basis, symmetry_tangents

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
class ProbeResult:
    """A profile probe ψ_u(t) = min_{z ⊥ u, z ⊥ span(V)} L(θ + tu + z) − L(θ) along one null direction u.

    Attributes
    ----------
    verdict : str
        "flat" (|ψ| ≤ 1e-10·(|L| + s t²) at every t: a direction of equal-loss points), "higher_order"
        (ψ > 0 growing like tᵖ with p in (2.5, 6]), "descent" (ψ < 0 somewhere: not a minimum) or
        "inconclusive".
    order : float
        p, the least-squares slope of log ψ against log t (NaN unless ψ > 0 at every t).
    radii, values : tuple[float, ...]
        The t and ψ(t).
    solver_gradient : float
        The largest final gradient norm of the inner L-BFGS minimisations (a stalled solve is large).
    """

    verdict: str
    order: float
    radii: tuple[float, ...]
    values: tuple[float, ...]
    solver_gradient: float


@dataclass(frozen=True)
class CriticalPoint:
    """What the second-order test says about θ (see :func:`classify_critical_point`).

    Attributes
    ----------
    kind : str
        "not_critical", "strict_saddle", "nondegenerate_min", "min_mod_symmetry" or "degenerate".
    reason : str
        The evidence in words.
    loss, grad_norm : float
        L(θ) and ‖∇L(θ)‖.
    critical : bool
        ‖∇L‖ ≤ gtol.
    morse_index, nullity : int
        #{λ < −τ} and #{|λ| ≤ τ} among the eigenvalues computed (all of them on the dense path).
    lambda_min, lambda_max : float
        Extreme eigenvalues of H.
    quotient_nullity : int
        #{|λ| ≤ τ} of the quotient Hessian H_q = Q_⊥ᵀ H Q_⊥ (= nullity without symmetries).
    quotient_lambda_min : float
        λ_min(H_q): at a minimum modulo symmetry, the PL constant to expect (Rebjock–Boumal).
    symmetry_rank, symmetry_family : int, str
        r = dim span of the continuous-symmetry tangents, and which group they come from.
    sym_leak : float
        ε_sym = max_i |v_iᵀ H v_i| / ‖v_i‖² (0 at an exact critical point, by Lemma S).
    null_alignment : float
        Largest principal angle (radians) from the null space of H into span(V) (dense path; NaN on the
        Lanczos path or without a null space).
    ambiguous : bool
        Some eigenvalue of H or H_q has |λ| within a decade of τ, so the counts depend on the tolerance.
    counts : tuple[tuple[float, int, int, int], ...]
        (τ′, morse index, nullity, quotient nullity) for τ′ = τ/10, τ, 10τ.
    tau, gtol : float
        The zero band and the criticality threshold used.
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
    """

    kind: Kind
    reason: str
    loss: float
    grad_norm: float
    critical: bool
    morse_index: int
    nullity: int
    lambda_min: float
    lambda_max: float
    quotient_nullity: int
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
    edge_of_stability: Optional[float] = None
    degenerate_kind: Optional[str] = None
    probes: tuple[ProbeResult, ...] = ()
    eigenvalues: Tensor = field(default=None, repr=False)
    quotient_eigenvalues: Tensor = field(default=None, repr=False)

    def __str__(self) -> str:
        kind = self.kind if self.degenerate_kind is None else f"{self.kind} ({self.degenerate_kind})"
        lines = [
            f"critical point: {kind}{' [ambiguous]' if self.ambiguous else ''}",
            f"  loss {self.loss:.6g}, |grad| {self.grad_norm:.3g} (gtol {self.gtol:.3g})",
            f"  eigenvalues [{self.lambda_min:.6g}, {self.lambda_max:.6g}], index {self.morse_index}, "
            f"nullity {self.nullity} (tau {self.tau:.3g}, {self.method})",
        ]
        if self.symmetry_rank:
            lines.append(
                f"  symmetry: {self.symmetry_family}, rank {self.symmetry_rank}, leak {self.sym_leak:.3g}; "
                f"quotient nullity {self.quotient_nullity}, quotient lambda_min {self.quotient_lambda_min:.6g}"
            )
        if self.edge_of_stability is not None:
            lines.append(f"  edge of stability lambda_max*lr/2 = {self.edge_of_stability:.4g}")
        lines.append(f"  {self.reason}")
        return "\n".join(lines)


class _QuotientOperator:
    """H_q = Q_⊥ᵀ H Q_⊥ as an operator on R^{P−r}, for the matrix-free eigensolver."""

    def __init__(self, operator: HessianOperator, basis: QuotientBasis) -> None:
        self.operator, self.basis = operator, basis
        size = basis.size - basis.rank
        self.shape = (size, size)
        self.dtype, self.device = operator.dtype, operator.device

    def matmat(self, vectors: Tensor) -> Tensor:
        return self.basis.restrict(self.operator.matmat(self.basis.extend(vectors)))


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
    """Classify θ by the spectrum of the Hessian and of the quotient Hessian (theory.md §1.2–§1.4).

    With s = max(|λ_min|, |λ_max|), ℓ̄ = max(‖θ‖/√P, ``length_min``) and the symmetry leak
    ε_sym = max_i |v_iᵀHv_i|/‖v_i‖² over the continuous-symmetry tangents v_i:

        critical  ⇔  ‖∇L‖ ≤ gtol = rtol_grad · s · ℓ̄
        τ = max(rtol_zero · s, atol_zero, c_grad · ‖∇L‖/ℓ̄, 10 ε_sym)
        index = #{λ < −τ},  nullity = #{|λ| ≤ τ},  quotient nullity = #{|λ(H_q)| ≤ τ}

    and the kind is "not_critical" (index and nullity then describe the quadratic model only),
    "strict_saddle" (index > 0), "nondegenerate_min" (H ≻ 0: a strongly convex neighbourhood),
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
        and nullities are then counts among those, and a count equal to k is a lower bound), or "auto"
        (dense up to ``dense_threshold`` parameters, default :data:`DENSE_MAX_PARAMETERS`).
    k, tol
        Eigenvalues from each end and the relative residual tolerance of the Lanczos path.
    rtol_grad, rtol_zero
        Default 1e-6 and 1e-8 in float64, 1e-3 and 1e-4 in lower precision (theory.md §1.2).
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
    if isinstance(model, HessianOperator):  # reuse its loss, gradient, dense matrix and decomposition
        operator, objective = model, model.objective
    else:
        objective = as_objective(model, loss_fn, data, params=params, dtype=dtype)
        operator = HessianOperator(objective)
    theta = objective.theta
    size = objective.num_parameters
    double = objective.dtype == torch.float64
    rtol_grad = rtol_grad if rtol_grad is not None else (1e-6 if double else 1e-3)
    rtol_zero = rtol_zero if rtol_zero is not None else (1e-8 if double else 1e-4)
    if method not in ("auto", "dense", "lanczos"):
        raise ValueError(f"method must be 'auto', 'dense' or 'lanczos', got {method!r}.")
    dense = method == "dense" or (method == "auto" and size <= dense_threshold)

    tangents = symmetry_tangents(objective) if symmetries else None
    vectors = tangents.vectors if tangents is not None else theta.new_zeros(size, 0)
    basis = quotient_basis(vectors, theta)
    loss, gradient = float(operator.loss), operator.gradient
    grad_norm = float(torch.linalg.vector_norm(gradient))

    if dense:
        hessian = operator.to_dense()
        eigenvalues, eigenvectors = operator.eigh()
        # Without symmetries the quotient is H itself: share its decomposition.
        quotient_values, quotient_vectors = (
            torch.linalg.eigh(basis.compress(hessian)) if basis.rank else (eigenvalues, eigenvectors)
        )
        image = hessian @ vectors
        converged = True
    else:
        k = min(k, size)
        spectrum = lanczos_spectrum(operator, k, "both", tol=tol, seed=seed)
        eigenvalues, eigenvectors = spectrum.eigenvalues.to(theta), None
        converged = spectrum.converged
        if basis.rank:
            quotient = lanczos_spectrum(_QuotientOperator(operator, basis), min(k, size - basis.rank), "both", tol=tol, seed=seed)
            quotient_values, converged = quotient.eigenvalues.to(theta), converged and quotient.converged
        else:
            quotient_values = eigenvalues
        image = operator.matmat(vectors) if vectors.shape[1] else vectors
        quotient_vectors = None
    sym_leak = float(((vectors * image).sum(0).abs() / (vectors**2).sum(0)).max()) if vectors.shape[1] else 0.0

    scale = float(eigenvalues.abs().max()) if len(eigenvalues) else 0.0
    length = max(float(torch.linalg.vector_norm(theta)) / math.sqrt(size), length_min)
    gtol = rtol_grad * scale * length
    tau = max(rtol_zero * scale, atol_zero, c_grad * grad_norm / length, 10 * sym_leak)
    critical = grad_norm <= gtol

    def count(values: Tensor, band: float) -> tuple[int, int]:
        return int((values < -band).sum()), int((values.abs() <= band).sum())

    counts = tuple((band, *count(eigenvalues, band), count(quotient_values, band)[1]) for band in (tau / 10, tau, 10 * tau))
    _, index, nullity, quotient_nullity = counts[1]
    ambiguous = counts[0][1:] != counts[2][1:] or not converged
    null_alignment = math.nan
    if dense and nullity:
        null_space = eigenvectors[:, eigenvalues.abs() <= tau]
        if nullity > basis.rank:
            null_alignment = math.pi / 2
        else:
            cosines = torch.linalg.svdvals(basis.tangent_basis.T @ null_space)
            null_alignment = float(torch.arccos(cosines.min().clamp(-1.0, 1.0)))

    notes = []
    if not critical:
        kind: Kind = "not_critical"
        text = (
            f"not a critical point: |grad| = {grad_norm:.3g} > gtol = {gtol:.3g} (= {rtol_grad:g}·s·l, s = {scale:.4g}); "
            f"the index {index} and nullity {nullity} describe the quadratic model only"
        )
    elif index:
        kind = "strict_saddle"
        text = f"strict saddle: {index} eigenvalue(s) below -tau = {-tau:.3g}, the most negative {float(eigenvalues[0]):.6g}"
    elif not nullity:
        kind = "nondegenerate_min"
        text = (
            f"nondegenerate minimum: H is positive definite (lambda_min = {float(eigenvalues[0]):.6g}, condition "
            f"number {float(eigenvalues[-1] / eigenvalues[0]):.4g}): L is strongly convex near theta"
        )
    elif (
        basis.rank
        and not quotient_nullity
        and nullity <= basis.rank
        and (math.isnan(null_alignment) or null_alignment < NULL_ALIGNMENT_TOLERANCE)  # NaN: Lanczos path
    ):
        kind = "min_mod_symmetry"
        text = (
            f"minimum modulo symmetry: H is positive semidefinite with {nullity} null direction(s), all along the "
            f"orbit of the {tangents.family} (rank {basis.rank}); the quotient Hessian is positive definite "
            f"(lambda_min(H_q) = {float(quotient_values[0]):.6g}): Morse-Bott, so locally PL with mu about "
            f"lambda_min(H_q), but not strongly convex"
        )
    else:
        kind = "degenerate"
        explained = f", {basis.rank} of them along the {tangents.family}" if basis.rank else ""
        text = (
            f"degenerate critical point: H is positive semidefinite with nullity {nullity}{explained}; "
            f"{max(quotient_nullity, nullity - basis.rank)} null direction(s) are not explained by a known symmetry, "
            "so the second-order test is inconclusive"
        )

    probes: tuple[ProbeResult, ...] = ()
    degenerate_kind = None
    if kind == "degenerate":
        null = torch.nonzero(quotient_values.abs() <= tau).flatten().tolist()
        if probe and dense and null:
            if len(null) > max_probes:
                generator = torch.Generator().manual_seed(seed)
                null = [null[i] for i in torch.randperm(len(null), generator=generator)[:max_probes].tolist()]
            probes = tuple(_profile_probe(objective, basis, quotient_vectors, i, loss, scale, length) for i in null)
            degenerate_kind, summary = _summarise_probes(probes)
            text += f"; {summary}"
        elif probe:
            notes.append("the null-direction probes need the dense path and a null direction of H_q; not run")
        else:
            notes.append("null-direction probes not run (probe=True runs them)")
    if not dense:
        counted = (("index", index), ("nullity", nullity), ("quotient nullity", quotient_nullity))
        saturated = [name for name, value in counted if value >= k]
        note = f"Lanczos path: index and nullities are counts among the {k} smallest and {k} largest eigenvalues"
        if not converged:
            note += ", which did not all converge"
        if saturated:
            note += f" ({', '.join(saturated)} = k: only a lower bound)"
        notes.append(note)
    if ambiguous and converged:
        notes.append(
            "ambiguous: an eigenvalue lies within a decade of tau, so the counts depend on the tolerance "
            f"(index, nullity, quotient nullity at tau/10, tau, 10 tau: {[c[1:] for c in counts]})"
        )
    if tangents is not None and tangents.note and not basis.rank and kind != "nondegenerate_min":
        notes.append(f"symmetries: {tangents.note}")
    reason = "; ".join([text, *notes]) + "."
    return CriticalPoint(
        kind=kind,
        reason=reason,
        loss=loss,
        grad_norm=grad_norm,
        critical=critical,
        morse_index=index,
        nullity=nullity,
        lambda_min=float(eigenvalues[0]),
        lambda_max=float(eigenvalues[-1]),
        quotient_nullity=quotient_nullity,
        quotient_lambda_min=float(quotient_values[0]) if len(quotient_values) else math.nan,
        symmetry_rank=basis.rank,
        symmetry_family=tangents.family if tangents is not None and basis.rank else "",
        sym_leak=sym_leak,
        null_alignment=null_alignment,
        ambiguous=ambiguous,
        counts=counts,
        tau=tau,
        gtol=gtol,
        method="dense" if dense else "lanczos",
        edge_of_stability=float(eigenvalues[-1]) * learning_rate / 2 if learning_rate is not None else None,
        degenerate_kind=degenerate_kind,
        probes=probes,
        eigenvalues=eigenvalues.detach().cpu().double(),
        quotient_eigenvalues=quotient_values.detach().cpu().double(),
    )


def _profile_probe(
    objective: Objective, basis: QuotientBasis, quotient_vectors: Tensor, column: int, loss: float, scale: float, length: float
) -> ProbeResult:
    """ψ_u(t) for u = Q_⊥ y (y the ``column``-th eigenvector of H_q), t = t0, t0/2, t0/4, t0/8, t0 = 0.1·ℓ̄.

    The minimisation over z ⊥ u, z ⊥ span(V) runs in the coordinates z = t·Z w, Z = Q_⊥ [the other
    eigenvectors of H_q] (an orthonormal basis of that complement), on f(w) = (L(θ + t(u + Zw)) − L(θ))/(s t²),
    whose Hessian in w is about ZᵀHZ/s, so that L-BFGS sees a well-scaled problem at every t.
    """
    direction = basis.extend(quotient_vectors[:, column])
    others = basis.extend(torch.cat([quotient_vectors[:, :column], quotient_vectors[:, column + 1 :]], dim=1))
    theta = objective.theta
    radii = [0.1 * length / 2**i for i in range(4)]
    w = theta.new_zeros(others.shape[1], requires_grad=True)
    values, residual = [], 0.0
    for t in radii:
        with torch.no_grad():
            w /= 2  # along a curved orbit z grows like t², so w = z/t halves with t
        optimizer = torch.optim.LBFGS(
            [w], lr=1.0, max_iter=100, tolerance_grad=1e-10, tolerance_change=1e-16, history_size=20,
            line_search_fn="strong_wolfe",
        )
        denominator = max(scale, torch.finfo(theta.dtype).tiny) * t * t

        def closure() -> Tensor:
            optimizer.zero_grad()
            value = (objective.loss(theta + t * (direction + others @ w)) - loss) / denominator
            value.backward()
            return value

        with torch.enable_grad():
            optimizer.step(closure)
            final = closure()
        values.append(float(final.detach()) * denominator)
        residual = max(residual, float(torch.linalg.vector_norm(w.grad)))
    tolerances = [1e-10 * (abs(loss) + scale * t * t) for t in radii]
    order = math.nan
    if all(v > 0 for v in values):
        logs = torch.log(torch.tensor([radii, values], dtype=torch.float64))
        centred = logs - logs.mean(dim=1, keepdim=True)
        order = float((centred[0] * centred[1]).sum() / (centred[0] ** 2).sum())
    if any(v < -tol for v, tol in zip(values, tolerances)):
        verdict = "descent"
    elif all(abs(v) <= tol for v, tol in zip(values, tolerances)):
        verdict = "flat"
    elif all(v > tol for v, tol in zip(values, tolerances)) and 2.5 < order <= 6:
        verdict = "higher_order"
    else:
        verdict = "inconclusive"
    return ProbeResult(verdict, order, tuple(radii), tuple(values), residual)


def _summarise_probes(probes: tuple[ProbeResult, ...]) -> tuple[str, str]:
    verdicts = [p.verdict for p in probes]
    tally = ", ".join(f"{verdicts.count(v)} {v}" for v in ("descent", "flat", "higher_order", "inconclusive") if v in verdicts)
    if "descent" in verdicts:
        return "degenerate_saddle", f"profile probes ({tally}): the loss decreases along a null direction, a degenerate saddle"
    if all(v == "flat" for v in verdicts):
        return "nonisolated_min", f"profile probes ({tally}): every null direction is flat, a non-isolated minimum (evidence, not proof)"
    orders = [p.order for p in probes if p.verdict == "higher_order"]
    if orders:
        p = max(orders)
        return "degenerate_min_higher_order", (
            f"profile probes ({tally}): growth of order p = {p:.2f} along a null direction, a degenerate minimum where "
            f"PL fails locally (Lojasiewicz exponent 1 - 1/p = {1 - 1 / p:.2f}; evidence, not proof)"
        )
    return "inconclusive", f"profile probes ({tally}) are inconclusive"
