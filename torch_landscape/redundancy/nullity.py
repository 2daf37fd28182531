"""The Hessian cross-check of docs/theory.md §4.5: predicted vs measured nullity at a critical point."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..critical.newton import criticality
from ..curvature.operators import HessianOperator
from ..curvature.shallow import ShallowNetwork, activation_derivatives, activation_function, find_shallow
from ..curvature.symmetry import symmetry_tangents
from ..objective import LossFunction, Objective
from .deep import MLPRedundancy, find_mlp, is_mlp
from .network import _probe_points
from .report import (
    ALWAYS_ACTIVE,
    CONSTANT,
    DEAD,
    DUPLICATE,
    LINEAR_ON_DATA,
    MIRRORED,
    MULTIPLE,
    PATTERN,
    POSITIVE_MULTIPLE,
    ZERO,
    RedundancyFinding,
    RedundancyReport,
)
from .search import neuron_redundancy

# ----------------------------------------------------------------------------------------------------------
# The Hessian cross-check (§4.5)


@dataclass(frozen=True)
class NullityCheck:
    """Predicted vs measured Hessian nullity at θ (docs/theory.md §4.5).

    Attributes
    ----------
    predicted_nullity : int
        Rank of the stacked null vectors that the redundancies and continuous symmetries predict.
    measured_nullity : int
        #{|λ| ≤ threshold} for the dense Hessian (in the operator's dtype).
    unexplained_nullity : int
        max(measured − predicted, 0): interpolation, higher-order degeneracy, or an undetected redundancy.
    inconsistent : bool
        θ is critical and measured < predicted: a bug, a tolerance problem, or a data-/function-level mismatch.
    message : str
        What the numbers mean.
    critical : bool
        The Newton-step test of §1.2 (relative step 1e-6 in float64, 1e-3 below); the prediction holds only at
        critical points.
    gradient_norm, threshold : float
        ‖∇L‖, and rtol·max|λ|, the zero band.
    eigenvalues : Tensor
        All Hessian eigenvalues, ascending (CPU).
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

    def __init__(self, objective: Objective, net: ShallowNetwork, m: int, d: int, q: int, rtol: float) -> None:
        self.rtol = rtol
        offsets, start = {}, 0
        for name, numel in zip(objective.names, objective.numels, strict=True):
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

    def kernel(self, index: Tensor, matrix: Tensor, rtol: float | None = None) -> Tensor:
        """Embedded basis of {v : matrix·v = 0} over the coordinates ``index`` that are in θ (P × k): the right
        singular vectors of singular values ≤ rtol·σ_max (default: the rank tolerance of the check)."""
        rtol = self.rtol if rtol is None else rtol
        trainable = index >= 0
        index, matrix = index[trainable], matrix[:, trainable]
        if matrix.numel() and float(matrix.abs().max()) > 0:
            # Only the right singular vectors matter: the thin SVD of n × k data (n ≫ k) keeps every one of
            # them with an n × k left factor; a full one would build n × n.
            _, values, right = torch.linalg.svd(matrix, full_matrices=matrix.shape[0] < matrix.shape[1])
            basis = right[int((values > rtol * values[0]).sum()) :].T
        else:
            basis = torch.eye(len(index), dtype=matrix.dtype, device=matrix.device)
        vectors = matrix.new_zeros(self.size, basis.shape[1])
        vectors[index] = basis
        return vectors


def _output_gradients(objective: Objective, q: int) -> Tensor:
    """G = ∂L/∂f per sample (n × q), batches weighted as in L."""
    parts = []
    for (x, y), weight in zip(objective.batches, objective.weights, strict=True):
        outputs = objective.outputs(objective.theta, x).detach().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(weight * objective.loss_fn(outputs, y), outputs)
        parts.append(gradient.reshape(x.shape[0], q))
    return torch.cat(parts)


