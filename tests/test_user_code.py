"""The Lightning code people actually write, in either namespace: losses computed inline in training_step, a
criterion attribute, a returned dict, weighted batches, a small-batch Adam classifier. The monitor with no
arguments evaluates the module's own training step; its values are checked against dense float64 truth."""

import importlib
import math

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import dense_truth
from torch_landscape import HessianOperator
from torch_landscape.callbacks import HessianMonitor, LandscapeMonitor, monitors
from torch_landscape.callbacks.namespaces import LandscapeConfigError
from torch_landscape.stability import stability_reading

NAMESPACES = ["pytorch_lightning", "lightning.pytorch"]


def namespace(name):
    return importlib.import_module(name)


def trainer_for(L, tmp_path, callbacks, steps=12, **kwargs):
    return L.Trainer(
        max_steps=steps,
        logger=L.loggers.TensorBoardLogger(str(tmp_path)),
        callbacks=callbacks,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
        **kwargs,
    )


def classifier_module(L, style):
    """A 4 → 6 → 3 tanh classifier whose loss is computed inline, three ways users write it."""

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
            self.criterion = nn.CrossEntropyLoss()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            if style == "inline":
                loss = F.cross_entropy(self(x), y)
            else:
                loss = self.criterion(self(x), y)
            self.log("train_loss", loss)
            return {"loss": loss} if style == "dict" else loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.01)

    return Classifier()


