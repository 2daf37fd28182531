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

from ..estimators import SpectralDensity
from ..redundancy import RedundancyReport


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
        axes.plot(*zip(*smallest), ".-", lw=0.8, ms=3, color="C1", label="smallest eigenvalue")
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


def similarity_figure(report: RedundancyReport, step: int) -> Figure:
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


def marked_neurons(report: RedundancyReport) -> list[tuple[int, ...]]:
    """The neurons of each verified merge between original neurons: what the heat map marks."""
    return [tuple(finding.neurons) for finding in report.claims if finding.original]


def to_image(figure: Figure) -> np.ndarray:
    """The figure rendered with Agg as an (H, W, 3) uint8 array."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
