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
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from .settings import check_dtype, check_params

Batch = tuple[Tensor, Tensor]
Data = Batch | Iterable[Batch]
LossFunction = Callable[[Tensor, Tensor], Tensor]
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


def _describe(value: Any) -> str:
    return f"a numpy array of shape {value.shape}" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"


def check_data(data: Any, name: str = "data") -> None:
    """Refuse, without iterating it, ``data`` that cannot be a batch or an iterable of batches.

    A single tensor or array would be iterated row by row into nonsense "batches"; a pair of arrays or
    lists is a batch of the wrong type. The message names the argument and the fix.
    """
    fix = (
        f"pass {name}=(inputs, targets) with tensors (e.g. torch.as_tensor(x), torch.as_tensor(y)), or an "
        "iterable of such batches (a DataLoader)"
    )
    expected = f"{name} must be a batch (inputs, targets) or an iterable of batches"
    if isinstance(data, (Tensor, np.ndarray)):
        what = f"a single tensor of shape {tuple(data.shape)}" if isinstance(data, Tensor) else _describe(data)
        raise TypeError(f"{expected}, got {what}; {fix}.")
    # A map-style Dataset yields samples; an IterableDataset may well yield batches.
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        raise TypeError(
            f"{name} is a {type(data).__name__}, which yields single samples; pass batches: "
            f"torch.utils.data.DataLoader({name}, batch_size=...)."
        )
    if isinstance(data, (str, bytes, dict)) or not isinstance(data, Iterable):
        raise TypeError(f"{expected}, got {_describe(data)}; {fix}.")
    if isinstance(data, (tuple, list)) and any(isinstance(item, np.ndarray) for item in data[:2]):
        raise TypeError(f"{name} holds numpy arrays; the diagnostics need torch tensors: {fix}.")


def as_batches(data: Data, name: str = "data") -> list[Batch]:
    """``data`` (one batch or an iterable of batches) as a list of (inputs, targets) tensor pairs; extra
    items of a batch (sample weights, indices) are dropped. Refuses what is not such data, naming ``name``."""
    check_data(data, name)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        inputs, targets = data
        if isinstance(inputs, Tensor) and isinstance(targets, Tensor):
            return [(inputs, targets)]
    batches = []
    for index, batch in enumerate(data):
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            size = f" of {len(batch)} element(s)" if isinstance(batch, (tuple, list)) else ""
            raise TypeError(
                f"batch {index} of {name} is {_describe(batch)}{size}; every batch must be (inputs, targets) "
                "(a DataLoader over TensorDataset(inputs, targets) yields such batches)."
            )
        if not all(isinstance(t, Tensor) for t in batch[:2]):
            raise TypeError(
                f"batch {index} of {name} holds {_describe(batch[0])} and {_describe(batch[1])}; inputs and targets "
                "must be torch tensors (convert with torch.as_tensor)."
            )
        batches.append((batch[0], batch[1]))
    return batches


