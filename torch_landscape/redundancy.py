"""Neuron redundancy of one-hidden-layer networks (theory.md §4): rules, scores, merge-and-verify, cross-check.

For f(x) = A σ(W x + b) + c with m hidden neurons u_i = (w_i, b_i) and output weights a_i (column i of A),
θ is *redundant* when a network with fewer neurons has the same realization, on all inputs (function
level) or on the training inputs only (data level); otherwise it is *efficient* (Benning–Dereich).
:func:`neuron_redundancy` applies the reduction rules of the activation's class, scores how far θ is from
each redundant set, and proves every claim by construction (§4.4): it builds the smaller network with the
rule's merge formula and compares the outputs, on the data and on probe points. A merge that does not
reproduce the outputs to tol·(1 + max|f|) is not claimed.

Completeness (§4.2, §8.5): for tanh and sigmoid (Sussmann 1992), the quadratic activation (rank) and the
linear one (rank) the function-level rules are complete, so ``effective_width`` is the minimal width.
For ReLU and leaky ReLU it is an upper bound (the Dereich–Kassing kink-group reductions beyond antipodal
groups are not built). For softplus, GELU and SiLU the rules are sufficient conditions only.

:func:`redundancy_nullity_check` is the Hessian cross-check of §4.5: at a critical point the nullity of
the Hessian must be at least the rank of the null vectors that the redundancies and symmetries predict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .hessian import HessianOperator
from .objective import LossFunction, Objective
from .shallow import (
    ShallowNetwork, activation_derivatives, activation_function, find_shallow, resized_copy, shallow_weights,
)

FUNCTION, DATA = "function", "data"

ZERO = "zero output weight"
CONSTANT = "constant neuron"
DUPLICATE = "duplicate"
MIRRORED = "mirrored"
POSITIVE_MULTIPLE = "positive multiple"
MULTIPLE = "multiple"
ANTIPODAL = "antipodal group"
RANK = "rank"
DEAD = "dead on data"
ALWAYS_ACTIVE = "always active on data"
LINEAR_ON_DATA = "linear on data"
PATTERN = "same activation pattern"
DEPENDENCE = "linear dependence"

#: Pairs whose Gram-matrix score is within this of the candidate threshold are rescored exactly; the Gram
#: route loses about √ε ≈ 1.5e-8 to cancellation.
_SCREEN_SLACK = 1e-6
#: Elements per block of neuron activations held at once (64 MiB in float64).
_BLOCK = 1 << 23


@dataclass(frozen=True)
class _Class:
    """What the activation's algebra allows (theory.md §4.2).

    mirror_constant: κ with σ(−z) = κ − σ(z) (class A), so mirrored pairs merge.
    odd_slope: α with σ(z) − σ(−z) = αz (class B), so antipodal groups merge.
    multiple_power: p with σ(γz) = γ^p σ(z), for γ > 0 (ReLU-type) or every γ ≠ 0 (``any_sign``).
    complete: the function-level rules find the minimal width.
    """

    mirror_constant: Optional[float] = None
    odd_slope: Optional[float] = None
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
        return (f"{kind}: the rules are complete (Sussmann), so the function-level width is minimal at the "
                "verification tolerance")
    if kind in ("identity", "square"):
        return f"{kind}: the rank rule is complete, so the function-level width is minimal at the verification tolerance"
    if kind in ("relu", "leaky_relu"):
        return f"{kind}: the function-level width is an upper bound (Dereich–Kassing kink groups are not all built)"
    return f"{kind}: the rules are sufficient conditions only; the function-level width is an upper bound"


@dataclass(frozen=True)
class RedundancyFinding:
    """One reduction rule that holds (or nearly holds) at θ.

    Attributes
    ----------
    rule : str
        Human-readable rule name: "zero output weight", "constant neuron", "duplicate", "mirrored",
        "positive multiple", "multiple", "antipodal group", "rank", "dead on data", "always active on data",
        "linear on data", "same activation pattern", "linear dependence".
    neurons : tuple[int, ...]
        The hidden neurons of the original network involved (indices into the hidden layer's rows).
    score : float
        Its distance-to-redundancy score (theory.md §4.3): scale-invariant, exactly 0 when the rule holds.
    level : str
        "function" (verified on the data and on probe points) or "data" (on the data only).
    verified : bool
        Whether the merge reproduced the outputs to the tolerance; only verified findings are claims.
    width_reduction : int
        Neurons saved by the merge.
    max_output_change : float
        max |f_θ(x) − f_θ′(x)| of this merge alone over the points of its level.
    detail : str
        The merge formula applied.
    original : bool
        The rule held between neurons of the original network, with output weights not yet changed by
        an earlier merge, so the null vectors it predicts (§4.5) apply at θ itself.
    fit_change : float
        (Δ² + 2Δr)/s², with Δ the RMS output change of this merge alone, r the RMS residual f − y on the data
        (0 without targets) and s = RMS(f − f̄): a bound on the change of a mean squared loss the merge
        causes, relative to the loss of a constant predictor.
    near : bool
        Not verified, but ``fit_change`` ≤ the report's ``near_rtol``: the merge changes the fit by less than
        the zero band of the Hessian test resolves, so it is *near-redundant* and explains Hessian null
        directions (§4.5) although it is not an exact claim.
    """

    rule: str
    neurons: tuple[int, ...]
    score: float
    level: str
    verified: bool
    width_reduction: int
    max_output_change: float
    detail: str = ""
    original: bool = True
    fit_change: float = math.nan
    near: bool = False

    def __str__(self) -> str:
        claim = "verified" if self.verified else ("near-redundant" if self.near else "NOT verified")
        return (
            f"{self.rule:<24} neurons {self.neurons!s:<14} score {self.score:.2e}  {self.level:<8}  {claim:<12}"
            f" width −{self.width_reduction}  Δ={self.max_output_change:.1e}  fit {self.fit_change:.1e}  {self.detail}"
        )


@dataclass(frozen=True)
class OutputChange:
    """max |f_θ(x) − f_θ′(x)| over the data (None without data) and over the probe points."""

    data: Optional[float]
    probes: Optional[float]


@dataclass(frozen=True)
class RedundancyReport:
    """Which hidden neurons are redundant, how far θ is from redundancy, and the smaller network (§4).

    Attributes
    ----------
    kind : str
        The activation.
    width : int
        m, the number of hidden neurons.
    effective_width : int
        The width after iterating the function-level merges (verified on data and probe points). Minimal
        for tanh, sigmoid, quadratic and linear activations; an upper bound otherwise.
    effective_width_on_data : int or None
        The width after also applying the data-level merges (verified on the data only); None without data.
    findings : tuple[RedundancyFinding, ...]
        Every merge tried: the claims (``verified``) and near misses whose score was below the candidate
        threshold but whose merge changed the outputs too much.
    score : float
        min over the applicable rules of their scores on θ: a distance to the redundant set, 0 on it.
    score_rule : str
        The rule attaining ``score``.
    scores : dict[str, float]
        The smallest score of each applicable rule. Scores of data-level rules (and of "linear
        dependence") are taken after the function-level merges.
    max_output_change : OutputChange
        How far the function-level merged network's outputs are from θ's, on data and probe points.
    max_output_change_on_data : float or None
        The same for the data-level merged network, on the data.
    tolerance : OutputChange
        tol·(1 + max|f|) on each point set: the bound every claimed merge respects.
    output_weight_norm, input_weight_norm : Tensor
        ‖a_i‖ and ‖w_i‖ per neuron (float64, CPU), for plots.
    neuron_scores : dict[str, Tensor]
        Per-neuron scores of the per-neuron rules (e.g. "zero output weight": ‖a_i‖·RMS(φ_i)/RMS(f − f̄)).
    gradient_norm, merged_gradient_norm : float or None
        ‖∇L‖ at θ and at the function-level merged network (§4.4 step 3), when ``loss_fn`` and targets
        were given.
    notes : tuple[str, ...]
        Completeness of the rules for this activation, rules skipped and why.
    tol, near_rtol : float
        The merge-verification tolerance used (relative to 1 + max|f|; by default 1e-10 for float64
        parameters, √ε of their dtype otherwise) and the near-redundancy threshold on ``fit_change``.
    """

    kind: str
    width: int
    effective_width: int
    effective_width_on_data: Optional[int]
    findings: tuple[RedundancyFinding, ...]
    score: float
    score_rule: str
    scores: dict[str, float]
    max_output_change: OutputChange
    max_output_change_on_data: Optional[float]
    tolerance: OutputChange
    output_weight_norm: Tensor
    input_weight_norm: Tensor
    neuron_scores: dict[str, Tensor]
    gradient_norm: Optional[float]
    merged_gradient_norm: Optional[float]
    notes: tuple[str, ...]
    tol: float = 1e-10
    near_rtol: float = 1e-8
    _model: nn.Module = field(repr=False, compare=False, default=None)
    _net: ShallowNetwork = field(repr=False, compare=False, default=None)
    _merged: dict[str, tuple] = field(repr=False, compare=False, default=None)
    _standardized: Tensor = field(repr=False, compare=False, default=None)

    @property
    def claims(self) -> tuple[RedundancyFinding, ...]:
        """The verified findings."""
        return tuple(finding for finding in self.findings if finding.verified)

    @property
    def near_redundant(self) -> tuple[RedundancyFinding, ...]:
        """The merges that failed verification but change the fit by less than ``near_rtol`` (see
        :attr:`RedundancyFinding.near`)."""
        return tuple(finding for finding in self.findings if finding.near)

    @property
    def redundant(self) -> bool:
        """Whether θ is redundant at function level (a verified function-level merge exists)."""
        return self.effective_width < self.width

    def merged_model(self, level: str = FUNCTION) -> nn.Module:
        """A new, smaller copy of the model with the merges of ``level`` ("function" or "data") applied.

        The copy is the model's own class with the hidden and output ``nn.Linear`` replaced (dtype,
        device, ``requires_grad`` as before); the original model is not touched. The merges were verified
        in float64; a float32 copy carries float32 rounding.
        """
        if level not in self._merged:
            raise ValueError(
                f"level must be one of {sorted(self._merged)} (data-level merges need data), got {level!r}."
            )
        W, b, A, c = self._merged[level]
        return resized_copy(self._model, self._net, W, b, A, c)

    def similarity_matrix(self) -> Tensor:
        """m×m cosine similarities ⟨ũ_i, ũ_j⟩/(‖ũ_i‖‖ũ_j‖) of the standardised neurons (§4.1), for plots.

        1 for duplicates and positive multiples, −1 for mirrored neurons; 0 where a neuron is zero.
        """
        units = _unit_rows(self._standardized)
        return units @ units.T

    def _verdict(self) -> str:
        if self.redundant:
            return "redundant"
        if self.near_redundant:
            near = ", ".join(f"{f.rule} {f.neurons} (fit change {f.fit_change:.1e})" for f in self.near_redundant)
            return (f"NEAR-REDUNDANT: no merge verified to tol, but {near} change the fit by less than "
                    f"{self.near_rtol:.1e}; efficient only at this tolerance")
        return "efficient at function level (no verified or near-redundant merge)"

    def __str__(self) -> str:
        lines = [
            f"RedundancyReport({self.kind}, width {self.width} → {self.effective_width} at function level"
            + (f", {self.effective_width_on_data} on the data)" if self.effective_width_on_data is not None else ")"),
            f"  score {self.score:.3g} ({self.score_rule}); " + self._verdict(),
            f"  max output change of the merged network: data {_fmt(self.max_output_change.data)}, probes "
            f"{_fmt(self.max_output_change.probes)} "
            f"(tolerance {_fmt(self.tolerance.data)} / {_fmt(self.tolerance.probes)} = tol {self.tol:.1e}·(1 + max|f|);"
            f" near-redundant below fit change {self.near_rtol:.1e})",
        ]
        if self.findings:
            lines.append("  findings:")
            lines += [f"    {finding}" for finding in self.findings]
        else:
            lines.append("  no finding")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _fmt(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.2e}"


def _unit_rows(matrix: Tensor) -> Tensor:
    norms = torch.linalg.vector_norm(matrix, dim=1, keepdim=True)
    return torch.where(norms > 0, matrix / norms.clamp_min(torch.finfo(matrix.dtype).tiny), torch.zeros_like(matrix))


# ----------------------------------------------------------------------------------------------------------
# Inputs


def _inputs(data: Any, d: int, net: ShallowNetwork, device: torch.device) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """The training inputs as an n×d float64 tensor and the targets as n×q (each None where absent)."""
    if data is None:
        return None, None
    if isinstance(data, Tensor):
        items = [(data,)]
    elif isinstance(data, (tuple, list)) and 1 <= len(data) <= 2 and all(isinstance(t, Tensor) for t in data):
        items = [tuple(data)]  # (X, y), or the one-tuple (X,) that a TensorDataset of inputs yields
    elif isinstance(data, Iterable):
        items = list(data)
        if not items or not all(isinstance(item, (tuple, list)) and len(item) >= 1 for item in items):
            raise TypeError("data must be inputs X, a batch (X, y) or (X,), or an iterable of such batches.")
    else:
        raise TypeError(f"data must be inputs X, a batch (X, y) or (X,), or an iterable of batches, got "
                        f"{type(data).__name__}.")
    batches = [item[0] for item in items]
    targets = None
    if all(len(item) >= 2 and isinstance(item[1], Tensor) for item in items):
        targets = torch.cat([item[1].detach().reshape(item[1].shape[0], -1) for item in items])
        targets = targets.to(device=device, dtype=torch.float64)
    rows = []
    for index, x in enumerate(batches):
        if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[-1] != d:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"inputs of batch {index} have shape {shape}, but the hidden layer {net.hidden_name!r} "
                f"({net.hidden}) takes {d} features: pass inputs of shape (n, {d}) (the inputs of the hidden "
                "layer; flatten images first, or point layers= at the right layers)."
            )
        rows.append(x.detach().reshape(-1, d).to(device=device, dtype=torch.float64))
    inputs = torch.cat(rows)
    if inputs.shape[0] == 0:
        raise ValueError("data has no samples.")
    if not torch.isfinite(inputs).all():
        raise FloatingPointError("the inputs contain NaN or inf.")
    if targets is not None and targets.shape[0] != inputs.shape[0]:
        targets = None  # not per-sample targets of these inputs: judge merges without the residual
    return inputs, targets


def _probe_points(
    given: Optional[Tensor], inputs: Optional[Tensor], count: int, seed: int, d: int, device: torch.device
) -> Tensor:
    """Function-level probe set X_p (§4.1): given, or N(mean X, cov X) (standard normal without data).

    The covariance's eigenvalues are floored at 1e-2 of their mean so that data confined to a subspace
    still gets probed off it: a function-level claim must hold off the data's affine hull too.
    """
    if given is not None:
        if given.ndim != 2 or given.shape[1] != d:
            raise ValueError(f"probe_points must have shape (N, {d}), got {tuple(given.shape)}.")
        return given.detach().to(device=device, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, d, generator=generator, dtype=torch.float64)
    if inputs is None:
        return noise.to(device)
    centred = inputs.cpu() - inputs.cpu().mean(dim=0)
    covariance = centred.T @ centred / max(inputs.shape[0] - 1, 1)
    values, vectors = torch.linalg.eigh(covariance)
    floor = 1e-2 * float(values.clamp_min(0).mean())
    values = values.clamp_min(floor if floor > 0 else 1.0)
    return (inputs.cpu().mean(dim=0) + (noise * values.sqrt()) @ vectors.T).to(device)


# ----------------------------------------------------------------------------------------------------------
# The working network and merges


@dataclass(frozen=True)
class _Merge:
    """θ → θ′: remove neurons, add δa to others' output weights, append new neurons, add δc to c."""

    rule: str
    score: float
    involved: tuple[int, ...]
    remove: tuple[int, ...] = ()
    update: tuple[int, ...] = ()
    delta_a: Optional[Tensor] = None  # q × len(update)
    new_u: Optional[Tensor] = None  # k × (d+1), bias column zero without hidden bias
    new_a: Optional[Tensor] = None  # q × k
    delta_c: Optional[Tensor] = None  # q
    detail: str = ""

    @property
    def width_reduction(self) -> int:
        return len(self.remove) - (0 if self.new_u is None else self.new_u.shape[0])


class _Network:
    """The network being merged: neurons u_i = (w_i, b_i) as rows of U, output weights A, output bias c.

    Neurons are never reordered: merges mask them out or append new ones, so indices stay valid.
    Per neuron it caches RMS(φ_i) over all points and min/max of z_i over the data, which the per-neuron
    scores need.
    """

    def __init__(self, U: Tensor, A: Tensor, c: Optional[Tensor], sigma: Callable[[Tensor], Tensor],
                 data: Optional[Tensor], probes: Tensor) -> None:
        self.U, self.A, self.c, self.sigma = U, A, c, sigma
        self.data, self.probes = data, probes
        m = U.shape[0]
        self.alive = torch.ones(m, dtype=torch.bool, device=U.device)
        self.sources: list[tuple[int, ...]] = [(i,) for i in range(m)]
        self.built = [False] * m
        self.a_changed = [False] * m
        self.rms, self.zmin, self.zmax, self.initial_outputs = self._statistics(U, A)

    @property
    def indices(self) -> Tensor:
        return torch.nonzero(self.alive).flatten()

    @property
    def width(self) -> int:
        return int(self.alive.sum())

    def pre(self, points: Tensor, rows: Tensor) -> Tensor:
        """z = X w_iᵀ + b_i for the neurons ``rows`` (N × k)."""
        U = self.U[rows]
        return points @ U[:, :-1].T + U[:, -1]

    def outputs(self, points: Tensor) -> Tensor:
        """f(X) of the current network, in blocks of points."""
        rows = self.indices
        size = max(1, _BLOCK // max(len(rows), 1))
        parts = [self.sigma(self.pre(points[s : s + size], rows)) @ self.A[:, rows].T
                 for s in range(0, len(points), size)]
        out = torch.cat(parts) if parts else points.new_zeros(0, self.A.shape[0])
        return out + self.c if self.c is not None else out

    def _statistics(self, U: Tensor, A: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """RMS(φ_i) over data and probes, min and max of z_i over the data, and (given A) the outputs f on
        both point sets — all from one pass over the points."""
        m = U.shape[0]
        squares = U.new_zeros(m)
        zmin = U.new_full((m,), math.inf)
        zmax = U.new_full((m,), -math.inf)
        outputs: dict[str, Tensor] = {}
        size = max(1, _BLOCK // max(m, 1))
        for name, points in (("data", self.data), ("probes", self.probes)):
            if points is None:
                continue
            parts = []
            for s in range(0, len(points), size):
                z = points[s : s + size] @ U[:, :-1].T + U[:, -1]
                if name == "data":
                    zmin = torch.minimum(zmin, z.min(dim=0).values)
                    zmax = torch.maximum(zmax, z.max(dim=0).values)
                phi = self.sigma(z)
                squares += torch.einsum("ni,ni->i", phi, phi)
                if A is not None:
                    parts.append(phi @ A.T)
            if A is not None:
                outputs[name] = torch.cat(parts) + self.c if self.c is not None else torch.cat(parts)
        total = sum(len(points) for points in (self.data, self.probes) if points is not None)
        return (squares / total).sqrt(), zmin, zmax, outputs

    def change(self, merge: _Merge, points: Tensor) -> Tensor:
        """f_θ′(X) − f_θ(X) for θ′ = merge(θ), from the neurons the merge touches only."""
        delta = points.new_zeros(points.shape[0], self.A.shape[0])
        if merge.remove:
            rows = torch.tensor(merge.remove, device=points.device)
            delta -= self.sigma(self.pre(points, rows)) @ self.A[:, rows].T
        if merge.update:
            rows = torch.tensor(merge.update, device=points.device)
            delta += self.sigma(self.pre(points, rows)) @ merge.delta_a.T
        if merge.new_u is not None and merge.new_u.shape[0]:
            delta += self.sigma(points @ merge.new_u[:, :-1].T + merge.new_u[:, -1]) @ merge.new_a.T
        if merge.delta_c is not None:
            delta += merge.delta_c
        return delta

    def apply(self, merge: _Merge) -> None:
        if merge.update:
            rows = torch.tensor(merge.update, device=self.U.device)
            self.A[:, rows] += merge.delta_a
            for i in merge.update:
                self.a_changed[i] = True
        if merge.remove:
            self.alive[torch.tensor(merge.remove, device=self.U.device)] = False
        if merge.new_u is not None and merge.new_u.shape[0]:
            k = merge.new_u.shape[0]
            rms, zmin, zmax, _ = self._statistics(merge.new_u)
            self.U = torch.cat([self.U, merge.new_u])
            self.A = torch.cat([self.A, merge.new_a], dim=1)
            self.alive = torch.cat([self.alive, self.alive.new_ones(k)])
            self.rms, self.zmin = torch.cat([self.rms, rms]), torch.cat([self.zmin, zmin])
            self.zmax = torch.cat([self.zmax, zmax])
            source = tuple(sorted({n for i in merge.involved for n in self.sources[i]}))
            self.sources += [source] * k
            self.built += [True] * k
            self.a_changed += [False] * k
        if merge.delta_c is not None:
            self.c = self.c + merge.delta_c

    def weights(self, has_bias: bool) -> tuple[Tensor, Optional[Tensor], Tensor, Optional[Tensor]]:
        rows = self.indices
        U = self.U[rows]
        c = None if self.c is None else self.c.clone()
        return U[:, :-1].clone(), U[:, -1].clone() if has_bias else None, self.A[:, rows].clone(), c


class _Verifier:
    """Merge-and-verify (§4.4): accept a merge only while the accumulated output change stays within tolerance."""

    def __init__(self, sets: list[tuple[Tensor, float, Tensor]], fit: tuple[float, float, float]) -> None:
        self.sets = sets  # (points, tolerance, accumulated change f_θ′ − f_θ on the points)
        # RMS residual on the data (0 without targets), RMS(f − f̄), and the near-redundancy threshold
        self.residual, self.scale, self.near_rtol = fit

    def check(self, network: _Network, merge: _Merge) -> tuple[bool, float, float]:
        """(accepted, max |change| of this merge, its fit change (Δ² + 2Δr)/s² with Δ its largest RMS change)."""
        changes = [network.change(merge, points) for points, _, _ in self.sets]
        size = max((float(change.abs().max()) if change.numel() else 0.0) for change in changes)
        rms = max((float(change.square().sum(dim=1).mean().sqrt()) if change.numel() else 0.0) for change in changes)
        fit_change = (rms * rms + 2 * rms * self.residual) / self.scale**2
        ok = all(
            (drift + change).abs().max() <= tolerance if change.numel() else True
            for (_, tolerance, drift), change in zip(self.sets, changes)
        )
        if ok:
            for (_, _, drift), change in zip(self.sets, changes):
                drift += change
        return ok, size, fit_change

    @property
    def tolerance(self) -> float:
        return min(tolerance for _, tolerance, _ in self.sets)

    @property
    def input_radius(self) -> float:
        """max ‖x̃‖ = max ‖(x, 1)‖ over the points: converts a dropped coefficient into an output bound."""
        return max(float(torch.sqrt(1 + points.square().sum(dim=1)).max()) for points, _, _ in self.sets)


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


Candidate = tuple[float, int, str, tuple[int, ...], Callable[[], Optional[_Merge]]]


def _ratio_or_zero(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator/denominator, and 0 where the denominator is 0 (a zero neuron scores 0: it is removable)."""
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), torch.zeros_like(numerator))


def _zero_scores(net: _Network, ctx: _Context, rows: Tensor) -> Tensor:
    """‖a_i‖·RMS(φ_i)/RMS(f − f̄) over data and probes: 0 iff removing neuron i changes nothing there."""
    return torch.linalg.vector_norm(net.A[:, rows], dim=0) * net.rms[rows] / ctx.scale


def _constant_scores(net: _Network, ctx: _Context, rows: Tensor) -> Tensor:
    """ρ_const = ‖w′_i‖/‖ũ_i‖ (§4.3): 0 iff w_i = 0."""
    standardized = ctx.standardize(net.U[rows])
    return _ratio_or_zero(torch.linalg.vector_norm(standardized[:, :-1], dim=1),
                          torch.linalg.vector_norm(standardized, dim=1))


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
        candidates.append((score, 0, rule, (i,),
                           lambda i=i, s=score, rule=rule: _Merge(rule, s, (i,), remove=(i,), detail=f"delete {i}")))
    constants = [int(rows[p]) for p in torch.nonzero(constant <= ctx.threshold).flatten().tolist()]
    for i, score in zip(constants, constant[constant <= ctx.threshold].tolist()):
        candidates.append((score, 1, CONSTANT, (i,), lambda i=i, s=score: _constant_merge(net, ctx, i, s, constants)))
    return candidates


def _constant_merge(net: _Network, ctx: _Context, i: int, score: float, constants: list[int]) -> Optional[_Merge]:
    value = net.sigma(net.U[i, -1:])  # σ(b_i)
    contribution = net.A[:, i] * value
    if ctx.has_c:
        return _Merge(CONSTANT, score, (i,), remove=(i,), delta_c=contribution,
                      detail=f"delete {i}; c += a_{i}·σ(b_{i})")
    # Without c a constant neuron can only be absorbed by another constant neuron (§4.2).
    for k in constants:
        other = net.sigma(net.U[k, -1:])
        if k != i and bool(net.alive[k]) and float(other.abs()) > 0:
            return _Merge(CONSTANT, score, (i, k), remove=(i,), update=(k,), delta_a=(contribution / other)[:, None],
                          detail=f"delete {i}; a_{k} += a_{i}·σ(b_{i})/σ(b_{k})")
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


def _pair_screen(ctx: _Context, standardized: Tensor, rules: list[tuple[str, str]]
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


def _pair_candidates(net: _Network, ctx: _Context, scores: dict[str, float], screen: dict
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
        candidates += [(score, priority, rule, (i, j),
                        lambda i=i, j=j, s=score, r=rule: _pair_merge(net, ctx, r, i, j, s))
                       for score, i, j in pairs]
    return candidates, antipodal


def _ratio(U: Tensor, i: int, j: int) -> float:
    """γ with u_j = γ u_i, by least squares."""
    return float(U[i] @ U[j] / (U[i] @ U[i]))


def _pair_merge(net: _Network, ctx: _Context, rule: str, i: int, j: int, score: float) -> _Merge:
    a_j = net.A[:, j]
    if rule == DUPLICATE:
        return _Merge(rule, score, (i, j), remove=(j,), update=(i,), delta_a=a_j[:, None],
                      detail=f"delete {j}; a_{i} += a_{j}")
    if rule == MIRRORED:
        kappa = ctx.cls.mirror_constant
        return _Merge(rule, score, (i, j), remove=(j,), update=(i,), delta_a=-a_j[:, None],
                      delta_c=kappa * a_j if kappa else None,
                      detail=f"delete {j}; a_{i} −= a_{j}" + (f"; c += {kappa:g}·a_{j}" if kappa else ""))
    gamma = _ratio(net.U, i, j)
    factor = gamma ** ctx.cls.multiple_power
    return _Merge(rule, score, (i, j), remove=(j,), update=(i,), delta_a=factor * a_j[:, None],
                  detail=f"delete {j}; a_{i} += {factor:.6g}·a_{j} (u_{j} = {gamma:.6g}·u_{i})")


def _truncated_svd(matrix: Tensor, budget: float, radius: float) -> tuple[Tensor, Tensor, Tensor]:
    """U_r, S_r, V_rᵀ of ``matrix`` with the smallest r such that dropping the rest moves no output by more
    than ``budget`` (a dropped singular value s moves f(x) by at most s·‖x̃‖ ≤ s·radius)."""
    left, values, right = torch.linalg.svd(matrix, full_matrices=False)
    tail = torch.flip(torch.cumsum(torch.flip(values, [0]), 0), [0]) * radius  # tail[k] = radius·Σ_{l≥k} s_l
    rank = int((tail > budget).sum())
    return left[:, :rank], values[:, None][:rank, 0], right[:rank]


def _antipodal_merge(net: _Network, ctx: _Context, pairs: list, verifier: _Verifier) -> Optional[_Merge]:
    """B4: a_iσ(z) + a_jσ(−γz) = (a_i + γa_j)σ(z) + t·x̃ with t = −αγ a_j ⊗ u_i, so each antipodal pair
    collapses to one neuron if the affine terms T = Σ t (ℓ·x + β) are rebuilt: β goes to c, and ℓ either to
    2·rank(ℓ) new neurons (1/α)[σ(v·x) − σ(−v·x)] = v·x, or, when the pairs' directions are dependent, to
    pairs kept whole whose directions span them (a kept pair adds v·z_i = (v/α)[σ(z_i) − σ(z_j)/γ]). The
    cheaper way is taken; a reduction needs more pairs than it costs."""
    used: set[int] = set()
    chosen = []
    for score, i, j in pairs:
        if i not in used and j not in used and bool(net.alive[i]) and bool(net.alive[j]):
            used.update((i, j))
            chosen.append((score, i, j))
    if not chosen:
        return None
    alpha = ctx.cls.odd_slope
    gammas = torch.tensor([(-_ratio(net.U, i, j) if ctx.cls.multiple_power else 1.0) for _, i, j in chosen],
                          dtype=net.U.dtype, device=net.U.device)
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
        return _Merge(ANTIPODAL, score, involved, remove=tuple(second.tolist()), update=tuple(first.tolist()),
                      delta_a=gammas * net.A[:, second], new_u=torch.cat([directions, -directions]),
                      new_a=torch.cat([weights, -weights], dim=1), delta_c=total[:, -1] if ctx.has_c else None,
                      detail=f"{count} antipodal pairs → {count} neurons + {2 * len(values)} for the linear part")
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
    return _Merge(ANTIPODAL, score, involved, remove=tuple(second[~kept].tolist()), update=tuple(update),
                  delta_a=delta_a, delta_c=delta_c,
                  detail=f"{count} antipodal pairs → {count - len(spanning)} neurons + {len(spanning)} pairs kept "
                         "for the linear part")


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


def _rank_merge(net: _Network, ctx: _Context, verifier: _Verifier, scores: dict[str, float]) -> Optional[_Merge]:
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
        return _Merge(RANK, scores[RANK], tuple(rows.tolist()), remove=tuple(rows.tolist()), new_u=new_u,
                      new_a=left * values, delta_c=total[:, -1] if ctx.has_c else None,
                      detail=f"f = (A·W)x + const has rank {rank}")
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
    return _Merge(RANK, scores[RANK], tuple(rows.tolist()), remove=tuple(rows.tolist()), new_u=new_u,
                  new_a=torch.sign(values[keep])[None, :], delta_c=A.new_full((1,), shift) if shift else None,
                  detail=f"x̃ᵀM̃x̃ with rank(M̃{' − t*eeᵀ' if shift else ''}) = {len(keep)}")


def _rank_score(values: Tensor, m: int) -> float:
    """σ_m/σ_1 with σ_k = 0 for k beyond the matrix's size: zero iff fewer than m neurons realize f."""
    if len(values) == 0 or float(values[0]) == 0:
        return 0.0
    return float(values[m - 1] / values[0]) if m <= len(values) else 0.0


def _polynomial_dependence(net: _Network, ctx: _Context, verifier: _Verifier,
                           scores: dict[str, float]) -> Optional[_Merge]:
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


def _dependence(net: _Network, rows: Tensor, features: Tensor, constant: Optional[Tensor], budget: float,
                rule: str) -> tuple[Optional[_Merge], Tensor]:
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
    merge = _Merge(rule, float(loo.min()) if len(loo) else 0.0, tuple(rows.tolist()), remove=removed_rows,
                   update=tuple(update.tolist()), delta_a=delta_a, delta_c=delta_c,
                   detail=f"{len(removed_rows)} neurons are linear combinations of the other {len(update)}")
    return merge, loo


def _dead_candidates(net: _Network, ctx: _Context, scores: dict[str, float]) -> list[Candidate]:
    """D1 (ReLU): neurons with z_i ≤ 0 on all data contribute nothing there."""
    rows = net.indices
    dead = _dead_scores(net, ctx, rows)
    scores.setdefault(DEAD, float(dead.min()) if len(rows) else math.inf)
    return [(score, 0, DEAD, (i,), lambda i=i, s=score: _Merge(DEAD, s, (i,), remove=(i,), detail=f"delete {i}"))
            for i, score in zip(rows[dead <= ctx.threshold].tolist(), dead[dead <= ctx.threshold].tolist())]


def _linear_scores(net: _Network, ctx: _Context, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Per neuron: distance to being linear on the data, and the slope it has there.

    ReLU: always active, max(0, −min_x z_i)/‖ũ_i‖, slope 1. Leaky ReLU also always inactive (slope β).
    """
    norms = torch.linalg.vector_norm(ctx.standardize(net.U[rows]), dim=1)
    active = _ratio_or_zero((-net.zmin[rows]).clamp_min(0), norms)
    slopes = torch.ones_like(active)
    if ctx.kind == "leaky_relu":
        inactive = _dead_scores(net, ctx, rows)
        slopes = torch.where(inactive < active, torch.full_like(active, ctx.cls.odd_slope - 1), slopes)
        active = torch.minimum(active, inactive)
    return active, slopes


def _linear_on_data_merge(net: _Network, ctx: _Context, verifier: _Verifier, scores: dict[str, float],
                          rule: str) -> Optional[_Merge]:
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
    projections = net.data @ right.T  # n × r
    low, high = projections.min(dim=0).values, projections.max(dim=0).values
    margin = torch.where(high > low, high - low, torch.ones_like(high))
    offsets = margin - low
    new_a = left * values
    return _Merge(rule, float(distance[members].max()), tuple(group.tolist()), remove=tuple(group.tolist()),
                  new_u=torch.cat([right, offsets[:, None]], dim=1), new_a=new_a,
                  delta_c=total[:, -1] - new_a @ offsets,
                  detail=f"{len(group)} neurons linear on the data → {len(values)} always-active neuron(s)")


def _pattern_merges(net: _Network, ctx: _Context) -> list[_Merge]:
    """D3: neurons with the same activation pattern on the data and positively parallel output weights
    a_k = t_k a_ref act there as one neuron u = Σ t_k u_k (a positive combination keeps the pattern)."""
    rows = net.indices
    pattern = net.pre(net.data, rows) > 0  # n × m
    mixed = pattern.any(dim=0) & ~pattern.all(dim=0)
    rows, pattern = rows[mixed], pattern[:, mixed]
    if len(rows) < 2:
        return []
    weights = (2 ** torch.arange(8, device=pattern.device, dtype=torch.uint8))
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
                t = torch.tensor(ratios, dtype=net.U.dtype, device=net.U.device)
                merges.append(_Merge(PATTERN, 0.0, tuple(group), remove=tuple(group), new_u=(t @ net.U[group])[None, :],
                                     new_a=a_ref[:, None].clone(), detail=f"{len(group)} neurons → u = Σ t_k u_k"))
            members = others
    return merges


# ----------------------------------------------------------------------------------------------------------
# The protocol


def _run(candidates: list[Candidate], net: _Network, verifier: _Verifier, level: str, findings: list,
         failed: set) -> int:
    """Try candidates in order of (score, rule priority); apply each verified merge. Returns merges applied."""
    applied = 0
    for score, _, rule, involved, build in sorted(candidates, key=lambda item: item[:2]):
        if not all(bool(net.alive[i]) for i in involved) or (rule, involved) in failed:
            continue
        merge = build()
        if merge is None:
            continue
        applied += _attempt(merge, net, verifier, level, findings, failed)
    return applied


def _attempt(merge: _Merge, net: _Network, verifier: _Verifier, level: str, findings: list, failed: set) -> int:
    ok, size, fit_change = verifier.check(net, merge)
    neurons = tuple(sorted({n for i in merge.involved for n in net.sources[i]}))
    original = not any(net.built[i] for i in merge.involved)
    if merge.rule == ZERO:
        original = original and not net.a_changed[merge.involved[0]]
    findings.append(RedundancyFinding(merge.rule, neurons, merge.score, level, ok, merge.width_reduction, size,
                                      merge.detail, original, fit_change, not ok and fit_change <= verifier.near_rtol))
    if ok:
        net.apply(merge)
        return 1
    failed.add((merge.rule, merge.involved))
    return 0


def _function_level(net: _Network, ctx: _Context, verifier: _Verifier, findings: list,
                    scores: dict[str, float]) -> None:
    failed: set = set()
    screen: dict = {}
    while True:
        candidates = _neuron_candidates(net, ctx, scores)
        pair_candidates, antipodal = _pair_candidates(net, ctx, scores, screen)
        applied = _run(candidates + pair_candidates, net, verifier, FUNCTION, findings, failed)
        blocks = []
        if antipodal:
            blocks.append(_antipodal_merge(net, ctx, antipodal, verifier))
        if ctx.kind in ("identity", "square") and net.width > 0:
            blocks.append(_rank_merge(net, ctx, verifier, scores))
        for merge in blocks:
            if merge is not None and (merge.rule, merge.involved) not in failed:
                applied += _attempt(merge, net, verifier, FUNCTION, findings, failed)
        if not applied:
            return


def _data_level(net: _Network, ctx: _Context, verifier: _Verifier, findings: list, scores: dict[str, float]) -> None:
    failed: set = set()
    linear_rule = ALWAYS_ACTIVE if ctx.kind == "relu" else LINEAR_ON_DATA
    while True:
        applied = 0
        if ctx.cls.relu_type:
            if ctx.kind == "relu":
                applied += _run(_dead_candidates(net, ctx, scores), net, verifier, DATA, findings, failed)
            merges = [_linear_on_data_merge(net, ctx, verifier, scores, linear_rule)] + _pattern_merges(net, ctx)
            for merge in merges:
                current = merge is not None and all(bool(net.alive[i]) for i in merge.involved)
                if current and (merge.rule, merge.involved) not in failed:
                    applied += _attempt(merge, net, verifier, DATA, findings, failed)
        applied += _data_dependence(net, ctx, verifier, findings, scores, failed)
        if not applied:
            return


def _data_dependence(net: _Network, ctx: _Context, verifier: _Verifier, findings: list, scores: dict[str, float],
                     failed: set) -> int:
    """L1 on the data, within the cost budget (one QR of the n×m feature matrix, O(n·m·min(n, m)))."""
    rows = net.indices
    n, m = net.data.shape[0], len(rows)
    if m == 0:
        return 0
    cost = 2.0 * n * (m + 1) * min(n, m + 1)
    if cost > ctx.l1_max_cost:
        note = f"rule L1 ({DEPENDENCE}) skipped: its QR costs ~{cost:.1e} flops > l1_max_cost = {ctx.l1_max_cost:.1e}"
        if note not in ctx.notes:
            ctx.notes.append(note)
        return 0
    features = net.sigma(net.pre(net.data, rows))
    constant = torch.ones_like(features[:, 0]) if ctx.has_c else None
    merge, loo = _dependence(net, rows, features, constant, verifier.tolerance / 2, DEPENDENCE)
    # δ_LOO(i) = ‖a_i‖·dist(φ_i, span{1, φ_j: j≠i})/(√n·RMS(f − f̄)) (§4.3).
    contribution = torch.linalg.vector_norm(net.A[:, rows], dim=0) * torch.linalg.vector_norm(features, dim=0)
    score = float((loo * contribution).min()) / (math.sqrt(n) * ctx.scale)
    scores.setdefault(DEPENDENCE, score)
    if merge is None or (merge.rule, merge.involved) in failed:
        return 0
    return _attempt(replace(merge, score=score), net, verifier, DATA, findings, failed)


def neuron_redundancy(
    model: nn.Module,
    data: Any = None,
    *,
    loss_fn: Optional[LossFunction] = None,
    probe_points: Optional[Tensor] = None,
    num_probe_points: int = 4096,
    tol: Optional[float] = None,
    candidate_score: float = 1e-6,
    near_rtol: Optional[float] = None,
    seed: int = 0,
    layers: Optional[tuple[str, str, str]] = None,
    l1_max_cost: float = 5e9,
) -> RedundancyReport:
    """Find the redundant hidden neurons of a one-hidden-layer network and prove each claim by a merge.

    The rules of theory.md §4.2 for the activation's class (zero output weight, constant neuron, duplicate,
    mirrored for tanh/sigmoid with σ(−z) = κ − σ(z), positive multiple for ReLU-type, multiple for linear and
    quadratic, antipodal groups for σ(z) − σ(−z) = αz, rank for linear and quadratic; on the data, for ReLU:
    dead, always active, same activation pattern; and the linear-dependence rule L1) are scored (§4.3) and
    each candidate with score ≤ ``candidate_score`` is merged and verified (§4.4): the merge is kept only if
    the accumulated output change max|f_θ′ − f_θ| stays ≤ tol·(1 + max|f|) on the data and on the probe
    points (function level), or on the data alone (data level). Merging repeats until nothing applies.

    Parameters
    ----------
    model
        A one-hidden-layer network (see :func:`~torch_landscape.shallow.find_shallow`). Never modified.
    data
        Inputs X, a batch (X, y), or an iterable of batches; None for function-level rules only.
    loss_fn
        With targets in ``data``: also report ‖∇L‖ at θ and at the merged network (§4.4 step 3).
    probe_points
        (N, d) points for the function-level check; default ``num_probe_points`` draws from
        N(mean X, cov X) (standard normal without data), from a private generator seeded with ``seed``.
    tol
        tol_f of §4.4, relative to 1 + max|f|. Default: 1e-10 for float64 parameters (rounding is ~1e-16 per
        operation), √ε of the parameters' dtype otherwise (3.5e-4 for float32: weights that are exact
        multiples of each other in exact arithmetic differ by ε relative once rounded, and the outputs of
        the merged network by a few ε times the sum of |a_i φ_i|, well below √ε at moderate widths).
    candidate_score
        Rules scoring at most this are tried; larger scores are only reported.
    near_rtol
        A merge that fails ``tol`` is reported as near-redundant when its fit change (Δ² + 2Δr)/s² (see
        :attr:`RedundancyFinding.fit_change`) is at most this: default 1e-8 for float64 parameters, 1e-4
        otherwise, the relative zero band of :func:`~torch_landscape.critical.classify_critical_point`, so
        that what the Hessian test cannot tell from a redundancy is reported as one (not as a claim).
    layers
        (hidden, activation, output) module names, for models the automatic search does not understand.
    l1_max_cost
        Rule L1 factorises the n×m feature matrix (≈ 2·n·m·min(n, m) flops); above this budget it is skipped
        and a note says so. The other rules cost O(n·m·d) per neuron statistic and O(m²·d) for pairs.

    Returns
    -------
    RedundancyReport
    """
    net = find_shallow(model, layers)
    tol, near_rtol = _tolerances(net, tol, near_rtol)
    W, b, A, c = shallow_weights(net)
    m, d = W.shape
    device = W.device
    inputs, targets = _inputs(data, d, net, device)
    probes = _probe_points(probe_points, inputs, num_probe_points, seed, d, device)
    sigma = activation_function(net)
    U = torch.cat([W, (b if b is not None else W.new_zeros(m))[:, None]], dim=1)
    reference = inputs if inputs is not None else probes
    center = reference.mean(dim=0)
    spread = float(torch.sqrt((reference - center).square().sum(dim=1).mean()))
    network = _Network(U.clone(), A.clone(), None if c is None else c.clone(), sigma, inputs, probes)
    outputs = network.initial_outputs
    everything = torch.cat(list(outputs.values()))
    scale = float(torch.sqrt((everything - everything.mean(dim=0)).square().sum(dim=1).mean()))
    scale = scale or float(torch.sqrt(everything.square().sum(dim=1).mean())) or 1.0
    tolerance = {name: tol * (1 + float(value.abs().max())) for name, value in outputs.items()}
    ctx = _Context(_activation_class(net), net.kind, b is not None, c is not None, center, spread or 1.0, scale,
                   candidate_score, l1_max_cost, [_completeness_note(net.kind)])
    drift = {name: torch.zeros_like(value) for name, value in outputs.items()}
    sets = {name: (points, tolerance[name], drift[name])
            for name, points in (("data", inputs), ("probes", probes)) if points is not None}
    findings: list[RedundancyFinding] = []
    scores: dict[str, float] = {}
    neuron_scores = _neuron_views(network, ctx)
    residual = 0.0 if targets is None else float((outputs["data"] - targets).square().sum(dim=1).mean().sqrt())
    fit = (residual, scale, near_rtol)

    _function_level(network, ctx, _Verifier(list(sets.values()), fit), findings, scores)
    merged = {FUNCTION: network.weights(ctx.has_bias)}
    function_width = network.width
    # The merged network's outputs are recomputed from scratch: the claim rests on them, not on the
    # accumulated per-merge changes. Without a merge the network is θ itself.
    change = {name: float((network.outputs(points) - outputs[name]).abs().max()) if function_width < m else 0.0
              for name, (points, _, _) in sets.items()}
    data_width, data_change = None, None
    if inputs is not None:
        _data_level(network, ctx, _Verifier([sets["data"]], fit), findings, scores)
        merged[DATA] = network.weights(ctx.has_bias)
        data_width = network.width
        data_change = (float((network.outputs(inputs) - outputs["data"]).abs().max()) if data_width < function_width
                       else change["data"])
    finite = {rule: value for rule, value in scores.items() if math.isfinite(value)}
    score_rule = min(finite, key=finite.get) if finite else ""
    gradient_norm = merged_gradient_norm = None
    if loss_fn is not None and targets is not None:
        gradient_norm = _gradient_norm(model, loss_fn, data)
        merged_gradient_norm = _gradient_norm(resized_copy(model, net, *merged[FUNCTION]), loss_fn, data)
    return RedundancyReport(
        kind=net.kind, width=m, effective_width=function_width, effective_width_on_data=data_width,
        findings=tuple(findings), score=finite.get(score_rule, math.inf), score_rule=score_rule, scores=finite,
        max_output_change=OutputChange(change.get("data"), change.get("probes")), max_output_change_on_data=data_change,
        tolerance=OutputChange(tolerance.get("data"), tolerance.get("probes")),
        output_weight_norm=torch.linalg.vector_norm(A, dim=0).cpu(),
        input_weight_norm=torch.linalg.vector_norm(W, dim=1).cpu(),
        neuron_scores=neuron_scores, gradient_norm=gradient_norm, merged_gradient_norm=merged_gradient_norm,
        notes=tuple(ctx.notes), tol=tol, near_rtol=near_rtol, _model=model, _net=net, _merged=merged, _standardized=ctx.standardize(U).cpu(),
    )


def _tolerances(net: ShallowNetwork, tol: Optional[float], near_rtol: Optional[float]) -> tuple[float, float]:
    """tol and near_rtol, checked, with their defaults for the precision of the model's parameters."""
    for name, value in (("tol", tol), ("near_rtol", near_rtol)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value < 0):
            raise ValueError(f"{name} must be a finite number >= 0 (or None for the default of the model's "
                             f"precision), got {value!r}.")
    dtype = net.hidden.weight.dtype
    double = dtype == torch.float64
    tol = tol if tol is not None else (1e-10 if double else math.sqrt(torch.finfo(dtype).eps))
    near_rtol = near_rtol if near_rtol is not None else (1e-8 if double else 1e-4)
    return float(tol), float(near_rtol)


def _gradient_norm(model: nn.Module, loss_fn: LossFunction, data: Any) -> float:
    return float(torch.linalg.vector_norm(Objective(model, loss_fn, data, dtype=torch.float64).loss_and_gradient()[1]))


def _neuron_views(net: _Network, ctx: _Context) -> dict[str, Tensor]:
    """Per-neuron scores of the per-neuron rules on the original network, for plots."""
    rows = net.indices
    views = {ZERO: _zero_scores(net, ctx, rows), CONSTANT: _constant_scores(net, ctx, rows)}
    if ctx.cls.relu_type and net.data is not None:
        if ctx.kind == "relu":
            views[DEAD] = _dead_scores(net, ctx, rows)
        views[ALWAYS_ACTIVE if ctx.kind == "relu" else LINEAR_ON_DATA] = _linear_scores(net, ctx, rows)[0]
    return {rule: value.cpu() for rule, value in views.items()}


# ----------------------------------------------------------------------------------------------------------
# The Hessian cross-check (§4.5)


@dataclass(frozen=True)
class NullityCheck:
    """Predicted vs measured Hessian nullity at θ (theory.md §4.5).

    Attributes
    ----------
    predicted_nullity : int
        Rank of the stacked null vectors that the redundancies and continuous symmetries predict.
    measured_nullity : int
        #{|λ| ≤ threshold} for the dense float64 Hessian.
    unexplained_nullity : int
        max(measured − predicted, 0): interpolation, higher-order degeneracy, or an undetected redundancy.
    inconsistent : bool
        θ is critical and measured < predicted: a bug, a tolerance problem, or a data-/function-level mismatch.
    message : str
        What the numbers mean.
    critical : bool
        ‖∇L‖ ≤ 1e-6·max|λ|·max(‖θ‖/√P, 1e-3) (§1.2); the prediction holds only at critical points.
    gradient_norm, threshold : float
        ‖∇L‖, and rtol·max|λ|, the zero band.
    eigenvalues : Tensor
        All Hessian eigenvalues, ascending (float64, CPU).
    predicted_vectors : Tensor
        (P, predicted_nullity) orthonormal basis of the predicted null space, in θ's flat layout.
    sources : tuple[str, ...]
        Where the predicted directions come from, with the number of vectors each contributed.
    max_residual : float
        max ‖H v‖/max|λ| over ``predicted_vectors``: how exactly the predicted vectors are null.
    """

    predicted_nullity: int
    measured_nullity: int
    unexplained_nullity: int
    inconsistent: bool
    message: str
    critical: bool
    gradient_norm: float
    threshold: float
    eigenvalues: Tensor = field(repr=False)
    predicted_vectors: Tensor = field(repr=False)
    sources: tuple[str, ...] = ()
    max_residual: float = 0.0

    def __str__(self) -> str:
        flag = "INCONSISTENT" if self.inconsistent else "consistent"
        return (
            f"NullityCheck(measured {self.measured_nullity}, predicted {self.predicted_nullity}, unexplained "
            f"{self.unexplained_nullity}, {flag}; ‖∇L‖ = {self.gradient_norm:.2e}, "
            f"zero band {self.threshold:.2e})\n"
            f"  {self.message}\n  sources: {', '.join(self.sources) or 'none'}"
        )


class _Coordinates:
    """Positions in flat θ of a shallow network's W, b, A, c; −1 where a tensor is frozen or absent."""

    def __init__(self, objective: Objective, net: ShallowNetwork, m: int, d: int, q: int) -> None:
        offsets, start = {}, 0
        for name, numel in zip(objective.names, objective.numels):
            offsets[name] = start
            start += numel
        self.size = start
        device = objective.theta.device

        def block(layer: str, tensor: str, shape: tuple[int, ...]) -> Tensor:
            name = net.parameter_name(layer, tensor)
            if name in offsets:
                return offsets[name] + torch.arange(math.prod(shape), device=device).view(shape)
            return torch.full(shape, -1, device=device)

        self.u = torch.cat([block("hidden", "weight", (m, d)), block("hidden", "bias", (m, 1))], dim=1)
        self.a = block("output", "weight", (q, m))
        self.c = block("output", "bias", (q,))

    def kernel(self, index: Tensor, matrix: Tensor, rtol: float = 1e-10) -> Tensor:
        """Embedded basis of {v : matrix·v = 0} over the coordinates ``index`` that are in θ (P × k)."""
        trainable = index >= 0
        index, matrix = index[trainable], matrix[:, trainable]
        if matrix.numel() and float(matrix.abs().max()) > 0:
            _, values, right = torch.linalg.svd(matrix, full_matrices=True)
            basis = right[int((values > rtol * values[0]).sum()):].T
        else:
            basis = torch.eye(len(index), dtype=matrix.dtype, device=matrix.device)
        vectors = matrix.new_zeros(self.size, basis.shape[1])
        vectors[index] = basis
        return vectors


def _output_gradients(objective: Objective, q: int) -> Tensor:
    """G = ∂L/∂f per sample (n × q), batches weighted as in L."""
    parts = []
    for (x, y), weight in zip(objective.batches, objective.weights):
        outputs = objective.outputs(objective.theta, x).detach().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(weight * objective.loss_fn(outputs, y), outputs)
        parts.append(gradient.reshape(x.shape[0], q))
    return torch.cat(parts)


def redundancy_nullity_check(
    model: nn.Module | HessianOperator,
    loss_fn: Optional[LossFunction] = None,
    data: Any = None,
    report: Optional[RedundancyReport] = None,
    *,
    rtol: float = 1e-9,
    layers: Optional[tuple[str, str, str]] = None,
) -> NullityCheck:
    """Compare the Hessian nullity with the nullity the redundancies and symmetries predict (§4.5).

    Predicted null vectors at a critical point (each only where its condition holds; u_i = (w_i, b_i),
    g_i = Σ_x G_x ⊗ σ′(z_i(x)) x̃ with G = ∂L/∂f, the (a_i, u_i) block of the residual term):

    - every linear dependence of the features on the data, [Φ 1]·(Δa, Δc) = 0, per output, over the
      neurons with g_i = 0 (rule L1; covers the output-weight directions of duplicates, mirrored,
      constant and dead neurons);
    - zero output weight: every e_{u_i}, if g_i = 0;
    - constant neuron: {Δa_i σ(b_i) + a_i σ′(b_i) Δb_i + Δc = 0};
    - pairs u_j = γu_i with σ′(γz) = κ′σ′(z) (duplicate, mirrored, multiples), where the residual term
      vanishes on their coordinates: {a_i ⊗ δ_i + κ′ a_j ⊗ δ_j = 0};
    - dead neuron: all of (a_i, u_i); neurons linear on the data with slopes s_i (and c):
      {Σ s_i(Δa_i ⊗ u_i + a_i ⊗ Δu_i) + Δc ⊗ e_b = 0}, and the same without c for a shared pattern,
      if g_i = 0;
    - the continuous-symmetry tangents (:func:`~torch_landscape.symmetry.symmetry_tangents`).

    The rank of these vectors (SVD, rtol 1e-10) is compared with #{|λ| ≤ rtol·max|λ|} of the dense float64
    Hessian. ``model`` may be a ``HessianOperator`` (``loss_fn`` and ``data`` are then taken from it): its
    cached Hessian and eigendecomposition are reused, nothing is assembled again. ``report`` defaults to
    ``neuron_redundancy(model, data)``; its verified and near-redundant findings (:attr:`RedundancyFinding.near`)
    that hold between original neurons are used, the near ones named as such. θ is critical by the Newton-step
    test of :func:`~torch_landscape.critical.criticality`.
    """
    from .critical import criticality
    from .symmetry import symmetry_tangents

    if isinstance(model, HessianOperator):
        operator = model
        if operator.dtype != torch.float64:
            raise ValueError(f"redundancy_nullity_check needs a float64 HessianOperator, got {operator.dtype}: "
                             "build it with dtype=torch.float64.")
    else:
        if loss_fn is None or data is None:
            raise TypeError("redundancy_nullity_check needs loss_fn and data (or a HessianOperator as model).")
        operator = HessianOperator(Objective(model, loss_fn, data, dtype=torch.float64))
    objective = operator.objective
    eigenvalues, _ = operator.eigh()
    scale = float(eigenvalues.abs().max()) if len(eigenvalues) else 0.0
    threshold = rtol * scale
    measured = int((eigenvalues.abs() <= threshold).sum())
    critical = criticality(operator)[0]
    net = find_shallow(objective.model, layers)
    if report is None:
        report = neuron_redundancy(objective.model, list(objective.batches), layers=layers)
    families = _predicted_families(objective, net, report, threshold, rtol)
    tangents = symmetry_tangents(objective)
    if tangents.count:
        families.append((tangents.family, tangents.vectors))
    basis = _orthonormal_span(torch.cat([vectors for _, vectors in families], dim=1))
    predicted = basis.shape[1]
    hessian = operator.to_dense()
    residual = float(torch.linalg.vector_norm(hessian @ basis, dim=0).max() / scale) if predicted and scale else 0.0
    gradient_norm = float(torch.linalg.vector_norm(operator.gradient))
    inconsistent = critical and measured < predicted
    return NullityCheck(
        predicted_nullity=predicted, measured_nullity=measured, unexplained_nullity=max(measured - predicted, 0),
        inconsistent=inconsistent, message=_nullity_message(critical, measured, predicted, gradient_norm, residual),
        critical=critical, gradient_norm=gradient_norm, threshold=threshold, eigenvalues=eigenvalues.cpu(),
        predicted_vectors=basis, sources=tuple(f"{name}: {vectors.shape[1]}" for name, vectors in families),
        max_residual=residual,
    )


def _orthonormal_span(stacked: Tensor) -> Tensor:
    """An orthonormal basis of the span of the nonzero columns (SVD of the normalised columns, rtol 1e-10)."""
    stacked = stacked[:, torch.linalg.vector_norm(stacked, dim=0) > 0]
    stacked = stacked / torch.linalg.vector_norm(stacked, dim=0).clamp_min(1e-300)
    if not stacked.shape[1]:
        return stacked
    left, values, _ = torch.linalg.svd(stacked, full_matrices=False)
    return left[:, values > 1e-10 * values[0]]


def _nullity_message(critical: bool, measured: int, predicted: int, gradient_norm: float, residual: float) -> str:
    if not critical:
        return (f"θ is not a critical point (‖∇L‖ = {gradient_norm:.2e}, Newton-step test); the predicted null "
                "vectors are exact only at critical points, so no consistency verdict")
    if measured < predicted:
        return (f"measured nullity {measured} < predicted {predicted}: a redundancy or symmetry claimed here is not "
                f"a Hessian null direction (largest ‖Hv‖/max|λ| = {residual:.1e}); suspect a tolerance "
                "problem, a data- vs function-level mismatch, or a bug")
    if measured > predicted:
        return (f"{measured - predicted} null directions unexplained: interpolation (n < P − r at zero loss), "
                "higher-order degeneracy (§1.5 probes), or a redundancy the rules do not detect")
    return "every Hessian null direction is explained by the redundancies and symmetries found"


def _predicted_families(objective: Objective, net: ShallowNetwork, report: RedundancyReport,
                        threshold: float, rtol: float) -> list[tuple[str, Tensor]]:
    """(source, P × k null vectors) for the feature dependences and each usable finding of ``report``."""
    parameters = {**objective.constants, **objective.unflatten(objective.theta)}
    W = parameters[net.parameter_name("hidden", "weight")]
    b = parameters.get(net.parameter_name("hidden", "bias"))
    A = parameters[net.parameter_name("output", "weight")]
    m, d = W.shape
    q = A.shape[0]
    U = torch.cat([W, (b if b is not None else W.new_zeros(m))[:, None]], dim=1)
    where = _Coordinates(objective, net, m, d, q)
    x = torch.cat([x.reshape(-1, d) for x, _ in objective.batches])
    x_tilde = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
    G = _output_gradients(objective, q)
    sigma = activation_function(net)
    phi, first, second = activation_derivatives(sigma, x_tilde @ U.T)
    cross = torch.einsum("nk,ni,np->ikp", G, first, x_tilde)  # g_i, the (a_i, u_i) residual blocks
    moving = torch.linalg.vector_norm(cross.reshape(m, -1), dim=1) <= threshold
    # Output-weight directions of every feature dependence on the data.
    columns = torch.cat([phi[:, moving], phi.new_ones(x.shape[0], 1)], dim=1)
    index = torch.cat([where.a[:, moving], where.c[:, None]], dim=1)
    feature_rtol = 1e-2 * math.sqrt(rtol)  # a feature singular value s gives a Hessian eigenvalue ∝ s²
    families = [("feature dependence on the data (L1)",
                 torch.cat([where.kernel(index[k], columns, feature_rtol) for k in range(q)], dim=1))]
    for finding in report.findings:
        if not ((finding.verified or finding.near) and finding.original):
            continue
        vectors = _finding_null_vectors(finding, net.kind, sigma, U, A, x_tilde, first, second, G, moving, where,
                                        threshold)
        if vectors is not None and vectors.shape[1]:
            label = f"{finding.rule} {finding.neurons}" + ("" if finding.verified else " (near-redundant)")
            families.append((label, vectors))
    return families


def _finding_null_vectors(finding: RedundancyFinding, kind: str, sigma: Callable[[Tensor], Tensor], U: Tensor,
                          A: Tensor, x_tilde: Tensor, first: Tensor, second: Tensor, G: Tensor, moving: Tensor,
                          where: _Coordinates, threshold: float) -> Optional[Tensor]:
    """The null directions a verified finding predicts at a critical point, or None where its condition fails.

    Each family is the kernel of the first-order change of the realization on the finding's coordinates.
    """
    q, p = A.shape[0], U.shape[1]
    neurons = list(finding.neurons)
    eye_p = torch.eye(p, dtype=U.dtype, device=U.device)
    eye_q = torch.eye(q, dtype=U.dtype, device=U.device)
    if finding.rule == ZERO:
        (i,) = neurons
        return where.kernel(where.u[i], U.new_zeros(1, p)) if bool(moving[i]) else None
    if finding.rule == DEAD:
        (i,) = neurons
        return where.kernel(torch.cat([where.a[:, i], where.u[i]]), U.new_zeros(1, q + p))
    if finding.rule == CONSTANT and len(neurons) == 1:
        (i,) = neurons
        value, slope, _ = activation_derivatives(sigma, U[i, -1:])
        # Δf = Δa_i σ(b_i) + a_i σ′(b_i) Δb_i + Δc over (a_i, b_i, c).
        matrix = torch.cat([value * eye_q, (A[:, i] * slope)[:, None], eye_q], dim=1)
        return where.kernel(torch.cat([where.a[:, i], where.u[i, -1:], where.c]), matrix)
    if finding.rule in (DUPLICATE, MIRRORED, POSITIVE_MULTIPLE, MULTIPLE):
        i, j = neurons
        # The residual term on both neurons' coordinates, g_k and Σ_x (G_x·a_k) σ″(z_k) x̃x̃ᵀ, must vanish.
        curvature = [torch.einsum("n,np,nr->pr", (G @ A[:, k]) * second[:, k], x_tilde, x_tilde) for k in (i, j)]
        if not (moving[i] and moving[j]) or any(float(torch.linalg.matrix_norm(c)) > threshold for c in curvature):
            return None
        gamma = float(U[i] @ U[j] / (U[i] @ U[i]))
        kappa = gamma if kind == "square" else 1.0  # σ′(γz) = κ′σ′(z)
        # a_i ⊗ δ_i + κ′ a_j ⊗ δ_j = 0 over (u_i, u_j).
        matrix = torch.cat([torch.kron(A[:, i:i + 1], eye_p), kappa * torch.kron(A[:, j:j + 1], eye_p)], dim=1)
        return where.kernel(torch.cat([where.u[i], where.u[j]]), matrix)
    if finding.rule in (ALWAYS_ACTIVE, LINEAR_ON_DATA, PATTERN):
        if not all(bool(moving[k]) for k in neurons):
            return None
        # Σ_k s_k (Δa_k ⊗ u_k + a_k ⊗ Δu_k) (+ Δc ⊗ e_b for neurons linear on all the data) = 0.
        blocks, index = [], []
        for k in neurons:
            slope = float(first[:, k].max()) if finding.rule != PATTERN else 1.0
            blocks += [slope * torch.kron(eye_q, U[k][:, None]), slope * torch.kron(A[:, k:k + 1], eye_p)]
            index += [where.a[:, k], where.u[k]]
        if finding.rule != PATTERN:
            blocks.append(torch.kron(eye_q, eye_p[:, -1:]))
            index.append(where.c)
        return where.kernel(torch.cat(index), torch.cat(blocks, dim=1))
    return None
