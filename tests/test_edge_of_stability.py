"""The edge-of-stability example in its quick mode (``main(quick=True)``; docs/theory.md §1.8).

Its thresholds are checked against the closed forms, the phenomenon (sharpening from r < 0.3 to r ≥ 0.95
within 320 full-batch steps) against the library's readings, and Adam's last reading against an independent
truth: P from the optimizer's state by hand and H = jacrev(jacrev(L)) in float64.
"""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import dense_truth

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # the examples import their helpers as `_common`
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_edge_of_stability_quick(tmp_path):
    example = load("edge_of_stability")
    out = example.main(quick=True, figure=tmp_path / "eos.png")
    assert out["agreed"] == out["total"] == 2 and (tmp_path / "eos.png").stat().st_size > 0
    expected = {"sgd_momentum": (2 + 2 * 0.5) / 0.075, "adam": (2 + 2 * 0.9) / (0.003 * (1 - 0.9))}
    for name, threshold in expected.items():
        run = out[name]
        assert run["threshold"] == pytest.approx(threshold, rel=1e-12)
        assert run["initial_ratio"] < 0.3 and run["max_ratio"] >= 0.95, name
        assert all(math.isfinite(r) for r in run["ratio"]) and run["max_ratio"] < 1.3, name
        # The ratio is the sharpness over the threshold, and its bound the sharpness bound over it.
        assert run["ratio"][-1] == pytest.approx(run["sharpness"][-1] / threshold, rel=1e-12)
        assert run["ratio_error"][-1] == pytest.approx(run["sharpness_error"][-1] / threshold, rel=1e-12)

    adam = out["adam"]
    model, optimizer = adam["model"], adam["optimizer"]
    x, y = example.problem()[0]
    group = optimizer.param_groups[0]
    parts = []
    for p in model.parameters():
        state = optimizer.state[p]
        second = state["exp_avg_sq"].double() / (1 - group["betas"][1] ** float(state["step"]))
        parts.append(second.sqrt().reshape(-1) + group["eps"])
    scale = torch.cat(parts).rsqrt()
    H = dense_truth(model, nn.MSELoss(), (x.double(), y.double()))
    truth = float(torch.linalg.eigvalsh(scale[:, None] * H * scale[None, :])[-1])
    # Within the reported bound, up to the rounding between two float64 Hessians (~1e-14 relative).
    assert abs(adam["sharpness"][-1] - truth) <= adam["sharpness_error"][-1] + 1e-12 * truth
