"""A split neuron: a degenerate non-global minimum escaped along a flat, then descending path (Petzka–Sminchisescu).

The case is built, not searched for (docs/theory.md §1.7, §6 E6). A 2-neuron tanh network θ̄ in d = 2 is fixed, and
the labels are y = f_θ̄(X) − r with a residual r chosen orthogonal to the columns of the small network's
Jacobian J (so ∇L(θ̄) = (2/n) Jᵀr = 0: θ̄ is critical by construction) and such that the "inner Hessian"

    B = (2 a_j / n) Σ_x r_x σ″(z_j(x)) x̃ x̃ᵀ                         (x̃ = (x, 1), z_j = w_j·x + b_j)

of neuron j is positive definite; r is scaled down until the small network's Hessian is positive definite too,
so θ̄ is a strict local minimum with L = mean(r²) > 0. Splitting neuron j into two copies with output weights
λ a_j and (1 − λ) a_j leaves the function unchanged for every λ, a line of critical points whose Hessian is
congruent to H_small ⊕ λ(1 − λ) B ⊕ [0] (Sylvester's law of inertia). Hence:

- λ = 0.5: index 0, nullity 1 — a degenerate minimum (the flat line is the null direction);
- λ = 1.5: λ(1 − λ) B ≺ 0 adds d + 1 = 3 negative eigenvalues — a strict saddle of index d + 1.

Walking the line from 0.5 to 1.5 keeps the loss constant; stepping down the most negative eigenvector and then
then gradient descent (a monotone line search) lowers it further: PS's "non-attracting region of
local minima, escapable by a non-increasing path". The lower loss reached proves the minimum is not global.

Run:  python examples/split_neuron_escape.py [--quick]       (TensorBoard: runs/split_neuron_escape)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, jacrev

try:
    from examples._common import Report, fmt, parse_quick, writer
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import Report, fmt, parse_quick, writer

import itertools

from torch_landscape import (
    HessianOperator,
    classify_critical_point,
    hessian_eigenvalues,
    landscape_slices,
    neuron_redundancy,
)
from torch_landscape.writers.figures import slice_1d_figure, to_image

NAME = "split_neuron_escape"
D, SPLIT = 2, 0  # input dimension; the neuron that is split


def small_network() -> nn.Sequential:
    """The fixed 2-neuron tanh network θ̄ (biases and output bias)."""
    net = nn.Sequential(nn.Linear(D, 2), nn.Tanh(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.2, -0.4], [0.3, 0.9]]))
        net[0].bias.copy_(torch.tensor([0.2, -0.5]))
        net[2].weight.copy_(torch.tensor([[1.5, -0.8]]))
        net[2].bias.fill_(0.1)
    return net


def tanh_second(z: torch.Tensor) -> torch.Tensor:
    """σ″(z) for σ = tanh: −2 tanh(z)(1 − tanh²(z))."""
    t = torch.tanh(z)
    return -2 * t * (1 - t * t)


def inner_hessian(small: nn.Sequential, x: torch.Tensor, r: torch.Tensor, j: int = SPLIT) -> torch.Tensor:
    """B = (2 a_j / n) Σ_x r_x σ″(z_j(x)) x̃ x̃ᵀ, the (d+1)×(d+1) block that λ(1 − λ) multiplies."""
    xt = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    z = x @ small[0].weight[j].detach() + small[0].bias[j].detach()
    a = float(small[2].weight[0, j].detach())
    return (2 * a / len(x)) * (xt * (r * tanh_second(z)).unsqueeze(1)).T @ xt


def build_case(n: int, seed: int = 0) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(θ̄, X, y, B): labels y = f_θ̄(X) − r with Jᵀr = 0, B(r) = β·I (β > 0), H_small ≻ 0.

    r is the least-norm combination of an orthonormal basis N of ker Jᵀ with B(Nc) = I, then scaled to
    RMS 0.2 (B scales with it and stays definite); a smaller residual keeps the Jᵀr = 0 point a minimum of the
    small network, because H_small = (2/n)(JᵀJ + Σ r_x ∇²f(x)) → (2/n)JᵀJ ≻ 0 as r → 0.
    """
    small = small_network()
    x = torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    params = {k: v.detach() for k, v in small.named_parameters()}
    jac = jacrev(lambda p: functional_call(small, p, (x,)).squeeze(1))(params)
    J = torch.cat([jac[k].reshape(n, -1) for k in params], dim=1)  # n × P_small
    u, s, _ = torch.linalg.svd(J, full_matrices=True)
    null = u[:, int((s > 1e-10 * s[0]).sum()) :]  # orthonormal basis of ker Jᵀ
    # B(N c) is linear in c: one row per entry of the symmetric (d+1)×(d+1) block.
    rows = torch.stack([inner_hessian(small, x, null[:, i]) for i in range(null.shape[1])], dim=-1)
    upper = torch.triu_indices(D + 1, D + 1)
    target = torch.eye(D + 1, dtype=torch.float64)[upper[0], upper[1]]
    c = torch.linalg.lstsq(rows[upper[0], upper[1]], target.unsqueeze(1)).solution.squeeze(1)
    r = null @ c
    r = 0.2 * r / r.pow(2).mean().sqrt()
    with torch.no_grad():
        y = small(x) - r.unsqueeze(1)
    return small, x, y, inner_hessian(small, x, r)


