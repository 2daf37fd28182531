"""The population objective of a Gaussian-input ReLU teacher–student problem, usable wherever an Objective is.

:class:`GaussianReLUObjective` is an :class:`~torch_landscape.objective.Objective` whose L(θ) is the closed
form of :func:`~torch_landscape.population.kernel.gaussian_relu_loss` (docs/theory.md §9) instead of a mean
over samples: the Hessian operator, eigenvalues, critical-point classification, PL ratio and one-point
convexity take it as they take any objective, and autograd gives its exact gradient and Hessian.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from ..curvature.shallow import ShallowNetwork, find_shallow
from ..objective import Objective
from ..settings import check_dtype, check_params
from .kernel import gaussian_relu_loss


def relu_network(weight: Tensor, output: Tensor | None = None, *, train_output: bool = False) -> nn.Sequential:
    """x ↦ Σ_i a_i relu(w_i·x) as ``Linear(d, m, bias=False) → ReLU → Linear(m, 1, bias=False)`` in float64.

    Parameters
    ----------
    weight
        W (m × d), the rows w_i.
    output
        a (m,); default all ones (the Safran–Shamir / Safran–Yehudai–Shamir setting).
    train_output
        Whether a is trainable (part of θ); by default it is frozen.
    """
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError(
            f"weight must be an m × d tensor (rows w_i), got {type(weight).__name__} {getattr(weight, 'shape', '')}."
        )
    m, d = weight.shape
    hidden, last = nn.Linear(d, m, bias=False), nn.Linear(m, 1, bias=False)
    net = nn.Sequential(hidden, nn.ReLU(), last).double()
    with torch.no_grad():
        hidden.weight.copy_(weight)
        last.weight.copy_(torch.ones(1, m) if output is None else torch.as_tensor(output).reshape(1, m))
    last.weight.requires_grad_(train_output)
    return net


def _no_samples(outputs: Tensor, targets: Tensor) -> Tensor:
    raise TypeError(
        "a population objective has no per-sample loss: L(θ) is the closed-form expectation over x ~ N(0, I) "
        "(GaussianReLUObjective.loss)."
    )


def _relu_layers(model: nn.Module, name: str) -> ShallowNetwork:
    """The model's Linear → ReLU → Linear layers, refused with the fix unless they are x ↦ Σ_i a_i relu(w_i·x)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be an nn.Module (e.g. relu_network(W)) or, for the teacher, an m × d tensor.")
    net = find_shallow(model)
    problems = [
        text
        for text, bad in (
            (f"activation {net.kind}, not relu", net.kind != "relu"),
            ("a hidden bias", net.hidden.bias is not None),
            ("an output bias", net.output.bias is not None),
            (f"{net.output.out_features} outputs, not 1", net.output.out_features != 1),
        )
        if bad
    ]
    if problems:
        raise ValueError(
            f"{name} has {', '.join(problems)}; the Gaussian ReLU population loss is for x ↦ Σ_i a_i relu(w_i·x) "
            "without biases: build it with torch_landscape.population.relu_network(W)."
        )
    return net


