"""Reduction rules per neuron and per pair, and antipodal groups (docs/theory.md §4.2, §4.3)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from ..curvature.shallow import ShallowNetwork
from .network import _BLOCK, _Merge, _Network, _Verifier
from .report import ANTIPODAL, CONSTANT, DEAD, DUPLICATE, MIRRORED, MULTIPLE, POSITIVE_MULTIPLE, ZERO, _unit_rows

#: Pairs whose Gram-matrix score is within this of the candidate threshold are rescored exactly; the Gram
#: route loses about √ε ≈ 1.5e-8 to cancellation.
_SCREEN_SLACK = 1e-6


@dataclass(frozen=True)
class _Class:
    """What the activation's algebra allows (docs/theory.md §4.2).

    mirror_constant: κ with σ(−z) = κ − σ(z) (class A), so mirrored pairs merge.
    odd_slope: α with σ(z) − σ(−z) = αz (class B), so antipodal groups merge.
    multiple_power: p with σ(γz) = γ^p σ(z), for γ > 0 (ReLU-type) or every γ ≠ 0 (``any_sign``).
    complete: the function-level rules find the minimal width.
    """

    mirror_constant: float | None = None
    odd_slope: float | None = None
    multiple_power: int = 0
    any_sign: bool = False
    relu_type: bool = False
    complete: bool = False


def _activation_class(net: ShallowNetwork) -> _Class:
    slope = float(getattr(net.activation, "negative_slope", 0.0))
    return {
        "tanh": _Class(mirror_constant=0.0, complete=True),
        "sigmoid": _Class(mirror_constant=1.0, complete=True),
        "relu": _Class(odd_slope=1.0, multiple_power=1, relu_type=True),
        "leaky_relu": _Class(odd_slope=1.0 + slope, multiple_power=1, relu_type=True),
        "softplus": _Class(odd_slope=1.0),
        "gelu": _Class(odd_slope=1.0),
        "silu": _Class(odd_slope=1.0),
        "identity": _Class(multiple_power=1, any_sign=True, complete=True),
        "square": _Class(multiple_power=2, any_sign=True, complete=True),
    }[net.kind]


def _completeness_note(kind: str) -> str:
    if kind in ("tanh", "sigmoid"):
        return (
            f"{kind}: the rules are complete (Sussmann), so the function-level width is minimal at the "
            "verification tolerance"
        )
    if kind in ("identity", "square"):
        return (
            f"{kind}: the rank rule is complete, so the function-level width is minimal at the verification tolerance"
        )
    if kind in ("relu", "leaky_relu"):
        return f"{kind}: the function-level width is an upper bound (Dereich–Kassing kink groups are not all built)"
    return f"{kind}: the rules are sufficient conditions only; the function-level width is an upper bound"


# ----------------------------------------------------------------------------------------------------------
# Rules


@dataclass
class _Context:
    """What every rule needs to know about the network, the points and the thresholds."""

    cls: _Class
    kind: str
    has_bias: bool
    has_c: bool
    center: Tensor
    spread: float
    scale: float  # RMS over all points of ‖f − f̄‖
    threshold: float  # candidate score threshold
    l1_max_cost: float
    notes: list[str]

    def standardize(self, U: Tensor) -> Tensor:
        """ũ = (s_x·w, b + w·x̄) (§4.1): coordinates of a neuron on standardised inputs."""
        w = U[:, :-1]
        return torch.cat([self.spread * w, (U[:, -1] + w @ self.center)[:, None]], dim=1)


Candidate = tuple[float, int, str, tuple[int, ...], Callable[[], _Merge | None]]


def _ratio_or_zero(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator/denominator, and 0 where the denominator is 0 (a zero neuron scores 0: it is removable)."""
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), torch.zeros_like(numerator))


def _zero_scores(net: _Network, ctx: _Context, rows: Tensor) -> Tensor:
    """‖a_i‖·RMS(φ_i)/RMS(f − f̄) over data and probes: 0 iff removing neuron i changes nothing there."""
    return torch.linalg.vector_norm(net.A[:, rows], dim=0) * net.rms[rows] / ctx.scale


def _constant_scores(net: _Network, ctx: _Context, rows: Tensor) -> Tensor:
    """ρ_const = ‖w′_i‖/‖ũ_i‖ (§4.3): 0 iff w_i = 0."""
    standardized = ctx.standardize(net.U[rows])
    return _ratio_or_zero(
        torch.linalg.vector_norm(standardized[:, :-1], dim=1), torch.linalg.vector_norm(standardized, dim=1)
    )


