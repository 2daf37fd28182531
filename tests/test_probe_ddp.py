"""LandscapeProbe(process_group=...) with 2 gloo processes (torch.multiprocessing.spawn): every rank holds
half of the probe set, and the snapshot of each rank equals the single-process one to 1e-10 in float64.

Why 1e-10: the ranks sum the same per-sample terms as one process, only grouped differently (two partial
sums added at the all-reduce), so L, ∇L and every Hessian entry differ by a few ulps (≈1e-16 relative);
eigenvalues, trace and the critical-point verdict computed from them move by the same order times their
condition (small here). The two ranks must agree exactly: they receive the same all-reduced numbers and run
the same iterations, which is what keeps their collectives matched.
"""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from helpers import dense_truth, regression_data, shallow
from torch_landscape import LandscapeProbe
from torch_landscape.objective import Objective

WORLD = 2
SAMPLES = 37  # odd: the shards are 18 and 19 samples


def _deep() -> nn.Sequential:
    """Not a one-hidden-layer network: products, dense assembly and trace go through autograd."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)).double()


def _mean_loss(module: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return nn.functional.mse_loss(module(batch[0]), batch[1])


def _cases() -> dict:
    """name → (model, probe arguments); built the same way in every process."""
    x, y = regression_data(SAMPLES, 3)
    batches = [(x[:12], y[:12]), (x[12:25], y[12:25]), (x[25:], y[25:])]
    common = {"quantities": ["pl", "spectrum", "trace", "density", "critical"], "k": 3}
    return {
        "shallow_dense": (
            shallow(3, 5, nn.Tanh()),
            {
                "loss_fn": nn.MSELoss(),
                "data": (x, y),
                "reference": shallow(3, 5, nn.Tanh(), seed=5),
                "quantities": common["quantities"] + ["redundancy", "one_point"],
            },
        ),
        "deep_lanczos": (_deep(), {"loss_fn": nn.MSELoss(), "data": batches, "method": "lanczos", **common}),
        "deep_dense": (_deep(), {"loss_fn": nn.MSELoss(), "data": batches, "method": "dense", **common}),
        "custom_loss": (shallow(3, 4, nn.Tanh(), seed=2), {"loss": _mean_loss, "data": batches, **common}),
    }


def _summary(probe: LandscapeProbe, snapshot) -> dict:
    critical = snapshot.critical
    return {
        "errors": snapshot.errors,
        "loss": snapshot.loss,
        "grad_norm": snapshot.grad_norm,
        "eigenvalues": snapshot.spectrum.eigenvalues,
        "error_bounds": snapshot.spectrum.error_bounds,
        "trace": (snapshot.trace.value, snapshot.trace.method, snapshot.trace.standard_error),
        "density": snapshot.density.nodes if snapshot.density is not None else None,
        "critical": None
        if critical is None
        else (critical.kind, critical.morse_index, critical.nullity, critical.critical),
        "redundancy": None
        if snapshot.redundancy is None
        else (
            snapshot.redundancy.effective_width,
            snapshot.redundancy.effective_width_on_data,
            [(finding.rule, finding.neurons) for finding in snapshot.redundancy.findings],
            snapshot.redundancy.score,
        ),
        "one_point": None if snapshot.one_point is None else snapshot.one_point.value,
        "shard": sum(x.shape[0] for x, _ in probe.objective().batches),
    }


def _worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for name, (model, arguments) in _cases().items():
            probe = LandscapeProbe(model, on_error="raise", process_group=dist.group.WORLD, **arguments)
            results[name] = _summary(probe, probe.snapshot(0, full=True))
        x, y = regression_data(SAMPLES, 3)
        y_nan = y.clone()
        y_nan[-1] = math.nan  # in rank one's shard only
        cases = (
            ("slices", (x, y), ["slices"]),
            ("one_sample", (x[:1], y[:1]), None),
            ("nan", (x, y_nan), None),
            ("own_shard", (x[rank::WORLD], y[rank::WORLD]), None),
        )
        for name, data, quantities in cases:
            try:
                LandscapeProbe(
                    shallow(3, 2, nn.Tanh()), nn.MSELoss(), data, quantities=quantities, process_group=dist.group.WORLD
                )
            except (ValueError, FloatingPointError) as error:
                results[name] = f"{type(error).__name__}: {error}"
        torch.save(results, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "store"), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


def _single(name: str) -> dict:
    model, arguments = _cases()[name]
    probe = LandscapeProbe(model, on_error="raise", **arguments)
    return _summary(probe, probe.snapshot(0, full=True))


@pytest.mark.parametrize("name", list(_cases()))
def test_two_ranks_equal_one_process(ranks, name):
    zero, one = ranks[0][name], ranks[1][name]
    single = _single(name)
    assert zero["errors"] == one["errors"] == single["errors"] == ()
    # Each rank evaluated its own half of the samples (or of the batches, with loss=), not all of them.
    # (with loss=, whole batches: rank 0 the first and third, 12 + 12 samples, rank 1 the second, 13).
    assert (zero["shard"], one["shard"]) == ((18, 19) if name != "custom_loss" else (24, 13))
    # Lockstep: the ranks saw the same reduced numbers, so they return identical results.
    for key in set(zero) - {"shard"}:
        if isinstance(zero[key], torch.Tensor):
            assert torch.equal(zero[key], one[key]), key
        else:
            assert zero[key] == one[key], key
    assert zero["loss"] == pytest.approx(single["loss"], rel=1e-10, abs=1e-12)
    assert zero["grad_norm"] == pytest.approx(single["grad_norm"], rel=1e-10, abs=1e-12)
    torch.testing.assert_close(zero["eigenvalues"], single["eigenvalues"], rtol=1e-10, atol=1e-10)
    assert zero["trace"][0] == pytest.approx(single["trace"][0], rel=1e-10, abs=1e-10)
    assert zero["trace"][1] == single["trace"][1]
    assert zero["critical"] == single["critical"]
    if single["redundancy"] is not None:  # computed on every rank from the whole probe inputs
        assert zero["redundancy"][:3] == single["redundancy"][:3]
        assert zero["redundancy"][3] == pytest.approx(single["redundancy"][3], rel=1e-10, abs=1e-12)
    assert (zero["one_point"] is None) == (single["one_point"] is None) == (name != "shallow_dense")
    if single["one_point"] is not None:
        assert zero["one_point"] == pytest.approx(single["one_point"], rel=1e-10, abs=1e-12)
    if single["density"] is not None:
        torch.testing.assert_close(zero["density"], single["density"], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["shallow_dense", "deep_lanczos", "deep_dense"])
def test_two_ranks_match_the_dense_float64_hessian(ranks, name):
    """Independent ground truth: the jacrev(jacrev) Hessian of the whole probe set in one process."""
    model, arguments = _cases()[name]
    data = arguments["data"]
    hessian = dense_truth(model, nn.MSELoss(), data)
    truth = torch.linalg.eigvalsh(hessian)
    loss, gradient = Objective(model, nn.MSELoss(), data, dtype=torch.float64).loss_and_gradient()
    result = ranks[0][name]
    k = result["eigenvalues"].numel() // 2
    expected = torch.cat([truth[:k], truth[-k:]])
    # Each eigenvalue within its reported error bound, plus rounding of the dense truth (1e-12 of ‖H‖).
    slack = result["error_bounds"] + 1e-12 * float(truth.abs().max())
    assert torch.all((result["eigenvalues"] - expected).abs() <= slack)
    value, method, std_error = result["trace"]
    if method == "hutchpp":  # the Lanczos path estimates it (matrix-free): within 4 of its standard errors
        assert abs(value - float(torch.trace(hessian))) <= 4 * std_error
    else:
        assert value == pytest.approx(float(torch.trace(hessian)), rel=1e-10)
    assert result["loss"] == pytest.approx(float(loss), rel=1e-12)
    assert result["grad_norm"] == pytest.approx(float(torch.linalg.vector_norm(gradient)), rel=1e-10)
    assert not math.isnan(result["grad_norm"])


def test_what_a_process_group_cannot_do_is_refused_by_name(ranks):
    for rank in ranks:
        assert "slices" in rank["slices"] and "process_group" in rank["slices"]
        assert "1 samples, fewer than the 2 ranks" in rank["one_sample"]
    # A bad sample in one rank's shard fails every rank at construction (none is left waiting).
    assert ranks[1]["nan"].startswith("NonFiniteDataError: sample 18 of batch 0 of this rank's shard of data")
    assert ranks[0]["nan"].startswith("ValueError: another rank of process_group refused its shard")
    # Each rank given only its own samples (as a DistributedSampler would) instead of the whole set.
    for rank in ranks:
        assert "the same whole probe set as data on every rank" in rank["own_shard"]


def test_process_group_without_initialised_distributed_is_refused():
    x, y = regression_data(8, 3)
    with pytest.raises(ValueError, match="init_process_group"):
        LandscapeProbe(shallow(3, 2, nn.Tanh()), nn.MSELoss(), (x, y), process_group=object())
