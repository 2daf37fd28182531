#!/usr/bin/env python
"""torch_landscape beside the tools users would pick instead (issue 7).

Same models and data as benchmarks/problems.py (shallow regression nets S ≈ 200, M ≈ 3 300,
L ≈ 52 000, XL ≈ 805 000 parameters, tanh and ReLU, trained 300 full-batch Adam steps). For each tool —
torch_landscape, PyHessian, pytorch-hessian-eigenthings (v1 API), curvlinops (+ scipy ``eigsh``),
BackPACK, Cockpit — and each quantity — top-1, top-10, smallest eigenvalue, trace, spectral density —
it measures:

* wall time of the end-to-end user call (operator construction included), median of repeats, and the
  same divided by one full-batch gradient timed in the same process right before;
* HVP count, from a wrapper around each tool's HVP function (PyHessian ``hessian_vector_product``,
  eigenthings ``HessianOperator.matvec``, curvlinops ``HessianLinearOperator._matmat`` columns, Cockpit
  ``HVPLinearOperator.hessian_vector_product``, our ``HessianOperator.matmat`` columns);
* relative error against the float64 reference of problems.reference (dense for S/M);
* peak memory: every tool/case runs in its own subprocess; "process peak RSS" is that process's
  high-water mark (VmHWM, restarted before each quantity — not ``ru_maxrss``, which a child inherits from
  its parent across fork/exec), "growth" the sampled peak during the first call minus the RSS before it.

A tool that fails or cannot compute a quantity gets a row saying so and why. Then the training-time
overhead: the M net trained a few hundred mini-batch Adam steps with no monitor, with our monitor and
with Cockpit (HessMaxEV + HessTrace) at the same schedule.

Writes benchmarks/results/peers.md (gitignored) and prints the same tables.

Usage::

    .venv-bench/bin/python benchmarks/compare_peers.py                 # S, M, L + training overhead
    .venv-bench/bin/python benchmarks/compare_peers.py --quick         # S only, few repeats (make bench)
    .venv-bench/bin/python benchmarks/compare_peers.py --sizes L --acts tanh --tools ours,pyhessian
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see hessian_engine.py: contention-safe threading

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

QUANTITIES = ["top1", "top10", "min", "trace", "density"]

# (tool, quantity, setting). Settings: the tool's defaults first, then the settings a careful user would
# pick (the accuracy traps of shared/measured.md).
SPECS = [
    ("torch_landscape", "top1", "lanczos tol=1e-6"),
    ("torch_landscape", "top10", "lanczos tol=1e-6"),
    ("torch_landscape", "top10", "dense"),
    ("torch_landscape", "min", "lanczos tol=1e-6"),
    ("torch_landscape", "min", "dense"),
    ("torch_landscape", "trace", "auto (exact)"),
    ("torch_landscape", "trace", "hutchpp 99"),
    ("torch_landscape", "density", "slq 3x80"),
    ("torch_landscape", "density", "dense"),
    ("pyhessian", "top1", "default"),
    ("pyhessian", "top1", "tol=1e-6"),
    ("pyhessian", "top10", "default"),
    ("pyhessian", "top10", "tol=1e-6"),
    ("pyhessian", "min", "n/a"),
    ("pyhessian", "trace", "default"),
    ("pyhessian", "density", "default"),
    ("pyhessian", "density", "torch.eig shim"),
    ("eigenthings", "top1", "default"),
    ("eigenthings", "top1", "power_iteration_one"),
    ("eigenthings", "top1", "max_iter=4 reorth"),
    ("eigenthings", "top1", "max_iter=6 reorth"),
    ("eigenthings", "top1", "max_iter=8 reorth"),
    ("eigenthings", "top10", "default"),
    ("eigenthings", "top10", "max_iter=30 reorth"),
    ("eigenthings", "top10", "max_iter=40 reorth"),
    ("eigenthings", "top10", "max_iter=60 reorth"),
    ("eigenthings", "min", "default"),
    ("eigenthings", "min", "max_iter=100 reorth"),
    ("eigenthings", "trace", "default (hutch++ 100)"),
    ("eigenthings", "density", "default (10x80)"),
    ("curvlinops", "top1", "eigsh tol=0"),
    ("curvlinops", "top1", "eigsh tol=1e-3"),
    ("curvlinops", "top10", "eigsh tol=0"),
    ("curvlinops", "top10", "eigsh tol=1e-3"),
    ("curvlinops", "min", "eigsh SA tol=1e-3"),
    ("curvlinops", "trace", "hutchpp 99"),
    ("curvlinops", "density", "ncv=100"),
    ("backpack", "trace", "DiagHessian"),
    ("cockpit", "top1", "HessMaxEV (power)"),
    ("cockpit", "trace", "HessTrace (DiagHessian)"),
]

# Skipped where they cannot finish in the time or memory of these machines (shared/measured.md).
SLOW_ON_L = {  # (tool, quantity, setting) not attempted at L
    ("curvlinops", "min", "eigsh SA tol=1e-3"): "not run: > 240 s timeout at L in shared/measured.md",
    ("curvlinops", "top1", "eigsh tol=0"): "not run at L (the tol=1e-3 row is as accurate)",
    ("curvlinops", "top10", "eigsh tol=0"): "not run at L (the tol=1e-3 row is as accurate)",
    ("eigenthings", "top1", "default"): "not run at L (2 HVPs; 9-50 % wrong at S/M)",
    ("eigenthings", "min", "default"): "not run at L (2 HVPs; > 100 % wrong at S/M)",
    ("pyhessian", "density", "default"): "fails at every size (torch.eig removed), see S/M",
}
DENSE_ONLY_SMALL = {"dense"}


def _memory_guard() -> None:
    """Keep a runaway case (BackPACK's DiagHessian on tanh needs ~3·n·h² floats) from taking the
    shared machine down: cap this worker's address space."""
    import resource

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = int(min(12 * 2**30, 0.5 * total))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


# ==================================================================================================
# Worker: one tool, one quantity, one setting, one case; prints one JSON line.


class Counter:
    count = 0


PATCHED: set = set()


def _count_calls(owner, name: str, columns=None) -> None:
    """Wrap ``owner.name`` (once per process) so that every call adds its vector count to Counter."""
    key = (id(owner), name)
    if key in PATCHED:
        return
    PATCHED.add(key)
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        Counter.count += 1 if columns is None else columns(*args)
        return original(*args, **kwargs)

    setattr(owner, name, counted)


def build_call(tool: str, quantity: str, setting: str, problem):
    """A zero-argument callable returning the estimate: float (top1, min, trace), list (top10),
    (nodes, weights) (density)."""
    import torch
    from torch import nn

    model, x, y = problem.model, problem.x, problem.y
    data = (x, y)
    mse = nn.MSELoss()

    if tool == "torch_landscape":
        import torch_landscape as tl
        from torch_landscape.curvature.operators import HessianOperator

        _count_calls(HessianOperator, "matmat", lambda self, vectors: vectors.shape[1])
        method = "dense" if setting == "dense" else "lanczos"
        if quantity == "top1":
            return lambda: tl.hessian_eigenvalues(model, mse, data, k=1, which="largest", method=method).lambda_max
        if quantity == "top10":
            return lambda: (
                tl.hessian_eigenvalues(model, mse, data, k=10, which="largest", method=method)
                .eigenvalues.flip(0)
                .tolist()
            )
        if quantity == "min":
            return lambda: tl.hessian_eigenvalues(model, mse, data, k=1, which="smallest", method=method).lambda_min
        if quantity == "trace":
            m = "hutchpp" if setting.startswith("hutchpp") else "auto"
            return lambda: tl.hessian_trace(model, mse, data, method=m).value
        if quantity == "density":
            m = "dense" if setting == "dense" else "slq"

            def density():
                d = tl.spectral_density(model, mse, data, method=m)
                return d.nodes.tolist(), d.weights.tolist()

            return density

    if tool == "pyhessian":
        if quantity == "min":
            raise NotImplementedError("PyHessian has no smallest-eigenvalue method (power iteration by |λ| only)")
        from pyhessian import hessian as PyHessian

        _count_calls(sys.modules["pyhessian.hessian"], "hessian_vector_product")
        if setting == "torch.eig shim":

            def eig_shim(T, eigenvectors=True):
                values, vectors = torch.linalg.eigh(T)
                return torch.stack([values, torch.zeros_like(values)], dim=1), vectors

            torch.eig = eig_shim

        def make():
            model.zero_grad(set_to_none=True)  # its constructor accumulates into p.grad
            torch.manual_seed(0)  # it draws from the global RNG
            return PyHessian(model, mse, data=data, cuda=False)

        # "tol=T": its power iteration stopped at relative change T instead of the default 1e-3 (matched accuracy).
        tol = float(setting.split("=")[1]) if setting.startswith("tol=") else 1e-3
        if quantity == "top1":
            return lambda: float(make().eigenvalues(top_n=1, tol=tol)[0][0])
        if quantity == "top10":
            return lambda: sorted(make().eigenvalues(top_n=10, tol=tol)[0], reverse=True)
        if quantity == "trace":
            return lambda: float(statistics.mean(make().trace()))
        if quantity == "density":

            def density():
                values, weights = make().density()
                nodes = [float(v) for run in values for v in run]
                w = [float(v) / len(values) for run in weights for v in run]
                return nodes, w

            return density

    if tool == "eigenthings":
        import hessian_eigenthings as he

        _count_calls(he.HessianOperator, "matvec")

        def make():
            return he.HessianOperator(model, [data], he.supervised_loss(mse))

        # "max_iter=N reorth": its Lanczos with N iterations and reorthogonalisation, the fewest that reach
        # torch_landscape's accuracy being the matched setting.
        kwargs = (
            {"max_iter": int(setting.split("=")[1].split()[0]), "reorthogonalize": True}
            if "max_iter" in setting
            else {}
        )
        if quantity == "top1":
            if setting == "power_iteration_one":
                return lambda: float(he.power_iteration_one(make(), seed=0)[0])
            return lambda: float(he.lanczos(make(), k=1, which="LA", seed=0, **kwargs).eigenvalues[0])
        if quantity == "top10":
            return lambda: sorted(
                he.lanczos(make(), k=10, which="LA", seed=0, **kwargs).eigenvalues.tolist(), reverse=True
            )
        if quantity == "min":
            return lambda: float(he.lanczos(make(), k=1, which="SA", seed=0, **kwargs).eigenvalues[0])
        if quantity == "trace":
            return lambda: float(he.trace(make(), seed=0).estimate)
        if quantity == "density":

            def density():
                r = he.spectral_density(make(), seed=0)
                nodes, weights = r.raw_eigenvalues.flatten(), r.raw_weights.flatten()
                keep = ~torch.isnan(nodes)
                return nodes[keep].tolist(), (weights[keep] / r.raw_eigenvalues.shape[0]).tolist()

            return density

    if tool == "curvlinops":
        import numpy as np
        from curvlinops import HessianLinearOperator, hutchpp_trace, lanczos_approximate_spectrum
        from scipy.sparse.linalg import eigsh

        _count_calls(HessianLinearOperator, "_matmat", lambda self, M: M[0].shape[-1])
        loss = mse
        params = [p for p in model.parameters() if p.requires_grad]

        def make():
            return HessianLinearOperator(model, loss, params, [data])

        tol = 1e-3 if "tol=1e-3" in setting else 0.0
        if quantity == "top1":
            return lambda: float(eigsh(make().to_scipy(), k=1, which="LA", tol=tol, return_eigenvectors=False)[0])
        if quantity == "top10":
            return lambda: sorted(
                eigsh(make().to_scipy(), k=10, which="LA", tol=tol, return_eigenvectors=False).tolist(), reverse=True
            )
        if quantity == "min":
            return lambda: float(eigsh(make().to_scipy(), k=1, which="SA", tol=tol, return_eigenvectors=False)[0])
        if quantity == "trace":
            return lambda: float(hutchpp_trace(make(), 99))
        if quantity == "density":

            def density():
                grid, dens = lanczos_approximate_spectrum(make(), ncv=100)
                grid, dens = np.asarray(grid, dtype=float), np.asarray(dens, dtype=float)
                return grid.tolist(), (dens / dens.sum()).tolist()

            return density

    if tool == "backpack":
        if quantity != "trace":
            raise NotImplementedError("BackPACK has no eigen-solver or density (diagonals, KFAC, HVP helper only)")
        from backpack import backpack, extend
        from backpack.extensions import DiagHessian

        ext_model, ext_loss = extend(model), extend(nn.MSELoss())

        def trace():
            ext_model.zero_grad(set_to_none=True)
            with backpack(DiagHessian()):
                ext_loss(ext_model(x), y).backward()
            return float(sum(p.diag_h.sum() for p in ext_model.parameters()))

        return trace

    if tool == "cockpit":
        if quantity not in ("top1", "trace"):
            raise NotImplementedError("Cockpit tracks only the top eigenvalue (HessMaxEV) and the trace (HessTrace)")
        from backpack import extend
        from cockpit import Cockpit
        from cockpit.quantities import HessMaxEV, HessTrace
        from cockpit.quantities import hess_max_ev as hme
        from cockpit.utils.schedules import linear

        _count_calls(hme.HVPLinearOperator, "hessian_vector_product")
        ext_model, ext_loss = extend(model), extend(nn.MSELoss())
        optimizer = torch.optim.SGD(ext_model.parameters(), lr=0.0)
        step = [0]

        def run():
            quantity_obj = HessMaxEV(linear(1)) if quantity == "top1" else HessTrace(linear(1))
            cp = Cockpit(list(ext_model.parameters()), quantities=[quantity_obj])
            ext_model.zero_grad(set_to_none=True)
            loss = ext_loss(ext_model(x), y)
            with cp(step[0], info={"loss": loss, "batch_size": len(x), "optimizer": optimizer}):
                loss.backward(create_graph=cp.create_graph(step[0]))
            out = cp.get_output()[step[0]]
            step[0] += 1
            if quantity == "top1":
                return float(out["HessMaxEV"])
            return float(sum(float(t) for t in out["HessTrace"]))

        return run

    raise ValueError(f"unknown tool/quantity {tool}/{quantity}")


def worker(args) -> None:
    """All the given specs of one tool on one case, in this one process; one RESULT line per spec."""
    _memory_guard()
    warnings.filterwarnings("ignore")
    import torch
    from problems import get_problem, maxrss_mb, peak_rss, reset_peak_rss, rss_mb, setup_threads

    setup_threads(args.threads)
    name, act = args.case.split("/")
    problem = get_problem(name, act)
    params = list(problem.model.parameters())

    def gradient():
        return torch.autograd.grad(torch.nn.functional.mse_loss(problem.model(problem.x), problem.y), params)

    def gradient_time() -> float:
        """Median of full-batch gradients over >= 5 calls and >= ~0.1 s (the yardstick of this process)."""
        times = []
        start = time.perf_counter()
        while len(times) < 5 or (time.perf_counter() - start < 0.1 and len(times) < 200):
            t = time.perf_counter()
            gradient()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    gradient()
    for quantity, setting in json.loads(args.specs):
        result = {"tool": args.tool, "quantity": quantity, "setting": setting, "case": args.case}
        try:
            fn = build_call(args.tool, quantity, setting, problem)
        except NotImplementedError as error:
            result.update(status="n/a", error=str(error))
            print("RESULT " + json.dumps(result), flush=True)
            continue
        except Exception as error:
            result.update(status="FAIL", error=f"{type(error).__name__}: {error}".replace("\n", " ")[:300])
            print("RESULT " + json.dumps(result), flush=True)
            continue
        before = gradient_time()
        reset_peak_rss()  # the peak of this quantity, not of the previous ones in this worker
        result["rss_before_mb"] = rss_mb()
        times, counts = [], []
        try:
            with peak_rss() as memory:
                Counter.count = 0
                t = time.perf_counter()
                estimate = fn()
                elapsed = time.perf_counter() - t
            if args.warmup == 0:
                times.append(elapsed)
                counts.append(Counter.count)
            while len(times) < args.repeats and not (args.warmup == 0 and elapsed > args.budget):
                Counter.count = 0
                t = time.perf_counter()
                estimate = fn()
                times.append(time.perf_counter() - t)
                counts.append(Counter.count)
        except Exception as error:
            message = f"{type(error).__name__}: {error}".replace("\n", " ")
            if isinstance(error, MemoryError) or "alloc" in message.lower() or "memory" in message.lower():
                message = "out of memory (worker capped at 12 GB): " + message
            result.update(
                status="FAIL", error=message[:300], trace=traceback.format_exc()[-600:], maxrss_mb=maxrss_mb()
            )
            print("RESULT " + json.dumps(result), flush=True)
            continue
        after = gradient_time()
        result.update(
            status="ok",
            times=times,
            hvps=counts,
            estimate=estimate,
            grad_s=(before + after) / 2,
            growth_mb=memory["growth_mb"],
            maxrss_mb=maxrss_mb(),
        )
        print("RESULT " + json.dumps(result), flush=True)


# ==================================================================================================
# Parent: runs the workers, computes errors, writes the tables.

OUT: list[str] = []


def emit(line: str = "") -> None:
    print(line, flush=True)
    OUT.append(line)


def table(header, rows) -> None:
    emit("| " + " | ".join(header) + " |")
    emit("|" + "---|" * len(header))
    for row in rows:
        emit("| " + " | ".join(str(c) for c in row) + " |")
    emit()


def run_worker(case: str, tool: str, specs: list, args, repeats: int, warmup: int, timeout: float) -> list[dict]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--case",
        case,
        "--tool",
        tool,
        "--specs",
        json.dumps(specs),
        "--repeats",
        str(repeats),
        "--warmup",
        str(warmup),
        "--threads",
        str(args.threads),
        "--budget",
        str(args.budget),
    ]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        stdout, stderr, code = completed.stdout, completed.stderr, completed.returncode
        died = None
    except subprocess.TimeoutExpired as expired:
        stdout = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        stderr, code, died = "", None, f"timeout: the {tool} process passed {timeout:.0f} s"
    results = [json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("RESULT ")]
    done = {(r["quantity"], r["setting"]) for r in results}
    if died is None and code not in (0, None):
        tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        died = f"process died ({'signal ' + str(-code) if code < 0 else 'exit ' + str(code)}: {tail[0][:150]})"
    for quantity, setting in specs:
        if (quantity, setting) not in done:
            results.append({"quantity": quantity, "setting": setting, "status": "FAIL", "error": died or "no result"})
    return results


