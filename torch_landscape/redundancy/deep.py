"""Neuron redundancy of every hidden layer of a deep MLP, Linear → σ → … → Linear (docs/theory.md §4).

Hidden layer l of f = L_{k} ∘ σ_{k−1} ∘ … ∘ σ_0 ∘ L_0 computes h_l = σ_l(W_l h_{l−1} + b_l), and only
L_{l+1} reads it: g_{l+1} = W_{l+1} h_l + b_{l+1}. The sub-network h_{l−1} ↦ g_{l+1} is the one-hidden-layer
network (L_l, σ_l, L_{l+1}) of :func:`~.search.neuron_redundancy`, with inputs the activations of the prefix.
A merge of that sub-network rewrites the rows of W_l, b_l and the columns of W_{l+1} (and b_{l+1}); where
it leaves g_{l+1} unchanged on every input, it leaves f unchanged, since f depends on θ_l only through g_{l+1}.

The layers are analysed in order, each on the model with the function-level merges of the layers before it
applied (so layer l's inputs are the merged prefix's activations, equal to the original ones within the
tolerance). Each layer's merged model is then verified on the whole model's outputs, against the original
model, on the data and on probe points drawn in the model's input space: a layer whose merges move f by more
than tol·(1 + max|f|) on either set keeps its width and its claims are withdrawn.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn

from ..curvature.shallow import (
    _ACTIVATIONS,
    SUPPORTED,
    ShallowNetwork,
    activation_function,
    find_shallow,
    shallow_weights,
)
from .network import _inputs, _probe_points
from .report import DATA, FUNCTION, OutputChange, RedundancyFinding, RedundancyReport
from .search import neuron_redundancy


def find_mlp(model: nn.Module) -> list[ShallowNetwork]:
    """The hidden layers of an ``nn.Sequential`` MLP, each as (Linear_l, σ_l, Linear_{l+1}).

    The model is an ``nn.Sequential`` of Linear, activation, Linear, …, activation, Linear (at least one
    hidden layer, activations among the supported ones), or holds exactly one such ``nn.Sequential``.

    Raises
    ------
    ValueError
        Naming what was found and what is supported.
    """
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Sequential) and _alternates(list(module.children()))
    ]
    if len(found) != 1:
        raise ValueError(
            f"{type(model).__name__} is not an MLP that torch_landscape recognises: it holds {len(found)} "
            "nn.Sequential of Linear → activation → … → Linear (need exactly one, activations among "
            f"{SUPPORTED}). For other models analyse one hidden layer at a time with "
            "neuron_redundancy(model, layer_inputs, layers=(hidden, activation, output))."
        )
    name, sequence = found[0]
    prefix = f"{name}." if name else ""
    children = [prefix + child for child, _ in sequence.named_children()]
    return [
        find_shallow(model, (children[i], children[i + 1], children[i + 2])) for i in range(0, len(children) - 2, 2)
    ]


def is_mlp(model: nn.Module) -> bool:
    """Whether :func:`find_mlp` recognises ``model``."""
    try:
        find_mlp(model)
    except ValueError:
        return False
    return True


def _alternates(children: list[nn.Module]) -> bool:
    return (
        len(children) >= 3
        and len(children) % 2 == 1
        and all(isinstance(child, nn.Linear) for child in children[::2])
        and all(type(child) in _ACTIVATIONS for child in children[1::2])
        and all(a.out_features == b.in_features for a, b in pairwise(children[::2]))
    )


@dataclass(frozen=True)
class MLPRedundancy:
    """Redundant hidden neurons of every hidden layer of an MLP, and the smaller MLP that proves them.

    The hidden neurons are numbered globally, layer by layer: neuron i of layer l is
    ``offsets[l] + i``. ``findings``, ``claims`` and :meth:`similarity_matrix` use these numbers;
    ``layers[l]`` holds layer l's own report, in the layer's numbering.

    Attributes
    ----------
    layers : tuple[RedundancyReport, ...]
        Per hidden layer, the report of its sub-network (Linear_l, σ_l, Linear_{l+1}), analysed after the
        function-level merges of the layers before it. A layer's data-level merges
        (``layers[l].merged_model("data")``) apply on top of those function-level merges.
    layer_names : tuple[str, ...]
        The hidden ``nn.Linear`` of each layer, as in ``model.named_modules()``.
    max_output_change : OutputChange
        max |f_θ′ − f_θ| of the whole merged MLP (:meth:`merged_model`) against the original, on the data
        and on the probe points of the model's input space.
    tolerance : OutputChange
        tol·(1 + max|f|) on each set: the bound every accepted layer respects.
    tol : float
        As in :func:`~.search.neuron_redundancy`.
    """

    layers: tuple[RedundancyReport, ...]
    layer_names: tuple[str, ...]
    max_output_change: OutputChange
    tolerance: OutputChange
    tol: float
    _merged: nn.Module | None = field(repr=False, compare=False)

    @property
    def kind(self) -> str:
        """The activations, layer by layer."""
        return "/".join(report.kind for report in self.layers)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Global number of each layer's first neuron."""
        return tuple(sum(report.width for report in self.layers[:index]) for index in range(len(self.layers)))

    @property
    def width(self) -> int:
        """Σ_l m_l, the hidden neurons of all layers."""
        return sum(report.width for report in self.layers)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(report.width for report in self.layers)

    @property
    def effective_widths(self) -> tuple[int, ...]:
        return tuple(report.effective_width for report in self.layers)

    @property
    def effective_width(self) -> int:
        """Σ_l of the function-level effective widths: the hidden neurons of :meth:`merged_model`."""
        return sum(self.effective_widths)

    @property
    def effective_width_on_data(self) -> None:
        """None: the per-layer data-level merges are not composed into one verified model (see ``layers``)."""
        return None

    @property
    def findings(self) -> tuple[RedundancyFinding, ...]:
        """Every layer's findings, neurons in the global numbering."""
        return tuple(
            replace(finding, neurons=tuple(offset + i for i in finding.neurons))
            for offset, report in zip(self.offsets, self.layers, strict=True)
            for finding in report.findings
        )

    @property
    def claims(self) -> tuple[RedundancyFinding, ...]:
        return tuple(finding for finding in self.findings if finding.verified)

    @property
    def near_redundant(self) -> tuple[RedundancyFinding, ...]:
        return tuple(finding for finding in self.findings if finding.near)

    @property
    def redundant(self) -> bool:
        return self.effective_width < self.width

    @property
    def score(self) -> float:
        """min over the layers of their distance-to-redundancy scores."""
        return min((report.score for report in self.layers), default=math.inf)

    @property
    def score_rule(self) -> str:
        """The rule attaining ``score``, with its layer."""
        best = min(range(len(self.layers)), key=lambda index: self.layers[index].score)
        rule = self.layers[best].score_rule
        return f"{rule} in layer {self.layer_names[best]!r}" if rule else ""

    def merged_model(self, level: str = FUNCTION) -> nn.Module:
        """A new copy of the model with every layer's accepted function-level merges applied.

        Only ``level="function"``: per-layer data-level merges are in ``layers[l].merged_model("data")``.
        """
        if level != FUNCTION:
            raise ValueError(
                f"level must be {FUNCTION!r} for a deep MLP, got {level!r}; a layer's data-level "
                "merges are in layers[l].merged_model('data')."
            )
        if self._merged is None:
            raise RuntimeError(
                "this report was restored from a checkpoint, which stores no model; call mlp_redundancy on the model "
                "for merged_model()."
            )
        return copy.deepcopy(self._merged)

    def similarity_matrix(self) -> Tensor:
        """Block-diagonal cosine similarities of the standardised neurons, one block per layer (global numbers)."""
        return torch.block_diag(*(report.similarity_matrix() for report in self.layers))

    def __str__(self) -> str:
        lines = [
            f"MLPRedundancy({self.kind}, widths {list(self.widths)} → {list(self.effective_widths)} at function "
            f"level; whole-model output change data {_fmt(self.max_output_change.data)}, probes "
            f"{_fmt(self.max_output_change.probes)} (tolerance {_fmt(self.tolerance.data)} / "
            f"{_fmt(self.tolerance.probes)})"
        ]
        for name, report in zip(self.layer_names, self.layers, strict=True):
            lines.append(f"layer {name!r}: " + str(report).replace("\n", "\n  "))
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2e}"


