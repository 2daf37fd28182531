"""One-hidden-layer networks: finding Linear → activation → Linear in a model, and what that buys.

A shallow network computes f(x) = A σ(W x + b) + c with W ∈ R^{m×d}, A ∈ R^{q×m}. Knowing this structure
lets the tool assemble the exact Hessian far faster than P Hessian-vector products
(:func:`structured_hessian`), and it is what the symmetry, alignment and redundancy modules reason about.
"""

from __future__ import annotations

import copy
import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..objective import Objective


class Square(nn.Module):
    """σ(z) = z², the quadratic activation of Soltanolkotabi–Javanmard–Lee."""

    def forward(self, z: Tensor) -> Tensor:
        return z * z


# name, activation class (docs/theory.md §4.2): "odd" σ(−z) = κ − σ(z); "linear_odd_part" σ(z) − σ(−z) = αz
# (ReLU-type ones also positively homogeneous); "quadratic"; "linear".
_ACTIVATIONS: dict[type, str] = {
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.Softplus: "softplus",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Identity: "identity",
    Square: "square",
}

SUPPORTED = ", ".join(cls.__name__ for cls in _ACTIVATIONS)


@dataclass(frozen=True)
class ShallowNetwork:
    """Where the shallow structure f(x) = A σ(W x + b) + c lives inside a model.

    Attributes
    ----------
    hidden, activation, output
        The modules: ``nn.Linear`` (W, b), the elementwise activation, ``nn.Linear`` (A, c).
    hidden_name, activation_name, output_name
        Their qualified names in ``model.named_modules()`` ("" for the model itself).
    kind
        The activation's name: one of tanh, sigmoid, relu, leaky_relu, softplus, gelu, silu, identity, square.
    """

    hidden: nn.Linear
    activation: nn.Module
    output: nn.Linear
    hidden_name: str
    activation_name: str
    output_name: str
    kind: str

    @property
    def width(self) -> int:
        """m, the number of hidden neurons."""
        return self.hidden.out_features

    def parameter_name(self, layer: str, tensor: str) -> str:
        """Qualified parameter name, e.g. ``parameter_name("hidden", "weight")`` → ``"0.weight"``."""
        prefix = self.hidden_name if layer == "hidden" else self.output_name
        return f"{prefix}.{tensor}" if prefix else tensor

    def forward(self, parameters: dict[str, Tensor], inputs: Tensor) -> Tensor:
        """f(x) = A σ(W x + b) + c with the parameters taken from a name → tensor dict."""
        hidden = torch.nn.functional.linear(
            inputs,
            parameters[self.parameter_name("hidden", "weight")],
            parameters.get(self.parameter_name("hidden", "bias")),
        )
        return torch.nn.functional.linear(
            activation_function(self)(hidden),
            parameters[self.parameter_name("output", "weight")],
            parameters.get(self.parameter_name("output", "bias")),
        )


def _not_shallow(model: nn.Module, detail: str) -> ValueError:
    return ValueError(
        f"{type(model).__name__} is not a one-hidden-layer network that torch_landscape recognises: {detail}. "
        f"Supported: nn.Sequential(nn.Linear, activation, nn.Linear), or a module holding exactly one such "
        f"sequence, with activation one of {SUPPORTED}. For other models point the tool at the layers with "
        "layers=(hidden_name, activation_name, output_name), names as in model.named_modules()."
    )


