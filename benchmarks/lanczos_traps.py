#!/usr/bin/env python
"""How often a Lanczos error bound misses: the planted spectra of tests/test_eigen.py that trap the gap
refinement (close pairs far from the rest, at both ends), solved to convergence at loose and tight tolerances.

For 6 seeds × 4 spectra × (largest, smallest, both) × k ∈ {1, 3} × tol ∈ {1e-2, 1e-3, 1e-4, 1e-6, 1e-8}
it counts the reported eigenvalues whose bound misses every true eigenvalue, and, for converged solves, those
whose bound misses the eigenvalue of the same rank (a close pair the Krylov space had not split). Products
are counted too. Deterministic; nothing is timed or asserted.

Usage::

    python benchmarks/lanczos_traps.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_eigen import _planted_spectra  # noqa: E402
from test_operators import planted  # noqa: E402
from torch_landscape.curvature.eigen import lanczos_spectrum  # noqa: E402

TOLERANCES = (1e-2, 1e-3, 1e-4, 1e-6, 1e-8)


def main() -> None:
    torch.set_num_threads(1)
    total = missed = off_rank = products = 0
    for seed in range(6):
        for values in _planted_spectra(seed).values():
            operator, truth = planted(values, seed), torch.sort(values).values
            for which in ("largest", "smallest", "both"):
                for k in (1, 3):
                    expected = {"largest": truth[-k:], "smallest": truth[:k]}.get(which)
                    expected = torch.cat([truth[:k], truth[-k:]]) if expected is None else expected
                    for tol in TOLERANCES:
                        spectrum = lanczos_spectrum(operator, k, which, tol=tol, seed=seed)
                        distance = (spectrum.eigenvalues[:, None] - truth[None, :]).abs().min(dim=1).values
                        total += len(distance)
                        products += spectrum.num_hvp
                        missed += int((distance > spectrum.error_bounds).sum())
                        if spectrum.converged:
                            off_rank += int(((spectrum.eigenvalues - expected).abs() > spectrum.error_bounds).sum())
    print(
        f"{total} bounds at tolerances {', '.join(f'{t:g}' for t in TOLERANCES)}: {missed} miss every eigenvalue; "
        f"{off_rank} of converged solves miss the eigenvalue of their rank; {products} products in all"
    )


if __name__ == "__main__":
    main()
