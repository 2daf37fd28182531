"""The Lightning monitors end to end: what lands in the event files is what the core computes at the same
parameters; training is bit-identical with and without them; resume; bad configurations; the schedule."""

import copy
import csv
import random

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from torch_landscape import Objective, hessian_eigenvalues, hessian_trace
from torch_landscape.callbacks import (
    ConvexityMonitor,
    HessianMonitor,
    LandscapeMonitor,
    RedundancyMonitor,
    monitors,
)
from torch_landscape.convexity import PLTracker, one_point_convexity
from torch_landscape.critical.classify import classify_critical_point
from torch_landscape.redundancy import neuron_redundancy

TRAINER = dict(
    accelerator="cpu",
    devices=1,
    enable_progress_bar=False,
    enable_model_summary=False,
    enable_checkpointing=False,
    log_every_n_steps=1,
)


class Student(pl.LightningModule):
    def __init__(self, width: int = 4, dropout: float = 0.0, adam: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, width), nn.Tanh(), nn.Linear(width, 1))
        self.dropout = nn.Dropout(dropout)
        self.loss_fn = nn.MSELoss()
        self.adam = adam

    def forward(self, x):
        return self.net(self.dropout(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.02) if self.adam else torch.optim.SGD(self.parameters(), lr=0.1)


def teacher_and_data(n: int = 128):
    generator = torch.Generator().manual_seed(1)
    teacher = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1))
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    x = torch.randn(n, 3, generator=generator)
    return teacher, x, teacher(x).detach()


def events(directory):
    accumulator = EventAccumulator(
        str(directory), size_guidance={"scalars": 0, "tensors": 0, "images": 0, "histograms": 0}
    )
    accumulator.Reload()
    return accumulator


def scalars(accumulator, tag):
    return {event.step: event.value for event in accumulator.Scalars(tag)}


class ParameterRecorder(Callback):
    """The module's parameters at every step the monitor can see."""

    def __init__(self):
        self.states = {}

    def on_train_start(self, trainer, pl_module):
        self.states[trainer.global_step] = copy.deepcopy(pl_module.state_dict())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.states[trainer.global_step] = copy.deepcopy(pl_module.state_dict())


