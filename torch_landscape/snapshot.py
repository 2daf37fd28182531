"""LandscapeSnapshot: the landscape at one training step, the frozen result of
:meth:`~torch_landscape.probe.LandscapeProbe.snapshot`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from .convexity.one_point import OnePointConvexity
from .convexity.pl import PLEstimate
from .critical.classify import CriticalPoint
from .curvature.eigen import Spectrum
from .curvature.estimators import SpectralDensity, TraceEstimate
from .quantities import VERDICT_FIELDS, fields_of
from .redundancy import MLPRedundancy, NullityCheck, RedundancyReport
from .slices import LandscapeSlices
from .stability import StabilityReading
from .verdicts import Contradiction, Divergence


@dataclass(frozen=True)
class LandscapeSnapshot:
    """The landscape at one training step: numbers, their error bars, and the core results behind them.

    Every result field is None when its quantity was not asked for, not due at this step, or failed (then
    ``errors`` says why).

    Attributes
    ----------
    step : int
        The training step the snapshot belongs to.
    full : bool
        Whether this was a full snapshot (all quantities) or a light one.
    num_parameters : int
        P, the length of θ (0 if the objective could not be built).
    loss, grad_norm : float
        L(θ) and ‖∇L(θ)‖ on the probe data (NaN if they could not be computed).
    seconds : float
        Wall-clock time the snapshot took.
    num_hvp : int
        Hessian-vector products the snapshot used (one dense assembly of a one-hidden-layer network counts 0).
    learning_rate : float or None
        The learning rate given, for the edge-of-stability numbers.
    pl : PLEstimate or None
        PL ratio with running and window minima, L̂*, contraction, Łojasiewicz slope.
    one_point : OnePointConvexity or None
    one_point_running_min : float or None
        The smallest one-point convexity value so far.
    assignment_changes : int or None
        Neurons whose matched reference neuron changed since the previous one-point snapshot.
    spectrum : Spectrum or None
        Extreme Hessian eigenvalues with error bounds (eigenvectors dropped): both ends at full snapshots
        and on the light dense path, λ_max alone (``spectrum_ends == "largest"``) otherwise.
    spectrum_ends : str
        "both" or "largest": which ends of the spectrum ``spectrum`` holds.
    negative_count : int or None
        Eigenvalues certainly below 0 (:func:`~torch_landscape.critical.classify.certainly_negative`): all of them
        on the dense path, a lower bound (among the k smallest) on the matrix-free one; None where the
        smallest end was not computed. Unlike the Morse index it means the same away from a critical point.
    trace : TraceEstimate or None
    density : SpectralDensity or None
    critical : CriticalPoint or None
    redundancy : RedundancyReport, MLPRedundancy or None
        A RedundancyReport for a one-hidden-layer network, an MLPRedundancy (every hidden layer) for a deep
        ``nn.Sequential`` MLP.
    divergence : Divergence or None
        Whether ‖θ‖ grows while L creeps down over the last snapshots: an escape to infinity, no critical
        point at finite distance (with the neuron pairs that carry it, at full snapshots).
    nullity : NullityCheck or None
        At full snapshots with the critical-point test and redundancy on the dense path: the Hessian
        nullity the redundancies and symmetries predict against the measured one.
    contradictions : tuple of Contradiction
        Verdicts of this snapshot that contradict each other, each with the reason.
    stability : StabilityReading or None
        The optimizer's stability ratio r = sharpness / threshold with its error bound (1 = the edge of
        stability), when the snapshot was given the optimizer (:mod:`~torch_landscape.stability`); its
        preconditioner is dropped.
    slices : LandscapeSlices or None
        The loss along the top and bottom eigenvectors (and a predicted null direction), and on a plane
        toward the reference (:func:`~torch_landscape.slices.landscape_slices`), vectors dropped.
    errors : tuple of str
        One line per diagnostic that failed at this step.
    """

    step: int
    num_parameters: int
    loss: float
    grad_norm: float
    seconds: float
    full: bool = True
    num_hvp: int = 0
    learning_rate: float | None = None
    pl: PLEstimate | None = None
    one_point: OnePointConvexity | None = None
    one_point_running_min: float | None = None
    assignment_changes: int | None = None
    spectrum: Spectrum | None = None
    spectrum_ends: str = "both"
    negative_count: int | None = None
    trace: TraceEstimate | None = None
    density: SpectralDensity | None = None
    critical: CriticalPoint | None = None
    redundancy: RedundancyReport | MLPRedundancy | None = None
    divergence: Divergence | None = None
    nullity: NullityCheck | None = None
    contradictions: tuple[Contradiction, ...] = ()
    slices: LandscapeSlices | None = None
    stability: StabilityReading | None = None
    errors: tuple[str, ...] = ()


def completed(light: LandscapeSnapshot, full: LandscapeSnapshot, quantities: Iterable[str]) -> LandscapeSnapshot:
    """``light`` completed by ``full``, a full evaluation of ``quantities`` at the same step: every field those
    quantities own (:func:`~torch_landscape.quantities.fields_of`) and the verdicts come from ``full``; the
    other fields keep their light values; time, products and errors add up."""
    if light.step != full.step:
        raise ValueError(f"a snapshot of step {full.step} cannot complete one of step {light.step}.")
    taken = fields_of(quantities) + VERDICT_FIELDS
    return dataclasses.replace(
        light,
        full=True,
        seconds=light.seconds + full.seconds,
        num_hvp=light.num_hvp + full.num_hvp,
        errors=light.errors + full.errors,
        **{name: getattr(full, name) for name in taken},
    )
