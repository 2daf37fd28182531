"""Matplotlib figures of landscape snapshots, rendered to images for TensorBoard.

Each function returns a bare ``matplotlib.figure.Figure``: not registered with pyplot, so it opens no
window and leaves the user's backend alone; :func:`to_image` renders it with Agg. (TensorBoard's own
``add_figure`` imports pyplot, which costs more than drawing the three figures.)

Legibility: figures are drawn at :data:`DPI` pixels per inch with fonts of at least :data:`LEGEND` points, so a
6-inch figure is 960 pixels wide and its smallest text about 21 pixels tall: sharp when TensorBoard's image
card is enlarged to about twice its size, still readable at card width. Margins are fixed, in inches (a
constrained layout doubles the drawing time), and titles sit at a fixed height (otherwise matplotlib measures
every tick label once more to place them); the sizes keep every text inside the canvas.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from ..curvature.estimators import SpectralDensity
from ..redundancy import MLPRedundancy, RedundancyReport
from ..slices import REFERENCE_NAME, LossSlice

#: Pixels per inch of every figure.
DPI = 160
#: Font sizes in points: tick labels, axis labels, titles, legends and notes.
TICK, LABEL, TITLE, LEGEND = 10.0, 11.0, 11.5, 9.5
#: How to read a 1-D slice.
GUIDE_1D = "up on both sides: a minimum along it · down: a descent direction · flat: a valley"


def _figure(width: float, height: float, left: float, right: float, bottom: float, top: float) -> Figure:
    """A bare figure of ``width`` × ``height`` inches whose subplots leave the given margins (inches) free."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    return figure


def _axes(figure: Figure, *grid: int) -> Axes:
    axes = figure.add_subplot(*grid)
    axes.tick_params(labelsize=TICK)
    return axes


def _titled(axes: Axes, title: str, xlabel: str, ylabel: str) -> None:
    # An explicit y: matplotlib does not measure the tick labels once more to place the title.
    axes.set_title(title, fontsize=TITLE, y=1.0, pad=9)
    axes.set_xlabel(xlabel, fontsize=LABEL)
    axes.set_ylabel(ylabel, fontsize=LABEL)


def _number(value: float, _position: object = None) -> str:
    """A tick label in at most four digits: 0.01, -100, 12.25, 1e5, 1e-6 (no mathtext, no "1e+05")."""
    return f"{value:.4g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def spectral_density_figure(density: SpectralDensity, step: int) -> Figure:
    """The Hessian's eigenvalue density (Gaussian-smoothed, log scale) with the eigenvalues (or SLQ nodes)
    as red ticks below it; zero is marked, so negative curvature stands out. The title says what the ticks
    are: a legend would cover the density's largest peak."""
    figure = _figure(6.0, 3.8, left=1.0, right=0.2, bottom=0.7, top=0.7)
    axes = _axes(figure)
    floor = float(density.density.max()) * 1e-7
    axes.semilogy(density.grid, density.density.clamp_min(floor), color="C0", lw=1.4)
    axes.yaxis.set_minor_locator(NullLocator())  # minor ticks over seven decades: clutter, and slow to lay out
    # One line collection for all the ticks: a marker per eigenvalue draws several times slower.
    axes.vlines(density.nodes, floor, floor * 30, color="C3", lw=0.8)
    axes.axvline(0.0, color="0.5", lw=0.9, ls="--")
    ticks = "exact eigenvalues" if density.method == "dense" else "stochastic Lanczos quadrature nodes"
    _titled(
        axes,
        f"Hessian spectrum at step {step}, bandwidth {density.bandwidth:.2g}\nred ticks: the {ticks}",
        "eigenvalue of the Hessian",
        "smoothed density (log scale)",
    )
    return figure


