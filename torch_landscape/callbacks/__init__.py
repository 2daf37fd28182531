"""Lightning callbacks that log the optimization landscape while a model trains: ``HessianMonitor``,
``ConvexityMonitor``, ``RedundancyMonitor`` and ``LandscapeMonitor`` (all three in one). Lightning only:
the numbers come from :mod:`torch_landscape.probe`, the TensorBoard views from :mod:`torch_landscape.writers`."""

from .monitors import ConvexityMonitor, HessianMonitor, LandscapeMonitor, RedundancyMonitor

__all__ = ["ConvexityMonitor", "HessianMonitor", "LandscapeMonitor", "RedundancyMonitor"]
