"""Verdicts across diagnostics: escape to infinity, and contradictions between verdicts (issue #17).

:func:`divergence_verdict` reads the history of (step, L, ‖θ‖) over snapshots: a norm that keeps growing
while the loss only creeps down means the run is heading to infinity, not to a critical point. In
one-hidden-layer networks the usual mechanism is a near-duplicate pair of neurons with large, nearly opposite
output weights, a·(σ(u·x̃ + δ·x̃) − σ(u·x̃)) → a·σ′(u·x̃)(δ·x̃) with a → ∞, δ → 0: a derivative neuron that
the architecture can only approximate at infinite distance (Fukumizu–Amari; docs/theory.md §1.7).

:func:`contradictions` compares the verdicts of one snapshot with each other and returns every pair that
cannot both be true, with the reason, so that a report flags them instead of printing them side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .critical.classify import CriticalPoint
from .curvature.shallow import find_shallow, shallow_weights
from .redundancy import NullityCheck, RedundancyReport

#: Activations with σ(−z) = κ − σ(z), for which a mirrored pair u_j ≈ −u_i also cancels (a_i ≈ a_j).
_MIRRORED = ("tanh", "sigmoid")


@dataclass(frozen=True)
class DivergingPair:
    """Two hidden neurons that nearly coincide (or mirror) with large output weights that nearly cancel.

    Attributes
    ----------
    neurons : tuple[int, int]
        Their indices in the hidden layer.
    output_weights : tuple[float, float]
        ‖a_i‖ and ‖a_j‖ with the sign of the first output's weight.
    distance : float
        ‖u_i ∓ u_j‖/(‖u_i‖ + ‖u_j‖), u = (w, b): 0 for an exact duplicate (−) or mirror (+).
    cancellation : float
        ‖a_i ± a_j‖/(‖a_i‖ + ‖a_j‖): 0 when their contributions cancel exactly to first order.
    leverage : float
        min(‖a_i‖, ‖a_j‖) / median_k ‖a_k‖: how much larger than a typical output weight they are.
    """

    neurons: tuple[int, int]
    output_weights: tuple[float, float]
    distance: float
    cancellation: float
    leverage: float

    def __str__(self) -> str:
        return (
            f"neurons {self.neurons} (output weights {self.output_weights[0]:+.4g}, {self.output_weights[1]:+.4g};"
            f" input distance {self.distance:.1e}, cancellation {self.cancellation:.1e})"
        )


@dataclass(frozen=True)
class Divergence:
    """Whether the run is escaping to infinity (see :func:`divergence_verdict`).

    Attributes
    ----------
    diverging : bool
        ‖θ‖ grew at every snapshot of the window while L decreased at every one, by a relative amount
        at most ``max_elasticity`` times the norm's relative growth.
    reason : str
        The evidence in words ("diverging: no critical point at finite distance ..." when ``diverging``).
    norm_growth, loss_decrease : float
        Relative growth of ‖θ‖ and relative decrease of L over the window (NaN with too few snapshots).
    elasticity : float
        loss_decrease / norm_growth: d log L / d log ‖θ‖ along the run; near 0 when L only creeps.
    steps : tuple[float, float]
        The first and last step of the window.
    pairs : tuple[DivergingPair, ...]
        The near-duplicate pairs with large opposite output weights (empty without a one-hidden-layer model).
    """

    diverging: bool
    reason: str
    norm_growth: float
    loss_decrease: float
    elasticity: float
    steps: tuple[float, float]
    pairs: tuple[DivergingPair, ...] = ()

    def __str__(self) -> str:
        return self.reason


def divergence_verdict(
    history: Sequence[Sequence[float]],
    model: nn.Module | None = None,
    *,
    window: int = 5,
    min_growth: float = 1e-3,
    max_elasticity: float = 1e-3,
    pair_distance: float = 0.05,
    pair_cancellation: float = 0.05,
    min_leverage: float = 10.0,
    layers: tuple[str, str, str] | None = None,
) -> Divergence:
    """Say "diverging: no critical point at finite distance" when ‖θ‖ keeps growing while L creeps down.

    Over the last ``window`` snapshots (step_k, L_k, N_k = ‖θ_k‖) of ``history``:

        diverging  ⇔  N_{k+1} > N_k and L_{k+1} < L_k at every snapshot,
                      g = N_last/N_first − 1 ≥ min_growth,   e = (1 − L_last/L_first)/g ≤ max_elasticity

    e = d log L / d log ‖θ‖ is the loss's elasticity along the run: a run converging to a minimum θ* ≠ 0
    stops growing (g → 0 at fixed window); one that is still descending fast has e ≳ 1; a run that buys ever
    smaller loss decreases with ever larger parameters has e ≈ 0. With a one-hidden-layer ``model`` the
    pairs of neurons carrying the escape are named: ‖u_i ∓ u_j‖/(‖u_i‖ + ‖u_j‖) ≤ ``pair_distance``
    (∓: duplicate, or mirror for tanh/sigmoid), ‖a_i ± a_j‖/(‖a_i‖ + ‖a_j‖) ≤ ``pair_cancellation`` and both
    ‖a‖ at least ``min_leverage`` times the median output-weight norm.

    Parameters
    ----------
    history
        (step, loss, parameter norm) per snapshot, oldest first; the probe keeps it across snapshots.
    model
        The current model (read only), to name the neurons; None or a deeper network for the history alone.
    window
        Snapshots judged (at least 3).
    min_growth, max_elasticity, pair_distance, pair_cancellation, min_leverage
        The thresholds above.
    layers
        (hidden, activation, output) module names, for models the automatic search does not understand.
    """
    rows = _history_rows(
        history,
        window,
        min_growth=min_growth,
        max_elasticity=max_elasticity,
        pair_distance=pair_distance,
        pair_cancellation=pair_cancellation,
        min_leverage=min_leverage,
    )
    pairs = _diverging_pairs(model, pair_distance, pair_cancellation, min_leverage, layers)
    if len(rows) < window:
        return Divergence(
            False,
            f"not enough snapshots to judge divergence ({len(rows)} < window {window})",
            math.nan,
            math.nan,
            math.nan,
            (math.nan, math.nan),
            pairs,
        )
    steps, losses, norms = rows[-window:].T
    growth = float(norms[-1] / norms[0] - 1) if norms[0] > 0 else math.inf
    decrease = float(1 - losses[-1] / losses[0]) if losses[0] > 0 else 0.0
    elasticity = decrease / growth if growth > 0 else math.inf
    span = (float(steps[0]), float(steps[-1]))
    monotone = bool((norms.diff() > 0).all() and (losses.diff() < 0).all())
    diverging = monotone and growth >= min_growth and elasticity <= max_elasticity
    reason = _divergence_reason(
        diverging, monotone, span, growth, decrease, elasticity, pairs, min_growth, max_elasticity
    )
    return Divergence(diverging, reason, growth, decrease, elasticity, span, pairs)


def _history_rows(history: Sequence[Sequence[float]], window: int, **thresholds: float) -> Tensor:
    """The history as an (n, 3) float64 tensor, after checking it and the arguments of :func:`divergence_verdict`."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 3:
        raise ValueError(f"window must be an int >= 3 (snapshots judged), got {window!r}.")
    for name, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    rows = (
        torch.as_tensor([list(map(float, row)) for row in history], dtype=torch.float64).reshape(-1, 3)
        if len(history)
        else torch.zeros(0, 3, dtype=torch.float64)
    )
    if not torch.isfinite(rows).all():
        raise ValueError("history must hold finite (step, loss, parameter norm) triples.")
    return rows


