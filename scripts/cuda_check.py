"""One command for a GPU check: the CUDA tests, then GPU timings and peak memory at 805k parameters.

    python scripts/cuda_check.py [--size XL] [--skip-tests] [--tol 1e-6]

1. Runs the tests that need CUDA (those named ``*cuda*``; they are skipped on machines without a GPU).
2. On the benchmark net of benchmarks/problems.py (default XL: 784-1024-1 tanh, n = 8192, 804,865
   parameters, float32; trained here for 300 full-batch Adam steps on the GPU), prints the time of one
   full-data gradient, of one Hessian-vector product (``HessianOperator.matvec``) and of top-10
   eigenvalues (``hessian_eigenvalues(k=10, which="largest", method="lanczos")``), each also as a multiple
   of the gradient, and the peak GPU memory of the top-10 call against that of one training step
   (forward, backward, Adam update; issue 14's target: ≤ 2×).

Without a CUDA device it says so and exits 0 after the (then skipped) tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from problems import LEARNING_RATE, SIZES, TRAIN_STEPS, make_data, make_model  # noqa: E402
from torch import nn  # noqa: E402

from torch_landscape import HessianOperator, hessian_eigenvalues  # noqa: E402

LOSS = nn.MSELoss()


def run_tests() -> int:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda", "-rs", "tests"]
    print("$ " + " ".join(command), flush=True)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.call(command, cwd=ROOT, env=environment)  # this checkout's package, not an installed one


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn`` with the device synchronised around each call, and its last result."""
    times, result = [], None
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def peak_memory(fn) -> tuple[int, object]:
    """Peak GPU memory allocated above what was allocated before ``fn``, in bytes."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    result = fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base, result


def timings(size_name: str, tol: float) -> None:
    device = torch.device("cuda")
    size = SIZES[size_name]
    x, y = (t.to(device) for t in make_data(size))
    torch.manual_seed(0)
    model = make_model(size, "tanh").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def training_step() -> None:
        optimizer.zero_grad()
        LOSS(model(x), y).backward()
        optimizer.step()

    for _ in range(TRAIN_STEPS):
        training_step()
    params = list(model.parameters())
    count = sum(p.numel() for p in params)
    print(
        f"\n{torch.cuda.get_device_name(device)}; {size_name}: d_in={size.d_in}, h={size.h}, n={size.n}, "
        f"{count} parameters, float32, trained {TRAIN_STEPS} Adam steps",
        flush=True,
    )

    step_memory, _ = peak_memory(training_step)  # state as it is after training: Adam moments exist
    optimizer.zero_grad(set_to_none=True)
    gradient_s, _ = timed(lambda: torch.autograd.grad(LOSS(model(x), y), params), 10)
    operator = HessianOperator(model, LOSS, (x, y))
    vector = torch.randn(count, device=device)
    operator.matvec(vector)  # builds the gradient graph once
    hvp_s, _ = timed(lambda: operator.matvec(vector), 10)
    del operator

    def top10():
        return hessian_eigenvalues(model, LOSS, (x, y), k=10, which="largest", method="lanczos", tol=tol)

    top10()  # warm-up (kernels, allocator)
    top_memory, spectrum = peak_memory(top10)
    top_s, spectrum = timed(top10, 3)
    print(f"gradient        {gradient_s * 1e3:9.2f} ms")
    print(f"HVP (matvec)    {hvp_s * 1e3:9.2f} ms  = {hvp_s / gradient_s:.2f} gradients")
    print(
        f"top-10 (tol {tol:g}) {top_s * 1e3:9.1f} ms  = {top_s / gradient_s:.1f} gradients, {spectrum.num_hvp} HVPs, "
        f"converged={spectrum.converged}, λ_max={spectrum.lambda_max:.6g}, "
        f"max bound/λ_max={float(spectrum.error_bounds.max()) / spectrum.lambda_max:.1e}"
    )
    print(
        f"peak GPU memory: training step {step_memory / 2**20:.0f} MiB, top-10 {top_memory / 2**20:.0f} MiB "
        f"= {top_memory / max(step_memory, 1):.2f}× (target ≤ 2×)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="XL", choices=sorted(SIZES))
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    status = 0 if args.skip_tests else run_tests()
    if not torch.cuda.is_available():
        print("\nNo CUDA device here: the CUDA tests were skipped and there are no GPU timings to print.")
        return status
    timings(args.size, args.tol)
    return status


if __name__ == "__main__":
    sys.exit(main())
