import copy
import random

import numpy as np
import pytest
import torch
from torch import nn

from helpers import regression_data, shallow
from torch_landscape import HessianOperator, Objective, hessian_eigenvalues, hessian_trace, spectral_density


def test_loss_is_the_mean_over_all_samples_with_unequal_batches():
    model = shallow(3, 4, nn.Tanh())
    x, y = regression_data(12, 3)
    batches = [(x[:7], y[:7]), (x[7:], y[7:])]  # 7 + 5: batch means must be weighted by size
    objective = Objective(model, nn.MSELoss(), batches)
    direct = nn.functional.mse_loss(model(x), y)
    # Both sides sum the same 12 squared residuals in a different order: a few ulps apart.
    assert objective.loss(objective.theta).item() == pytest.approx(direct.item(), rel=1e-14)
    whole = HessianOperator(model, nn.MSELoss(), (x, y)).to_dense()
    split = HessianOperator(model, nn.MSELoss(), batches).to_dense()
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-14)


def test_dataloader_is_accepted_and_weighted_by_batch_size():
    model = shallow(3, 4, nn.Sigmoid())
    x, y = regression_data(10, 3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)  # 4, 4, 2
    objective = Objective(model, nn.MSELoss(), loader)
    assert objective.num_samples == 10
    assert objective.weights == [0.4, 0.4, 0.2]
    assert objective.loss(objective.theta).item() == pytest.approx(
        nn.functional.mse_loss(model(x), y).item(), rel=1e-14
    )


def test_theta_follows_named_parameters_order_and_params_subset():
    model = shallow(3, 4, nn.Tanh())
    names = [name for name, _ in model.named_parameters()]
    objective = Objective(model, nn.MSELoss(), regression_data(5, 3), params=[names[2], names[0]])
    assert objective.names == [names[0], names[2]]
    expected = torch.cat([model[0].weight.reshape(-1), model[2].weight.reshape(-1)])
    torch.testing.assert_close(objective.theta, expected.detach(), rtol=0, atol=0)
    round_trip = objective.flatten(objective.unflatten(objective.theta))
    assert torch.equal(round_trip, objective.theta)


def test_float64_copy_of_a_float32_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x, y = (t.float() for t in regression_data(6, 3))
    objective = Objective(model, nn.MSELoss(), (x, y), dtype=torch.float64)
    assert objective.theta.dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32
    expected = nn.functional.mse_loss(copy.deepcopy(model).double()(x.double()), y.double())
    assert objective.loss(objective.theta).item() == pytest.approx(expected.item(), rel=1e-14)


class _NormalisedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Dropout(0.5), nn.Linear(5, 1))

    def forward(self, x):
        return self.net(x)


def test_batchnorm_and_dropout_are_evaluated_in_eval_mode():
    torch.manual_seed(0)
    model = _NormalisedNet().double()
    x, y = regression_data(16, 3)
    model.train()
    model(x)  # give BatchNorm non-trivial running statistics
    objective = Objective(model, nn.MSELoss(), (x, y))
    model.eval()
    expected = nn.functional.mse_loss(model(x), y).item()
    model.train()
    assert objective.loss(objective.theta).item() == pytest.approx(expected, rel=1e-14)
    assert model.training and all(module.training for module in model.modules())


def _state(model):
    return (
        {name: tensor.clone() for name, tensor in model.state_dict().items()},
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [module.training for module in model.modules()],
        torch.get_rng_state(),
        np.random.get_state()[1].copy(),
        random.getstate(),
    )


def test_no_side_effects_on_model_grad_mode_buffers_or_rng():
    torch.manual_seed(0)
    model = _NormalisedNet().double()
    x, y = regression_data(64, 3)
    model.train()
    nn.functional.mse_loss(model(x), y).backward()  # the user's .grad must survive
    model.net[3].eval()  # a mixed train/eval state must come back exactly
    before = _state(model)
    hessian_eigenvalues(model, nn.MSELoss(), (x, y), k=3, method="lanczos", max_hvp=30)
    hessian_eigenvalues(model, nn.MSELoss(), (x, y), k=3, method="dense")
    hessian_trace(model, nn.MSELoss(), (x, y), method="hutchpp", num_hvp=12)
    spectral_density(model, nn.MSELoss(), (x, y), method="slq", num_steps=10)
    after = _state(model)
    for name in before[0]:
        assert torch.equal(before[0][name], after[0][name]), name
    assert all(torch.equal(a, b) for a, b in zip(before[1], after[1], strict=True))
    assert before[2] == after[2]
    assert torch.equal(before[3], after[3])
    assert np.array_equal(before[4], after[4])
    assert before[5] == after[5]
    assert all(p.grad is None or not p.grad.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda m, d: Objective(m, nn.MSELoss(), []), "data is empty"),
        (lambda m, d: Objective(m, nn.MSELoss(), (d[0], d[1][:3])), "same number of samples"),
        (lambda m, d: Objective(m, nn.MSELoss(), (d[0], d[1][:, 0])), "reshape the targets"),
        (lambda m, d: Objective(m, nn.MSELoss(reduction="none"), d), "scalar"),
        (lambda m, d: Objective(m, nn.MSELoss(), d, params=["nope"]), "unknown parameter names"),
        (lambda m, d: Objective(m, nn.MSELoss(), d, params=[]), "params is empty"),
        (lambda m, d: Objective(m, nn.MSELoss(), (d[0] * float("nan"), d[1])), "finite"),
        (lambda m, d: Objective(m, nn.MSELoss(), d[0]), "single tensor"),
        (lambda m, d: Objective(m, nn.MSELoss(), d, dtype=torch.int64), "floating dtype"),
    ],
)
def test_bad_input_is_named(make, message):
    model = shallow(3, 4, nn.Tanh())
    with pytest.raises((ValueError, TypeError, FloatingPointError), match=message):
        make(model, regression_data(8, 3))


def test_no_trainable_parameters_is_named():
    model = shallow(3, 4, nn.Tanh()).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Objective(model, nn.MSELoss(), regression_data(8, 3))


def test_non_finite_loss_names_the_batch():
    model = shallow(3, 4, nn.Tanh())
    x, y = regression_data(8, 3)
    bad = y.clone()
    bad[6] = float("inf")
    with pytest.raises(ValueError, match="sample 2 of batch 1 of data: its target holds inf"):
        HessianOperator(model, nn.MSELoss(), [(x[:4], y[:4]), (x[4:], bad[4:])]).to_dense()