def _divergence_reason(
    diverging: bool,
    monotone: bool,
    span: tuple[float, float],
    growth: float,
    decrease: float,
    elasticity: float,
    pairs: tuple[DivergingPair, ...],
    min_growth: float,
    max_elasticity: float,
) -> str:
    """The sentence of a :class:`Divergence`: what was measured over the window, and the pairs carrying it."""
    measured = (
        f"over steps {span[0]:g}..{span[1]:g} |theta| grew by {growth:.3g} (relative) while L fell by only "
        f"{decrease:.3g} (elasticity d log L / d log |theta| = {elasticity:.3g})"
    )
    if diverging:
        named = "; ".join(map(str, pairs))
        carried = (
            f"; carried by {named}, which approximate a derivative neuron only at infinite distance" if pairs else ""
        )
        return f"diverging: no critical point at finite distance; {measured}{carried}"
    if not monotone:
        return "not diverging: |theta| or L did not move monotonically over the window"
    return f"not diverging: {measured} (diverging needs growth >= {min_growth:g} and elasticity <= {max_elasticity:g})"


def _diverging_pairs(
    model: nn.Module | None,
    distance_tol: float,
    cancellation_tol: float,
    min_leverage: float,
    layers: tuple[str, str, str] | None,
) -> tuple[DivergingPair, ...]:
    if model is None:
        return ()
    try:
        net = find_shallow(model, layers)
    except ValueError:
        if layers is not None:
            raise
        return ()  # not a one-hidden-layer network: the history alone decides
    W, b, A, _ = shallow_weights(net)
    U = torch.cat([W, (b if b is not None else W.new_zeros(W.shape[0]))[:, None]], dim=1)
    weights = torch.linalg.vector_norm(A, dim=0)
    norms = torch.linalg.vector_norm(U, dim=1)
    typical = float(weights.median())
    signs = (1.0, -1.0) if net.kind in _MIRRORED else (1.0,)
    m = U.shape[0]
    total = norms[:, None] + norms[None, :]
    lever = (
        torch.minimum(weights[:, None], weights[None, :]) / typical if typical > 0 else torch.full_like(total, math.inf)
    )
    pairs = torch.ones(m, m, dtype=torch.bool).triu(1) & (total > 0) & (lever >= min_leverage)
    gram_u, gram_a = U @ U.T, A.T @ A
    candidates = []
    for index, sign in enumerate(signs):  # u_j ≈ sign·u_i contributes sign·a_j σ(u_i·x̃) (+ a constant), cancelling a_i
        # Screened for all pairs at once through the Gram matrices (m² numbers, where the differences would
        # be m²·d), with room for their rounding; the survivors are measured exactly below.
        distance = (norms[:, None] ** 2 + norms[None, :] ** 2 - 2 * sign * gram_u).clamp_min(0).sqrt() / total
        cancellation = (weights[:, None] ** 2 + weights[None, :] ** 2 + 2 * sign * gram_a).clamp_min(0).sqrt()
        cancellation = cancellation / (weights[:, None] + weights[None, :])
        near = pairs & (distance <= distance_tol + 1e-6) & (cancellation <= cancellation_tol + 1e-6)
        candidates += [(i, j, index) for i, j in near.nonzero().tolist()]
    found = []
    for i, j, index in sorted(candidates):
        sign = signs[index]
        distance_ij = float(torch.linalg.vector_norm(U[i] - sign * U[j]) / total[i, j])
        cancellation_ij = float(torch.linalg.vector_norm(A[:, i] + sign * A[:, j]) / (weights[i] + weights[j]))
        if distance_ij <= distance_tol and cancellation_ij <= cancellation_tol:
            first = (float(A[0, i]), float(A[0, j]))
            found.append(DivergingPair((i, j), first, distance_ij, cancellation_ij, float(lever[i, j])))
    return tuple(sorted(found, key=lambda pair: -pair.leverage))


