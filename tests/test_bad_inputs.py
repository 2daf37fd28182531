"""Bad input is caught early and named: every case below is something a user writes by mistake, and each must
fail with the library's own exception, at construction (or the monitors' ``setup``), with a message that names
the argument and the fix. The positive tests check that the checks do not fire on what is right."""

import math
import types

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import dense_truth, regression_data, shallow
from torch_landscape import (
    HessianOperator,
    LandscapeProbe,
    Objective,
    hessian_eigenvalues,
    hessian_trace,
    one_point_convexity,
    pl_ratio,
    spectral_density,
)
from torch_landscape.callbacks import ConvexityMonitor, HessianMonitor, LandscapeMonitor, RedundancyMonitor
from torch_landscape.settings import ProbeSettings

MSE = nn.MSELoss()
N = 12
X, Y = regression_data(N, 3)  # a one-hidden-layer network below has P = 3·4 + 4 + 4 + 1 = 21
LABELS = torch.arange(N) % 5


def net(width: int = 4) -> nn.Module:
    return shallow(3, width, nn.Tanh())


def classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5)).double()


def deep() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def unsupported() -> nn.Module:
    """Neither a one-hidden-layer network nor a plain MLP: no neuron redundancy."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.LayerNorm(4), nn.Linear(4, 1)).double()


def summed(outputs, targets):
    return ((outputs - targets) ** 2).sum()


def mean_squares(outputs, targets):
    return ((outputs - targets) ** 2).mean()


def relative_squares(outputs, targets):
    """Not finite where a target is 0."""
    return ((outputs - targets) ** 2 / targets.abs()).mean()


def noisy_loss(outputs, targets):
    return nn.functional.mse_loss(outputs, targets) * (1 + 0.1 * torch.rand(()))


def with_entry(tensor, row, column, value):
    tensor = tensor.clone()
    tensor[row, column] = value
    return tensor


class ForcedDropout(nn.Module):
    """Dropout that ignores eval mode: F.dropout without training=self.training."""

    def forward(self, x):
        return nn.functional.dropout(x, 0.5)


def forced_dropout() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), ForcedDropout(), nn.Linear(4, 1)).double()


X_NAN, Y_INF = with_entry(X, 7, 1, math.nan), with_entry(Y, 4, 0, math.inf)


# (id, call, exception, pattern the message must match: it names the argument or the fix)
CORE = [
    (
        "data single tensor",
        lambda: Objective(net(), MSE, X),
        TypeError,
        r"data must be .*single tensor.*data=\(inputs, targets\)",
    ),
    (
        "data numpy arrays",
        lambda: Objective(net(), MSE, (X.numpy(), Y.numpy())),
        TypeError,
        r"data holds numpy arrays.*torch\.as_tensor",
    ),
    ("data one numpy array", lambda: Objective(net(), MSE, X.numpy()), TypeError, r"data must be .*numpy array"),
    ("data None", lambda: Objective(net(), MSE, None), TypeError, r"data must be a batch \(inputs, targets\)"),
    (
        "data a Dataset",
        lambda: Objective(net(), MSE, TensorDataset(X, Y)),
        TypeError,
        r"yields single samples.*DataLoader",
    ),
    ("data dict", lambda: Objective(net(), MSE, {"x": X, "y": Y}), TypeError, r"data must be .*got a dict"),
    (
        "batch of numpy arrays",
        lambda: Objective(net(), MSE, [(X.numpy(), Y.numpy())]),
        TypeError,
        r"batch 0 of data holds .*torch\.as_tensor",
    ),
    (
        "one-tuple batches",
        lambda: Objective(net(), MSE, [(X,)]),
        TypeError,
        r"batch 0 of data is a tuple of 1 element.*\(inputs, targets\)",
    ),
    ("mismatched samples", lambda: Objective(net(), MSE, (X, Y[:5])), ValueError, r"same number of samples"),
    ("params a string", lambda: Objective(net(), MSE, (X, Y), params="0.weight"), TypeError, r"params=\['0\.weight'\]"),
    (
        "params not names",
        lambda: Objective(net(), MSE, (X, Y), params=[0]),
        TypeError,
        r"params must be a list of parameter names",
    ),
    (
        "params unknown",
        lambda: Objective(net(), MSE, (X, Y), params=["nope"]),
        ValueError,
        r"unknown parameter names \['nope'\]",
    ),
    (
        "dtype a string",
        lambda: Objective(net(), MSE, (X, Y), dtype="float64"),
        TypeError,
        r"dtype must be a torch\.dtype such as torch\.float64",
    ),
    (
        "dtype integer",
        lambda: Objective(net(), MSE, (X, Y), dtype=torch.int64),
        ValueError,
        r"dtype must be a floating dtype",
    ),
    ("MSELoss sum", lambda: Objective(net(), nn.MSELoss(reduction="sum"), (X, Y)), ValueError, r"reduction='mean'"),
    ("custom sum", lambda: Objective(net(), summed, (X, Y)), ValueError, r"sums over samples.*reduction='mean'"),
    (
        "cross entropy sum",
        lambda: Objective(classifier(), nn.CrossEntropyLoss(reduction="sum"), (X, LABELS)),
        ValueError,
        r"reduction='mean'",
    ),
    (
        "custom broadcast",
        lambda: Objective(net(), mean_squares, (X, Y[:, 0])),
        ValueError,
        r"broadcast to \(12, 12\).*reshape the targets",
    ),
    ("MSELoss broadcast", lambda: Objective(net(), MSE, (X, Y[:, 0])), ValueError, r"reshape the targets"),
    (
        "vector loss",
        lambda: Objective(net(), nn.MSELoss(reduction="none"), (X, Y)),
        ValueError,
        r"loss_fn must return a scalar.*reduction='mean'",
    ),
    (
        "integer inputs",
        lambda: Objective(net(), MSE, (X.long(), Y)),
        TypeError,
        r"inputs of batch 0 of data are torch\.int64.*x\.float\(\)",
    ),
    (
        "inputs of another width",
        lambda: Objective(net(), MSE, (X[:, :2], Y)),
        ValueError,
        r"model\(inputs\) fails on batch 0 of data",
    ),
    ("loss_fn not callable", lambda: Objective(net(), "mse", (X, Y)), TypeError, r"loss_fn must be callable"),
    (
        "one NaN input",
        lambda: Objective(net(), MSE, [(X[:5], Y[:5]), (X_NAN[5:], Y[5:])]),
        ValueError,
        r"sample 2 of batch 1 of data: its input holds nan .*clean the data.*probe_data= for the monitors",
    ),
    (
        "one inf target",
        lambda: Objective(net(), MSE, (X, Y_INF)),
        ValueError,
        r"sample 4 of batch 0 .*target holds inf",
    ),
    (
        "one sample's loss inf",
        lambda: Objective(net(), relative_squares, (X, with_entry(Y, 9, 0, 0.0))),
        ValueError,
        r"sample 9 of batch 0 of data: its input, target and model output are finite, but its loss is not",
    ),
    (
        "forced dropout",
        lambda: Objective(forced_dropout(), MSE, (X, Y)),
        ValueError,
        r"not a function of θ.*module '2' draws random numbers in eval mode.*training=self\.training",
    ),
    ("random loss", lambda: Objective(net(), noisy_loss, (X, Y)), ValueError, r"loss_fn draws random numbers"),
    (
        "random loss, eigenvalues",
        lambda: hessian_eigenvalues(net(), noisy_loss, (X, Y)),
        ValueError,
        r"not a function of θ.*loss_fn draws random numbers",
    ),
    (
        "model not a module",
        lambda: Objective(lambda x: x, MSE, (X, Y)),
        TypeError,
        r"model must be a torch\.nn\.Module",
    ),
    ("operator without data", lambda: HessianOperator(net(), MSE), TypeError, r"pass model, loss_fn and data"),
    (
        "operator of a sum loss",
        lambda: HessianOperator(net(), nn.MSELoss(reduction="sum"), (X, Y)),
        ValueError,
        r"reduction='mean'",
    ),
    (
        "trace method",
        lambda: hessian_trace(net(), MSE, (X, Y), method="exactly"),
        ValueError,
        r"method must be 'auto', 'exact'",
    ),
    (
        "trace num_hvp",
        lambda: hessian_trace(net(), MSE, (X, Y), num_hvp="99"),
        TypeError,
        r"num_hvp must be an integer",
    ),
    (
        "density bandwidth -1",
        lambda: spectral_density(net(), MSE, (X, Y), bandwidth=-1),
        ValueError,
        r"bandwidth must be a positive finite",
    ),
    (
        "density bandwidth 0",
        lambda: spectral_density(net(), MSE, (X, Y), bandwidth=0),
        ValueError,
        r"bandwidth must be a positive finite",
    ),
    (
        "density bandwidth nan",
        lambda: spectral_density(net(), MSE, (X, Y), bandwidth=math.nan),
        ValueError,
        r"bandwidth must be a positive finite",
    ),
    (
        "density bandwidth inf",
        lambda: spectral_density(net(), MSE, (X, Y), bandwidth=math.inf),
        ValueError,
        r"bandwidth must be a positive finite",
    ),
    (
        "density num_points 0",
        lambda: spectral_density(net(), MSE, (X, Y), num_points=0),
        ValueError,
        r"num_points must be a positive integer",
    ),
    (
        "density num_points bool",
        lambda: spectral_density(net(), MSE, (X, Y), num_points=True),
        ValueError,
        r"num_points must be a positive integer",
    ),
    (
        "density method",
        lambda: spectral_density(net(), MSE, (X, Y), method="kpm"),
        ValueError,
        r"method must be 'auto', 'dense' or 'slq'",
    ),
    (
        "pl loss_star string",
        lambda: pl_ratio(net(), MSE, (X, Y), loss_star="0"),
        TypeError,
        r"loss_star must be a number",
    ),
    (
        "pl loss_star nan",
        lambda: pl_ratio(net(), MSE, (X, Y), loss_star=math.nan),
        ValueError,
        r"loss_star must be finite",
    ),
    ("pl without loss_star", lambda: pl_ratio(net(), MSE, (X, Y)), TypeError, r"pl_ratio needs loss_star"),
    ("one-point without reference", lambda: one_point_convexity(net(), MSE, (X, Y)), TypeError, r"needs a reference"),
    (
        "one-point reference string",
        lambda: one_point_convexity(net(), MSE, (X, Y), reference="teacher"),
        TypeError,
        r"reference must be an nn\.Module or a flat tensor",
    ),
    (
        "one-point reference size",
        lambda: one_point_convexity(net(), MSE, (X, Y), reference=torch.zeros(7)),
        ValueError,
        r"the 21 entries of θ, got 7",
    ),
]


def probe(**options):
    arguments = dict(model=net(), loss_fn=MSE, data=(X, Y)) | options
    return LandscapeProbe(**arguments)


PROBE = [
    ("probe loss_star string", lambda: probe(loss_star="0"), TypeError, r"loss_star must be a number"),
    ("probe loss_star inf", lambda: probe(loss_star=math.inf), ValueError, r"loss_star must be finite"),
    ("probe loss_star above the loss", lambda: probe(loss_star=1e6), ValueError, r"loss_star=1000000.0 is above the"),
    ("probe dtype string", lambda: probe(dtype="float64"), TypeError, r"dtype must be a torch\.dtype"),
    ("probe dtype integer", lambda: probe(dtype=torch.int64), ValueError, r"dtype must be a floating dtype"),
    ("probe k bool", lambda: probe(k=True), ValueError, r"k must be a positive integer, got True"),
    ("probe k zero", lambda: probe(k=0), ValueError, r"k must be a positive integer"),
    ("probe method", lambda: probe(method="power"), ValueError, r"method must be 'auto' or 'dense' or 'lanczos'"),
    ("probe on_error", lambda: probe(on_error="ignore"), ValueError, r"on_error must be 'warn' or 'raise'"),
    ("probe unknown quantity", lambda: probe(quantities=["hessian"]), ValueError, r"unknown quantities \['hessian'\]"),
    ("probe no quantity", lambda: probe(quantities=[]), ValueError, r"quantities is empty"),
    ("probe params string", lambda: probe(params="0.weight"), TypeError, r"params=\['0\.weight'\]"),
    ("probe params unknown", lambda: probe(params=["nope"]), ValueError, r"unknown parameter names"),
    ("probe data single tensor", lambda: probe(data=X), TypeError, r"data must be .*single tensor"),
    ("probe mismatched samples", lambda: probe(data=(X, Y[:5])), ValueError, r"same number of samples"),
    (
        "probe vector loss",
        lambda: probe(loss_fn=nn.MSELoss(reduction="none")),
        ValueError,
        r"loss_fn must return a scalar",
    ),
    ("probe broadcast", lambda: probe(loss_fn=mean_squares, data=(X, Y[:, 0])), ValueError, r"broadcast to \(12, 12\)"),
    ("probe sum loss", lambda: probe(loss_fn=summed), ValueError, r"sums over samples"),
    (
        "probe NaN input",
        lambda: probe(data=(X_NAN, Y)),
        ValueError,
        r"sample 7 of batch 0 of data: its input holds nan",
    ),
    ("probe forced dropout", lambda: probe(model=forced_dropout()), ValueError, r"module '2' draws random numbers"),
    ("probe reference size", lambda: probe(reference=torch.zeros(7)), ValueError, r"the 21 entries of θ, got 7"),
    (
        "probe reference string",
        lambda: probe(reference="teacher"),
        TypeError,
        r"reference must be an nn\.Module or a flat tensor",
    ),
    ("probe loss and loss_fn", lambda: probe(loss=lambda m, b: 0), ValueError, r"exactly one of loss_fn"),
    (
        "probe loss not callable",
        lambda: probe(loss_fn=None, loss="mse", data=[(X, Y)]),
        TypeError,
        r"loss must be callable",
    ),
    (
        "probe batch loss not scalar",
        lambda: probe(loss_fn=None, loss=lambda m, b: 0, data=[(X, Y)]),
        ValueError,
        r"loss\(model, batch\) must return a scalar",
    ),
    (
        "probe batch loss fails",
        lambda: probe(loss_fn=None, loss=lambda m, b: MSE(m(b[0][:, :2]), b[1]), data=[(X, Y)]),
        ValueError,
        r"loss\(model, batch\) fails on the first batch",
    ),
    ("probe settings type", lambda: probe(settings={"k": 3}), TypeError, r"settings must be a ProbeSettings"),
    (
        "probe settings and options",
        lambda: probe(settings=ProbeSettings(), k=3),
        ValueError,
        r"either settings= or the options",
    ),
    (
        "settings light_tol 0",
        lambda: ProbeSettings(light_tol=0),
        ValueError,
        r"light_tol must be a relative tolerance in \(0, 1\)",
    ),
    ("settings light_tol nan", lambda: ProbeSettings(light_tol=math.nan), ValueError, r"light_tol must be"),
    ("settings seed", lambda: ProbeSettings(seed=1.5), TypeError, r"seed must be an integer"),
    ("settings probe_size", lambda: ProbeSettings(probe_size=0), ValueError, r"probe_size must be a positive integer"),
    ("settings quantities type", lambda: ProbeSettings(quantities=3), TypeError, r"quantities must be a list of names"),
]

MONITOR = [
    (
        "monitor probe_data tensor",
        lambda: LandscapeMonitor(probe_data=X),
        r"probe_data must be .*single tensor.*probe_data=\(inputs, targets\)",
    ),
    (
        "monitor probe_data numpy",
        lambda: LandscapeMonitor(probe_data=(X.numpy(), Y.numpy())),
        r"probe_data holds numpy arrays",
    ),
    ("monitor seed", lambda: LandscapeMonitor(seed="a"), r"seed must be an integer, got 'a'"),
    (
        "monitor probe_size too large",  # issue #22.4: a lazy dataset of 10**7 samples would be collated whole
        lambda: LandscapeMonitor(probe_size=10**7),
        r"probe_size=10000000 is more samples .* at most 65536: pass probe_size<=65536, or probe_data=",
    ),
    ("monitor loss_star", lambda: LandscapeMonitor(loss_star="0"), r"loss_star must be a number"),
    ("monitor dtype string", lambda: LandscapeMonitor(dtype="float64"), r"dtype must be a torch\.dtype"),
    ("monitor dtype integer", lambda: LandscapeMonitor(dtype=torch.int64), r"dtype must be a floating dtype"),
    ("monitor params string", lambda: LandscapeMonitor(params="0.weight"), r"params=\['0\.weight'\]"),
    ("monitor k bool", lambda: HessianMonitor(k=True), r"k must be a positive integer"),
    ("monitor method", lambda: HessianMonitor(method="power"), r"method must be"),
    ("monitor reference", lambda: ConvexityMonitor(reference="teacher"), r"reference must be an nn\.Module"),
    (
        "monitor every_n_steps bool",
        lambda: LandscapeMonitor(every_n_steps=True),
        r"every_n_steps must be a positive integer",
    ),
]


class Student(pl.LightningModule):
    def __init__(self, network: nn.Module | None = None) -> None:
        super().__init__()
        self.net = network if network is not None else net().float()
        self.loss_fn = nn.MSELoss()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return self.loss_fn(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def set_up(monitor: LandscapeMonitor, module: pl.LightningModule | None = None) -> LandscapeMonitor:
    """``monitor.setup`` as a Trainer calls it before training; setup reads nothing of the trainer but its loggers."""
    monitor.setup(types.SimpleNamespace(loggers=[CSVLogger("unused")]), module or Student(), "fit")
    return monitor


XF, YF = X.float(), Y.float()
SETUP = [
    (
        "setup broadcast",
        lambda: set_up(LandscapeMonitor(probe_data=(XF, YF[:, 0]), loss_fn=mean_squares)),
        r"broadcast to \(12, 12\)",
    ),
    ("setup mismatched", lambda: set_up(LandscapeMonitor(probe_data=(XF, YF[:5]))), r"same number of samples"),
    (
        "setup sum loss",
        lambda: set_up(LandscapeMonitor(probe_data=(XF, YF), loss_fn=nn.MSELoss(reduction="sum"))),
        r"reduction='mean'",
    ),
    (
        "setup vector loss",
        lambda: set_up(HessianMonitor(probe_data=(XF, YF), loss_fn=nn.MSELoss(reduction="none"))),
        r"must return a scalar",
    ),
    (
        "setup params unknown",
        lambda: set_up(LandscapeMonitor(probe_data=(XF, YF), params=["0.weight"])),
        r"unknown parameter names \['0\.weight'\]; choose from \['net\.0\.weight'",
    ),
    (
        "setup integer inputs",
        lambda: set_up(HessianMonitor(probe_data=(XF.long(), YF), dtype=torch.float32)),
        r"x\.float\(\)",
    ),
    ("setup NaN input", lambda: set_up(LandscapeMonitor(probe_data=(X_NAN.float(), YF))), r"sample 7 of batch 0"),
    (
        "setup forced dropout",
        lambda: set_up(HessianMonitor(probe_data=(XF, YF)), Student(forced_dropout().float())),
        r"module 'net\.2' draws random numbers",
    ),
    (
        "setup one-tuple batches",
        lambda: set_up(HessianMonitor(probe_data=[(XF,)])),
        r"batch 0 of data is a tuple of 1 element",
    ),
    (
        "setup reference size",
        lambda: set_up(ConvexityMonitor(probe_data=(XF, YF), reference=torch.zeros(7))),
        r"θ has 21",
    ),
    (
        "setup redundancy deep",
        lambda: set_up(RedundancyMonitor(probe_data=(XF, YF)), Student(unsupported().float())),
        r"redundancy needs a one-hidden-layer network.*HessianMonitor or ConvexityMonitor",
    ),
    (
        "setup redundancy deep default",
        lambda: set_up(RedundancyMonitor(), Student(unsupported().float())),
        r"redundancy needs a one-hidden-layer network",
    ),
]


def test_the_table_is_large_enough():
    assert len(CORE) + len(PROBE) + len(MONITOR) + len(SETUP) >= 40


def table(cases):
    """(arguments, ids) for pytest.mark.parametrize from rows (id, *arguments)."""
    return {"argvalues": [case[1:] for case in cases], "ids": [case[0] for case in cases]}


@pytest.mark.parametrize("call, error, pattern", **table(CORE + PROBE))
def test_core_and_probe_refuse_bad_input_naming_it(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.mark.parametrize("call, pattern", **table(MONITOR + SETUP))
def test_monitors_refuse_bad_input_at_construction_or_setup(call, pattern):
    with pytest.raises(MisconfigurationException, match=pattern):
        call()


class Reached(Callback):
    def __init__(self):
        self.hooks = []

    def on_train_start(self, trainer, pl_module):
        self.hooks.append("on_train_start")


def test_a_trainer_stops_at_setup_before_training_starts(tmp_path):
    reached = Reached()
    monitor = LandscapeMonitor(probe_data=(XF, YF[:, 0]), loss_fn=mean_squares)
    trainer = pl.Trainer(
        max_steps=2,
        logger=CSVLogger(tmp_path),
        callbacks=[reached, monitor],
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with pytest.raises(MisconfigurationException, match=r"broadcast to \(12, 12\)"):
        trainer.fit(Student(), DataLoader(TensorDataset(XF, YF), batch_size=6))
    assert reached.hooks == [] and trainer.global_step == 0


def test_one_nan_sample_of_the_training_data_is_named_before_step_0(tmp_path):
    """Issue 22, item 11: the probe set is drawn from the training data (all 12 samples, in order: fewer
    than probe_size), so the sample's index in it is its index in the dataset."""
    monitor = LandscapeMonitor()
    trainer = pl.Trainer(
        max_steps=2,
        logger=CSVLogger(tmp_path),
        callbacks=[monitor],
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with pytest.raises(MisconfigurationException, match=r"sample 7 of batch 0 of data: its input holds nan"):
        trainer.fit(Student(), DataLoader(TensorDataset(X_NAN.float(), YF), batch_size=6))
    assert trainer.global_step == 0


MEAN_LOSSES = [
    ("MSELoss", net, nn.MSELoss(), Y),
    ("L1Loss", net, nn.L1Loss(), Y),
    ("HuberLoss", net, nn.HuberLoss(delta=0.1), Y),
    ("custom mean", net, mean_squares, Y),
    ("BCEWithLogits", net, nn.BCEWithLogitsLoss(), (Y > 0).double()),
    ("CrossEntropyLoss", classifier, nn.CrossEntropyLoss(), LABELS),
    ("CrossEntropy smoothed", classifier, nn.CrossEntropyLoss(label_smoothing=0.1), LABELS),
    # Class weights make the loss a weighted mean, neither identity of the split test: it must pass.
    ("CrossEntropy weighted", classifier, nn.CrossEntropyLoss(weight=torch.linspace(0.5, 2, 5).double()), LABELS),
    ("float32 MSE", lambda: net().float(), nn.MSELoss(), Y.float()),
]


@pytest.mark.parametrize("make, loss_fn, targets", **table(MEAN_LOSSES))
def test_mean_reduced_losses_are_accepted_and_evaluated_as_given(make, loss_fn, targets):
    model = make()
    loader = DataLoader(TensorDataset(X.to(next(model.parameters()).dtype), targets), batch_size=5)  # 5 + 5 + 2
    objective = Objective(model, loss_fn, loader)
    with torch.no_grad():
        direct = sum(len(x) / N * loss_fn(model(x), y) for x, y in loader)
        # The same arithmetic in the same dtype, batch by batch: equal up to the order of a few additions.
        assert torch.allclose(objective.loss(objective.theta), direct, rtol=1e-6, atol=0)


class TupleOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = net()

    def forward(self, x):
        return self.net(x), x


def test_structured_outputs_are_left_to_the_loss():
    model = TupleOutput()
    objective = Objective(model, lambda outputs, targets: MSE(outputs[0], targets), (X, Y))
    with torch.no_grad():
        assert torch.equal(objective.loss(objective.theta), MSE(model.net(X), Y))


def test_integer_inputs_of_an_embedding_are_not_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 3), nn.Flatten(), nn.Linear(6, 1)).double()
    tokens, targets = torch.randint(0, 7, (N, 2)), Y
    objective = Objective(model, MSE, (tokens, targets))
    with torch.no_grad():
        assert torch.equal(objective.loss(objective.theta), MSE(model(tokens), targets))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_are_diagnosed_in_float32(dtype):
    model = net().to(dtype)
    data = (X.to(dtype), Y.to(dtype))
    objective = Objective(model, MSE, data)
    assert objective.dtype == torch.float32 and next(model.parameters()).dtype == dtype
    spectrum = hessian_eigenvalues(model, MSE, data, k=3, method="dense")
    # Ground truth: the float64 Hessian of the same (half-precision) parameters and data.
    truth = torch.linalg.eigvalsh(dense_truth(model, MSE, data))
    scale = float(truth.abs().max())
    expected = torch.cat([truth[:3], truth[-3:]])
    # float32 evaluation of the same function: errors of a few float32 roundings (ε = 1.2e-7) times the
    # largest eigenvalue and the accumulation over 12 samples; 1e-4·max|λ| leaves a wide margin.
    assert torch.allclose(spectrum.eigenvalues, expected, rtol=0, atol=1e-4 * scale)


