"""Train a small shallow tanh network and print its Hessian spectrum (the foundation demo)."""

import time

import torch
from torch import nn

from torch_landscape import HessianOperator, hessian_eigenvalues, hessian_trace, spectral_density


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(512, 10)
    y = torch.tanh(x @ torch.randn(10, 3)) @ torch.randn(3, 1)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(500):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    print(f"trained {sum(p.numel() for p in model.parameters())} parameters, final loss {loss.item():.3e}")

    hessian = HessianOperator(model, nn.MSELoss(), (x, y), dtype=torch.float64)
    for method in ("dense", "lanczos"):
        start = time.perf_counter()
        spectrum = hessian_eigenvalues(hessian, k=3, which="both", method=method, tol=1e-8)
        print(f"{method:>8}: {spectrum}  [{time.perf_counter() - start:.2f} s]")
    print(hessian_trace(hessian))
    density = spectral_density(hessian)
    negative = float(density.weights[density.nodes < 0].sum())
    print(f"fraction of negative eigenvalues: {negative:.1%}; Hessian-vector products so far: {hessian.num_hvp}")


if __name__ == "__main__":
    main()