def redundancy_nullity_check(
    model: nn.Module | HessianOperator,
    loss_fn: LossFunction | None = None,
    data: Any = None,
    report: RedundancyReport | None = None,
    *,
    rtol: float | None = None,
    layers: tuple[str, str, str] | None = None,
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
    - the continuous-symmetry tangents (:func:`~torch_landscape.curvature.symmetry.symmetry_tangents`).

    The rank of these vectors (SVD, relative tolerance rtol/10) is compared with #{|λ| ≤ rtol·max|λ|} of the
    dense Hessian, in the operator's dtype; ``rtol`` defaults to :func:`default_nullity_rtol` (1e-9 in
    float64, 10·√P·ε in float32). ``model`` may be a ``HessianOperator`` (``loss_fn`` and ``data`` are then
    taken from it): its cached Hessian and eigendecomposition are reused, nothing is assembled again.
    ``report`` defaults to ``neuron_redundancy(model, data)``; its verified and near-redundant findings
    (:attr:`RedundancyFinding.near`) that hold between original neurons are used, the near ones named as
    such. θ is critical by the Newton-step test of :func:`~torch_landscape.critical.newton.criticality`.
    """
    if isinstance(model, HessianOperator):
        operator = model
    else:
        if loss_fn is None or data is None:
            raise TypeError("redundancy_nullity_check needs loss_fn and data (or a HessianOperator as model).")
        operator = HessianOperator(Objective(model, loss_fn, data, dtype=torch.float64))
    objective = operator.objective
    rtol = rtol if rtol is not None else default_nullity_rtol(operator.dtype, objective.num_parameters)
    eigenvalues, _ = operator.eigh()
    scale = float(eigenvalues.abs().max()) if len(eigenvalues) else 0.0
    threshold = rtol * scale
    measured = int((eigenvalues.abs() <= threshold).sum())
    critical = criticality(operator)[0]
    if isinstance(report, MLPRedundancy) or (report is None and layers is None and _deep(objective.model)):
        families = _mlp_families(objective, report, threshold, rtol)
    else:
        net = find_shallow(objective.model, layers)
        if report is None:
            report = neuron_redundancy(objective.model, list(objective.batches), layers=layers)
        x = torch.cat([x.reshape(-1, net.hidden.in_features) for x, _ in objective.batches])
        G = _output_gradients(objective, net.output.out_features)
        families = _predicted_families(objective, net, report, threshold, rtol, x, G)
    tangents = symmetry_tangents(objective)
    if tangents.count:
        families.append((tangents.family, tangents.vectors))
    basis = _orthonormal_span(torch.cat([vectors for _, vectors in families], dim=1), rtol / 10)
    predicted = basis.shape[1]
    hessian = operator.to_dense()
    residual = float(torch.linalg.vector_norm(hessian @ basis, dim=0).max() / scale) if predicted and scale else 0.0
    gradient_norm = float(torch.linalg.vector_norm(operator.gradient))
    inconsistent = critical and measured < predicted
    return NullityCheck(
        predicted_nullity=predicted,
        measured_nullity=measured,
        unexplained_nullity=max(measured - predicted, 0),
        inconsistent=inconsistent,
        message=_nullity_message(critical, measured, predicted, gradient_norm, residual),
        critical=critical,
        gradient_norm=gradient_norm,
        threshold=threshold,
        eigenvalues=eigenvalues.cpu(),
        predicted_vectors=basis,
        sources=tuple(f"{name}: {vectors.shape[1]}" for name, vectors in families),
        max_residual=residual,
    )


def default_nullity_rtol(dtype: torch.dtype, size: int) -> float:
    """The relative zero band of the cross-check, max(1e-9, 10·√P·ε) (docs/theory.md §4.5).

    1e-9 in float64. In float32 the eigenvalues of the dense Hessian carry rounding of ~√P·ε·max|λ| (a
    backward-stable eigh of a matrix whose entries are rounded to ε), so a band of 1e-9 would count none of the
    zero eigenvalues and call every predicted direction inconsistent; ten times that rounding counts them.
    """
    return max(1e-9, 10 * math.sqrt(size) * torch.finfo(dtype).eps)


def _deep(model: nn.Module) -> bool:
    """An MLP with more than one hidden layer (a one-hidden-layer one takes the shallow path)."""
    return is_mlp(model) and len(find_mlp(model)) > 1


def _mlp_families(
    objective: Objective, report: MLPRedundancy | None, threshold: float, rtol: float
) -> list[tuple[str, Tensor]]:
    """The families of every hidden layer l of an MLP, from its sub-network (L_l, σ_l, L_{l+1}).

    L depends on θ_l = (W_l, b_l, W_{l+1}, b_{l+1}) through g = g_{l+1}(h_{l−1}) alone, so a direction v in
    θ_l with J_g v = 0 for every h near the data is null exactly when it is for the sub-network with inputs
    h_{l−1}(X) and G = ∂L/∂g (the Gauss–Newton term and the cross terms with later layers carry J_g v; those
    with earlier layers carry its derivative in h). Hence deep layers' feature dependences must hold off the
    data too. A layer's findings are used only where it was analysed at θ's own weights (no earlier merge
    rewrote W_l); otherwise, and without ``report``, the layer is analysed again at θ.
    """
    nets = find_mlp(objective.model)
    parameters = {
        name: value.detach() for name, value in {**objective.constants, **objective.unflatten(objective.theta)}.items()
    }
    inputs, gradients = _layer_terms(objective, nets, parameters)
    families: list[tuple[str, Tensor]] = []
    for layer, net in enumerate(nets):
        layer_report = report.layers[layer] if report is not None else None
        if layer_report is None or not _analysed_at(layer_report, net, parameters):
            layer_report = neuron_redundancy(
                objective.model,
                inputs[layer],
                seed=layer,
                layers=(net.hidden_name, net.activation_name, net.output_name),
            )
        probes = (
            None
            if layer == 0
            else _probe_points(None, inputs[layer], 4096, layer, inputs[layer].shape[1], inputs[layer].device).to(
                inputs[layer].dtype
            )
        )
        families += _predicted_families(
            objective,
            net,
            layer_report,
            threshold,
            rtol,
            inputs[layer],
            gradients[layer],
            probes,
            f"layer {net.hidden_name!r}: ",
        )
    return families


def _analysed_at(report: RedundancyReport, net: ShallowNetwork, parameters: dict[str, Tensor]) -> bool:
    """Whether the layer's report saw θ's own hidden and output weights."""
    for layer, module in (("hidden", report._net.hidden), ("output", report._net.output)):
        for tensor in ("weight", "bias"):
            seen, name = getattr(module, tensor), net.parameter_name(layer, tensor)
            if (seen is None) != (name not in parameters):
                return False
            if seen is not None and not torch.equal(seen.detach().to(parameters[name]), parameters[name]):
                return False
    return True


def _layer_terms(objective: Objective, nets: list, parameters: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Per hidden layer l: its inputs h_{l−1}(x) (n × d_l) and G_l = ∂L/∂g_{l+1} per sample, batches weighted."""
    inputs: list[list[Tensor]] = [[] for _ in nets]
    gradients: list[list[Tensor]] = [[] for _ in nets]

    def linear(net: ShallowNetwork, layer: str, h: Tensor) -> Tensor:
        return torch.nn.functional.linear(
            h, parameters[net.parameter_name(layer, "weight")], parameters.get(net.parameter_name(layer, "bias"))
        )

    for (x, y), weight in zip(objective.batches, objective.weights, strict=True):
        with torch.enable_grad():
            h, outputs = x.detach().reshape(x.shape[0], -1), []
            z = linear(nets[0], "hidden", h).requires_grad_()  # the graph starts here: parameters are detached
            for index, net in enumerate(nets):
                inputs[index].append(h.detach())
                h = activation_function(net)(z)
                z = linear(net, "output", h)  # g_{l+1}, the pre-activation of layer l + 1 (or the output)
                outputs.append(z)
            found = torch.autograd.grad(weight * objective.loss_fn(outputs[-1], y), outputs)
        for index, gradient in enumerate(found):
            gradients[index].append(gradient.reshape(x.shape[0], -1))
    return [torch.cat(parts) for parts in inputs], [torch.cat(parts) for parts in gradients]