def test_logged_values_are_the_core_values_at_the_same_parameters(tmp_path):
    teacher, x, y = teacher_and_data()
    probe = (x[:64], y[:64])
    recorder = ParameterRecorder()
    monitor = LandscapeMonitor(every_n_steps=4, full_every=2, reference=teacher, probe_data=probe, loss_star=0.0, k=3)
    pl.seed_everything(0)
    trainer = pl.Trainer(max_epochs=2, logger=TensorBoardLogger(tmp_path), callbacks=[recorder, monitor], **TRAINER)
    trainer.fit(Student(), DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
    logged = events(trainer.logger.log_dir)
    loss_steps = sorted(scalars(logged, "landscape/probe/loss"))
    assert loss_steps == [0, 4, 8, 12, 16]
    # The curvature at every evaluation (P = 21: the light spectrum is dense and exact), the rest at every
    # 2nd and the last.
    assert sorted(scalars(logged, "landscape/hessian/lambda_max")) == loss_steps
    bounds = scalars(logged, "landscape/hessian/lambda_max_error")  # an error bar at every evaluation
    assert sorted(bounds) == loss_steps and all(0 <= b < 1e-6 for b in bounds.values())
    assert sorted(scalars(logged, "landscape/hessian/lambda_min")) == loss_steps
    assert sorted(scalars(logged, "landscape/hessian/critical")) == [0, 8, 16]

    tracker = PLTracker(0.0, learning_rate=0.1)
    for step in loss_steps:
        student = Student()
        student.load_state_dict(recorder.states[step])
        loss, gradient = Objective(student, nn.MSELoss(), probe, dtype=torch.float64).loss_and_gradient()
        expected = {
            "landscape/probe/loss": float(loss),
            "landscape/probe/grad_norm": float(gradient.norm()),
            "landscape/convexity/pl_ratio": tracker.update(step, float(loss), float(gradient @ gradient)).mu,
            "landscape/convexity/one_point": one_point_convexity(student, nn.MSELoss(), probe, teacher).value,
        }
        spectrum = hessian_eigenvalues(student, nn.MSELoss(), probe, k=3, dtype=torch.float64)
        expected.update(
            {
                "landscape/hessian/lambda_max": spectrum.lambda_max,
                "landscape/hessian/lambda_min": spectrum.lambda_min,
                "landscape/hessian/eos_ratio": spectrum.lambda_max * 0.1 / 2,
                "landscape/hessian/trace": hessian_trace(student, nn.MSELoss(), probe, dtype=torch.float64).value,
            }
        )
        if step % 8 == 0:
            critical = classify_critical_point(student, nn.MSELoss(), probe, k=3)
            redundancy = neuron_redundancy(student, [probe])
            expected.update(
                {
                    "landscape/hessian/critical": float(critical.critical),
                    "landscape/hessian/negative_count": critical.negative_count,
                    "landscape/redundancy/effective_width": redundancy.effective_width,
                    "landscape/redundancy/score": redundancy.score,
                }
            )
            if critical.critical:
                expected.update(
                    {
                        "landscape/hessian/morse_index": critical.morse_index,
                        "landscape/hessian/nullity": critical.nullity,
                    }
                )
        for tag, value in expected.items():
            # Event files hold float32.
            assert scalars(logged, tag)[step] == pytest.approx(value, rel=1e-6, abs=1e-30), (tag, step)
    for tag in logged.Tags()["scalars"]:  # one value per step and tag, the last step included
        steps = [e.step for e in logged.Scalars(tag)]
        assert len(steps) == len(set(steps)), tag
    final = monitor.last_snapshot
    assert final.step == 16 and final.spectrum.lambda_max == spectrum.lambda_max  # float64, exact
    assert {"landscape/hessian/spectrum"} <= set(logged.Tags()["histograms"])
    assert {"landscape/report/text_summary", "custom_scalars__config__"} <= set(logged.Tags()["tensors"])
    for figure in ("spectral_density", "neuron_similarity", "eigenvalue_trajectories"):  # by default, at the end only
        assert [image.step for image in logged.Images(f"landscape/figures/{figure}")] == [16]


class Snapshot(Callback):
    """Copies of the module's gradients and train/eval flags, to compare before and after the monitor."""

    def __init__(self, reference=None):
        self.reference, self.checked = reference, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        state = (
            [None if p.grad is None else p.grad.clone() for p in pl_module.parameters()],
            [m.training for m in pl_module.modules()],
        )
        if self.reference is None:
            self.state = state
            return
        before = self.reference.state
        assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(before[0], state[0], strict=True))
        assert before[1] == state[1] and all(state[1])
        self.checked += 1


def _fit_for_bits(tmp_path, monitored: bool):
    teacher, x, y = teacher_and_data()
    pl.seed_everything(3)
    model = Student(dropout=0.2, adam=True)  # dropout and shuffling consume random numbers
    before = Snapshot()
    after = Snapshot(before)
    callbacks = [before, LandscapeMonitor(every_n_steps=3, full_every=1, reference=teacher, probe_size=48), after]
    trainer = pl.Trainer(
        max_epochs=2, logger=TensorBoardLogger(tmp_path), callbacks=callbacks if monitored else [], **TRAINER
    )
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
    streams = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    return model, trainer, streams, callbacks


