"""When the Hessian is assembled and decomposed densely instead of solved matrix-free: the one policy.

Dense means: assemble H (P Hessian-vector products, or one structured pass for a one-hidden-layer network)
and take its whole symmetric eigendecomposition, exact to rounding. It costs O(P²) memory and O(P³) time,
so it pays up to a size that depends on what is asked for:

* a light evaluation wants λ_max (and λ_min where it is free): dense while an eigendecomposition costs about
  as much as a few products, :data:`LIGHT_DENSE_THRESHOLD`;
* a spectrum to full tolerance at both ends: at P ≈ 1000 assembly plus ``eigh`` takes about as long as a
  matrix-free solve for k = 5 at both ends on 2 cores (``benchmarks/hessian_engine.py``), and below it the
  dense path is both faster and exact: :data:`DENSE_THRESHOLD`;
* the critical-point classification needs the eigenvalues near 0, where networks have a large cluster that
  Lanczos resolves slowly (a trained ReLU network with P = 1201: 5 s dense, 50–80 s for block Lanczos at
  both ends): :data:`CRITICAL_DENSE_THRESHOLD`.
"""

from __future__ import annotations

from typing import Literal

#: Up to this P a light evaluation takes the whole spectrum (λ_min exactly, too).
LIGHT_DENSE_THRESHOLD = 256

#: Up to this P a spectrum at both ends is computed densely.
DENSE_THRESHOLD = 1024

#: Up to this P the critical-point classification decomposes H densely.
CRITICAL_DENSE_THRESHOLD = 2000

Purpose = Literal["light", "spectrum", "critical"]

_LIMITS: dict[str, int] = {
    "light": LIGHT_DENSE_THRESHOLD,
    "spectrum": DENSE_THRESHOLD,
    "critical": CRITICAL_DENSE_THRESHOLD,
}


def uses_dense(num_parameters: int, purpose: Purpose = "spectrum", method: str = "auto") -> bool:
    """Whether ``purpose`` is served by the assembled Hessian: ``method`` "dense" or "lanczos" decides
    outright; "auto" compares P with the purpose's threshold."""
    if method != "auto":
        return method == "dense"
    return num_parameters <= _LIMITS[purpose]
