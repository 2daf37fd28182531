"""The training objective as a pure function of the flat trainable parameters.

Every diagnostic in torch_landscape is a statement about

    L(θ) = Σ_b (n_b / n) · loss_fn(f_θ(x_b), y_b),      n = Σ_b n_b,

the mean loss over all samples of ``data`` (a mean-reduced ``loss_fn`` per batch, batches weighted by
their size), seen as a function of the trainable parameters θ flattened in ``named_parameters()`` order.
:class:`Objective` builds that function with :func:`torch.func.functional_call`; it never writes to the
model.

With a ``torch.distributed`` process group each rank holds a shard of the samples: n is the count over
all ranks, :meth:`Objective.loss` is this rank's share Σ_{b on this rank} (n_b/n)·loss_fn(...), and L, ∇L
(and every Hessian product or assembly built on them) are the all-reduced sums of the shares
(:meth:`Objective.all_reduce`), equal on every rank.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from .batches import Data, as_batches
from .loss_checks import (
    LossFunction,
    check_broadcast,
    check_mean_reduced,
    loss_value,
    non_finite_data_error,
    randomness_cause,
)
from .settings import check_dtype, check_params

T = TypeVar("T")


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


@contextlib.contextmanager
def preserved_rng(devices: Sequence[torch.device]) -> Iterator[None]:
    """Restore torch (CPU and CUDA), NumPy and Python random states on exit.

    The core functions use private generators, but a user's model or loss callable may draw random
    numbers; training must see the same stream with and without diagnostics.
    """
    cuda = [device for device in devices if device.type == "cuda"]
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=cuda, enabled=True):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _default_dtype(dtype: torch.dtype) -> torch.dtype:
    """The parameters' dtype, widened to float32 if narrower: eigh and the error bounds need at least that."""
    return torch.float32 if torch.finfo(dtype).bits < 32 else dtype