def test_training_is_bit_identical_with_and_without_the_monitor(tmp_path):
    plain, plain_trainer, plain_streams, _ = _fit_for_bits(tmp_path / "plain", monitored=False)
    watched, watched_trainer, watched_streams, callbacks = _fit_for_bits(tmp_path / "watched", monitored=True)
    for a, b in zip(plain.state_dict().values(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    optimizer_a, optimizer_b = plain_trainer.optimizers[0].state_dict(), watched_trainer.optimizers[0].state_dict()
    for key in optimizer_a["state"]:
        for name in optimizer_a["state"][key]:
            assert torch.equal(optimizer_a["state"][key][name], optimizer_b["state"][key][name])
    assert torch.equal(plain_streams[0], watched_streams[0])
    assert np.array_equal(plain_streams[1], watched_streams[1]) and plain_streams[2] == watched_streams[2]
    assert callbacks[2].checked == 16  # .grad and train mode compared around the monitor at every step
    monitor = callbacks[1]
    assert monitor.last_snapshot.errors == () and monitor.last_snapshot.spectrum is not None
    # The default probe set: the dataset indexed by a private seeded permutation, not the training order.
    _, x, y = teacher_and_data()
    chosen = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:48].sort().values
    inputs = torch.cat([batch[0] for batch in monitor.probe.objective().batches])
    assert torch.equal(inputs, x[chosen].double())


class NoForward(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
        self.loss_fn = nn.MSELoss()

    def training_step(self, batch, batch_idx):
        return self.loss_fn(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Deep(Student):
    """Neither a one-hidden-layer network nor a plain MLP (a LayerNorm between the layers)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.LayerNorm(4), nn.Linear(4, 1))


class Stream(IterableDataset):
    def __iter__(self):
        _, x, y = teacher_and_data(32)
        return iter(zip(x, y, strict=True))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(every_n_steps=0), "every_n_steps must be a positive integer"),
        (dict(every_n_epochs=-2), "every_n_epochs must be a positive integer"),
        (dict(full_every=0), "full_every must be a positive integer"),
        (dict(every_n_steps=2.5), "every_n_steps must be a positive integer"),
        (dict(max_overhead=0), "max_overhead must be a fraction"),
        (dict(quantities=["hessian_max"]), "unknown quantities"),
        (dict(quantities=["one_point"]), "one_point needs reference"),
        (dict(probe_size=0), "probe_size must be a positive integer"),
        (dict(figures="yes"), "figures must be"),
        (dict(on_error="ignore"), "on_error must be"),
        (dict(loss_fn=nn.MSELoss(), loss=lambda m, b: 0), "not both"),
    ],
)
def test_bad_arguments_fail_at_construction(arguments, message):
    with pytest.raises(MisconfigurationException, match=message):
        LandscapeMonitor(**arguments)


def test_a_specialised_monitor_refuses_the_others_quantities():
    with pytest.raises(MisconfigurationException, match="HessianMonitor computes some of"):
        HessianMonitor(quantities=["pl"])
    assert ConvexityMonitor().quantities == ("pl",)  # one_point needs a reference
    assert RedundancyMonitor().quantities == ("redundancy",)


@pytest.mark.parametrize(
    "case, message",
    [
        ("figures without tensorboard", "needs a TensorBoardLogger"),
        ("loss_fn without forward", "defines no forward"),
        ("reference of another architecture", "does not fit the model: the reference has another architecture"),
        ("reference tensor of the wrong size", "θ has 21"),
        ("redundancy of a deep network", "redundancy needs a one-hidden-layer network"),
        ("iterable dataset", "must be map-style"),
    ],
)
def test_bad_configuration_fails_before_training_with_the_fix(tmp_path, case, message):
    teacher, x, y = teacher_and_data(32)
    module, options, logger = Student(), {}, CSVLogger(tmp_path)
    data = DataLoader(TensorDataset(x, y), batch_size=16)
    if case == "figures without tensorboard":
        options = dict(figures=True)
    elif case == "loss_fn without forward":
        module, options = NoForward(), dict(loss_fn=nn.MSELoss())
    elif case == "reference of another architecture":
        options = dict(reference=nn.Sequential(nn.Linear(5, 2), nn.Tanh(), nn.Linear(2, 1)))
    elif case == "reference tensor of the wrong size":
        options = dict(reference=torch.zeros(7))
    elif case == "redundancy of a deep network":
        module, options = Deep(), dict(quantities=["redundancy"])
    else:
        data = DataLoader(Stream(), batch_size=16)
    trainer = pl.Trainer(max_steps=2, logger=logger, callbacks=[LandscapeMonitor(**options)], **TRAINER)
    with pytest.raises(MisconfigurationException, match=message):
        trainer.fit(module, data)
    assert trainer.global_step == 0


def test_without_a_logger_the_snapshots_stay_on_the_monitor(tmp_path):
    _, x, y = teacher_and_data(64)
    monitor = HessianMonitor(every_n_steps=2, full_every=2, probe_data=(x, y))
    trainer = pl.Trainer(max_steps=4, logger=False, callbacks=[monitor], **TRAINER)
    trainer.fit(Student(), DataLoader(TensorDataset(x, y), batch_size=16))
    assert [(s.step, s.full) for s in monitor.history] == [(0, True), (2, False), (4, True)]
    assert monitor.history[-1] is monitor.last_snapshot and monitor.last_snapshot.critical is not None
    assert all(s.spectrum is not None for s in monitor.history)


def test_scalars_reach_a_csv_logger_without_tensorboard(tmp_path):
    _, x, y = teacher_and_data(64)
    monitor = HessianMonitor(every_n_steps=2, full_every=2, probe_data=(x, y))
    trainer = pl.Trainer(max_steps=4, logger=CSVLogger(tmp_path), callbacks=[monitor], **TRAINER)
    trainer.fit(Student(), DataLoader(TensorDataset(x, y), batch_size=16))
    with open(trainer.logger.experiment.metrics_file_path) as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("landscape/hessian/lambda_max")]
    assert [int(row["step"]) for row in rows] == [0, 2, 4]
    assert float(rows[-1]["landscape/hessian/lambda_max"]) == monitor.last_snapshot.spectrum.lambda_max
    assert float(rows[-1]["landscape/hessian/critical"]) == monitor.last_snapshot.critical.critical
    assert "landscape/hessian/lambda_max" in trainer.callback_metrics


def _resumable_run(tmp_path, version, max_epochs, teacher, data, checkpoint=None, every_n_steps=3):
    x, y = data
    pl.seed_everything(0)
    monitor = LandscapeMonitor(
        every_n_steps=every_n_steps,
        full_every=2,
        reference=teacher,
        probe_data=(x[:48], y[:48]),
        quantities=["pl", "one_point", "spectrum"],
        method="lanczos",
        k=2,
        figures=False,
    )
    saver = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_top_k=-1, every_n_epochs=1)
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        logger=TensorBoardLogger(tmp_path, version=version),
        callbacks=[monitor, saver],
        **{**TRAINER, "enable_checkpointing": True},
    )
    trainer.fit(Student(), DataLoader(TensorDataset(x, y), batch_size=16), ckpt_path=checkpoint)
    return trainer


def test_a_checkpoint_at_a_fits_last_step_resumes_as_if_uninterrupted(tmp_path):
    """The fit's last step is an evaluation step of the schedule (12 = 3 × 4): its evaluation is made before the
    checkpoint is saved (the closing one completes it), so the resumed run logs what an uninterrupted one does."""
    teacher, x, y = teacher_and_data(64)  # 4 steps per epoch
    whole = _resumable_run(tmp_path / "whole", "whole", 4, teacher, (x, y), every_n_steps=4)
    first = _resumable_run(tmp_path / "split", "first", 3, teacher, (x, y), every_n_steps=4)
    resumed = _resumable_run(
        tmp_path / "split",
        "second",
        4,
        teacher,
        (x, y),
        checkpoint=tmp_path / "split" / "checkpoints" / "epoch=2-step=12.ckpt",
        every_n_steps=4,
    )
    a, b = events(whole.logger.log_dir), events(resumed.logger.log_dir)
    for tag in a.Tags()["scalars"]:
        if tag.startswith("landscape/monitor"):
            continue
        later = {step: value for step, value in scalars(a, tag).items() if step > 12}
        assert scalars(b, tag) == pytest.approx(later, rel=0, abs=0, nan_ok=True), tag
    assert sorted(scalars(b, "landscape/hessian/lambda_min")) == [16]  # the full evaluation at 16 is there
    early = events(first.logger.log_dir)
    assert sorted(scalars(early, "landscape/convexity/pl_ratio_running_min")) == [4, 8, 12]
    (monitor,) = [c for c in resumed.callbacks if isinstance(c, LandscapeMonitor)]
    (reference,) = [c for c in whole.callbacks if isinstance(c, LandscapeMonitor)]
    assert [s.step for s in monitor.history] == [s.step for s in reference.history] == [0, 4, 8, 12, 16]


def test_a_resumed_run_logs_what_an_uninterrupted_one_does(tmp_path):
    teacher, x, y = teacher_and_data(64)  # 4 steps per epoch
    whole = _resumable_run(tmp_path / "whole", "whole", 4, teacher, (x, y))
    _resumable_run(tmp_path / "split", "first", 2, teacher, (x, y))
    resumed = _resumable_run(
        tmp_path / "split",
        "second",
        4,
        teacher,
        (x, y),
        checkpoint=tmp_path / "split" / "checkpoints" / "epoch=1-step=8.ckpt",
    )
    a, b = events(whole.logger.log_dir), events(resumed.logger.log_dir)
    compared = 0
    for tag in a.Tags()["scalars"]:
        if tag.startswith("landscape/monitor"):
            continue
        later = {step: value for step, value in scalars(a, tag).items() if step > 8}
        assert scalars(b, tag) == pytest.approx(later, rel=0, abs=0, nan_ok=True), tag
        compared += len(later)
    assert sorted(scalars(b, "landscape/convexity/pl_ratio_running_min")) == [9, 12, 15, 16]
    assert scalars(b, "landscape/hessian/num_hvp") and compared > 40


def test_several_monitors_share_one_layout_and_keep_separate_state(tmp_path):
    teacher, x, y = teacher_and_data(64)
    hessian = HessianMonitor(every_n_steps=2, full_every=1, probe_data=(x, y), figures=False)
    convexity = ConvexityMonitor(every_n_steps=2, reference=teacher, probe_data=(x, y))
    trainer = pl.Trainer(max_steps=4, logger=TensorBoardLogger(tmp_path), callbacks=[hessian, convexity], **TRAINER)
    trainer.fit(Student(), DataLoader(TensorDataset(x, y), batch_size=16))
    # One writer, one layout (TensorBoard shows the latest), grown as either monitor's tags arrive.
    layouts = events(trainer.logger.log_dir).Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(layouts[-1].tensor_proto.string_val[0])
    titles = [category.title for category in layout.category]
    assert "landscape 1: curvature" in titles and "landscape 3: convexity" in titles
    assert "landscape 4: redundancy" not in titles  # no monitor computes it
    assert hessian.state_key != convexity.state_key
    assert hessian.state_dict()["probe"]["warm_start"] is not None and convexity.state_dict()["probe"]["pl"]["losses"]


class DoubleShy(nn.Module):
    """An MSE loss with no float64 gradient: the set-up check (a forward pass) passes, every diagnostic
    then fails, training (float32) does not."""

    def forward(self, outputs, targets):
        if outputs.dtype == torch.float64 and outputs.requires_grad:
            raise RuntimeError("no double precision here")
        return nn.functional.mse_loss(outputs, targets)


def test_a_failing_diagnostic_is_warned_about_once_and_training_goes_on(tmp_path):
    _, x, y = teacher_and_data(64)
    monitor = HessianMonitor(every_n_steps=1, full_every=1, loss_fn=DoubleShy(), probe_data=(x, y))
    trainer = pl.Trainer(max_steps=4, logger=TensorBoardLogger(tmp_path), callbacks=[monitor], **TRAINER)
    with pytest.warns(RuntimeWarning, match="loss failed at step 0") as caught:
        trainer.fit(Student(), DataLoader(TensorDataset(x, y), batch_size=16))
    assert len([w for w in caught if "torch_landscape" in str(w.message)]) == 1
    assert trainer.global_step == 4 and "no double precision" in monitor.last_snapshot.errors[0]
    assert "landscape/errors/text_summary" in events(trainer.logger.log_dir).Tags()["tensors"]
    strict = HessianMonitor(every_n_steps=1, loss_fn=DoubleShy(), probe_data=(x, y), on_error="raise")
    trainer = pl.Trainer(max_steps=4, logger=TensorBoardLogger(tmp_path), callbacks=[strict], **TRAINER)
    with pytest.raises(RuntimeError, match="no double precision"):
        trainer.fit(Student(), DataLoader(TensorDataset(x, y), batch_size=16))


class Pairs(torch.utils.data.Dataset):
    """Batches that are dicts, not (inputs, targets)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return {"features": self.x[index], "label": self.y[index]}


class DictStudent(Student):
    def training_step(self, batch, batch_idx):
        return self.loss_fn(self(batch["features"]), batch["label"])


def test_loss_callable_for_other_batch_structures_on_an_epoch_schedule(tmp_path):
    _, x, y = teacher_and_data(64)
    monitor = LandscapeMonitor(
        every_n_epochs=1,
        full_every=1,
        quantities=["pl", "spectrum"],
        probe_size=40,
        loss=lambda module, batch: nn.functional.mse_loss(module(batch["features"]), batch["label"]),
    )
    trainer = pl.Trainer(max_epochs=2, logger=TensorBoardLogger(tmp_path), callbacks=[monitor], **TRAINER)
    module = DictStudent()
    trainer.fit(module, DataLoader(Pairs(x, y), batch_size=16))
    assert sorted(scalars(events(trainer.logger.log_dir), "landscape/hessian/lambda_max")) == [0, 4, 8]
    chosen = torch.randperm(64, generator=torch.Generator().manual_seed(0))[:40].sort().values
    expected = hessian_eigenvalues(module, nn.MSELoss(), (x[chosen], y[chosen]), k=5, dtype=torch.float64)
    torch.testing.assert_close(monitor.last_snapshot.spectrum.eigenvalues, expected.eigenvalues, rtol=1e-12, atol=1e-12)


def test_the_end_of_training_completes_a_light_last_step_without_repeating_it(tmp_path, monkeypatch):
    """When Lightning cannot say where training ends (e.g. a stream), the last step may get a light
    evaluation before the closing full one; the closing one adds to it without feeding the trackers twice
    or logging a value twice."""
    monkeypatch.setattr(monitors, "horizon", lambda trainer: None)
    teacher, x, y = teacher_and_data(64)
    monitor = LandscapeMonitor(
        every_n_steps=2, full_every=3, quantities=["pl", "spectrum", "critical"], probe_data=(x, y)
    )
    trainer = pl.Trainer(max_steps=4, logger=TensorBoardLogger(tmp_path), callbacks=[monitor], **TRAINER)
    trainer.fit(Student(), DataLoader(TensorDataset(x, y), batch_size=16))
    logged = events(trainer.logger.log_dir)
    # The tracker saw step 4 once; step 0 has no L̂* yet, so its PL ratio is NaN and not logged.
    assert [e.step for e in logged.Scalars("landscape/convexity/pl_ratio")] == [2, 4]
    assert [e.step for e in logged.Scalars("landscape/hessian/lambda_max")] == [0, 2, 4]
    assert [e.step for e in logged.Scalars("landscape/hessian/critical")] == [0, 4]
    final = monitor.last_snapshot
    assert final.step == 4 and final.full and final.critical is not None and final.pl.step == 4
    assert [s.step for s in monitor.history] == [0, 2, 4]


class TwoHidden(Student):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))


def test_a_deep_mlp_gets_neuron_redundancy_for_every_hidden_layer(tmp_path):
    _, x, y = teacher_and_data(64)
    monitor = RedundancyMonitor(every_n_steps=2, full_every=1, probe_data=(x, y), figures=False)
    trainer = pl.Trainer(max_steps=2, logger=TensorBoardLogger(tmp_path), callbacks=[monitor], **TRAINER)
    trainer.fit(TwoHidden(), DataLoader(TensorDataset(x, y), batch_size=16))
    report = monitor.last_snapshot.redundancy
    assert report is not None and report.widths == (4, 3)
    assert scalars(events(trainer.logger.log_dir), "landscape/redundancy/width")[2] == 7
