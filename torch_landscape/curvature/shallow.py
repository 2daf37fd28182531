"""One-hidden-layer networks: finding Linear → activation → Linear in a model, and what that buys.

A shallow network computes f(x) = A σ(W x + b) + c with W ∈ R^{m×d}, A ∈ R^{q×m}. Knowing this structure
lets the tool assemble the exact Hessian far faster than P Hessian-vector products
(:func:`structured_hessian`), and it is what the symmetry, alignment and redundancy modules reason about.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..objective import Objective, preserved_rng


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
    flatten
        Whether the model flattens its inputs first (an ``nn.Flatten`` before the hidden layer): the network's
        inputs are then :meth:`features` of the model's.
    """

    hidden: nn.Linear
    activation: nn.Module
    output: nn.Linear
    hidden_name: str
    activation_name: str
    output_name: str
    kind: str
    flatten: bool = False

    def features(self, inputs: Tensor) -> Tensor:
        """The hidden layer's inputs from the model's: flattened to (n, d) where the model flattens them."""
        return inputs.flatten(1) if self.flatten and inputs.ndim > 2 else inputs

    @property
    def width(self) -> int:
        """m, the number of hidden neurons."""
        return self.hidden.out_features

    def parameter_name(self, layer: str, tensor: str) -> str:
        """Qualified parameter name, e.g. ``parameter_name("hidden", "weight")`` → ``"0.weight"``."""
        prefix = self.hidden_name if layer == "hidden" else self.output_name
        return f"{prefix}.{tensor}" if prefix else tensor


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
    flatten = bool(names and names[0] == _FLATTEN)
    names = names[1:] if flatten else names
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
    return ShallowNetwork(hidden, activation, output, names[0], names[1], names[2], kind, flatten)


def _shared_parameters(model: nn.Module, layers: dict[str, nn.Module]) -> list[str]:
    """The names of the layers' parameters that the model also holds elsewhere (tied weights)."""
    counts = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    return [
        f"{name}.{tensor}" if name else tensor
        for name, layer in layers.items()
        for tensor, parameter in layer.named_parameters(recurse=False)
        if counts[id(parameter)] > 1
    ]


#: Marks, as the first name :func:`_search` returns, a model that flattens its inputs before the hidden layer.
_FLATTEN = "<flatten>"


def _layers(sequence: nn.Sequential, prefix: str) -> list[tuple[str, nn.Module]]:
    """The layers of a Sequential in order, nested Sequentials opened, without Dropout (the identity in eval
    mode, where the objective is evaluated)."""
    found = []
    for name, child in sequence.named_children():
        if isinstance(child, nn.Sequential):
            found += _layers(child, f"{prefix}{name}.")
        elif not isinstance(child, nn.modules.dropout._DropoutNd):
            found.append((prefix + name, child))
    return found


def _search(model: nn.Module, modules: dict[str, nn.Module]) -> list[str]:
    candidates = []
    for name, module in modules.items():
        if isinstance(module, nn.Sequential) and not _enclosing_sequentials(modules, name):  # searched with those
            layers = _layers(module, f"{name}." if name else "")
            flatten = bool(layers) and isinstance(layers[0][1], nn.Flatten) and layers[0][1].start_dim == 1
            layers = layers[1:] if flatten else layers
            kinds = [type(child) for _, child in layers]
            if len(layers) == 3 and kinds[0] is nn.Linear and kinds[2] is nn.Linear:
                candidates.append(([_FLATTEN] if flatten else []) + [layer for layer, _ in layers])
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


def _enclosing_sequentials(modules: dict[str, nn.Module], name: str) -> list[nn.Module]:
    """The Sequentials that hold the module ``name`` (their layers are searched with it)."""
    parts = name.split(".") if name else []
    outer = [".".join(parts[:i]) for i in range(len(parts))]
    return [modules[prefix] for prefix in outer if isinstance(modules.get(prefix), nn.Sequential)]


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


