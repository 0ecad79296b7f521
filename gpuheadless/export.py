"""Export sources and the export transform: cutout, normalisation, dtype, axis order (spec §2, §4)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UsageError

EXPORT_SOURCES = ("Probabilities", "Simple Segmentation", "Uncertainty", "Features", "Labels")
# Autocontext adds the raw data per stage, and all stages' probabilities side by side.
STAGE_SOURCES = (*EXPORT_SOURCES, "Input")
ALL_STAGES = "Probabilities All Stages"
EXPORT_DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64", "uint64", "int64")


def source_names(n_stages: int = 1) -> list[str]:
    """ilastik's export sources, in its order: Pixel Classification's five, or for an Autocontext
    project of ``n_stages`` each stage's six from the last stage to the first, then all stages'
    probabilities."""
    if n_stages <= 1:
        return list(EXPORT_SOURCES)
    names = [f"{kind} Stage {k}" for k in range(n_stages, 0, -1) for kind in STAGE_SOURCES]
    return names + [ALL_STAGES]


def resolve_source(name: str | None, n_stages: int = 1) -> str:
    """The canonical export source for ``name`` (case-insensitive, as ilastik compares;
    ``Probabilities`` when not given).

    For an Autocontext project the default ``Probabilities`` is the last stage's.
    """
    name = "Probabilities" if name is None else name
    if n_stages > 1 and name.strip() == "Probabilities":
        return f"Probabilities Stage {n_stages}"
    names = source_names(n_stages)
    for source in names:
        if source.lower() == name.strip().lower():
            return source
    valid = [s.lower() for s in names]
    raise UsageError(f"Invalid option for --export_source: {name!r}. Valid options are: {valid}")


OBJECT_SOURCES = ("Object Predictions", "Object Probabilities", "Blockwise Object Predictions",
                  "Blockwise Object Probabilities", "Object Identities")
# The pixel stage's images of a Pixel + Object Classification project: their names there, and here
PIXEL_STAGE_SOURCES = {"Pixel Probabilities": "Probabilities", "Simple Segmentation": "Simple Segmentation"}


def resolve_object_source(name: str | None, pixel_stage: bool = False) -> str:
    """ilastik's Object Classification export name for ``--export_source`` (case-insensitive;
    ``Object Predictions`` when not given); the pixel stage's images only with a ``pixel_stage``."""
    valid = OBJECT_SOURCES + (tuple(PIXEL_STAGE_SOURCES) if pixel_stage else ())
    if name is None:
        return valid[0]
    for source in valid:
        if source.lower() == name.strip().lower():
            return source
    raise UsageError(f"Invalid option for --export_source: {name!r}. Valid options are: {[s.lower() for s in valid]}")


def split_source(source: str) -> tuple[str, int | None]:
    """(what is computed, 0-based stage) of a source name: ``Features Stage 2`` is
    ``("Features", 1)``; Pixel Classification's names and ``Probabilities All Stages`` have no
    stage (the only one; all of them)."""
    kind, _, stage = source.rpartition(" Stage ")
    if kind in STAGE_SOURCES and stage.isdigit():
        return kind, int(stage) - 1
    return source, None


def source_dtype(source: str, raw_dtype: np.dtype | None = None) -> np.dtype:
    """The computed type of ``source``; ``Input`` keeps the raw data's ``raw_dtype``."""
    kind = split_source(source)[0]
    if kind == "Input":
        return np.dtype(raw_dtype if raw_dtype is not None else np.float32)
    return np.dtype(np.uint8) if kind in ("Simple Segmentation", "Labels") else np.dtype(np.float32)


def source_channels(source: str, n_classes: int, n_features: int, raw_channels: int = 1) -> int:
    """Channels of ``source``; ``n_classes`` counts all stages' classes for ``Probabilities All Stages``."""
    kind = split_source(source)[0]
    if kind in ("Probabilities", ALL_STAGES):
        return n_classes
    if kind == "Features":
        return n_features
    if kind == "Input":
        return raw_channels
    return 1


def derive_from_probabilities(xp: Any, probabilities: Any, source: str) -> Any:
    """Simple Segmentation or Uncertainty from ``(..., K)`` probabilities.

    Simple Segmentation is ``argmax + 1`` (ties to the lowest channel, all-zero pixels give 1);
    Uncertainty is ``1 - (p_max - p_second)``, zero when K <= 1.
    """
    source = split_source(source)[0]
    if source == "Probabilities":
        return probabilities
    if source == "Simple Segmentation":
        return (xp.argmax(probabilities, axis=-1) + 1).astype(xp.uint8)[..., None]
    if source == "Uncertainty":
        k = probabilities.shape[-1]
        if k <= 1:
            return xp.zeros(probabilities.shape[:-1] + (1,), dtype=xp.float32)
        top = xp.sort(probabilities, axis=-1)
        return (xp.float32(1) - (top[..., -1] - top[..., -2]))[..., None].astype(xp.float32)
    raise ValueError(source)