def _orthonormal_span(stacked: Tensor, rtol: float) -> Tensor:
    """An orthonormal basis of the span of the nonzero columns (SVD of the normalised columns)."""
    stacked = stacked[:, torch.linalg.vector_norm(stacked, dim=0) > 0]
    stacked = stacked / torch.linalg.vector_norm(stacked, dim=0).clamp_min(1e-300)
    if not stacked.shape[1]:
        return stacked
    left, values, _ = torch.linalg.svd(stacked, full_matrices=False)
    return left[:, values > rtol * values[0]]


def _nullity_message(critical: bool, measured: int, predicted: int, gradient_norm: float, residual: float) -> str:
    if not critical:
        return (
            f"θ is not a critical point (‖∇L‖ = {gradient_norm:.2e}, Newton-step test); the predicted null "
            "vectors are exact only at critical points, so no consistency verdict"
        )
    if measured < predicted:
        return (
            f"measured nullity {measured} < predicted {predicted}: a redundancy or symmetry claimed here is not "
            f"a Hessian null direction (largest ‖Hv‖/max|λ| = {residual:.1e}); suspect a tolerance "
            "problem, a data- vs function-level mismatch, or a bug"
        )
    if measured > predicted:
        return (
            f"{measured - predicted} null directions unexplained: interpolation (n < P − r at zero loss), "
            "higher-order degeneracy (§1.5 probes), or a redundancy the rules do not detect"
        )
    return "every Hessian null direction is explained by the redundancies and symmetries found"