def split(small: nn.Sequential, lam: float, j: int = SPLIT) -> nn.Sequential:
    """The 3-neuron network with neuron j of ``small`` split into copies with output weights λa_j, (1 − λ)a_j."""
    W, b = small[0].weight.detach(), small[0].bias.detach()
    a, c = small[2].weight.detach(), small[2].bias.detach()
    m = W.shape[0]
    big = nn.Sequential(nn.Linear(D, m + 1), nn.Tanh(), nn.Linear(m + 1, 1)).double()
    with torch.no_grad():
        big[0].weight.copy_(torch.cat([W, W[j : j + 1]]))
        big[0].bias.copy_(torch.cat([b, b[j : j + 1]]))
        a_new = torch.cat([a, a[:, j : j + 1]], dim=1).clone()
        a_new[0, j], a_new[0, m] = lam * a[0, j], (1 - lam) * a[0, j]
        big[2].weight.copy_(a_new)
        big[2].bias.copy_(c)
    return big


def inertia(values: torch.Tensor, rtol: float = 1e-8) -> tuple[int, int]:
    """(#negative, #zero) of a symmetric matrix's eigenvalues, zero meaning |λ| ≤ rtol·max|λ|."""
    band = rtol * float(values.abs().max())
    return int((values < -band).sum()), int((values.abs() <= band).sum())


def escape(net: nn.Sequential, x, y, report, tb, quick: bool) -> dict:
    """Down the most negative eigenvector, then monotone gradient descent; every loss along the way recorded."""
    loss_fn = nn.MSELoss()
    spectrum = hessian_eigenvalues(net, loss_fn, (x, y), k=1, which="smallest", return_eigenvectors=True)
    lam_neg, v = float(spectrum.eigenvalues[0]), spectrum.eigenvectors[:, 0].to(torch.float64)
    names = [name for name, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]

    def loss(vector: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, torch.split(vector, [s.numel() for s in shapes]), strict=True))
        params = {k: p.view(s) for (k, p), s in zip(params.items(), shapes, strict=True)}
        return loss_fn(functional_call(net, params, (x,)), y)

    theta = nn.utils.parameters_to_vector(net.parameters()).detach()
    base = float(loss(theta))
    # An eigenvector's sign is arbitrary; the cubic term makes the loss fall further on one side.
    if float(loss(theta + 0.025 * v)) > float(loss(theta - 0.025 * v)):
        v = -v
    # Along the eigenvector, while the loss still falls (the quadratic model ½λ_neg t² holds for small t only).
    t_grid = [0.025 * i for i in range(1, 41)]
    ts, path = [0.0], [base]
    for t in t_grid:
        value = float(loss(theta + t * v))
        if value >= path[-1]:
            break
        ts.append(t)
        path.append(value)
    small_t = 1e-3
    ratio = (float(loss(theta + small_t * v)) - base) / (0.5 * lam_neg * small_t**2)
    report.line(
        f"most negative eigenvalue λ_neg = {fmt(lam_neg)} (± {fmt(float(spectrum.error_bounds[0]), 1)}); "
        f"at t = {small_t:g}: L − L(end) = {ratio:.4f} × ½λ_neg t²; the loss falls along the eigenvector "
        f"up to t = {ts[-1]:.3f}"
    )
    # Then gradient descent from there; a step is taken only under the Armijo condition (halving the step
    # until it holds, doubling it after each success), so the descent is monotone by the method. The test
    # checks the recorded losses, flat line and eigenvector segment included.
    point, step_size, steps = theta + ts[-1] * v, 1.0, 300 if quick else 3000
    for _ in range(steps):
        gradient = torch.func.grad(loss)(point)
        while step_size > 1e-12:
            trial = point - step_size * gradient
            value = float(loss(trial))
            if value <= path[-1] - 1e-4 * step_size * float(gradient @ gradient):
                point, step_size = trial, 2 * step_size
                path.append(value)
                break
            step_size /= 2
    for step, value in enumerate(path):
        tb.add_scalar("escape/loss", value, step)
        tb.add_scalar("escape/loss_minus_start", value - base, step)
    rise = max(b - a for a, b in itertools.pairwise(path))
    report.line(
        f"after {len(path) - len(ts)} descent steps: L = {path[-1]:.6e} (L(start) = {base:.6e}, "
        f"{(base - path[-1]) / base:.1%} lower); largest change between consecutive points {rise:+.1e}"
    )
    return {
        "lambda_neg": lam_neg,
        "lambda_neg_bound": float(spectrum.error_bounds[0]),
        "quadratic_ratio": ratio,
        "escape_path": path,
        "escape_rise": rise,
        "escape_final": path[-1],
    }


