"""`make demo` in quick mode: the numbers behind its story, against dense float64 truth, and its TensorBoard logs."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import dense_truth

pytest.importorskip("pytorch_lightning")
pytest.importorskip("tensorboard")

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"

# Relative zero band for the dense spectra: the fits end at L ≈ 1e-32, where H = GN up to ~1e-16·max|λ|, and
# the smallest genuine eigenvalue of the efficient student is ≈ 1.5e-3·max|λ| (measured), so any band between
# the two counts the same.
ZERO_BAND = 1e-8


def _load_demo():
    spec = importlib.util.spec_from_file_location("torch_landscape_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    demo = _load_demo()
    runs = tmp_path_factory.mktemp("runs")
    results, outcomes = demo.run(runs, quick=True)
    return demo, {r.width: r for r in results}, outcomes, runs


def _inertia(model: nn.Module, data) -> tuple[int, int, torch.Tensor]:
    values = torch.linalg.eigvalsh(dense_truth(model, nn.MSELoss(), data))
    band = ZERO_BAND * float(values.abs().max())
    return int((values < -band).sum()), int((values.abs() <= band).sum()), values


def test_exact_width_student_is_a_nondegenerate_efficient_minimum(demo_run):
    demo, results, _, _ = demo_run
    exact = results[3]
    data = demo.make_data(demo.make_teacher())
    negative, zero, values = _inertia(exact.model, data)
    assert (negative, zero) == (0, 0)  # dense truth: H ≻ 0, a strongly convex neighbourhood
    assert exact.critical.kind == "nondegenerate_min", exact.critical.reason
    assert exact.critical.lambda_min == pytest.approx(float(values[0]), rel=1e-8)
    assert exact.snapshot.loss < demo.GLOBAL_LOSS and exact.critical.grad_norm < 1e-12
    # The monitor's last snapshot (after polishing) bounds λ_min away from 0 by its own error bound.
    assert exact.snapshot.spectrum.eigenvalues[0] > exact.snapshot.spectrum.error_bounds[0]
    assert exact.snapshot.redundancy.effective_width == 3


def test_wider_student_is_a_redundant_nonisolated_minimum(demo_run):
    demo, results, _, _ = demo_run
    wider = results[4]
    x, y = demo.make_data(demo.make_teacher())
    assert wider.snapshot.loss < demo.GLOBAL_LOSS and wider.critical.grad_norm < 1e-12
    negative, zero, _ = _inertia(wider.model, (x, y))
    assert negative == 0 and zero >= 1  # dense truth: positive semidefinite and singular, not strongly convex
    assert (wider.critical.morse_index, wider.critical.nullity) == (0, zero)
    assert wider.nullity.measured_nullity == zero and wider.nullity.predicted_nullity == zero
    assert wider.nullity.unexplained_nullity == 0
    # The redundancy claim, checked by its consequence: the merged 3-neuron network computes the same function
    # on the data (to rounding; outputs are O(1)).
    redundancy = wider.snapshot.redundancy
    assert redundancy.effective_width == 3
    merged = redundancy.merged_model()
    with torch.no_grad():
        assert float((merged(x) - wider.model(x)).abs().max()) < 1e-10
    assert wider.critical.degenerate_kind == "nonisolated_min"  # every probed null direction flat


def test_story_over_seeds(demo_run):
    _, _, outcomes, _ = demo_run
    # Quick sweep: seeds 2 and 3 (measured: both tell the story; the full run's six seeds: 6/6 and 5/6).
    exact = [o for o in outcomes if o.width == 3]
    wider = [o for o in outcomes if o.width == 4]
    assert len(exact) == len(wider) == 2
    assert all(o.loss < 1e-20 and o.kind == "nondegenerate_min" and o.effective_width == 3 for o in exact)
    for o in wider:
        assert o.loss < 1e-20 and o.critical and o.morse_index == 0
        assert o.effective_width == 3 and o.nullity == o.predicted_nullity >= 1 and o.unexplained_nullity == 0


def test_event_files_hold_the_landscape_tags(demo_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, results, _, runs = demo_run
    for result in results.values():
        assert result.log_dir.parent == runs
        accumulator = EventAccumulator(str(result.log_dir))
        accumulator.Reload()
        scalars = set(accumulator.Tags()["scalars"])
        for tag in (
            "landscape/hessian/lambda_max",
            "landscape/hessian/lambda_min",
            "landscape/hessian/trace",
            "landscape/convexity/pl_ratio",
            "landscape/convexity/one_point",
            "landscape/redundancy/effective_width",
            "landscape/redundancy/score",
        ):
            assert tag in scalars, tag
        widths = accumulator.Scalars("landscape/redundancy/effective_width")
        assert widths[-1].value == result.snapshot.redundancy.effective_width


def test_report_names_both_students_and_tensorboard(demo_run):
    demo, results, outcomes, runs = demo_run
    text = demo.report(list(results.values()), outcomes)
    assert "nondegenerate_min" in text and "exact_width_m3" in text and "wider_m4" in text
    assert f".venv/bin/tensorboard --logdir {runs}" in text
    assert "the story holds for 2 of 2 seeds" in text