def errors(quantity: str, estimate, ref) -> tuple[float | None, str]:
    import torch
    from problems import wasserstein_rel

    lam_max = float(ref["top"][0])
    if quantity == "top1":
        return abs(estimate - lam_max) / abs(lam_max), ""
    if quantity == "top10":
        est = torch.tensor(estimate[:10], dtype=torch.float64)
        r = ref["top"][: len(est)]
        return float(((est - r).abs() / r.abs()).max()), ""
    if quantity == "min":
        if ref.get("bottom") is None:
            return None, "no reference"
        lam_min = float(ref["bottom"][0])
        return abs(estimate - lam_min) / abs(lam_min), f"|err|/λmax {abs(estimate - lam_min) / lam_max:.1e}"
    if quantity == "trace":
        return abs(estimate - ref["trace"]) / abs(ref["trace"]), ""
    if quantity == "density":
        if not ref.get("dense"):
            return None, "no full spectrum to compare with"
        nodes, weights = estimate
        return wasserstein_rel(nodes, weights, ref["eigenvalues"]), "W1/(λmax−λmin)"
    return None, ""


def fmt_e(x) -> str:
    return "—" if x is None else f"{x:.1e}"


def run_case(case: str, args, records: list) -> None:
    from problems import get_problem, reference

    name, act = case.split("/")
    problem = get_problem(name, act)
    ref = reference(problem, need_min=(name != "XL"), log=emit)
    big = problem.params > 20_000
    emit(f"### {problem.header()}")
    emit()
    emit(
        f"Reference: {ref['kind']}"
        + (f"; {ref['bottom_note']}" if ref.get("bottom_note") else "")
        + f". λmax={float(ref['top'][0]):.6g}, λ10={float(ref['top'][9]):.6g}, λmin="
        + (f"{float(ref['bottom'][0]):.4g}" if ref.get("bottom") is not None else "—")
        + f", trace={ref['trace']:.6g}"
    )
    emit()
    rows = []
    tools = args.tools.split(",")
    quantities = args.quantities.split(",")
    runnable: dict[str, list] = {}
    for spec in SPECS:
        tool, quantity, setting = spec
        if tool not in tools or quantity not in quantities:
            continue
        if args.quick and spec not in QUICK:
            continue
        skip = None
        if big and spec in SLOW_ON_L:
            skip = SLOW_ON_L[spec]
        if big and setting == "dense":
            skip = "dense needs P² memory and O(P³) time: not for 52k+ parameters"
        if big and quantity == "density" and not args.density_on_l:
            skip = "not run at L/XL (no reference spectrum; --density-on-l to run)"
        if big and tool in ("backpack", "cockpit") and quantity == "trace" and act == "tanh":
            skip = (
                f"not run: DiagHessian needs ≈3·n·h² floats = "
                f"{3 * problem.size.n * problem.size.h**2 * 4 / 2**30:.0f} GB for tanh "
                "(measured.md: OOM-killed at 24 GB)"
            )
        if problem.params > 200_000 and quantity in ("min", "density") and tool != "torch_landscape":
            skip = skip or "not run at XL (minutes per call)"
        if skip:
            rows.append([quantity, tool, setting, "SKIP", "", "", "", "", "", skip])
            continue
        runnable.setdefault(tool, []).append([quantity, setting])
    repeats = args.repeats_l if big else args.repeats
    warmup = 0 if big else 1
    for tool, specs in runnable.items():
        timeout = (args.timeout_l if big else args.timeout) * len(specs)
        for result in run_worker(case, tool, specs, args, repeats, warmup, timeout):
            quantity, setting = result["quantity"], result["setting"]
            record = {"case": case, "tool": tool, **result}
            if result.get("status") == "ok":
                seconds = statistics.median(result["times"])
                hvps = int(statistics.median(result["hvps"]))
                err, note = errors(quantity, result["estimate"], ref)
                record.update(seconds=seconds, hvp_count=hvps, error=err, per_grad=seconds / result["grad_s"])
                runs = len(result["times"])
                rows.append(
                    [
                        quantity,
                        tool,
                        setting,
                        f"{seconds * 1e3:.4g}",
                        f"{seconds / result['grad_s']:.1f}",
                        hvps,
                        fmt_e(err),
                        f"{result['maxrss_mb']:.0f}",
                        f"{result['growth_mb']:.0f}",
                        note + ("" if runs > 1 else ("; " if note else "") + "single run"),
                    ]
                )
            else:
                status = result.get("status", "FAIL")
                rows.append([quantity, tool, setting, status, "", "", "", "", "", result.get("error", "")[:160]])
            records.append(record)
            print(
                f"    {case} {tool:16s} {quantity:8s} {setting:30s} {rows[-1][3]:>10s} {rows[-1][6]}",
                file=sys.stderr,
                flush=True,
            )
    rows.sort(key=lambda r: QUANTITIES.index(r[0]))
    table(
        [
            "quantity",
            "tool",
            "setting",
            "time ms",
            "time / gradient",
            "HVPs",
            "rel. error",
            "process peak RSS MB",
            "RSS growth in call MB",
            "notes",
        ],
        rows,
    )


