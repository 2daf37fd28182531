"""What a probe reads: the probe data, read once, cast once and shared out between the ranks of a process
group; the ``loss(model, batch)`` form dressed as a model; and which models neuron redundancy applies to.

Reading never disturbs training: a shuffling loader draws random numbers, so every read happens under
:func:`preserved_rng`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .curvature.shallow import find_shallow
from .objective import LossFunction, as_batches, check_data, preserved_rng
from .redundancy import is_mlp
from .settings import QUANTITIES, ProbeSettings, check_quantities

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


def read_probe_data(
    model: nn.Module,
    loss_fn: LossFunction | None,
    loss: BatchLoss | None,
    data: Any,
    settings: ProbeSettings,
    devices: Sequence[torch.device],
    group: Any,
) -> tuple[tuple[Any, ...], list[tuple[Tensor, Tensor]] | None]:
    """The objective's (model, loss_fn, batches, params) and the (inputs, targets) batches (None with
    ``loss=``). Read once, under preserved RNG state (iterating a shuffling loader draws random
    numbers), and cast once: every snapshot sees the same samples in the diagnostics' dtype."""
    dtype, params, device = settings.dtype, settings.params, devices[0]
    check_data(data)
    with preserved_rng(devices):
        batches = list(data) if loss is not None else as_batches(data)
    if loss is None:
        batches = [tuple(_cast_batch(batch, device, dtype)) for batch in batches]
        return (model, loss_fn, shard(batches, True, group, device), params), batches
    batches = shard([_cast_batch(batch, device, dtype) for batch in batches], False, group, device)
    sizes = [_batch_size(batch) for batch in batches]
    if not batches or not all(sizes):
        raise ValueError("with loss=, data must be a non-empty iterable of batches, each holding a tensor of samples.")
    indices = [
        (torch.full((size,), float(index), device=device), torch.zeros(size, device=device))
        for index, size in enumerate(sizes)
    ]
    names = [f"module.{name}" for name in params] if params is not None else None
    return (BatchLossModel(model, loss, batches), BatchLossModel.passthrough, indices, names), None


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
    """The quantities asked for, or by default every one that applies; an explicit one that cannot
    apply is an error naming the fix."""
    explicit = quantities is not None
    chosen = check_quantities(quantities if quantities is not None else QUANTITIES)
    if not chosen:
        raise ValueError(f"quantities is empty; choose from {list(QUANTITIES)}.")
    missing = {
        "one_point": "one_point needs reference= (a model like the student, e.g. the teacher, or a flat θ*)"
        if reference is None
        else None,
        "redundancy": f"redundancy {REDUNDANCY_NEEDS}" if not supports_redundancy(model) else None,
        "slices": "slices evaluate the loss on this rank's shard alone, not under a process_group"
        if distributed
        else None,
    }
    for quantity, problem in missing.items():
        if problem is not None and quantity in chosen:
            if explicit:
                raise ValueError(f"{problem}; leave {quantity!r} out of quantities.")
            chosen = tuple(q for q in chosen if q != quantity)
    return chosen
