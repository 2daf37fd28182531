"""Small helpers shared by the examples: data, full-batch optimisers, TensorBoard writers and the printed report.

Nothing here computes a landscape quantity: every number the examples print comes from ``torch_landscape``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from torch_landscape.writers import TensorBoardSink

DEFAULT_RUNS = Path("runs")
#: The default loss: one stateless instance shared by every call.
MSE = nn.MSELoss()


def parse_quick(description: str) -> tuple[bool, str | None]:
    """``--quick`` and ``--logdir`` from the command line (quick: the reduced smoke-test run)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a reduced run (seconds), as in the test suite")
    parser.add_argument("--logdir", default=None, help="TensorBoard directory (default runs/<example>)")
    args = parser.parse_args()
    return args.quick, args.logdir


def writer(logdir: str | os.PathLike, name: str):
    """A SummaryWriter under ``logdir/name`` (created)."""
    from torch.utils.tensorboard import SummaryWriter

    path = Path(logdir) / name
    path.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(str(path))


def shallow(
    d: int,
    m: int,
    activation: nn.Module,
    *,
    bias: bool = True,
    out_bias: bool = True,
    generator: torch.Generator | None = None,
    scale: float = 1.0,
) -> nn.Sequential:
    """``Linear(d, m) → σ → Linear(m, 1)`` in float64 with N(0, scale²) weights from ``generator``."""
    net = nn.Sequential(nn.Linear(d, m, bias=bias), activation, nn.Linear(m, 1, bias=out_bias)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return net


def lbfgs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    max_iter: int = 2000,
    gtol: float = 1e-11,
    loss_fn: Callable = MSE,
    callback: Callable[[int], None] | None = None,
    chunk: int = 100,
) -> float:
    """Full-batch L-BFGS (strong Wolfe) until ‖∇L‖∞ ≤ gtol or ``max_iter``; returns the final loss.

    Runs in chunks of ``chunk`` iterations and calls ``callback(iterations_so_far)`` after each.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=chunk,
        max_eval=10 * chunk,
        history_size=50,
        tolerance_grad=gtol,
        tolerance_change=1e-300,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    done, previous = 0, float("inf")
    while done < max_iter:
        loss = float(optimizer.step(closure).detach())  # the optimizer keeps its curvature history across calls
        done += chunk
        if callback is not None:
            callback(done)
        grad = max(float(p.grad.abs().max()) for p in params)
        if grad <= gtol or loss == previous:  # converged, or no progress at all over a chunk
            break
        previous = loss
    with torch.no_grad():
        return float(loss_fn(model(x), y))


def newton_polish(
    model: nn.Module,
    loss_fn: Callable | None = None,
    data=None,
    *,
    objective=None,
    steps: int = 60,
    rtol: float = 1e-14,
    atol: float = 0.0,
) -> float:
    """Newton steps θ ← θ − t·|H|⁺∇L on the dense float64 Hessian (an optimiser for small nets); returns ‖∇L‖.

    L-BFGS stalls at ‖∇L‖ ~ 1e-7…1e-11 near a singular minimum: in a direction where the loss grows like
    δ⁴ (two neurons becoming duplicates at zero residual) first-order methods crawl, while Newton contracts
    δ by 2/3 per step. |H|⁺ takes absolute eigenvalues and drops those below rtol·max|λ| (rounding level:
    the exact symmetry and flat directions); t is halved from 1 until the loss does not rise beyond
    rounding and ‖∇L‖ or L falls. The model ends at the last kept point. Not a diagnostic: the examples
    classify the result with the library afterwards. ``objective`` (an Objective of ``model`` in float64, e.g.
    a population one) replaces (loss_fn, data); ``atol`` is the absolute rounding of a loss computed by
    cancellation (a population loss near 0 can even round below 0), added to the relative 1e-14·|L|.
    """
    from torch.func import jacrev

    from torch_landscape import Objective

    if objective is None:
        objective = Objective(model, loss_fn, data, dtype=torch.float64)
    theta = objective.theta
    loss, gradient = objective.loss_and_gradient(theta)
    for _ in range(steps):
        values, vectors = torch.linalg.eigh(jacrev(jacrev(objective.loss))(theta))
        keep = values.abs() > rtol * values.abs().max()
        # |λ| instead of λ ("saddle-free"): near zero residual the residual term can make H slightly
        # indefinite, and a plain Newton step would then climb.
        direction = vectors[:, keep] @ ((vectors[:, keep].T @ gradient) / values[keep].abs())
        for t in (1.0, 0.5, 0.25, 0.125):
            trial = theta - t * direction
            trial_loss, trial_gradient = objective.loss_and_gradient(trial)
            # The loss moves by rounding only (~1e-16·L) once the gradient is tiny: then judge ‖∇L‖.
            if trial_loss <= loss + 1e-14 * abs(loss) + atol and (
                trial_loss < loss or trial_gradient.norm() < gradient.norm()
            ):
                break
        else:
            break
        theta, loss, gradient = trial, trial_loss, trial_gradient
    with torch.no_grad():
        for name, value in objective.unflatten(theta).items():
            model.get_parameter(name).copy_(value)
    return float(gradient.norm())


class Report:
    """The printed report: a title, numbered findings, each an expectation against what the library says."""

    def __init__(self, title: str, paper: str) -> None:
        self.title = title
        self.start = time.perf_counter()
        self.checks: list[tuple[str, bool]] = []
        print("=" * 100)
        print(title)
        print(f"paper: {paper}")
        print("=" * 100)
        sys.stdout.flush()

    def section(self, text: str) -> None:
        print(f"\n--- {text}")

    def line(self, text: str) -> None:
        print(f"  {text}")
        sys.stdout.flush()

    def check(self, expectation: str, agrees: bool, observed: str) -> bool:
        self.checks.append((expectation, bool(agrees)))
        mark = "AGREES   " if agrees else "DISAGREES"
        print(f"  [{mark}] expected: {expectation}\n              library:  {observed}")
        sys.stdout.flush()
        return bool(agrees)

    def finish(
        self, logdir: str | os.PathLike | None = None, note: str | None = None, results: dict | None = None
    ) -> dict:
        """Print the tally and return it, merged with the example's own ``results``."""
        agreed = sum(ok for _, ok in self.checks)
        print(
            f"\n{agreed}/{len(self.checks)} expectations agree with the library's numbers "
            f"({time.perf_counter() - self.start:.1f} s)."
        )
        if note:
            print(note)
        if logdir is not None:
            print(f"TensorBoard: .venv/bin/tensorboard --logdir {logdir}")
        return {
            "checks": {text: ok for text, ok in self.checks},
            "agreed": agreed,
            "total": len(self.checks),
            **(results or {}),
        }