def find_shallow(model: nn.Module, layers: tuple[str, str, str] | None = None) -> ShallowNetwork:
    """Find the Linear → activation → Linear structure of a one-hidden-layer network.

    Parameters
    ----------
    model
        ``nn.Sequential(Linear, act, Linear)``, or any module with exactly one such ``nn.Sequential``
        inside, or any module whose only layers are two ``nn.Linear`` and one supported activation.
    layers
        Explicit (hidden, activation, output) module names, for models the search does not understand.

    Raises
    ------
    ValueError
        Naming what was found and what is supported.
    """
    modules = dict(model.named_modules())
    if layers is not None:
        missing = [name for name in layers if name not in modules]
        if missing:
            raise ValueError(f"layers names {missing} are not modules of the model; choose from {list(modules)}.")
        names = list(layers)
    else:
        names = _search(model, modules)
    hidden, activation, output = (modules[name] for name in names)
    if not (isinstance(hidden, nn.Linear) and isinstance(output, nn.Linear)):
        raise _not_shallow(model, f"layers {names[0]!r} and {names[2]!r} must both be nn.Linear")
    if hidden.out_features != output.in_features:
        raise _not_shallow(
            model, f"hidden layer has {hidden.out_features} outputs but the output layer takes {output.in_features}"
        )
    kind = _ACTIVATIONS.get(type(activation))
    if kind is None:
        raise _not_shallow(model, f"activation {type(activation).__name__} is not supported")
    tied = _shared_parameters(model, {names[0]: hidden, names[2]: output})
    if tied:
        # θ holds a shared tensor once (as model.parameters() does); the structure's layout, its
        # symmetries and its neuron merges all assume separate ones. The Hessian takes the autograd path.
        raise _not_shallow(model, f"its layers share parameters with other modules (tied weights: {', '.join(tied)})")
    return ShallowNetwork(hidden, activation, output, names[0], names[1], names[2], kind)


def _shared_parameters(model: nn.Module, layers: dict[str, nn.Module]) -> list[str]:
    """The names of the layers' parameters that the model also holds elsewhere (tied weights)."""
    counts = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    return [
        f"{name}.{tensor}" if name else tensor
        for name, layer in layers.items()
        for tensor, parameter in layer.named_parameters(recurse=False)
        if counts[id(parameter)] > 1
    ]


def _search(model: nn.Module, modules: dict[str, nn.Module]) -> list[str]:
    candidates = []
    for name, module in modules.items():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            kinds = [type(child) for _, child in children]
            if len(children) == 3 and kinds[0] is nn.Linear and kinds[2] is nn.Linear:
                prefix = f"{name}." if name else ""
                candidates.append([prefix + child_name for child_name, _ in children])
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise _not_shallow(model, f"it holds {len(candidates)} Linear-activation-Linear sequences")
    linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
    activations = [name for name, m in modules.items() if type(m) in _ACTIVATIONS and not isinstance(m, nn.Identity)]
    # A loss module held by the model (a LightningModule's self.loss_fn) takes no part in its forward.
    layered = [
        name
        for name, m in modules.items()
        if not list(m.children()) and m.__class__.__name__ != "Identity" and not isinstance(m, nn.modules.loss._Loss)
    ]
    if len(linears) == 2 and len(activations) == 1 and len(layered) == 3:
        first, second = linears
        if modules[first].out_features != modules[second].in_features:
            first, second = second, first
        return [first, activations[0], second]
    convolutions = [type(m).__name__ for m in modules.values() if isinstance(m, nn.modules.conv._ConvNd)]
    if convolutions:
        raise _not_shallow(
            model, f"it has convolutional layers ({', '.join(convolutions)}), which are not fully connected"
        )
    if len(linears) != 2:
        raise _not_shallow(model, f"it has {len(linears)} nn.Linear layers, not 2")
    found = [type(modules[name]).__name__ for name in layered if name not in linears]
    raise _not_shallow(model, f"between its two Linear layers it has {found or 'no activation module'}")


