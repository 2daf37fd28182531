"""No silent wrong number, no crash (issue 22, item 4): large probe sets stay linear in n.

Tolerances are stated where they are used."""

import torch
from torch import nn

from torch_landscape.redundancy import redundancy_nullity_check


def gaussian(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def network(W, b, A, c) -> nn.Sequential:
    model = nn.Sequential(nn.Linear(W.shape[1], W.shape[0]), nn.Tanh(), nn.Linear(W.shape[0], 1)).double()
    with torch.no_grad():
        for parameter, value in zip(model.parameters(), (W, b, A, c), strict=True):
            parameter.copy_(value)
    return model


# ----------------------------------------------------------------------------------------------------------
# Item 4: nothing of size n² on a large probe set


def test_nullity_check_on_20k_samples_builds_no_n_by_n_factor(monkeypatch):
    """The cross-check's kernels of n × k feature matrices took a full SVD, whose n × n left factor made
    30k samples cost 7 GB. Every factorisation must now return factors of at most n·k entries."""
    n = 20_000
    x = gaussian(n, 2, seed=6)
    model = network(gaussian(3, 2, seed=7), gaussian(3, seed=8), gaussian(1, 3, seed=9), gaussian(1, seed=10))
    y = model(x).detach()
    largest = {}
    for name in ("svd", "qr"):
        original = getattr(torch.linalg, name)

        def recording(matrix, *args, original=original, name=name, **kwargs):
            factors = original(matrix, *args, **kwargs)
            rows = largest.setdefault(name, [0, 0])
            rows[0] = max(rows[0], matrix.shape[-2])
            rows[1] = max([rows[1], *(factor.numel() for factor in factors)])
            return factors

        monkeypatch.setattr(torch.linalg, name, recording)
    check = redundancy_nullity_check(model, nn.MSELoss(), (x, y))
    assert largest["svd"][0] == n  # the kernel of the n-row feature matrix was taken …
    assert max(entries for _, entries in largest.values()) <= n * 10  # … without an n × n factor (k ≤ 4 here)
    assert check.critical and check.measured_nullity == check.predicted_nullity == 0  # an irreducible teacher
