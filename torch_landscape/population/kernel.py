"""The population loss of a ReLU teacher–student problem with standard Gaussian inputs, in closed form.

For x ~ N(0, I_d) the arc-cosine kernel of degree 1 (Cho–Saul 2009) gives every second moment of ReLU
features exactly (docs/theory.md §9.1):

    κ(w, v) = E[relu(w·x) relu(v·x)] = (S + (π − φ) w·v) / (2π),     S = ‖w‖‖v‖ sin φ,  φ = ∠(w, v),

so the loss of a student Σ_i a_i relu(w_i·x) against a teacher Σ_j b_j relu(v_j·x),

    L = ½ E (f_student − f_teacher)² = ½ (aᵀ K(W, W) a − 2 aᵀ K(W, V) b + bᵀ K(V, V) b),

is a closed-form function of (W, a), written here in torch so that autograd gives its exact gradient and
Hessian.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def _safe_norm(vectors: Tensor) -> Tensor:
    """‖·‖ along the last dimension with derivative 0 (not NaN) at the zero vector."""
    squared = (vectors * vectors).sum(-1)
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)


class _Bend(torch.autograd.Function):
    """h(S, p) = S − p·atan2(S, p) = ‖w‖‖v‖(sin φ − φ cos φ), the non-bilinear part of 2π·κ.

    Its derivatives, ∂h/∂S = sin²φ = S²/(S² + p²) and ∂h/∂p = sin φ cos φ − φ, are given in closed form: as
    autograd would compose them, ∂h/∂S = 1 − p²/(S² + p²) cancels to rounding noise ~ε for nearly parallel
    w, v, and that noise, multiplied by ∇²S ~ 1/S in the Hessian, would be of order one. Written with torch
    operations they are differentiated again by autograd (Hessians, torch.func transforms).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(sine_part: Tensor, inner: Tensor) -> Tensor:
        return sine_part - inner * torch.atan2(sine_part, inner)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        sine_part, inner = ctx.saved_tensors
        radius = sine_part * sine_part + inner * inner
        return (
            grad * sine_part * sine_part / radius,
            grad * (sine_part * inner / radius - torch.atan2(sine_part, inner)),
        )


def arccos_kernel(first: Tensor, second: Tensor) -> Tensor:
    """K_ij = κ(w_i, v_j) = E_{x~N(0,I)}[relu(w_i·x) relu(v_j·x)] for rows w_i of ``first``, v_j of ``second``.

    Computed as κ = p/2 + h(S, p)/(2π) with p = w·v, S = ‖w‖‖v‖ sin φ and h = S − p·atan2(S, p) (docs/theory.md
    §9.1). S = ‖v‖·‖w − (p/‖v‖²) v‖ comes from the explicit projection, not from √(‖w‖²‖v‖² − p²): that
    difference cancels to noise of order √ε·‖w‖‖v‖ for nearly parallel vectors, whose angle would then be
    off by √ε, while the projection keeps it to ε. κ is C² in (w, v) wherever w ≠ 0 and v ≠ 0, also at
    parallel and antiparallel pairs (h = O(φ³) there, resp. O((π − φ)³) with κ → 0), and autograd through
    this expression gives those derivatives; at S = 0 exactly the S-branch has derivative 0, the limit.
    At w = 0 or v = 0 κ is positively homogeneous of degree 1 and not differentiable; there κ = 0 with
    derivative 0.
    """
    inner = first @ second.T  # p_ij, (m, k)
    norm_second = _safe_norm(second)  # ‖v_j‖
    alive = (_safe_norm(first)[:, None] > 0) & (norm_second[None, :] > 0)
    squared = torch.where(norm_second > 0, norm_second * norm_second, 1.0)
    # w_i − (p_ij/‖v_j‖²) v_j: the part of w_i orthogonal to v_j, (m, k, d).
    orthogonal = first[:, None, :] - (inner / squared)[:, :, None] * second[None, :, :]
    sine_part = norm_second[None, :] * _safe_norm(orthogonal)  # S_ij = ‖w_i‖‖v_j‖ sin φ_ij
    bend = _Bend.apply(torch.where(alive, sine_part, 0.0), torch.where(alive, inner, 1.0))
    return torch.where(alive, inner / 2 + bend / (2 * math.pi), 0.0)


def gaussian_relu_loss(weight: Tensor, output: Tensor, teacher: Tensor, teacher_output: Tensor) -> Tensor:
    """L(W, a) = ½ E_{x~N(0,I)} (Σ_i a_i relu(w_i·x) − Σ_j b_j relu(v_j·x))², in closed form.

    Parameters
    ----------
    weight, output
        The student's input weights W (m × d, rows w_i) and output weights a (m,).
    teacher, teacher_output
        The teacher's V (k × d, rows v_j) and b (k,).

    Returns
    -------
    Tensor
        ½ cᵀ K(U, U) c with U = [W; V], c = [a; −b] and K the arc-cosine kernel (:func:`arccos_kernel`,
        docs/theory.md §9.1): the student–student, student–teacher and teacher–teacher terms of the expanded
        square in one kernel matrix. Differentiable in (W, a) except where some w_i = 0 with a_i ≠ 0.
    """
    neurons = torch.cat([weight, teacher])
    signed = torch.cat([output, -teacher_output])
    return 0.5 * signed @ arccos_kernel(neurons, neurons) @ signed