@dataclass(frozen=True)
class Contradiction:
    """Two verdicts of one snapshot that cannot both hold.

    Attributes
    ----------
    pair : str
        Which verdicts: "efficient vs non-isolated", "index 0 vs certainly negative eigenvalue",
        "critical vs diverging", "redundant vs nondegenerate", or "nullity below prediction".
    reason : str
        The numbers behind it and what usually causes it.
    """

    pair: str
    reason: str

    def __str__(self) -> str:
        return f"CONTRADICTION ({self.pair}): {self.reason}"


def contradictions(
    critical: CriticalPoint | None = None,
    redundancy: RedundancyReport | None = None,
    nullity: NullityCheck | None = None,
    divergence: Divergence | None = None,
) -> tuple[Contradiction, ...]:
    """Every pair of the given verdicts that contradict each other (none when all agree; pass what you have).

    - efficient vs non-isolated: no redundancy at all (not even near) beside a degenerate critical point
      whose null directions the redundancies and symmetries do not explain; Benning–Dereich: efficient
      minimisers are generically non-degenerate, so one of the two verdicts missed something.
    - index 0 vs certainly negative eigenvalue: a critical point with Morse index 0 although some λ lies
      below −max(error bound, rtol_zero·s) (the zero band τ grew with ‖∇L‖ or the symmetry leak).
    - critical vs diverging: θ passes the criticality test while the run escapes to infinity.
    - redundant vs nondegenerate: a verified redundancy predicts null directions of H, yet H ≻ 0 (§4.5).
    - nullity below prediction: the Hessian has fewer null directions than the redundancies predict.
    """
    found: list[Contradiction] = []
    if critical is not None and redundancy is not None and critical.critical and critical.kind == "degenerate":
        unexplained = nullity.unexplained_nullity if nullity is not None and nullity.critical else None
        if not redundancy.redundant and not redundancy.near_redundant and unexplained != 0:
            what = "a non-isolated minimum" if critical.degenerate_kind == "nonisolated_min" else "a degenerate point"
            count = f"{unexplained} unexplained null direction(s)" if unexplained else f"nullity {critical.nullity}"
            found.append(
                Contradiction(
                    "efficient vs non-isolated",
                    (
                        f"the redundancy report finds no redundant or near-redundant neuron (closest rule "
                        f"{redundancy.score_rule!r} at score {redundancy.score:.2e}) while theta is {what} with "
                        f"{count}: "
                        "a redundancy below the rules' tolerances, interpolation, or higher-order degeneracy"
                    ),
                )
            )
    if critical is not None and critical.critical and critical.morse_index == 0 and critical.negative_count:
        found.append(
            Contradiction(
                "index 0 vs certainly negative eigenvalue",
                (
                    f"index 0 at tau = {critical.tau:.3g}, yet {critical.negative_count} eigenvalue(s) lie below "
                    f"-max(error bound, {critical.negative_tol:.3g}) (lambda_min = {critical.lambda_min:.6g}): "
                    "the zero band grew with the gradient or the symmetry leak; this is not a minimum"
                ),
            )
        )
    if critical is not None and divergence is not None and critical.critical and divergence.diverging:
        found.append(
            Contradiction(
                "critical vs diverging",
                (
                    f"the Newton step {critical.newton_step:.3g} ({critical.newton_ratio:.3g} of the parameter scale) "
                    f"passes the criticality test, but {divergence.reason}: the quadratic model sees a critical point "
                    "the run never reaches"
                ),
            )
        )
    if (
        critical is not None
        and redundancy is not None
        and redundancy.redundant
        and critical.kind == "nondegenerate_min"
    ):
        found.append(
            Contradiction(
                "redundant vs nondegenerate",
                (
                    f"verified redundancy (width {redundancy.width} -> {redundancy.effective_width}) predicts Hessian "
                    "null directions, but H is positive definite: a tolerance problem or a data- vs function-level "
                    "mismatch"
                ),
            )
        )
    if nullity is not None and nullity.inconsistent:
        found.append(Contradiction("nullity below prediction", nullity.message))
    return tuple(found)
