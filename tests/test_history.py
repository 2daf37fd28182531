"""Snapshots and a session's history through plain state: torch.save, then torch.load(weights_only=True), gives
back the same values, tensors and types; a state naming a class outside torch_landscape is refused."""

import dataclasses
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from helpers import planted_tanh, regression_data, shallow
from torch_landscape import (
    LandscapeProbe,
    LandscapeSnapshot,
    ShallowNetwork,
    classify_critical_point,
    contradictions,
    divergence_verdict,
)
from torch_landscape.monitoring import MonitoringSession, run_verdict
from torch_landscape.snapshot_state import snapshot_from_state, snapshot_to_state

F64 = torch.float64
MSE = nn.MSELoss()
FIXTURES = Path(__file__).parent / "fixtures"

#: Every result class a snapshot nests; the round-trip snapshots below must contain each of them.
RESULTS = {
    "LandscapeSnapshot",
    "PLEstimate",
    "OnePointConvexity",
    "Spectrum",
    "TraceEstimate",
    "SpectralDensity",
    "CriticalPoint",
    "NullProfile",
    "RedundancyReport",
    "RedundancyFinding",
    "OutputChange",
    "Divergence",
    "DivergingPair",
    "NullityCheck",
    "Contradiction",
    "LandscapeSlices",
    "LossSlice",
    "Direction",
}


