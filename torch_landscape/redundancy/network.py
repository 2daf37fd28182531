"""The network being merged, its inputs and probe points, and merge-and-verify (docs/theory.md §4.1, §4.4)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..curvature.shallow import ShallowNetwork

#: Elements per block of neuron activations held at once (64 MiB in float64).
_BLOCK = 1 << 23


# ----------------------------------------------------------------------------------------------------------
# Inputs


def _inputs(data: Any, d: int, net: ShallowNetwork, device: torch.device) -> tuple[Tensor | None, Tensor | None]:
    """The training inputs as an n×d float64 tensor and the targets as n×q (each None where absent)."""
    if data is None:
        return None, None
    items: list[Sequence[Any]]
    if isinstance(data, Tensor):
        items = [(data,)]
    elif isinstance(data, (tuple, list)) and 1 <= len(data) <= 2 and all(isinstance(t, Tensor) for t in data):
        items = [tuple(data)]  # (X, y), or the one-tuple (X,) that a TensorDataset of inputs yields
    elif isinstance(data, Iterable):
        items = list(data)
        if not items or not all(isinstance(item, (tuple, list)) and len(item) >= 1 for item in items):
            raise TypeError("data must be inputs X, a batch (X, y) or (X,), or an iterable of such batches.")
    else:
        raise TypeError(
            f"data must be inputs X, a batch (X, y) or (X,), or an iterable of batches, got {type(data).__name__}."
        )
    batches = [item[0] for item in items]
    targets = None
    if all(len(item) >= 2 and isinstance(item[1], Tensor) for item in items):
        targets = torch.cat([item[1].detach().reshape(item[1].shape[0], -1) for item in items])
        targets = targets.to(device=device, dtype=torch.float64)
    rows = []
    for index, x in enumerate(batches):
        x = net.features(x) if isinstance(x, Tensor) else x
        if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[-1] != d:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"inputs of batch {index} have shape {shape}, but the hidden layer {net.hidden_name!r} "
                f"({net.hidden}) takes {d} features: pass inputs of shape (n, {d}) (the inputs of the hidden "
                "layer; flatten images first, or point layers= at the right layers)."
            )
        rows.append(x.detach().reshape(-1, d).to(device=device, dtype=torch.float64))
    inputs = torch.cat(rows)
    if inputs.shape[0] == 0:
        raise ValueError("data has no samples.")
    if not torch.isfinite(inputs).all():
        raise FloatingPointError("the inputs contain NaN or inf.")
    if targets is not None and targets.shape[0] != inputs.shape[0]:
        targets = None  # not per-sample targets of these inputs: judge merges without the residual
    return inputs, targets


def _probe_points(
    given: Tensor | None, inputs: Tensor | None, count: int, seed: int, d: int, device: torch.device
) -> Tensor:
    """Function-level probe set X_p (§4.1): given, or N(mean X, cov X) (standard normal without data).

    The covariance's eigenvalues are floored at 1e-2 of their mean so that data confined to a subspace
    still gets probed off it: a function-level claim must hold off the data's affine hull too.
    """
    if given is not None:
        if given.ndim != 2 or given.shape[1] != d:
            raise ValueError(f"probe_points must have shape (N, {d}), got {tuple(given.shape)}.")
        return given.detach().to(device=device, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, d, generator=generator, dtype=torch.float64)
    if inputs is None:
        return noise.to(device)
    inputs = inputs.cpu().double()  # a hidden layer's inputs in the objective's dtype (float32) included
    centred = inputs - inputs.mean(dim=0)
    covariance = centred.T @ centred / max(inputs.shape[0] - 1, 1)
    values, vectors = torch.linalg.eigh(covariance)
    floor = 1e-2 * float(values.clamp_min(0).mean())
    values = values.clamp_min(floor if floor > 0 else 1.0)
    return (inputs.mean(dim=0) + (noise * values.sqrt()) @ vectors.T).to(device)


# ----------------------------------------------------------------------------------------------------------
# The working network and merges


@dataclass(frozen=True)
class _Merge:
    """θ → θ′: remove neurons, add δa to others' output weights, append new neurons, add δc to c."""

    rule: str
    score: float
    involved: tuple[int, ...]
    remove: tuple[int, ...] = ()
    update: tuple[int, ...] = ()
    delta_a: Tensor | None = None  # q × len(update)
    new_u: Tensor | None = None  # k × (d+1), bias column zero without hidden bias
    new_a: Tensor | None = None  # q × k
    delta_c: Tensor | None = None  # q
    detail: str = ""

    @property
    def width_reduction(self) -> int:
        return len(self.remove) - (0 if self.new_u is None else self.new_u.shape[0])


