"""Rules that rebuild neurons: rank (linear, quadratic), linear dependence L1, and the ReLU data-level rules
(docs/theory.md §4.2)."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

from .network import _Merge, _Network, _Verifier
from .report import DEAD, PATTERN, RANK
from .rules import Candidate, _Context, _dead_scores, _ratio_or_zero, _truncated_svd, _with_bias_column


def _rank_merge(net: _Network, ctx: _Context, verifier: _Verifier, scores: dict[str, float]) -> _Merge | None:
    """Class Lin (rank of A·[W b]) and class Q (eigendecomposition of M̃ = Σ a_i ũ_iũ_iᵀ, Wedderburn step)."""
    rows = net.indices
    m = len(rows)
    U, A = net.U[rows], net.A[:, rows]
    budget, radius = verifier.tolerance / 4, verifier.input_radius
    if ctx.kind == "identity":
        total = A @ U  # f = total·x̃ + c
        target = total if (ctx.has_bias and not ctx.has_c) else total[:, :-1]
        values = torch.linalg.svdvals(target)
        scores.setdefault(RANK, _rank_score(values, m))
        left, values, right = _truncated_svd(target, budget, radius)
        rank = len(values)
        if rank >= m:
            return None
        new_u = _with_bias_column(right, U.shape[1])
        return _Merge(
            RANK,
            scores[RANK],
            tuple(rows.tolist()),
            remove=tuple(rows.tolist()),
            new_u=new_u,
            new_a=left * values,
            delta_c=total[:, -1] if ctx.has_c else None,
            detail=f"f = (A·W)x + const has rank {rank}",
        )
    if A.shape[0] > 1:
        return _polynomial_dependence(net, ctx, verifier, scores)
    matrix = U.T @ (A[0][:, None] * U)  # M̃ with x̃ᵀM̃x̃ = Σ a_i (u_i·x̃)²
    values, vectors = torch.linalg.eigh(matrix)
    shift = 0.0
    if ctx.has_c and ctx.has_bias:
        # Wedderburn: if e = e_{d+1} ∈ range(M̃), M̃ − t*·eeᵀ with t* = 1/(eᵀM̃⁺e) has rank one less.
        keep = values.abs() * radius**2 > budget
        e = vectors[-1, keep]
        if keep.any() and float(torch.linalg.vector_norm(e)) > 1 - 1e-9:
            inverse = float((e.square() / values[keep]).sum())
            if inverse != 0:
                shift = 1 / inverse
                matrix = matrix.clone()
                matrix[-1, -1] -= shift
                values, vectors = torch.linalg.eigh(matrix)
    ordered = torch.sort(values.abs(), descending=True).values
    scores.setdefault(RANK, _rank_score(ordered, m))
    keep = torch.argsort(values.abs(), descending=True)
    tail = torch.flip(torch.cumsum(torch.flip(values.abs()[keep], [0]), 0), [0]) * radius**2
    keep = keep[: int((tail > budget).sum())]
    if len(keep) >= m:
        return None
    new_u = vectors[:, keep].T * values[keep].abs().sqrt()[:, None]
    if not ctx.has_bias:
        new_u[:, -1] = 0
    return _Merge(
        RANK,
        scores[RANK],
        tuple(rows.tolist()),
        remove=tuple(rows.tolist()),
        new_u=new_u,
        new_a=torch.sign(values[keep])[None, :],
        delta_c=A.new_full((1,), shift) if shift else None,
        detail=f"x̃ᵀM̃x̃ with rank(M̃{' − t*eeᵀ' if shift else ''}) = {len(keep)}",
    )


def _rank_score(values: Tensor, m: int) -> float:
    """σ_m/σ_1 with σ_k = 0 for k beyond the matrix's size: zero iff fewer than m neurons realize f."""
    if len(values) == 0 or float(values[0]) == 0:
        return 0.0
    return float(values[m - 1] / values[0]) if m <= len(values) else 0.0


def _polynomial_dependence(
    net: _Network, ctx: _Context, verifier: _Verifier, scores: dict[str, float]
) -> _Merge | None:
    """Quadratic σ with several outputs: φ_i(x) = ⟨u_iu_iᵀ, x̃x̃ᵀ⟩, so a linear dependence among the matrices
    u_iu_iᵀ (and eeᵀ, the constant, when c is present) is a function-level dependence among the neurons."""
    rows = net.indices
    U = net.U[rows]
    features = (U[:, :, None] * U[:, None, :]).reshape(len(rows), -1).T
    constant = None
    if ctx.has_c and ctx.has_bias:
        constant = torch.zeros_like(features[:, 0])
        constant[-1] = 1.0
    merge, loo = _dependence(net, rows, features, constant, verifier.tolerance / verifier.input_radius**2, RANK)
    scores.setdefault(RANK, float(loo.min()))
    return merge


