"""What the monitors read from Lightning: the loss and the reference the module offers, the probe set drawn
from the training data (and whether its batches hold more than inputs and targets), the run's length, process
group and optimizer, and rank zero's decisions for every rank. Each check raises
:class:`~.namespaces.LandscapeConfigError` naming the argument and the fix."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..convexity.align import shallow_reference
from ..curvature.shallow import find_shallow
from ..probe_data import TrainingStepLoss, is_shallow, preserved_rng
from .namespaces import LandscapeConfigError


def resolve_loss(pl_module: Any, name: str, loss_fn: Any, loss: Any) -> tuple[Any, Any]:
    """(loss_fn, loss) for the monitor ``name``: what was given; else the module's ``loss_fn`` attribute
    (evaluated as loss_fn(module(inputs), targets)); else the module's own ``training_step``
    (:class:`~torch_landscape.probe_data.TrainingStepLoss`), which a module with manual optimisation cannot
    lend: its training step steps the optimizers."""
    if loss is not None:
        return None, loss
    candidate = loss_fn if loss_fn is not None else getattr(pl_module, "loss_fn", None)
    has_forward = type(pl_module).forward.__qualname__ != "LightningModule.forward"  # either namespace's
    if loss_fn is not None and not has_forward:
        raise LandscapeConfigError(
            f"{name} evaluates loss_fn(module(inputs), targets), but {type(pl_module).__name__} defines no "
            f"forward(); define forward(inputs), or pass loss=lambda module, batch: ... to {name}."
        )
    if callable(candidate) and has_forward:
        return candidate, None
    if not getattr(pl_module, "automatic_optimization", True):
        raise LandscapeConfigError(
            f"{name} cannot evaluate {type(pl_module).__name__}.training_step as the objective: it uses manual "
            f"optimisation, so its training step steps the optimizers. Pass {name}(loss_fn=nn.MSELoss()) (any "
            "mean-reduced loss_fn(outputs, targets)) or loss=lambda module, batch: ... (a mean over the batch)."
        )
    if type(pl_module).training_step.__qualname__ == "LightningModule.training_step":
        raise LandscapeConfigError(
            f"{name} needs the training loss, and {type(pl_module).__name__} defines no training_step: pass "
            f"{name}(loss_fn=...) or loss=lambda module, batch: ..."
        )
    return None, TrainingStepLoss()


def check_reference(pl_module: Any, reference: Any, names: Any) -> None:
    """That ``reference`` fits the module: a flat θ* of θ's length, or a model of the same architecture."""
    trainable = {
        n: p for n, p in pl_module.named_parameters() if (n in names if names is not None else p.requires_grad)
    }
    if isinstance(reference, Tensor):
        size = sum(p.numel() for p in trainable.values())
        if reference.numel() != size:
            raise LandscapeConfigError(
                f"reference is a tensor of {reference.numel()} entries but θ has {size}; pass the flat "
                "parameters of a model like the student (torch.cat of its parameters) or the model itself."
            )
        return
    if not isinstance(reference, nn.Module):
        raise LandscapeConfigError(
            f"reference must be an nn.Module like the student or a flat tensor, got {type(reference).__name__}."
        )
    if is_shallow(pl_module):
        try:
            shallow_reference(find_shallow(pl_module), reference, torch.float64, torch.device("cpu"))
        except ValueError as error:
            raise LandscapeConfigError(f"reference= does not fit the model: {error}") from None
        return
    theirs = dict(reference.named_parameters())
    wrong = [n for n, p in trainable.items() if n not in theirs or theirs[n].shape != p.shape]
    if wrong:
        raise LandscapeConfigError(
            f"reference= does not fit the model: it lacks parameters of the model's shapes {wrong}; pass a "
            "model of the same architecture as the LightningModule (same parameter names and shapes)."
        )


def draw_probe_set(trainer: Any, name: str, probe_size: int, seed: int) -> list[Any]:
    """``probe_size`` samples of the training dataset, indexed with a private generator.

    Indexing the dataset (rather than iterating the loader) leaves the sampler and the global random
    streams alone, and gives every DDP rank the same probe set; the RNG state is restored anyway in
    case the dataset's ``__getitem__`` draws random numbers (augmentations).
    """
    loader = trainer.train_dataloader
    dataset = getattr(loader, "dataset", None)
    map_style = hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
    if dataset is None or not map_style or isinstance(dataset, torch.utils.data.IterableDataset):
        found = type(dataset).__name__ if dataset is not None else type(loader).__name__
        raise LandscapeConfigError(
            f"{name} draws its probe set from the training DataLoader's dataset, which must be map-style "
            f"(with __len__ and __getitem__); got {found}. Pass {name}(probe_data=(inputs, targets)) or "
            "a DataLoader of probe batches."
        )
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(dataset), generator=generator)[:probe_size].sort().values.tolist()
    collate = getattr(loader, "collate_fn", None) or torch.utils.data.default_collate
    with preserved_rng([trainer.lightning_module.device]):
        # One batch: every extra batch costs the diagnostics a forward call (32 of size 64 made a
        # light snapshot of the demo network 5 times slower).
        return [collate([dataset[i] for i in indices])]


def process_group(trainer: Any) -> Any:
    """All ranks of a multi-process run (DDP): each then holds a shard of the probe set and takes part in
    every evaluation (:class:`~torch_landscape.probe.LandscapeProbe`'s ``process_group``); None in one
    process."""
    if (
        getattr(trainer, "world_size", 1) > 1
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    ):
        return torch.distributed.group.WORLD
    return None


def horizon(trainer: Any) -> int | None:
    """The step at which training will end, when Lightning knows it (max_steps or max_epochs × batches)."""
    try:
        total = trainer.estimated_stepping_batches
    except Exception:  # Lightning cannot size some loaders (e.g. iterable datasets without __len__)
        return None
    return int(total) if math.isfinite(total) and total > 0 else None


def optimizer(trainer: Any) -> torch.optim.Optimizer | None:
    """The optimizer that steps the model: the only one configured, else None (which one sets the step size
    is then ambiguous)."""
    optimizers = trainer.optimizers
    return optimizers[0] if len(optimizers) == 1 else None


def agreement(trainer: Any) -> Any:
    """Rank zero's decision on every rank: the schedule is decided from rank zero's clock and budget."""

    def agree(decide: Any) -> Any:
        return trainer.strategy.broadcast(decide() if trainer.is_global_zero else None, src=0)

    return agree


def beyond_pairs(data: Any, pl_module: Any) -> bool:
    """Whether the probe batches hold more than (inputs, targets): a dict, or a third item such as sample
    weights (judged by the first batch)."""
    if isinstance(data, tuple) and all(isinstance(item, Tensor) for item in data):
        first = data
    else:
        with preserved_rng([pl_module.device]):
            first = next(iter(data), ())
    return isinstance(first, dict) or (isinstance(first, (tuple, list)) and len(first) > 2)