def activation_derivatives(activation: Callable[[Tensor], Tensor], z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """σ(z), σ′(z), σ″(z) elementwise, by automatic differentiation of σ (see :func:`activation_function`)."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        value = activation(z)
        (first,) = torch.autograd.grad(value.sum(), z, create_graph=True)
        if first.requires_grad:
            (second,) = torch.autograd.grad(first.sum(), z, allow_unused=True, materialize_grads=True)
        else:
            second = torch.zeros_like(z)
    return value.detach(), first.detach(), second.detach()


def _output_curvature(
    objective: Objective, outputs: Tensor, targets: Tensor, weight: float
) -> tuple[Tensor, Tensor] | None:
    """G = ∂ℓ/∂F (n×q) and the per-sample q×q blocks of ∂²ℓ/∂F² for ℓ = weight·loss_fn(F, Y).

    Returns None when the loss is not a sum of per-sample terms (its output Hessian not block diagonal),
    which a random-sign probe detects.
    """
    outputs = outputs.detach().requires_grad_(True)
    n, q = outputs.shape
    with torch.enable_grad():
        loss = weight * objective.loss_fn(outputs, targets)
        (gradient,) = torch.autograd.grad(loss, outputs, create_graph=True)
        if not gradient.requires_grad:  # a loss linear in the outputs
            return gradient.detach(), outputs.new_zeros(n, q, q)
        # Backward passes of scalars (column sums), not of tensors with grad_outputs: the latter makes torch
        # import sympy on first use, 0.3 s of a short run's budget; per-sample terms make the sums exact.
        blocks = torch.stack(
            [
                torch.autograd.grad(
                    gradient[:, j].sum(), outputs, retain_graph=True, allow_unused=True, materialize_grads=True
                )[0]
                for j in range(q)
            ],
            dim=2,
        )
        signs = torch.randint(0, 2, (n, 1), generator=torch.Generator().manual_seed(0)).to(outputs) * 2 - 1
        probe = torch.autograd.grad((gradient * signs).sum(), outputs, allow_unused=True, materialize_grads=True)[0]
    expected = signs * blocks.sum(dim=2)
    scale = blocks.abs().max().clamp_min(torch.finfo(outputs.dtype).tiny)
    if (probe - expected).abs().max() > 1e3 * torch.finfo(outputs.dtype).eps * scale * q:
        return None
    return gradient.detach(), blocks.detach()


@dataclass(frozen=True)
class _Terms:
    """Per-batch pieces of a shallow network's objective: features, activation derivatives, loss curvature."""

    x_tilde: Tensor  # (n, d[+1]) inputs, with a column of ones when the hidden layer has a bias
    s: Tensor  # σ(z), (n, m)
    s1: Tensor  # σ′(z)
    s2: Tensor  # σ″(z)
    G: Tensor  # ∂ℓ/∂f, (n, q)
    Hout: Tensor  # per-sample ∂²ℓ/∂f², (n, q, q)


@dataclass(frozen=True)
class _Layout:
    """The canonical flat layout [W (m·d), b (m), A (q·m), c (q)] and how θ maps into it."""

    A: Tensor
    u_index: Tensor  # (m, d[+1]) canonical positions of u_i = (w_i, b_i)
    a_index: Tensor  # (q, m) canonical positions of A_ki
    c_index: Tensor | None  # (q,) positions of c, if present
    size: int
    select: Tensor  # canonical positions of θ's coordinates, in θ order
    terms: list


def shallow_layers(objective: Objective) -> tuple[ShallowNetwork, set[str]] | None:
    """The model's Linear → σ → Linear layers and their parameter names, if θ lies within them.

    A structural test only (no forward pass): :func:`shallow_parameters` also checks the model's output.
    """
    try:
        net = find_shallow(objective.model)
    except ValueError:
        return None
    layout = {
        net.parameter_name(layer, tensor)
        for layer, module in (("hidden", net.hidden), ("output", net.output))
        for tensor in ("weight", "bias")
        if getattr(module, tensor) is not None
    }
    return (net, layout) if set(objective.names) <= layout else None


def shallow_parameters(objective: Objective) -> tuple[ShallowNetwork, dict[str, Tensor]] | None:
    """The model's Linear → σ → Linear structure and all its parameters at θ, if L(θ) is exactly that.

    None when the model is not a recognised one-hidden-layer network, when θ holds parameters outside
    it, or when the model's forward computes something other than output(σ(hidden(x))) on the data.
    """
    found = shallow_layers(objective)
    if found is None:
        return None
    net, layout = found
    parameters = {**objective.constants, **objective.unflatten(objective.theta)}
    parameters = {name: parameters[name] for name in layout}
    tolerance = 1e3 * torch.finfo(objective.dtype).eps
    with torch.no_grad():
        for x, _ in objective.batches:
            if x.ndim != 2:
                return None
            outputs = objective.outputs(objective.theta, x)
            expected = net.forward(parameters, x)
            if outputs.shape != expected.shape or not torch.allclose(
                outputs, expected, rtol=tolerance, atol=tolerance * float(outputs.abs().max())
            ):
                return None
    return net, parameters


def _shallow_layout(objective: Objective) -> _Layout | None:
    layout = _rank_layout(objective)
    if objective.process_group is None or objective.all_agree(layout is not None):
        return layout
    return None  # another rank's shard showed that the structure does not hold


def _rank_layout(objective: Objective) -> _Layout | None:
    found = shallow_parameters(objective)
    if found is None:
        return None
    net, parameters = found
    names = [
        net.parameter_name(layer, tensor)
        for layer, module in (("hidden", net.hidden), ("output", net.output))
        for tensor in ("weight", "bias")
        if getattr(module, tensor) is not None
    ]
    hidden_w, hidden_b = net.parameter_name("hidden", "weight"), net.parameter_name("hidden", "bias")
    output_w, output_b = net.parameter_name("output", "weight"), net.parameter_name("output", "bias")
    W, A = parameters[hidden_w], parameters[output_w]
    b = parameters.get(hidden_b)
    (m, d), q = W.shape, A.shape[0]
    arange = functools.partial(torch.arange, device=objective.device)
    offsets, size = {}, 0
    for name in names:
        offsets[name] = size
        size += parameters[name].numel()
    u_index = offsets[hidden_w] + arange(m * d).view(m, d)
    if b is not None:
        u_index = torch.cat([u_index, offsets[hidden_b] + arange(m)[:, None]], dim=1)
    terms = []
    for (x, y), weight in zip(objective.batches, objective.weights, strict=True):
        curvature = _output_curvature(objective, objective.outputs(objective.theta, x), y, weight)
        if curvature is None:
            return None
        s, s1, s2 = activation_derivatives(activation_function(net), torch.nn.functional.linear(x, W, b))
        x_tilde = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1) if b is not None else x
        terms.append(_Terms(x_tilde, s, s1, s2, *curvature))
    return _Layout(
        A=A,
        u_index=u_index,
        a_index=offsets[output_w] + arange(q * m).view(q, m),
        c_index=offsets[output_b] + arange(q) if output_b in offsets else None,
        size=size,
        select=torch.cat([offsets[name] + arange(parameters[name].numel()) for name in objective.names]),
        terms=terms,
    )


