#!/usr/bin/env python
"""Benchmark of torch_landscape's Hessian engine (issue 2).

For the shallow regression nets of benchmarks/problems.py (S ≈ 200, M ≈ 3 300, L ≈ 52 000,
XL ≈ 805 000 parameters; tanh and ReLU; trained 300 Adam steps) it prints:

1. the cost of one full-batch gradient, of building the gradient graph (the operator's set-up), of one
   HVP (``HessianOperator.matvec``) and, per vector, of a 16-vector ``matmat``;
2. top-10 and bottom-10 eigenvalues (block Lanczos, tol 1e-6 of max|λ|), the trace and the spectral
   density, each end to end (a fresh call from the model), as a multiple of one HVP measured in the same
   run, with HVP counts, the error against float64 ground truth (problems.reference) and the growth of
   the resident memory during the call;
3. the exact path (S, M): structured assembly of the Hessian versus LAPACK ``eigvalsh`` on it, and versus
   a generic chunked-HVP assembly;
4. sweeps: dense assembly + eigh versus Lanczos (k = 5 at both ends, tol 1e-6) over P, for the shallow
   family (structured assembly) and for a two-hidden-layer family (generic assembly) — what sets
   ``DENSE_THRESHOLD``; and the Lanczos block size (1, 2, 4, 8) for cold starts.

The machine is shared and noisy: every ratio is taken against HVP timings made right before and after
the measured call, times are medians of repeats, and nothing is asserted.

Usage::

    python benchmarks/hessian_engine.py                  # S, M, L (both activations) + sweeps
    python benchmarks/hessian_engine.py --quick          # S, M, fewer repeats, small sweeps (make bench)
    python benchmarks/hessian_engine.py --sizes XL --acts tanh --no-sweeps   # XL once (minutes)
"""

from __future__ import annotations

import os

# Under CPU contention (other processes on the 2 cores) OpenMP's default spin-waiting makes 2-thread
# torch runs 10-40x slower and erratic; passive waiting keeps them close to the uncontended speed.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from problems import (  # noqa: E402
    RESULTS,
    get_problem,
    maxrss_mb,
    median_time,
    peak_rss,
    reference,
    rel_err_sorted,
    setup_threads,
    wasserstein_rel,
)

from torch_landscape import HessianOperator, hessian_eigenvalues, hessian_trace, spectral_density  # noqa: E402
from torch_landscape import eigen as eigen_module  # noqa: E402
from torch_landscape.curvature.structured import structured_hessian  # noqa: E402

LOSS = nn.MSELoss()
OUT: list[str] = []


def emit(line: str = "") -> None:
    print(line, flush=True)
    OUT.append(line)


def table(header: list[str], rows: list[list]) -> None:
    emit("| " + " | ".join(header) + " |")
    emit("|" + "---|" * len(header))
    for row in rows:
        emit("| " + " | ".join(str(c) for c in row) + " |")
    emit()


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_e(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.1e}"


class HvpClock:
    """Median HVP time of one operator, re-measured around every quantity (the load drifts)."""

    def __init__(self, problem, reps: int) -> None:
        self.op = HessianOperator(problem.model, LOSS, (problem.x, problem.y))
        self.v = torch.randn(problem.params, generator=torch.Generator().manual_seed(1))
        self.reps = reps
        self.op.matvec(self.v)

    def now(self) -> float:
        times = []
        for _ in range(self.reps):
            t = time.perf_counter()
            self.op.matvec(self.v)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    def measure(self, fn, repeats: int, warmup: int):
        """(median s, median HVP s around it, result, peak-RSS growth MB of the first call)."""
        before = self.now()
        with peak_rss() as memory:
            t = time.perf_counter()
            result = fn()
            first = time.perf_counter() - t
        times = [first] if warmup == 0 else []  # without warm-up the (memory-sampled) first call counts
        while len(times) < repeats:
            t = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t)
        after = self.now()
        return statistics.median(times), (before + after) / 2, result, memory["growth_mb"]


