"""The figures are legible: every text drawn lies inside the canvas, no two texts overlap (tick labels on a
symlog axis included), fonts are at least LEGEND points at DPI pixels per inch; the heat map's axes count
neurons; the placeholder says why there are no figures."""

import math
import textwrap

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from torch import nn

from helpers import regression_data, shallow
from torch_landscape.probe import LandscapeProbe
from torch_landscape.redundancy import mlp_redundancy, neuron_redundancy
from torch_landscape.writers import figures
from torch_landscape.writers.figures import (
    DPI,
    LEGEND,
    eigenvalue_trajectory_figure,
    placeholder_figure,
    similarity_figure,
    slice_1d_figure,
    slice_2d_figure,
    spectral_density_figure,
    to_image,
)

#: Texts may touch: two bounding boxes may share this many pixels (Agg rounds extents to whole pixels).
TOUCH = 1.0


@pytest.fixture(scope="module")
def snapshot():
    """A full snapshot of a width-5 tanh student whose neuron 4 duplicates neuron 0, with a reference."""
    data = regression_data(64, 3)
    model = shallow(3, 5, nn.Tanh())
    with torch.no_grad():
        model[0].weight[4] = model[0].weight[0]
        model[0].bias[4] = model[0].bias[0]
    return LandscapeProbe(model, nn.MSELoss(), data, reference=shallow(3, 2, nn.Tanh(), seed=5)).snapshot(3)


def drawn_texts(figure, monkeypatch):
    """Every non-empty text the Agg canvas draws, with its extent in pixels, and the canvas size."""
    drawn = []
    draw = Text.draw

    def recording(text, renderer):
        draw(text, renderer)
        if text.get_visible() and text.get_text().strip():
            drawn.append((text, text.get_window_extent(renderer)))

    monkeypatch.setattr(Text, "draw", recording)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return drawn, canvas.get_width_height()


def assert_legible(figure, monkeypatch):
    drawn, (width, height) = drawn_texts(figure, monkeypatch)
    assert drawn and figure.dpi == DPI >= 150  # twice the 80 pixels per inch of the first version
    for text, box in drawn:
        assert text.get_fontsize() >= LEGEND, text.get_text()
        assert -TOUCH <= box.x0 and box.x1 <= width + TOUCH, f"{text.get_text()!r} leaves the canvas sideways"
        assert -TOUCH <= box.y0 and box.y1 <= height + TOUCH, f"{text.get_text()!r} leaves the canvas vertically"
    for index, (text, box) in enumerate(drawn):
        for other, other_box in drawn[index + 1 :]:
            overlap_x = min(box.x1, other_box.x1) - max(box.x0, other_box.x0)
            overlap_y = min(box.y1, other_box.y1) - max(box.y0, other_box.y0)
            assert min(overlap_x, overlap_y) <= TOUCH, f"{text.get_text()!r} overlaps {other.get_text()!r}"
    return drawn


def test_every_figure_of_a_snapshot_is_legible(snapshot, monkeypatch):
    assert snapshot.density is not None and snapshot.redundancy is not None and snapshot.slices is not None
    trajectory = [(0, -1.5, 3.0), (10, -0.1, 3.5), (20, -0.08, 3.6), (30, -0.05, 3.7)]
    drawn = {
        "density": spectral_density_figure(snapshot.density, 3),
        "trajectory": eigenvalue_trajectory_figure(trajectory, 0.05),
        "similarity": similarity_figure(snapshot.redundancy, 3),
        "lines": slice_1d_figure(snapshot.slices.lines, 3),
        "one line": slice_1d_figure(snapshot.slices.lines[:1], 3),
        "plane": slice_2d_figure(snapshot.slices.plane, 3),
    }
    for name, figure in drawn.items():
        assert_legible(figure, monkeypatch)
        image = to_image(figure)
        assert image.shape == (round(figure.get_figheight() * DPI), round(figure.get_figwidth() * DPI), 3), name


