"""The settings of a landscape probe, validated once and shared by LandscapeProbe and the monitors.

A :class:`ProbeSettings` is built from the user's arguments, checked in ``__post_init__`` and frozen: every
later reader (the probe, the monitors, the schedule) can rely on its types and ranges without checking
again. Bad values raise the library's ``TypeError``/``ValueError`` naming the argument and the fix; the
Lightning monitors re-raise the same text as ``MisconfigurationException``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from .quantities import check_quantities

#: The default relative accuracy of λ_max at light evaluations: its error bound is at most light_tol·|λ_max|.
#: Three digits draw the sharpness curve, and a warm start from the previous eigenvector reaches them in a few
#: products.
LIGHT_TOL = 1e-3

#: The most samples a probe set drawn from the training data may hold: every Hessian-vector product reads
#: them all, and collating them must fit in memory (a lazy dataset of 10⁷ samples would be read whole).
MAX_PROBE_SIZE = 1 << 16

METHODS = ("auto", "dense", "lanczos")
ON_ERROR = ("warn", "raise")
OnError = Literal["warn", "raise"]


def check_positive_int(name: str, value: object) -> int:
    """``value`` if it is a positive ``int`` (not a bool), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_dtype(dtype: object, name: str = "dtype") -> torch.dtype:
    """``dtype`` if it is a floating ``torch.dtype``; a TypeError/ValueError naming the fix otherwise."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{name} must be a torch.dtype such as torch.float64, got {dtype!r} ({type(dtype).__name__}).")
    if not dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating dtype such as torch.float64, got {dtype}.")
    return dtype


def check_params(params: object) -> tuple[str, ...] | None:
    """``params`` as a tuple of parameter names, or None; a string is refused (it would be split into letters)."""
    if params is None:
        return None
    if isinstance(params, str):
        raise TypeError(
            f"params must be a list of parameter names, got the string {params!r}; pass params=[{params!r}]."
        )
    if not isinstance(params, Iterable) or not all(isinstance(name, str) for name in params):
        raise TypeError(
            "params must be a list of parameter names as in model.named_parameters(), e.g. ['0.weight'], "
            f"got {params!r}."
        )
    return tuple(params)


def check_loss_star(loss_star: object) -> float | None:
    """``loss_star`` as a finite float, or None (then L* is estimated online)."""
    if loss_star is None:
        return None
    if isinstance(loss_star, bool) or not isinstance(loss_star, (int, float)):
        raise TypeError(
            f"loss_star must be a number (the infimum L* of the loss, e.g. 0.0) or None, got {loss_star!r} "
            f"({type(loss_star).__name__})."
        )
    if not math.isfinite(loss_star):
        raise ValueError(f"loss_star must be finite (or None to estimate it), got {loss_star!r}.")
    return float(loss_star)


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be {' or '.join(map(repr, choices))}, got {value!r}.")


@dataclass(frozen=True)
class ProbeSettings:
    """What a probe computes and how, validated once at construction.

    Attributes
    ----------
    quantities : tuple of str or None
        Names from :data:`~torch_landscape.quantities.QUANTITIES` in table order; None: every one that applies.
    loss_star : float or None
        L*, the infimum of the loss, if known; None: estimated online.
    k : int
        Eigenvalues from each end of the spectrum.
    method : str
        Eigen-solver: "auto", "dense" or "lanczos".
    params : tuple of str or None
        Names of the parameters that make up θ; None: every trainable one.
    dtype : torch.dtype
        Floating precision of the diagnostics.
    on_error : str
        "warn" (skip a failing diagnostic, warn once) or "raise".
    probe_size, seed : int
        Size of the probe set a monitor draws from the training data (at most MAX_PROBE_SIZE), and the seed
        of that draw.
    light_tol : float
        Relative accuracy of λ_max at light evaluations: the eigen-solver stops when λ_max's error bound
        (|λ̂ − λ| ≤ bound) is at most light_tol·|λ̂|; 0 < light_tol < 1.
    """

    # Any iterable of names is accepted and normalised to a tuple in __post_init__.
    quantities: Iterable[str] | None = None
    loss_star: float | None = None
    k: int = 5
    method: Literal["auto", "dense", "lanczos"] = "auto"
    params: Sequence[str] | None = None
    dtype: torch.dtype = torch.float64
    on_error: OnError = "warn"
    probe_size: int = 2048
    seed: int = 0
    light_tol: float = LIGHT_TOL

    def __post_init__(self) -> None:
        # Normalised copies are written back so that equal settings compare (and hash) equal.
        if self.quantities is not None:
            object.__setattr__(self, "quantities", check_quantities(self.quantities))
        object.__setattr__(self, "loss_star", check_loss_star(self.loss_star))
        check_positive_int("k", self.k)
        _check_choice("method", self.method, METHODS)
        object.__setattr__(self, "params", check_params(self.params))
        check_dtype(self.dtype)
        _check_choice("on_error", self.on_error, ON_ERROR)
        check_positive_int("probe_size", self.probe_size)
        if self.probe_size > MAX_PROBE_SIZE:
            raise ValueError(
                f"probe_size={self.probe_size} is more samples than an evaluation can afford to read (every product "
                f"costs a pass over them); at most {MAX_PROBE_SIZE}: pass probe_size<={MAX_PROBE_SIZE}, or probe_data= "
                "with the samples to probe."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an integer, got {self.seed!r} ({type(self.seed).__name__}).")
        light_tol = self.light_tol
        if isinstance(light_tol, bool) or not isinstance(light_tol, (int, float)) or not 0 < light_tol < 1:
            raise ValueError(f"light_tol must be a relative tolerance in (0, 1) such as 1e-3, got {light_tol!r}.")
        object.__setattr__(self, "light_tol", float(light_tol))
