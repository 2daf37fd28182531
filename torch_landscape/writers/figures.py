"""Matplotlib figures of landscape snapshots, rendered to images for TensorBoard.

Each function returns a bare ``matplotlib.figure.Figure``: not registered with pyplot, so it opens no
window and leaves the user's backend alone; :func:`to_image` renders it with Agg. (TensorBoard's own
``add_figure`` imports pyplot, which costs more than drawing the three figures.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from ..curvature.estimators import SpectralDensity
from ..redundancy import MLPRedundancy, RedundancyReport
from ..slices import REFERENCE_NAME, LossSlice


def _figure(width: float = 6.0, height: float = 3.6) -> Figure:
    # Fixed margins: a constrained layout doubles the drawing time.
    figure = Figure(figsize=(width, height), dpi=80)
    figure.subplots_adjust(left=0.13, right=0.96, bottom=0.14, top=0.9)
    return figure


def spectral_density_figure(density: SpectralDensity, step: int) -> Figure:
    """The Hessian's eigenvalue density (Gaussian-smoothed, log scale) with the eigenvalues (or SLQ nodes)
    as ticks below it; zero is marked, so negative curvature stands out."""
    figure = _figure()
    axes = figure.add_subplot()
    floor = float(density.density.max()) * 1e-7
    axes.semilogy(density.grid, density.density.clamp_min(floor), color="C0", lw=1.2, label="smoothed density")
    # One line collection for all the ticks: a marker per eigenvalue draws several times slower.
    label = "eigenvalues" if density.method == "dense" else "quadrature nodes"
    axes.vlines(density.nodes, floor, floor * 30, color="C3", lw=0.6, label=label)
    axes.axvline(0.0, color="0.5", lw=0.8, ls="--")
    axes.set_xlabel("eigenvalue of the Hessian")
    axes.set_ylabel("density (log scale)")
    kind = "exact eigenvalues" if density.method == "dense" else "stochastic Lanczos quadrature"
    axes.set_title(f"Hessian spectrum at step {step} ({kind}, bandwidth {density.bandwidth:.2g})", fontsize=9)
    axes.legend(fontsize=8, loc="upper right")
    return figure


def eigenvalue_trajectory_figure(trajectory: Sequence[tuple[int, float, float]], learning_rate: float | None) -> Figure:
    """λ_max and λ_min against the training step, with 2/lr (the edge of stability of gradient descent)
    when a learning rate is known; symmetric-log y axis so both signs show. λ_min is drawn where it was
    computed (full snapshots, and light ones on the dense path)."""
    figure = _figure()
    axes = figure.add_subplot()
    steps = [step for step, _, _ in trajectory]
    largest = [high for _, _, high in trajectory]
    smallest = [(step, low) for step, low, _ in trajectory if math.isfinite(low)]
    axes.plot(steps, largest, ".-", lw=0.8, ms=3, color="C0", label="largest eigenvalue (sharpness)")
    if smallest:
        axes.plot(*zip(*smallest, strict=True), ".-", lw=0.8, ms=3, color="C1", label="smallest eigenvalue")
    scale = max(abs(v) for v in largest + [low for _, low in smallest]) or 1.0
    if learning_rate:
        axes.axhline(2.0 / learning_rate, color="C3", ls="--", lw=1.0, label="2/lr: edge of stability")
        scale = max(scale, 2.0 / learning_rate)
    axes.axhline(0.0, color="0.5", lw=0.8)
    # Linear within 1% of the largest magnitude, logarithmic beyond: small negative eigenvalues stay visible.
    axes.set_yscale("symlog", linthresh=scale * 1e-2)
    if learning_rate:
        low, high = axes.get_ylim()
        axes.set_ylim(low, max(high, 4.0 / learning_rate))  # the edge of stability inside the frame
    axes.set_xlabel("training step")
    axes.set_ylabel("eigenvalue (symlog)")
    axes.set_title("the largest and smallest Hessian eigenvalues over training", fontsize=9)
    axes.legend(fontsize=8, loc="best")
    return figure


def similarity_figure(report: RedundancyReport | MLPRedundancy, step: int) -> Figure:
    """Heat map of how close each pair of neurons is to a duplicate (red) or mirrored (blue) pair: the
    colour is sign(cos)·min(1, −log10(1 − |cos|)/8) of the standardised neurons' cosine, so a pair is dark
    only when its cosine is within a few digits of ±1 (a cosine of 0.8 is pale). The verified merges of
    the redundancy report are outlined (pairs) or crossed on the diagonal (single neurons), as
    :func:`marked_neurons` says."""
    figure = _figure(5.0, 4.2)
    axes = figure.add_subplot()
    cosine = report.similarity_matrix().detach().cpu().double().clamp(-1.0, 1.0)
    digits = -torch.log10((1.0 - cosine.abs()).clamp_min(1e-8)) / 8.0
    shade = (cosine.sign() * digits.clamp(0.0, 1.0)).numpy()
    image = axes.imshow(shade, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
    bar = figure.colorbar(image, ax=axes, shrink=0.85, ticks=[-1, -0.5, 0, 0.5, 1])
    bar.ax.set_yticklabels(["mirrored", "1+cos = 1e-4", "unrelated", "1-cos = 1e-4", "duplicate"], fontsize=7)
    for neurons in marked_neurons(report):
        if len(neurons) == 1:
            axes.plot([neurons[0]], [neurons[0]], "kx", ms=9, mew=2, gid="merge")
        else:
            for i in neurons:
                for j in neurons:
                    if i != j:
                        axes.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="k", gid="merge"))
    axes.set_xlabel("neuron")
    axes.set_ylabel("neuron")
    axes.set_title(f"neuron similarity at step {step}; outlined/crossed: verified merges", fontsize=9)
    return figure


def marked_neurons(report: RedundancyReport | MLPRedundancy) -> list[tuple[int, ...]]:
    """The neurons of each verified merge between original neurons: what the heat map marks."""
    return [tuple(finding.neurons) for finding in report.claims if finding.original]


def to_image(figure: Figure) -> np.ndarray:
    """The figure rendered with Agg as an (H, W, 3) uint8 array."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def slice_1d_figure(slices: Sequence[LossSlice], step: int) -> Figure:
    """One panel per 1-D loss slice L(θ + s·u) (e.g. along the top and the bottom Hessian eigenvector), each
    with its second-order model L(θ) + (∇L·u)s + ½λs² dashed beside it (at a critical point ∇L·u = 0 and
    it is ½λs² above L(θ)), labelled with λ and its error bound.

    Each panel's y range follows its loss, so a model leaving the frame marks where the loss stops being
    quadratic; but it is at least 10⁻³ of the widest panel's, so a valley flat to rounding draws flat
    instead of magnifying the rounding."""
    figure = _figure(4.2 * len(slices) + 0.6, 3.8)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.8, wspace=0.28)
    finite = [piece.values.numpy()[np.isfinite(piece.values.numpy())] for piece in slices]
    widest = max((float(v.max() - v.min()) for v in finite if v.size), default=0.0)
    for index, (piece, values) in enumerate(zip(slices, finite, strict=True)):
        axes = figure.add_subplot(1, len(slices), index + 1)
        direction, s = piece.directions[0], piece.coordinates[0].numpy()
        axes.plot(s, piece.values.numpy(), color="C0", lw=1.6, label="loss")
        if direction.curvature is not None:
            bound = f" ± {direction.error_bound:.1g}" if direction.error_bound is not None else ""
            axes.plot(
                s,
                piece.quadratic_model().numpy(),
                color="C3",
                lw=1.1,
                ls="--",
                label=f"quadratic model, λ = {direction.curvature:.4g}{bound}",
            )
        if values.size:
            low, high = float(values.min()), float(values.max())
            floor = max(1e-3 * widest, 1e3 * np.finfo(np.float64).eps * max(abs(low), abs(high)), 1e-300)
            middle, half = (low + high) / 2, max(high - low, floor) / 2 * 1.1
            axes.set_ylim(middle - half, middle + half)
        axes.axvline(0.0, color="0.6", lw=0.7, ls=":")
        axes.plot([0.0], [piece.base_loss], "o", color="k", ms=4, label="θ (now)")
        if direction.name.startswith(REFERENCE_NAME):
            axes.axvline(1.0, color="C2", lw=0.9, ls=":", label="θ* (reference)")
        unit = "unit " if direction.curvature is not None else ""
        axes.set_xlabel(f"s (step along the {unit}{direction.name})")
        axes.set_ylabel("loss" if index == 0 else "")
        axes.set_title(direction.name, fontsize=9)
        axes.legend(fontsize=7, loc="best")
    names = ", ".join(piece.directions[0].name for piece in slices)
    figure.suptitle(
        f"loss along the {names} at step {step}\n"
        "curves up on both sides: a minimum along it · down: a saddle (descent) direction · flat: a valley",
        fontsize=9,
    )
    return figure


