"""Each example in its reduced smoke mode (``main(quick=True)``), with its key claim asserted.

The examples print a report and write TensorBoard logs; here they write under pytest's tmp_path. Slow ones
(tens of seconds on a quiet 2-core machine) are marked ``slow`` and run with ``--runslow``.
"""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # the examples import their helpers as `_common`
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event_files(directory: Path) -> list[Path]:
    return list(directory.rglob("events.out.tfevents.*"))


def test_plain_pytorch_loop(tmp_path):
    out = load("plain_pytorch_loop").main(quick=True, logdir=tmp_path)
    assert out["errors"] == []
    for tag in ("landscape/hessian/lambda_max", "landscape/hessian/lambda_min", "landscape/convexity/pl_ratio",
                "landscape/convexity/one_point", "landscape/redundancy/effective_width"):
        assert tag in out["tags"]
    assert out["agreed"] == out["total"]
    assert event_files(tmp_path / "plain_pytorch_loop")


def test_split_neuron_escape(tmp_path):
    out = load("split_neuron_escape").main(quick=True, logdir=tmp_path)
    assert out["line_spread"] < 1e-12  # the split line is flat
    assert out["max_duplicate_score"] == 0.0
    assert out["lambda_neg"] < 0 and out["final_drop"] < 0  # negative curvature at the end, descent along it
    if out["found_split"]:
        assert {out["start_index"], out["end_index"]} == {0, out["d"] + 1}
    assert event_files(tmp_path / "split_neuron_escape")


@pytest.mark.slow
def test_efficient_vs_redundant_tanh(tmp_path):
    out = load("efficient_vs_redundant_tanh").main(quick=True, logdir=tmp_path)
    exact, wide = out["noiseless_m3"], out["noiseless_m4"]
    assert exact["kind"] == "nondegenerate_min" and exact["effective_width"] == 3
    assert wide["effective_width"] < wide["width"]
    assert wide["kind"] != "nondegenerate_min" and wide["measured_nullity"] >= wide["predicted_nullity"] > 0
    assert event_files(tmp_path / "efficient_vs_redundant_tanh")


@pytest.mark.slow
def test_relu_spurious_minimum_and_linear_nets(tmp_path):
    out = load("relu_spurious_minimum_and_linear_nets").main(quick=True, logdir=tmp_path)
    assert out["relu_critical"] and out["relu_index"] == 0 and out["relu_loss"] > 1e-3  # a minimum with L > 0
    assert out["relu_dead_findings"] >= 1 and out["relu_unexplained_nullity"] == 0
    assert out["linear_max_gap"] <= 1e-10 and out["linear_max_index"] == 0
    assert out["origin_kind"] == "strict_saddle" and out["origin_index"] == out["h"]


@pytest.mark.slow
def test_quadratic_activations(tmp_path):
    out = load("quadratic_activations").main(quick=True, logdir=tmp_path)
    full, low = out["full_rank"], out["rank_deficient"]
    assert full["kind"] == "min_mod_symmetry" and abs(full["slope"] - 1) < 0.15
    assert low["mu"] < 0.1 * full["mu_running_min"] and low["slope"] > 1.2  # not PL at rank deficiency


@pytest.mark.slow
def test_relu_mild_overparameterization(tmp_path):
    out = load("relu_mild_overparameterization").main(quick=True, logdir=tmp_path)
    assert out["width2"]["kind"] == "nondegenerate_min"
    assert out["width3"]["mu"] < out["width2"]["mu_running_min"]
    assert all(m > 0 for m in out["width3"]["profile_median"])


@pytest.mark.slow
def test_real_data_goog_volume(tmp_path):
    out = load("real_data_goog_volume").main(quick=True, logdir=tmp_path)
    assert math.isfinite(out["loss"]) and out["loss"] < 1.0  # better than predicting the mean
    assert out["monitor_had_hessian"]
    assert out["kind"] != "nondegenerate_min" or out["effective_width"] == out["width"]
    assert event_files(tmp_path / "real_data_goog_volume")