def structured_hessian(objective: Objective) -> Tensor | None:
    """The exact Hessian of a one-hidden-layer network's objective, assembled from its structure.

        H = Σ_j J_jᵀ (∂²ℓ/∂f²)_j J_j + Σ_j Σ_k (∂ℓ/∂f_k)_j ∇²f_k(x_j),

    with per-sample Jacobians J_j in closed form and the residual term living in per-neuron blocks:
    ∂²f_k/∂u_i∂u_i = A_ki σ″(z_i) x̃x̃ᵀ and ∂²f_k/∂A_ki∂u_i = σ′(z_i) x̃ (u_i = (w_i, b_i), x̃ = (x, 1)).
    Cost O(n q P²) for the Gauss–Newton product instead of P backward passes.

    Returns None when the objective is not that of a recognised shallow network (θ containing other
    parameters, a forward that is not output(σ(hidden(x))), or a loss that is not a per-sample mean).
    With a process group, this rank's share of H (the Hessian operator sums the shares).
    """
    layout = _shallow_layout(objective)
    if layout is None:
        return None
    A, u_index, a_index, size = layout.A, layout.u_index, layout.a_index, layout.size
    q, m = A.shape
    q_range = torch.arange(q, device=A.device)
    hessian = A.new_zeros(size, size)
    for t in layout.terms:
        n = t.x_tilde.shape[0]
        J = A.new_zeros(n, q, size)  # per-sample Jacobian in the canonical layout
        du = (A[None, :, :] * t.s1[:, None, :])[..., None] * t.x_tilde[:, None, None, :]  # (n, q, m, d+1)
        J[:, :, u_index.reshape(-1)] = du.reshape(n, q, -1)
        J[:, q_range[:, None], a_index] = t.s[:, None, :].expand(n, q, m)
        if layout.c_index is not None:
            J[:, q_range, layout.c_index] = 1.0
        HJ = torch.einsum("nkl,nlp->nkp", t.Hout, J)
        hessian += J.reshape(n * q, size).T @ HJ.reshape(n * q, size)
        # Residual term: per-neuron (u_i, u_i) blocks and (A_ki, u_i) cross terms.
        beta = (t.G @ A) * t.s2  # (n, m)
        uu = torch.einsum("ni,np,nr->ipr", beta, t.x_tilde, t.x_tilde)
        hessian.index_put_((u_index[:, :, None], u_index[:, None, :]), uu, accumulate=True)
        au = torch.einsum("nk,ni,np->kip", t.G, t.s1, t.x_tilde)  # (q, m, d+1)
        rows = a_index[:, :, None].expand_as(au)
        cols = u_index[None, :, :].expand_as(au)
        hessian.index_put_((rows, cols), au, accumulate=True)
        hessian.index_put_((cols, rows), au, accumulate=True)
    return hessian[layout.select][:, layout.select]