def eigenvalue_trajectory_figure(trajectory: Sequence[tuple[int, float, float]], learning_rate: float | None) -> Figure:
    """λ_max and λ_min against the training step, with 2/lr (the edge of stability of gradient descent)
    when a learning rate is known; symmetric-log y axis so both signs show. λ_min is drawn where it was
    computed (full snapshots, and light ones on the dense path)."""
    figure = _figure(6.0, 3.8, left=1.0, right=0.2, bottom=0.7, top=0.65)
    axes = _axes(figure)
    steps = [step for step, _, _ in trajectory]
    largest = [high for _, _, high in trajectory]
    smallest = [(step, low) for step, low, _ in trajectory if math.isfinite(low)]
    axes.plot(steps, largest, ".-", lw=1.0, ms=4, color="C0", label="λ_max (sharpness)")
    if smallest:
        axes.plot(*zip(*smallest, strict=True), ".-", lw=1.0, ms=4, color="C1", label="λ_min")
    scale = max(abs(v) for v in largest + [low for _, low in smallest]) or 1.0
    if learning_rate:
        axes.axhline(2.0 / learning_rate, color="C3", ls="--", lw=1.1, label="2/lr: edge of stability")
        scale = max(scale, 2.0 / learning_rate)
    axes.axhline(0.0, color="0.5", lw=0.8)
    # Linear within 1% of the largest magnitude, logarithmic beyond: small negative eigenvalues stay visible.
    linthresh = scale * 1e-2
    axes.set_yscale("symlog", linthresh=linthresh)
    if learning_rate:
        low, high = axes.get_ylim()
        axes.set_ylim(low, max(high, 4.0 / learning_rate))  # the edge of stability inside the frame
    _symlog_ticks(axes, linthresh, figure.get_figheight())
    axes.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    title = "Hessian eigenvalues over training\nsymmetric log scale: linear near 0"
    _titled(axes, title, "training step", "eigenvalue")
    axes.legend(fontsize=LEGEND, loc="best")
    return figure


def _symlog_ticks(axes: Axes, linthresh: float, figure_height: float) -> None:
    """Major ticks of a symlog y axis at 0 and ±10^k, those far apart first, each kept only if its label is at
    least 1.5 label heights from every label kept (matplotlib's own locator stacks the decades around the
    linear band into one label height); plain-number labels, no minor ticks."""
    low, high = axes.get_ylim()
    top = max(abs(low), abs(high), linthresh)
    powers = 10.0 ** np.arange(math.floor(math.log10(linthresh)), math.ceil(math.log10(top)) + 1)
    candidates = [0.0, *sorted([*powers, *-powers], key=abs, reverse=True)]
    candidates = [value for value in candidates if low <= value <= high]
    scaled = axes.yaxis.get_transform().transform(np.array([low, high, *candidates]))
    height = axes.get_position().height * figure_height * DPI
    pixels = (scaled[2:] - scaled[0]) / (scaled[1] - scaled[0]) * height
    gap = 1.5 * TICK * DPI / 72
    kept: list[tuple[float, float]] = []
    for value, y in zip(candidates, pixels, strict=True):
        if all(abs(y - other) >= gap for _, other in kept):
            kept.append((value, y))
    axes.yaxis.set_major_locator(FixedLocator(sorted(value for value, _ in kept)))
    axes.yaxis.set_major_formatter(FuncFormatter(_number))
    axes.yaxis.set_minor_locator(NullLocator())


def similarity_figure(report: RedundancyReport | MLPRedundancy, step: int) -> Figure:
    """Heat map of how close each pair of neurons is to a duplicate (red) or mirrored (blue) pair: the
    colour is sign(cos)·min(1, −log10(1 − |cos|)/8) of the standardised neurons' cosine, so a pair is dark
    only when its cosine is within a few digits of ±1 (a cosine of 0.8 is pale). The verified merges of
    the redundancy report are outlined (pairs) or crossed on the diagonal (single neurons), as
    :func:`marked_neurons` says; a deep MLP's layers are separated by lines (neurons numbered layer by layer)."""
    figure = Figure(figsize=(6.4, 4.8), dpi=DPI)
    # Fixed boxes: a square map (3.5 × 3.5 inches) and a colour bar whose labels fit beside it.
    axes = figure.add_axes((0.85 / 6.4, 0.65 / 4.8, 3.5 / 6.4, 3.5 / 4.8))
    axes.tick_params(labelsize=TICK)
    cosine = report.similarity_matrix().detach().cpu().double().clamp(-1.0, 1.0)
    digits = -torch.log10((1.0 - cosine.abs()).clamp_min(1e-8)) / 8.0
    shade = (cosine.sign() * digits.clamp(0.0, 1.0)).numpy()
    image = axes.imshow(shade, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest", aspect="auto")
    bar = figure.colorbar(image, cax=figure.add_axes((4.55 / 6.4, 0.65 / 4.8, 0.18 / 6.4, 3.5 / 4.8)))
    bar.set_ticks([-1, -0.5, 0, 0.5, 1])
    bar.ax.set_yticklabels(["mirrored", "1 + cos = 1e-4", "unrelated", "1 − cos = 1e-4", "duplicate"], fontsize=TICK)
    for neurons in marked_neurons(report):
        if len(neurons) == 1:
            axes.plot([neurons[0]], [neurons[0]], "kx", ms=10, mew=2.2, gid="merge")
        else:
            for i in neurons:
                for j in neurons:
                    if i != j:
                        axes.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="k", gid="merge"))
    for offset in getattr(report, "offsets", (0,))[1:]:
        axes.axhline(offset - 0.5, color="k", lw=1.2, gid="layer")
        axes.axvline(offset - 0.5, color="k", lw=1.2, gid="layer")
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=min(len(shade), 8), integer=True))
    numbering = " (layer by layer)" if isinstance(report, MLPRedundancy) else ""
    title = f"neuron similarity at step {step}\noutlined or crossed: verified merges"
    _titled(axes, title, f"neuron{numbering}", "neuron")
    return figure


