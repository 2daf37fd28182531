"""Matplotlib figures of landscape snapshots for TensorBoard's ``add_figure``.

Each function returns a bare ``matplotlib.figure.Figure``: not registered with pyplot, so it opens no
window, leaves the user's backend alone and is freed once ``add_figure`` has rendered it (with Agg).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from ..estimators import SpectralDensity


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


def similarity_figure(similarity: torch.Tensor, step: int) -> Figure:
    """Heat map of the pairwise cosine similarity of the standardised neurons (values in [-1, 1]): dark
    off-diagonal cells are duplicate (+1) or mirrored (-1) neuron pairs."""
    figure = _figure(5.0, 4.2)
    axes = figure.add_subplot()
    image = axes.imshow(similarity.detach().cpu().double().numpy(), cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.85)
    axes.set_xlabel("neuron")
    axes.set_ylabel("neuron")
    axes.set_title(f"neuron similarity at step {step} (+1 duplicate, -1 mirrored)", fontsize=9)
    return figure