def structured_diagonal(objective: Objective) -> Tensor | None:
    """The exact Hessian diagonal of a one-hidden-layer network's objective, in O(n·m·(d + q²)).

        H_{u_ip,u_ip} = Σ_j [σ′(z_ji)² x̃_jp² A_:iᵀ (∂²ℓ/∂f²)_j A_:i + (∂ℓ/∂f)_j·A_:i σ″(z_ji) x̃_jp²],
        H_{A_ki,A_ki} = Σ_j (∂²ℓ/∂f²)_j,kk σ(z_ji)²,      H_{c_k,c_k} = Σ_j (∂²ℓ/∂f²)_j,kk.

    Returns None where :func:`structured_hessian` would. With a process group, summed over the ranks.
    """
    layout = _shallow_layout(objective)
    if layout is None:
        return None
    A = layout.A
    diagonal = A.new_zeros(layout.size)
    for t in layout.terms:
        curvature = torch.einsum("nkl,ki,li->ni", t.Hout, A, A) * t.s1**2 + (t.G @ A) * t.s2
        diagonal[layout.u_index] += curvature.T @ t.x_tilde**2
        output_curvature = torch.diagonal(t.Hout, dim1=1, dim2=2)  # (n, q)
        diagonal[layout.a_index] += output_curvature.T @ t.s**2
        if layout.c_index is not None:
            diagonal[layout.c_index] += output_curvature.sum(dim=0)
    return objective.all_reduce(diagonal[layout.select])  # with a process group: the ranks' shares summed