def timed_first(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


# --------------------------------------------------------------------------------------------------


def costs(problem, reps: int) -> dict:
    model, x, y = problem.model, problem.x, problem.y
    params = list(model.parameters())
    v = torch.randn(problem.params)

    def gradient():
        return torch.autograd.grad(LOSS(model(x), y), params)

    def setup():
        op = HessianOperator(model, LOSS, (x, y))
        op.matvec(v)  # builds whatever the products need (structured terms or a gradient graph)
        return op

    grad_s, _ = median_time(gradient, reps)
    setup_s, op = median_time(setup, max(3, reps // 2))
    hvp_s, _ = median_time(lambda: op.matvec(v), reps)
    block = torch.randn(problem.params, 16)
    mm_s, _ = median_time(lambda: op.matmat(block), max(3, reps // 4))
    # For comparison: a plain reverse-over-reverse HVP through a retained gradient graph (what PyHessian
    # and Cockpit do), timed here independently of the library.
    with torch.enable_grad():
        graph = torch.autograd.grad(LOSS(model(x), y), params, create_graph=True)
    pieces = [t.reshape(p.shape) for t, p in zip(torch.split(v, [p.numel() for p in params]), params, strict=True)]
    autograd_s, _ = median_time(lambda: torch.autograd.grad(graph, params, pieces, retain_graph=True), reps)
    return {"grad": grad_s, "setup": setup_s, "hvp": hvp_s, "mm16": mm_s / 16, "autograd_hvp": autograd_s}


def quantity_rows(problem, ref, args, clock: HvpClock) -> list[list]:
    data = (problem.x, problem.y)
    big = problem.params > 20_000
    huge = problem.params > 200_000
    reps = 1 if huge else (2 if big else args.repeats)
    warm = 0 if big else 1
    lam_max = float(ref["top"][0])
    rows = []

    def add(name, setting, fn, evaluate, repeats=reps, warmup=warm):
        try:
            seconds, hvp_s, result, growth = clock.measure(fn, repeats, warmup)
        except Exception as error:  # a benchmark reports failures, it does not stop
            rows.append([name, setting, "FAIL", "", "", "", "", "", f"{type(error).__name__}: {error}"[:120]])
            return None
        hvps, err, note = evaluate(result)
        rows.append(
            [name, setting, fmt_ms(seconds), f"{seconds / hvp_s:.1f}", hvps, err, f"{growth:.0f}", repeats, note]
        )
        return result

    def eig_eval(end):
        def evaluate(spec):
            vals = spec.eigenvalues.flip(0) if end == "top" else spec.eigenvalues
            reference_values = ref.get(end)
            bound = float(spec.error_bounds.max()) / lam_max
            note = f"max bound/λmax {bound:.1e}; converged={spec.converged}"
            if reference_values is None:
                return spec.num_hvp, "—", note + "; no reference"
            err = rel_err_sorted(vals, reference_values)
            scale_err = float((vals[:10] - reference_values[:10]).abs().max()) / lam_max
            return spec.num_hvp, fmt_e(err), note + f"; max|err|/λmax {scale_err:.1e}"

        return evaluate

    top_fn = partial(
        hessian_eigenvalues, problem.model, LOSS, data, k=10, which="largest", method="lanczos", tol=args.tol
    )
    wanted = set(args.quantities.split(","))
    if args.quick and problem.params > 1000:
        wanted &= {"top", "trace"}  # quick: the long ones (bottom-10, densities) only on S
    if "top" in wanted:
        add("top-10", f"lanczos tol={args.tol:g}", top_fn, eig_eval("top"))
    if not (huge or args.no_bottom) and "bottom" in wanted:
        bottom_fn = partial(
            hessian_eigenvalues, problem.model, LOSS, data, k=10, which="smallest", method="lanczos", tol=args.tol
        )
        add(
            "bottom-10",
            f"lanczos tol={args.tol:g}",
            bottom_fn,
            eig_eval("bottom"),
            repeats=1 if big else reps,
            warmup=0 if big else warm,
        )

    def trace_eval(result):
        err = abs(result.value - ref["trace"]) / abs(ref["trace"])
        note = "exact" if result.standard_error == 0 else f"±{result.standard_error:.2g} (1 s.e.)"
        return result.num_hvp, fmt_e(err), f"{result.method}; {note}"

    if "trace" in wanted:
        add("trace", "auto", lambda: hessian_trace(problem.model, LOSS, data), trace_eval)
    if not huge and "trace" in wanted:
        add("trace", "hutchpp, 99 HVPs", lambda: hessian_trace(problem.model, LOSS, data, method="hutchpp"), trace_eval)

    def density_eval(result):
        if ref.get("dense"):
            w1 = wasserstein_rel(result.nodes, result.weights, ref["eigenvalues"])
            return result.num_hvp, fmt_e(w1), f"{result.method}; error = W1/(λmax−λmin)"
        return result.num_hvp, "—", f"{result.method}; no full spectrum to compare with"

    if not huge and "density" in wanted:
        add("density", "slq 3×80", lambda: spectral_density(problem.model, LOSS, data, method="slq"), density_eval)
        if ref.get("dense"):
            add("density", "dense", lambda: spectral_density(problem.model, LOSS, data, method="dense"), density_eval)
            add(
                "top+bottom-10",
                "dense (assemble + eigh)",
                lambda: hessian_eigenvalues(problem.model, LOSS, data, k=10, which="both", method="dense"),
                lambda s: (
                    s.num_hvp,
                    fmt_e(
                        max(
                            rel_err_sorted(s.eigenvalues[-10:].flip(0), ref["top"]),
                            float((s.eigenvalues[:10] - ref["bottom"]).abs().max()) / lam_max,
                        )
                    ),
                    "err: top rel, bottom /λmax",
                ),
            )
    return rows


def exact_path(problem, ref, reps: int, generic: bool) -> list[list]:
    """Structured assembly vs LAPACK eigvalsh (and a generic chunked assembly) on the same Hessian."""
    rows = []
    for dtype in (torch.float32, torch.float64):
        op = HessianOperator(problem.model, LOSS, (problem.x, problem.y), dtype=dtype)
        with peak_rss() as memory:
            dense = structured_hessian(op.objective)
        assemble_s, dense = median_time(partial(structured_hessian, op.objective), reps, warmup=0)
        eigvalsh_s, values = median_time(partial(torch.linalg.eigvalsh, dense), reps, warmup=0)
        eigh_s, _ = median_time(partial(torch.linalg.eigh, dense), reps, warmup=0)
        note = ""
        if ref.get("dense"):
            truth = ref["eigenvalues"]
            note = f"eigvalsh max err/λmax {float((values.double().cpu() - truth).abs().max() / truth.abs().max()):.1e}"
        rows.append(
            [
                str(dtype).replace("torch.", ""),
                "structured",
                fmt_ms(assemble_s),
                fmt_ms(eigvalsh_s),
                fmt_ms(eigh_s),
                f"{assemble_s / eigvalsh_s:.2f}",
                f"{memory['growth_mb']:.0f}",
                note,
            ]
        )
    if generic:
        op = HessianOperator(problem.model, LOSS, (problem.x, problem.y))
        eye = torch.eye(problem.params)

        def chunked():
            return torch.cat([op.matmat(eye[:, i : i + 256]) for i in range(0, problem.params, 256)], dim=1)

        with peak_rss() as memory:
            seconds, dense = timed_first(chunked)
        eigvalsh_s, _ = median_time(lambda: torch.linalg.eigvalsh(dense), 1, warmup=0)
        rows.append(
            [
                "float32",
                "generic: P HVPs in 256-vector matmat blocks",
                fmt_ms(seconds),
                fmt_ms(eigvalsh_s),
                "",
                f"{seconds / eigvalsh_s:.2f}",
                f"{memory['growth_mb']:.0f}",
                "single run",
            ]
        )
    return rows


# --------------------------------------------------------------------------------------------------
# Sweeps


class TwoLayer(nn.Module):
    """A non-shallow net (two hidden layers): the dense path falls back to chunked HVP assembly."""

    def __init__(self, d_in: int, h: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh())
        self.head = nn.Linear(h, 1)

    def forward(self, x):
        return self.head(self.body(x))


def _trained(model: nn.Module, x, y, steps: int = 300) -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        LOSS(model(x), y).backward()
        optimizer.step()
    return model


def sweep_data(d_in: int, n: int):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, d_in, generator=generator)
    a = torch.randn(d_in, 8, generator=generator) / math.sqrt(d_in)
    b = torch.randn(8, 1, generator=generator)
    return x, torch.tanh(x @ a) @ b + 0.1 * torch.randn(n, 1, generator=generator)


def threshold_sweep(widths_shallow, widths_generic, n: int, reps: int, tol: float) -> None:
    emit(
        "### What sets DENSE_THRESHOLD: dense (assemble + eigh) vs Lanczos, k = 5 at both ends, tol "
        f"{tol:g} (n = {n}, float32, trained 300 Adam steps)"
    )
    emit()
    rows = []
    crossings = {}
    d_in = 20
    x, y = sweep_data(d_in, n)
    families = [
        ("shallow (structured assembly)", w, lambda w: nn.Sequential(nn.Linear(d_in, w), nn.Tanh(), nn.Linear(w, 1)))
        for w in widths_shallow
    ]
    families += [("two hidden layers (generic assembly)", w, lambda w: TwoLayer(d_in, w)) for w in widths_generic]
    previous = {}
    for family, width, build in families:
        torch.manual_seed(0)
        model = _trained(build(width), x, y)
        size = sum(p.numel() for p in model.parameters())
        dense_s, dense = median_time(
            partial(hessian_eigenvalues, model, LOSS, (x, y), k=5, which="both", method="dense"), reps, warmup=1
        )
        lanczos_s, spec = median_time(
            partial(hessian_eigenvalues, model, LOSS, (x, y), k=5, which="both", method="lanczos", tol=tol),
            reps,
            warmup=1,
        )
        err = float((spec.eigenvalues - dense.eigenvalues).abs().max() / dense.eigenvalues.abs().max())
        ratio = lanczos_s / dense_s
        rows.append([family, size, fmt_ms(dense_s), fmt_ms(lanczos_s), spec.num_hvp, f"{ratio:.2f}", fmt_e(err)])
        if family in previous:
            p0, r0 = previous[family]
            if (r0 - 1) * (ratio - 1) <= 0 and family not in crossings:  # log-log interpolation of the crossing
                t = math.log(r0) / (math.log(r0) - math.log(ratio)) if r0 != ratio else 0.0
                crossings[family] = math.exp(math.log(p0) + t * (math.log(size) - math.log(p0)))
        previous[family] = (size, ratio)
    table(["family", "P", "dense ms", "lanczos ms", "lanczos HVPs", "lanczos/dense", "max|Δλ|/λmax"], rows)
    for family in dict.fromkeys(r[0] for r in rows):
        if family in crossings:
            emit(f"- {family}: dense and Lanczos cost the same at P ≈ {crossings[family]:.0f}")
        else:
            last = [r for r in rows if r[0] == family][-1]
            emit(f"- {family}: no crossing in the range (lanczos/dense = {last[5]} at P = {last[1]})")
    emit(f"- current DENSE_THRESHOLD = {eigen_module.DENSE_THRESHOLD}")
    emit()


def block_sweep(problems_and_refs, blocks, reps: int, tol: float, skip_bottom_above: int) -> None:
    emit(f"### Lanczos block size, cold start, tol {tol:g} (median of {reps}; time as a multiple of one HVP)")
    emit()
    rows = []
    best = {}
    for problem, ref, clock in problems_and_refs:
        for which in ("largest", "smallest"):
            if which == "smallest" and problem.params > skip_bottom_above:
                continue
            end = "top" if which == "largest" else "bottom"
            for block in blocks:
                fn = partial(
                    hessian_eigenvalues,
                    problem.model,
                    LOSS,
                    (problem.x, problem.y),
                    k=10,
                    which=which,
                    method="lanczos",
                    tol=tol,
                    block_size=block,
                )
                r = reps if problem.params < 20_000 else 1
                seconds, hvp_s, spec, _ = clock.measure(fn, r, warmup=1 if problem.params < 20_000 else 0)
                vals = spec.eigenvalues.flip(0) if which == "largest" else spec.eigenvalues
                err = (
                    float((vals[:10] - ref[end][:10]).abs().max() / ref["top"][0]) if ref.get(end) is not None else None
                )
                ratio = seconds / hvp_s
                rows.append(
                    [
                        problem.label,
                        f"{end}-10",
                        block,
                        spec.num_hvp,
                        fmt_ms(seconds),
                        f"{ratio:.1f}",
                        fmt_e(err),
                        spec.converged,
                    ]
                )
                best.setdefault((problem.label, end), []).append((ratio, block))
    table(["case", "quantity", "block", "HVPs", "ms", "time/HVP", "max|err|/λmax", "converged"], rows)
    wins = {}
    for key, entries in best.items():
        ratio, block = min(entries)
        wins[block] = wins.get(block, 0) + 1
        ratios = ", ".join(f"b={b}: {r:.0f}" for r, b in sorted(entries, key=lambda e: e[1]))
        emit(f"- {key[0]} {key[1]}-10: fastest block {block} ({ratios})")
    emit(f"- fastest block size by case count: {dict(sorted(wins.items()))}")
    emit()


# --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="comma list of S,M,L,XL (default S,M,L; quick: S,M)")
    parser.add_argument("--acts", default="tanh,relu")
    parser.add_argument("--quick", action="store_true", help="S and M, few repeats, small sweeps")
    parser.add_argument("--repeats", type=int, default=None, help="repeats for S/M timings (default 5; quick 3)")
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--output",
        default=None,
        help="file name under benchmarks/results/ (default hessian_engine.md; quick: hessian_engine_quick.md)",
    )
    parser.add_argument("--no-bottom", action="store_true", help="skip bottom-10 (it is the long one on L)")
    parser.add_argument(
        "--quantities",
        default="top,bottom,trace,density",
        help="which of top,bottom,trace,density to time (default all)",
    )
    parser.add_argument("--no-sweeps", action="store_true")
    parser.add_argument("--sweeps-only", action="store_true")
    parser.add_argument("--block-sizes", default="1,2,4,8")
    parser.add_argument("--block-sweep-sizes", default=None, help="sizes for the block sweep (default: S,M; +L top)")
    args = parser.parse_args()
    setup_threads(args.threads)
    sizes = (args.sizes or ("S,M" if args.quick else "S,M,L")).split(",")
    acts = args.acts.split(",")
    args.repeats = args.repeats or (3 if args.quick else 5)

    emit(f"## torch_landscape Hessian engine benchmark ({time.strftime('%Y-%m-%d %H:%M')})")
    emit()
    emit(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        "times are medians; 'time/HVP' divides by the median HVP time measured right before and after."
    )
    emit()

    loaded = {}
    if not args.sweeps_only:
        for name in sizes:
            for act in acts:
                problem = get_problem(name, act)
                emit(f"### {problem.header()}")
                emit()
                ref = reference(problem, need_min=(name != "XL"), log=emit)
                reps = args.repeats * 4 if problem.params < 20_000 else (7 if problem.params < 200_000 else 3)
                c = costs(problem, reps)
                emit(
                    f"Reference: {ref['kind']}"
                    + (f"; {ref['bottom_note']}" if ref.get("bottom_note") else "")
                    + f". λmax={float(ref['top'][0]):.6g}, λ10={float(ref['top'][9]):.6g}, λmin="
                    + (f"{float(ref['bottom'][0]):.4g}" if ref.get("bottom") is not None else "—")
                    + f", trace={ref['trace']:.6g}"
                )
                emit()
                table(
                    [
                        "gradient ms",
                        "operator set-up + first HVP ms",
                        "HVP (matvec) ms",
                        "16-vector matmat, per vector ms",
                        "HVP/gradient",
                        "matmat16 per vector/HVP",
                        "retained-graph autograd HVP ms (PyHessian-style, for comparison)",
                    ],
                    [
                        [
                            fmt_ms(c["grad"]),
                            fmt_ms(c["setup"]),
                            fmt_ms(c["hvp"]),
                            fmt_ms(c["mm16"]),
                            f"{c['hvp'] / c['grad']:.2f}",
                            f"{c['mm16'] / c['hvp']:.2f}",
                            f"{fmt_ms(c['autograd_hvp'])} ({c['autograd_hvp'] / c['grad']:.2f}× gradient)",
                        ]
                    ],
                )
                clock = HvpClock(problem, 9 if problem.params < 200_000 else 3)
                rows = quantity_rows(problem, ref, args, clock)
                table(
                    [
                        "quantity",
                        "setting",
                        "time ms",
                        "time/HVP",
                        "HVPs",
                        "rel. error",
                        "RSS growth MB",
                        "repeats",
                        "notes",
                    ],
                    rows,
                )
                if problem.params <= 4000:
                    emit("Exact path: structured assembly vs LAPACK on the assembled Hessian")
                    emit()
                    table(
                        [
                            "dtype",
                            "assembly",
                            "assemble ms",
                            "eigvalsh ms",
                            "eigh ms",
                            "assemble/eigvalsh",
                            "RSS growth MB",
                            "notes",
                        ],
                        exact_path(
                            problem, ref, 3 if args.quick else 5, generic=(not args.quick and problem.params > 1000)
                        ),
                    )
                emit(f"Process peak RSS so far (ru_maxrss): {maxrss_mb():.0f} MB")
                emit()
                loaded[(name, act)] = (problem, ref, clock)

    if not args.no_sweeps:
        if args.quick:
            threshold_sweep([16, 48], [16], n=1024, reps=2, tol=args.tol)
        else:
            threshold_sweep([8, 16, 32, 48, 64, 96, 128], [12, 24, 32, 48], n=2048, reps=3, tol=args.tol)
        sweep_sizes = (args.block_sweep_sizes or ("S" if args.quick else "S,M,L")).split(",")
        cases = []
        for name in sweep_sizes:
            for act in acts:
                if (name, act) in loaded:
                    cases.append(loaded[(name, act)])
                else:
                    problem = get_problem(name, act)
                    ref = reference(problem, need_min=(name != "XL"), log=emit)
                    cases.append((problem, ref, HvpClock(problem, 9 if problem.params < 200_000 else 3)))
        blocks = [int(b) for b in args.block_sizes.split(",")]
        block_sweep(cases, blocks, reps=3 if args.quick else 5, tol=args.tol, skip_bottom_above=20_000)

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (args.output or ("hessian_engine_quick.md" if args.quick else "hessian_engine.md"))
    path.write_text("\n".join(OUT) + "\n")
    print(f"(written to {path})")


if __name__ == "__main__":
    main()
