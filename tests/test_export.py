"""A run's history as data: rows under the documented tags, a pandas DataFrame (pandas optional), strict JSON."""

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from helpers import dense_truth, regression_data, shallow
from torch_landscape import LandscapeProbe, LandscapeSnapshot
from torch_landscape.writers import (
    history_frame,
    history_json,
    history_rows,
    snapshot_scalars,
    snapshot_words,
    write_history_json,
)

MSE = nn.MSELoss()
QUANTITIES = ["pl", "one_point", "spectrum", "trace", "critical", "redundancy"]


@pytest.fixture(scope="module")
def run():
    """Full, light and full snapshots of a tanh student two SGD steps apart, and a failed one (the loss
    overflowed: inf, gradient NaN, the failure in ``errors``), with the model at the last computed step."""
    data = regression_data(64, 3)
    model = shallow(3, 4, nn.Tanh())
    probe = LandscapeProbe(model, MSE, data, reference=shallow(3, 2, nn.Tanh(), seed=5), quantities=QUANTITIES)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    history = []
    for step, full in ((0, True), (1, False), (2, True)):
        if step:
            optimizer.zero_grad()
            MSE(model(data[0]), data[1]).backward()
            optimizer.step()
        history.append(probe.snapshot(step, full=full, learning_rate=0.05))
    failed = LandscapeSnapshot(
        step=3,
        num_parameters=history[0].num_parameters,
        loss=math.inf,
        grad_norm=math.nan,
        seconds=0.01,
        full=False,
        errors=("loss: FloatingPointError: the probe loss is inf",),
    )
    return model, data, [*history, failed]


def same(a, b):
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def test_rows_hold_every_scalar_under_its_tag_and_the_verdicts_in_words(run):
    model, data, history = run
    rows = history_rows(history)
    assert [row["step"] for row in rows] == [0, 1, 2, 3]
    assert [row["full"] for row in rows] == [True, False, True, False]
    for row, snapshot in zip(rows, history, strict=True):
        scalars, words = snapshot_scalars(snapshot), snapshot_words(snapshot)
        assert set(row) == {"step", "full", "num_parameters", *scalars, *words}
        assert all(same(row[tag], value) and type(row[tag]) is float for tag, value in scalars.items())
        assert all(row[tag] == word for tag, word in words.items())
        assert row["landscape/probe/loss"] == snapshot.loss or math.isinf(snapshot.loss)
        assert row["landscape/monitor/seconds"] == snapshot.seconds
    first, light, last, failed = rows
    # The documented names carry the snapshot's own numbers and words.
    assert last["landscape/hessian/lambda_max"] == float(history[2].spectrum.eigenvalues[-1])
    assert last["landscape/convexity/pl_ratio"] == history[2].pl.mu
    assert last["landscape/redundancy/effective_width"] == history[2].redundancy.effective_width
    assert last["landscape/hessian/critical_kind"] == history[2].critical.kind
    assert last["landscape/hessian/critical_reason"] == history[2].critical.reason
    assert last["landscape/redundancy/kind"] == "tanh" and last["landscape/hessian/method"] == "dense"
    # ... and λ_max is the Hessian's at the model's current θ: float64 reverse-over-reverse truth. The dense
    # path is backward-stable: |Δλ| ≤ ~P·ε·‖H‖ (P = 21), so 1e-12 relative is loose yet far below any change.
    truth = float(torch.linalg.eigvalsh(dense_truth(model, MSE, data))[-1])
    assert last["landscape/hessian/lambda_max"] == pytest.approx(truth, rel=1e-12)
    # Full-evaluation quantities are absent from the light row, not filled in.
    assert "landscape/hessian/critical_kind" not in light and "landscape/redundancy/width" not in light
    assert "landscape/hessian/critical_kind" in first
    assert failed["landscape/errors"] == "loss: FloatingPointError: the probe loss is inf"
    assert math.isinf(failed["landscape/probe/loss"]) and math.isnan(failed["landscape/probe/grad_norm"])


def test_json_is_strict_and_exact(run, tmp_path):
    _, _, history = run
    text = history_json(history)

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    loaded = json.loads(text, parse_constant=refuse)  # NaN, Infinity or -Infinity anywhere would raise
    rows = history_rows(history)
    assert len(loaded) == len(rows)
    for row, back in zip(rows, loaded, strict=True):
        assert back.keys() == row.keys()
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                assert back[key] is None, key
            else:
                assert back[key] == value and type(back[key]) is type(value), key  # floats exactly, ints as ints
    assert loaded[3]["landscape/probe/loss"] is None and loaded[3]["landscape/probe/grad_norm"] is None
    path = tmp_path / "history.json"
    write_history_json(history, path, indent=2)
    assert json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse) == loaded
    assert history_json([]) == "[]"


def test_a_dataframe_with_pandas(run):
    pandas = pytest.importorskip("pandas")
    _, _, history = run
    frame = history_frame(history)
    rows = history_rows(history)
    assert isinstance(frame, pandas.DataFrame) and len(frame) == len(rows)
    assert list(frame.columns[:3]) == ["step", "full", "num_parameters"]
    assert set(frame.columns) == set().union(*rows)
    assert frame["step"].tolist() == [0, 1, 2, 3]
    for index, row in enumerate(rows):
        for column in frame.columns:
            if column in row:
                assert same(frame[column].iloc[index], row[column]), column
            else:  # a column this snapshot lacks
                assert pandas.isna(frame[column].iloc[index]), column


def test_without_pandas_the_dataframe_says_how_to_get_it(run, monkeypatch):
    _, _, history = run
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r"pip install pandas .*torch-landscape\[pandas\]"):
        history_frame(history)
    assert history_rows(history)  # rows and JSON need no pandas
    assert json.loads(history_json(history))


def test_the_export_needs_no_optional_dependency():
    """The base install (torch, numpy, scipy) exports: the writers package imports without pandas,
    TensorBoard, matplotlib or Lightning."""
    code = (
        "import sys\n"
        "for name in ('pandas', 'tensorboard', 'matplotlib', 'pytorch_lightning', 'lightning'):\n"
        "    sys.modules[name] = None\n"
        "from torch_landscape import LandscapeSnapshot\n"
        "from torch_landscape.writers import history_json\n"
        "print(history_json([LandscapeSnapshot(step=1, num_parameters=2, loss=0.5, grad_norm=1.0, seconds=0.0)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["landscape/probe/loss"] == 0.5


def test_anything_but_a_history_is_refused_with_what_to_pass(run):
    _, _, history = run
    with pytest.raises(TypeError, match=r"sequence of LandscapeSnapshot \(monitor.history"):
        history_rows(history[0])
    with pytest.raises(TypeError, match="LandscapeSnapshot only, got dict"):
        history_json([{"step": 1}])
