"""`make demo` in quick mode: the story it tells, and the TensorBoard logs it leaves."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytorch_lightning")
pytest.importorskip("tensorboard")

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


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
    results = demo.run(runs, quick=True)
    return demo, {r.width: r for r in results}, runs


def test_exact_width_student_is_a_nondegenerate_efficient_minimum(demo_run):
    _, results, _ = demo_run
    exact = results[3]
    assert exact.critical.kind == "nondegenerate_min", exact.critical.reason
    assert exact.snapshot.critical.kind == "nondegenerate_min"  # the monitor's own last classification
    assert exact.snapshot.redundancy.effective_width == 3
    assert exact.snapshot.spectrum.eigenvalues[0] > exact.snapshot.spectrum.error_bounds[0]
    assert exact.as_expected


def test_wider_student_is_redundant_with_explained_null_space(demo_run):
    _, results, _ = demo_run
    wider = results[5]
    assert wider.snapshot.redundancy.effective_width < wider.width
    assert wider.nullity.critical
    assert wider.nullity.measured_nullity >= 1
    assert wider.nullity.unexplained_nullity == 0
    assert wider.critical.kind == "degenerate"
    assert wider.as_expected


def test_event_files_hold_the_landscape_tags(demo_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, results, runs = demo_run
    for result in results.values():
        assert result.log_dir.parent == runs
        accumulator = EventAccumulator(str(result.log_dir))
        accumulator.Reload()
        scalars = set(accumulator.Tags()["scalars"])
        for tag in (
            "landscape/hessian/lambda_max", "landscape/hessian/lambda_min", "landscape/hessian/trace",
            "landscape/convexity/pl_ratio", "landscape/convexity/one_point",
            "landscape/redundancy/effective_width", "landscape/redundancy/score",
        ):
            assert tag in scalars, tag
        widths = accumulator.Scalars("landscape/redundancy/effective_width")
        assert widths[-1].value == result.snapshot.redundancy.effective_width


def test_report_names_both_students_and_tensorboard(demo_run):
    demo, results, runs = demo_run
    text = demo.report(list(results.values()))
    assert "nondegenerate_min" in text and "exact_width_m3" in text and "wider_m5" in text
    assert f"tensorboard --logdir {runs}" in text
    assert "NOT the expected story" not in text
