"""How ilastik lays out what it writes: vigra's axistags JSON and its block shapes (no I/O here)."""
from __future__ import annotations

import json

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
