"""What the structure of a one-hidden-layer network buys: L, ∇L, the exact Hessian, its diagonal and its
products in closed form, from one set-up per θ.

For f(x) = A σ(W x + b) + c and a per-sample loss (docs/theory.md §1.1), everything second-order is
assembled from the per-sample pieces σ(z), σ′(z), σ″(z) (z = W x + b), G = ∂ℓ/∂f and the q×q blocks of
∂²ℓ/∂f² (:class:`ShallowStructure`). They are computed once per objective (:func:`shallow_structure`,
memoised on the :class:`~torch_landscape.objective.Objective`) from the forward pass that verified the
structure (:func:`~torch_landscape.curvature.shallow.verified_forward`), so that a light evaluation's loss,
gradient, exact trace and products, and a full one's dense Hessian, share one forward pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from ..objective import Objective
from .shallow import verified_forward

#: The key of the structure in the objective's memo (:meth:`~torch_landscape.objective.Objective.memo`).
STRUCTURE = "shallow structure"


@dataclass(frozen=True)
class _Batch:
    """One batch's pieces: features, activation derivatives, loss derivatives."""

    x_tilde: Tensor  # (n, d[+1]) inputs, with a column of ones when the hidden layer has a bias
    s: Tensor  # σ(z), (n, m)
    s1: Tensor  # σ′(z)
    s2: Tensor  # σ″(z)
    G: Tensor  # ∂ℓ/∂f, (n, q), ℓ = (n_b/n)·loss_fn
    Hout: Tensor  # per-sample ∂²ℓ/∂f², (n, q, q)


@dataclass(frozen=True)
class ShallowStructure:
    """The per-sample pieces of a one-hidden-layer network's objective at θ, in the canonical flat layout
    [W (m·d), b (m), A (q·m), c (q)], and L and ∇L computed from them (this rank's shares with a process
    group).

    Attributes
    ----------
    A : Tensor
        The output weights, q×m.
    u_index, a_index, c_index : Tensor
        Canonical positions of u_i = (w_i, b_i) (m×(d[+1])), of A_ki (q×m) and of c (q; None without bias).
    size : int
        Length of the canonical layout (all parameters of the two layers).
    select : Tensor
        The canonical positions of θ's coordinates, in θ order.
    batches : tuple
        Per batch: x̃, σ(z), σ′(z), σ″(z), G and the blocks of ∂²ℓ/∂f².
    biased : bool
        Whether the hidden layer has a bias (the last column of x̃ and of ``u_index``).
    loss, gradient : Tensor
        L(θ) (summed as :meth:`~torch_landscape.objective.Objective.loss` sums it) and ∇L(θ) in θ order.
    """

    A: Tensor
    u_index: Tensor
    a_index: Tensor
    c_index: Tensor | None
    size: int
    select: Tensor
    batches: tuple[_Batch, ...]
    biased: bool
    loss: Tensor
    gradient: Tensor


def shallow_structure(source: Any) -> ShallowStructure | None:
    """The :class:`ShallowStructure` of an objective (or of a Hessian operator's), computed once per
    objective: None when the model is not a recognised one-hidden-layer network holding all of θ, its
    forward is not output(σ(hidden(x))), or the loss is not a mean of per-sample terms (with a process
    group: on any rank)."""
    objective = _objective(source)
    return objective.memo(STRUCTURE, lambda: _agreed_structure(objective))


def _objective(source: Any) -> Objective:
    # An Objective, or anything holding one (a HessianOperator): this module sits below the operators.
    return source if isinstance(source, Objective) else source.objective


def _agreed_structure(objective: Objective) -> ShallowStructure | None:
    if not objective.sample_mean:  # no samples to sum the structured terms over (a population loss): autograd
        return None
    structure = _rank_structure(objective)
    if objective.process_group is None or objective.all_agree(structure is not None):
        return structure
    return None  # another rank's shard showed that the structure does not hold