def _dead_scores(net: _Network, ctx: _Context, rows: Tensor) -> Tensor:
    """D1 (ReLU): max(0, max_x z_i)/‖ũ_i‖ over the data: 0 iff z_i ≤ 0 on every data point."""
    return _ratio_or_zero(net.zmax[rows].clamp_min(0), torch.linalg.vector_norm(ctx.standardize(net.U[rows]), dim=1))


def _neuron_candidates(net: _Network, ctx: _Context, scores: dict[str, float]) -> list[Candidate]:
    """Zero output weight (A1/B1) and constant neuron (A2/B2); per-neuron, linear in width."""
    rows = net.indices
    zero, constant = _zero_scores(net, ctx, rows), _constant_scores(net, ctx, rows)
    scores.setdefault(ZERO, float(zero.min()) if len(rows) else math.inf)
    scores.setdefault(CONSTANT, float(constant.min()) if len(rows) else math.inf)
    candidates: list[Candidate] = []
    weights = torch.linalg.vector_norm(net.A[:, rows], dim=0)
    for position in torch.nonzero(zero <= ctx.threshold).flatten().tolist():
        i, score = int(rows[position]), float(zero[position])
        # A zero score with a_i ≠ 0 means φ_i = 0 at every point: a ReLU dead on data and probes. Any
        # other activation is then a constant neuron (w_i = 0), which that rule merges into c.
        if float(weights[position]) <= ctx.threshold * float(weights.max()):
            rule = ZERO
        elif ctx.kind == "relu":
            rule = DEAD
        else:
            continue
        candidates.append(
            (
                score,
                0,
                rule,
                (i,),
                partial(_Merge, rule, score, (i,), remove=(i,), detail=f"delete {i}"),
            )
        )
    constants = [int(rows[p]) for p in torch.nonzero(constant <= ctx.threshold).flatten().tolist()]
    for i, score in zip(constants, constant[constant <= ctx.threshold].tolist(), strict=True):
        candidates.append((score, 1, CONSTANT, (i,), partial(_constant_merge, net, ctx, i, score, constants)))
    return candidates


def _constant_merge(net: _Network, ctx: _Context, i: int, score: float, constants: list[int]) -> _Merge | None:
    value = net.sigma(net.U[i, -1:])  # σ(b_i)
    contribution = net.A[:, i] * value
    if ctx.has_c:
        return _Merge(
            CONSTANT, score, (i,), remove=(i,), delta_c=contribution, detail=f"delete {i}; c += a_{i}·σ(b_{i})"
        )
    # Without c a constant neuron can only be absorbed by another constant neuron (§4.2).
    for k in constants:
        other = net.sigma(net.U[k, -1:])
        if k != i and bool(net.alive[k]) and float(other.abs()) > 0:
            return _Merge(
                CONSTANT,
                score,
                (i, k),
                remove=(i,),
                update=(k,),
                delta_a=(contribution / other)[:, None],
                detail=f"delete {i}; a_{k} += a_{i}·σ(b_{i})/σ(b_{k})",
            )
    if float(value.abs()) == 0:
        return _Merge(CONSTANT, score, (i,), remove=(i,), detail=f"delete {i} (σ(b_{i}) = 0)")
    return None


def _pair_rules(ctx: _Context) -> list[tuple[str, str]]:
    """(rule, geometry) for the pairwise rules of the class; geometry says which score measures it."""
    rules = [(DUPLICATE, "difference")]
    if ctx.cls.mirror_constant is not None and (ctx.cls.mirror_constant == 0 or ctx.has_c):
        rules.append((MIRRORED, "sum"))
    if ctx.cls.multiple_power:
        rules.append((MULTIPLE, "line") if ctx.cls.any_sign else (POSITIVE_MULTIPLE, "ray"))
    if ctx.cls.odd_slope is not None:
        rules.append((ANTIPODAL, "opposite ray" if ctx.cls.multiple_power else "sum"))
    return rules