QUICK = {
    ("torch_landscape", "top1", "lanczos tol=1e-6"),
    ("torch_landscape", "top10", "lanczos tol=1e-6"),
    ("torch_landscape", "min", "lanczos tol=1e-6"),
    ("torch_landscape", "trace", "auto (exact)"),
    ("torch_landscape", "density", "slq 3x80"),
    ("pyhessian", "top1", "default"),
    ("pyhessian", "top1", "tol=1e-6"),
    ("pyhessian", "top10", "default"),
    ("pyhessian", "top10", "tol=1e-6"),
    ("pyhessian", "trace", "default"),
    ("pyhessian", "density", "default"),
    ("eigenthings", "top10", "default"),
    ("eigenthings", "min", "max_iter=100 reorth"),
    ("eigenthings", "trace", "default (hutch++ 100)"),
    ("curvlinops", "top1", "eigsh tol=1e-3"),
    ("curvlinops", "top10", "eigsh tol=1e-3"),
    ("backpack", "trace", "DiagHessian"),
    ("cockpit", "top1", "HessMaxEV (power)"),
}


# --------------------------------------------------------------------------------------------------
# Training-time overhead


def overhead_worker(args) -> None:
    """One arm of the training-overhead comparison; prints RESULT {seconds, tracked, ...}."""
    warnings.filterwarnings("ignore")
    import torch
    from problems import SIZES, make_data, make_model, setup_threads
    from torch import nn

    setup_threads(args.threads)
    size = SIZES[args.overhead_size]
    x, y = make_data(size)
    torch.manual_seed(0)
    model = make_model(size, args.overhead_act)
    steps, batch, every = args.steps, args.batch, args.every
    generator = torch.Generator().manual_seed(0)
    order = [torch.randperm(size.n, generator=generator) for _ in range(steps * batch // size.n + 1)]
    index = torch.cat(order)
    batches = [(x[index[i * batch : (i + 1) * batch]], y[index[i * batch : (i + 1) * batch]]) for i in range(steps)]
    arm = args.arm
    info: dict = {"arm": arm}
    values = []

    if arm in ("plain", "cockpit", "cockpit-idle", "ours-core"):
        loss_fn = nn.MSELoss()
        if arm.startswith("cockpit"):
            from backpack import extend
            from cockpit import Cockpit
            from cockpit.quantities import HessMaxEV, HessTrace
            from cockpit.utils.schedules import linear

            model, loss_fn = extend(model), extend(nn.MSELoss())
            schedule = linear(every) if arm == "cockpit" else (lambda step: False)
            cockpit = Cockpit(list(model.parameters()), quantities=[HessMaxEV(schedule), HessTrace(schedule)])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        if arm == "ours-core":
            import torch_landscape as tl
        warm = None
        start = time.perf_counter()
        for step, (xb, yb) in enumerate(batches):
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            if arm.startswith("cockpit"):
                with cockpit(step, info={"loss": loss, "batch_size": len(xb), "optimizer": optimizer}):
                    loss.backward(create_graph=cockpit.create_graph(step))
                if arm == "cockpit" and step % every == 0:
                    out = cockpit.get_output()[step]
                    values.append(float(out["HessMaxEV"]))
            else:
                loss.backward()
            if arm == "ours-core" and step % every == 0:
                # The monitor's core calls on the same mini-batch: λmax (warm-started block Lanczos) + trace.
                spec = tl.hessian_eigenvalues(
                    model,
                    nn.MSELoss(),
                    (xb, yb),
                    k=1,
                    which="largest",
                    method="lanczos",
                    tol=1e-3,
                    warm_start=warm,
                    return_eigenvectors=True,
                )
                warm = spec.eigenvectors
                tl.hessian_trace(model, nn.MSELoss(), (xb, yb))
                values.append(spec.lambda_max)
            optimizer.step()
        info["seconds"] = time.perf_counter() - start
    elif arm in ("lightning", "ours-monitor", "ours-monitor-f32"):
        import tempfile

        import pytorch_lightning as pl
        from pytorch_lightning.loggers import TensorBoardLogger

        class Module(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = model
                self.loss_fn = nn.MSELoss()

            def forward(self, inputs):
                return self.net(inputs)

            def training_step(self, batch_, batch_idx):
                xb, yb = batch_
                return self.loss_fn(self.net(xb), yb)

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-3)

        callbacks = []
        if arm.startswith("ours-monitor"):
            from torch_landscape.callbacks import LandscapeMonitor

            # Cockpit's schedule and quantities: every `every` steps, λmax and the trace (light evaluations:
            # λmax warm-started at tol 1e-3, exact trace; both ends of the spectrum at full evaluations,
            # which the budget schedules), on a fixed probe batch of the training batch size.
            callbacks.append(
                LandscapeMonitor(
                    every_n_steps=every,
                    quantities=["spectrum", "trace"],
                    verbose=False,
                    probe_data=(x[:batch], y[:batch]),
                    figures=False,
                    loss_fn=nn.MSELoss(),
                    dtype=torch.float32 if arm.endswith("f32") else torch.float64,
                )
            )
        directory = tempfile.mkdtemp(prefix="bench-tb-")
        trainer = pl.Trainer(
            max_steps=steps,
            callbacks=callbacks,
            logger=TensorBoardLogger(directory),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            devices=1,
            num_sanity_val_steps=0,
        )
        loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
        start = time.perf_counter()
        trainer.fit(Module(), loader)
        info["seconds"] = time.perf_counter() - start
        if callbacks:
            values = [None] * callbacks[0]._evaluations
    info["tracked"] = len(values)
    print("RESULT " + json.dumps(info), flush=True)


def monitor_available() -> tuple[str, str]:
    """Which of our monitors can be timed: ('monitor', how) or ('core', why not)."""
    probe = subprocess.run(
        [sys.executable, "-c", "from torch_landscape.callbacks import LandscapeMonitor"], capture_output=True, text=True
    )
    if probe.returncode == 0:
        return "monitor", "torch_landscape.callbacks.LandscapeMonitor in a Lightning Trainer"
    why = (probe.stderr.strip().splitlines() or ["?"])[-1]
    return "core", f"LandscapeMonitor not importable ({why[:120]}); timed the monitor's core calls instead"


def training_overhead(args) -> None:
    every, steps, batch = args.every, args.steps, args.batch
    emit(
        f"### Training-time overhead: {args.overhead_size}/{args.overhead_act}, {steps} Adam steps, "
        f"mini-batch {batch}, λmax + trace every {every} steps (median of {args.overhead_repeats} runs)"
    )
    emit()
    kind, how = monitor_available()
    arms = ["plain", "cockpit-idle", "cockpit", "ours-core"]
    if kind == "monitor":
        arms += ["lightning", "ours-monitor", "ours-monitor-f32"]
    results = {}
    for _ in range(args.overhead_repeats):
        for arm in arms:  # interleaved, so load drift hits every arm alike
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--overhead-worker",
                "--arm",
                arm,
                "--steps",
                str(steps),
                "--batch",
                str(batch),
                "--every",
                str(every),
                "--threads",
                str(args.threads),
                "--overhead-size",
                args.overhead_size,
                "--overhead-act",
                args.overhead_act,
            ]
            completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
            line = [ln for ln in completed.stdout.splitlines() if ln.startswith("RESULT ")]
            if not line:
                tail = (completed.stderr.strip().splitlines() or ["?"])[-1]
                results.setdefault(arm, []).append(("FAIL", tail[:200]))
                continue
            info = json.loads(line[-1][7:])
            results.setdefault(arm, []).append((info["seconds"], info.get("tracked")))
    tracked = steps // every + (1 if steps % every else 0)

    def median(arm):
        ok = [s for s, _ in results.get(arm, []) if s != "FAIL"]
        return statistics.median(ok) if ok else None

    rows = []
    labels = {
        "plain": "no monitor (plain loop)",
        "cockpit-idle": "Cockpit, quantities never fire (hooks only)",
        "cockpit": "Cockpit HessMaxEV + HessTrace",
        "ours-core": "torch_landscape core calls (λmax warm-started Lanczos tol 1e-3 + exact trace) in the plain loop",
        "lightning": "no monitor (Lightning Trainer + TensorBoardLogger)",
        "ours-monitor": "torch_landscape LandscapeMonitor (spectrum + trace, float64 default)",
        "ours-monitor-f32": "torch_landscape LandscapeMonitor (spectrum + trace, dtype=float32)",
    }
    for arm in arms:
        base = median("lightning" if arm in ("lightning", "ours-monitor", "ours-monitor-f32") else "plain")
        value = median(arm)
        if value is None:
            fails = [t for s, t in results.get(arm, []) if s == "FAIL"]
            rows.append([labels[arm], "FAIL", "", "", fails[0] if fails else ""])
            continue
        counts = [t for s, t in results.get(arm, []) if s != "FAIL"]
        note = f"{counts[0]} evaluations" if counts and arm.startswith("ours-monitor") else ""
        per = tracked if not (counts and arm.startswith("ours-monitor")) else max(counts[0], 1)
        extra = (value - base) / per * 1e3 if base else float("nan")
        rows.append(
            [
                labels[arm],
                f"{value:.2f}",
                f"{value / base:.2f}" if base else "",
                f"{extra:.1f}" if arm not in ("plain", "lightning", "cockpit-idle") else "—",
                note,
            ]
        )
    table(["arm", "seconds", "÷ its baseline", "extra ms per tracked step", "notes"], rows)
    emit(f"- ours: {how}.")
    emit()
    return {arm: median(arm) for arm in arms}


# --------------------------------------------------------------------------------------------------


def headline(records: list) -> None:
    """Per case and quantity: our fastest setting against every peer setting, and against the fastest peer
    that is at least about as accurate (error <= max(3 x ours, 1e-6))."""
    emit("### Headline ratios (time ÷ one gradient in each process; peer ÷ ours, > 1 means we are faster)")
    emit()
    rows = []
    cases = sorted({r["case"] for r in records}, key=lambda c: (["S", "M", "L", "XL"].index(c.split("/")[0]), c))
    for case in cases:
        for quantity in QUANTITIES:
            entries = [
                r for r in records if r["case"] == case and r["quantity"] == quantity and r.get("status") == "ok"
            ]
            ours = [r for r in entries if r["tool"] == "torch_landscape"]
            peers = [r for r in entries if r["tool"] != "torch_landscape"]
            if not ours or not peers:
                continue
            best = min(ours, key=lambda r: r["per_grad"])

            def comparable(peer, best=best):
                return best["error"] is None or peer["error"] is None or peer["error"] <= max(3 * best["error"], 1e-6)

            good = [p for p in peers if comparable(p)]
            fastest = min(peers, key=lambda r: r["per_grad"])
            fastest_good = min(good, key=lambda r: r["per_grad"]) if good else None
            pyh = [p for p in peers if p["tool"] == "pyhessian"]
            rows.append(
                [
                    case,
                    quantity,
                    f"{best['setting']}: {best['per_grad']:.1f} (err {fmt_e(best['error'])})",
                    f"{fastest['tool']} {fastest['setting']}: {fastest['per_grad'] / best['per_grad']:.2g}× "
                    f"(err {fmt_e(fastest['error'])})",
                    (
                        f"{fastest_good['tool']} {fastest_good['setting']}: "
                        f"{fastest_good['per_grad'] / best['per_grad']:.2g}× (err {fmt_e(fastest_good['error'])})"
                    )
                    if fastest_good
                    else "none",
                    (f"{pyh[0]['per_grad'] / best['per_grad']:.2g}× (err {fmt_e(pyh[0]['error'])})") if pyh else "—",
                ]
            )
    table(
        [
            "case",
            "quantity",
            "ours (time/grad)",
            "fastest peer (its time ÷ ours)",
            "fastest peer at ≈ our accuracy or better",
            "PyHessian ÷ ours",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="comma list of S,M,L,XL (default S,M,L; quick: S)")
    parser.add_argument("--acts", default="tanh,relu")
    parser.add_argument("--tools", default="torch_landscape,pyhessian,eigenthings,curvlinops,backpack,cockpit")
    parser.add_argument("--quantities", default=",".join(QUANTITIES))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats-l", type=int, default=2, help="repeats at L/XL (no warm-up)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per spec at S/M")
    parser.add_argument("--timeout-l", type=float, default=420, help="seconds per spec at L/XL")
    parser.add_argument("--budget", type=float, default=20, help="at L/XL, no second run after a run this long")
    parser.add_argument("--density-on-l", action="store_true")
    parser.add_argument(
        "--append",
        action="store_true",
        help="add to the existing results file (e.g. a later run of L), headline over all records",
    )
    parser.add_argument("--no-overhead", action="store_true")
    parser.add_argument("--overhead-only", action="store_true")
    parser.add_argument("--overhead-size", default="M")
    parser.add_argument("--overhead-act", default="tanh")
    parser.add_argument("--overhead-repeats", type=int, default=None)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--every", type=int, default=10)
    # worker modes
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overhead-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--tool", help=argparse.SUPPRESS)
    parser.add_argument("--specs", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.repeats = args.repeats or 3
        worker(args)
        return
    if args.overhead_worker:
        overhead_worker(args)
        return

    from problems import RESULTS, get_problem, reference, setup_threads

    setup_threads(args.threads)
    sizes = (args.sizes or ("S" if args.quick else "S,M,L")).split(",")
    acts = args.acts.split(",")
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.overhead_repeats = args.overhead_repeats or (1 if args.quick else 3)
    if args.quick:
        args.steps = min(args.steps, 100)

    import torch

    emit(f"## torch_landscape vs peers ({time.strftime('%Y-%m-%d %H:%M')})")
    emit()
    emit(
        f"torch {torch.__version__}, {args.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs. Each tool runs in its own process per "
        f"case; time = median of {args.repeats} repeats after one warm-up (at L/XL: {args.repeats_l} cold runs, one "
        "if the first is long); 'time / gradient' divides by the median full-batch gradient timed in the same "
        "process right before and after. 'process peak RSS' = VmHWM of the tool's process during this quantity "
        "(includes torch and the tool's imports; restarted per quantity, not inherited like ru_maxrss); "
        "'RSS growth in call' = sampled peak RSS during the first call minus RSS "
        "before it."
    )
    emit()
    versions = []
    for module in ("torch_landscape", "pyhessian", "hessian_eigenthings", "curvlinops", "backpack", "cockpit"):
        try:
            from importlib.metadata import version

            dist = {
                "torch_landscape": "torch-landscape",
                "pyhessian": "pyhessian",
                "hessian_eigenthings": "hessian-eigenthings",
                "curvlinops": "curvlinops-for-pytorch",
                "backpack": "backpack-for-pytorch",
                "cockpit": "cockpit-for-pytorch",
            }[module]
            versions.append(f"{dist} {version(dist)}")
        except Exception:
            versions.append(f"{module} (not installed)")
    emit("Versions: " + ", ".join(versions))
    emit()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("peers_quick.md" if args.quick else "peers.md")
    records_path = path.with_suffix(".json")
    previous = json.loads(records_path.read_text()) if args.append and records_path.exists() else []
    records: list = []
    if not args.overhead_only:
        for name in sizes:
            for act in acts:
                problem = get_problem(name, act)  # train + cache before the workers
                reference(problem, need_min=(name != "XL"), log=emit)
                run_case(f"{name}/{act}", args, records)
        headline(previous + records)
    if not args.no_overhead:
        training_overhead(args)
    text = "\n".join(OUT) + "\n"
    if args.append and path.exists():
        text = path.read_text() + "\n" + text
    path.write_text(text)
    records_path.write_text(json.dumps(previous + records, indent=1))
    print(f"(written to {path})")


if __name__ == "__main__":
    main()
