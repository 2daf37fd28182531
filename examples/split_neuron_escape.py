"""A split neuron: a degenerate minimum escaped along a flat, then descending path (Petzka–Sminchisescu; E6).

A 2-neuron tanh network (d = 1) is fitted (float64 L-BFGS) to data from a 3-neuron teacher, so it sits at a minimum
with non-zero residual. Splitting its neuron j into two copies with the same input weights and output
weights λ·a_j and (1 − λ)·a_j gives a 3-neuron network with the same function for every λ: a line of
critical points (theory.md §1.7). By the inertia rule the points with λ ∈ (0, 1) and those with λ ∉ [0, 1]
have opposite "inner Hessian" blocks λ(1 − λ)B: on one side a degenerate minimum, on the other a strict
saddle of index d + 1. Walking the flat line from one side to the other at constant loss and then down the
most negative eigenvector is PS's "non-attracting region of minima, escapable by a non-increasing path".

Run:  python examples/split_neuron_escape.py [--quick]       (TensorBoard: runs/split_neuron_escape)
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

try:
    from examples._common import Report, fmt, lbfgs, parse_quick, shallow, writer
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import Report, fmt, lbfgs, parse_quick, shallow, writer

from torch_landscape import classify_critical_point, hessian_eigenvalues, neuron_redundancy

NAME = "split_neuron_escape"


def split(small: nn.Sequential, j: int, lam: float) -> nn.Sequential:
    """The (m+1)-neuron network with neuron j of ``small`` split into copies weighted λ and 1 − λ."""
    W, b = small[0].weight.detach(), small[0].bias.detach()
    a, c = small[2].weight.detach(), small[2].bias.detach()
    m, d = W.shape
    big = nn.Sequential(nn.Linear(d, m + 1), nn.Tanh(), nn.Linear(m + 1, 1)).double()
    with torch.no_grad():
        big[0].weight.copy_(torch.cat([W, W[j:j + 1]]))
        big[0].bias.copy_(torch.cat([b, b[j:j + 1]]))
        a_new = torch.cat([a, a[:, j:j + 1]], dim=1).clone()
        a_new[0, j], a_new[0, m] = lam * a[0, j], (1 - lam) * a[0, j]
        big[2].weight.copy_(a_new)
        big[2].bias.copy_(c)
    return big


def main(quick: bool = False, logdir: str | Path = "runs") -> dict:
    report = Report("Split-neuron escape: flat line of critical points, then negative curvature",
                    "Petzka & Sminchisescu, JMLR 22 (2021), arXiv:1812.06486; Fukumizu–Amari; theory.md §1.7, §6 E6")
    d, n = 1, (100 if quick else 300)
    loss_fn = nn.MSELoss()
    choice, tried, last = None, [], None
    # B's sign pattern depends on the residual, so it is a property of the data set: try a few teacher seeds and
    # report every one (theory.md §1.7: an indefinite B makes every λ ∉ {0, 1} a saddle, no minimum on the line).
    for data_seed in range(3 if quick else 6):
        generator = torch.Generator().manual_seed(data_seed)
        teacher = shallow(d, 3, nn.Tanh(), generator=generator, scale=1.5)
        x = torch.randn(n, d, generator=generator, dtype=torch.float64)
        y = teacher(x).detach()
        # 1. A strict minimum of the small (2-neuron) network: the first of a few L-BFGS runs that is one.
        small = small_cp = None
        for attempt in range(3):
            candidate = shallow(d, 2, nn.Tanh(), generator=torch.Generator().manual_seed(attempt))
            lbfgs(candidate, x, y, max_iter=600 if quick else 1500, gtol=1e-12)
            cp = classify_critical_point(candidate, loss_fn, (x, y))
            if cp.kind == "nondegenerate_min":
                small, small_cp = candidate, cp
                if last is None or cp.loss > last[3]:  # fallback: the largest residual (largest B)
                    last = (small, x, y, cp.loss)
                break
        if small is None:
            tried.append(f"data seed {data_seed}: no nondegenerate minimum of the 2-neuron net found")
            continue
        # 2. Which neuron and which side of the line is the minimum: Morse index 0 at λ = 0.5 or at 1.5.
        for j in range(2):
            inside = classify_critical_point(split(small, j, 0.5), loss_fn, (x, y))
            outside = classify_critical_point(split(small, j, 1.5), loss_fn, (x, y))
            tried.append(f"data seed {data_seed}, small net L = {fmt(small_cp.loss)} ({small_cp.kind}), split neuron "
                         f"{j}: λ = 0.5 → {inside.kind} (index {inside.morse_index}), λ = 1.5 → {outside.kind} "
                         f"(index {outside.morse_index})")
            if {inside.morse_index, outside.morse_index} == {0, d + 1}:
                choice = (j, 0.5, 1.5) if inside.morse_index == 0 else (j, 1.5, 0.5)
                break
        if choice is not None:
            break
    report.section("searching for a split whose inner Hessian B is definite (2-neuron tanh net, 3-neuron teacher)")
    for line in tried:
        report.line(line)
    if choice is None:
        report.line("no definite B found: every split point tried is a saddle on both sides (B indefinite), so the "
                    "line holds no minimum here; PS's non-attracting minima need a definite B (theory.md §1.7). "
                    "The flat line and the negative-curvature escape are shown on the split with the largest residual.")
        small, x, y, _ = last
        j, start, end = 0, 0.5, 1.5
    else:
        j, start, end = choice

    # 3. The flat line from `start` to `end`: loss, Morse index, duplicate score; logged to TensorBoard.
    report.section(f"walking the flat line λ = {start} → {end} (neuron {j} split)")
    tb = writer(logdir, NAME)
    points = 5 if quick else 21
    lambdas = torch.linspace(start, end, points, dtype=torch.float64).tolist()
    losses, indices, dup_scores = [], [], []
    for step, lam in enumerate(lambdas):
        net = split(small, j, lam)
        cp = classify_critical_point(net, loss_fn, (x, y))
        red = neuron_redundancy(net, (x, y))
        losses.append(cp.loss)
        indices.append(cp.morse_index)
        dup_scores.append(red.scores.get("duplicate", float("nan")))
        tb.add_scalar("path/loss", cp.loss, step)
        tb.add_scalar("path/loss_minus_start", cp.loss - losses[0], step)
        tb.add_scalar("path/morse_index", cp.morse_index, step)
        tb.add_scalar("path/nullity", cp.nullity, step)
        tb.add_scalar("path/lambda_min", cp.lambda_min, step)
        tb.add_scalar("path/duplicate_score", dup_scores[-1], step)
        tb.add_scalar("path/lambda", lam, step)
        if step in (0, points - 1) or not quick:
            report.line(f"λ = {lam:5.2f}: L − L(start) = {cp.loss - losses[0]:+.1e}, {cp.kind}, index "
                        f"{cp.morse_index}, nullity {cp.nullity}, λ_min = {fmt(cp.lambda_min)}, duplicate score "
                        f"{fmt(dup_scores[-1])}")
    spread = max(abs(v - losses[0]) for v in losses)
    report.check("the loss is constant along the line (to ~1e-15)", spread < 1e-12,
                 f"max |L(λ) − L(start)| = {spread:.1e}")
    if choice is not None:
        report.check(f"start λ = {start} is a degenerate minimum (index 0), end λ = {end} a strict saddle of index "
                     f"d+1 = {d + 1}", indices[0] == 0 and indices[-1] == d + 1, f"index {indices[0]} → {indices[-1]}")
    else:
        report.check("inertia rule with indefinite B: index(start) + index(end) = d + 1 (both saddles)",
                     indices[0] + indices[-1] == d + 1 and min(indices[0], indices[-1]) > 0, f"index {indices[0]} → {indices[-1]}")
    report.check("the duplicate score is 0 along the whole line", max(dup_scores) == 0.0,
                 f"max duplicate score {max(dup_scores):.1e}")

    # 4. Descend along the most negative eigenvector at the end of the line.
    report.section("descending along the most negative eigenvector")
    net = split(small, j, end)
    spectrum = hessian_eigenvalues(net, loss_fn, (x, y), k=1, which="smallest", return_eigenvectors=True)
    lam_neg, v = float(spectrum.eigenvalues[0]), spectrum.eigenvectors[:, 0].to(torch.float64)
    theta = torch.nn.utils.parameters_to_vector(net.parameters()).detach()  # θ in the library's flat layout
    base = losses[-1]
    ts = [0.0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1] if quick else [0.0, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2]
    descent = []
    for step, t in enumerate(ts):
        moved = copy.deepcopy(net)
        torch.nn.utils.vector_to_parameters(theta + t * v, moved.parameters())
        with torch.no_grad():
            value = float(loss_fn(moved(x), y))
        descent.append(value - base)
        tb.add_scalar("escape/loss", value, step)
        tb.add_scalar("escape/loss_drop", value - base, step)
        tb.add_scalar("escape/quadratic_prediction", 0.5 * lam_neg * t * t, step)
        report.line(f"t = {t:7.0e}: L − L(end) = {value - base:+.3e}   (½ λ_neg t² = {0.5 * lam_neg * t * t:+.3e})")
    tb.close()
    # The quadratic model holds for small t only (cubic terms take over once |λ_neg| t² ~ t³): check t ≤ 1e-2.
    near = [v for t, v in zip(ts, descent) if t <= 1e-2]
    monotone = all(b <= a + 1e-15 for a, b in zip(near, near[1:]))
    small_t = descent[1] / (0.5 * lam_neg * ts[1] ** 2) if lam_neg < 0 else float("nan")
    report.check("the loss decreases monotonically (t ≤ 1e-2), ≈ ½|λ_neg|t² for small t",
                 lam_neg < 0 and monotone and near[-1] < 0 and abs(small_t - 1) < 0.1,
                 f"λ_neg = {fmt(lam_neg)}, drop at t = 1e-2: {near[-1]:+.2e}, ratio to ½λt² at t = {ts[1]}: {small_t:.3f}")
    out = report.finish(Path(logdir) / NAME)
    out.update(found_split=choice is not None, line_spread=spread, start_index=indices[0], end_index=indices[-1],
               max_duplicate_score=max(dup_scores), lambda_neg=lam_neg, final_drop=near[-1], d=d)
    return out


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