def _dependence(
    net: _Network, rows: Tensor, features: Tensor, constant: Tensor | None, budget: float, rule: str
) -> tuple[_Merge | None, Tensor]:
    """Rule L1: columns φ_k in the span of the others are deleted and their output weights spread over the rest.

    Columns are ordered by decreasing contribution ‖a_k‖·‖φ_k‖ and factorised by one QR, Φ = QR; |R_kk| is
    the distance of φ_k to the span of the columns before it. The cheapest columns, with Σ|R_kk|·‖a_k‖ ≤
    ``budget``, are deleted: Φ_N = Φ_B β with β = argmin ‖R_B β − R_N‖, a_B += a_N βᵀ.
    Returns the merge and the relative leave-one-out distances dist(φ_k, span{1, φ_l: l≠k})/‖φ_k‖ per row
    (from R⁻¹; 0 when there are more columns than points).
    """
    A = net.A[:, rows]
    weight = torch.linalg.vector_norm(A, dim=0) * torch.linalg.vector_norm(features, dim=0)
    order = torch.argsort(weight, descending=True)
    columns = features[:, order] if constant is None else torch.cat([constant[:, None], features[:, order]], dim=1)
    offset = 0 if constant is None else 1
    R = torch.linalg.qr(columns, mode="r")[1]  # min(N, k) × k
    distance = columns.new_zeros(columns.shape[1])
    distance[: R.shape[0]] = R.diagonal().abs()
    loo = columns.new_zeros(len(rows))
    if columns.shape[1] <= columns.shape[0]:
        # dist(φ_k, span of the others)² = 1/[(ΦᵀΦ)⁻¹]_kk = 1/‖row k of R⁻¹‖².
        inverse = torch.linalg.solve_triangular(R, torch.eye(R.shape[0], dtype=R.dtype, device=R.device), upper=True)
        leave_one_out = 1 / torch.linalg.vector_norm(inverse, dim=1)
        leave_one_out = torch.where(torch.isfinite(leave_one_out), leave_one_out, torch.zeros_like(leave_one_out))
        norms = torch.linalg.vector_norm(columns, dim=0).clamp_min(1e-300)
        loo[order] = (leave_one_out / norms)[offset:]
    cost = distance[offset:] * torch.linalg.vector_norm(A[:, order], dim=0)
    cheapest = torch.argsort(cost)
    count = int((torch.cumsum(cost[cheapest], 0) <= budget).sum())
    if count == 0:
        return None, loo
    removed = torch.sort(cheapest[:count]).values + offset
    survives = torch.ones(columns.shape[1], dtype=torch.bool, device=R.device)
    survives[removed] = False
    kept = torch.nonzero(survives).flatten()
    beta = torch.linalg.lstsq(R[:, kept], R[:, removed]).solution  # |kept| × |removed|
    a_removed = A[:, order[removed - offset]]
    spread = a_removed @ beta.T  # q × |kept|
    kept_neurons = kept[kept >= offset]
    update = rows[order[kept_neurons - offset]]
    delta_c = spread[:, 0] if constant is not None else None
    delta_a = spread[:, offset:] if constant is not None else spread
    removed_rows = tuple(rows[order[removed - offset]].tolist())
    merge = _Merge(
        rule,
        float(loo.min()) if len(loo) else 0.0,
        tuple(rows.tolist()),
        remove=removed_rows,
        update=tuple(update.tolist()),
        delta_a=delta_a,
        delta_c=delta_c,
        detail=f"{len(removed_rows)} neurons are linear combinations of the other {len(update)}",
    )
    return merge, loo


def _dead_candidates(net: _Network, ctx: _Context, scores: dict[str, float]) -> list[Candidate]:
    """D1 (ReLU): neurons with z_i ≤ 0 on all data contribute nothing there."""
    rows = net.indices
    dead = _dead_scores(net, ctx, rows)
    scores.setdefault(DEAD, float(dead.min()) if len(rows) else math.inf)
    return [
        (score, 0, DEAD, (i,), partial(_Merge, DEAD, score, (i,), remove=(i,), detail=f"delete {i}"))
        for i, score in zip(rows[dead <= ctx.threshold].tolist(), dead[dead <= ctx.threshold].tolist(), strict=True)
    ]