def _default_dtype(dtype: torch.dtype) -> torch.dtype:
    """The parameters' dtype, widened to float32 if narrower: eigh and the error bounds need at least that."""
    return torch.float32 if torch.finfo(dtype).bits < 32 else dtype


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
    theta : Tensor
        The current flat parameters (a detached copy in ``dtype``).
    names, shapes
        The parameters that make up θ, in order.
    num_samples : int
        n, the total number of samples (over all ranks of ``process_group``).
    """

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
        self.loss_fn = loss_fn
        self.device = first.device
        self.dtype = dtype if dtype is not None else _default_dtype(first.dtype)
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
        if check and self.process_group is None:
            self._check_loss()
        elif check:
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
        """Raise a FloatingPointError naming the first batch whose loss is not finite at θ, if any."""
        with torch.no_grad():
            for index, loss in enumerate(self.batch_losses(self.theta)):
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the loss is {loss.item()} on batch {index} at the current parameters; the diagnostics "
                        "need a finite loss (check the data and the model for NaN/inf, or a diverged run)."
                    )

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
            value = _loss_value(self.loss_fn, outputs, y, where)
        if not isinstance(value, Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"loss_fn must return a scalar (a mean-reduced loss such as nn.MSELoss()), got {shape}; "
                "use reduction='mean'."
            )
        # Structured outputs are the loss's business; a 0-d output is a per-batch loss passed through
        # (LandscapeProbe's loss=).
        if isinstance(outputs, Tensor) and outputs.ndim >= 1:
            _check_broadcast(outputs, y)
            _check_mean_reduced(self.loss_fn, outputs, y, value)
        # θ is fixed for the life of the objective, so one forward pass here catches every non-finite loss.
        self.raise_non_finite()


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


def _loss_value(loss_fn: LossFunction, outputs: Tensor, targets: Tensor, where: str) -> Any:
    with warnings.catch_warnings():
        # MSELoss silently broadcasts (n, 1) outputs against (n,) targets into an (n, n) loss.
        warnings.filterwarnings("error", message=".*target size.*")
        try:
            return loss_fn(outputs, targets)
        except UserWarning as warning:
            raise ValueError(
                f"the loss broadcasts outputs against targets ({warning}); reshape the targets to the outputs' shape."
            ) from None
        except RuntimeError as error:
            if isinstance(error, torch.OutOfMemoryError):
                raise
            hint = " (a regression loss needs floating targets: y.float())" if not targets.is_floating_point() else ""
            raise ValueError(
                f"loss_fn(outputs, targets) fails on {where} (outputs {tuple(outputs.shape)} {outputs.dtype}, targets "
                f"{tuple(targets.shape)} {targets.dtype}): {error}{hint}."
            ) from error


def _check_broadcast(outputs: Tensor, targets: Tensor) -> None:
    """Refuse floating targets that broadcast with the outputs into a larger shape than either, the (n, 1)
    against (n,) trap that makes ((o - t) ** 2).mean() an n×n average. Integer (class) targets are left
    alone: their shape legitimately differs from the logits'."""
    if not targets.is_floating_point() or outputs.shape == targets.shape:
        return
    try:
        shape = torch.broadcast_shapes(outputs.shape, targets.shape)
    except RuntimeError:
        return  # not broadcastable: the loss itself decides what the shapes mean
    if shape not in (outputs.shape, targets.shape):
        raise ValueError(
            f"the model's outputs {tuple(outputs.shape)} and the targets {tuple(targets.shape)} broadcast to "
            f"{tuple(shape)} in an elementwise loss; reshape the targets to the outputs' shape (e.g. y.view(-1, 1))."
        )


def _check_mean_reduced(loss_fn: LossFunction, outputs: Tensor, targets: Tensor, value: Tensor) -> None:
    """Refuse a sum-reduced loss: L is the mean over samples, and a sum scales every number by n.

    For a per-sample mean, L(batch) = (h L(first h) + (n − h) L(rest)) / n; for a sum, L(batch) = L(first h)
    + L(rest). A loss that fits the second identity and not the first is refused; one that fits neither (a
    weighted or batch-coupled loss) is left alone.
    """
    if getattr(loss_fn, "reduction", "mean") == "sum":
        raise ValueError(f"loss_fn {loss_fn!r} sums over samples; the objective is a mean: use reduction='mean'.")
    n = outputs.shape[0]
    if n < 2 or targets.ndim == 0 or targets.shape[0] != n:
        return
    h = n // 2
    try:
        first, rest = float(loss_fn(outputs[:h], targets[:h])), float(loss_fn(outputs[h:], targets[h:]))
    except (RuntimeError, ValueError, TypeError, IndexError):
        return  # the loss cannot be split by samples: nothing to compare
    whole = float(value)
    # Rounding of three loss evaluations; the two identities differ by a factor ~n/2 unless all are ~0.
    tolerance = 10 * math.sqrt(torch.finfo(value.dtype).eps) * (abs(whole) + abs(first) + abs(rest))
    as_sum, as_mean = abs(whole - first - rest), abs(whole - (h * first + (n - h) * rest) / n)
    if as_sum <= tolerance < as_mean:
        raise ValueError(
            f"loss_fn sums over samples (on the first batch: L = {whole:.6g} = L(first {h}) + L(other {n - h}) = "
            f"{first:.6g} + {rest:.6g}); the objective is the mean over samples: use a mean-reduced loss "
            "(reduction='mean', or .mean() in place of .sum())."
        )


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