def fmt(value: float, digits: int = 3) -> str:
    """A float in short scientific notation (NaN as 'nan')."""
    if value is None:
        return "n/a"
    value = float(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}e}"


def fit_restarts(
    make_model: Callable[[int], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    restarts: int,
    max_iter: int,
    good: float = -1.0,
    chunk: int = 50,
    loss_fn: Callable = MSE,
):
    """L-BFGS from ``make_model(attempt)`` for attempt = 0, 1, …; stops early once a loss ≤ ``good`` is reached.

    Returns (model, attempt, states): the lowest-loss run and its parameters every ``chunk`` iterations
    (for replaying the diagnostics along the path, see :func:`replay`).
    """
    best = None
    for attempt in range(restarts):
        model = make_model(attempt)
        states = [(0, copy_state(model))]
        loss = lbfgs(
            model,
            x,
            y,
            max_iter=max_iter,
            chunk=chunk,
            loss_fn=loss_fn,
            callback=lambda it, states=states, model=model: states.append((it, copy_state(model))),
        )
        if best is None or loss < best[0]:
            best = (loss, attempt, model, states)
        if loss <= good:
            break
    return best[2], best[1], best[3]


def copy_state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def replay(probe, model: nn.Module, states, tb, *, learning_rate: float | None = None):
    """Take a light probe snapshot at each stored state and log it; the model ends at the last state.

    The probe reads the model's current parameters, so loading a stored state and calling ``snapshot`` is
    the same as snapshotting during training. Returns the last (full) snapshot.
    """
    final, sink = copy_state(model), TensorBoardSink(tb)
    for step, state in states:
        model.load_state_dict(state)
        sink.log(probe.snapshot(step, full=False, learning_rate=learning_rate), probe)
    model.load_state_dict(final)
    snap = probe.snapshot(states[-1][0] + 1, full=True, learning_rate=learning_rate)
    sink.log(snap, probe)
    return snap