def _predicted_families(
    objective: Objective,
    net: ShallowNetwork,
    report: RedundancyReport,
    threshold: float,
    rtol: float,
    x: Tensor,
    G: Tensor,
    probes: Tensor | None = None,
    layer: str = "",
) -> list[tuple[str, Tensor]]:
    """(source, P × k null vectors) for the feature dependences and each usable finding of ``report``.

    ``x`` are the inputs of the hidden layer on the data, ``G`` = ∂L/∂g per sample for g the output layer's
    output. With ``probes`` (a hidden layer behind other trainable layers) a feature dependence must also
    hold on those points: one on the data alone changes g off the data, and the prefix moves the data.
    """
    parameters = {**objective.constants, **objective.unflatten(objective.theta)}
    W = parameters[net.parameter_name("hidden", "weight")]
    b = parameters.get(net.parameter_name("hidden", "bias"))
    A = parameters[net.parameter_name("output", "weight")]
    m, d = W.shape
    q = A.shape[0]
    U = torch.cat([W, (b if b is not None else W.new_zeros(m))[:, None]], dim=1)
    where = _Coordinates(objective, net, m, d, q, rtol / 10)
    x_tilde = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
    sigma = activation_function(net)
    phi, first, second = activation_derivatives(sigma, x_tilde @ U.T)
    cross = torch.einsum("nk,ni,np->ikp", G, first, x_tilde)  # g_i, the (a_i, u_i) residual blocks
    moving = torch.linalg.vector_norm(cross.reshape(m, -1), dim=1) <= threshold
    # Output-weight directions of every feature dependence on the data (and on the probes).
    features = phi if probes is None else torch.cat([phi, sigma(probes @ U[:, :-1].T + U[:, -1])])
    columns = torch.cat([features[:, moving], features.new_ones(features.shape[0], 1)], dim=1)
    index = torch.cat([where.a[:, moving], where.c[:, None]], dim=1)
    feature_rtol = 1e-2 * math.sqrt(rtol)  # a feature singular value s gives a Hessian eigenvalue ∝ s²
    where_label = " and probe points" if probes is not None else ""
    families = [
        (
            f"{layer}feature dependence on the data{where_label} (L1)",
            torch.cat([where.kernel(index[k], columns, feature_rtol) for k in range(q)], dim=1),
        )
    ]
    for finding in report.findings:
        if not ((finding.verified or finding.near) and finding.original):
            continue
        vectors = _finding_null_vectors(
            finding, net.kind, sigma, U, A, x_tilde, first, second, G, moving, where, threshold
        )
        if vectors is not None and vectors.shape[1]:
            label = f"{layer}{finding.rule} {finding.neurons}" + ("" if finding.verified else " (near-redundant)")
            families.append((label, vectors))
    return families


def _finding_null_vectors(
    finding: RedundancyFinding,
    kind: str,
    sigma: Callable[[Tensor], Tensor],
    U: Tensor,
    A: Tensor,
    x_tilde: Tensor,
    first: Tensor,
    second: Tensor,
    G: Tensor,
    moving: Tensor,
    where: _Coordinates,
    threshold: float,
) -> Tensor | None:
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
        matrix = torch.cat([torch.kron(A[:, i : i + 1], eye_p), kappa * torch.kron(A[:, j : j + 1], eye_p)], dim=1)
        return where.kernel(torch.cat([where.u[i], where.u[j]]), matrix)
    if finding.rule in (ALWAYS_ACTIVE, LINEAR_ON_DATA, PATTERN):
        if not all(bool(moving[k]) for k in neurons):
            return None
        # Σ_k s_k (Δa_k ⊗ u_k + a_k ⊗ Δu_k) (+ Δc ⊗ e_b for neurons linear on all the data) = 0.
        blocks, index = [], []
        for k in neurons:
            s_k = float(first[:, k].max()) if finding.rule != PATTERN else 1.0
            blocks += [s_k * torch.kron(eye_q, U[k][:, None]), s_k * torch.kron(A[:, k : k + 1], eye_p)]
            index += [where.a[:, k], where.u[k]]
        if finding.rule != PATTERN:
            blocks.append(torch.kron(eye_q, eye_p[:, -1:]))
            index.append(where.c)
        return where.kernel(torch.cat(index), torch.cat(blocks, dim=1))
    return None
