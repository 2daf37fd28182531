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


def planted_tanh(n: int = 100, output_weight: float = 0.0) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A tanh teacher (d = 2, m = 3) plus a fourth neuron, labels from the teacher (its output weight 0), then
    that weight set to ``output_weight``: at 0 a zero-loss degenerate critical point with a verified
    redundancy and the A1 null directions it predicts."""
    generator = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
        model[2].weight[0, 3] = 0.0
        x = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        y = model(x)
        model[2].weight[0, 3] = output_weight
    return model, (x, y)
