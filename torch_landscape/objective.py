"""The training objective as a pure function of the flat trainable parameters.

Every diagnostic in torch_landscape is a statement about

    L(θ) = Σ_b (n_b / n) · loss_fn(f_θ(x_b), y_b),      n = Σ_b n_b,

the mean loss over all samples of ``data`` (a mean-reduced ``loss_fn`` per batch, batches weighted by
their size), seen as a function of the trainable parameters θ flattened in ``named_parameters()`` order.
:class:`Objective` builds that function with :func:`torch.func.functional_call`; it never writes to the
model.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call

Batch = tuple[Tensor, Tensor]
Data = Union[Batch, Iterable[Batch]]
LossFunction = Callable[[Tensor, Tensor], Tensor]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own ``training`` flag afterwards.

    Dropout and batch normalisation then act deterministically and update no running statistics, which
    is what a landscape diagnostic needs: the objective is a fixed function of θ.
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _as_batches(data: Data) -> list[Batch]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return [(data[0], data[1])]
    if isinstance(data, Tensor):
        raise TypeError(
            "data must be a batch (inputs, targets) or an iterable of such batches, got a single tensor; "
            "pass (inputs, targets)."
        )
    batches = []
    for index, batch in enumerate(data):
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise TypeError(
                f"batch {index} of data is a {type(batch).__name__}; every batch must be (inputs, targets)."
            )
        batches.append((batch[0], batch[1]))
    return batches


def _cast(tensor: Tensor, device: torch.device, dtype: torch.dtype | None) -> Tensor:
    if dtype is not None and tensor.is_floating_point():
        return tensor.detach().to(device=device, dtype=dtype)
    return tensor.detach().to(device=device)


class Objective:
    """L(θ) for a model, a mean-reduced loss and data, as a pure function of flat θ.

    Parameters
    ----------
    model
        Any ``nn.Module``. It is evaluated in eval mode (see :func:`eval_mode`) and never modified.
    loss_fn
        A mean-reduced loss ``loss_fn(outputs, targets)``, e.g. ``nn.MSELoss()``.
    data
        One batch ``(inputs, targets)`` or an iterable of batches (a ``DataLoader``). The batches are
        materialised once, on the model's device, so the objective is the same function at every call.
    params
        Names (as in ``model.named_parameters()``) of the parameters that make up θ. Default: all
        parameters with ``requires_grad``.
    dtype
        Evaluate in this floating dtype (e.g. ``torch.float64``) on copies of parameters, buffers and data.
        Default: the dtype of the first parameter of θ.

    Attributes
    ----------
    theta : Tensor
        The current flat parameters (a detached copy in ``dtype``).
    names, shapes
        The parameters that make up θ, in order.
    num_samples : int
        n, the total number of samples.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        data: Data,
        params: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable as loss_fn(outputs, targets), e.g. torch.nn.MSELoss().")
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype such as torch.float64, got {dtype}.")
        named = dict(model.named_parameters())
        if params is None:
            names = [name for name, p in named.items() if p.requires_grad]
            if not names:
                raise ValueError(
                    "the model has no trainable parameters (none has requires_grad=True); "
                    "unfreeze some or pass params=[names]."
                )
        else:
            names = list(params)
            unknown = [name for name in names if name not in named]
            if unknown:
                raise ValueError(
                    f"unknown parameter names {unknown}; choose from {list(named)}."
                )
            if not names:
                raise ValueError("params is empty; pass at least one parameter name, or None for all.")
            if len(set(names)) != len(names):
                raise ValueError(f"params lists a name twice: {names}.")
            order = {name: i for i, name in enumerate(named)}
            names.sort(key=order.__getitem__)  # θ always follows named_parameters() order

        first = named[names[0]]
        self.model = model
        self.loss_fn = loss_fn
        self.device = first.device
        self.dtype = dtype if dtype is not None else first.dtype
        self.names = names
        self.shapes = [named[name].shape for name in names]
        self.numels = [named[name].numel() for name in names]
        self.theta = torch.cat([named[name].detach().reshape(-1) for name in names]).to(self.dtype).clone()
        # Everything that is not θ (frozen parameters, buffers) enters functional_call as a constant.
        self.constants = {
            name: _cast(p, self.device, self.dtype) for name, p in named.items() if name not in set(names)
        }
        self.constants.update(
            {name: _cast(b, self.device, self.dtype) for name, b in model.named_buffers()}
        )
        self.batches = [
            (_cast(x, self.device, self.dtype), _cast(y, self.device, self.dtype)) for x, y in _as_batches(data)
        ]
        if not self.batches:
            raise ValueError("data is empty: it yielded no batch. Pass (inputs, targets) or a non-empty loader.")
        sizes = []
        for index, (x, y) in enumerate(self.batches):
            if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"batch {index}: inputs {tuple(x.shape)} and targets {tuple(y.shape)} do not have the "
                    "same number of samples along dimension 0."
                )
            if x.shape[0] == 0:
                raise ValueError(f"batch {index} has no samples; drop empty batches from data.")
            sizes.append(x.shape[0])
        self.num_samples = sum(sizes)
        self.weights = [size / self.num_samples for size in sizes]
        self._check_loss()

    @property
    def num_parameters(self) -> int:
        """P, the length of θ."""
        return self.theta.numel()

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Split flat θ into the named parameter tensors (views)."""
        chunks = torch.split(theta, self.numels)
        return {name: chunk.view(shape) for name, chunk, shape in zip(self.names, chunks, self.shapes)}

    def flatten(self, tensors: dict[str, Tensor] | Sequence[Tensor]) -> Tensor:
        """Inverse of :meth:`unflatten` (accepts a dict by name or a sequence in θ order)."""
        if isinstance(tensors, dict):
            tensors = [tensors[name] for name in self.names]
        return torch.cat([t.reshape(-1) for t in tensors])

    def outputs(self, theta: Tensor, inputs: Tensor) -> Tensor:
        """f_θ(inputs), the model evaluated in eval mode at θ."""
        with eval_mode(self.model):
            return functional_call(self.model, {**self.constants, **self.unflatten(theta)}, (inputs,))

    def batch_losses(self, theta: Tensor) -> Iterator[Tensor]:
        """Yield the weighted loss (n_b/n)·loss_fn(f_θ(x_b), y_b) of every batch."""
        for (x, y), weight in zip(self.batches, self.weights):
            yield weight * self.loss_fn(self.outputs(theta, x), y)

    def loss(self, theta: Tensor) -> Tensor:
        """L(θ) = Σ_b (n_b/n) loss_fn(f_θ(x_b), y_b); differentiable, and pure in θ."""
        return sum(self.batch_losses(theta))

    def loss_and_gradient(self, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(L(θ), ∇L(θ)) at θ (default: the model's current parameters), detached."""
        theta = (self.theta if theta is None else theta).detach().requires_grad_(True)
        with torch.enable_grad():
            loss = self.loss(theta)
            (gradient,) = torch.autograd.grad(loss, theta)
        return loss.detach(), gradient

    def raise_non_finite(self) -> None:
        """Raise a FloatingPointError naming the first batch whose loss is not finite at θ, if any."""
        with torch.no_grad():
            for index, loss in enumerate(self.batch_losses(self.theta)):
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the loss is {loss.item()} on batch {index} at the current parameters; the diagnostics "
                        "need a finite loss (check the data and the model for NaN/inf, or a diverged run)."
                    )

    def _check_loss(self) -> None:
        x, y = self.batches[0]
        with warnings.catch_warnings():
            # MSELoss silently broadcasts (n, 1) outputs against (n,) targets into an (n, n) loss.
            warnings.filterwarnings("error", message=".*target size.*")
            try:
                with torch.no_grad():
                    outputs = self.outputs(self.theta, x)
                    value = self.loss_fn(outputs, y)
            except UserWarning as warning:
                raise ValueError(
                    f"the loss broadcasts outputs against targets ({warning}); reshape the targets to the "
                    "outputs' shape."
                ) from None
        if not isinstance(value, Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"loss_fn must return a scalar (a mean-reduced loss such as nn.MSELoss()), got {shape}; "
                "use reduction='mean'."
            )
        # θ is fixed for the life of the objective, so one forward pass here catches every non-finite loss.
        self.raise_non_finite()


def check_finite(tensor: Tensor, what: str) -> Tensor:
    """Raise a FloatingPointError that names ``what`` if ``tensor`` has a NaN or inf entry."""
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).sum().item()
        raise FloatingPointError(
            f"{what} has {bad} non-finite entries; the objective is not finite here "
            "(diverged training, or data with NaN/inf)."
        )
    return tensor


def describe_size(num_floats: int, dtype: torch.dtype) -> str:
    """Human-readable memory size of ``num_floats`` elements of ``dtype``."""
    size = num_floats * torch.empty((), dtype=dtype).element_size()
    exponent = min(int(math.log(max(size, 1), 1024)), 4)
    return f"{size / 1024 ** exponent:.1f} {['B', 'KiB', 'MiB', 'GiB', 'TiB'][exponent]}"


def as_objective(model: Any, loss_fn: LossFunction | None = None, data: Data | None = None, **kwargs: Any) -> Objective:
    """Accept either an :class:`Objective` or the (model, loss_fn, data, params, dtype) arguments."""
    if isinstance(model, Objective):
        return model
    if loss_fn is None or data is None:
        raise TypeError("pass model, loss_fn and data (or an Objective).")
    return Objective(model, loss_fn, data, **kwargs)