def parse_pair(text: str, option: str) -> tuple[float, float]:
    """``(a,b)`` as ilastik parses ``--export_drange`` (brackets to lists, then JSON)."""
    value = _parse_json_like(text, option)
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
        raise UsageError(f"{option}: expected two numbers like (0,255), got {text!r}")
    return float(value[0]), float(value[1])


def parse_cutout(text: str) -> tuple[list, list]:
    """``[(start...),(stop...)]`` with ``None`` entries, in the export's own axis order."""
    value = _parse_json_like(text, "--cutout_subregion")
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, list) for v in value)
        or len(value[0]) != len(value[1])
        or not all(v is None or isinstance(v, int) for part in value for v in part)
    ):
        raise UsageError(f"--cutout_subregion: expected [(start,...),(stop,...)] of equal length, got {text!r}")
    return value[0], value[1]


def _parse_json_like(text: str, option: str) -> Any:
    converted = text.replace("(", "[").replace(")", "]").replace("None", "null")
    try:
        return json.loads(converted)
    except ValueError:
        raise UsageError(f"{option}: cannot parse {text!r}") from None


@dataclass(frozen=True)
class ExportTransform:
    """What happens to the export source before writing (spec §4)."""

    source_dtype: np.dtype
    dtype: np.dtype
    normalize: tuple[float, float, float, float] | None  # in_min, in_max, out_min, out_max

    def apply(self, block: np.ndarray) -> np.ndarray:
        """Normalise (if both ranges are set) and cast, with ilastik's rounding and no clipping."""
        if self.normalize is None:
            return block.astype(self.dtype, copy=False)
        in_min, in_max, out_min, out_max = self.normalize
        spread_in = in_max - in_min
        spread_out = out_max - out_min
        ratio = 0.0 if math.isclose(spread_in, 0.0) else float(np.float32(spread_out / spread_in))
        if block.dtype.kind == "f":
            y = (block - block.dtype.type(in_min)) * block.dtype.type(ratio) + block.dtype.type(out_min)
        else:
            y = (block.astype(np.float64) - in_min) * ratio + out_min
        if self.source_dtype.kind == "f" and self.dtype.kind in "iu":
            y = np.rint(y)
        with np.errstate(invalid="ignore", over="ignore"):
            return y.astype(self.dtype)

    @property
    def drange(self) -> tuple[Any, Any] | None:
        if self.normalize is None:
            return None
        return tuple(np.array(self.normalize[2:], dtype=np.float64).astype(self.dtype).tolist())


def make_transform(source: str, export_dtype: str | None, in_range, out_range,
                   computed_dtype: np.dtype | None = None) -> ExportTransform:
    """Build the transform from ``--export_dtype``, ``--pipeline_result_drange`` and ``--export_drange``.

    ``computed_dtype`` is the source's own type where :func:`source_dtype` does not know the source
    (the Object Classification images)."""
    src = np.dtype(computed_dtype) if computed_dtype is not None else source_dtype(source)
    if export_dtype is not None and export_dtype not in EXPORT_DTYPES:
        raise UsageError(f"--export_dtype: expected one of {', '.join(EXPORT_DTYPES[:8])}, got {export_dtype!r}")
    dtype = np.dtype(export_dtype) if export_dtype else src
    if out_range is not None and in_range is None:
        raise UsageError("Cannot renormalize to custom export_drange without a specified pipeline_result_drange.")
    normalize = tuple(in_range) + tuple(out_range) if in_range is not None and out_range is not None else None
    return ExportTransform(src, dtype, normalize)


def output_axes(requested: str | None, original_axes: str, shape_by_axis: dict[str, int]) -> str:
    """The written axis order: ``--output_axis_order`` or the input's own axes plus ``c``.

    Axes not in the data are added with extent 1; an axis of the data with extent > 1 may not be
    dropped.
    """
    if requested is None:
        axes = original_axes if "c" in original_axes else original_axes + "c"
        return axes
    axes = requested.lower()
    if not axes or any(a not in "txyzc" for a in axes) or len(set(axes)) != len(axes):
        raise UsageError(f"Invalid axes specified output_axis_order: {requested!r}")
    dropped = [a for a, n in shape_by_axis.items() if n > 1 and a not in axes]
    if dropped:
        raise UsageError(
            f"--output_axis_order {requested}: attempting to drop the following non-singleton axes: {''.join(dropped)}"
        )
    return axes