def mlp_redundancy(
    model: nn.Module,
    data: Any = None,
    *,
    probe_points: Tensor | None = None,
    num_probe_points: int = 4096,
    tol: float | None = None,
    seed: int = 0,
    candidate_score: float = 1e-6,
    near_rtol: float | None = None,
    l1_max_cost: float = 5e9,
) -> MLPRedundancy:
    """Find the redundant neurons of every hidden layer of an MLP and prove them on the whole model.

    Layer by layer, :func:`~.search.neuron_redundancy` runs on (Linear_l, σ_l, Linear_{l+1}) with the
    prefix's activations h_{l−1}(X) as inputs and h_{l−1}(X_p) as probe points (same rules, scores and
    per-layer merge-and-verify). The
    merged model is then compared with the original: the layer is accepted only if
    max|f_θ′(x) − f_θ(x)| ≤ tol·(1 + max|f_θ|) on the data and on ``probe_points`` (inputs of the model;
    default ``num_probe_points`` draws from N(mean X, cov X), standard normal without data).

    Parameters
    ----------
    model
        An MLP (see :func:`find_mlp`). Never modified.
    data
        Inputs X of the model, a batch (X, y), or an iterable of batches; None for function-level rules only.
    probe_points, num_probe_points, tol, seed
        As in :func:`~.search.neuron_redundancy`; the probe points are inputs of the model, and layer l is
        probed on their images h_{l−1}(X_p).
    candidate_score, near_rtol, l1_max_cost
        Passed to each layer's analysis.

    Returns
    -------
    MLPRedundancy
    """
    nets = find_mlp(model)
    d = nets[0].hidden.in_features
    inputs, _ = _inputs(data, d, nets[0], nets[0].hidden.weight.device)
    points = {"data": inputs} if inputs is not None else {}
    points["probes"] = _probe_points(probe_points, inputs, num_probe_points, seed, d, nets[0].hidden.weight.device)
    original = {name: _outputs(model, x) for name, x in points.items()}
    _check_forward(model, nets, original, points)
    reports, current = [], model
    for index in range(len(nets)):
        layers = find_mlp(current)  # the modules of the model with the merges so far
        net = layers[index]
        layer_inputs = None if inputs is None else _prefix(layers[:index], inputs)
        # Function level for the MLP means every model input: the layer is probed on the images of the model's
        # probe points, not around its own inputs (points the prefix never produces would refute valid merges).
        layer_probes = _prefix(layers[:index], points["probes"])
        names = (net.hidden_name, net.activation_name, net.output_name)
        report = neuron_redundancy(
            current,
            layer_inputs,
            layers=names,
            probe_points=layer_probes,
            tol=tol,
            candidate_score=candidate_score,
            near_rtol=near_rtol,
            l1_max_cost=l1_max_cost,
        )
        tol = report.tol
        candidate = report.merged_model(FUNCTION) if report.redundant else current
        if report.redundant and not _within(candidate, points, original, tol):
            report, candidate = _withdrawn(report, "function"), current
        on_data = report.effective_width_on_data
        if inputs is not None and DATA in report._merged and on_data is not None and on_data < report.effective_width:
            if not _within(report.merged_model(DATA), {"data": inputs}, original, tol):
                report = _withdrawn(report, "data")
        reports.append(report)
        current = candidate
    change = {name: float((_outputs(current, x) - original[name]).abs().max()) for name, x in points.items()}
    tol = reports[-1].tol  # the tolerance the layers resolved (the default when tol was None)
    bound = {name: tol * (1 + float(original[name].abs().max())) for name in points}
    return MLPRedundancy(
        layers=tuple(reports),
        layer_names=tuple(net.hidden_name for net in nets),
        max_output_change=OutputChange(change.get("data"), change["probes"]),
        tolerance=OutputChange(bound.get("data"), bound["probes"]),
        tol=tol,
        _merged=current if current is not model else copy.deepcopy(model),
    )


