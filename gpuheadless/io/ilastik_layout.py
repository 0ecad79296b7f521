"""How ilastik describes and lays out arrays: vigra's axistags JSON (written and read back) and
its block shapes (no I/O here)."""
from __future__ import annotations

import json
from typing import Any

from .source import default_axes

_TYPE_FLAGS = {"t": 8, "c": 1}


def axistags_json(axes: str, resolutions: dict[str, float] | None = None) -> str:
    """vigra's AxisTags JSON for ``axes`` (space 2, channel 1, time 8); whole resolutions as integers, as vigra."""
    resolutions = resolutions or {}
    doc = {
        "axes": [
            {"key": a, "typeFlags": _TYPE_FLAGS.get(a, 2), "resolution": _vigra_number(resolutions.get(a, 0)),
             "description": ""}
            for a in axes
        ]
    }
    return json.dumps(doc, indent=2)


def _vigra_number(value: float) -> float | int:
    value = float(value or 0)
    return int(value) if value.is_integer() else value


def determine_block_shape(max_shape: tuple[int, ...], target_volume: int) -> tuple[int, ...]:
    """As isotropic a block as fits ``target_volume`` elements (ilastik's ``determineBlockShape``)."""
    n = len(max_shape)
    shape = [1] * n
    remaining = max(int(target_volume), 1)
    for k, i in enumerate(sorted(range(n), key=lambda i: max_shape[i])):
        side = int(round(remaining ** (1.0 / (n - k))))
        shape[i] = max(1, min(side, max_shape[i]))
        remaining = max(remaining // shape[i], 1)
    return tuple(shape)


def json_attr(attrs: Any, name: str) -> Any:
    """Attribute ``name`` of an HDF5, N5 or Zarr array decoded from JSON (None if absent or not JSON)."""
    if name not in attrs:
        return None
    value = attrs[name]
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, dict):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return None


def axes_from_attrs(attrs: Any, shape: tuple[int, ...]) -> tuple[str, dict[str, float]]:
    """The axes and pixel sizes an array's attributes record: vigra's axistags, N5's reversed
    ``axes``, else ilastik's default axes for its rank."""
    tags = json_attr(attrs, "axistags")
    if tags and len(tags.get("axes", [])) == len(shape):
        keys = "".join(a["key"] for a in tags["axes"])
        return keys, {a["key"]: float(a.get("resolution", 0) or 0) for a in tags["axes"]}
    if "axes" in attrs:  # N5-style, stored reversed
        keys = "".join(str(k).lower() for k in reversed(list(attrs["axes"])))
        if len(keys) == len(shape):
            return keys, {}
    return default_axes(shape), {}
