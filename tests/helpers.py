"""Small builders shared by the tests: shallow networks, data, dense ground truth."""

import torch
from torch import nn
from torch.func import jacrev

from torch_landscape.objective import Objective


def shallow(d: int, m: int, activation: nn.Module, q: int = 1, bias: bool = True, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, m, bias=bias), activation, nn.Linear(m, q, bias=bias)).double()


def regression_data(n: int, d: int, q: int = 1, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    teacher = torch.randn(d, 4, generator=generator, dtype=torch.float64)
    y = torch.tanh(x @ teacher) @ torch.randn(4, q, generator=generator, dtype=torch.float64)
    return x, y


def train(model: nn.Module, data, steps: int = 200, lr: float = 1e-2) -> nn.Module:
    """Full-batch Adam, so that the Hessian is taken at a trained point rather than a random one."""
    x, y = data
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model


def dense_truth(model: nn.Module, loss_fn, data, params=None) -> torch.Tensor:
    """Independent ground truth: reverse-over-reverse torch.func Hessian of the float64 objective.

    (torch.func.hessian is forward-over-reverse, which torch 2.13 cannot do through F.mse_loss.)
    """
    objective = Objective(model, loss_fn, data, params=params, dtype=torch.float64)
    return jacrev(jacrev(objective.loss))(objective.theta)
