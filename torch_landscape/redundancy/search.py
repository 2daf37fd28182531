"""The merge-and-verify search protocol and :func:`neuron_redundancy` (docs/theory.md §4.4)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from ..curvature.shallow import ShallowNetwork, activation_function, find_shallow, resized_copy, shallow_weights
from ..objective import LossFunction, Objective
from .network import _inputs, _Merge, _Network, _probe_points, _Verifier
from .reductions import (
    _dead_candidates,
    _dependence,
    _linear_on_data_merge,
    _linear_scores,
    _pattern_merges,
    _rank_merge,
)
from .report import (
    ALWAYS_ACTIVE,
    CONSTANT,
    DATA,
    DEAD,
    DEPENDENCE,
    FUNCTION,
    LINEAR_ON_DATA,
    ZERO,
    OutputChange,
    RedundancyFinding,
    RedundancyReport,
)
from .rules import (
    Candidate,
    _activation_class,
    _antipodal_merge,
    _completeness_note,
    _constant_scores,
    _Context,
    _dead_scores,
    _neuron_candidates,
    _pair_candidates,
    _zero_scores,
)

# ----------------------------------------------------------------------------------------------------------
# The protocol


def _run(
    candidates: list[Candidate], net: _Network, verifier: _Verifier, level: str, findings: list, failed: set
) -> int:
    """Try candidates in order of (score, rule priority); apply each verified merge. Returns merges applied."""
    applied = 0
    for _, _, rule, involved, build in sorted(candidates, key=lambda item: item[:2]):
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
    findings.append(
        RedundancyFinding(
            merge.rule,
            neurons,
            merge.score,
            level,
            ok,
            merge.width_reduction,
            size,
            merge.detail,
            original,
            fit_change,
            not ok and fit_change <= verifier.near_rtol,
        )
    )
    if ok:
        net.apply(merge)
        return 1
    failed.add((merge.rule, merge.involved))
    return 0


def _function_level(
    net: _Network, ctx: _Context, verifier: _Verifier, findings: list, scores: dict[str, float]
) -> None:
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
                if merge is not None and current and (merge.rule, merge.involved) not in failed:
                    applied += _attempt(merge, net, verifier, DATA, findings, failed)
        applied += _data_dependence(net, ctx, verifier, findings, scores, failed)
        if not applied:
            return


def _data_dependence(
    net: _Network, ctx: _Context, verifier: _Verifier, findings: list, scores: dict[str, float], failed: set
) -> int:
    """L1 on the data, within the cost budget (one QR of the n×m feature matrix, O(n·m·min(n, m)))."""
    rows = net.indices
    n, m = net.training_inputs.shape[0], len(rows)
    if m == 0:
        return 0
    cost = 2.0 * n * (m + 1) * min(n, m + 1)
    if cost > ctx.l1_max_cost:
        note = f"rule L1 ({DEPENDENCE}) skipped: its QR costs ~{cost:.1e} flops > l1_max_cost = {ctx.l1_max_cost:.1e}"
        if note not in ctx.notes:
            ctx.notes.append(note)
        return 0
    features = net.sigma(net.pre(net.training_inputs, rows))
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
    loss_fn: LossFunction | None = None,
    probe_points: Tensor | None = None,
    num_probe_points: int = 4096,
    tol: float | None = None,
    candidate_score: float = 1e-6,
    near_rtol: float | None = None,
    seed: int = 0,
    layers: tuple[str, str, str] | None = None,
    l1_max_cost: float = 5e9,
) -> RedundancyReport:
    """Find the redundant hidden neurons of a one-hidden-layer network and prove each claim by a merge.

    The rules of docs/theory.md §4.2 for the activation's class (zero output weight, constant neuron, duplicate,
    mirrored for tanh/sigmoid with σ(−z) = κ − σ(z), positive multiple for ReLU-type, multiple for linear and
    quadratic, antipodal groups for σ(z) − σ(−z) = αz, rank for linear and quadratic; on the data, for ReLU:
    dead, always active, same activation pattern; and the linear-dependence rule L1) are scored (§4.3) and
    each candidate with score ≤ ``candidate_score`` is merged and verified (§4.4): the merge is kept only if
    the accumulated output change max|f_θ′ − f_θ| stays ≤ tol·(1 + max|f|) on the data and on the probe
    points (function level), or on the data alone (data level). Merging repeats until nothing applies.

    Parameters
    ----------
    model
        A one-hidden-layer network (see :func:`~torch_landscape.curvature.shallow.find_shallow`). Never modified.
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
        otherwise, the relative zero band of :func:`~torch_landscape.critical.classify.classify_critical_point`, so
        that what the Hessian test cannot tell from a redundancy is reported as one (not as a claim).
    layers
        (hidden, activation, output) module names, for models the automatic search does not understand; ``data``
        and ``probe_points`` are then that hidden layer's inputs, and the merges are verified on the three layers
        (without ``layers``, also on the whole model: a skip connection can make a merge that keeps the
        network's outputs change the model's).
    l1_max_cost
        Rule L1 factorises the n×m feature matrix (≈ 2·n·m·min(n, m) flops); above this budget it is skipped
        and a note says so. The other rules cost O(n·m·d) per neuron statistic and O(m²·d) for pairs.

    Returns
    -------
    RedundancyReport
    """
    net = find_shallow(model, layers)
    tol, near_rtol = _tolerances(net, tol, near_rtol)
    setup = _prepare(net, data, probe_points, num_probe_points, seed, tol)
    ctx = _context(net, setup, candidate_score, l1_max_cost)
    neuron_scores = _neuron_views(setup.network, ctx)
    search = _search(setup, ctx, near_rtol)
    if layers is None:  # the model takes the shallow network's inputs: its own outputs must survive the merges
        search = _on_the_whole_model(model, net, setup, search, ctx)
    norms: tuple[float | None, float | None] = (None, None)
    if loss_fn is not None and setup.targets is not None:
        merged = resized_copy(model, net, *search.merged[FUNCTION])
        norms = (_gradient_norm(model, loss_fn, data), _gradient_norm(merged, loss_fn, data))
    return _report(model, net, setup, search, ctx, neuron_scores, (tol, near_rtol), norms)


def _context(net: ShallowNetwork, setup: _Setup, candidate_score: float, l1_max_cost: float) -> _Context:
    return _Context(
        cls=_activation_class(net),
        kind=net.kind,
        has_bias=net.hidden.bias is not None,
        has_c=net.output.bias is not None,
        center=setup.center,
        spread=setup.spread,
        scale=setup.scale,
        threshold=candidate_score,
        l1_max_cost=l1_max_cost,
        notes=[_completeness_note(net.kind)],
    )


def _report(
    model: nn.Module,
    net: ShallowNetwork,
    setup: _Setup,
    search: _Search,
    ctx: _Context,
    neuron_scores: dict[str, Tensor],
    tolerances: tuple[float, float],
    gradient_norms: tuple[float | None, float | None],
) -> RedundancyReport:
    finite = {rule: value for rule, value in search.scores.items() if math.isfinite(value)}
    score_rule = min(finite, key=finite.__getitem__) if finite else ""
    U, A = setup.weights
    return RedundancyReport(
        kind=net.kind,
        width=setup.network_width,
        effective_width=search.function_width,
        effective_width_on_data=search.data_width,
        findings=tuple(search.findings),
        score=finite.get(score_rule, math.inf),
        score_rule=score_rule,
        scores=finite,
        max_output_change=OutputChange(search.change.get("data"), search.change.get("probes")),
        max_output_change_on_data=search.data_change,
        tolerance=OutputChange(*(setup.sets[name][1] if name in setup.sets else None for name in ("data", "probes"))),
        output_weight_norm=torch.linalg.vector_norm(A, dim=0).cpu(),
        input_weight_norm=torch.linalg.vector_norm(U[:, :-1], dim=1).cpu(),
        neuron_scores=neuron_scores,
        gradient_norm=gradient_norms[0],
        merged_gradient_norm=gradient_norms[1],
        notes=tuple(ctx.notes),
        tol=tolerances[0],
        near_rtol=tolerances[1],
        _model=model,
        _net=net,
        _merged=search.merged,
        _standardized=ctx.standardize(U).cpu(),
        _others=_other_state(model, net),
    )


@dataclass(frozen=True)
class _Search:
    """What the merges found: the findings, the merged weights per level, the widths and output changes."""

    findings: list[RedundancyFinding]
    scores: dict[str, float]
    merged: dict[str, tuple]
    function_width: int
    data_width: int | None
    change: dict[str, float]
    data_change: float | None


def _search(setup: _Setup, ctx: _Context, near_rtol: float) -> _Search:
    """The function-level merges, then the data-level ones, each verified on the shallow network's outputs."""
    network, outputs, sets, inputs = setup.network, setup.outputs, setup.sets, setup.inputs
    findings: list[RedundancyFinding] = []
    scores: dict[str, float] = {}
    fit = (setup.residual, setup.scale, near_rtol)
    m = network.width
    _function_level(network, ctx, _Verifier(list(sets.values()), fit), findings, scores)
    merged = {FUNCTION: network.weights(ctx.has_bias)}
    function_width = network.width
    # The merged network's outputs are recomputed from scratch: the claim rests on them, not on the
    # accumulated per-merge changes. Without a merge the network is θ itself.
    change = {
        name: float((network.outputs(points) - outputs[name]).abs().max()) if function_width < m else 0.0
        for name, (points, _, _) in sets.items()
    }
    data_width, data_change = None, None
    if inputs is not None:
        _data_level(network, ctx, _Verifier([sets["data"]], fit), findings, scores)
        merged[DATA] = network.weights(ctx.has_bias)
        data_width = network.width
        data_change = (
            float((network.outputs(inputs) - outputs["data"]).abs().max())
            if data_width < function_width
            else change["data"]
        )
    return _Search(findings, scores, merged, function_width, data_width, change, data_change)