def _output_derivatives(
    objective: Objective, outputs: Tensor, targets: Tensor, weight: float
) -> tuple[Tensor, Tensor, Tensor] | None:
    """(ℓ, G = ∂ℓ/∂F (n×q), the per-sample q×q blocks of ∂²ℓ/∂F²) for ℓ = weight·loss_fn(F, Y).

    Returns None when the loss is not a sum of per-sample terms (its output Hessian not block diagonal),
    which a random-sign probe detects.
    """
    outputs = outputs.detach().requires_grad_(True)
    n, q = outputs.shape
    with torch.enable_grad():
        loss = weight * objective.loss_fn(outputs, targets)
        (gradient,) = torch.autograd.grad(loss, outputs, create_graph=True)
        if not gradient.requires_grad:  # a loss linear in the outputs
            return loss.detach(), gradient.detach(), outputs.new_zeros(n, q, q)
        # Backward passes of scalars (column sums), not of tensors with grad_outputs: the latter makes torch
        # import sympy on first use, 0.3 s of a short run's budget; per-sample terms make the sums exact.
        blocks = torch.stack(
            [
                torch.autograd.grad(
                    gradient[:, j].sum(), outputs, retain_graph=True, allow_unused=True, materialize_grads=True
                )[0]
                for j in range(q)
            ],
            dim=2,
        )
        signs = torch.randint(0, 2, (n, 1), generator=torch.Generator().manual_seed(0)).to(outputs) * 2 - 1
        probe = torch.autograd.grad((gradient * signs).sum(), outputs, allow_unused=True, materialize_grads=True)[0]
    expected = signs * blocks.sum(dim=2)
    scale = blocks.abs().max().clamp_min(torch.finfo(outputs.dtype).tiny)
    if (probe - expected).abs().max() > 1e3 * torch.finfo(outputs.dtype).eps * scale * q:
        return None
    return loss.detach(), gradient.detach(), blocks.detach()


def _rank_structure(objective: Objective) -> ShallowStructure | None:
    forward = verified_forward(objective)
    if forward is None:
        return None
    net, parameters = forward.net, forward.parameters
    names = list(parameters)  # hidden weight, hidden bias, output weight, output bias: the canonical order
    hidden_w, hidden_b = net.parameter_name("hidden", "weight"), net.parameter_name("hidden", "bias")
    output_w, output_b = net.parameter_name("output", "weight"), net.parameter_name("output", "bias")
    W, A = parameters[hidden_w], parameters[output_w]
    (m, d), q = W.shape, A.shape[0]
    arange = functools.partial(torch.arange, device=objective.device)
    offsets, size = {}, 0
    for name in names:
        offsets[name] = size
        size += parameters[name].numel()
    u_index = offsets[hidden_w] + arange(m * d).view(m, d)
    if hidden_b in parameters:
        u_index = torch.cat([u_index, offsets[hidden_b] + arange(m)[:, None]], dim=1)
    a_index = offsets[output_w] + arange(q * m).view(q, m)
    c_index = offsets[output_b] + arange(q) if output_b in offsets else None
    batches, losses = [], []
    gradient = A.new_zeros(size)
    for (x, y), weight, (s, s1, s2), outputs in zip(
        objective.batches, objective.weights, forward.activations, forward.outputs, strict=True
    ):
        derivatives = _output_derivatives(objective, outputs, y, weight)
        if derivatives is None:
            return None
        loss, G, Hout = derivatives
        x = forward.net.features(x)
        x_tilde = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1) if hidden_b in parameters else x
        # ∇L in closed form: ∂/∂u_i = Σ_j σ′(z_ji)(G_j·A_:i) x̃_j, ∂/∂A = Gᵀσ, ∂/∂c = Σ_j G_j.
        gradient[u_index] += (s1 * (G @ A)).T @ x_tilde
        gradient[a_index] += G.T @ s
        if c_index is not None:
            gradient[c_index] += G.sum(dim=0)
        batches.append(_Batch(x_tilde, s, s1, s2, G, Hout))
        losses.append(loss)
    select = torch.cat([offsets[name] + arange(parameters[name].numel()) for name in objective.names])
    return ShallowStructure(
        A=A,
        u_index=u_index,
        a_index=a_index,
        c_index=c_index,
        size=size,
        select=select,
        batches=tuple(batches),
        biased=hidden_b in parameters,
        # Python's sum, in the order and from the start value of Objective.loss: the same L to the last bit.
        loss=cast(Tensor, sum(losses)),
        gradient=gradient[select],
    )