def draw_the_line(small: nn.Sequential, x, y, tb) -> None:
    """The picture of the phenomenon (a TensorBoard image): at λ = 0.5 the loss is flat along the split line
    (output weight moved from the copy back to neuron SPLIT) and curves up along the top eigenvector. (The
    way out at λ = 1.5 falls by ½λ_neg s² ≈ 1e-7 at s = 0.025, too little to see beside the cubic terms on a
    plot: the escape path is logged as the scalars escape/loss instead.)"""
    net = split(small, 0.5)
    operator = HessianOperator(net, nn.MSELoss(), (x, y), dtype=torch.float64)
    flat = torch.zeros(operator.shape[0], dtype=torch.float64)  # layout [W (3×D), b (3), a (3), c]
    flat[3 * D + 3 + SPLIT], flat[3 * D + 3 + 2] = 1.0, -1.0  # e_{a_SPLIT} − e_{a_copy}
    lines = landscape_slices(operator, null_vector=flat, budget=60).lines
    tb.add_image("landscape/figures/loss_slices_split_line", to_image(slice_1d_figure(lines, 0)), 0, dataformats="HWC")


def line_ends(seed: int, n: int = 60) -> dict:
    """The construction with the residual drawn from ``seed``: θ̄ and both ends of the split line, classified
    (the robustness of the story over seeds; ``main`` uses seed 0)."""
    small, x, y, _ = build_case(n, seed)
    loss_fn = nn.MSELoss()
    points = [classify_critical_point(net, loss_fn, (x, y)) for net in (small, split(small, 0.5), split(small, 1.5))]
    return {
        "seed": seed,
        "small": points[0].kind,
        "start": (points[1].kind, points[1].morse_index, points[1].nullity),
        "end": (points[2].kind, points[2].morse_index, points[2].nullity),
        "holds": points[0].kind == "nondegenerate_min"
        and (points[1].kind, points[1].morse_index, points[1].nullity) == ("degenerate", 0, 1)
        and (points[2].kind, points[2].morse_index) == ("strict_saddle", D + 1),
    }


