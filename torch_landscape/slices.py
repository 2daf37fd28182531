"""Loss slices: the loss along the directions that matter, L(θ + s·u) and L(θ + s·u + t·v) on a grid.

The directions are the ones the other diagnostics single out: the top and bottom Hessian eigenvectors
(with their eigenvalues and error bounds, so the slice can be set beside its quadratic model
L(θ) + s·∇L·u + ½λs²), a null direction (e.g. one predicted by a redundancy), the segment toward a
reference θ* (after neuron alignment), and a random direction normalised per neuron (filter
normalisation, Li et al. 2018) for comparison with the usual pictures.

All grid points are evaluated in batched passes over the probe data (``torch.func.vmap`` over a
``functional_call`` of :class:`~torch_landscape.objective.Objective`), as many points per pass as a
memory budget allows. Nothing here writes to the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import vmap

from .convexity.one_point import reference_point
from .curvature.eigen import Spectrum, hessian_eigenvalues
from .curvature.operators import HessianOperator, available_memory
from .objective import Objective

Source = Objective | HessianOperator
Grid = Tensor | Sequence[float] | tuple[Tensor | Sequence[float], Tensor | Sequence[float]]

#: Cost of one grid point in gradient-equivalents (one gradient = one forward and one backward pass over
#: the probe data). A point is one forward pass. Measured by benchmarks/slices.py (2 shared CPU cores,
#: float64, interleaved with gradients in one process, medians of 5 rounds over three runs): 0.38 to 0.65
#: on the 52k net (n = 8192), where a whole landscape_slices call came to 0.59 per point with its
#: overheads; 0.03 on the demo net (P = 21, n = 500), where batching the points in vmapped passes saves
#: the per-call overhead (7-8x). The default is the large network's, so a budget is not overrun there.
POINT_COST = 0.6

#: Every reference direction's name starts with this (the figures mark θ* at its end, s = 1).
REFERENCE_NAME = "toward the reference"

#: Default memory of one batched pass (the per-point intermediates times the points per pass). On a CPU,
#: batching saves the per-call overhead of small networks (8x on the demo net) but no arithmetic, and a
#: working set far beyond the caches made the 52k net's points ~1.4x slower (benchmarks/slices.py); on the
#: probe-set nets of issue 25 (P = 51, 321, 2,561; 2,048 samples, float64) a point cost 0.35-0.62
#: gradients in 8 MiB passes and up to 0.92 in 64 MiB ones, over POINT_COST. A GPU gains from large
#: passes, up to 1 GiB or an eighth of its free memory.
CPU_PASS_MEMORY = 8 << 20
GPU_PASS_MEMORY = 1 << 30


@dataclass(frozen=True)
class Direction:
    """A direction u in θ's flat layout and what it is.

    Attributes
    ----------
    name : str
        What the direction is, e.g. "top eigenvector" or "toward the reference (aligned)".
    vector : Tensor or None
        u, of length P, on the objective's device. Eigenvector and null directions have ‖u‖ = 1; the
        reference direction is θ* − θ, so the slice reaches θ* at s = 1. None once dropped
        (:meth:`LandscapeSlices.without_vectors`), to keep a history of slices small.
    curvature : float or None
        uᵀHu, the second derivative of s ↦ L(θ + s·u) at 0, when known: the eigenvalue λ for an
        eigenvector (the Rayleigh quotient of a Ritz vector is its Ritz value).
    error_bound : float or None
        A bound on |λ_computed − λ_true| for an eigenvector (the spectrum's residual bound); for a
        direction given with an operator, ‖Hu − (uᵀHu)u‖, which bounds the distance from uᵀHu to the
        nearest eigenvalue of H.
    """

    name: str
    vector: Tensor | None = field(repr=False)
    curvature: float | None = None
    error_bound: float | None = None


@dataclass(frozen=True)
class LossSlice:
    """L(θ + s·u) (1-D) or L(θ + s·u + t·v) (2-D) on a grid, see :func:`loss_slice`.

    Attributes
    ----------
    coordinates : tuple[Tensor, ...]
        s (and t): the grid coefficients of each direction, float64, CPU.
    values : Tensor
        float64, CPU: ``values[i] = L(θ + s_i u)``, or ``values[i, j] = L(θ + s_i u + t_j v)``.
    directions : tuple[Direction, ...]
        u (and v), as used.
    base_loss : float
        L(θ).
    slopes : tuple[float, ...]
        ∇L(θ)·u (and ∇L(θ)·v): the first-order terms.
    num_evaluations : int
        Grid points evaluated (each is one forward pass over the probe data).
    """

    coordinates: tuple[Tensor, ...]
    values: Tensor
    directions: tuple[Direction, ...]
    base_loss: float
    slopes: tuple[float, ...]
    num_evaluations: int

    @property
    def names(self) -> tuple[str, ...]:
        """The directions' names."""
        return tuple(direction.name for direction in self.directions)

    def quadratic_model(self, axis: int = 0) -> Tensor:
        """The second-order model along one direction on its grid: L(θ) + (∇L·u) s + ½ (uᵀHu) s².

        Raises ValueError if that direction's curvature uᵀHu is unknown.
        """
        direction = self.directions[axis]
        if direction.curvature is None:
            raise ValueError(f"the curvature along {direction.name!r} is unknown; it has no quadratic model.")
        s = self.coordinates[axis]
        return self.base_loss + self.slopes[axis] * s + 0.5 * direction.curvature * s**2

    def __str__(self) -> str:
        shape = "×".join(str(len(c)) for c in self.coordinates)
        spans = ", ".join(
            f"{d.name} in [{float(c[0]):.3g}, {float(c[-1]):.3g}]"
            for d, c in zip(self.directions, self.coordinates, strict=True)
        )
        low, high = float(self.values.min()), float(self.values.max())
        return f"LossSlice({shape} grid: {spans}; L(θ) = {self.base_loss:.6g}, range [{low:.6g}, {high:.6g}])"


def _objective(source: Source) -> Objective:
    if isinstance(source, HessianOperator):
        return source.objective
    if isinstance(source, Objective):
        return source
    raise TypeError(
        f"pass an Objective or a HessianOperator, got {type(source).__name__}; build one with "
        "Objective(model, loss_fn, data)."
    )


def _unit(vector: Tensor, objective: Objective, what: str) -> Tensor:
    if not isinstance(vector, Tensor) or vector.shape != (objective.num_parameters,):
        shape = tuple(vector.shape) if isinstance(vector, Tensor) else type(vector).__name__
        raise ValueError(f"{what} must be a vector of the {objective.num_parameters} entries of θ, got {shape}.")
    vector = vector.detach().to(device=objective.device, dtype=objective.dtype)
    norm = torch.linalg.vector_norm(vector)
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError(f"{what} is zero or not finite; it has no direction.")
    return vector / norm


def eigenvector_direction(
    source: Spectrum | HessianOperator, which: Literal["largest", "smallest"] = "largest"
) -> Direction:
    """The top (``which="largest"``) or bottom Hessian eigenvector, with its eigenvalue and error bound.

    ``source`` is a :class:`~torch_landscape.curvature.eigen.Spectrum` computed with ``return_eigenvectors=True``
    (its largest or smallest computed pair), or a :class:`~torch_landscape.curvature.operators.HessianOperator`, for
    which that one pair is computed (:func:`~torch_landscape.curvature.eigen.hessian_eigenvalues`, k = 1).
    """
    if which not in ("largest", "smallest"):
        raise ValueError(f"which must be 'largest' or 'smallest', got {which!r}.")
    if isinstance(source, HessianOperator):
        source = hessian_eigenvalues(source, k=1, which=which, return_eigenvectors=True)
    elif not isinstance(source, Spectrum):
        raise TypeError(f"source must be a Spectrum or a HessianOperator, got {type(source).__name__}.")
    if source.eigenvectors is None:
        raise ValueError("the spectrum has no eigenvectors; compute it with return_eigenvectors=True.")
    column = -1 if which == "largest" else 0
    return Direction(
        name="top eigenvector" if which == "largest" else "bottom eigenvector",
        vector=source.eigenvectors[:, column],
        curvature=float(source.eigenvalues[column]),
        error_bound=float(source.error_bounds[column]),
    )


def null_direction(
    vector: Tensor, source: Source, operator: HessianOperator | None = None, name: str = "null direction"
) -> Direction:
    """A given direction (e.g. a predicted null vector of a redundancy), normalised to ‖u‖ = 1.

    With ``operator`` its curvature uᵀHu and the residual ‖Hu − (uᵀHu)u‖ (one Hessian-vector product)
    are recorded, so the slice can be checked against the quadratic model.
    """
    unit = _unit(vector, _objective(source), "the null vector")
    if operator is None:
        return Direction(name, unit)
    image = operator.matvec(unit)
    curvature = float(unit @ image)
    return Direction(name, unit, curvature, float(torch.linalg.vector_norm(image - curvature * unit)))


def reference_direction(source: Source, reference: nn.Module | Tensor, align: bool = True) -> Direction:
    """θ* − θ toward ``reference`` (a model of the same architecture or a flat θ*), so s = 1 is θ*.

    With ``align`` the reference's hidden neurons are first matched to the model's (see
    :func:`~torch_landscape.convexity.reference_point`): the segment then joins θ to the nearest
    realisation of the reference's function, not to an arbitrary permutation of it. When θ is at the
    reference the vector is (nearly) zero and a slice along it is constant.
    """
    objective = _objective(source)
    tensors = (
        [reference]
        if isinstance(reference, Tensor)
        else list(reference.parameters())
        if isinstance(reference, nn.Module)
        else []
    )
    if not all(torch.isfinite(t).all() for t in tensors):
        raise ValueError("the reference has NaN or inf entries; there is no segment to slice along.")
    theta_star, alignment = reference_point(objective, reference, align)
    vector = theta_star - objective.theta
    return Direction(REFERENCE_NAME + (" (aligned)" if alignment is not None else ""), vector)


def random_direction(source: Source, seed: int = 0, include_biases: bool = False) -> Direction:
    """A Gaussian direction normalised per neuron (filter normalisation, Li et al. 2018).

    For every parameter tensor with two or more dimensions each output row (index along dimension 0:
    a neuron's incoming weights, a convolution filter) is scaled to the norm of the same row of θ,
    d_r ← d_r ‖θ_r‖ / ‖d_r‖, so the step is relative to each neuron's own scale and the picture is
    not distorted by rescaling symmetries. One-dimensional parameters (biases, normalisation scales)
    are left at zero, as in Li et al.; with ``include_biases`` each entry is a row of its own,
    d_i = ±|θ_i|. The generator is private (seeded by ``seed``): the global RNG is untouched.
    """
    objective = _objective(source)
    generator = torch.Generator().manual_seed(seed)
    pieces = []
    for _name, theta in objective.unflatten(objective.theta).items():
        if theta.ndim <= 1 and not include_biases:
            pieces.append(torch.zeros_like(theta))
            continue
        rows = theta.reshape(theta.shape[0], -1) if theta.ndim else theta.reshape(1, 1)
        noise = torch.randn(rows.shape, generator=generator, dtype=torch.float64).to(rows)
        scale = torch.linalg.vector_norm(rows, dim=1, keepdim=True) / torch.linalg.vector_norm(
            noise, dim=1, keepdim=True
        )
        pieces.append((noise * scale).reshape(theta.shape))
    vector = objective.flatten(pieces)
    if not vector.abs().max() > 0:
        raise ValueError("every weight row of θ is zero (or θ has only biases); pass include_biases=True.")
    return Direction("random, filter-normalised", vector)


def grid_size(
    budget: float, dimensions: int = 1, *, point_cost: float = POINT_COST, minimum: int = 5, maximum: int = 101
) -> int:
    """Points per axis of a slice whose evaluation costs at most ``budget`` gradient-equivalents.

    The largest odd m ≤ ``maximum`` with m^dimensions · ``point_cost`` ≤ budget (odd so that θ itself,
    s = 0, is a grid point), but at least ``minimum`` (fewer points draw no curve; the caller that
    cannot afford ``minimum^dimensions`` points should skip the slice). :func:`grid_cost` is the cost.
    """
    if dimensions not in (1, 2):
        raise ValueError(f"dimensions must be 1 or 2, got {dimensions!r}.")
    if point_cost <= 0 or not math.isfinite(budget) or budget < 0:
        raise ValueError(f"budget must be finite and >= 0 and point_cost > 0, got {budget!r} and {point_cost!r}.")
    if minimum < 1 or maximum < minimum:
        raise ValueError(f"need 1 <= minimum <= maximum, got minimum={minimum}, maximum={maximum}.")
    # The small epsilon keeps an exact power (budget = 9·cost, 2-D) from rounding down to 1.
    points = int((budget / point_cost) ** (1.0 / dimensions) + 1e-9)
    points = min(points, maximum)
    points -= 1 - points % 2
    return max(points, minimum)


def grid_cost(points: int, dimensions: int = 1, *, point_cost: float = POINT_COST) -> float:
    """Gradient-equivalents of a slice of ``points`` per axis: points^dimensions · ``point_cost``."""
    return points**dimensions * point_cost


def _bytes_per_point(objective: Objective) -> int:
    """Memory of one grid point in a batched pass: θ itself plus the intermediates of the loss on the
    largest batch (the batches run one after the other, so only one batch's are alive at a time).

    The intermediates are counted as the tensors autograd saves for the backward pass of that loss, which
    are the forward's activations (within 0.4 % of every operator's outputs on a tanh net; a dispatch mode
    that counts those imports torch's compiler stack, 0.3 s to seconds, on first use)."""
    largest = max(objective.batches, key=lambda batch: batch[0].shape[0])
    saved = [0]

    def count(tensor: Tensor) -> Tensor:
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    theta = objective.theta.detach().requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
        objective.loss_fn(objective.outputs(theta, largest[0]), largest[1])
    return saved[0] + objective.num_parameters * objective.theta.element_size()


def _axes(grid: Grid, count: int) -> tuple[Tensor, ...]:
    per_axis = (
        isinstance(grid, tuple)
        and len(grid) == count
        and all(isinstance(g, Tensor) and g.ndim == 1 or isinstance(g, (list, tuple)) for g in grid)
    )
    axes = tuple(grid) if per_axis else (grid,) * count
    out = []
    for axis in axes:
        values = torch.as_tensor(axis, dtype=torch.float64).detach().cpu()
        if values.ndim != 1 or not len(values) or not torch.isfinite(values).all():
            raise ValueError(
                "grid must be a non-empty 1-D sequence of finite coefficients (e.g. torch.linspace(-1, 1, 21)), "
                "or a tuple of two such, one per direction."
            )
        out.append(values)
    return tuple(out)


def _as_directions(
    directions: Direction | Tensor | Sequence[Direction | Tensor], size: int
) -> tuple[tuple[Direction, ...], list[Tensor]]:
    """One or two :class:`Direction` s of ``size`` entries (bare tensors get the names "direction i"), and
    their vectors."""
    if isinstance(directions, (Direction, Tensor)):
        directions = (directions,)
    named = tuple(
        d if isinstance(d, Direction) else Direction(f"direction {i + 1}", d) for i, d in enumerate(directions)
    )
    if len(named) not in (1, 2):
        raise ValueError(f"pass one direction (a 1-D slice) or two (a 2-D slice), got {len(named)}.")
    vectors = []
    for direction in named:
        if not isinstance(direction.vector, Tensor) or direction.vector.shape != (size,):
            shape = tuple(direction.vector.shape) if isinstance(direction.vector, Tensor) else None
            raise ValueError(f"direction {direction.name!r} has vector {shape}; it must have the {size} entries of θ.")
        vectors.append(direction.vector)
    return named, vectors


def loss_slice(
    source: Source,
    directions: Direction | Tensor | Sequence[Direction | Tensor],
    grid: Grid,
    *,
    memory: int | None = None,
    batched: bool = True,
) -> LossSlice:
    """L(θ + s·u) on a 1-D grid of s, or L(θ + s·u + t·v) on the 2-D grid of (s, t).

    Parameters
    ----------
    source
        The objective L (an :class:`~torch_landscape.objective.Objective`, or a
        :class:`~torch_landscape.curvature.operators.HessianOperator`, whose cached loss and gradient are reused).
    directions
        u, or (u, v): :class:`Direction` s or flat tensors of length P (used as given, not normalised).
    grid
        The coefficients s (also used for t), or a tuple (s, t).
    memory
        Bytes one batched pass may use (default: 8 MiB on a CPU; on a GPU 1 GiB or an eighth of its free
        memory, whichever is less). The points per pass are memory // (θ + the intermediates of one
        forward pass), at least 1.
    batched
        Evaluate the points of a pass with ``torch.func.vmap``; ``False`` evaluates them one by one (for
        models or losses that vmap cannot trace, e.g. ones calling ``.item()``).

    Returns
    -------
    LossSlice
        The grid, the values, the directions, L(θ) and ∇L(θ)·u (and ·v). Values far out may be inf or
        NaN (a diverging loss); they are reported as they are.
    """
    objective = _objective(source)
    named, vectors = _as_directions(directions, objective.num_parameters)
    coordinates = _axes(grid, len(named))
    basis = torch.stack([v.detach().to(device=objective.device, dtype=objective.dtype) for v in vectors])
    mesh = torch.cartesian_prod(*coordinates).reshape(-1, len(named))
    if memory is None:
        cpu = objective.device.type == "cpu"
        memory = CPU_PASS_MEMORY if cpu else min(GPU_PASS_MEMORY, available_memory(objective.device) // 8)
    # Measured once per objective: every slice of one θ evaluates the same loss on the same batches.
    per_pass = max(1, int(memory // objective.memo("bytes per grid point", lambda: _bytes_per_point(objective))))
    # One point per pass (a large network on a CPU) gains nothing from vmap but its tracing overhead.
    batched = batched and per_pass > 1 and len(mesh) > 1
    evaluate = vmap(objective.loss) if batched else (lambda points: torch.stack([objective.loss(p) for p in points]))
    chunks = []
    with torch.no_grad():
        for start in range(0, len(mesh), per_pass):
            coefficients = mesh[start : start + per_pass].to(device=objective.device, dtype=objective.dtype)
            try:
                chunks.append(evaluate(objective.theta + coefficients @ basis))
            except RuntimeError as error:
                if not batched:
                    raise
                raise RuntimeError(
                    f"the loss could not be evaluated batched under torch.func.vmap ({error}); pass batched=False "
                    "for a model or loss that vmap cannot trace, or a smaller memory= if the pass ran out of memory."
                ) from error
    if isinstance(source, HessianOperator):
        loss, gradient = source.loss, source.gradient
    else:
        loss, gradient = objective.first_order()
    return LossSlice(
        coordinates=coordinates,
        values=torch.cat(chunks).detach().cpu().double().reshape(*(len(c) for c in coordinates)),
        directions=named,
        base_loss=float(loss),
        slopes=tuple(float(gradient @ row) for row in basis),
        num_evaluations=len(mesh),
    )


@dataclass(frozen=True)
class LandscapeSlices:
    """The standard pictures of one θ (see :func:`landscape_slices`).

    Attributes
    ----------
    lines : tuple[LossSlice, ...]
        1-D slices along the top and the bottom eigenvector, then the null direction if one was given.
    plane : LossSlice
        The 2-D slice on (bottom eigenvector, toward the reference), or (top, bottom) without a reference
        or when θ is at the reference.
    num_evaluations : int
        Grid points evaluated in all, each one forward pass over the probe data (about ``POINT_COST``
        gradients).
    """

    lines: tuple[LossSlice, ...]
    plane: LossSlice
    num_evaluations: int

    def without_vectors(self) -> LandscapeSlices:
        """The same slices with every direction's vector dropped (None): P floats each, which a history
        of snapshots need not keep (the figures use names, curvatures and values only)."""

        def drop(piece: LossSlice) -> LossSlice:
            return replace(piece, directions=tuple(replace(d, vector=None) for d in piece.directions))

        return replace(self, lines=tuple(drop(line) for line in self.lines), plane=drop(self.plane))


def landscape_slices(
    operator: HessianOperator,
    spectrum: Spectrum | None = None,
    *,
    reference: nn.Module | Tensor | None = None,
    null_vector: Tensor | None = None,
    align: bool = True,
    budget: float = 200.0,
    point_cost: float = POINT_COST,
    radius: float | None = None,
) -> LandscapeSlices:
    """The loss along the directions that matter at θ, within ``budget`` gradient-equivalents.

    1-D slices along the top and the bottom Hessian eigenvector (from ``spectrum`` if it has
    eigenvectors, else one k = 1 solve at both ends) and along ``null_vector`` if given, on s in
    [−r, r]; a 2-D slice on (bottom eigenvector, θ* − θ) with s in [−r, r] and t in [−0.25, 1.25] (t = 1
    is the reference, aligned with ``align``), or on (top, bottom) without a reference or when
    ‖θ* − θ‖ < 10⁻³‖θ‖.

    r = ``radius``, by default 0.3‖θ‖: the eigenvectors are unit vectors, and a step of about a third of
    the weights' size leaves the quadratic region of a trained network, which is what the picture shows.
    A quarter of the budget goes to the lines and the rest to the plane (:func:`grid_size` with
    ``point_cost``, the gradients one grid point costs; the default is conservative for small networks,
    where batching makes a point ~20 times cheaper). Computing the eigenvectors when ``spectrum`` has
    none is not counted in the budget.
    """
    objective = operator.objective
    if spectrum is None or spectrum.eigenvectors is None:
        spectrum = hessian_eigenvalues(operator, k=1, which="both", return_eigenvectors=True)
    top, bottom = eigenvector_direction(spectrum, "largest"), eigenvector_direction(spectrum, "smallest")
    size = float(torch.linalg.vector_norm(objective.theta))
    radius = 0.3 * size if radius is None else radius
    if not radius > 0 or not math.isfinite(radius):
        raise ValueError(f"radius must be positive and finite (θ = 0 needs an explicit radius), got {radius!r}.")
    directions = [top, bottom]
    if null_vector is not None:
        directions.append(null_direction(null_vector, operator, operator))
    line = torch.linspace(
        -radius, radius, grid_size(budget / 4 / len(directions), 1, point_cost=point_cost), dtype=torch.float64
    )
    lines = tuple(loss_slice(operator, d, line) for d in directions)
    plane_axes: tuple[Direction, Direction] = (top, bottom)
    span = torch.linspace(
        -radius, radius, grid_size(3 * budget / 4, 2, point_cost=point_cost, maximum=41), dtype=torch.float64
    )
    grid: Grid = span
    if reference is not None:
        toward = reference_direction(operator, reference, align)
        if torch.linalg.vector_norm(toward.vector) >= 1e-3 * size:
            plane_axes = (bottom, toward)
            grid = (span, torch.linspace(-0.25, 1.25, len(span), dtype=torch.float64))
    plane = loss_slice(operator, plane_axes, grid)
    return LandscapeSlices(lines, plane, sum(piece.num_evaluations for piece in (*lines, plane)))