def _on_the_whole_model(
    model: nn.Module, net: ShallowNetwork, setup: _Setup, search: _Search, ctx: _Context
) -> _Search:
    """The merges checked on the whole model: where it computes more than output(σ(hidden(x))) (a skip
    connection, a layer after the output), a merge that keeps the shallow network's outputs need not keep the
    model's. A merged model whose outputs differ by more than the tolerance loses every claim of its level."""
    if search.function_width == setup.network_width and search.data_width in (None, setup.network_width):
        return search
    checks = [(FUNCTION, name) for name in setup.sets] + ([(DATA, "data")] if DATA in search.merged else [])
    failed = set()
    for level, name in checks:
        points, tolerance, _ = setup.sets[name]
        if _model_change(model, net, search.merged[level], points) > tolerance:
            failed.add(level)
    if not failed:
        return search
    width = setup.network_width
    ctx.notes.append(
        "the merged networks change the model's own outputs beyond the tolerance (it computes more than "
        "Linear → activation → Linear, e.g. a skip connection): no merge is claimed"
    )
    findings = [replace(f, verified=False) if f.level in failed else f for f in search.findings]
    return replace(
        search,
        findings=findings,
        function_width=width if FUNCTION in failed else search.function_width,
        data_width=width
        if DATA in failed or FUNCTION in failed and search.data_width is not None
        else search.data_width,
    )


