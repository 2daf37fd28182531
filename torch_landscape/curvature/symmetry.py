"""Continuous symmetries of a one-hidden-layer network and the quotient of parameter space by them.

A one-parameter family of linear maps G_c with L(G_c θ) = L(θ) gives, with G′ = dG_c/dc at c = 1 and the
tangent v(θ) = G′θ (docs/theory.md §1.4, Lemma S),

    H(θ) v(θ) = −G′ᵀ ∇L(θ)   at every θ,      ∇L(θ)·v(θ) = 0,

so at every critical point, minimum or saddle, each tangent is an exact null vector of the Hessian.
(Where G_c depends on θ, as O(D) does on trainable output weights, the identity reads
H v = −(∂v/∂θ)ᵀ∇L, and the conclusion at critical points is the same.)
The families known for f(x) = A σ(W x + b) + c, all of the form (W, b, A, c) ↦ (S W, S b, A R, 0):

- ReLU / leaky ReLU (σ(γz) = γσ(z), γ > 0): per-neuron rescaling S = E_ii, R = −E_ii, so
  v_i = (w_i, b_i on neuron i's row; −A_{:,i} on its output column).
- Quadratic σ(z) = z² (degree 2): the same with R = −2E_ii, and, for one output, the group
  {Q : QᵀDQ = D}, D = diag(A): S = a_j E_ij − a_i E_ji (DS skew), R = 0.
- Linear σ(z) = z: GL(m), S = M, R = −M for every M ∈ R^{m×m}.

Frozen parameters are constants of L(θ), so only the combinations of generators that leave every frozen
tensor where it is are symmetries of L(θ) (e.g. none of the ReLU rescalings when the output weights are
frozen, unless a neuron's output weight is 0). Discrete symmetries (permutations, sign flips) have no
tangent and are not listed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..objective import Objective
from .shallow import ShallowNetwork, shallow_parameters

#: A family of tangents with more entries (generators × parameters) is not built; the classification
#: then runs without it and says so.
MAX_TANGENT_ENTRIES = 1 << 26


@dataclass(frozen=True)
class SymmetryTangents:
    """Tangent vectors v_i = G_i′θ of the continuous symmetries of L at θ.

    Attributes
    ----------
    vectors : Tensor
        (P, k) in θ's flat layout; columns with ‖v_i‖ ≤ 1e-12·max(‖θ‖, 1) (e.g. all-zero neurons) dropped.
    family : str
        Which symmetry group they come from, in words ("" when there is none).
    note : str
        Why there are none, or which were too many to build ("" otherwise).
    """

    vectors: Tensor
    family: str = ""
    note: str = ""

    @property
    def count(self) -> int:
        """k, the number of tangent vectors."""
        return self.vectors.shape[1]


Deltas = dict[str, Tensor]  # per parameter name, the stacked G′θ of k generators: (k, *shape)


def _families(net: ShallowNetwork, parameters: dict[str, Tensor]) -> list[tuple[str, int, Callable[[], Deltas]]]:
    """The generator families of the network: (name, number of generators k, builder of their deltas)."""
    W_name, b_name = net.parameter_name("hidden", "weight"), net.parameter_name("hidden", "bias")
    A_name = net.parameter_name("output", "weight")
    W, b, A = parameters[W_name], parameters.get(b_name), parameters[A_name]
    q, m = A.shape
    eye = torch.eye(m, dtype=A.dtype, device=A.device)

    def rescaling(degree: int) -> Deltas:
        # S = E_ii, R = −p E_ii: neuron i's row of (W, b) and −p times its column of A.
        deltas = {W_name: eye[:, :, None] * W[None], A_name: -degree * eye[:, None, :] * A[None]}
        if b is not None:
            deltas[b_name] = eye * b[None]
        return deltas

    def general_linear() -> Deltas:
        # S = E_kl, R = −E_kl for k, l < m: E_kl W has row k = w_l; −A E_kl has column l = −A_{:,k}.
        deltas = {
            W_name: (eye[:, None, :, None] * W[None, :, None, :]).reshape(m * m, m, -1),
            A_name: -(A.T[:, None, :, None] * eye[None, :, None, :]).reshape(m * m, q, m),
        }
        if b is not None:
            deltas[b_name] = (eye[:, None, :] * b[None, :, None]).reshape(m * m, m)
        return deltas

    def orthogonal() -> Deltas:
        # S = a_j E_ij − a_i E_ji for i < j, so that D S is skew (D = diag(a)); R = 0.
        i, j = torch.triu_indices(m, m, offset=1, device=A.device)
        pairs, a = torch.arange(len(i), device=A.device), A[0]
        deltas = {}
        for name, value in ((W_name, W), (b_name, b)):
            if value is not None:
                delta = value.new_zeros(len(i), *value.shape)
                delta[pairs, i] = a[j].reshape(-1, *[1] * (value.ndim - 1)) * value[j]
                delta[pairs, j] = -a[i].reshape(-1, *[1] * (value.ndim - 1)) * value[i]
                deltas[name] = delta
        return deltas

    if net.kind in ("relu", "leaky_relu"):
        return [(f"per-neuron rescaling ({net.kind})", m, lambda: rescaling(1))]
    if net.kind == "identity":
        return [("GL(m) of the linear network", m * m, general_linear)]
    if net.kind == "square":
        families = [("per-neuron rescaling (degree 2)", m, lambda: rescaling(2))]
        if q == 1:  # with several outputs O(D) would have to preserve every row of A at once
            families.append(("O(D), D = diag(output weights)", m * (m - 1) // 2, orthogonal))
        return families
    return []


def symmetry_tangents(objective: Objective, theta: Tensor | None = None) -> SymmetryTangents:
    """The tangents v = G′θ of the known continuous symmetries of L, as columns in θ's flat layout.

    Parameters
    ----------
    objective
        The objective L; θ may be any subset of the shallow network's parameters.
    theta
        Where to take the tangents (default: ``objective.theta``).

    Returns
    -------
    SymmetryTangents
        With no vectors (and a ``note`` saying why) for models that are not one-hidden-layer networks
        or whose activation has no continuous symmetry.
    """
    theta = objective.theta if theta is None else theta
    found = shallow_parameters(objective)
    if found is None:
        return SymmetryTangents(
            theta.new_zeros(theta.numel(), 0),
            note="no known continuous symmetry: L is not known to depend on θ only through a one-hidden-layer net",
        )
    net, parameters = found
    parameters = {**parameters, **objective.unflatten(theta)}
    families = _families(net, parameters)
    if not families:
        return SymmetryTangents(
            theta.new_zeros(theta.numel(), 0), note=f"activation {net.kind} has no continuous symmetry"
        )
    full_size = sum(p.numel() for p in parameters.values())
    blocks, names, notes = [theta.new_zeros(theta.numel(), 0)], [], []
    for family, count, build in families:
        if count * full_size > MAX_TANGENT_ENTRIES:
            notes.append(f"{family}: {count} tangents of length {full_size} are too many to build")
            continue
        deltas = build()
        frozen = [delta.reshape(count, -1) for name, delta in deltas.items() if name not in objective.names]
        vectors = torch.cat(
            [
                deltas[name].reshape(count, -1) if name in deltas else theta.new_zeros(count, numel)
                for name, numel in zip(objective.names, objective.numels, strict=True)
            ],
            dim=1,
        )
        if frozen:
            # The frozen part of G′θ depends only on frozen values: the combinations of generators that
            # vanish there fix the frozen tensors, and are symmetries of L(θ) for every θ.
            vectors = _left_null_space(torch.cat(frozen, dim=1), theta).T @ vectors
        vectors = vectors.T[:, torch.linalg.vector_norm(vectors, dim=1) > _negligible(theta)]
        if vectors.shape[1]:
            blocks.append(vectors)
            names.append(family)
    if not names and not notes:
        notes.append("every symmetry tangent vanishes here or would move a frozen parameter")
    return SymmetryTangents(torch.cat(blocks, dim=1).contiguous(), " and ".join(names), "; ".join(notes))


def _negligible(theta: Tensor) -> float:
    """1e-12·max(‖θ‖, 1) (docs/theory.md §1.4): a tangent this short is a rounding artefact or a dead neuron."""
    return 1e-12 * max(float(torch.linalg.vector_norm(theta)), 1.0)


def _rank(singular_values: Tensor, shape: tuple[int, ...], theta: Tensor) -> int:
    """Numerical rank: singular values above max(1e-12·max(‖θ‖, 1), rounding max(shape)·ε·σ_max)."""
    largest = float(singular_values.max()) if singular_values.numel() else 0.0
    tolerance = max(_negligible(theta), max(shape) * torch.finfo(theta.dtype).eps * largest)
    return int((singular_values > tolerance).sum())


def _left_null_space(rows: Tensor, theta: Tensor) -> Tensor:
    """Coefficient vectors c (columns) with Σ_k c_k·rows_k = 0 (to the tolerance of :func:`_rank`)."""
    u, s, _ = torch.linalg.svd(rows, full_matrices=True)
    return u[:, _rank(s, rows.shape, theta) :]


@dataclass(frozen=True)
class QuotientBasis:
    """An orthonormal basis Q_⊥ of span(V)^⊥, applied through r Householder reflectors, never formed.

    With Q = [Q_V Q_⊥] the orthogonal matrix of a QR factorisation of an orthonormal basis of span(V),
    the quotient Hessian is H_q = Q_⊥ᵀ H Q_⊥ (docs/theory.md §1.4); at a critical point
    spectrum(H) = spectrum(H_q) ∪ {0}^r exactly.

    Attributes
    ----------
    tangent_basis : Tensor
        (P, r) orthonormal basis of span(V).
    """

    tangent_basis: Tensor
    _reflectors: Tensor = field(repr=False)
    _tau: Tensor = field(repr=False)

    @property
    def rank(self) -> int:
        """r = dim span(V)."""
        return self.tangent_basis.shape[1]

    @property
    def size(self) -> int:
        """P."""
        return self.tangent_basis.shape[0]

    def project(self, x: Tensor) -> Tensor:
        """(I − Q_V Q_Vᵀ) x: the part of x (vector or columns) orthogonal to the symmetry tangents."""
        basis = self.tangent_basis
        return x - basis @ (basis.T @ x) if self.rank else x

    def restrict(self, x: Tensor) -> Tensor:
        """Q_⊥ᵀ x, coordinates in span(V)^⊥ of x (P or (P, k)) → (P − r) or (P − r, k)."""
        if not self.rank:
            return x
        column = x.ndim == 1
        x = x[:, None] if column else x
        y = torch.ormqr(self._reflectors, self._tau, x, left=True, transpose=True)[self.rank :]
        return y[:, 0] if column else y

    def extend(self, y: Tensor) -> Tensor:
        """Q_⊥ y, the vectors of R^P with coordinates y in span(V)^⊥."""
        if not self.rank:
            return y
        column = y.ndim == 1
        y = y[:, None] if column else y
        padded = torch.cat([y.new_zeros(self.rank, y.shape[1]), y])
        x = torch.ormqr(self._reflectors, self._tau, padded, left=True, transpose=False)
        return x[:, 0] if column else x

    def compress(self, matrix: Tensor) -> Tensor:
        """Q_⊥ᵀ M Q_⊥ for a dense symmetric P×P matrix M."""
        if not self.rank:
            return matrix
        left = torch.ormqr(self._reflectors, self._tau, matrix, left=True, transpose=True)
        both = torch.ormqr(self._reflectors, self._tau, left, left=False, transpose=False)
        both = both[self.rank :, self.rank :]
        return (both + both.T) / 2


def quotient_basis(tangents: Tensor, theta: Tensor) -> QuotientBasis:
    """Q_⊥ for the span of the tangent columns (P, k), its rank decided at 1e-12·max(‖θ‖, 1).

    Tangents can be linearly dependent (GL(m) at a rank-deficient W, O(D) where rows of W vanish), so
    the rank is that of the singular values above the threshold (or rounding, max(P, k)·ε·σ_max), not k.
    """
    if tangents.shape[1] == 0:
        empty = tangents.new_zeros(tangents.shape[0], 0)
        return QuotientBasis(empty, empty, tangents.new_zeros(0))
    u, s, _ = torch.linalg.svd(tangents, full_matrices=False)
    basis = u[:, : _rank(s, tangents.shape, theta)].contiguous()
    reflectors, tau = torch.geqrf(basis)
    return QuotientBasis(basis, reflectors, tau)