def through_disk(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same(original, restored, where="snapshot"):
    """Equal values of the same types, tensors equal in dtype, shape and every entry (NaN where NaN); the
    module-holding caches (compare=False) come back as None, every other field as it was."""
    assert type(restored) is type(original), f"{where}: {type(restored)} != {type(original)}"
    if isinstance(original, torch.Tensor):
        # Exact: tolerance 0, dtype, device and shape checked, NaN only where NaN.
        torch.testing.assert_close(restored, original, rtol=0, atol=0, equal_nan=True, msg=where)
    elif dataclasses.is_dataclass(original):
        for field in dataclasses.fields(original):
            value, back = getattr(original, field.name), getattr(restored, field.name)
            if not field.compare and isinstance(value, (nn.Module, ShallowNetwork)):
                assert back is None, f"{where}.{field.name}"
            else:
                assert_same(value, back, f"{where}.{field.name}")
    elif isinstance(original, (tuple, list)):
        assert len(original) == len(restored), where
        for index, (a, b) in enumerate(zip(original, restored, strict=True)):
            assert_same(a, b, f"{where}[{index}]")
    elif isinstance(original, dict):
        assert original.keys() == restored.keys(), where
        for key in original:
            assert_same(original[key], restored[key], f"{where}[{key!r}]")
    elif isinstance(original, float) and math.isnan(original):
        assert math.isnan(restored), where
    else:
        assert original == restored, where


def classes(value, found=None):
    """The names of the dataclasses nested in ``value``."""
    found = set() if found is None else found
    if dataclasses.is_dataclass(value):
        found.add(type(value).__name__)
        for field in dataclasses.fields(value):
            if field.compare:
                classes(getattr(value, field.name), found)
    elif isinstance(value, (tuple, list)):
        for item in value:
            classes(item, found)
    return found


def diverging_verdicts():
    """A Divergence with its neuron pairs and the contradiction it makes with a loosely critical point, from
    the diverging tanh student of tests/fixtures (see make_verdict_fixtures.py)."""
    saved = torch.load(FIXTURES / "diverging_tanh.pt")
    model = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    model.load_state_dict(saved["state"])
    divergence = divergence_verdict(saved["history"].tolist(), model)
    loose = classify_critical_point(model, MSE, (saved["x"], saved["y"]), rtol_grad=1e-2)
    return divergence, tuple(contradictions(loose, divergence=divergence))


@pytest.fixture(scope="module")
def shallow_snapshot():
    """A full snapshot of a one-hidden-layer network with every quantity. The probe computes no null-direction
    profiles and no divergence pairs at this θ, so the critical point is classified with profiles at the same θ,
    and the divergence verdict (with the contradiction it makes) is taken from the diverging fixture."""
    model, data = planted_tanh(30)
    probe = LandscapeProbe(model, MSE, data, reference=shallow(2, 3, nn.Tanh(), seed=5))
    snapshot = probe.snapshot(3, learning_rate=0.1)
    assert snapshot.errors == ()
    critical = classify_critical_point(model, MSE, data, profiles=True, max_profiles=1)
    divergence, found = diverging_verdicts()
    return dataclasses.replace(snapshot, critical=critical, divergence=divergence, contradictions=found)


def test_a_full_one_hidden_layer_snapshot_round_trips_through_a_weights_only_load(shallow_snapshot):
    assert classes(shallow_snapshot) == RESULTS  # every nested result class is exercised
    assert shallow_snapshot.redundancy.claims and shallow_snapshot.critical.profiles
    assert shallow_snapshot.divergence.pairs and shallow_snapshot.nullity.predicted_nullity == 3
    restored = snapshot_from_state(through_disk(snapshot_to_state(shallow_snapshot)))
    assert_same(shallow_snapshot, restored)
    # What the restored report computes from its stored tensors is what the original computes.
    assert torch.equal(restored.redundancy.similarity_matrix(), shallow_snapshot.redundancy.similarity_matrix())
    assert str(restored.redundancy) == str(shallow_snapshot.redundancy)
    assert run_verdict([restored]) == run_verdict([shallow_snapshot])


def test_a_full_mlp_snapshot_round_trips_through_a_weights_only_load():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    x, y = regression_data(48, 3)
    snapshot = LandscapeProbe(model, MSE, (x, y), reference=torch.zeros(35, dtype=F64)).snapshot(5)
    assert snapshot.errors == () and type(snapshot.redundancy).__name__ == "MLPRedundancy"
    restored = snapshot_from_state(through_disk(snapshot_to_state(snapshot)))
    assert_same(snapshot, restored)
    assert restored.redundancy.widths == (4, 3) and restored.redundancy.findings == snapshot.redundancy.findings


def test_numpy_scalars_are_stored_as_python_numbers():
    snapshot = LandscapeSnapshot(
        step=1, num_parameters=3, loss=np.float64(0.25), grad_norm=np.float32(2.0), seconds=0.1
    )
    state = snapshot_to_state(snapshot)
    fields = state["snapshot"]["fields"]
    assert type(fields["loss"]) is float and type(fields["grad_norm"]) is float and fields["grad_norm"] == 2.0
    restored = snapshot_from_state(through_disk(state))
    assert type(restored.loss) is float and restored.loss == 0.25


def _forged(state, name):
    state = dict(state)
    state["snapshot"] = {**state["snapshot"], "fields": {**state["snapshot"]["fields"]}}
    state["snapshot"]["fields"]["trace"] = {"__dataclass__": name, "fields": {}}
    return state


@pytest.mark.parametrize(
    "name, message",
    [
        ("os:system", "refusing to construct 'os:system'"),
        ("builtins:dict", "refusing to construct"),
        ("torch_landscape_evil:Spectrum", "refusing to construct"),
        ("torch_landscape.snapshot:LandscapeSnapshot.__init__", "refusing to construct"),
        ("torch_landscape.probe:LandscapeProbe", "is not a dataclass of torch_landscape"),
        ("torch_landscape.snapshot:dataclasses", "is not a dataclass of torch_landscape"),
        ("torch_landscape.nowhere:Spectrum", "names a module this torch_landscape lacks"),
    ],
)
def test_a_forged_state_naming_another_class_is_refused(name, message):
    state = snapshot_to_state(LandscapeSnapshot(step=0, num_parameters=1, loss=1.0, grad_norm=0.0, seconds=0.0))
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        snapshot_from_state(_forged(state, name))


def test_bad_states_and_unstorable_values_are_refused_with_the_reason():
    snapshot = LandscapeSnapshot(step=0, num_parameters=1, loss=1.0, grad_norm=0.0, seconds=0.0)
    state = snapshot_to_state(snapshot)
    with pytest.raises(ValueError, match="reads version 1"):
        snapshot_from_state({**state, "version": 2})
    with pytest.raises(ValueError, match="written by snapshot_to_state"):
        snapshot_from_state([state])
    unknown = {**state, "snapshot": {**state["snapshot"], "fields": {**state["snapshot"]["fields"], "extra": 1}}}
    with pytest.raises(ValueError, match=r"no field\(s\) \['extra'\]"):
        snapshot_from_state(unknown)
    with pytest.raises(TypeError, match="must be a LandscapeSnapshot"):
        snapshot_to_state(state)
    # A result field holding something a weights-only load cannot read is named by its path.
    with pytest.raises(TypeError, match=r"snapshot.errors\[0\]: a numpy.ndarray cannot be stored"):
        snapshot_to_state(dataclasses.replace(snapshot, errors=(np.zeros(2),)))


def test_a_sessions_state_round_trips_with_its_history():
    data = regression_data(64, 3)
    model = shallow(3, 4, nn.Tanh())
    first = MonitoringSession(LandscapeProbe(model, MSE, data), every_n_steps=2, full_every=2)
    first.start()
    with pytest.warns(UserWarning, match="spent"):  # a fixed schedule this dense is over budget: said, not fatal
        for step in range(1, 5):
            first.after_step(step)
    assert [(s.step, s.full) for s in first.history] == [(0, True), (2, False), (4, True)]
    resumed = MonitoringSession(LandscapeProbe(model, MSE, data), every_n_steps=2, full_every=2)
    resumed.load_state_dict(through_disk(first.state_dict()))
    assert len(resumed.history) == len(first.history)
    for index, (ours, theirs) in enumerate(zip(first.history, resumed.history, strict=True)):
        assert_same(ours, theirs, f"history[{index}]")
    assert run_verdict(resumed.history) == run_verdict(first.history)
    # A state written before the history was stored still loads, with an empty history.
    older = {key: value for key, value in first.state_dict().items() if key != "history"}
    again = MonitoringSession(LandscapeProbe(model, MSE, data), every_n_steps=2, full_every=2)
    again.load_state_dict(older)
    assert again.history == []


def test_a_lightning_resume_restores_the_monitors_history(tmp_path):
    pl = pytest.importorskip("pytorch_lightning")
    from torch.utils.data import DataLoader, TensorDataset

    from torch_landscape.callbacks import LandscapeMonitor

    class Student(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = shallow(3, 4, nn.Tanh())
            self.loss_fn = MSE

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return self.loss_fn(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    x, y = regression_data(32, 3)  # 2 steps per epoch

    def run(epochs, checkpoint=None):
        monitor = LandscapeMonitor(every_n_steps=2, probe_data=(x, y), quantities=["pl", "spectrum"], figures=False)
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[monitor, pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1)],
        )
        with pytest.warns(UserWarning):  # a dense fixed schedule is over budget on a network this small
            trainer.fit(Student(), DataLoader(TensorDataset(x, y), batch_size=16), ckpt_path=checkpoint)
        return monitor

    first = run(2)
    # Mid-run (a checkpoint at a fit's last step precedes its closing evaluation: issue #22, item 3).
    checkpoint = tmp_path / "epoch=0-step=2.ckpt"
    saved = torch.load(checkpoint, weights_only=True)  # the whole checkpoint, history included, loads weights-only
    assert saved["callbacks"]
    resumed = run(3, checkpoint)
    assert [snapshot.step for snapshot in resumed.history] == [0, 2, 4, 6]
    for index in range(2):  # the snapshots taken before the checkpoint come back from it
        assert_same(first.history[index], resumed.history[index], f"history[{index}]")


def test_a_restored_report_says_why_it_cannot_merge():
    """A redundancy report restored from a checkpoint holds every number but no model: merged_model() says so."""
    from helpers import regression_data, shallow
    from torch_landscape.redundancy import neuron_redundancy
    from torch_landscape.snapshot import LandscapeSnapshot
    from torch_landscape.snapshot_state import snapshot_from_state, snapshot_to_state

    report = neuron_redundancy(shallow(3, 4, torch.nn.Tanh()), [regression_data(32, 3)])
    state = snapshot_to_state(LandscapeSnapshot(0, 21, 0.0, 0.0, 0.0, redundancy=report))
    restored = snapshot_from_state(state).redundancy
    assert restored.width == report.width and restored.score == report.score
    with pytest.raises(RuntimeError, match="restored from a checkpoint.*neuron_redundancy"):
        restored.merged_model()
