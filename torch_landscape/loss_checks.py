"""The checks an :class:`~torch_landscape.objective.Objective` makes of its loss when it is built.

The loss must be a scalar mean over samples that does not broadcast outputs against targets; where it is not
finite, :func:`non_finite_sample` finds the sample to blame, and where it is not a function of θ,
:func:`random_module` the module that draws random numbers. Each refusal names the argument and the fix.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

LossFunction = Callable[[Tensor, Tensor], Tensor]


class NonFiniteDataError(ValueError):
    """The loss is not finite at finite parameters: a sample of the data is to blame (``sample``, its index in
    batch ``batch``), or one could not be singled out (``sample`` None)."""

    def __init__(self, message: str, batch: int, sample: int | None) -> None:
        super().__init__(message)
        self.batch, self.sample = batch, sample


def loss_value(loss_fn: LossFunction, outputs: Tensor, targets: Tensor, where: str) -> Any:
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


def check_broadcast(outputs: Tensor, targets: Tensor) -> None:
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


def check_mean_reduced(loss_fn: LossFunction, outputs: Tensor, targets: Tensor, value: Tensor) -> None:
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


def non_finite_sample(loss_fn: LossFunction, inputs: Tensor, targets: Tensor, outputs: Any) -> tuple[int, str] | None:
    """(index, what is not finite) for the first sample of a batch whose input, target, model output or loss is
    not finite; None where no single sample is to blame (a loss that couples samples, outputs not per sample).

    Inputs, targets and outputs are searched row by row. The loss is searched by bisection: a per-sample mean
    over a range is finite exactly when every sample's loss in it is (barring overflow of the sum), so about
    2·log₂ n evaluations on halves of the outputs find the first sample with a non-finite loss.
    """
    n = inputs.shape[0]
    for what, tensor in (("input", inputs), ("target", targets), ("model output", outputs)):
        if isinstance(tensor, Tensor) and (tensor.is_floating_point() or tensor.is_complex()) and tensor.ndim:
            if tensor.shape[0] == n:
                rows = (~torch.isfinite(tensor.reshape(n, -1))).any(dim=1).nonzero()
                if len(rows):
                    entries = tensor[int(rows[0])].reshape(-1)
                    return int(rows[0]), f"its {what} holds {entries[~torch.isfinite(entries)][0].item()}"
    if not (isinstance(outputs, Tensor) and outputs.ndim and outputs.shape[0] == n and targets.shape[:1] == (n,)):
        return None
    low, high = 0, n
    try:
        while high - low > 1:
            middle = (low + high) // 2
            if not torch.isfinite(loss_fn(outputs[low:middle], targets[low:middle])).all():
                high = middle
            elif not torch.isfinite(loss_fn(outputs[middle:high], targets[middle:high])).all():
                low = middle
            else:
                return None  # each half finite, the whole not: the loss couples samples or its sum overflows
    except (RuntimeError, ValueError, TypeError, IndexError):
        return None  # the loss cannot be evaluated on part of a batch
    return low, "its input, target and model output are finite, but its loss is not"


def non_finite_data_error(
    loss_fn: LossFunction, inputs: Tensor, targets: Tensor, outputs: Any, batch: int, data_name: str, loss: float
) -> NonFiniteDataError:
    """The error for a loss that is not finite on batch ``batch`` at finite parameters, naming the sample to
    blame (:func:`non_finite_sample`) and the fix."""
    where = f"batch {batch} of {data_name}"
    fix = "clean the data (drop or repair that sample), or pass a probe set without it (probe_data= for the monitors)"
    found = non_finite_sample(loss_fn, inputs, targets, outputs)
    if found is None:
        return NonFiniteDataError(
            f"the loss is {loss} on {where} at finite parameters and no single sample is to blame; the "
            f"diagnostics need a finite loss: check the data and the loss for NaN/inf, then {fix}.",
            batch,
            None,
        )
    sample, what = found
    return NonFiniteDataError(
        f"sample {sample} of {where}: {what} (the loss on the batch is {loss}); the diagnostics need a finite loss: "
        f"{fix}.",
        batch,
        sample,
    )


def _snapshot(value: Any) -> Any:
    """A copy of a module's inputs or output: a later in-place operation must not change what was seen."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return [_snapshot(item) for item in value]
    if isinstance(value, dict):
        return {key: _snapshot(item) for key, item in value.items()}
    return None


def _same(first: Any, second: Any) -> bool:
    if isinstance(first, Tensor) and isinstance(second, Tensor):
        return first.shape == second.shape and bool(torch.equal(first, second))
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(_same(a, b) for a, b in zip(first, second, strict=True))
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(_same(first[key], second[key]) for key in first)
    return first is None and second is None


def random_module(model: nn.Module, forward: Callable[[], Any]) -> str | None:
    """The name of the module that draws random numbers in ``forward()``: over two runs, the first module (in
    the order their forward passes end, innermost first) whose output differs while its inputs agree; ""
    for ``model`` itself. None where every module agrees: the randomness is not in the model.

    Call it under preserved random streams: it runs ``forward`` twice.
    """
    names = {module: name for name, module in model.named_modules()}
    runs: list[list[tuple[str, Any, Any]]] = [[], []]
    for record in runs:

        def hook(module: nn.Module, inputs: Any, output: Any, record: list = record) -> None:
            record.append((names[module], _snapshot(inputs), _snapshot(output)))

        handles = [module.register_forward_hook(hook) for module in names]
        try:
            forward()
        finally:
            for handle in handles:
                handle.remove()
    for (name, inputs, output), (_, other_inputs, other_output) in zip(*runs, strict=False):
        if _same(inputs, other_inputs) and not _same(output, other_output):
            return name
    return None


def randomness_cause(model: nn.Module, forward: Callable[[], Any]) -> str:
    """Why two runs of ``forward()`` (the model on one batch) and the loss differ, and the fix, for a message:
    the module that draws random numbers (:func:`random_module`), or the loss when the model's outputs agree."""
    name = random_module(model, forward)
    if name is None:
        return "the model's outputs agree, so loss_fn draws random numbers: make the loss deterministic"
    where = "the model's forward itself (with loss=, loss(model, batch))" if name == "" else f"module {name!r}"
    return (
        f"{where} draws random numbers in eval mode (its output differs for the same input): e.g. dropout forced "
        "on (nn.Dropout called with training=True, or F.dropout(x, p) without training=self.training) or added "
        "noise; make it deterministic in eval mode"
    )
