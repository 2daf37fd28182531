"""Map a reference network (a teacher, a checkpoint) into a model's gauge (docs/theory.md §3.3).

A one-hidden-layer network f(x) = Σ_i a_i σ(u_i·x̃) + c (u_i = (w_i, b_i), a_i = A_{:,i} ∈ R^q) computes the
same function after permuting its neurons and after each neuron map its activation allows:

    odd σ (tanh, linear):    (u, a) → (−u, −a)
    sigmoid:                 (u, a) → (−u, −a) and c → c + a        (a σ(z) = a − a σ(−z))
    even σ (z²):             (u, a) → (−u, a)
    p-homogeneous σ (ReLU, leaky ReLU and linear p = 1, z² p = 2):   (u, a) → (γu, a/γᵖ), γ > 0.

Only the *reference* is transformed: the gradient lives in the model's coordinates. Neurons are
matched by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on an activation-specific
cost, then each matched reference neuron is moved to the point of its orbit nearest the model's neuron.
A reference with fewer neurons than the model (a teacher of an over-parameterised student) is projected
onto the set of realisations of the teacher by groups of the model's neurons.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ..curvature.shallow import ShallowNetwork, find_shallow

_FLIP = {"tanh": "odd", "identity": "odd", "sigmoid": "sigmoid", "square": "even"}
_DEGREE = {"relu": 1, "leaky_relu": 1, "identity": 1, "square": 2}


@dataclass(frozen=True)
class Alignment:
    """A reference network expressed in a model's gauge.

    Attributes
    ----------
    parameters : dict[str, Tensor]
        The aligned reference, every parameter of the shallow network, under the model's names.
    assignment : tuple[int, ...]
        For each model neuron, the reference neuron it represents (−1: none; its output weight, or with
        frozen output weights its input weights, are set to 0).
    signs : tuple[int, ...]
        The flip applied to the reference neuron for each model neuron (+1 or −1).
    scales : tuple[float, ...]
        γ applied to the reference neuron for each model neuron (1 without rescaling symmetry).
    distance : float
        ‖aligned − model‖ over the trainable parameters.
    """

    parameters: dict[str, Tensor]
    assignment: tuple[int, ...]
    signs: tuple[int, ...]
    scales: tuple[float, ...]
    distance: float


@dataclass(frozen=True)
class _Neurons:
    """The per-neuron view: u (m, d[+1]) rows (w_i, b_i), a (m, q) rows A_{:,i}ᵀ, c (q) or None."""

    u: Tensor
    a: Tensor
    c: Tensor | None


def _neurons(net: ShallowNetwork, parameters: dict[str, Tensor]) -> _Neurons:
    W = parameters[net.parameter_name("hidden", "weight")]
    b = parameters.get(net.parameter_name("hidden", "bias"))
    u = torch.cat([W, b[:, None]], dim=1) if b is not None else W
    return _Neurons(
        u, parameters[net.parameter_name("output", "weight")].T, parameters.get(net.parameter_name("output", "bias"))
    )


def shallow_reference(
    net: ShallowNetwork, reference: nn.Module, dtype: torch.dtype, device: torch.device
) -> dict[str, Tensor]:
    """The reference module's parameters under the model's names, after checking it is the same architecture.

    Raises
    ------
    ValueError
        If the reference is not a one-hidden-layer network, or differs from the model in input size,
        output size, activation or bias flags, or has more hidden neurons than the model.
    """
    try:
        ref = find_shallow(reference)
    except ValueError as error:
        raise ValueError(f"the reference is not a one-hidden-layer network like the model: {error}") from None
    differences = []
    if repr(ref.activation) != repr(net.activation):
        differences.append(f"activation {ref.activation!r} vs the model's {net.activation!r}")
    if ref.hidden.in_features != net.hidden.in_features:
        differences.append(f"{ref.hidden.in_features} inputs vs the model's {net.hidden.in_features}")
    if ref.output.out_features != net.output.out_features:
        differences.append(f"{ref.output.out_features} outputs vs the model's {net.output.out_features}")
    for layer in ("hidden", "output"):
        mine, theirs = getattr(net, layer).bias is not None, getattr(ref, layer).bias is not None
        if mine != theirs:
            differences.append(
                f"{layer} bias {'present' if theirs else 'absent'} vs {'present' if mine else 'absent'} in the model"
            )
    if ref.width > net.width:
        differences.append(f"{ref.width} hidden neurons, more than the model's {net.width}")
    if differences:
        raise ValueError("the reference has another architecture than the model: " + "; ".join(differences) + ".")
    return {
        net.parameter_name(layer, tensor): getattr(getattr(ref, layer), tensor).detach().to(device=device, dtype=dtype)
        for layer in ("hidden", "output")
        for tensor in ("weight", "bias")
        if getattr(getattr(ref, layer), tensor) is not None
    }


def align_parameters(
    net: ShallowNetwork,
    model: dict[str, Tensor],
    reference: dict[str, Tensor],
    trainable: Collection[str],
) -> Alignment:
    """Align ``reference`` to ``model`` (both dicts of the shallow network's parameters, model's names).

    Cost C_ij of model neuron i against reference neuron j (minimised over the allowed flips s):

        no rescaling:   ‖u_i − s u*_j‖² + ‖a_i − s^e a*_j‖²        (e = 1 odd/sigmoid, 0 even)
        p-homogeneous:  ‖ψ_i − ψ(s u*_j, s^e a*_j)‖²,   ψ(u, a) = (a‖u‖ᵖ, u/‖u‖)  (rescaling-invariant)

    Each matched pair is then gauge-fixed by the exact projection onto the reference neuron's orbit,
    argmin_{s, γ>0} ‖γ s u*_j − u_i‖² + ‖γ^{−p} s^e a*_j − a_i‖², a root of a polynomial of degree 2p+2.
    A flip or a rescaling is used only if every tensor it changes is trainable; otherwise the reference
    would realise its function only with frozen values the model does not have.

    Over-parameterised model (m > m*): after m* Hungarian matches, each other model neuron joins the
    group G_j of its nearest reference neuron (cost: distance of u_i to that neuron's orbit) or is
    zeroed (cost ‖a_i‖²), whichever is cheaper. In each group the u_i are set to their gauged u*_j and
    the output weights are projected onto {Σ_{i∈G_j} w_i a_i = a*_j} (w_i = s_i^e γ_i^p, the factor by
    which neuron i's activation multiplies σ(u*_j·x̃)):  a_i ← a_i + w_i (a*_j − Σ w a)/Σ w², the
    Euclidean projection for fixed u. With frozen output weights and ReLU-type σ (the
    Safran–Yehudai–Shamir setting) the group is instead u_i = α_i u*_j with α on the weighted simplex
    {α ≥ 0, Σ α_i a_i = a*_j}, and unmatched neurons get u_i = 0.
    """
    model_n, ref_n = _neurons(net, model), _neurons(net, reference)
    m, m_ref = model_n.u.shape[0], ref_n.u.shape[0]
    gauge = _gauge(net, model, trainable, model_n.a.shape[1])
    if m > m_ref and not (gauge.a_free or gauge.simplex):
        raise ValueError(
            f"the reference has {m_ref} hidden neurons and the model {m}: projecting onto the teacher's "
            "realisations needs trainable output weights (or a ReLU-type activation with one output)."
        )
    assignment = _match(model_n, ref_n, gauge)
    u, a, c, signs, scales = _project_groups(model_n, ref_n, assignment, gauge)
    aligned = dict(reference)
    W_name, a_name = net.parameter_name("hidden", "weight"), net.parameter_name("output", "weight")
    d = model[W_name].shape[1]
    aligned[W_name] = u[:, :d].contiguous()
    if len(gauge.hidden) == 2:
        aligned[gauge.hidden[1]] = u[:, d].contiguous()
    aligned[a_name] = a.T.contiguous()
    if c is not None:
        aligned[net.parameter_name("output", "bias")] = c
    distance = math.sqrt(sum(float(((aligned[name] - model[name]) ** 2).sum()) for name in model if name in trainable))
    return Alignment(aligned, tuple(assignment), tuple(signs), tuple(scales), distance)


@dataclass(frozen=True)
class _Gauge:
    """The symmetries an alignment may use: those that change only trainable tensors.

    ``flip`` is "odd", "sigmoid", "even" or None; ``degree`` p of the rescaling (None: none usable);
    ``simplex``: frozen output weights with a ReLU-type σ and one output (split neurons on a simplex).
    """

    hidden: tuple[str, ...]
    a_free: bool
    flip: str | None
    degree: int | None
    simplex: bool

    @property
    def signs(self) -> tuple[int, ...]:
        return (1, -1) if self.flip is not None else (1,)

    @property
    def odd(self) -> bool:
        return self.flip in ("odd", "sigmoid")


def _gauge(net: ShallowNetwork, model: dict[str, Tensor], trainable: Collection[str], outputs: int) -> _Gauge:
    """The usable symmetries of ``net``'s activation given which of its tensors are ``trainable``."""
    hidden = tuple(
        net.parameter_name("hidden", t) for t in ("weight", "bias") if net.parameter_name("hidden", t) in model
    )
    a_name, c_name = net.parameter_name("output", "weight"), net.parameter_name("output", "bias")
    hidden_free, a_free = all(name in trainable for name in hidden), a_name in trainable
    changed = {"odd": [*hidden, a_name], "sigmoid": [*hidden, a_name, c_name], "even": list(hidden)}
    flip = _FLIP.get(net.kind)
    if flip is not None and not all(name in trainable for name in changed[flip]):
        flip = None
    degree = _DEGREE.get(net.kind)
    simplex = degree == 1 and hidden_free and not a_free and flip is None and outputs == 1
    return _Gauge(hidden, a_free, flip, degree if hidden_free and a_free else None, simplex)


def _match(model: _Neurons, ref: _Neurons, gauge: _Gauge) -> list[int]:
    """For each model neuron the reference neuron it represents (−1: none).

    The Hungarian matching on the cost minimised over flips; with more model neurons than reference ones,
    each unmatched neuron then joins its nearest reference neuron's orbit, or none if zeroing it is cheaper.
    """
    m, m_ref = model.u.shape[0], ref.u.shape[0]
    cost = torch.stack([_cost(model, ref, s, gauge.odd, gauge.degree) for s in gauge.signs]).amin(dim=0)
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    assignment = [-1] * m
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        assignment[i] = j
    if m > m_ref:
        join_degree = 1 if gauge.simplex else gauge.degree
        distances = torch.stack([_ray_distance(model.u, ref.u, s, join_degree) for s in gauge.signs]).amin(dim=0)
        join, nearest = distances.min(dim=1)
        zero_out = (model.u if gauge.simplex else model.a).pow(2).sum(dim=1)
        for i in range(m):
            if assignment[i] < 0 and join[i] < zero_out[i]:
                assignment[i] = int(nearest[i])
    return assignment


def _project_groups(
    model: _Neurons, ref: _Neurons, assignment: list[int], gauge: _Gauge
) -> tuple[Tensor, Tensor, Tensor | None, list[int], list[float]]:
    """(u, a, c, signs, scales): each group G_j of model neurons gauged onto reference neuron j (see
    :func:`align_parameters`), unmatched neurons zeroed."""
    m, m_ref = model.u.shape[0], ref.u.shape[0]
    u, a = model.u.clone(), model.a.clone()
    c = ref.c.clone() if ref.c is not None else None
    chosen_sign, chosen_scale = [1] * m, [1.0] * m
    for j in range(m_ref):
        group = [i for i in range(m) if assignment[i] == j]
        if gauge.simplex:
            along = model.u[group] @ ref.u[j] / (ref.u[j] @ ref.u[j]).clamp_min(torch.finfo(u.dtype).tiny)
            alpha = _weighted_simplex(along, model.a[group, 0] / ref.a[j, 0])
            for i, value in zip(group, alpha.tolist(), strict=True):
                chosen_scale[i] = value
            u[group] = alpha[:, None] * ref.u[j]
            continue
        for i in group:
            sign, scale = (
                _ray_projection(model.u[i], ref.u[j], gauge.signs, gauge.degree) if len(group) > 1 else (1, 0.0)
            )
            if scale == 0.0:  # a lone neuron, or one at an obtuse angle to u*_j: nearest point of the orbit
                sign, scale = _orbit_projection(
                    model.u[i], model.a[i], ref.u[j], ref.a[j], gauge.signs, gauge.odd, gauge.degree
                )
            chosen_sign[i], chosen_scale[i] = sign, scale
            u[i] = sign * scale * ref.u[j]
        weights = a.new_tensor(
            [chosen_sign[i] ** int(gauge.odd) * chosen_scale[i] ** (gauge.degree or 0) for i in group]
        )
        current = model.a[group]
        a[group] = current + weights[:, None] * (ref.a[j] - weights @ current) / (weights @ weights)
        if gauge.flip == "sigmoid" and c is not None:
            for i in group:
                if chosen_sign[i] < 0:
                    c = c - a[i]
    for i in range(m):
        if assignment[i] < 0:
            if gauge.simplex:
                u[i] = 0.0
            else:
                a[i] = 0.0
            chosen_scale[i] = 0.0
    return u, a, c, chosen_sign, chosen_scale


def _cost(model: _Neurons, ref: _Neurons, sign: int, odd: bool, degree: int | None) -> Tensor:
    """The m × m* matching cost against the reference flipped by ``sign``."""
    ref_u, ref_a = sign * ref.u, (sign if odd else 1) * ref.a
    if degree is None:
        return torch.cdist(model.u, ref_u) ** 2 + torch.cdist(model.a, ref_a) ** 2

    def invariant(u: Tensor, a: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(u, dim=1, keepdim=True)
        return torch.cat([a * norm**degree, u / norm.clamp_min(torch.finfo(u.dtype).tiny)], dim=1)

    return torch.cdist(invariant(model.u, model.a), invariant(ref_u, ref_a)) ** 2


def _ray_distance(u: Tensor, ref_u: Tensor, sign: int, degree: int | None) -> Tensor:
    """m × m* squared distance of u_i to the orbit of s·u*_j: the point, or the ray {γ s u*_j, γ > 0}."""
    target = sign * ref_u
    if degree is None:
        return torch.cdist(u, target) ** 2
    along = (u @ target.T).clamp_min(0) ** 2 / (target**2).sum(dim=1).clamp_min(torch.finfo(u.dtype).tiny)
    return (u**2).sum(dim=1, keepdim=True) - along


def _ray_projection(u: Tensor, ref_u: Tensor, signs: tuple[int, ...], degree: int | None) -> tuple[int, float]:
    """(s, γ) minimising ‖γ s u* − u‖² (γ = 1 without rescaling)."""
    best = min(signs, key=lambda s: float(_ray_distance(u[None], ref_u[None], s, degree)))
    if degree is None:
        return best, 1.0
    along = float(best * (u @ ref_u)) / max(float(ref_u @ ref_u), torch.finfo(u.dtype).tiny)
    return best, max(along, 0.0)


def _orbit_projection(
    u: Tensor, a: Tensor, ref_u: Tensor, ref_a: Tensor, signs: tuple[int, ...], odd: bool, degree: int | None
) -> tuple[int, float]:
    """(s, γ) minimising f(γ) = ‖γ s u* − u‖² + ‖γ^{−p} s^e a* − a‖² over the allowed flips and γ > 0.

    f′(γ) = 0 multiplied by γ^{2p+1}/2 is the polynomial
    ‖u*‖² γ^{2p+2} − ⟨s u*, u⟩ γ^{2p+1} + p ⟨s^e a*, a⟩ γ^p − p ‖a*‖² = 0.
    """
    best = (math.inf, 1, 1.0)
    for s in signs:
        tu, ta = (s * ref_u).cpu().numpy(), ((s if odd else 1) * ref_a).cpu().numpy()
        uu, aa = u.cpu().numpy(), a.cpu().numpy()
        candidates = [1.0]
        if degree is not None:
            p = degree
            coefficients = np.zeros(2 * p + 3)
            coefficients[0], coefficients[1] = tu @ tu, -(tu @ uu)
            coefficients[p + 2] = p * (ta @ aa)
            coefficients[2 * p + 2] = -p * (ta @ ta)
            roots = np.roots(coefficients) if np.any(coefficients) else np.zeros(0)
            positive = [_polish(coefficients, r.real) for r in roots if r.real > 0 and abs(r.imag) <= 1e-8 * abs(r)]
            candidates = positive or candidates
        for gamma in candidates:
            value = float(((gamma * tu - uu) ** 2).sum() + ((gamma ** -(degree or 0) * ta - aa) ** 2).sum())
            if value < best[0]:
                best = (value, s, gamma)
    return best[1], best[2]


def _polish(coefficients: np.ndarray, root: float) -> float:
    """Two Newton steps on the polynomial: np.roots (companion eigenvalues) is accurate only to ~ε·cond."""
    derivative = np.polyder(coefficients)
    for _ in range(2):
        slope = np.polyval(derivative, root)
        if slope == 0:
            break
        root = root - np.polyval(coefficients, root) / slope
    return float(root)


def _weighted_simplex(x: Tensor, weights: Tensor) -> Tensor:
    """argmin ‖α − x‖² over {α ≥ 0, Σ w_i α_i = 1} (w > 0): α = max(x − λw, 0), λ found by sorting x_i/w_i."""
    if (weights <= 0).any():
        raise ValueError(
            "with frozen output weights a reference neuron can be split only among model neurons whose output "
            "weights have its sign."
        )
    order = torch.argsort(x / weights, descending=True)
    xs, ws = x[order], weights[order]
    lam = (torch.cumsum(ws * xs, 0) - 1) / torch.cumsum(ws**2, 0)
    active = int(torch.nonzero(xs - lam * ws > 0).max())  # k = 1 is always active: x_1 − λ_1 w_1 = 1/w_1
    return (x - lam[active] * weights).clamp_min(0)


def align_reference(
    model: nn.Module,
    reference: nn.Module,
    *,
    trainable: Collection[str] | None = None,
    dtype: torch.dtype = torch.float64,
    layers: tuple[str, str, str] | None = None,
) -> Alignment:
    """Express ``reference`` (same architecture, at most as many hidden neurons) in ``model``'s gauge.

    Parameters
    ----------
    model, reference
        One-hidden-layer networks (see :func:`~torch_landscape.curvature.shallow.find_shallow`).
    trainable
        Names of the model's parameters that are free (default: those with ``requires_grad``); the
        symmetries that would change a frozen tensor are not used.
    dtype
        Computation dtype (float64 by default).
    layers
        Explicit (hidden, activation, output) module names of the model, if the search needs them.

    See :func:`align_parameters` for the costs and the projection.
    """
    try:
        net = find_shallow(model, layers)
    except ValueError as error:
        raise ValueError(
            f"alignment needs a one-hidden-layer network (Linear → activation → Linear): {error}"
        ) from None
    named = dict(model.named_parameters())
    device = net.hidden.weight.device
    own = {
        name: named[name].detach().to(device=device, dtype=dtype)
        for name in (net.parameter_name(layer, t) for layer in ("hidden", "output") for t in ("weight", "bias"))
        if name in named
    }
    trainable = {name for name, p in named.items() if p.requires_grad} if trainable is None else set(trainable)
    return align_parameters(net, own, shallow_reference(net, reference, dtype, device), trainable)
