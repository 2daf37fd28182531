"""The edge of stability of the optimizer in use: its threshold, and the sharpness it is compared with.

With its state frozen, each supported optimizer steps θ by a linear recurrence near the current point, and
the iterates along the top curvature direction stay bounded iff the sharpness the optimizer sees stays below
its threshold (docs/theory.md §1.8):

* SGD with step η, heavy-ball momentum β and dampening d: λ_max(H + wI) < (2 + 2β)/(η(1 − d)) (2/η without
  momentum); with Nesterov momentum: (2 + 2β)/(η(1 + 2β));
* Adam and AdamW with β1 and the preconditioner P = diag(√v̂ + ε), v̂ the bias-corrected second moment:
  λ_max(P⁻¹(H + wI)) < (1 + β1)(1 + q)/(η(1 − β1)), q = 1 − η·w_decoupled (38/η for β1 = 0.9 and q = 1);
* RMSprop with momentum μ and P = diag(√(s − ḡ²) + ε) (ḡ = 0 unless centered): (2 + 2μ)/η;
* Adagrad with P = diag(√G + ε) and its decayed step η_t: 2/η_t.

w is the coupled weight decay (added to the gradient). One number summarises all of it: the stability ratio
r = sharpness/threshold, 1 at the edge, with the eigenvalue's error bound divided by the threshold. The
reading only reads the optimizer: its state and parameter groups are left bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
from torch import Tensor

from .curvature.eigen import Spectrum, check_solver_arguments, hessian_eigenvalues
from .curvature.operators import HessianOperator, LinearOperator
from .curvature.policy import uses_dense
from .curvature.preconditioned import PreconditionedOperator
from .objective import Objective
from .settings import LIGHT_TOL

Status = Literal["ok", "not available yet", "unsupported"]

#: The optimizers whose update is followed exactly, by exact type: a subclass may change its step.
SUPPORTED: dict[type, str] = {
    torch.optim.SGD: "sgd",
    torch.optim.Adam: "adam",
    torch.optim.AdamW: "adam",
    torch.optim.RMSprop: "rmsprop",
    torch.optim.Adagrad: "adagrad",
}


@dataclass(frozen=True)
class StabilityThreshold:
    """The stability threshold of one parameter group (docs/theory.md §1.8).

    Attributes
    ----------
    group : int
        Index in ``optimizer.param_groups``.
    form : str
        The recurrence: "gradient descent", "heavy ball", "nesterov", "adam", "rmsprop" or "adagrad".
    lr : float
        η (Adagrad: the decayed step of its next update).
    momentum : float
        β: SGD's momentum, Adam's β1, RMSprop's momentum; 0 for Adagrad.
    dampening : float
        SGD's dampening d (the momentum buffer adds (1 − d)·g), else 0.
    weight_decay : float
        w of the group.
    decoupled_weight_decay : bool
        Whether w shrinks θ by (1 − ηw) apart from the gradient (AdamW) rather than adding w·θ to it.
    preconditioned : bool
        Whether the sharpness is λ_max(P⁻¹(H + wI)) (adaptive methods) rather than λ_max(H + wI).
    threshold : float
        The limit on that sharpness: the linearised iteration is stable below it.
    num_parameters : int
        Entries of θ in this group that the optimizer steps.
    """

    group: int
    form: str
    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    decoupled_weight_decay: bool
    preconditioned: bool
    threshold: float
    num_parameters: int

    @property
    def recurrence(self) -> tuple[str, float, float]:
        """(kind, β, q) of the group's recurrence in the scaled coordinates z = D^{1/2}θ: groups that share it
        decouple along one eigenbasis, and then the stability ratio of their union is exact (§1.8)."""
        decay = 1.0 - self.lr * self.weight_decay if self.decoupled_weight_decay else 1.0
        kind = "nesterov" if self.form == "nesterov" else "heavy ball"
        return kind, self.momentum, decay

    def __str__(self) -> str:
        sharpness = "λ_max(P⁻¹(H + wI))" if self.preconditioned else "λ_max(H + wI)"
        return (
            f"group {self.group} ({self.form}, lr {self.lr:.3g}, momentum {self.momentum:.3g}, weight decay "
            f"{self.weight_decay:.3g}{' decoupled' if self.decoupled_weight_decay else ''}): stable while "
            f"{sharpness} < {self.threshold:.6g}"
        )


@dataclass(frozen=True)
class StabilitySetup:
    """What an optimizer's state and hyperparameters say about its stability, before any Hessian product.

    Attributes
    ----------
    optimizer : str
        The optimizer's class name.
    status : str
        "ok"; "not available yet" (an adaptive method before its first step); "unsupported".
    reason : str
        Why the status is not "ok" (e.g. "unsupported: LBFGS ..."); "" when it is.
    groups : tuple of StabilityThreshold
        The groups that step some of θ.
    threshold : float
        The groups' common threshold; NaN when they differ (then only the ratio is one number).
    preconditioned : bool
        Whether the sharpness is of P⁻¹(H + W).
    exact : bool
        Whether all stepped groups share one recurrence, which makes r < 1 ⇔ stable exact for the
        linearised iteration; otherwise r is exact only where the Hessian does not couple the groups (§1.8).
    num_parameters, num_stepped : int
        P, and how many entries of θ the optimizer steps (others count as constants).
    diagonal, shift : Tensor or None
        D and w per entry of θ: the sharpness is λ_max(D^{-1/2}(H + diag(w))D^{-1/2}), and r is it divided by
        ``threshold`` (by 1 when the groups differ, where D already holds each group's threshold); D is inf
        where θ is not stepped. ``shift`` is None when w = 0.
    plain : bool
        Whether D is 1 everywhere and w one number: the sharpness is λ_max(H) + w, no solve of its own needed.
    """

    optimizer: str
    status: Status
    reason: str
    groups: tuple[StabilityThreshold, ...] = ()
    threshold: float = math.nan
    preconditioned: bool = False
    exact: bool = False
    num_parameters: int = 0
    num_stepped: int = 0
    diagonal: Tensor | None = field(default=None, repr=False)
    shift: Tensor | None = field(default=None, repr=False)
    plain: bool = False

    def describe(self) -> str:
        """One paragraph for a run's setup text: the thresholds per group, or why there are none."""
        if self.status != "ok":
            return f"edge of stability: {self.reason}"
        lines = [f"edge of stability of {self.optimizer} (stability ratio = sharpness / threshold, 1 = at the edge):"]
        lines += [f"  {group}" for group in self.groups]
        if not self.exact:
            lines.append("  the groups follow different recurrences: the ratio is exact where H does not couple them")
        if self.num_stepped < self.num_parameters:
            lines.append(f"  {self.num_parameters - self.num_stepped} of {self.num_parameters} parameters not stepped")
        return "\n".join(lines)


@dataclass(frozen=True)
class StabilityReading:
    """The stability ratio r = sharpness / threshold of the optimizer in use, with its error bound.

    Attributes
    ----------
    setup : StabilitySetup
        Thresholds per group and the status; every other field is NaN unless ``setup.status == "ok"``.
    ratio, ratio_error : float
        r (1 = at the edge of stability, above 1 the linearised iteration diverges along the top direction)
        and a bound on |r − r_true|: the eigenvalue's bound divided by the threshold.
    sharpness, sharpness_error : float
        λ_max(H) + w, or λ_max(P⁻¹(H + wI)) for adaptive methods, with its bound; NaN when the groups'
        thresholds differ (the ratio is then the top eigenvalue of the operator that holds them).
    converged : bool
        Whether the eigen-solver reached its tolerance (the bounds hold either way).
    num_hvp : int
        Hessian-vector products this reading used (0 when it reused the λ_max spectrum).
    eigenvector : Tensor or None
        (P, 1) top eigenvector of the solve, the warm start of the next reading; None when none was solved.
    """

    setup: StabilitySetup
    ratio: float = math.nan
    ratio_error: float = math.nan
    sharpness: float = math.nan
    sharpness_error: float = math.nan
    converged: bool = False
    num_hvp: int = 0
    eigenvector: Tensor | None = field(default=None, repr=False)

    @property
    def status(self) -> Status:
        return self.setup.status

    def __str__(self) -> str:
        if self.setup.status != "ok":
            return f"StabilityReading({self.setup.reason})"
        return f"StabilityReading({self.setup.optimizer}: ratio {self.ratio:.4g} ± {self.ratio_error:.1g})"


def gradient_descent_step(optimizer: torch.optim.Optimizer | None) -> float | None:
    """η of plain gradient descent (``torch.optim.SGD`` without momentum, one step size): the step for which
    λ_max < 2/η is the stability condition and η·t the time of gradient flow; None for any other optimizer."""
    if optimizer is None or type(optimizer) is not torch.optim.SGD:
        return None
    rates = {float(group["lr"]) for group in optimizer.param_groups}
    plain = all(group.get("momentum", 0) == 0 for group in optimizer.param_groups)
    return rates.pop() if plain and len(rates) == 1 else None


def stability_setup(optimizer: torch.optim.Optimizer, objective: Objective) -> StabilitySetup:
    """Read the optimizer's hyperparameters and frozen state for the entries of θ (docs/theory.md §1.8).

    Parameters are matched to θ by identity (``objective.names`` in the model's ``named_parameters()``); the
    state is read with ``optimizer.state.get`` and copied, never written (``optimizer.state`` is a defaultdict:
    indexing it would add entries).

    Returns
    -------
    StabilitySetup
        "unsupported" for optimizers other than SGD, Adam, AdamW, RMSprop and Adagrad (by exact type) and for
        ``maximize=True``; "not available yet" for an adaptive method before its first step.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer (the one that trains the model), got "
            f"{type(optimizer).__name__}."
        )
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a torch_landscape Objective, got {type(objective).__name__}.")
    name = type(optimizer).__name__
    family = SUPPORTED.get(type(optimizer))
    if family is None:
        reason = f"unsupported: {name} (thresholds are known for SGD, Adam, AdamW, RMSprop and Adagrad)"
        return StabilitySetup(name, "unsupported", reason)
    if any(group.get("maximize", False) for group in optimizer.param_groups):
        return StabilitySetup(name, "unsupported", f"unsupported: {name} with maximize=True (it ascends)")
    if any(
        group.get("decoupled_weight_decay") and group["lr"] * group["weight_decay"] >= 2
        for group in optimizer.param_groups
    ):
        reason = f"unsupported: {name} with lr·weight_decay ≥ 2 (the decoupled decay alone diverges)"
        return StabilitySetup(name, "unsupported", reason)
    blocks: list[_Block | None] = []
    located = _groups_of(optimizer, objective)
    for index, param in located:
        group = optimizer.param_groups[index] if index is not None else {}
        state = optimizer.state.get(param)
        preconditioner = _preconditioner(family, group, param, state) if index is not None else None
        # A parameter with lr 0, or without state yet, is not moved by the next step: a constant of the recurrence.
        if index is None or preconditioner is None or float(group["lr"]) == 0:
            blocks.append(None)
            continue
        step = float(state.get("step", 0)) if state else 0.0
        blocks.append(_Block(index, preconditioner.reshape(-1).to(objective.device), step))
    if all(block is None for block in blocks):
        # Every parameter of θ is either frozen by lr 0 (a schedule at its end) or without state yet.
        frozen = all(float(optimizer.param_groups[index]["lr"]) == 0 for index, _ in located if index is not None)
        why = "has lr 0 for every parameter of θ" if frozen else "has no state before its first step"
        return StabilitySetup(name, "not available yet", f"not available yet: {name} {why}")
    return _assemble_setup(name, family, optimizer, objective, blocks)


def _groups_of(optimizer: torch.optim.Optimizer, objective: Objective) -> list[tuple[int | None, Any]]:
    """(group index or None, parameter tensor) for each tensor of θ, matched by identity."""
    where = {id(p): index for index, group in enumerate(optimizer.param_groups) for p in group["params"]}
    named = dict(objective.model.named_parameters())
    located = [(where.get(id(named[name])), named[name]) for name in objective.names]
    if all(index is None for index, _ in located):
        raise ValueError(
            "the optimizer holds none of the parameters of θ; pass the optimizer that trains this model (its "
            "param_groups must contain the model's parameter tensors themselves, not copies)."
        )
    return located


def _preconditioner(family: str, group: dict, param: Tensor, state: dict | None) -> Tensor | None:
    """P of one parameter (a float64 copy; ones for SGD); None where its state does not exist yet."""
    if family == "sgd":
        return torch.ones(param.numel(), dtype=torch.float64)
    if not state or float(state.get("step", 0)) == 0:
        return None
    if family == "adam":
        second = state["max_exp_avg_sq"] if group.get("amsgrad", False) else state["exp_avg_sq"]
        correction = 1.0 - float(group["betas"][1]) ** float(state["step"])
        return (second.detach().to(torch.float64) / correction).sqrt() + float(group["eps"])
    if family == "rmsprop":
        second = state["square_avg"].detach().to(torch.float64)
        if group.get("centered", False):
            second = second - state["grad_avg"].detach().to(torch.float64) ** 2
        return second.clamp_min(0).sqrt() + float(group["eps"])
    return state["sum"].detach().to(torch.float64).sqrt() + float(group["eps"])  # adagrad


@dataclass(frozen=True)
class _Block:
    """One stepped tensor of θ: its group, its preconditioner (flat, float64) and its optimizer step count."""

    group: int
    preconditioner: Tensor
    step: float


def _assemble_setup(
    name: str, family: str, optimizer: torch.optim.Optimizer, objective: Objective, blocks: list[_Block | None]
) -> StabilitySetup:
    """Thresholds per group, and D and w per entry of θ (§1.8)."""
    counts: dict[int, int] = {}
    steps: dict[int, float] = {}
    for block in blocks:
        if block is not None:
            counts[block.group] = counts.get(block.group, 0) + block.preconditioner.numel()
            steps[block.group] = max(steps.get(block.group, 0.0), block.step)
    groups = {
        index: _group_threshold(family, index, optimizer.param_groups[index], steps[index], counts[index])
        for index in sorted(counts)
    }
    limits = {group.threshold for group in groups.values()}
    uniform = len(limits) == 1 and math.isfinite(min(limits))
    # With one threshold D is P itself and the eigenvalue is the sharpness; otherwise D holds each group's
    # threshold (inf where a dampening of 1 keeps the gradient out) and the eigenvalue is the ratio.
    reference = min(limits) if uniform else 1.0
    diagonal, shift = [], []
    for block, numel in zip(blocks, objective.numels, strict=True):
        if block is None:
            diagonal.append(torch.full((numel,), math.inf, dtype=torch.float64, device=objective.device))
            shift.append(torch.zeros(numel, dtype=torch.float64, device=objective.device))
            continue
        group = groups[block.group]
        diagonal.append(block.preconditioner * (group.threshold / reference))
        coupled = 0.0 if group.decoupled_weight_decay else group.weight_decay
        shift.append(torch.full((numel,), coupled, dtype=torch.float64, device=objective.device))
    decay = torch.cat(shift).to(device=objective.device, dtype=objective.dtype)
    stepped = sum(counts.values())
    return StabilitySetup(
        optimizer=name,
        status="ok",
        reason="",
        groups=tuple(groups.values()),
        threshold=reference if uniform else math.nan,
        preconditioned=family != "sgd",
        exact=len({group.recurrence for group in groups.values()}) == 1,
        num_parameters=objective.num_parameters,
        num_stepped=stepped,
        diagonal=torch.cat(diagonal).to(device=objective.device, dtype=objective.dtype),
        shift=decay if bool(decay.any()) else None,
        plain=family == "sgd" and uniform and stepped == objective.num_parameters and bool((decay == decay[0]).all()),
    )


def _ratio(numerator: float, denominator: float) -> float:
    """numerator/denominator, inf for a zero denominator (a step that never lets the gradient in)."""
    return numerator / denominator if denominator else math.inf


def _group_threshold(family: str, index: int, group: dict, step: float, count: int) -> StabilityThreshold:
    """The threshold of one parameter group from its hyperparameters (§1.8)."""
    lr = float(group["lr"])
    decay = float(group.get("weight_decay", 0.0))
    momentum = dampening = 0.0
    decoupled = False
    if family == "sgd":
        momentum = float(group.get("momentum", 0.0))
        if momentum > 0 and group.get("nesterov", False):
            form, limit = "nesterov", _ratio(2 + 2 * momentum, lr * (1 + 2 * momentum))
        elif momentum > 0:
            dampening = float(group.get("dampening", 0.0))
            form, limit = "heavy ball", _ratio(2 + 2 * momentum, lr * (1 - dampening))
        else:
            form, limit = "gradient descent", 2 / lr
    elif family == "adam":
        momentum = float(group["betas"][0])
        decoupled = bool(group.get("decoupled_weight_decay", False)) and decay > 0
        kept = 1 - lr * decay if decoupled else 1.0
        form, limit = "adam", (1 + momentum) * (1 + kept) / (lr * (1 - momentum))
    elif family == "rmsprop":
        momentum = float(group.get("momentum", 0.0))
        form, limit = "rmsprop", (2 + 2 * momentum) / lr
    else:  # adagrad: its next update divides lr by 1 + step·lr_decay
        lr = lr / (1 + step * float(group.get("lr_decay", 0.0)))
        form, limit = "adagrad", 2 / lr
    return StabilityThreshold(
        group=index,
        form=form,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=decay,
        decoupled_weight_decay=decoupled,
        preconditioned=family != "sgd",
        threshold=limit,
        num_parameters=count,
    )


def preconditioned_sharpness(
    operator: LinearOperator,
    diagonal: Tensor,
    shift: Tensor | float | None = None,
    *,
    warm_start: Tensor | None = None,
    tol: float = LIGHT_TOL,
    max_hvp: int | None = None,
    method: str = "auto",
    seed: int = 0,
) -> Spectrum:
    """λ_max(D⁻¹(H + diag(w))) = λ_max(D^{-1/2}(H + diag(w))D^{-1/2}) with its error bound (§1.1.2, §1.8).

    The same path as a light λ_max: the whole matrix below the light dense threshold (sharing H's assembly
    when ``operator`` already has it), otherwise block Lanczos to the relative tolerance ``tol`` from
    ``warm_start``, the previous call's ``Spectrum.eigenvectors``. The returned spectrum holds the top
    eigenvector for the next call.
    """
    target = PreconditionedOperator(operator, diagonal, shift)
    check_solver_arguments(target.shape[0], tol=tol, max_hvp=max_hvp, warm_start=warm_start, method=method)
    dense = uses_dense(target.shape[0], "light", method)
    return hessian_eigenvalues(
        cast(Any, target),  # it takes any LinearOperator (checked at run time); its annotation names fewer
        k=1,
        which="largest",
        method="dense" if dense else "lanczos",
        tol=tol,
        max_hvp=max_hvp,
        warm_start=warm_start,
        seed=seed,
        return_eigenvectors=True,
    )


def stability_reading(
    optimizer: torch.optim.Optimizer,
    operator: HessianOperator,
    *,
    spectrum: Spectrum | None = None,
    warm_start: Tensor | None = None,
    tol: float = LIGHT_TOL,
    max_hvp: int | None = None,
    method: str = "auto",
    seed: int = 0,
) -> StabilityReading:
    """The stability ratio r = sharpness / threshold of ``optimizer`` at the operator's θ (docs/theory.md §1.8).

    Parameters
    ----------
    optimizer
        The optimizer that trains the model; read, never written.
    operator
        H at the current θ (its ``objective`` gives the layout of θ).
    spectrum
        A spectrum of the same H that holds its largest eigenvalue (the λ_max of this evaluation). For SGD
        with one step size it gives the ratio, r = (λ_max + w)/threshold, without a product of its own.
    warm_start
        The previous reading's ``eigenvector``: the solve of λ_max(P⁻¹(H + wI)) starts from it.
    tol, max_hvp, method, seed
        As for :func:`preconditioned_sharpness`.

    Returns
    -------
    StabilityReading
        r with the bound ‖r − r_true‖ ≤ (eigenvalue bound)/threshold; the status and reason of
        :func:`stability_setup` when it is not available.
    """
    if not isinstance(operator, HessianOperator):
        raise TypeError(
            f"operator must be the HessianOperator of the model at its current θ, got {type(operator).__name__}."
        )
    setup = stability_setup(optimizer, operator.objective)
    if setup.status != "ok" or setup.diagonal is None:
        return StabilityReading(setup)
    reference = setup.threshold if math.isfinite(setup.threshold) else 1.0
    if setup.plain and spectrum is not None:
        if not isinstance(spectrum, Spectrum) or spectrum.num_parameters != operator.shape[0]:
            raise ValueError(
                f"spectrum must be a Spectrum of this operator's {operator.shape[0]} parameters, got "
                f"{spectrum!r:.80}; pass the λ_max spectrum of the same evaluation, or None."
            )
        shift = float(setup.shift[0]) if setup.shift is not None else 0.0
        top, bound = spectrum.lambda_max + shift, float(spectrum.error_bounds[-1])
        converged, used, vector = spectrum.converged, 0, None
    else:
        solved = preconditioned_sharpness(
            operator,
            setup.diagonal,
            setup.shift,
            warm_start=warm_start,
            tol=tol,
            max_hvp=max_hvp,
            method=method,
            seed=seed,
        )
        top, bound = solved.lambda_max, float(solved.error_bounds[-1])
        converged, used = solved.converged, solved.num_hvp
        vector = None if solved.eigenvectors is None else solved.eigenvectors[:, -1:].clone()
    uniform = math.isfinite(setup.threshold)
    return StabilityReading(
        setup=setup,
        ratio=top / reference,
        ratio_error=bound / reference,
        sharpness=top if uniform else math.nan,
        sharpness_error=bound if uniform else math.nan,
        converged=converged,
        num_hvp=used,
        eigenvector=vector,
    )
