"""When the Hessian is assembled and decomposed densely instead of solved matrix-free: the one policy.

Dense means: assemble H (P Hessian-vector products, or one structured pass for a one-hidden-layer network)
and take its whole symmetric eigendecomposition, exact to rounding. It costs O(P²) memory and O(P³) time,
so it pays up to a size that depends on what is asked for:

* a light evaluation wants λ_max (and λ_min where it is free): dense while an eigendecomposition costs about
  as much as a few products, :data:`LIGHT_DENSE_THRESHOLD` — where the Hessian is assembled from its
  structure in one pass; assembled from P products (any other model), only up to
  :data:`LIGHT_PRODUCTS_THRESHOLD`, beyond which a warm-started λ_max takes fewer products;
* a spectrum to full tolerance at both ends: at P ≈ 1000 assembly plus ``eigh`` takes about as long as a
  matrix-free solve for k = 5 at both ends on 2 cores (``benchmarks/hessian_engine.py``), and below it the
  dense path is both faster and exact: :data:`DENSE_THRESHOLD`;
* the critical-point classification needs the eigenvalues near 0, where networks have a large cluster that
  Lanczos resolves slowly (a trained ReLU network with P = 1201: 5 s dense, 50–80 s for block Lanczos at
  both ends): :data:`CRITICAL_DENSE_THRESHOLD`;
* all of these assume the one-pass structured assembly. Where the Hessian costs P products (any model but a
  one-hidden-layer network with a known loss, e.g. a loss computed in ``training_step``), a full evaluation
  is dense only up to :data:`FULL_PRODUCTS_THRESHOLD`; above it one Krylov solve of both ends serves it, and
  the critical-point test assembles H only where the cheap certificate that θ is far from a critical point
  fails (:func:`~torch_landscape.evaluation.critical_values`).
"""

from __future__ import annotations

from typing import Literal

#: Up to this P a light evaluation takes the whole spectrum (λ_min exactly, too), when the Hessian of a
#: one-hidden-layer network is assembled from its structure in one pass.
LIGHT_DENSE_THRESHOLD = 256

#: Likewise when the dense Hessian costs P products: a warm-started λ_max takes 3–6 (a light evaluation of
#: the README's 33-parameter network, an inline loss: 20–30 ms dense, 4–6 ms by Lanczos).
LIGHT_PRODUCTS_THRESHOLD = 16

#: Up to this P a spectrum at both ends is computed densely.
DENSE_THRESHOLD = 1024

#: Up to this P the critical-point classification decomposes H densely.
CRITICAL_DENSE_THRESHOLD = 2000

#: Up to this P a full evaluation assembles a Hessian that costs P products: about what one Krylov solve of
#: both ends to full tolerance takes (k = 5: 130–230 products at P = 321 to 2,561, benchmarks/evaluation_cost.py).
FULL_PRODUCTS_THRESHOLD = 256

Purpose = Literal["light", "spectrum", "critical"]

_LIMITS: dict[str, int] = {
    "light": LIGHT_DENSE_THRESHOLD,
    "spectrum": DENSE_THRESHOLD,
    "critical": CRITICAL_DENSE_THRESHOLD,
}


def uses_dense(
    num_parameters: int, purpose: Purpose = "spectrum", method: str = "auto", structured: bool = True
) -> bool:
    """Whether ``purpose`` is served by the assembled Hessian: ``method`` "dense" or "lanczos" decides
    outright; "auto" compares P with the purpose's threshold (a lower one when the Hessian is not
    ``structured``, i.e. assembled from P products)."""
    if method != "auto":
        return method == "dense"
    if not structured:
        limit = LIGHT_PRODUCTS_THRESHOLD if purpose == "light" else FULL_PRODUCTS_THRESHOLD
        return num_parameters <= limit
    return num_parameters <= _LIMITS[purpose]