def main(quick: bool = False, logdir: str | Path = "runs") -> dict:
    report = Report(
        "Split-neuron escape: a degenerate non-global minimum on a flat line of critical points",
        "Petzka & Sminchisescu, JMLR 22 (2021), arXiv:1812.06486; Fukumizu–Amari; docs/theory.md §1.7, §6 E6",
    )
    loss_fn = nn.MSELoss()
    n = 60
    small, x, y, B = build_case(n)
    small_cp = classify_critical_point(small, loss_fn, (x, y))
    B_eigs = torch.linalg.eigvalsh(B)
    report.section(f"the constructed small network (2 tanh neurons, d = {D}, n = {n}): residual ⟂ tangent space")
    report.line(
        f"L(θ̄) = {fmt(small_cp.loss)}, ‖∇L‖ = {fmt(small_cp.grad_norm)}; {small_cp.kind}, index "
        f"{small_cp.morse_index}, λ_min = {fmt(small_cp.lambda_min)}"
    )
    report.line(f"inner Hessian B of neuron {SPLIT}: eigenvalues {[f'{v:.3e}' for v in B_eigs.tolist()]} (definite)")
    report.check(
        "θ̄ is a strict local minimum of the small network (nondegenerate_min)",
        small_cp.kind == "nondegenerate_min",
        f"{small_cp.kind}",
    )

    tb = writer(logdir, NAME)
    report.section(f"the split line: neuron {SPLIT} copied with output weights λ·a and (1 − λ)·a")
    lambdas = torch.linspace(0.5, 1.5, 5 if quick else 21, dtype=torch.float64).tolist()
    line = []
    for step, lam in enumerate(lambdas):
        net = split(small, lam)
        cp = classify_critical_point(net, loss_fn, (x, y), profiles=lam == 0.5)
        dup = neuron_redundancy(net, (x, y)).scores.get("duplicate", float("nan"))
        b_neg, b_zero = inertia(lam * (1 - lam) * B_eigs) if lam != 1.0 else (0, D + 1)
        pred_index, pred_null = small_cp.morse_index + b_neg, b_zero + 1
        line.append(
            {
                "lam": lam,
                "loss": cp.loss,
                "kind": cp.kind,
                "degenerate_kind": cp.degenerate_kind,
                "index": cp.morse_index,
                "nullity": cp.nullity,
                "predicted_index": pred_index,
                "predicted_nullity": pred_null,
                "lambda_min": cp.lambda_min,
                "duplicate_score": dup,
            }
        )
        for key in ("loss", "index", "nullity", "lambda_min", "duplicate_score"):
            tb.add_scalar(f"path/{key}", line[-1][key], step)
        tb.add_scalar("path/lambda", lam, step)
        report.line(
            f"λ = {lam:4.2f}: L − L(0.5) = {cp.loss - line[0]['loss']:+.1e}, {cp.kind}"
            f"{' (' + cp.degenerate_kind + ')' if cp.degenerate_kind else ''}, index {cp.morse_index} "
            f"(inertia rule {pred_index}), nullity {cp.nullity} (rule {pred_null}), duplicate score {fmt(dup)}"
        )
    start, end = line[0], line[-1]
    spread = max(abs(p["loss"] - start["loss"]) for p in line)
    report.check(
        "λ = 0.5: degenerate minimum (index 0, nullity 1: the flat line), as the inertia rule says",
        start["kind"] == "degenerate" and (start["index"], start["nullity"]) == (0, 1),
        f"{start['kind']} ({start['degenerate_kind']}), index {start['index']}, nullity {start['nullity']}",
    )
    report.check(
        f"λ = 1.5: strict saddle of index d + 1 = {D + 1}",
        end["kind"] == "strict_saddle" and end["index"] == D + 1,
        f"{end['kind']}, index {end['index']}, nullity {end['nullity']}",
    )
    report.check(
        "the loss is constant along the line (to rounding)", spread < 1e-14, f"max |L(λ) − L(0.5)| = {spread:.1e}"
    )

    draw_the_line(small, x, y, tb)
    report.section("escape from λ = 1.5: down the most negative eigenvector, then gradient descent")
    esc = escape(split(small, 1.5), x, y, report, tb, quick)
    tb.close()
    report.check(
        "the escape path never rises and ends below L(θ̄): the minimum at λ = 0.5 is not global",
        esc["escape_rise"] <= 0 and esc["escape_final"] < start["loss"],
        f"largest rise {esc['escape_rise']:+.1e}, L: {fmt(start['loss'])} → {fmt(esc['escape_final'])}",
    )
    return report.finish(
        Path(logdir) / NAME,
        results=dict(
            d=D,
            n=n,
            small_kind=small_cp.kind,
            small_loss=small_cp.loss,
            small_grad_norm=small_cp.grad_norm,
            B_eigenvalues=B_eigs.tolist(),
            line=line,
            line_spread=spread,
            **esc,
        ),
    )


if __name__ == "__main__":
    quick, logdir = parse_quick(__doc__.splitlines()[0])
    main(quick=quick, logdir=logdir or "runs")
