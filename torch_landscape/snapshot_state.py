"""Snapshots to and from plain state: what ``torch.load(..., weights_only=True)`` reads back.

A checkpoint of a monitoring session carries its history, and a weights-only load refuses arbitrary
classes. :func:`snapshot_to_state` writes a :class:`~torch_landscape.snapshot.LandscapeSnapshot` as dicts
with str keys, lists, tuples, str, int, float, bool, None and tensors; each result dataclass becomes
``{"__dataclass__": "module:QualName", "fields": {...}}``. :func:`snapshot_from_state` rebuilds it, and
constructs only dataclasses defined in ``torch_landscape``: a state naming any other class is refused.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import numpy as np
import torch

from .snapshot import LandscapeSnapshot

#: The layout written by :func:`snapshot_to_state`; a state of another version is refused.
STATE_VERSION = 1
_CLASS, _FIELDS = "__dataclass__", "fields"
_PACKAGE = "torch_landscape"
_PLAIN = (type(None), bool, int, float, str)


class _Unstorable(TypeError):
    """A value a weights-only state cannot hold (a module, an arbitrary object)."""


def snapshot_to_state(snapshot: LandscapeSnapshot) -> dict[str, Any]:
    """``snapshot`` as plain state that ``torch.save`` writes and ``torch.load(weights_only=True)`` reads.

    Every result field is kept with its values and tensors (the tensors themselves, not copies); numpy
    scalars become Python numbers. Fields excluded from comparison (``compare=False``) that hold a module
    (the analysed network a :class:`~torch_landscape.redundancy.RedundancyReport` keeps to rebuild its
    merged model) are stored as None: a restored report has every number, ``similarity_matrix()``
    included, but no ``merged_model()``.

    Returns
    -------
    dict
        ``{"version": STATE_VERSION, "snapshot": ...}``; read back with :func:`snapshot_from_state`.

    Raises
    ------
    TypeError
        If ``snapshot`` is not a LandscapeSnapshot, or a compared field holds a value a weights-only state
        cannot (named by its path in the snapshot).
    """
    if not isinstance(snapshot, LandscapeSnapshot):
        raise TypeError(f"snapshot must be a LandscapeSnapshot, got {type(snapshot).__name__}.")
    return {"version": STATE_VERSION, "snapshot": _encode(snapshot, "snapshot")}


def snapshot_from_state(state: dict[str, Any]) -> LandscapeSnapshot:
    """The snapshot written by :func:`snapshot_to_state`, with the same values, tensors and types.

    Raises
    ------
    ValueError
        If ``state`` is not such a state: another version, an unknown field, or a class that is not a
        dataclass of ``torch_landscape`` (a forged or foreign state is never constructed).
    """
    if not isinstance(state, dict) or "snapshot" not in state:
        raise ValueError("state must be a dict written by snapshot_to_state (with 'version' and 'snapshot').")
    if state.get("version") != STATE_VERSION:
        raise ValueError(
            f"state has version {state.get('version')!r}; this torch_landscape reads version {STATE_VERSION}."
        )
    snapshot = _decode(state["snapshot"], "snapshot")
    if not isinstance(snapshot, LandscapeSnapshot):
        raise ValueError(f"state['snapshot'] holds a {type(snapshot).__name__}, not a LandscapeSnapshot.")
    return snapshot


def _encode(value: Any, where: str) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, np.generic) and isinstance(value.item(), _PLAIN):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(_encode(item, f"{where}[{index}]") for index, item in enumerate(value))
    if type(value) is dict:
        if _CLASS in value or not all(isinstance(key, str) for key in value):
            raise _Unstorable(f"{where}: only dicts with str keys other than {_CLASS!r} can be stored.")
        return {key: _encode(item, f"{where}[{key!r}]") for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_CLASS: _name(type(value), where), _FIELDS: _encode_fields(value, where)}
    raise _Unstorable(f"{where}: a {type(value).__module__}.{type(value).__qualname__} cannot be stored.")


def _encode_fields(value: Any, where: str) -> dict[str, Any]:
    out = {}
    for field in dataclasses.fields(value):
        try:
            out[field.name] = _encode(getattr(value, field.name), f"{where}.{field.name}")
        except _Unstorable:
            if field.compare:
                raise
            out[field.name] = None  # a cache beside the result (a module): not part of what it reports
    return out


def _name(cls: type, where: str) -> str:
    if not _ours(cls.__module__) or "<" in cls.__qualname__:
        raise _Unstorable(f"{where}: only dataclasses defined in {_PACKAGE} can be stored, got {cls.__qualname__}.")
    return f"{cls.__module__}:{cls.__qualname__}"


def _ours(module: str) -> bool:
    return module == _PACKAGE or module.startswith(_PACKAGE + ".")


def _decode(value: Any, where: str) -> Any:
    if type(value) in _PLAIN or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return type(value)(_decode(item, f"{where}[{index}]") for index, item in enumerate(value))
    if isinstance(value, dict):
        if _CLASS not in value:
            return {key: _decode(item, f"{where}[{key!r}]") for key, item in value.items()}
        cls = _class(value[_CLASS], where)
        fields = value.get(_FIELDS)
        if not isinstance(fields, dict):
            raise ValueError(f"{where}: a stored {cls.__qualname__} needs a dict of fields.")
        known = {field.name for field in dataclasses.fields(cls) if field.init}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(
                f"{where}: {cls.__qualname__} has no field(s) {unknown}; was the state written by another version?"
            )
        return cls(**{name: _decode(item, f"{where}.{name}") for name, item in fields.items()})
    raise ValueError(f"{where}: a state holds no {type(value).__name__}.")


def _class(name: Any, where: str) -> type:
    """The dataclass ``"module:QualName"`` names, if it is one of torch_landscape's."""
    module, _, qualname = name.partition(":") if isinstance(name, str) else ("", "", "")
    parts = qualname.split(".")
    if not _ours(module) or not all(part.isidentifier() and not part.startswith("__") for part in parts):
        raise ValueError(f"{where}: refusing to construct {name!r}; a state names only dataclasses of {_PACKAGE}.")
    try:
        found: Any = importlib.import_module(module)
    except ImportError as error:
        raise ValueError(f"{where}: {name!r} names a module this torch_landscape lacks ({error}).") from error
    for part in parts:
        found = getattr(found, part, None)
    if not (isinstance(found, type) and dataclasses.is_dataclass(found) and _ours(found.__module__)):
        raise ValueError(f"{where}: {name!r} is not a dataclass of {_PACKAGE}.")
    return found
