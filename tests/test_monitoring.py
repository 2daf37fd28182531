"""The framework-free monitoring session: budget and pacer on a simulated clock, the closing evaluation that
completes a light snapshot, the plain-loop use with sinks, and the session's state across a resume."""

import warnings

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from helpers import regression_data, shallow, train
from torch_landscape.monitoring import MonitoringSession, OverheadBudget, Pacer, Schedule, Sink
from torch_landscape.monitoring.budget import MIN_LIGHT_POINTS, MIN_SECONDS
from torch_landscape.probe import LandscapeProbe
from torch_landscape.snapshot import LandscapeSnapshot
from torch_landscape.writers import TensorBoardSink


class Clock:
    """A simulated clock: seconds pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CostlyProbe:
    """A probe whose evaluations take ``light`` or ``full`` simulated seconds."""

    quantities = ("pl", "spectrum", "critical")
    num_parameters = 10  # within the light dense threshold: the first evaluation is full (it is cheap)
    method = "auto"
    trajectory: list = []

    def __init__(self, clock: Clock, light: float, full: float, num_parameters: int = 10) -> None:
        self.clock, self.light, self.full, self.num_parameters = clock, light, full, num_parameters

    def describe(self) -> str:
        return "a simulated probe"

    def snapshot(self, step, full, optimizer=None, quantities=None):
        seconds = self.full if full else self.light
        self.clock.now += seconds
        return LandscapeSnapshot(step, 1, 0.0, 0.0, seconds, full=full)

    def complete(self, light):
        self.clock.now += self.full
        return LandscapeSnapshot(light.step, 1, 0.0, 0.0, self.full, full=True)

    def full_cost_guess(self, light):
        return None  # the schedule's prior: a full evaluation costs FULL_COST_PRIOR light ones


def simulate(steps, step_seconds=0.01, light=0.02, full=1.0, known_length=True, num_parameters=10, **schedule):
    """Drive a session through ``steps`` training steps of ``step_seconds`` on a simulated clock, from the
    initial evaluation to the closing one; returns its light and full steps and its final share of the time."""
    clock = Clock()
    session = MonitoringSession(
        CostlyProbe(clock, light, full, num_parameters),
        total_steps=steps if known_length else None,
        clock=clock,
        name="LandscapeMonitor",
        **schedule,
    )
    session.start()  # the initial evaluation
    for step in range(1, steps + 1):
        clock.now += step_seconds(step) if callable(step_seconds) else step_seconds
        session.after_step(step)
    session.close(steps)
    full_steps = [s.step for s in session.history if s.full]
    light_steps = [s.step for s in session.history if not s.full]
    return light_steps, full_steps, session.pacer.share()


def test_automatic_schedule_spends_its_share_evenly_and_keeps_the_closing_evaluation():
    light_steps, full_steps, share = simulate(20000, max_overhead=0.05)  # 200 s of training
    # 5% of the wall time is 10.5 s: 1.25 s reserved for the closing full evaluation (its cost and a margin)
    # and 1 s for the initial one, both paid pro rata over the run, the rest shared 75/25 between light and
    # full: ~300 light evaluations of 0.02 s and one or two more full ones of 1 s. A paced full evaluation that
    # would fall closer to the closing one than half its gap is not made; its share and the margin stay unspent.
    assert 0.042 <= share <= 0.0505
    assert full_steps[0] == 0 and full_steps[-1] == 20000 and 3 <= len(full_steps) <= 5
    assert 290 <= len(light_steps) <= 350
    gaps = np.diff(light_steps)
    assert gaps.max() <= 2.5 * gaps.mean()  # paced over the run, not spent in a burst
    assert np.diff(full_steps).min() >= 5000  # paced: none bunched, the closing one included


def test_a_short_run_still_draws_curves():
    """A 320-step run of 2 ms steps trains for 0.64 s, 5% of which pays for almost nothing; the floor of
    MIN_SECONDS over the run gives the curves their points."""
    light_steps, full_steps, _ = simulate(320, step_seconds=0.002, light=0.004, full=0.03)
    assert len(light_steps) + len(full_steps) >= 20 and len(full_steps) >= 3
    assert full_steps[-1] == 320


def test_a_short_run_with_a_costly_full_evaluation_gets_its_curve_and_two_full_ones():
    """The small-batch Adam classifier of examples/adam_classifier.py: 690 steps, 1 s of training, so the
    floor of MIN_SECONDS (1.25 s) pays; a full evaluation costs 0.3 s. The usual quarter of the allowance for
    full evaluations cannot pay for one, so the light ones get it, after the first full evaluation, paid pro
    rata from where it happens: MIN_LIGHT_POINTS light ones and the closing one still fit."""
    light_steps, full_steps, share = simulate(690, step_seconds=1.0 / 690, light=0.015, full=0.3, num_parameters=2410)
    assert light_steps[0] == 0  # Krylov-sized: the first evaluation is light, and measures a light one's cost
    assert len(full_steps) == 2 and 0 < full_steps[0] < 690 and full_steps[-1] == 690
    assert len(light_steps) + len(full_steps) >= MIN_LIGHT_POINTS
    spent = share / (1 - share) * 1.0  # s = share·(T + s)
    assert spent <= MIN_SECONDS + 0.015  # the floor, to one light evaluation
    gaps = np.diff(sorted(light_steps + full_steps))
    assert gaps.max() <= 3 * gaps.mean()  # the one-off full evaluation does not stall the curve


def test_one_slow_decision_does_not_stop_the_deciding():
    """A decision preempted by the system for 10 ms, on 1 ms steps, once made the pacer decide only every
    thousands of steps (deciding is kept below 2% of what the budget allows per step); the quickest decision
    sets the pace."""
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.start(horizon=10_000)
    outlook = pacer._outlook

    def preempted(step):
        clock.now += 0.01 if step == 50 else 1e-6
        return outlook(step)

    pacer._outlook = preempted
    evaluated = []
    for step in range(1, 10_000):
        clock.now += 0.001
        decision = pacer.decide(step)
        if decision is not None:
            clock.now += 0.005
            pacer.record(decision, step, 0.005)
            evaluated.append(step)
    later = [step for step in evaluated if step > 50]
    assert later and later[0] < 500 and np.diff(later).max() < 1000


def test_a_stall_in_training_does_not_fire_a_burst_of_evaluations():
    """A 5-second stall (a checkpoint, a validation loop) at step 2500 earns allowance for ~5 evaluations;
    they are not spent on the steps right after it."""
    light_steps, full_steps, share = simulate(5000, step_seconds=lambda step: 5.0 if step == 2500 else 0.01)
    evaluations = sorted(light_steps + full_steps)
    assert min(np.diff(evaluations)) >= 10 and share <= 0.05


def test_an_unknown_length_paces_by_time_alone():
    light_steps, full_steps, share = simulate(5000, known_length=False, max_overhead=0.1)
    assert share <= 0.1 + 0.01 and full_steps[-1] == 5000 and len(light_steps) >= 20


def test_a_costly_explicit_schedule_is_warned_about_once():
    with pytest.warns(UserWarning, match="LandscapeMonitor has spent .* of the training time") as caught:
        light_steps, full_steps, share = simulate(500, every_n_steps=10, full_every=5)
    assert len(caught) == 1 and "Light evaluations every" in str(caught[0].message)
    assert len(light_steps) + len(full_steps) == 51 and full_steps[:3] == [0, 50, 100] and full_steps[-1] == 500
    assert share > 0.25


def test_the_automatic_schedule_never_warns_about_its_cost():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate(500, step_seconds=0.001, light=0.05, full=2.0)


def test_an_epoch_schedule_evaluates_at_epoch_ends_only():
    clock = Clock()
    pacer = Pacer(schedule=Schedule(every_n_epochs=2, full_every=2), clock=clock)
    pacer.start(horizon=100)
    decisions = {}
    for step in range(1, 100):
        assert pacer.decide(step) is None  # not by steps
        if step % 10 == 0:
            decision = pacer.decide_epoch(step // 10 - 1, step)
            if decision is not None:
                decisions[step] = decision
                pacer.record(decision, step, 0.0)
    # Epochs 2, 4, … end at steps 20, 40, …; every second evaluation is full, counting from the first.
    assert decisions == {20: "full", 40: "light", 60: "full", 80: "light"}


@pytest.mark.parametrize("overhead", [0.0, 1.0, -0.1, 1.5, True, "5%"])
def test_a_budget_outside_zero_one_is_refused(overhead):
    with pytest.raises(ValueError, match="max_overhead must be a fraction in \\(0, 1\\)"):
        OverheadBudget(overhead)


class Recorder(Sink):
    """A sink that keeps what it receives."""

    def __init__(self):
        self.written, self.closed = [], None

    def write(self, snapshot, previous, cost):
        self.written.append((snapshot, previous, cost))

    def close(self, verdict, step):
        self.closed = (verdict, step)


def test_the_closing_evaluation_completes_a_light_snapshot_on_the_krylov_path():
    """P = 321 > 256: a light evaluation solves for λ_max alone. The closing full evaluation at the same step
    completes it: both ends of the spectrum, the negative count, the critical point and the verdicts come from
    the full evaluation, and PL keeps its light value (its tracker saw the step once)."""
    data = regression_data(128, 6)
    model = train(shallow(6, 40, nn.Tanh()), data, steps=40)
    probe = LandscapeProbe(model, nn.MSELoss(), data, quantities=["pl", "spectrum", "critical", "redundancy"])
    sink = Recorder()
    session = MonitoringSession(probe, sinks=[sink], every_n_steps=1, full_every=1000)
    session.evaluate(7, "light")
    light = session.last_snapshot
    assert light.spectrum_ends == "largest" and light.negative_count is None and light.critical is None
    verdict = session.close(7)
    final = session.last_snapshot
    assert [s.step for s in session.history] == [7] and final.full
    assert final.spectrum_ends == "both" and final.negative_count is not None
    assert final.critical is not None and final.redundancy is not None and final.divergence is not None
    assert final.pl is light.pl and len(probe._state.pl.state_dict()["losses"]) == 1
    assert final.spectrum.lambda_max == pytest.approx(light.spectrum.lambda_max, rel=2e-3)  # light_tol 1e-3
    # The sink got the completing snapshot with the light one it completes, and the verdict.
    assert sink.written[-1][0] is final and sink.written[-1][1] is light
    assert sink.closed == (verdict, 7)


def test_a_plain_loop_gets_the_schedule_closing_evaluation_and_verdict(tmp_path):
    torch.manual_seed(0)
    x, y = regression_data(256, 3)
    model = shallow(3, 4, nn.Tanh())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = LandscapeProbe(model, nn.MSELoss(), (x, y), quantities=["pl", "spectrum", "trace"])
    with SummaryWriter(str(tmp_path)) as writer:
        # A fixed schedule, so that the test does not depend on this machine's speed (the budget's pacing is
        # tested above on a simulated clock): light every 10 steps, full at the start and the end.
        session = MonitoringSession(
            probe, sinks=[TensorBoardSink(writer)], total_steps=40, optimizer=optimizer, every_n_steps=10, full_every=50
        )
        session.start()
        for step in range(1, 41):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
            session.after_step(step)
        verdict = session.close()
    assert session.history[0].step == 0 and session.history[-1].step == 40 and session.history[-1].full
    assert session.history[-1].learning_rate == 0.1 and verdict.startswith("after 40 steps")
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("landscape/hessian/lambda_max")]
    assert steps == [0, 10, 20, 30, 40]  # the closing evaluation completes step 40's light one, logged once
    assert "landscape/verdict/text_summary" in events.Tags()["tensors"]


def test_a_resumed_session_goes_on_from_its_state():
    data = regression_data(64, 3)
    model = shallow(3, 4, nn.Tanh())
    first = MonitoringSession(LandscapeProbe(model, nn.MSELoss(), data), every_n_steps=2, full_every=2)
    first.start()
    for step in range(1, 5):
        first.after_step(step)
    resumed = MonitoringSession(LandscapeProbe(model, nn.MSELoss(), data), every_n_steps=2, full_every=2)
    resumed.load_state_dict(first.state_dict())
    assert resumed.start(4) is None  # a resumed run does not evaluate its first step again
    resumed.after_step(6)
    first.after_step(6)
    ours, theirs = resumed.last_snapshot, first.last_snapshot
    assert ours.full == theirs.full  # full_every counts the evaluations before the resume
    # The running state came along: the same L* estimate and the whole eigenvalue trajectory.
    assert ours.pl.loss_star == pytest.approx(theirs.pl.loss_star, rel=1e-12)
    assert ours.pl.mu_running_min == pytest.approx(theirs.pl.mu_running_min, rel=1e-12, nan_ok=True)
    np.testing.assert_allclose(np.array(resumed.probe.trajectory), np.array(first.probe.trajectory), rtol=1e-12)


def test_a_full_evaluation_is_predicted_from_the_cheapest_light_one_or_the_probes_guess():
    budget = OverheadBudget(0.05)
    for seconds in (0.03, 0.01, 0.02):  # the first light ones start their solver cold
        budget.record("light", seconds)
    assert budget.predicted("light") == 0.02 and budget.predicted("full") == pytest.approx(20 * 0.01)
    budget.guess_full(0.5)
    budget.guess_full(0.7)  # the least guess holds: a guess going up and down would move the closing reserve
    assert budget.predicted("full") == 0.5
    budget.record("full", 0.4)
    assert budget.predicted("full") == 0.4