class GaussianReLUObjective(Objective):
    """L(θ) = ½ E_{x~N(0, I_d)} (Σ_i a_i relu(w_i·x) − Σ_j b_j relu(v_j·x))², in closed form (docs/theory.md §9).

    θ is the student's trainable parameters in ``named_parameters()`` order, as for :class:`Objective`: its
    input weights W, and its output weights a only if they require grad (frozen at 1 they are the
    Safran–Shamir / Safran–Yehudai–Shamir setting). L is the population loss, not a sample mean: there
    are no batches, and the one-hidden-layer shortcuts that sum over samples (structured Hessian, exact
    trace) step aside for autograd of the closed form, which is exact wherever L is twice
    differentiable — everywhere except at a neuron with w_i = 0 and a_i ≠ 0 (docs/theory.md §9.2).

    Parameters
    ----------
    model
        The student, ``Linear(d, m, bias=False) → ReLU → Linear(m, 1, bias=False)`` (see :func:`relu_network`).
        It is read, never modified.
    teacher
        V (k × d, rows v_j), or a teacher network of the same form as the student (then its output weights
        are b).
    teacher_output
        b (k,) when ``teacher`` is a tensor; default all ones.
    params
        Names of the parameters that make up θ (default: all with ``requires_grad``).
    dtype
        Default float64.

    Notes
    -----
    Data-based tools (neuron redundancy, the nullity cross-check, loss slices, LandscapeProbe) need
    samples and do not apply.
    """

    # L is a closed-form expectation, not a mean over ``batches`` (curvature/shallow.py reads this).
    sample_mean = False

    def __init__(
        self,
        model: nn.Module,
        teacher: nn.Module | Tensor,
        teacher_output: Tensor | None = None,
        *,
        params: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        check_dtype(dtype)
        net = _relu_layers(model, "model")
        if isinstance(teacher, Tensor):
            if teacher.ndim != 2:
                raise ValueError(f"teacher must be a k × d tensor (rows v_j), got shape {tuple(teacher.shape)}.")
            teacher_weight = teacher
            teacher_b = torch.ones(teacher.shape[0]) if teacher_output is None else torch.as_tensor(teacher_output)
        else:
            if teacher_output is not None:
                raise ValueError(
                    "teacher_output is only for a tensor teacher; a teacher network has its own output weights."
                )
            layers = _relu_layers(teacher, "teacher")
            teacher_weight, teacher_b = layers.hidden.weight, layers.output.weight
        if teacher_weight.shape[1] != net.hidden.in_features:
            raise ValueError(
                f"the teacher's input dimension is {teacher_weight.shape[1]} but the student's is "
                f"{net.hidden.in_features}; both act on the same x ∈ R^d."
            )
        if teacher_b.numel() != teacher_weight.shape[0]:
            raise ValueError(
                f"teacher_output has {teacher_b.numel()} entries for {teacher_weight.shape[0]} teacher neurons."
            )
        named = dict(model.named_parameters())
        names = (
            [name for name, p in named.items() if p.requires_grad]
            if params is None
            else list(check_params(params) or [])
        )
        unknown = [name for name in names if name not in named]
        if unknown or not names:
            raise ValueError(f"params must name trainable parameters of the model among {list(named)}, got {names}.")
        order = {name: i for i, name in enumerate(named)}
        names.sort(key=order.__getitem__)
        self.model = model
        self.loss_fn = _no_samples
        self.device = net.hidden.weight.device
        self.dtype = dtype
        self.names = names
        self.shapes = [named[name].shape for name in names]
        self.numels = [named[name].numel() for name in names]
        self.theta = torch.cat([named[name].detach().reshape(-1) for name in names]).to(dtype).clone()
        self.constants = {name: p.detach().to(dtype).clone() for name, p in named.items() if name not in set(names)}
        self.batches = []
        self.weights = []
        self.num_samples = 0
        self.process_group = None
        self.data_name = "the population x ~ N(0, I)"
        self.teacher = teacher_weight.detach().to(device=self.device, dtype=dtype).clone()
        self.teacher_output = teacher_b.detach().reshape(-1).to(device=self.device, dtype=dtype).clone()
        self._hidden = net.parameter_name("hidden", "weight")
        self._output = net.parameter_name("output", "weight")
        self.raise_non_finite()

    def student(self, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(W, a) at θ (default: the current θ): the student's input weights (m × d) and output weights (m,)."""
        parameters = {**self.constants, **self.unflatten(self.theta if theta is None else theta)}
        return parameters[self._hidden], parameters[self._output].reshape(-1)

    def batch_losses(self, theta: Tensor) -> Iterator[Tensor]:
        """The one term of L: the closed-form population loss at θ."""
        yield gaussian_relu_loss(*self.student(theta), self.teacher, self.teacher_output)