def _loss_in(loss_fn: LossFunction, device: torch.device, dtype: torch.dtype) -> LossFunction:
    """A loss module with floating tensors of its own (``CrossEntropyLoss(weight=...)``, ``pos_weight``) as a
    copy in the objective's dtype and device: the objective computes in float64 while training may not."""
    if not isinstance(loss_fn, nn.Module):
        return loss_fn
    tensors = [*loss_fn.parameters(), *loss_fn.buffers()]
    if all(t.dtype == dtype and t.device == device for t in tensors if t.is_floating_point()):
        return loss_fn
    return copy.deepcopy(loss_fn).to(device=device, dtype=dtype)


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
        Default: the dtype of the first parameter of θ, widened to float32 for float16/bfloat16 models
        (their eigenvalues and error bounds would drown in rounding, and CPU eigh has no half precision).
    data_name
        What to call ``data`` in error messages (e.g. "probe_data" for the monitors).
    check
        Evaluate model and loss once on the first batch and the loss on every batch, and refuse what does
        not fit (see :meth:`_check_loss`) and a non-finite loss. ``False`` is for a caller that checked the
        same model, loss and data before and checks the loss it computes for finiteness itself.
    process_group
        A ``torch.distributed`` process group (``torch.distributed.group.WORLD`` for all ranks) whose every
        rank builds its Objective with its own shard of the samples at the same θ; None: one process.

    Attributes
    ----------
    sample_mean : bool
        True: L is the weighted mean over ``batches`` of a per-sample loss, which the structured
        one-hidden-layer formulas assume (docs/theory.md §1.1.1). A subclass computing L otherwise (the
        closed-form population losses of :mod:`torch_landscape.population`) sets it False.
    theta : Tensor
        The current flat parameters (a detached copy in ``dtype``).
    names, shapes
        The parameters that make up θ, in order.
    num_samples : int
        n, the total number of samples (over all ranks of ``process_group``).
    """

    sample_mean = True

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        data: Data,
        params: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
        *,
        data_name: str = "data",
        check: bool = True,
        process_group: Any = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable as loss_fn(outputs, targets), e.g. torch.nn.MSELoss().")
        if dtype is not None:
            check_dtype(dtype)
        params = check_params(params)
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
                raise ValueError(f"unknown parameter names {unknown}; choose from {list(named)}.")
            if not names:
                raise ValueError("params is empty; pass at least one parameter name, or None for all.")
            if len(set(names)) != len(names):
                raise ValueError(f"params lists a name twice: {names}.")
            order = {name: i for i, name in enumerate(named)}
            names.sort(key=order.__getitem__)  # θ always follows named_parameters() order

        first = named[names[0]]
        self.model = model
        self.device = first.device
        self.dtype = dtype if dtype is not None else _default_dtype(first.dtype)
        self.loss_fn = _loss_in(loss_fn, self.device, self.dtype)
        self.names = names
        self.shapes = [named[name].shape for name in names]
        self.numels = [named[name].numel() for name in names]
        self.theta = torch.cat([named[name].detach().reshape(-1) for name in names]).to(self.dtype).clone()
        # Everything that is not θ (frozen parameters, buffers) enters functional_call as a constant.
        self.constants = {
            name: _cast(p, self.device, self.dtype) for name, p in named.items() if name not in set(names)
        }
        self.constants.update({name: _cast(b, self.device, self.dtype) for name, b in model.named_buffers()})
        self.batches = [
            (_cast(x, self.device, self.dtype), _cast(y, self.device, self.dtype))
            for x, y in as_batches(data, data_name)
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
        self.process_group = check_process_group(process_group)
        self.num_samples = sum(sizes)
        if self.process_group is not None:
            self.num_samples = int(self.all_reduce(torch.tensor(self.num_samples, device=self.device)))
        self.data_name = data_name
        self.weights = [size / self.num_samples for size in sizes]
        if check:
            with preserved_rng([self.device]):  # a model or loss that draws random numbers is refused, not run
                if self.process_group is None:
                    self._check_loss()
                else:
                    self._check_loss_on_every_rank()

    @property
    def num_parameters(self) -> int:
        """P, the length of θ."""
        return self.theta.numel()

    def all_reduce(self, tensor: Tensor) -> Tensor:
        """The sum of ``tensor`` over the ranks of the process group (``tensor`` itself in one process).

        Every rank receives the same sum, so iterations driven by reduced values stay in lockstep."""
        if self.process_group is None:
            return tensor
        total = tensor.detach().clone()
        torch.distributed.all_reduce(total, group=self.process_group)
        return total

    def all_agree(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank: a structural choice made from a rank's own shard (e.g.
        whether the structured Hessian applies) must be the same everywhere, or the ranks' collectives
        would no longer match."""
        return bool(self.all_reduce(torch.tensor(0 if flag else 1, device=self.device)) == 0)

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Split flat θ into the named parameter tensors (views)."""
        chunks = torch.split(theta, self.numels)
        return {name: chunk.view(shape) for name, chunk, shape in zip(self.names, chunks, self.shapes, strict=True)}

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
        for (x, y), weight in zip(self.batches, self.weights, strict=True):
            yield weight * self.loss_fn(self.outputs(theta, x), y)

    def loss(self, theta: Tensor) -> Tensor:
        """L(θ) = Σ_b (n_b/n) loss_fn(f_θ(x_b), y_b); differentiable, and pure in θ (with a process group,
        this rank's share: :meth:`loss_and_gradient` sums the shares)."""
        # Python's sum keeps the summation order and start value the numbers were validated with; its result
        # is a Tensor, never the start value 0, because __init__ refuses data without batches.
        return cast(Tensor, sum(self.batch_losses(theta)))

    def loss_and_gradient(self, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(L(θ), ∇L(θ)) at θ (default: the model's current parameters), detached."""
        theta = (self.theta if theta is None else theta).detach().requires_grad_(True)
        with torch.enable_grad():
            loss = self.loss(theta)
            (gradient,) = torch.autograd.grad(loss, theta)
        return self.reduce_first_order(loss.detach(), gradient)

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()``, evaluated once per objective under ``key``. θ is fixed for the objective's life, so
        what several diagnostics derive at θ (L and ∇L, a one-hidden-layer network's verified forward and
        structure) is computed by the first that needs it and shared by the others."""
        memos = self.__dict__.setdefault("_memos", {})
        if key not in memos:
            memos[key] = compute()
        return memos[key]

    def memoized(self, key: str) -> bool:
        """Whether :meth:`memo` has computed ``key`` already."""
        return key in self.__dict__.get("_memos", {})

    def first_order(self) -> tuple[Tensor, Tensor]:
        """(L(θ), ∇L(θ)) at the objective's own θ, detached, computed once (:meth:`memo`); a Hessian operator
        takes them from the gradient graph or the shallow structure it builds anyway."""
        return self.memo("first order", self.loss_and_gradient)

    def reduce_first_order(self, loss: Tensor, gradient: Tensor) -> tuple[Tensor, Tensor]:
        """(L, ∇L) from this rank's shares, in one all-reduce (unchanged in one process)."""
        if self.process_group is None:
            return loss, gradient
        total = self.all_reduce(torch.cat([loss.reshape(1), gradient]))
        return total[0], total[1:]

    def raise_non_finite(self) -> None:
        """Refuse a loss that is not finite at θ, naming the cause: a FloatingPointError naming the parameters
        or buffers that are not finite (a diverged model), else a ValueError
        (:class:`~torch_landscape.loss_checks.NonFiniteDataError`) naming the first such batch and in it the
        sample to blame (:func:`~torch_landscape.loss_checks.non_finite_sample`)."""
        with torch.no_grad():
            for index, loss in enumerate(self.batch_losses(self.theta)):
                if not torch.isfinite(loss):
                    raise self._non_finite(index, loss.item())

    def _non_finite(self, index: int, loss: float) -> Exception:
        tensors = {**self.constants, **self.unflatten(self.theta)}
        diverged = [name for name, value in tensors.items() if value.is_floating_point() and not value.isfinite().all()]
        if diverged:
            return FloatingPointError(
                f"the loss is {loss} on batch {index} of {self.data_name} because {diverged} hold NaN or inf: the "
                "model has diverged (or was loaded so); the diagnostics need a finite loss."
            )
        x, y = self.batches[index]
        name = self.data_name if self.process_group is None else f"this rank's shard of {self.data_name}"
        return non_finite_data_error(self.loss_fn, x, y, self.outputs(self.theta, x), index, name, loss)

    def _check_loss_on_every_rank(self) -> None:
        """:meth:`_check_loss` on each rank's shard; a failure on one rank fails all of them (the others
        would otherwise wait at their next all-reduce for a rank that is gone)."""
        failure = None
        try:
            self._check_loss()
        except (TypeError, ValueError, FloatingPointError) as error:
            failure = error
        if not self.all_agree(failure is None):
            raise failure or ValueError(
                f"another rank of process_group refused its shard of {self.data_name} (its error says why)."
            )

    def _check_loss(self) -> None:
        """Evaluate model and loss once on the first batch: every misfit of model, loss and data that one
        evaluation can show is reported here, naming the argument and the fix, instead of deep in torch."""
        x, y = self.batches[0]
        where = f"batch 0 of {self.data_name}"
        with torch.no_grad():
            try:
                outputs = self.outputs(self.theta, x)
            except RuntimeError as error:
                if isinstance(error, torch.OutOfMemoryError):
                    raise
                if not x.is_floating_point() and self.theta.is_floating_point():
                    raise TypeError(
                        f"the inputs of {where} are {x.dtype} but the model computes in {self.dtype} ({error}); "
                        "convert them with x.float() (inputs of an nn.Embedding stay integer)."
                    ) from error
                raise ValueError(
                    f"model(inputs) fails on {where} (inputs of shape {tuple(x.shape)}, {x.dtype}): {error}; the "
                    f"inputs of {self.data_name} must be what the model takes."
                ) from error
            value = loss_value(self.loss_fn, outputs, y, where)
        if not isinstance(value, Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"loss_fn must return a scalar (a mean-reduced loss such as nn.MSELoss()), got {shape}; "
                "use reduction='mean'."
            )
        # Structured outputs are the loss's business; a 0-d output is a per-batch loss passed through
        # (LandscapeProbe's loss=).
        if isinstance(outputs, Tensor) and outputs.ndim >= 1:
            check_broadcast(outputs, y)
            check_mean_reduced(self.loss_fn, outputs, y, value)
        # θ is fixed for the life of the objective, so one forward pass here catches every non-finite loss.
        self.raise_non_finite()
        check_deterministic(self)


def check_deterministic(objective: Objective) -> None:
    """Refuse an objective that is not a function of θ: L evaluated twice at the same θ must agree.

    Both evaluations run under :func:`preserved_rng` (the random streams end as they began) one after the
    other (a model or loss that draws random numbers draws different ones each time). Each batch's term must
    agree within |ℓ_b − ℓ′_b| ≤ 10·√ε·max(|ℓ_b|, |ℓ′_b|): the same kernels in the same order give the same
    bits, and a reordered floating-point sum (atomics on a GPU) moves a sum of n_b terms of one sign by at most
    n_b·ε relative, below the bound up to 10/√ε samples per batch (7·10⁸ in float64, 3·10⁴ in float32);
    dropout or a random loss moves it by the dropped or added terms, orders of magnitude more. The refusal
    names the module that draws random numbers (:func:`~torch_landscape.loss_checks.randomness_cause`), or the loss.
    """
    with preserved_rng([objective.device]), torch.no_grad():
        first, second = ([loss.item() for loss in objective.batch_losses(objective.theta)] for _ in range(2))
    bound = 10 * math.sqrt(torch.finfo(objective.dtype).eps)
    for index, (one, other) in enumerate(zip(first, second, strict=True)):
        if abs(one - other) > bound * max(abs(one), abs(other)):
            forward = functools.partial(objective.outputs, objective.theta, objective.batches[index][0])
            with preserved_rng([objective.device]), torch.no_grad():
                cause = randomness_cause(objective.model, forward)
            raise ValueError(
                f"the objective is not a function of θ: the loss evaluated twice at the same parameters gave "
                f"{math.fsum(first):.6g} and {math.fsum(second):.6g} (batch {index} of {objective.data_name}: "
                f"{one:.6g} vs {other:.6g}, beyond rounding); {cause}. Every diagnostic needs the same L at the "
                "same θ."
            )


def check_process_group(group: Any) -> Any:
    """``group`` if it is a usable ``torch.distributed`` process group (or None); else a TypeError or
    ValueError naming the fix."""
    if group is None:
        return None
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        raise ValueError(
            "process_group is given but torch.distributed is not initialised; call "
            "torch.distributed.init_process_group(...) on every rank first, or pass process_group=None."
        )
    if not isinstance(group, torch.distributed.ProcessGroup):
        raise TypeError(
            f"process_group must be a torch.distributed.ProcessGroup (e.g. torch.distributed.group.WORLD), "
            f"got {type(group).__name__}."
        )
    return group


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
    return f"{size / 1024**exponent:.1f} {['B', 'KiB', 'MiB', 'GiB', 'TiB'][exponent]}"


def as_objective(model: Any, loss_fn: LossFunction | None = None, data: Data | None = None, **kwargs: Any) -> Objective:
    """Accept either an :class:`Objective` or the (model, loss_fn, data, params, dtype) arguments."""
    if isinstance(model, Objective):
        return model
    if loss_fn is None or data is None:
        raise TypeError("pass model, loss_fn and data (or an Objective).")
    return Objective(model, loss_fn, data, **kwargs)