def _linear_scores(net: _Network, ctx: _Context, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Per neuron: distance to being linear on the data, and the slope it has there.

    ReLU: always active, max(0, −min_x z_i)/‖ũ_i‖, slope 1. Leaky ReLU also always inactive (slope β).
    """
    norms = torch.linalg.vector_norm(ctx.standardize(net.U[rows]), dim=1)
    active = _ratio_or_zero((-net.zmin[rows]).clamp_min(0), norms)
    slopes = torch.ones_like(active)
    if ctx.kind == "leaky_relu":
        inactive = _dead_scores(net, ctx, rows)
        odd_slope = ctx.cls.odd_slope
        assert odd_slope is not None, "leaky ReLU's class has α = 1 + slope"
        slopes = torch.where(inactive < active, torch.full_like(active, odd_slope - 1), slopes)
        active = torch.minimum(active, inactive)
    return active, slopes


def _linear_on_data_merge(
    net: _Network, ctx: _Context, verifier: _Verifier, scores: dict[str, float], rule: str
) -> _Merge | None:
    """D2: neurons linear on the data add up to U = Σ s_i a_i ⊗ u_i, i.e. U_w·x + U_b there; replace them by
    rank(U_w) neurons active on every data point, u = (v, M) with M = −min_x v·x + margin, and c += U_b − Σ aM."""
    rows = net.indices
    distance, slopes = _linear_scores(net, ctx, rows)
    needed = min(net.A.shape[0], net.U.shape[1] - 1) + 1
    ordered = torch.sort(distance).values
    scores.setdefault(rule, float(ordered[needed - 1]) if len(ordered) >= needed else math.inf)
    members = torch.nonzero(distance <= ctx.threshold).flatten()
    if len(members) < 2 or not (ctx.has_c and ctx.has_bias):
        return None
    group = rows[members]
    total = (net.A[:, group] * slopes[members]) @ net.U[group]  # q × (d+1)
    left, values, right = _truncated_svd(total[:, :-1], verifier.tolerance / 4, verifier.input_radius)
    if len(values) >= len(group):
        return None
    projections = net.training_inputs @ right.T  # n × r
    low, high = projections.min(dim=0).values, projections.max(dim=0).values
    margin = torch.where(high > low, high - low, torch.ones_like(high))
    offsets = margin - low
    new_a = left * values
    return _Merge(
        rule,
        float(distance[members].max()),
        tuple(group.tolist()),
        remove=tuple(group.tolist()),
        new_u=torch.cat([right, offsets[:, None]], dim=1),
        new_a=new_a,
        delta_c=total[:, -1] - new_a @ offsets,
        detail=f"{len(group)} neurons linear on the data → {len(values)} always-active neuron(s)",
    )


def _pattern_merges(net: _Network, ctx: _Context) -> list[_Merge]:
    """D3: neurons with the same activation pattern on the data and positively parallel output weights
    a_k = t_k a_ref act there as one neuron u = Σ t_k u_k (a positive combination keeps the pattern)."""
    rows = net.indices
    pattern = net.pre(net.training_inputs, rows) > 0  # n × m
    mixed = pattern.any(dim=0) & ~pattern.all(dim=0)
    rows, pattern = rows[mixed], pattern[:, mixed]
    if len(rows) < 2:
        return []
    weights = 2 ** torch.arange(8, device=pattern.device, dtype=torch.uint8)
    padded = torch.nn.functional.pad(pattern.T.to(torch.uint8), (0, (-pattern.shape[0]) % 8))
    packed = (padded.view(len(rows), -1, 8) * weights).sum(dim=2)
    _, labels, counts = torch.unique(packed, dim=0, return_inverse=True, return_counts=True)
    merges = []
    for label in torch.nonzero(counts > 1).flatten().tolist():
        members = rows[labels == label].tolist()
        while len(members) > 1:
            a_ref = net.A[:, members[0]]
            group, ratios, others = [members[0]], [1.0], []
            for k in members[1:]:
                t = float(net.A[:, k] @ a_ref / (a_ref @ a_ref)) if float(a_ref.abs().max()) > 0 else 0.0
                residual = float(torch.linalg.vector_norm(net.A[:, k] - t * a_ref))
                if t > 0 and residual <= 1e-12 * float(torch.linalg.vector_norm(net.A[:, k])):
                    group.append(k)
                    ratios.append(t)
                else:
                    others.append(k)
            if len(group) > 1:
                combination = torch.tensor(ratios, dtype=net.U.dtype, device=net.U.device)
                merges.append(
                    _Merge(
                        PATTERN,
                        0.0,
                        tuple(group),
                        remove=tuple(group),
                        new_u=(combination @ net.U[group])[None, :],
                        new_a=a_ref[:, None].clone(),
                        detail=f"{len(group)} neurons → u = Σ t_k u_k",
                    )
                )
            members = others
    return merges