def test_probe_describe_holds_on_accepted_inputs():
    model = net()
    loader = DataLoader(TensorDataset(X, Y), batch_size=5)
    batch_loss = LandscapeProbe(model, loss=lambda m, b: MSE(m(b[0]), b[1]), data=loader, reference=torch.zeros(21))
    subset = LandscapeProbe(model, MSE, loader, params=["2.weight", "2.bias"], loss_star=0)
    deep_probe = LandscapeProbe(deep(), MSE, (X, Y))
    assert "12 samples" in batch_loss.describe() and "21 parameters" in batch_loss.describe()
    assert "5 parameters" in subset.describe() and "L*: 0.0" in subset.describe()
    assert "an MLP of 2 hidden layers" in deep_probe.describe()
    assert "no neuron redundancy" in LandscapeProbe(unsupported(), MSE, (X, Y)).describe()


def test_settings_are_normalised_and_shared_by_the_monitor():
    settings = ProbeSettings(quantities=["trace", "pl"], params=["0.weight"], loss_star=0)
    assert settings.quantities == ("pl", "trace") and settings.params == ("0.weight",)
    assert isinstance(settings.loss_star, float)
    assert settings == ProbeSettings(quantities=("pl", "trace"), params=("0.weight",), loss_star=0.0)
    monitor = LandscapeMonitor(k=3, probe_size=40, seed=7)
    assert (monitor.settings.k, monitor.probe_size, monitor.seed, monitor.settings.light_tol) == (3, 40, 7, 1e-3)


def test_a_one_shot_iterator_of_probe_batches_survives_the_setup_check():
    batches = iter([(XF[:6], YF[:6]), (XF[6:], YF[6:])])
    monitor = set_up(HessianMonitor(probe_data=batches))
    probe = LandscapeProbe(Student(), MSE, monitor._probe_data)
    assert probe.describe().count("12 samples") == 1


def test_one_point_with_a_batch_loss_compares_the_reference_parameter_by_parameter():
    model, teacher = net(), shallow(3, 4, nn.Tanh(), seed=3)
    batch_loss = LandscapeProbe(
        model, loss=lambda m, b: MSE(m(b[0]), b[1]), data=[(X, Y)], reference=teacher, quantities=["one_point"]
    )
    value = batch_loss.snapshot(0).one_point.value
    # Ground truth: the definition on the same objective, without neuron matching.
    truth = one_point_convexity(model, MSE, (X, Y), reference=teacher, align=False).value
    assert value == pytest.approx(truth, rel=1e-12)
