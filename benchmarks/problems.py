"""The benchmark problem set shared by hessian_engine.py and compare_peers.py.

Regression nets x -> Linear(d_in, h) -> act -> Linear(h, 1), MSE (mean), n synthetic samples
(x ~ N(0, I); y = tanh(x A) b + 0.1 noise, a width-8 teacher), act in {tanh, relu}, trained 300
full-batch Adam steps from seed 0 so that the point is a trained one (a few outlier eigenvalues, a bulk
near 0 with small negative eigenvalues), not a random initialisation. The same problem set as
shared/measured.md.

Trained models and their reference quantities are cached under benchmarks/results/cache/ (gitignored)
so that the per-case subprocesses of compare_peers.py do not retrain or recompute them.

Ground truth ("reference"), all float64:
* S, M: the dense Hessian from vmapped torch.func forward-over-reverse HVPs of the basis vectors
  (independent of torch_landscape's structured assembly and of its HVP path), ``eigvalsh``: every
  eigenvalue, the exact trace.
* L, XL: trace = sum of the closed-form Hessian diagonal (float64); top-10 = scipy ``eigsh`` (ARPACK,
  which="LA", tol 1e-10) on float64 torch.func HVPs at L, and at XL (where that takes ~5 min) a float64
  block Lanczos certified by its residuals (<= 1e-9 max|lambda|); smallest eigenvalues (L only) = one
  long float64 block Lanczos with full reorthogonalisation to residual <= 1e-9 max|lambda|.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = RESULTS / "cache"


@dataclass(frozen=True)
class Size:
    name: str
    d_in: int
    h: int
    n: int

    @property
    def params(self) -> int:
        return self.d_in * self.h + self.h + self.h + 1


SIZES = {
    "S": Size("S", 10, 16, 512),
    "M": Size("M", 50, 64, 2048),
    "L": Size("L", 100, 512, 8192),
    "XL": Size("XL", 784, 1024, 8192),
}
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
TRAIN_STEPS = 300
LEARNING_RATE = 1e-2


def setup_threads(threads: int = 2) -> None:
    torch.set_num_threads(threads)


def make_model(size: Size, act: str) -> nn.Module:
    return nn.Sequential(nn.Linear(size.d_in, size.h), ACTIVATIONS[act](), nn.Linear(size.h, 1))


def make_data(size: Size, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size.n, size.d_in, generator=generator)
    teacher_a = torch.randn(size.d_in, 8, generator=generator) / math.sqrt(size.d_in)
    teacher_b = torch.randn(8, 1, generator=generator)
    y = torch.tanh(x @ teacher_a) @ teacher_b + 0.1 * torch.randn(size.n, 1, generator=generator)
    return x, y


@dataclass
class Problem:
    size: Size
    act: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    final_loss: float
    grad_norm: float

    @property
    def label(self) -> str:
        return f"{self.size.name}/{self.act}"

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def header(self) -> str:
        s = self.size
        return (
            f"{s.name} / {self.act}: d_in={s.d_in}, h={s.h}, n={s.n}, {self.params} params; "
            f"after {TRAIN_STEPS} Adam steps loss={self.final_loss:.4g}, |grad|={self.grad_norm:.2g}"
        )


def _train(size: Size, act: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    x, y = make_data(size)
    torch.manual_seed(0)
    model = make_model(size, act)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.MSELoss()
    for _ in range(TRAIN_STEPS):
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    return model, x, y


def get_problem(name: str, act: str) -> Problem:
    """The trained problem (cached on disk after the first call)."""
    size = SIZES[name]
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}_{act}_model.pt"
    model = make_model(size, act)
    if path.exists():
        model.load_state_dict(torch.load(path))
        x, y = make_data(size)
    else:
        trained, x, y = _train(size, act)
        model.load_state_dict(trained.state_dict())
        torch.save(model.state_dict(), path)
    model.zero_grad(set_to_none=True)
    loss = nn.MSELoss()(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    loss = loss.detach()
    grad_norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    return Problem(size, act, model, x, y, float(loss), grad_norm)


# --------------------------------------------------------------------------------------------------
# Ground truth


def _functional_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    numels = [p.numel() for _, p in model.named_parameters()]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(theta, numels)
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        out = torch.func.functional_call(model, params, (x,))
        return ((out - y) ** 2).mean()  # hand-written MSE (torch 2.13: jvp(grad(F.mse_loss)) fails)

    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return loss, theta


def float64_hvp(problem: Problem):
    """v -> H v in float64 by torch.func forward-over-reverse (independent of torch_landscape)."""
    model = make_model(problem.size, problem.act).double()
    model.load_state_dict({k: v.double() for k, v in problem.model.state_dict().items()})
    loss, theta = _functional_loss(model, problem.x.double(), problem.y.double())
    grad = torch.func.grad(loss)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(grad, (theta,), (v,))[1]

    return hvp, theta.numel()


def dense_float64_hessian(problem: Problem, chunk: int = 128) -> torch.Tensor:
    hvp, size = float64_hvp(problem)
    batched = torch.func.vmap(hvp)
    eye = torch.eye(size, dtype=torch.float64)
    rows = [batched(eye[i : i + chunk]) for i in range(0, size, chunk)]
    dense = torch.cat(rows, dim=0)
    return (dense + dense.T) / 2


def reference(problem: Problem, need_min: bool = True, log=print) -> dict:
    """Reference quantities (cached): eigenvalues (ascending; all for S/M), trace, top10, bottom."""
    path = CACHE / f"{problem.size.name}_{problem.act}_reference.pt"
    if path.exists():
        ref = torch.load(path)
        if ref.get("bottom") is not None or not need_min:
            return ref
    else:
        ref = {}
    start = time.perf_counter()
    if problem.params <= 4000:
        dense = dense_float64_hessian(problem)
        values = torch.linalg.eigvalsh(dense)
        ref = {
            "kind": "dense float64 eigvalsh (vmapped torch.func HVPs)",
            "eigenvalues": values,
            "top": values.flip(0)[:10],
            "bottom": values[:10],
            "trace": float(torch.trace(dense)),
            "dense": True,
        }
    else:
        from scipy.sparse.linalg import LinearOperator, eigsh

        from torch_landscape import HessianOperator
        from torch_landscape.curvature.eigen import lanczos_spectrum
        from torch_landscape.curvature.structured import structured_diagonal

        if "top" not in ref:
            op64 = HessianOperator(problem.model, nn.MSELoss(), (problem.x, problem.y), dtype=torch.float64)
            trace = float(structured_diagonal(op64.objective).sum())
            if problem.params < 200_000:
                hvp, size = float64_hvp(problem)
                counter = [0]

                def mv(v):
                    counter[0] += 1
                    return hvp(torch.from_numpy(np.ascontiguousarray(v).reshape(-1))).numpy()

                top = eigsh(
                    LinearOperator((size, size), matvec=mv, dtype=np.float64),
                    k=10,
                    which="LA",
                    tol=1e-10,
                    return_eigenvectors=False,
                )
                kind = f"top: scipy eigsh LA tol=1e-10 on float64 torch.func HVPs ({counter[0]} HVPs)"
                top = np.sort(top)[::-1].copy()
            else:  # XL: ARPACK on float64 HVPs would take ~5 min here; a certified float64 Lanczos instead
                spec = lanczos_spectrum(op64, 10, "largest", tol=1e-9, block_size=1, max_hvp=400)
                top = spec.eigenvalues.flip(0).numpy().copy()
                kind = (
                    f"top: float64 block Lanczos, resid <= 1e-9 max|theta| ({spec.num_hvp} HVPs, "
                    f"converged={spec.converged})"
                )
            ref = {
                "kind": kind + "; trace: closed-form float64 diagonal",
                "top": torch.from_numpy(top),
                "trace": trace,
                "bottom": None,
                "dense": False,
            }
        if need_min:
            op64 = HessianOperator(problem.model, nn.MSELoss(), (problem.x, problem.y), dtype=torch.float64)
            spec = lanczos_spectrum(op64, 10, "smallest", tol=1e-9, block_size=1, max_hvp=1500)
            ref["bottom"] = spec.eigenvalues
            ref["bottom_note"] = (
                f"bottom: float64 block Lanczos, full reorth, resid <= 1e-9 max|theta| "
                f"({spec.num_hvp} HVPs, converged={spec.converged})"
            )
    ref["seconds"] = time.perf_counter() - start
    torch.save(ref, path)
    log(f"  [reference for {problem.label} computed in {ref['seconds']:.1f} s]")
    return ref


# --------------------------------------------------------------------------------------------------
# Measuring


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Restart this process's RSS high-water mark (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def maxrss_mb() -> float:
    """Peak RSS of this process (since it started or since reset_peak_rss()), in MB.

    Read from VmHWM, which belongs to the address space and so starts afresh at exec; ``ru_maxrss``
    (the fallback) is carried from parent to child across fork/exec, so a worker started by a large
    parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def peak_rss(period: float = 0.002):
    """Samples the process RSS in a thread; yields a dict whose 'growth_mb' is set on exit."""
    result = {"start_mb": rss_mb(), "peak_mb": rss_mb()}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            result["peak_mb"] = max(result["peak_mb"], rss_mb())
            stop.wait(period)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["peak_mb"] = max(result["peak_mb"], rss_mb())
        result["growth_mb"] = result["peak_mb"] - result["start_mb"]


def median_time(fn, repeats: int = 5, min_time: float = 0.0, warmup: int = 1):
    """(median seconds, last result) over ``repeats`` calls after ``warmup`` calls."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def rel_err_sorted(estimate, ref) -> float:
    est = torch.as_tensor(estimate, dtype=torch.float64).flatten()
    ref = torch.as_tensor(ref, dtype=torch.float64).flatten()
    count = min(len(est), len(ref))
    return float(((est[:count] - ref[:count]).abs() / ref[:count].abs()).max())


def wasserstein_rel(nodes, weights, eigenvalues) -> float:
    """W1 distance between a discrete measure and the empirical spectral measure, / (lambda_max - lambda_min)."""
    nodes = torch.as_tensor(nodes, dtype=torch.float64).flatten()
    weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
    weights = weights / weights.sum()
    eig = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
    points = torch.cat([nodes, eig]).sort().values
    cdf_a = (weights[None, :] * (nodes[None, :] <= points[:, None])).sum(1)
    cdf_b = (eig[None, :] <= points[:, None]).double().mean(1)
    widths = points[1:] - points[:-1]
    return float(((cdf_a - cdf_b)[:-1].abs() * widths).sum() / (eig.max() - eig.min()))
