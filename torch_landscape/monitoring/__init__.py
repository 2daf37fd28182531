"""Monitoring without a framework: the overhead budget."""

from .budget import OverheadBudget

__all__ = ["OverheadBudget"]