def slice_2d_figure(piece: LossSlice, step: int) -> Figure:
    """Filled contours of a 2-D loss slice L(θ + s·u + t·v), θ marked at (0, 0) and, when one direction is
    the segment to the reference, θ* at its end (coordinate 1). The colours are log10 of the loss when it
    spans more than three decades (floored six decades below the largest value), so that a basin and
    its walls both show."""
    figure = _figure(6.4, 5.0)
    figure.subplots_adjust(left=0.13, right=0.98, bottom=0.1, top=0.86)
    axes = figure.add_subplot()
    s, t = (c.numpy() for c in piece.coordinates)
    values = piece.values.numpy().T  # rows along t, as contourf expects
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    logarithmic = low >= 0 and high > 0 and high > 1e3 * low
    if logarithmic:
        low = max(low, high * 1e-6)
        shown, label = np.log10(np.clip(values, low, high)), "log10 loss"
    else:
        shown, label = np.clip(values, low, high), "loss"
    levels = MaxNLocator(24).tick_values(float(shown.min()), float(shown.max()))  # round numbers on the colour bar
    filled = axes.contourf(s, t, shown, levels=levels, cmap="viridis")
    axes.contour(s, t, shown, levels=levels[::3], colors="w", linewidths=0.4, alpha=0.6)
    figure.colorbar(filled, ax=axes, shrink=0.85, label=label)
    axes.plot([0.0], [0.0], "o", color="r", ms=6, label="θ (now)")
    reference = next((i for i, d in enumerate(piece.directions) if d.name.startswith(REFERENCE_NAME)), None)
    if reference is not None:
        axes.plot(
            *((1.0, 0.0) if reference == 0 else (0.0, 1.0)), "*", color="w", mec="k", ms=13, label="θ* (reference)"
        )
    axes.set_xlabel(f"s: {piece.directions[0].name}")
    axes.set_ylabel(f"t: {piece.directions[1].name}")
    axes.legend(fontsize=7, loc="upper right")
    axes.set_title(
        f"loss on a plane through θ at step {step}\n"
        "minimum: rings around θ · saddle: an X · flat valley: parallel lines",
        fontsize=9,
    )
    return figure