def structured_hessian(source: Any) -> Tensor | None:
    """The exact Hessian of a one-hidden-layer network's objective, assembled from its structure.

        H = Σ_j J_jᵀ (∂²ℓ/∂f²)_j J_j + Σ_j Σ_k (∂ℓ/∂f_k)_j ∇²f_k(x_j),

    with per-sample Jacobians J_j in closed form and the residual term living in per-neuron blocks:
    ∂²f_k/∂u_i∂u_i = A_ki σ″(z_i) x̃x̃ᵀ and ∂²f_k/∂A_ki∂u_i = σ′(z_i) x̃ (u_i = (w_i, b_i), x̃ = (x, 1)).
    Cost O(n q P²) for the Gauss–Newton product instead of P backward passes.

    Returns None when the objective is not that of a recognised shallow network (θ containing other
    parameters, a forward that is not output(σ(hidden(x))), or a loss that is not a per-sample mean).
    With a process group, this rank's share of H (the Hessian operator sums the shares).
    """
    structure = shallow_structure(source)
    if structure is None:
        return None
    A, u_index, a_index, size = structure.A, structure.u_index, structure.a_index, structure.size
    q, m = A.shape
    d = u_index.shape[1] - (1 if structure.biased else 0)
    eye = torch.eye(q, dtype=A.dtype, device=A.device)
    hessian = A.new_zeros(size, size)
    for t in structure.batches:
        n = t.x_tilde.shape[0]
        # The per-sample Jacobian in the canonical layout [W, b, A, c], block by block (no scattered writes).
        du = (A[None, :, :] * t.s1[:, None, :])[..., None] * t.x_tilde[:, None, None, :]  # (n, q, m, d[+1])
        blocks = [du[..., :d].reshape(n, q, m * d)]
        if structure.biased:
            blocks.append(du[..., d])
        blocks.append((eye[None, :, :, None] * t.s[:, None, None, :]).reshape(n, q, q * m))
        if structure.c_index is not None:
            blocks.append(eye.expand(n, q, q))
        J = torch.cat(blocks, dim=2)
        HJ = torch.bmm(t.Hout, J)
        hessian += J.reshape(n * q, size).T @ HJ.reshape(n * q, size)
        # Residual term: per-neuron (u_i, u_i) blocks and (A_ki, u_i) cross terms.
        beta = (t.G @ A) * t.s2  # (n, m)
        outer = (t.x_tilde[:, :, None] * t.x_tilde[:, None, :]).reshape(n, -1)  # x̃x̃ᵀ per sample
        uu = (beta.T @ outer).reshape(m, u_index.shape[1], u_index.shape[1])
        hessian.index_put_((u_index[:, :, None], u_index[:, None, :]), uu, accumulate=True)
        au = ((t.G[:, :, None] * t.s1[:, None, :]).reshape(n, q * m).T @ t.x_tilde).reshape(q, m, -1)  # (q, m, d+1)
        rows = a_index[:, :, None].expand_as(au)
        cols = u_index[None, :, :].expand_as(au)
        hessian.index_put_((rows, cols), au, accumulate=True)
        hessian.index_put_((cols, rows), au, accumulate=True)
    return hessian[structure.select][:, structure.select]


