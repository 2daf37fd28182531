"""What a probe reads: the probe data, read once, cast once and shared out between the ranks of a process
group; the ``loss(model, batch)`` form dressed as a model; and which models neuron redundancy applies to.

Reading never disturbs training: a shuffling loader draws random numbers, so every read happens under
:func:`preserved_rng`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .batches import as_batches, check_data
from .curvature.shallow import find_shallow
from .objective import LossFunction, Objective, preserved_rng
from .quantities import QUANTITIES, check_quantities, quantity
from .redundancy import is_mlp
from .settings import ProbeSettings

BatchLoss = Callable[[nn.Module, Any], Tensor]


def is_shallow(model: nn.Module) -> bool:
    """Whether ``model`` holds a recognised one-hidden-layer network (alignment and redundancy need one)."""
    try:
        find_shallow(model)
    except ValueError:
        return False
    return True


#: What neuron redundancy needs of a model, for messages.
REDUNDANCY_NEEDS = (
    "needs a one-hidden-layer network (Linear → activation → Linear) or an nn.Sequential MLP "
    "(Linear → activation → … → Linear)"
)


def supports_redundancy(model: nn.Module) -> bool:
    """Whether neuron redundancy applies: a one-hidden-layer network, or an ``nn.Sequential`` MLP."""
    return is_shallow(model) or is_mlp(model)


class BatchLossModel(nn.Module):
    """``loss(module, batch)`` dressed as a model for :class:`~torch_landscape.objective.Objective`.

    The objective evaluates ``loss_fn(model(inputs), targets)`` per batch, weighted by batch size. Here the
    "inputs" of batch b are b repeated n_b times (so the weighting is right), the model's output is
    ``loss(module, batch_b)`` and ``loss_fn`` passes it through. The wrapped module's parameters keep
    their order, under the prefix ``module.``.
    """

    def __init__(self, module: nn.Module, loss: BatchLoss, batches: list[Any]) -> None:
        super().__init__()
        self.module = module
        self.loss = loss
        self.batches = batches

    def forward(self, index: Tensor) -> Tensor:
        value = self.loss(self.module, self.batches[int(index[0])])
        if not isinstance(value, Tensor) or value.numel() != 1:
            found = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"loss(model, batch) must return a scalar tensor (a mean over the batch), got {found}.")
        return value.reshape(())

    @staticmethod
    def passthrough(outputs: Tensor, targets: Tensor) -> Tensor:
        return outputs


class TrainingStepLoss:
    """``loss(module, batch)`` from the module's own training step: ``module.training_step(batch, 0)``, read at
    ``"loss"`` when it returns a dict — the objective is then exactly the loss the module trains on (an inline
    ``F.cross_entropy``, a ``self.criterion``, sample weights in the batch). The module's ``log`` and
    ``log_dict`` do nothing during the call, so its logged metrics never see the probe's evaluations.

    Parameters
    ----------
    method
        The name of the step method (a LightningModule's ``training_step``).
    """

    def __init__(self, method: str = "training_step") -> None:
        self.method = method

    def __call__(self, module: nn.Module, batch: Any) -> Tensor:
        silenced = {name: module.__dict__.get(name) for name in ("log", "log_dict")}
        for name in silenced:
            object.__setattr__(module, name, _silent)
        try:
            out = getattr(module, self.method)(batch, 0)
        finally:
            for name, own in silenced.items():
                if own is None:
                    module.__dict__.pop(name, None)
                else:
                    object.__setattr__(module, name, own)
        if isinstance(out, dict):
            out = out.get("loss")
        if not isinstance(out, Tensor):
            raise ValueError(
                f"{type(module).__name__}.{self.method} returned {type(out).__name__}, not the loss tensor (or a "
                "dict with 'loss'); pass the monitor loss=lambda module, batch: ... that computes it."
            )
        return out

    def __repr__(self) -> str:
        return f"the module's own {self.method}"


def _silent(*args: Any, **kwargs: Any) -> None:
    return None


def check_batch_mean(data: ProbeData, dtype: torch.dtype) -> None:
    """Refuse a ``loss(model, batch)`` that sums over the samples instead of averaging them.

    The first batch is split in halves of h and n − h samples. For a mean, L(batch) = (h L(first) + (n − h)
    L(rest)) / n — which is what the objective of the two halves computes, batches weighted by size; for a sum,
    L(batch) = L(first) + L(rest). A loss that fits the second identity and not the first is refused; one whose
    batches cannot be split by samples, or that fits neither (a batch-coupled loss), is left alone.
    """
    if not isinstance(data.model, BatchLossModel):
        return
    module, loss, batch = data.model.module, data.model.loss, data.model.batches[0]
    n = _batch_size(batch)
    if n < 2:
        return
    h = n // 2
    device = data.batches[0][0].device
    values = []
    for parts in ([batch], [_rows(batch, 0, h), _rows(batch, h, n)], [_rows(batch, 0, h)], [_rows(batch, h, n)]):
        model, indices = _indexed(module, loss, parts, device)
        try:
            objective = Objective(
                model, BatchLossModel.passthrough, indices, params=data.params, dtype=dtype, check=False
            )
            with torch.no_grad():
                values.append(float(objective.loss(objective.theta)))
        except (RuntimeError, ValueError, TypeError, IndexError, KeyError):
            return  # the loss cannot be evaluated on part of a batch: nothing to compare
    whole, mean, first, rest = values
    tolerance = 10 * math.sqrt(torch.finfo(dtype).eps) * (abs(whole) + abs(first) + abs(rest))
    if abs(whole - first - rest) <= tolerance < abs(whole - mean):
        raise ValueError(
            f"the loss sums over samples (on the first batch: L = {whole:.6g} = L(first {h}) + L(other {n - h}) = "
            f"{first:.6g} + {rest:.6g}); the objective is the mean over samples: reduce with a mean, or pass "
            "loss=lambda module, batch: ... (or loss_fn=) with a mean-reduced loss."
        )


def _indexed(
    module: nn.Module, loss: BatchLoss, batches: list[Any], device: torch.device
) -> tuple[BatchLossModel, list]:
    """``loss`` over ``batches`` as the objective takes it: the model, and per batch (index, 0) pairs of its size."""
    sizes = [_batch_size(batch) for batch in batches]
    if not batches or not all(sizes):
        raise ValueError("with loss=, data must be a non-empty iterable of batches, each holding a tensor of samples.")
    indices = [
        (torch.full((size,), float(index), device=device), torch.zeros(size, device=device))
        for index, size in enumerate(sizes)
    ]
    return BatchLossModel(module, loss, batches), indices


def _rows(batch: Any, start: int, stop: int) -> Any:
    """Samples start:stop of every tensor in ``batch`` that holds one row per sample."""
    n = _batch_size(batch)
    if isinstance(batch, Tensor):
        return batch[start:stop] if batch.ndim and batch.shape[0] == n else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(_rows(item, start, stop) for item in batch)
    if isinstance(batch, dict):
        return {key: _rows(value, start, stop) for key, value in batch.items()}
    return batch


def _cast_batch(batch: Any, device: torch.device, dtype: torch.dtype) -> Any:
    if isinstance(batch, Tensor):
        return batch.detach().to(device=device, dtype=dtype if batch.is_floating_point() else None)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_cast_batch(item, device, dtype) for item in batch)
    if isinstance(batch, dict):
        return {key: _cast_batch(value, device, dtype) for key, value in batch.items()}
    return batch


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Tensor) and batch.ndim:
        return batch.shape[0]
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        size = _batch_size(item)
        if size:
            return size
    return 0


def _same_on_every_rank(values: list[float], group: Any, device: torch.device) -> bool:
    """Whether ``values`` are equal on every rank of ``group`` (one all-reduce of max(v) and max(−v))."""
    spread = torch.tensor(values, dtype=torch.float64, device=device)
    spread = torch.cat([spread, -spread])
    torch.distributed.all_reduce(spread, op=torch.distributed.ReduceOp.MAX, group=group)
    return bool(torch.equal(spread[: len(values)], -spread[len(values) :]))


@dataclass(frozen=True)
class ProbeData:
    """The probe set as the objective reads it, read and cast once.

    Attributes
    ----------
    model : nn.Module
        The network, or with ``loss=`` the loss around it (:class:`BatchLossModel`).
    loss_fn : callable
        The mean-reduced loss, or :meth:`BatchLossModel.passthrough`.
    batches : list
        This rank's batches as the objective takes them: (inputs, targets) pairs, or with ``loss=`` the
        index pairs of :class:`BatchLossModel`.
    params : tuple of str or None
        The parameters that make up θ, as the objective's model names them.
    inputs : list of (Tensor, Tensor) or None
        Every (inputs, targets) batch of the probe set, for neuron redundancy (None with ``loss=``).
    """

    model: nn.Module
    loss_fn: LossFunction
    batches: list[Any]
    params: tuple[str, ...] | None
    inputs: list[tuple[Tensor, Tensor]] | None

    def objective(self, dtype: torch.dtype, process_group: Any = None, check: bool = False) -> Objective:
        """The objective at the model's current parameters (``check``: evaluated and checked once)."""
        return Objective(
            self.model,
            self.loss_fn,
            self.batches,
            params=self.params,
            dtype=dtype,
            check=check,
            process_group=process_group,
        )


def read_probe_data(
    model: nn.Module,
    loss_fn: LossFunction | None,
    loss: BatchLoss | None,
    data: Any,
    settings: ProbeSettings,
    devices: Sequence[torch.device],
    group: Any,
) -> ProbeData:
    """The probe data, read once under preserved RNG state (iterating a shuffling loader draws random
    numbers) and cast once: every snapshot sees the same samples in the diagnostics' dtype."""
    dtype, params, device = settings.dtype, settings.params, devices[0]
    if loss is not None:
        check_data(data)  # as_batches checks it otherwise
    with preserved_rng(devices):
        if loss is None:
            batches = as_batches(data)
        elif isinstance(data, tuple) and all(isinstance(item, Tensor) for item in data):
            batches = [data]  # one batch of tensors, as (inputs, targets) is for loss_fn
        else:
            batches = list(data)
    if loss is None:
        if loss_fn is None:
            raise ValueError("pass loss_fn (loss_fn(outputs, targets)) or loss (loss(model, batch)).")
        batches = [tuple(_cast_batch(batch, device, dtype)) for batch in batches]
        names = tuple(params) if params is not None else None
        return ProbeData(model, loss_fn, shard(batches, True, group, device), names, batches)
    batches = shard([_cast_batch(batch, device, dtype) for batch in batches], False, group, device)
    wrapped, indices = _indexed(model, loss, batches, device)
    names = tuple(f"module.{name}" for name in params) if params is not None else None
    return ProbeData(wrapped, BatchLossModel.passthrough, indices, names, None)


def shard(batches: list[Any], by_sample: bool, group: Any, device: torch.device) -> list[Any]:
    """This rank's part of the probe set: (inputs, targets) batches split into contiguous, nearly equal
    ranges of samples; other batches (``loss=``) dealt out one by one. All of them in one process."""
    if group is None:
        return batches
    rank, world = torch.distributed.get_rank(group), torch.distributed.get_world_size(group)
    # Sums of the samples and their count: a rank given only its own samples (a DistributedSampler's)
    # would silently make the objective that of a mixture of sets.
    sizes = [_batch_size(batch) for batch in batches]
    sums = [float(x.double().sum()) for x, _ in batches] if by_sample else []
    if not _same_on_every_rank([len(batches), sum(sizes), math.fsum(sums)], group, device):
        raise ValueError(
            "with process_group, pass the same whole probe set as data on every rank (each rank keeps its "
            "share of it); the ranks were given different data."
        )
    if not by_sample:  # loss(model, batch) need not be a mean over samples: keep batches whole
        if len(batches) < world:
            raise ValueError(
                f"with loss= and a process group of {world} ranks, data needs at least {world} "
                f"batches (one per rank), got {len(batches)}; split the probe set into more batches."
            )
        return batches[rank::world]
    total = sum(sizes)
    if total < world:
        raise ValueError(
            f"the probe set has {total} samples, fewer than the {world} ranks of process_group; "
            "pass at least one sample per rank."
        )
    start, stop, offset, shard = total * rank // world, total * (rank + 1) // world, 0, []
    for x, y in batches:
        low, high = max(start - offset, 0), min(stop - offset, x.shape[0])
        if low < high:
            shard.append((x[low:high], y[low:high]))
        offset += x.shape[0]
    return shard


def applicable_quantities(
    quantities: Iterable[str] | None, model: nn.Module, reference: Any, distributed: bool = False
) -> tuple[str, ...]:
    """The quantities asked for, or by default every one that applies (the table's ``needs``); an explicit
    one that cannot apply is an error naming the fix."""
    explicit = quantities is not None
    chosen = check_quantities(quantities if quantities is not None else QUANTITIES)
    if not chosen:
        raise ValueError(f"quantities is empty; choose from {list(QUANTITIES)}.")
    problems = {
        "reference": "needs reference= (a model like the student, e.g. the teacher, or a flat θ*)"
        if reference is None
        else None,
        "neurons": REDUNDANCY_NEEDS if not supports_redundancy(model) else None,
        "one_process": "evaluates the loss on this rank's shard alone, not under a process_group"
        if distributed
        else None,
    }
    for name in chosen:
        needs = quantity(name).needs
        problem = problems.get(needs) if needs is not None else None
        if problem is None:
            continue
        if explicit:
            raise ValueError(f"{name} {problem}; leave {name!r} out of quantities.")
        chosen = tuple(q for q in chosen if q != name)
    return chosen
