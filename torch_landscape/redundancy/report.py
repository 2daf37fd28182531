"""The results of the redundancy analysis: findings, the report, and the rule names (docs/theory.md §4)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..curvature.shallow import ShallowNetwork, resized_copy

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


def neurons_words(neurons: Iterable[int]) -> str:
    """``neuron 0`` or ``neurons 2, 5``: neuron numbers in words, as reports print them."""
    numbers = [str(int(i)) for i in neurons]
    return f"neuron{'s' * (len(numbers) != 1)} {', '.join(numbers)}"


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
        Its distance-to-redundancy score (docs/theory.md §4.3): scale-invariant, exactly 0 when the rule holds.
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

    data: float | None
    probes: float | None


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
    effective_width_on_data: int | None
    findings: tuple[RedundancyFinding, ...]
    score: float
    score_rule: str
    scores: dict[str, float]
    max_output_change: OutputChange
    max_output_change_on_data: float | None
    tolerance: OutputChange
    output_weight_norm: Tensor
    input_weight_norm: Tensor
    neuron_scores: dict[str, Tensor]
    gradient_norm: float | None
    merged_gradient_norm: float | None
    notes: tuple[str, ...]
    tol: float = 1e-10
    near_rtol: float = 1e-8
    # Required, keyword-only: they follow the defaulted fields and every report is built with them.
    _model: nn.Module | None = field(repr=False, compare=False, kw_only=True)
    _net: ShallowNetwork = field(repr=False, compare=False, kw_only=True)
    _merged: dict[str, tuple] = field(repr=False, compare=False, kw_only=True)
    _standardized: Tensor = field(repr=False, compare=False, kw_only=True)
    _others: dict[str, Tensor] = field(repr=False, compare=False, default_factory=dict)

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
        device, ``requires_grad`` as before) and the rest of its state as it was when analysed, so training
        the model since does not change the result; the original model is not touched. The merges were
        verified in float64; a float32 copy carries float32 rounding.
        """
        if level not in self._merged:
            raise ValueError(
                f"level must be one of {sorted(self._merged)} (data-level merges need data), got {level!r}."
            )
        if self._model is None:
            raise RuntimeError(
                "this report was restored from a checkpoint, which stores no model; call neuron_redundancy on the "
                "model for merged_model()."
            )
        W, b, A, c = self._merged[level]
        merged = resized_copy(self._model, self._net, W, b, A, c)
        merged.load_state_dict(self._others, strict=False)  # the rest of the model as analysed, not as it is now
        return merged

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
            return (
                f"NEAR-REDUNDANT: no merge verified to tol, but {near} change the fit by less than "
                f"{self.near_rtol:.1e}; efficient only at this tolerance"
            )
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


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2e}"


def _unit_rows(matrix: Tensor) -> Tensor:
    norms = torch.linalg.vector_norm(matrix, dim=1, keepdim=True)
    return torch.where(norms > 0, matrix / norms.clamp_min(torch.finfo(matrix.dtype).tiny), torch.zeros_like(matrix))