def network_derivatives(net: ShallowNetwork, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """σ(z), σ′(z), σ″(z) of the network's activation: in closed form for tanh, sigmoid, (leaky) ReLU,
    identity and z² (a few elementwise passes), by :func:`activation_derivatives` for the others.

    tanh′ = 1 − tanh², tanh″ = −2 tanh·tanh′; sigmoid′ = σ(1 − σ), sigmoid″ = σ′(1 − 2σ); ReLU′ = [z > 0]
    and leaky ReLU′ = [z > 0] + α[z ≤ 0] (the subgradients autograd takes at 0), second derivatives 0.
    """
    z = z.detach()
    if net.kind == "tanh":
        value = torch.tanh(z)
        first = 1 - value * value
        return value, first, -2 * value * first
    if net.kind == "sigmoid":
        value = torch.sigmoid(z)
        first = value * (1 - value)
        return value, first, first * (1 - 2 * value)
    if net.kind in ("relu", "leaky_relu"):
        slope = getattr(net.activation, "negative_slope", 0.0)
        positive = z > 0
        value = torch.where(positive, z, slope * z)
        return value, torch.where(positive, torch.ones_like(z), torch.full_like(z, slope)), torch.zeros_like(z)
    if net.kind == "identity":
        return z, torch.ones_like(z), torch.zeros_like(z)
    if net.kind == "square":
        return z * z, 2 * z, torch.full_like(z, 2.0)
    return activation_derivatives(activation_function(net), z)


def shallow_layers(objective: Objective) -> tuple[ShallowNetwork, list[str]] | None:
    """The model's Linear → σ → Linear layers and their parameter names (hidden weight and bias, output
    weight and bias, as present), if θ lies within them.

    A structural test only (no forward pass): :func:`verified_forward` also checks the model's output.
    """
    try:
        net = find_shallow(objective.model)
    except ValueError:
        return None
    layout = [
        net.parameter_name(layer, tensor)
        for layer, module in (("hidden", net.hidden), ("output", net.output))
        for tensor in ("weight", "bias")
        if getattr(module, tensor) is not None
    ]
    return (net, layout) if set(objective.names) <= set(layout) else None


@dataclass(frozen=True)
class VerifiedForward:
    """A one-hidden-layer network's forward at θ, checked against the model's own on every batch.

    Attributes
    ----------
    net : ShallowNetwork
    parameters : dict[str, Tensor]
        Every parameter of the two layers at θ (trainable ones as views of θ, frozen ones as constants).
    activations : tuple[tuple[Tensor, Tensor, Tensor], ...]
        Per batch, σ(z), σ′(z) and σ″(z) at z = W x + b (:func:`network_derivatives`).
    outputs : tuple[Tensor, ...]
        Per batch, the model's outputs f_θ(x).
    """

    net: ShallowNetwork
    parameters: dict[str, Tensor]
    activations: tuple[tuple[Tensor, Tensor, Tensor], ...]
    outputs: tuple[Tensor, ...]


def verified_forward(objective: Objective) -> VerifiedForward | None:
    """The shallow structure of the objective's model at θ, if L(θ) is exactly that of output(σ(hidden(x))).

    One forward pass of the model per batch, computed once per objective and shared (its activation
    derivatives and outputs serve the structured Hessian, diagonal, gradient and products). None when the model is not
    a recognised one-hidden-layer network, when θ holds parameters outside it, or when the model's forward
    computes something else on the data.
    """
    return objective.memo("shallow forward", lambda: _verified_forward(objective))


def _verified_forward(objective: Objective) -> VerifiedForward | None:
    found = shallow_layers(objective)
    if found is None:
        return None
    net, layout = found
    parameters = {**objective.constants, **objective.unflatten(objective.theta)}
    parameters = {name: parameters[name] for name in layout}
    tolerance = 1e3 * torch.finfo(objective.dtype).eps
    weight = parameters[net.parameter_name("hidden", "weight")]
    bias = parameters.get(net.parameter_name("hidden", "bias"))
    activations, outputs = [], []
    with torch.no_grad():
        for x, _ in objective.batches:
            x = net.features(x)
            if x.ndim != 2:
                return None
            model_outputs = objective.outputs(objective.theta, x)
            derivatives = network_derivatives(net, torch.nn.functional.linear(x, weight, bias))
            expected = torch.nn.functional.linear(
                derivatives[0],
                parameters[net.parameter_name("output", "weight")],
                parameters.get(net.parameter_name("output", "bias")),
            )
            scale = float(model_outputs.abs().max())
            if not math.isfinite(scale):
                return None  # nothing holds at a non-finite θ: the generic path names the failure
            if model_outputs.shape != expected.shape or not torch.allclose(
                model_outputs, expected, rtol=tolerance, atol=tolerance * scale
            ):
                return None
            activations.append(derivatives)
            outputs.append(model_outputs)
    return VerifiedForward(net, parameters, tuple(activations), tuple(outputs))


def shallow_parameters(objective: Objective) -> tuple[ShallowNetwork, dict[str, Tensor]] | None:
    """The model's Linear → σ → Linear structure and all its parameters at θ, if L(θ) is exactly that
    (:func:`verified_forward`, computed once per objective); None otherwise."""
    found = verified_forward(objective)
    return None if found is None else (found.net, found.parameters)


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
        with preserved_rng([old.weight.device]):  # nn.Linear draws its initial weights; they are overwritten
            layer = nn.Linear(
                weight.shape[1],
                weight.shape[0],
                bias=bias is not None,
                device=old.weight.device,
                dtype=old.weight.dtype,
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