def _model_change(model: nn.Module, net: ShallowNetwork, weights: tuple, points: Tensor) -> float:
    """max |model(x) − merged model(x)| over ``points``, both evaluated in float64 and eval mode."""
    original = copy.deepcopy(model).double().eval()
    names = (net.hidden_name, net.activation_name, net.output_name)
    W, b, A, c = weights
    double = (W.double(), None if b is None else b.double(), A.double(), None if c is None else c.double())
    merged = resized_copy(original, find_shallow(original, names), *double)
    try:
        with torch.no_grad():
            return float((merged(points.double()) - original(points.double())).abs().max())
    except RuntimeError:  # the merged width no longer fits the rest of the model (a skip connection's addition)
        return math.inf


@dataclass(frozen=True)
class _Setup:
    """The network to merge, its points and outputs, and the scales every rule and verdict uses."""

    network: _Network
    inputs: Tensor | None
    targets: Tensor | None
    outputs: dict[str, Tensor]  # f on "data" and "probes"
    sets: dict[str, tuple[Tensor, float, Tensor]]  # (points, tol·(1 + max|f|), accumulated change)
    center: Tensor
    spread: float  # RMS ‖x − x̄‖ (1 for a single point)
    scale: float  # RMS ‖f − f̄‖ over all points
    residual: float  # RMS ‖f − y‖ on the data, 0 without targets
    weights: tuple[Tensor, Tensor]  # U = [W b] and A as analysed (float64)

    @property
    def network_width(self) -> int:
        """m, the width before any merge."""
        return self.weights[0].shape[0]


def _prepare(
    net: ShallowNetwork, data: Any, probe_points: Tensor | None, num_probe_points: int, seed: int, tol: float
) -> _Setup:
    W, b, A, c = shallow_weights(net)
    m, d = W.shape
    inputs, targets = _inputs(data, d, net, W.device)
    probes = _probe_points(probe_points, inputs, num_probe_points, seed, d, W.device)
    U = torch.cat([W, (b if b is not None else W.new_zeros(m))[:, None]], dim=1)
    reference = inputs if inputs is not None else probes
    center = reference.mean(dim=0)
    spread = float(torch.sqrt((reference - center).square().sum(dim=1).mean()))
    network = _Network(U.clone(), A.clone(), None if c is None else c.clone(), activation_function(net), inputs, probes)
    outputs = network.initial_outputs
    everything = torch.cat(list(outputs.values()))
    scale = float(torch.sqrt((everything - everything.mean(dim=0)).square().sum(dim=1).mean()))
    scale = scale or float(torch.sqrt(everything.square().sum(dim=1).mean())) or 1.0
    sets = {
        name: (points, tol * (1 + float(outputs[name].abs().max())), torch.zeros_like(outputs[name]))
        for name, points in (("data", inputs), ("probes", probes))
        if points is not None
    }
    residual = 0.0 if targets is None else float((outputs["data"] - targets).square().sum(dim=1).mean().sqrt())
    return _Setup(network, inputs, targets, outputs, sets, center, spread or 1.0, scale, residual, (U, A))


def _other_state(model: nn.Module, net: ShallowNetwork) -> dict[str, Tensor]:
    """Copies of the model's state outside the hidden and output layers, as analysed, for merged_model()."""
    layers = tuple(f"{name}." for name in (net.hidden_name, net.output_name))
    return {key: value.detach().clone() for key, value in model.state_dict().items() if not key.startswith(layers)}


def _tolerances(net: ShallowNetwork, tol: float | None, near_rtol: float | None) -> tuple[float, float]:
    """tol and near_rtol, checked, with their defaults for the precision of the model's parameters."""
    for name, value in (("tol", tol), ("near_rtol", near_rtol)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
        ):
            raise ValueError(
                f"{name} must be a finite number >= 0 (or None for the default of the model's "
                f"precision), got {value!r}."
            )
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
