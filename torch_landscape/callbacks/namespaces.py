"""Lightning under either name: ``pytorch_lightning`` and ``lightning.pytorch`` (what ``import lightning as L``
gives). They are two packages with distinct classes, so the monitors subclass the ``Callback`` of every
installed one, raise an error that is the ``MisconfigurationException`` of every installed one, and
recognise the ``TensorBoardLogger`` of either.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, cast


def _installed() -> list[ModuleType]:
    found = []
    for name in ("pytorch_lightning", "lightning.pytorch"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


NAMESPACES = _installed()
if not NAMESPACES:
    raise ModuleNotFoundError(
        "torch_landscape.callbacks needs Lightning: pip install 'torch-landscape[lightning]' (or pip install "
        "lightning). Without Lightning, use torch_landscape.monitoring.MonitoringSession in your own loop."
    )

#: The ``Callback`` class of every installed namespace: a monitor is a callback to either Trainer.
CALLBACK_BASES: tuple[type, ...] = tuple(namespace.callbacks.Callback for namespace in NAMESPACES)

_MISCONFIGURATION: tuple[type[Exception], ...] = tuple(
    importlib.import_module(f"{namespace.__name__}.utilities.exceptions").MisconfigurationException
    for namespace in NAMESPACES
)

_TENSORBOARD_LOGGERS: tuple[type, ...] = tuple(namespace.loggers.TensorBoardLogger for namespace in NAMESPACES)


class LandscapeConfigError(*_MISCONFIGURATION):  # type: ignore[misc]
    """A monitor's argument, model, loss or data that cannot serve, named with its fix. It is the
    ``MisconfigurationException`` of every installed Lightning namespace, so either ``except`` catches it."""


def is_tensorboard(logger: Any) -> bool:
    """Whether ``logger`` is a ``TensorBoardLogger`` of either namespace."""
    return isinstance(logger, _TENSORBOARD_LOGGERS)


def console(trainer: Any) -> Callable[[str], None]:
    """Lightning's rank-zero info log of the namespace ``trainer`` comes from (its console lines)."""
    module = type(trainer).__module__.split(".trainer")[0]
    namespace = next((n.__name__ for n in NAMESPACES if n.__name__ == module), NAMESPACES[0].__name__)
    return cast(Callable[[str], None], importlib.import_module(f"{namespace}.utilities.rank_zero").rank_zero_info)
