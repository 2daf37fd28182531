"""Lightning callbacks that log the optimization landscape while a model trains.

``HessianMonitor``, ``ConvexityMonitor``, ``RedundancyMonitor`` and ``LandscapeMonitor`` (all three in one)
need ``pytorch_lightning``; they are imported on first use, so that :mod:`torch_landscape.callbacks.tensorboard`
(used by :meth:`torch_landscape.LandscapeProbe.log` in plain PyTorch loops) works without Lightning.
"""

from typing import Any

__all__ = ["ConvexityMonitor", "HessianMonitor", "LandscapeMonitor", "RedundancyMonitor"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import monitors

        return getattr(monitors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