def structured_diagonal(source: Any) -> Tensor | None:
    """The exact Hessian diagonal of a one-hidden-layer network's objective, in O(n·m·(d + q²)).

        H_{u_ip,u_ip} = Σ_j [σ′(z_ji)² x̃_jp² A_:iᵀ (∂²ℓ/∂f²)_j A_:i + (∂ℓ/∂f)_j·A_:i σ″(z_ji) x̃_jp²],
        H_{A_ki,A_ki} = Σ_j (∂²ℓ/∂f²)_j,kk σ(z_ji)²,      H_{c_k,c_k} = Σ_j (∂²ℓ/∂f²)_j,kk.

    Returns None where :func:`structured_hessian` would. With a process group, summed over the ranks.
    """
    structure = shallow_structure(source)
    if structure is None:
        return None
    A = structure.A
    diagonal = A.new_zeros(structure.size)
    for t in structure.batches:
        curvature = (torch.matmul(t.Hout, A) * A).sum(dim=1) * t.s1**2 + (t.G @ A) * t.s2
        diagonal[structure.u_index] += curvature.T @ t.x_tilde**2
        output_curvature = torch.diagonal(t.Hout, dim1=1, dim2=2)  # (n, q)
        diagonal[structure.a_index] += output_curvature.T @ t.s**2
        if structure.c_index is not None:
            diagonal[structure.c_index] += output_curvature.sum(dim=0)
    return _objective(source).all_reduce(diagonal[structure.select])  # with a process group: the ranks' shares summed


def structured_products(source: Any) -> Callable[[Tensor], Tensor] | None:
    """A function V ↦ H V for a one-hidden-layer network, from its structure (no autograd).

    With ż = X̃ V_u (the change of pre-activations), ḟ = A(σ′ ∘ ż) + V_A σ + V_c and r = (∂²ℓ/∂f²) ḟ:

        (HV)_u = X̃ᵀ [σ′ ∘ (r A + G V_A) + ((G A) ∘ σ″) ∘ ż],
        (HV)_A = rᵀ σ + Gᵀ(σ′ ∘ ż),      (HV)_c = Σ_j r_j.

    Two (n × (d+1)) · ((d+1) × m·k) matrix products per block of k vectors, so a block costs about
    what k gradients cost in BLAS-3 work, without the autograd graph. Returns None where
    :func:`structured_hessian` would. With a process group, products with this rank's share of H.
    """
    structure = shallow_structure(source)
    if structure is None:
        return None
    A, u_index, a_index, c_index = structure.A, structure.u_index, structure.a_index, structure.c_index
    select = structure.select
    # Floats per (k, n, m) intermediate: vectors are taken a few at a time only while these stay cache-sized.
    # Larger blocks cost more per vector than single ones (P = 2561, n = 2048: 3.4-3.7 gradients per vector
    # in blocks of 8 against 1.4-2.4 one by one; benchmarks/products.py).
    budget = 2**17
    betas = [(t.G @ A) * t.s2 for t in structure.batches]  # fixed at this θ: once, not per product

    def products(block: Tensor) -> Tensor:
        # Vectors first (k, P): each step below is a batched matrix product or one pass over (k, n, m).
        vectors = block.new_zeros(block.shape[1], structure.size)
        vectors[:, select] = block.T
        result = torch.zeros_like(vectors)
        for t, beta in zip(structure.batches, betas, strict=True):
            n, m = t.s.shape
            step = max(1, budget // (n * m))
            for start in range(0, len(vectors), step):
                v, out = vectors[start : start + step], result[start : start + step]
                v_u, v_a = v[:, u_index], v[:, a_index]  # (k, m, d+1), (k, q, m)
                z_dot = torch.matmul(t.x_tilde, v_u.transpose(1, 2))  # (k, n, m)
                s1_z = t.s1 * z_dot
                f_dot = torch.matmul(s1_z, A.T) + torch.matmul(t.s, v_a.transpose(1, 2))  # (k, n, q)
                if c_index is not None:
                    f_dot = f_dot + v[:, None, c_index]
                r = torch.einsum("nql,knl->knq", t.Hout, f_dot)
                k = len(v)
                # σ′ ∘ (r A + G V_A) + β ∘ ż, the first two terms as one product [r, G]·[A; V_A].
                coefficient = torch.matmul(
                    torch.cat([r, t.G.expand(k, -1, -1)], 2), torch.cat([A.expand(k, -1, -1), v_a], 1)
                )
                coefficient.mul_(t.s1).addcmul_(beta, z_dot)
                out[:, u_index] += torch.matmul(coefficient.transpose(1, 2), t.x_tilde)
                out[:, a_index] += torch.matmul(r.transpose(1, 2), t.s) + torch.matmul(t.G.T, s1_z)
                if c_index is not None:
                    out[:, c_index] += r.sum(dim=1)
        return result[:, select].T

    return products