class _Network:
    """The network being merged: neurons u_i = (w_i, b_i) as rows of U, output weights A, output bias c.

    Neurons are never reordered: merges mask them out or append new ones, so indices stay valid.
    Per neuron it caches RMS(φ_i) over all points and min/max of z_i over the data, which the per-neuron
    scores need.
    """

    def __init__(
        self,
        U: Tensor,
        A: Tensor,
        c: Tensor | None,
        sigma: Callable[[Tensor], Tensor],
        data: Tensor | None,
        probes: Tensor,
    ) -> None:
        self.U, self.A, self.c, self.sigma = U, A, c, sigma
        self.data, self.probes = data, probes
        m = U.shape[0]
        self.alive = torch.ones(m, dtype=torch.bool, device=U.device)
        self.sources: list[tuple[int, ...]] = [(i,) for i in range(m)]
        self.built = [False] * m
        self.a_changed = [False] * m
        self.rms, self.zmin, self.zmax, self.initial_outputs = self._statistics(U, A)

    @property
    def indices(self) -> Tensor:
        return torch.nonzero(self.alive).flatten()

    @property
    def width(self) -> int:
        return int(self.alive.sum())

    @property
    def training_inputs(self) -> Tensor:
        """The data points X (n × d): the data-level rules run only when there are any."""
        if self.data is None:
            raise RuntimeError("the data-level rules need the training inputs, and none were given")
        return self.data

    def pre(self, points: Tensor, rows: Tensor) -> Tensor:
        """z = X w_iᵀ + b_i for the neurons ``rows`` (N × k)."""
        U = self.U[rows]
        return points @ U[:, :-1].T + U[:, -1]

    def outputs(self, points: Tensor) -> Tensor:
        """f(X) of the current network, in blocks of points."""
        rows = self.indices
        size = max(1, _BLOCK // max(len(rows), 1))
        parts = [
            self.sigma(self.pre(points[s : s + size], rows)) @ self.A[:, rows].T for s in range(0, len(points), size)
        ]
        out = torch.cat(parts) if parts else points.new_zeros(0, self.A.shape[0])
        return out + self.c if self.c is not None else out

    def _statistics(self, U: Tensor, A: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """RMS(φ_i) over data and probes, min and max of z_i over the data, and (given A) the outputs f on
        both point sets — all from one pass over the points."""
        m = U.shape[0]
        squares = U.new_zeros(m)
        zmin = U.new_full((m,), math.inf)
        zmax = U.new_full((m,), -math.inf)
        outputs: dict[str, Tensor] = {}
        size = max(1, _BLOCK // max(m, 1))
        for name, points in (("data", self.data), ("probes", self.probes)):
            if points is None:
                continue
            parts = []
            for s in range(0, len(points), size):
                z = points[s : s + size] @ U[:, :-1].T + U[:, -1]
                if name == "data":
                    zmin = torch.minimum(zmin, z.min(dim=0).values)
                    zmax = torch.maximum(zmax, z.max(dim=0).values)
                phi = self.sigma(z)
                squares += torch.einsum("ni,ni->i", phi, phi)
                if A is not None:
                    parts.append(phi @ A.T)
            if A is not None:
                outputs[name] = torch.cat(parts) + self.c if self.c is not None else torch.cat(parts)
        total = sum(len(points) for points in (self.data, self.probes) if points is not None)
        return (squares / total).sqrt(), zmin, zmax, outputs

    def change(self, merge: _Merge, points: Tensor) -> Tensor:
        """f_θ′(X) − f_θ(X) for θ′ = merge(θ), from the neurons the merge touches only."""
        delta = points.new_zeros(points.shape[0], self.A.shape[0])
        if merge.remove:
            rows = torch.tensor(merge.remove, device=points.device)
            delta -= self.sigma(self.pre(points, rows)) @ self.A[:, rows].T
        if merge.update:
            assert merge.delta_a is not None, "a merge that updates output weights carries their change δa"
            rows = torch.tensor(merge.update, device=points.device)
            delta += self.sigma(self.pre(points, rows)) @ merge.delta_a.T
        if merge.new_u is not None and merge.new_u.shape[0]:
            assert merge.new_a is not None, "a merge that adds neurons carries their output weights"
            delta += self.sigma(points @ merge.new_u[:, :-1].T + merge.new_u[:, -1]) @ merge.new_a.T
        if merge.delta_c is not None:
            delta += merge.delta_c
        return delta

    def apply(self, merge: _Merge) -> None:
        if merge.update:
            assert merge.delta_a is not None, "a merge that updates output weights carries their change δa"
            rows = torch.tensor(merge.update, device=self.U.device)
            self.A[:, rows] += merge.delta_a
            for i in merge.update:
                self.a_changed[i] = True
        if merge.remove:
            self.alive[torch.tensor(merge.remove, device=self.U.device)] = False
        if merge.new_u is not None and merge.new_u.shape[0]:
            assert merge.new_a is not None, "a merge that adds neurons carries their output weights"
            k = merge.new_u.shape[0]
            rms, zmin, zmax, _ = self._statistics(merge.new_u)
            self.U = torch.cat([self.U, merge.new_u])
            self.A = torch.cat([self.A, merge.new_a], dim=1)
            self.alive = torch.cat([self.alive, self.alive.new_ones(k)])
            self.rms, self.zmin = torch.cat([self.rms, rms]), torch.cat([self.zmin, zmin])
            self.zmax = torch.cat([self.zmax, zmax])
            source = tuple(sorted({n for i in merge.involved for n in self.sources[i]}))
            self.sources += [source] * k
            self.built += [True] * k
            self.a_changed += [False] * k
        if merge.delta_c is not None:
            assert self.c is not None, "the rules change c only when the output layer has a bias (ctx.has_c)"
            self.c = self.c + merge.delta_c

    def weights(self, has_bias: bool) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        rows = self.indices
        U = self.U[rows]
        c = None if self.c is None else self.c.clone()
        return U[:, :-1].clone(), U[:, -1].clone() if has_bias else None, self.A[:, rows].clone(), c


class _Verifier:
    """Merge-and-verify (§4.4): accept a merge only while the accumulated output change stays within tolerance."""

    def __init__(self, sets: list[tuple[Tensor, float, Tensor]], fit: tuple[float, float, float]) -> None:
        self.sets = sets  # (points, tolerance, accumulated change f_θ′ − f_θ on the points)
        # RMS residual on the data (0 without targets), RMS(f − f̄), and the near-redundancy threshold
        self.residual, self.scale, self.near_rtol = fit

    def check(self, network: _Network, merge: _Merge) -> tuple[bool, float, float]:
        """(accepted, max |change| of this merge, its fit change (Δ² + 2Δr)/s² with Δ its largest RMS change)."""
        changes = [network.change(merge, points) for points, _, _ in self.sets]
        size = max((float(change.abs().max()) if change.numel() else 0.0) for change in changes)
        rms = max((float(change.square().sum(dim=1).mean().sqrt()) if change.numel() else 0.0) for change in changes)
        fit_change = (rms * rms + 2 * rms * self.residual) / self.scale**2
        ok = all(
            (drift + change).abs().max() <= tolerance if change.numel() else True
            for (_, tolerance, drift), change in zip(self.sets, changes, strict=True)
        )
        if ok:
            for (_, _, drift), change in zip(self.sets, changes, strict=True):
                drift += change
        return ok, size, fit_change

    @property
    def tolerance(self) -> float:
        return min(tolerance for _, tolerance, _ in self.sets)

    @property
    def input_radius(self) -> float:
        """max ‖x̃‖ = max ‖(x, 1)‖ over the points: converts a dropped coefficient into an output bound."""
        return max(float(torch.sqrt(1 + points.square().sum(dim=1)).max()) for points, _, _ in self.sets)