def _outputs(model: nn.Module, x: Tensor) -> Tensor:
    """The model's outputs in float64, from a float64 copy (the model itself is not touched)."""
    with torch.no_grad():
        return copy.deepcopy(model).to(torch.float64)(x).reshape(x.shape[0], -1)


def _prefix(nets: list[ShallowNetwork], x: Tensor) -> Tensor:
    """h_{l−1}(x) = σ_{l−1}(W_{l−1} … σ_0(W_0 x + b_0) … + b_{l−1}) in float64, for the layers ``nets``."""
    for net in nets:
        W, b, _, _ = shallow_weights(net)
        x = activation_function(net)(torch.nn.functional.linear(x, W, b))
    return x


def _check_forward(
    model: nn.Module, nets: list[ShallowNetwork], original: dict[str, Tensor], points: dict[str, Tensor]
) -> None:
    """The layer inputs come from the Linear/σ chain: refuse a model whose forward computes something else."""
    last = nets[-1]
    _, _, A, c = shallow_weights(last)
    for name, x in points.items():
        chain = torch.nn.functional.linear(_prefix(nets, x), A, c)
        rounding = 1e3 * torch.finfo(last.hidden.weight.dtype).eps * (1 + float(chain.abs().max()))
        if chain.shape != original[name].shape or float((chain - original[name]).abs().max()) > rounding:
            raise ValueError(
                f"{type(model).__name__}'s forward is not its Linear → activation → … → Linear sequence on the "
                f"{name}: pass a model whose forward is that sequence (inputs of shape (n, "
                f"{nets[0].hidden.in_features})), or analyse one layer with neuron_redundancy(..., layers=...)."
            )


