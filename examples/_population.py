"""Fitting students to the Gaussian-input ReLU population loss (docs/theory.md §9): an optimiser, not a diagnostic.

Every number the examples print about the end points comes from ``torch_landscape`` afterwards.
"""

from __future__ import annotations

import math

import torch
from torch import nn

try:
    from examples._common import newton_polish
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import newton_polish

from torch_landscape.population import GaussianReLUObjective, relu_network


def random_student(width: int, d: int, seed: int, *, scale: float | None = None) -> nn.Sequential:
    """Σ_i relu(w_i·x) with output weights frozen at 1 and w_i ~ N(0, scale²·I), scale = 1/√d by default (‖w_i‖ ≈ 1,
    the norm of an orthonormal teacher's neurons)."""
    generator = torch.Generator().manual_seed(seed)
    scale = 1 / math.sqrt(d) if scale is None else scale
    return relu_network(scale * torch.randn(width, d, generator=generator, dtype=torch.float64))


def fit(
    model: nn.Module, teacher: torch.Tensor, *, max_iter: int = 3000, gtol: float = 1e-9, polish: bool = True
) -> GaussianReLUObjective:
    """L-BFGS (strong Wolfe) on the population loss until ‖∇L‖∞ ≤ gtol or ``max_iter``, then (``polish``) Newton
    steps on the dense Hessian, which take a nondegenerate minimum to ‖∇L‖ at rounding level; the model ends
    there. Returns the population objective at the end point."""
    objective = GaussianReLUObjective(model, teacher)
    theta = objective.theta.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        history_size=50,
        tolerance_grad=gtol,
        tolerance_change=1e-300,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective.loss(theta)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        for name, value in objective.unflatten(theta.detach()).items():
            model.get_parameter(name).copy_(value)
    objective = GaussianReLUObjective(model, teacher)
    if not polish:
        return objective
    # From ‖∇L‖∞ ≤ gtol Newton converges quadratically: three steps reach rounding at a nondegenerate minimum.
    newton_polish(model, objective=objective, steps=3, atol=loss_rounding(objective))
    return GaussianReLUObjective(model, teacher)


def loss_rounding(objective: GaussianReLUObjective) -> float:
    """An absolute bound on the rounding of L = ½ cᵀKc (docs/theory.md §9.1): |K_ij| ≤ ‖u_i‖‖u_j‖/2 gives
    |terms| ≤ ¼(Σ_i |c_i|‖u_i‖)², a sum of (m + k)² products each rounded at ε; factor 10 of margin."""
    weight, output = objective.student()
    scales = torch.cat(
        [output.abs().reshape(-1) * weight.norm(dim=1), objective.teacher_output.abs() * objective.teacher.norm(dim=1)]
    )
    return float(10 * torch.finfo(torch.float64).eps * len(scales) * scales.sum() ** 2 / 4)