def structured_products(objective: Objective) -> Callable[[Tensor], Tensor] | None:
    """A function V ↦ H V for a one-hidden-layer network, from its structure (no autograd).

    With ż = X̃ V_u (the change of pre-activations), ḟ = A(σ′ ∘ ż) + V_A σ + V_c and r = (∂²ℓ/∂f²) ḟ:

        (HV)_u = X̃ᵀ [σ′ ∘ (r A + G V_A) + ((G A) ∘ σ″) ∘ ż],
        (HV)_A = rᵀ σ + Gᵀ(σ′ ∘ ż),      (HV)_c = Σ_j r_j.

    Two (n × (d+1)) · ((d+1) × m·k) matrix products per block of k vectors, so a block costs about
    what k gradients cost in BLAS-3 work, without the autograd graph. Returns None where
    :func:`structured_hessian` would. With a process group, products with this rank's share of H.
    """
    layout = _shallow_layout(objective)
    if layout is None:
        return None
    A, u_index, a_index, c_index = layout.A, layout.u_index, layout.a_index, layout.c_index
    select = layout.select
    budget = 2**26  # floats per intermediate (n, m, k) block: 512 MiB in float64

    def products(block: Tensor) -> Tensor:
        canonical = block.new_zeros(layout.size, block.shape[1])
        canonical[select] = block
        result = torch.zeros_like(canonical)
        for t in layout.terms:
            n, m = t.s.shape
            step = max(1, budget // (n * m))
            beta = (t.G @ A) * t.s2
            for start in range(0, block.shape[1], step):
                columns = slice(start, start + step)
                v = canonical[:, columns]
                v_u, v_a = v[u_index], v[a_index]  # (m, d+1, k), (q, m, k)
                z_dot = torch.einsum("np,mpk->nmk", t.x_tilde, v_u)
                f_dot = torch.einsum("qm,nmk->nqk", A, t.s1[:, :, None] * z_dot) + torch.einsum("qmk,nm->nqk", v_a, t.s)
                if c_index is not None:
                    f_dot = f_dot + v[c_index][None]
                r = torch.einsum("nql,nlk->nqk", t.Hout, f_dot)
                coefficient = (
                    t.s1[:, :, None] * (torch.einsum("qm,nqk->nmk", A, r) + torch.einsum("nq,qmk->nmk", t.G, v_a))
                    + beta[:, :, None] * z_dot
                )
                result[u_index, columns] += torch.einsum("np,nmk->mpk", t.x_tilde, coefficient)
                result[a_index, columns] += torch.einsum("nm,nqk->qmk", t.s, r) + torch.einsum(
                    "nq,nmk->qmk", t.G, t.s1[:, :, None] * z_dot
                )
                if c_index is not None:
                    result[c_index, columns] += r.sum(dim=0)
        return result[select]

    return products


def shallow_weights(
    net: ShallowNetwork, dtype: torch.dtype | None = torch.float64
) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
    """Detached copies (W, b, A, c) of f(x) = A σ(W x + b) + c, in ``dtype`` (None: as stored).

    W is m×d, b has m entries, A is q×m, c has q entries; b and c are None where the layer has no bias.
    """

    def clone(tensor: Tensor) -> Tensor:
        return tensor.detach().to(dtype=dtype or tensor.dtype, copy=True)

    b, c = net.hidden.bias, net.output.bias
    return (
        clone(net.hidden.weight),
        None if b is None else clone(b),
        clone(net.output.weight),
        None if c is None else clone(c),
    )


def activation_function(net: ShallowNetwork) -> Callable[[Tensor], Tensor]:
    """σ as a pure function of a tensor, equal to the activation module's forward.

    Unlike calling the module it runs no hooks and never works in place (``nn.ReLU(inplace=True)``).
    """
    act = net.activation
    # find_shallow sets the kind from the activation's exact class, so these checks pick the same function as
    # the kind; they also tell the type checker which module's parameters (slope, beta, ...) are read.
    if isinstance(act, nn.LeakyReLU):
        return lambda z: torch.nn.functional.leaky_relu(z, act.negative_slope)
    if isinstance(act, nn.Softplus):
        return lambda z: torch.nn.functional.softplus(z, act.beta, act.threshold)
    if isinstance(act, nn.GELU):
        return lambda z: torch.nn.functional.gelu(z, approximate=act.approximate)
    functions: dict[str, Callable[[Tensor], Tensor]] = {
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "relu": torch.relu,
        "silu": torch.nn.functional.silu,
        "identity": lambda z: z,
        "square": lambda z: z * z,
    }
    return functions[net.kind]


def resized_copy(
    model: nn.Module, net: ShallowNetwork, W: Tensor, b: Tensor | None, A: Tensor, c: Tensor | None
) -> nn.Module:
    """A deep copy of ``model`` whose hidden and output layers are new ``nn.Linear`` holding W, b, A, c.

    The width is W.shape[0]; dtype, device and ``requires_grad`` are those of the original layers, and the
    rest of the model (its class, other modules, forward) is copied unchanged. ``model`` is not touched.
    """
    if (b is None) != (net.hidden.bias is None) or (c is None) != (net.output.bias is None):
        raise ValueError("b and c must be given exactly where the original layers have biases.")
    resized = copy.deepcopy(model)
    for name, old, weight, bias in (
        (net.hidden_name, net.hidden, W, b),
        (net.output_name, net.output, A, c),
    ):
        layer = nn.Linear(
            weight.shape[1], weight.shape[0], bias=bias is not None, device=old.weight.device, dtype=old.weight.dtype
        )
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        layer.weight.requires_grad_(old.weight.requires_grad)
        if bias is not None:
            layer.bias.requires_grad_(old.bias.requires_grad)
        layer.train(old.training)
        parent, _, leaf = name.rpartition(".")
        setattr(resized.get_submodule(parent), leaf, layer)
    return resized