@pytest.mark.parametrize(
    "trajectory, learning_rate",
    [
        ([(0, -1.5, 3.0), (10, -0.1, 3.5), (20, -0.08, 3.6)], 0.05),  # the demo's collision: 0.1, 0 and -0.1
        ([(0, -3e-16, 3.7), (1, -7e-31, 3.7), (2, 5e-16, 3.7)], None),  # λ_min at rounding level
        ([(0, -2e3, 5e4), (5, -40.0, 8e4), (9, -2.0, 9e4)], 1e-5),  # decades on both sides
    ],
)
def test_symlog_ticks_do_not_collide_and_read_as_plain_numbers(trajectory, learning_rate, monkeypatch):
    figure = eigenvalue_trajectory_figure(trajectory, learning_rate)
    drawn = assert_legible(figure, monkeypatch)
    axis = figure.axes[0].yaxis
    low, high = axis.get_view_interval()
    values = [value for value in axis.get_majorticklocs() if low <= value <= high]
    assert 0.0 in values and len(values) >= 3
    assert all(value == 0 or math.log10(abs(value)).is_integer() for value in values)  # 0 and ±10^k only
    labels = {text.get_text() for text, _ in drawn}
    assert {figures._number(value) for value in values} <= labels
    assert not any("$" in label or "e+" in label for label in labels)  # no mathtext, no "1e+05"
    if learning_rate:
        assert high >= 2 / learning_rate  # the edge of stability is inside the frame


@pytest.mark.parametrize("width", [3, 4, 12])
def test_the_heat_map_counts_neurons_in_integers(width, monkeypatch):
    data = regression_data(40, 2)
    report = neuron_redundancy(shallow(2, width, nn.Tanh(), seed=width), [data])
    figure = similarity_figure(report, 0)
    assert_legible(figure, monkeypatch)
    axes = figure.axes[0]
    for axis in (axes.xaxis, axes.yaxis):
        low, high = sorted(axis.get_view_interval())
        shown = [value for value in axis.get_majorticklocs() if low <= value <= high]
        assert shown and all(float(value).is_integer() and 0 <= value < width for value in shown)
        assert {label.get_text() for label in axis.get_ticklabels()} >= {str(int(value)) for value in shown}
        if width <= 8:  # every neuron has its tick
            assert shown == list(range(width))


def test_a_deep_mlp_heat_map_separates_its_layers(monkeypatch):
    x, y = regression_data(40, 2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    report = mlp_redundancy(model, [(x, y)])
    figure = similarity_figure(report, 0)
    assert_legible(figure, monkeypatch)
    lines = [line for line in figure.axes[0].lines if line.get_gid() == "layer"]
    vertical = [line.get_xdata()[0] for line in lines if line.get_xdata()[0] == line.get_xdata()[1]]
    horizontal = [line.get_ydata()[0] for line in lines if line.get_ydata()[0] == line.get_ydata()[1]]
    assert vertical == horizontal == [3.5]  # between neuron 3 (layer 1) and neuron 4 (layer 2)
    assert "layer by layer" in figure.axes[0].get_xlabel()


def test_the_placeholder_says_why_and_how_in_full(monkeypatch):
    reason = (
        "figures were not drawn: they would cost about 0.6 s beyond the budget (max_overhead=0.05); pass "
        "figures=True to draw them at every full evaluation"
    )
    figure = placeholder_figure(reason)
    drawn = assert_legible(figure, monkeypatch)
    words = " ".join(text.get_text().replace("\n", " ") for text, _ in drawn)
    assert reason in words and "no landscape figures" in words
    assert not figure.axes
    height, width, _ = to_image(figure).shape
    assert width == round(6.0 * DPI) and height < width / 2  # small: a strip, not a chart
    long = placeholder_figure(textwrap.fill("word " * 120, 400))  # the image grows with the text
    assert_legible(long, monkeypatch)