def _pair_scores(geometry: str, ti: Tensor, tj: Tensor) -> Tensor:
    """Exact scores (§4.3) of pairs of standardised neurons (rows of ti, tj).

    difference ρ_dup = ‖ũ_i − ũ_j‖/(‖ũ_i‖ + ‖ũ_j‖); sum ρ_anti = ‖ũ_i + ũ_j‖/(…); ray ‖û_i − û_j‖/2
    (zero iff u_j = γu_i, γ > 0); opposite ray ‖û_i + û_j‖/2; line min of the two.
    """
    if geometry in ("difference", "sum"):
        other = -tj if geometry == "sum" else tj
        total = torch.linalg.vector_norm(ti, dim=1) + torch.linalg.vector_norm(tj, dim=1)
        return _ratio_or_zero(torch.linalg.vector_norm(ti - other, dim=1), total)
    ui, uj = _unit_rows(ti), _unit_rows(tj)
    same = torch.linalg.vector_norm(ui - uj, dim=1) / 2
    opposite = torch.linalg.vector_norm(ui + uj, dim=1) / 2
    return {"ray": same, "opposite ray": opposite, "line": torch.minimum(same, opposite)}[geometry]


def _pair_screen(
    ctx: _Context, standardized: Tensor, rules: list[tuple[str, str]]
) -> tuple[dict[str, float], dict[str, Tensor], dict[str, tuple[Tensor, Tensor, Tensor]]]:
    """Smallest score of each pair rule, per-neuron best scores, and every pair (i < j) scored ≤ threshold.

    One pass over the lower triangle of the cosine matrix of the standardised neurons, in blocks of rows,
    O(m²·d), finds each neuron's most parallel and most antiparallel earlier partner. The ray scores
    ‖û_i ∓ û_j‖/2 = √((1 ∓ cos)/2) are monotone in the cosine, so these partners attain their minima; and as
    ρ_dup ≥ ‖û_i − û_j‖/2 and ρ_anti ≥ ‖û_i + û_j‖/2, every pair a rule scores ≤ τ has ±cos ≥ 1 − 2τ²,
    which screens the candidates. Every score is then recomputed exactly by :func:`_pair_scores`. The minima of
    ρ_dup and ρ_anti are taken over the screened pairs and the extreme partners, so above the threshold they
    are upper bounds. Returns (minimum per rule, best score per neuron j per rule, (score, i, j) of the
    pairs at most the threshold per rule), with indices into ``standardized``.
    """
    m = standardized.shape[0]
    device = standardized.device
    units = _unit_rows(standardized)
    tau = ctx.threshold + _SCREEN_SLACK
    near = 1 - 2 * tau * tau
    empty = torch.zeros(0, dtype=torch.long, device=device)
    firsts, seconds = [empty], [empty]
    size = max(1, _BLOCK // max(m, 1))
    for start in range(1, m, size):
        stop = min(m, start + size)
        cosine = units[start:stop] @ units[:stop].T
        diagonal = cosine[:, start:stop]
        upper = torch.ones_like(diagonal, dtype=torch.bool).triu_()  # i ≥ j
        js = torch.arange(start, stop, device=device)
        for parallel in (True, False):
            diagonal.masked_fill_(upper, -math.inf if parallel else math.inf)
            rows, partners = torch.nonzero(cosine >= near if parallel else cosine <= -near, as_tuple=True)
            firsts += [partners, (torch.argmax if parallel else torch.argmin)(cosine, dim=1)]
            seconds += [rows + start, js]
    first, second = torch.cat(firsts), torch.cat(seconds)
    key = torch.unique(first * m + second)
    first, second = key // m, key % m
    minima, best, found = {}, {}, {}
    for rule, geometry in rules:
        score = _pair_scores(geometry, standardized[first], standardized[second])
        minima[rule] = float(score.min()) if len(score) else math.inf
        best[rule] = standardized.new_full((m,), math.inf).scatter_reduce(0, second, score, "amin")
        keep = score <= ctx.threshold
        found[rule] = (score[keep], first[keep], second[keep])
    return minima, best, found


def _pair_candidates(
    net: _Network, ctx: _Context, scores: dict[str, float], screen: dict
) -> tuple[list[Candidate], list[tuple[float, int, int]]]:
    """Duplicate (A3/B3), mirrored (A4), (positive) multiple (B3′, homogeneous σ), antipodal pairs (B4).

    The screen (:func:`_pair_screen`) is redone only when merges have created neurons; otherwise the pairs
    found before are filtered to the living neurons. Each neuron j is offered with its best partner.
    """
    rules = _pair_rules(ctx)
    if screen.get("size") != net.U.shape[0]:
        rows = net.indices
        minima, best, found = _pair_screen(ctx, ctx.standardize(net.U[rows]), rules) if len(rows) > 1 else ({}, {}, {})
        for rule, value in minima.items():
            if rule == ANTIPODAL:
                # A group needs more antipodal pairs than twice the rank of its affine part (§4.2 B4).
                needed = 2 * min(net.A.shape[0], net.U.shape[1] - 1) + 1
                ordered = torch.sort(best[rule][torch.isfinite(best[rule])]).values
                value = float(ordered[needed - 1]) if len(ordered) >= needed else math.inf
            scores.setdefault(rule, value)
        screen.update(size=net.U.shape[0], found={rule: (v, rows[i], rows[j]) for rule, (v, i, j) in found.items()})
    candidates: list[Candidate] = []
    antipodal: list[tuple[float, int, int]] = []
    for priority, (rule, _) in enumerate(rules, start=2):
        if rule not in screen["found"]:
            continue
        value, first, second = screen["found"][rule]
        alive = net.alive[first] & net.alive[second]
        value, first, second = value[alive], first[alive], second[alive]
        order = torch.argsort(value, stable=True)
        order = order[torch.argsort(second[order], stable=True)]
        leading = torch.ones_like(order, dtype=torch.bool)
        leading[1:] = second[order][1:] != second[order][:-1]
        pairs = [(float(value[k]), int(first[k]), int(second[k])) for k in order[leading].tolist()]
        if rule == ANTIPODAL:
            antipodal = sorted(pairs)
            continue
        candidates += [
            (score, priority, rule, (i, j), partial(_pair_merge, net, ctx, rule, i, j, score)) for score, i, j in pairs
        ]
    return candidates, antipodal


def _ratio(U: Tensor, i: int, j: int) -> float:
    """γ with u_j = γ u_i, by least squares."""
    return float(U[i] @ U[j] / (U[i] @ U[i]))


def _pair_merge(net: _Network, ctx: _Context, rule: str, i: int, j: int, score: float) -> _Merge:
    a_j = net.A[:, j]
    if rule == DUPLICATE:
        return _Merge(
            rule, score, (i, j), remove=(j,), update=(i,), delta_a=a_j[:, None], detail=f"delete {j}; a_{i} += a_{j}"
        )
    if rule == MIRRORED:
        kappa = ctx.cls.mirror_constant
        return _Merge(
            rule,
            score,
            (i, j),
            remove=(j,),
            update=(i,),
            delta_a=-a_j[:, None],
            delta_c=kappa * a_j if kappa else None,
            detail=f"delete {j}; a_{i} −= a_{j}" + (f"; c += {kappa:g}·a_{j}" if kappa else ""),
        )
    gamma = _ratio(net.U, i, j)
    factor = gamma**ctx.cls.multiple_power
    return _Merge(
        rule,
        score,
        (i, j),
        remove=(j,),
        update=(i,),
        delta_a=factor * a_j[:, None],
        detail=f"delete {j}; a_{i} += {factor:.6g}·a_{j} (u_{j} = {gamma:.6g}·u_{i})",
    )


def _truncated_svd(matrix: Tensor, budget: float, radius: float) -> tuple[Tensor, Tensor, Tensor]:
    """U_r, S_r, V_rᵀ of ``matrix`` with the smallest r such that dropping the rest moves no output by more
    than ``budget`` (a dropped singular value s moves f(x) by at most s·‖x̃‖ ≤ s·radius)."""
    left, values, right = torch.linalg.svd(matrix, full_matrices=False)
    tail = torch.flip(torch.cumsum(torch.flip(values, [0]), 0), [0]) * radius  # tail[k] = radius·Σ_{l≥k} s_l
    rank = int((tail > budget).sum())
    return left[:, :rank], values[:, None][:rank, 0], right[:rank]


def _antipodal_merge(net: _Network, ctx: _Context, pairs: list, verifier: _Verifier) -> _Merge | None:
    """B4: a_iσ(z) + a_jσ(−γz) = (a_i + γa_j)σ(z) + t·x̃ with t = −αγ a_j ⊗ u_i, so each antipodal pair
    collapses to one neuron if the affine terms T = Σ t (ℓ·x + β) are rebuilt: β goes to c, and ℓ either to
    2·rank(ℓ) new neurons (1/α)[σ(v·x) − σ(−v·x)] = v·x, or, when the pairs' directions are dependent, to
    pairs kept whole whose directions span them (a kept pair adds v·z_i = (v/α)[σ(z_i) − σ(z_j)/γ]). The
    cheaper way is taken; a reduction needs more pairs than it costs."""
    alpha = ctx.cls.odd_slope
    if alpha is None:  # only activations with σ(z) − σ(−z) = αz have antipodal groups
        return None
    used: set[int] = set()
    chosen = []
    for score, i, j in pairs:
        if i not in used and j not in used and bool(net.alive[i]) and bool(net.alive[j]):
            used.update((i, j))
            chosen.append((score, i, j))
    if not chosen:
        return None
    gammas = torch.tensor(
        [(-_ratio(net.U, i, j) if ctx.cls.multiple_power else 1.0) for _, i, j in chosen],
        dtype=net.U.dtype,
        device=net.U.device,
    )
    first = torch.tensor([i for _, i, _ in chosen], device=net.U.device)
    second = torch.tensor([j for _, _, j in chosen], device=net.U.device)
    terms = -alpha * gammas[:, None, None] * net.A[:, second].T[:, :, None] * net.U[first][:, None, :]  # t per pair
    columns = slice(None) if (not ctx.has_c and ctx.has_bias) else slice(0, -1)  # what c cannot absorb
    spanning = _spanning_subset(net.U[first][:, columns])
    total = terms.sum(dim=0)
    left, values, right = _truncated_svd(total[:, columns], verifier.tolerance / 4, verifier.input_radius)
    count = len(chosen)
    score = max(s for s, _, _ in chosen)
    involved = tuple(first.tolist()) + tuple(second.tolist())
    if count - 2 * len(values) >= count - len(spanning) and count > 2 * len(values):
        directions = _with_bias_column(right, net.U.shape[1])
        weights = left * values / alpha
        return _Merge(
            ANTIPODAL,
            score,
            involved,
            remove=tuple(second.tolist()),
            update=tuple(first.tolist()),
            delta_a=gammas * net.A[:, second],
            new_u=torch.cat([directions, -directions]),
            new_a=torch.cat([weights, -weights], dim=1),
            delta_c=total[:, -1] if ctx.has_c else None,
            detail=f"{count} antipodal pairs → {count} neurons + {2 * len(values)} for the linear part",
        )
    if count <= len(spanning):
        return None
    kept = torch.zeros(count, dtype=torch.bool, device=first.device)
    kept[spanning] = True
    rest = terms[~kept].sum(dim=0)  # affine terms of the collapsed pairs
    directions = net.U[first[kept]]
    # V·D_K = the part of the collapsed pairs' affine term that c cannot take (exact: D_K spans all directions).
    v = torch.linalg.lstsq(directions[:, columns].T, rest[:, columns].T).solution.T  # q × |K|
    delta_a = torch.cat([gammas[~kept] * net.A[:, second[~kept]], v / alpha, -v / (alpha * gammas[kept])], dim=1)
    update = first[~kept].tolist() + first[kept].tolist() + second[kept].tolist()
    delta_c = rest[:, -1] - v @ directions[:, -1] if ctx.has_c else None
    return _Merge(
        ANTIPODAL,
        score,
        involved,
        remove=tuple(second[~kept].tolist()),
        update=tuple(update),
        delta_a=delta_a,
        delta_c=delta_c,
        detail=f"{count} antipodal pairs → {count - len(spanning)} neurons + {len(spanning)} pairs kept "
        "for the linear part",
    )


def _with_bias_column(rows: Tensor, width: int) -> Tensor:
    """Neurons (w) or (w, b) as rows of width d + 1, with b = 0 where the rows have no bias column."""
    return rows if rows.shape[1] == width else torch.cat([rows, rows.new_zeros(rows.shape[0], 1)], dim=1)


def _spanning_subset(rows: Tensor) -> list[int]:
    """Indices of a maximal linearly independent subset of the rows (greedy, relative tolerance 1e-10)."""
    basis: list[Tensor] = []
    chosen = []
    for index, row in enumerate(rows):
        residual = row.clone()
        for vector in basis:
            residual -= (vector @ residual) * vector
        if float(torch.linalg.vector_norm(residual)) > 1e-10 * float(torch.linalg.vector_norm(row)):
            basis.append(residual / torch.linalg.vector_norm(residual))
            chosen.append(index)
    return chosen