def _within(model: nn.Module, points: dict[str, Tensor], original: dict[str, Tensor], tol: float) -> bool:
    """max|f_model − f_original| ≤ tol·(1 + max|f_original|) on every point set."""
    for name, x in points.items():
        reference = original[name]
        if float((_outputs(model, x) - reference).abs().max()) > tol * (1 + float(reference.abs().max())):
            return False
    return True


def _withdrawn(report: RedundancyReport, level: str) -> RedundancyReport:
    """The report with the merges of ``level`` (and, for "function", the data-level ones built on them)
    withdrawn: the whole model's outputs moved more than the tolerance."""
    levels = {FUNCTION, DATA} if level == FUNCTION else {DATA}
    findings = tuple(replace(f, verified=False) if f.level in levels else f for f in report.findings)
    merged = dict(report._merged)
    unmerged = shallow_weights(report._net)
    widths: dict[str, Any]
    if level == FUNCTION:
        merged = {key: unmerged for key in merged}
        on_data = report.effective_width_on_data is not None
        widths = {
            "effective_width": report.width,
            "max_output_change": OutputChange(0.0 if on_data else None, 0.0),
            "effective_width_on_data": report.width if on_data else None,
            "max_output_change_on_data": 0.0 if on_data else None,
        }
    else:
        merged[DATA] = merged[FUNCTION]
        widths = {
            "effective_width_on_data": report.effective_width,
            "max_output_change_on_data": report.max_output_change.data,
        }
    note = (
        f"the {level}-level merges of this layer passed on the layer's outputs but moved the whole model's "
        "outputs by more than the tolerance: withdrawn"
    )
    return replace(report, findings=findings, _merged=merged, notes=report.notes + (note,), **widths)