def classes(n=96, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def scalars(directory, tag):
    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    accumulator.Reload()
    return (
        {event.step: event.value for event in accumulator.Scalars(tag)} if tag in accumulator.Tags()["scalars"] else {}
    )


@pytest.mark.parametrize("name", NAMESPACES)
@pytest.mark.parametrize("style", ["inline", "criterion", "dict"])
def test_a_module_with_an_inline_loss_is_monitored_with_no_arguments(tmp_path, name, style):
    L = namespace(name)
    x, y = classes()
    module = classifier_module(L, style)
    monitor = LandscapeMonitor(every_n_steps=4, full_every=2, probe_data=(x, y))
    trainer = trainer_for(L, tmp_path, [monitor])
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
    final = monitor.last_snapshot
    assert final.step == 12 and final.full and not final.errors
    # The objective is the module's own mean cross-entropy over the probe set, at the final parameters.
    truth = torch.linalg.eigvalsh(dense_truth(module.net, nn.CrossEntropyLoss(), (x.double(), y)))
    assert final.spectrum.lambda_max == pytest.approx(float(truth[-1]), rel=1e-10)
    assert final.loss == pytest.approx(float(F.cross_entropy(module.net.double()(x.double()), y)), rel=1e-12)
    # The module's self.log never saw the probe's evaluations: train_loss holds the training batches' losses.
    logged = scalars(trainer.logger.log_dir, "train_loss")
    assert len(logged) == 12 and all(abs(value - final.loss) > 1e-9 for value in logged.values())
    # Adam's stability ratio at every evaluation after its first step: λ_max(P⁻¹H) over 38/lr (β1 = 0.9), as
    # the core computes it from the optimizer's state at the final parameters.
    reading = stability_reading(trainer.optimizers[0], HessianOperator(monitor.probe.objective()))
    assert final.stability.status == "ok" and final.stability.setup.threshold == pytest.approx(38 / 0.01)
    assert final.stability.ratio == pytest.approx(reading.ratio, abs=2 * final.stability.ratio_error + 1e-12)
    assert sorted(scalars(trainer.logger.log_dir, "landscape/stability/ratio")) == [4, 8, 12]


def weighted_module(L):
    class Weighted(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
            self.loss_fn = nn.MSELoss()  # an attribute the weighted loss does not use as such

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y, w = batch
            return (w * (self(x) - y) ** 2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    return Weighted()


def weighted_loss(net, data):
    x, y, w = data
    return (w * (net(x) - y) ** 2).mean()


@pytest.mark.parametrize("name", NAMESPACES)
def test_weighted_batches_give_the_weighted_objective(tmp_path, name):
    """(x, y, w) batches: the objective is the training step's weighted mean, not an unweighted MSE."""
    L = namespace(name)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(64, 3, generator=generator)
    y = torch.sin(x[:, :1])
    w = torch.rand(64, 1, generator=generator) * 4
    module = weighted_module(L)
    monitor = HessianMonitor(every_n_steps=4, full_every=1, quantities=["spectrum"])
    trainer = trainer_for(L, tmp_path, [monitor], steps=8)
    trainer.fit(module, DataLoader(TensorDataset(x, y, w), batch_size=16))
    net = module.net.double()
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]

    def loss(flat):
        chunks = torch.split(flat, [s.numel() for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        out = torch.func.functional_call(net, params, (x.double(),))
        return (w.double() * (out - y.double()) ** 2).mean()

    truth = torch.linalg.eigvalsh(torch.func.jacrev(torch.func.jacrev(loss))(theta))
    unweighted = torch.linalg.eigvalsh(dense_truth(net, nn.MSELoss(), (x.double(), y.double())))
    assert monitor.last_snapshot.spectrum.lambda_max == pytest.approx(float(truth[-1]), rel=1e-10)
    assert abs(float(truth[-1]) - float(unweighted[-1])) > 0.1  # the two objectives differ: the check can fail


def test_an_explicit_loss_fn_with_weighted_batches_is_refused_with_the_fix(tmp_path):
    L = namespace("lightning.pytorch")
    x, y, w = torch.randn(32, 3), torch.randn(32, 1), torch.rand(32, 1)
    monitor = HessianMonitor(loss_fn=nn.MSELoss(), probe_data=[(x, y, w)])
    trainer = trainer_for(L, tmp_path, [monitor], steps=2)
    with pytest.raises(LandscapeConfigError, match="has 3 items; loss_fn\\(outputs, targets\\) would ignore"):
        trainer.fit(weighted_module(L), DataLoader(TensorDataset(x, y, w), batch_size=16))


@pytest.mark.parametrize("name", NAMESPACES)
def test_manual_optimisation_is_refused_naming_loss_fn(tmp_path, name):
    L = namespace(name)

    class Manual(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.net = nn.Linear(3, 1)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            loss = F.mse_loss(self(batch[0]), batch[1])
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = torch.randn(32, 3), torch.randn(32, 1)
    trainer = trainer_for(L, tmp_path, [LandscapeMonitor()], steps=2)
    with pytest.raises(L.utilities.exceptions.MisconfigurationException, match="manual optimisation.*loss_fn="):
        trainer.fit(Manual(), DataLoader(TensorDataset(x, y), batch_size=16))


def test_a_summed_training_loss_is_refused(tmp_path):
    L = namespace("lightning.pytorch")

    class Summed(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return ((self(batch[0]) - batch[1]) ** 2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    x, y = torch.randn(32, 3), torch.randn(32, 1)
    trainer = trainer_for(L, tmp_path, [LandscapeMonitor(probe_data=(x, y))], steps=2)
    with pytest.raises(LandscapeConfigError, match="sums over samples"):
        trainer.fit(Summed(), DataLoader(TensorDataset(x, y), batch_size=16))


def test_class_weights_follow_the_probe_dtype(tmp_path):
    """CrossEntropyLoss(weight=float32 tensor) in a float64 objective: the weights are cast, not refused."""
    L = namespace("pytorch_lightning")
    x, y = classes()
    weight = torch.tensor([1.0, 2.0, 0.5])
    module = classifier_module(L, "criterion")
    module.criterion = nn.CrossEntropyLoss(weight=weight)
    monitor = HessianMonitor(every_n_steps=4, full_every=1, quantities=["spectrum"], probe_data=(x, y))
    trainer_for(L, tmp_path, [monitor], steps=4).fit(module, DataLoader(TensorDataset(x, y), batch_size=16))
    truth = torch.linalg.eigvalsh(dense_truth(module.net, nn.CrossEntropyLoss(weight=weight.double()), (x.double(), y)))
    assert monitor.last_snapshot.spectrum.lambda_max == pytest.approx(float(truth[-1]), rel=1e-10)


def cli_classes(L):
    class Regression(L.LightningModule):
        def __init__(self, width: int = 4):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, width), nn.Tanh(), nn.Linear(width, 1))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return F.mse_loss(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    class Data(L.LightningDataModule):
        def train_dataloader(self):
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(64, 3, generator=generator)
            return DataLoader(TensorDataset(x, torch.sin(x[:, :1])), batch_size=16)

    return Regression, Data


@pytest.mark.parametrize("name", NAMESPACES)
def test_the_monitor_can_be_declared_in_a_lightning_cli_config(tmp_path, name):
    L = namespace(name)
    cli = importlib.import_module(f"{name}.cli")
    config = tmp_path / "config.yaml"
    config.write_text(
        "trainer:\n"
        "  max_steps: 4\n"
        "  accelerator: cpu\n"
        "  devices: 1\n"
        f"  default_root_dir: {tmp_path}\n"
        "  enable_progress_bar: false\n"
        "  callbacks:\n"
        "    - class_path: torch_landscape.callbacks.LandscapeMonitor\n"
        "      init_args:\n"
        "        every_n_steps: 2\n"
        "        full_every: 2\n"
    )
    model, data = cli_classes(L)
    run = cli.LightningCLI(model, data, args=["fit", "--config", str(config)], save_config_callback=None)
    monitors = [callback for callback in run.trainer.callbacks if isinstance(callback, LandscapeMonitor)]
    assert len(monitors) == 1 and [s.step for s in monitors[0].history] == [0, 2, 4]


def regression_module(L):
    model, _ = cli_classes(L)
    return model()


@pytest.mark.parametrize("name", NAMESPACES)
def test_a_training_and_a_held_out_monitor_on_one_trainer(tmp_path, name):
    """Two monitors of one class need name=; the named one gets a TensorBoard run of its own (both appear in
    the same charts), and both log one overhead figure: the share of the wall time the two spent together."""
    L = namespace(name)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, generator=generator)
    y = torch.sin(x[:, :1])
    train = LandscapeMonitor(every_n_steps=2, full_every=2, probe_data=(x[:64], y[:64]))
    held_out = LandscapeMonitor(every_n_steps=2, full_every=2, probe_data=(x[64:], y[64:]), name="heldout")
    trainer = trainer_for(L, tmp_path, [train, held_out], steps=6)
    trainer.fit(regression_module(L), DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16))
    assert train.state_key != held_out.state_key
    assert [s.step for s in train.history] == [s.step for s in held_out.history] == [0, 2, 4, 6]
    assert train.last_snapshot.loss != held_out.last_snapshot.loss  # different probe sets
    log_dir = trainer.logger.log_dir
    ours = scalars(log_dir, "landscape/probe/loss")
    theirs = scalars(f"{log_dir}/heldout", "landscape/probe/loss")
    assert ours[6] == pytest.approx(train.last_snapshot.loss, rel=1e-6)
    assert theirs[6] == pytest.approx(held_out.last_snapshot.loss, rel=1e-6)
    # One ledger: at the last step both report the same combined share.
    assert train.session.pacer.ledger is held_out.session.pacer.ledger


def captured_console(monkeypatch) -> list[str]:
    """The monitors' console lines (Lightning's rank-zero info log), captured whatever logging is set to."""
    lines: list[str] = []
    monkeypatch.setattr(monitors, "console", lambda trainer: lines.append)
    return lines


def test_a_second_fit_starts_a_fresh_history_and_says_so(tmp_path, monkeypatch):
    L = namespace("lightning.pytorch")
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    monitor = LandscapeMonitor(every_n_steps=2, full_every=2, probe_data=(x, y), loss_star=0.0)
    module = regression_module(L)
    trainer_for(L, tmp_path, [monitor], steps=4).fit(module, DataLoader(TensorDataset(x, y), batch_size=16))
    first = monitor.history
    lines = captured_console(monkeypatch)
    trainer_for(L, tmp_path, [monitor], steps=2).fit(module, DataLoader(TensorDataset(x, y), batch_size=16))
    assert [s.step for s in first] == [0, 2, 4] and [s.step for s in monitor.history] == [0, 2]
    assert monitor.previous_histories == [first] and any("a new fit starts a new history" in s for s in lines)
    # The new fit's PL tracker starts afresh: its first evaluation has no earlier losses.
    assert monitor.probe.state_dict()["pl"]["steps"] == [0, 2]


def test_a_csv_logger_gets_one_row_per_evaluation(tmp_path):
    import csv

    L = namespace("lightning.pytorch")
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    monitor = LandscapeMonitor(every_n_steps=2, full_every=2, probe_data=(x, y))
    trainer = L.Trainer(
        max_steps=4,
        logger=L.loggers.CSVLogger(str(tmp_path)),
        callbacks=[monitor],
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=100,
    )
    trainer.fit(regression_module(L), DataLoader(TensorDataset(x, y), batch_size=16))
    with open(f"{trainer.logger.log_dir}/metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("landscape/probe/loss")]
    assert [int(row["step"]) for row in rows] == [0, 2, 4]
    assert all(row["landscape/monitor/overhead"] for row in rows)  # the cost is in the same row


def test_a_run_that_blows_up_is_said_to_have_diverged(tmp_path, monkeypatch):
    """SGD far past its stability threshold: the loss overflows to inf/nan. The console says when λ_max·lr/2
    passes 1 and when the loss stops being finite; the verdict says "diverged at step N" with the last finite
    values, and claims no rate from the earlier, finite evaluations."""
    L = namespace("lightning.pytorch")

    class Unstable(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return F.mse_loss(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=20.0)

    generator = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(64, 3, generator=generator)
    y = 5 * torch.randn(64, 1, generator=generator)
    monitor = LandscapeMonitor(every_n_steps=1, full_every=10, probe_data=(x, y), loss_star=0.0)
    trainer = trainer_for(L, tmp_path, [monitor], steps=30)
    lines = captured_console(monkeypatch)
    trainer.fit(Unstable(), DataLoader(TensorDataset(x, y), batch_size=64))
    console = "\n".join(lines)
    losses = [s.loss for s in monitor.history]
    first_bad = next(i for i, loss in enumerate(losses) if not math.isfinite(loss))
    verdict = monitor.session.verdict
    assert verdict.startswith(f"diverged at step {monitor.history[first_bad].step}")
    assert "converging" not in verdict and f"step {monitor.history[first_bad - 1].step}" in verdict
    assert "> 1 at step 0: the optimizer is unstable" in console and "training diverged" in console
    events = [text for _, text in monitor.session.events]
    assert any("training diverged" in text for text in events)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1)),
        lambda: nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1))),
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.Tanh(), nn.Dropout(0.3), nn.Linear(4, 1)),
    ],
    ids=["flatten", "nested", "dropout"],
)
def test_one_hidden_layer_networks_as_people_write_them(make):
    """A Flatten first, a nested Sequential, a Dropout between the layers: still one hidden layer. The structured
    Hessian agrees with dense truth (float64 rounding, 1e-12 relative), and a planted duplicate neuron is
    merged, verified on the whole model."""
    from torch_landscape import find_shallow, hessian_eigenvalues, neuron_redundancy

    torch.manual_seed(0)
    model = make().double()
    net = find_shallow(model)
    with torch.no_grad():
        net.hidden.weight[3] = net.hidden.weight[0]
        net.hidden.bias[3] = net.hidden.bias[0]
    x, y = torch.randn(64, 1, 2, 3, dtype=torch.float64), torch.randn(64, 1, dtype=torch.float64)
    assert net.flatten and net.width == 4
    spectrum = hessian_eigenvalues(model, nn.MSELoss(), (x, y), k=3)
    truth = torch.linalg.eigvalsh(dense_truth(model, nn.MSELoss(), (x, y)))
    assert spectrum.lambda_max == pytest.approx(float(truth[-1]), rel=1e-12)
    report = neuron_redundancy(model, (x, y))
    assert report.effective_width == 3 and [tuple(f.neurons) for f in report.claims] == [(0, 3)]