def marked_neurons(report: RedundancyReport | MLPRedundancy) -> list[tuple[int, ...]]:
    """The neurons of each verified merge between original neurons: what the heat map marks."""
    return [tuple(finding.neurons) for finding in report.claims if finding.original]


def to_image(figure: Figure) -> np.ndarray:
    """The figure rendered with Agg as an (H, W, 3) uint8 array."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def placeholder_figure(reason: str) -> Figure:
    """A small image saying why no landscape figures were drawn and how to get them, so that TensorBoard's
    Images tab is never empty without an explanation; ``reason`` is wrapped to the width of the image."""
    lines = textwrap.wrap(reason, width=62)
    height = 0.75 + 0.27 * len(lines)
    figure = Figure(figsize=(6.0, height), dpi=DPI)
    figure.text(0.3 / 6.0, 1 - 0.3 / height, "no landscape figures", fontsize=TITLE, weight="bold", va="top")
    figure.text(0.3 / 6.0, 1 - 0.62 / height, "\n".join(lines), fontsize=LABEL, va="top", linespacing=1.3)
    return figure


def slice_1d_figure(slices: Sequence[LossSlice], step: int) -> Figure:
    """One panel per 1-D loss slice L(θ + s·u) (e.g. along the top and the bottom Hessian eigenvector), in
    one column (a row of panels would be shrunk to the width of TensorBoard's image card, text and all), each
    with its second-order model L(θ) + (∇L·u)s + ½λs² dashed beside it (at a critical point ∇L·u = 0 and it
    is ½λs² above L(θ)); λ and its error bound are in the panel's title, and one legend above the panels
    serves them all, so that none covers a curve.

    Each panel's y range follows its loss, so a model leaving the frame marks where the loss stops being
    quadratic; but it is at least 10⁻³ of the widest panel's, so a valley flat to rounding draws flat
    instead of magnifying the rounding."""
    # Panels of 4.4 × 2.4 inches, 1.25 apart (tick labels, axis label, two-line title); the header above them
    # holds the title and the reading guide (about 10 characters an inch, 0.2 inches a line) and the legend.
    width = 0.95 + 4.4 + 0.2
    guide = textwrap.wrap(GUIDE_1D, int(10 * width))
    entries = 2 + any(p.directions[0].curvature is not None for p in slices) + any(_to_reference(p) for p in slices)
    per_row = 3  # four entries do not fit in a row
    title_lines = 1 + len(guide)
    header = 0.8 + 0.2 * title_lines + 0.3 * math.ceil(entries / per_row)
    height = header + len(slices) * 2.4 + (len(slices) - 1) * 1.25 + 0.7
    figure = _figure(width, height, left=0.95, right=0.2, bottom=0.7, top=header)
    figure.subplots_adjust(hspace=1.25 / 2.4)
    finite = [piece.values.numpy()[np.isfinite(piece.values.numpy())] for piece in slices]
    widest = max((float(v.max() - v.min()) for v in finite if v.size), default=0.0)
    legend: dict[str, Artist] = {}
    for index, (piece, values) in enumerate(zip(slices, finite, strict=True)):
        axes = _axes(figure, len(slices), 1, index + 1)
        _slice_panel(axes, piece, values, widest)
        handles, labels = axes.get_legend_handles_labels()
        legend.update((label, handle) for label, handle in zip(labels, handles, strict=True) if label not in legend)
    figure.suptitle(
        "\n".join([f"loss along {len(slices)} direction{'s' * (len(slices) != 1)} at step {step}", *guide]),
        fontsize=TITLE,
        y=1 - 0.1 / height,
        va="top",
    )
    figure.legend(
        list(legend.values()),
        list(legend),
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - (0.15 + 0.2 * title_lines) / height),
        ncols=per_row,
        fontsize=LEGEND,
        frameon=False,
    )
    return figure


def _slice_panel(axes: Axes, piece: LossSlice, values: np.ndarray, widest: float) -> None:
    direction, s = piece.directions[0], piece.coordinates[0].numpy()
    axes.plot(s, piece.values.numpy(), color="C0", lw=1.8, label="loss")
    title = direction.name
    if direction.curvature is not None:
        bound = f" ± {direction.error_bound:.1g}" if direction.error_bound is not None else ""
        title += f"\nλ = {direction.curvature:.4g}{bound}"
        model = piece.quadratic_model().numpy()
        axes.plot(s, model, color="C3", lw=1.3, ls="--", label="quadratic model")
    if values.size:
        low, high = float(values.min()), float(values.max())
        floor = max(1e-3 * widest, 1e3 * np.finfo(np.float64).eps * max(abs(low), abs(high)), 1e-300)
        middle, half = (low + high) / 2, max(high - low, floor) / 2 * 1.1
        axes.set_ylim(middle - half, middle + half)
    axes.yaxis.set_major_locator(MaxNLocator(nbins=5))
    axes.axvline(0.0, color="0.6", lw=0.8, ls=":")
    axes.plot([0.0], [piece.base_loss], "o", color="k", ms=5, label="θ (now)")
    if _to_reference(piece):
        axes.axvline(1.0, color="C2", lw=1.0, ls=":", label="θ* (reference)")
    unit = "unit " if direction.curvature is not None else ""
    _titled(axes, title, f"s: step along the {unit}direction", "loss")


def _to_reference(piece: LossSlice) -> bool:
    return piece.directions[0].name.startswith(REFERENCE_NAME)


def slice_2d_figure(piece: LossSlice, step: int) -> Figure:
    """Filled contours of a 2-D loss slice L(θ + s·u + t·v), θ marked at (0, 0) and, when one direction is
    the segment to the reference, θ* at its end (coordinate 1). The colours are log10 of the loss when it
    spans more than three decades (floored six decades below the largest value), so that a basin and
    its walls both show."""
    figure = Figure(figsize=(6.4, 5.2), dpi=DPI)
    axes = figure.add_axes((0.95 / 6.4, 0.7 / 5.2, 3.85 / 6.4, 3.75 / 5.2))
    axes.tick_params(labelsize=TICK)
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
    axes.contour(s, t, shown, levels=levels[::3], colors="w", linewidths=0.5, alpha=0.6)
    bar = figure.colorbar(filled, cax=figure.add_axes((5.0 / 6.4, 0.7 / 5.2, 0.18 / 6.4, 3.75 / 5.2)))
    bar.ax.tick_params(labelsize=TICK)
    bar.locator = MaxNLocator(nbins=6)
    bar.formatter = FuncFormatter(_number)
    bar.update_ticks()
    bar.set_label(label, fontsize=LABEL)
    axes.plot([0.0], [0.0], "o", color="r", ms=7, label="θ (now)")
    reference = next((i for i, d in enumerate(piece.directions) if d.name.startswith(REFERENCE_NAME)), None)
    if reference is not None:
        axes.plot(
            *((1.0, 0.0) if reference == 0 else (0.0, 1.0)), "*", color="w", mec="k", ms=15, label="θ* (reference)"
        )
    axes.xaxis.set_major_locator(MaxNLocator(nbins=5))
    axes.yaxis.set_major_locator(MaxNLocator(nbins=6))
    _titled(
        axes,
        f"loss on a plane through θ at step {step}\nminimum: rings · saddle: an X · flat valley: parallel lines",
        f"s: {piece.directions[0].name}",
        f"t: {piece.directions[1].name}",
    )
    axes.legend(fontsize=LEGEND, loc="upper right")
    return figure
