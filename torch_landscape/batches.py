"""What the objective reads: batches of (inputs, targets) tensors, checked and listed before anything is
computed, and uniform subsets of them for a probe set sized to a budget."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]
Data = Batch | Iterable[Batch]


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
    """``data`` (one batch or an iterable of batches) as a list of (inputs, targets) tensor pairs. Refuses what
    is not such data, naming ``name`` and the fix: batches of other structures (dicts, or a third item such as
    sample weights, which ``loss_fn(outputs, targets)`` would silently ignore) need ``loss(model, batch)``."""
    check_data(data, name)
    custom = "pass loss=lambda model, batch: ... that computes the loss from the whole batch"
    if isinstance(data, (tuple, list)) and len(data) == 2:
        inputs, targets = data
        if isinstance(inputs, Tensor) and isinstance(targets, Tensor):
            return [(inputs, targets)]
    batches = []
    for index, batch in enumerate(data):
        if isinstance(batch, dict):
            raise TypeError(
                f"batch {index} of {name} is a dict (keys {sorted(map(str, batch))}), not (inputs, targets); {custom}."
            )
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            size = f" of {len(batch)} element(s)" if isinstance(batch, (tuple, list)) else ""
            raise TypeError(
                f"batch {index} of {name} is {_describe(batch)}{size}; every batch must be (inputs, targets) "
                f"(a DataLoader over TensorDataset(inputs, targets) yields such batches), or {custom}."
            )
        if len(batch) > 2:
            raise TypeError(
                f"batch {index} of {name} has {len(batch)} items; loss_fn(outputs, targets) would ignore all but the "
                f"first two (sample weights?): {custom}, or pass (inputs, targets) batches."
            )
        if not all(isinstance(t, Tensor) for t in batch[:2]):
            raise TypeError(
                f"batch {index} of {name} holds {_describe(batch[0])} and {_describe(batch[1])}; inputs and targets "
                f"must be torch tensors (convert with torch.as_tensor), or {custom}."
            )
        batches.append((batch[0], batch[1]))
    return batches


def subsample_batches(data: Data, max_samples: int, seed: int = 0, name: str = "data") -> list[Batch]:
    """At most ``max_samples`` samples of ``data``, drawn uniformly without replacement, in their batches.

    The kept samples stay in their batches and their order; batches left empty are dropped. The objective on
    the result, Σ_b (n′_b/n′)·loss_fn(f_θ(x′_b), y′_b), is then the mean over the n′ kept samples (for a
    per-sample mean loss), an unbiased estimate of the mean over all n. The indices come from
    ``torch.randperm`` with a private generator seeded with ``seed``: the same data and seed give the same
    subset, and no global random stream moves. With n ≤ ``max_samples`` every batch is returned as it is.
    """
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_samples must be a positive integer (samples to keep), got {max_samples!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}.")
    batches = as_batches(data, name)
    sizes = [len(x) for x, _ in batches]
    total = sum(sizes)
    if total <= max_samples:
        return batches
    generator = torch.Generator().manual_seed(seed)
    kept = torch.randperm(total, generator=generator)[:max_samples].sort().values
    bounds = torch.tensor([0, *np.cumsum(sizes).tolist()])
    subset = []
    for (x, y), start, stop in zip(batches, bounds[:-1], bounds[1:], strict=True):
        rows = kept[(kept >= start) & (kept < stop)] - start
        if len(rows):
            subset.append((x[rows.to(x.device)], y[rows.to(y.device)]))
    return subset
