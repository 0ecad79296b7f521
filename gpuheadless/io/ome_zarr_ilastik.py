"""ilastik 1.4.2's ``single-scale OME-Zarr`` and ``multi-scale OME-Zarr`` exports, value for value.

ilastik writes OME-Zarr (NGFF 0.4, Zarr v2, ``/`` separated chunk keys, blosc lz4) with five
axes ``tczyx`` whatever the export's axis order, levels ``s0``, ``s1`` ..., chunks of at most
1 MB (t = c = 1, zyx as isotropic as fits), and attributes ``axistags``, ``display_mode``,
``drange`` and ``axis_units`` on every level. A multi-scale export adds levels halving the
spatial sides of ``s0`` (``int(n / 2**i)``, at least 1) until every side fits one chunk; each
level is computed from the level above it, chunk by chunk, by ilastik's ``OpResize``: a
Gaussian of sigma ``factor / 4`` (mirror borders) then linear interpolation for intensities,
nearest neighbour without smoothing for labels. The same arithmetic on the same regions is done
here, so every level equals ilastik's bit for bit.

Needs zarr (the ``cluster`` extra).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Callable

import numpy as np

from .._version import __version__
from ..errors import UserError
from . import staging
from .ilastik_layout import axistags_json, determine_block_shape

OME_AXES = "tczyx"
_SPATIAL = "zyx"
_CHUNK_BYTES = 1_024_000
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_HALO_WINDOW = 3.5  # lazyflow's enlargeRoiForHalo default: halo = ceil(3.5 sigma)
_MIN_PADDING = {0: 0, 1: 2}  # OpResize's minimum halo per interpolation order


def chunk_shape(shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, ...]:
    """ilastik's OME-Zarr chunk shape for a ``tczyx`` shape: t = c = 1, at most 1 MB.

    E.g. ``(1, 1, 1, 506, 505)`` for 2D float32 and ``(1, 1, 63, 64, 63)`` for large 3D float32.
    """
    limits = (1, 1) + tuple(shape[2:])
    return determine_block_shape(limits, int(_CHUNK_BYTES / np.dtype(dtype).itemsize))


def level_shapes(shape: tuple[int, ...], dtype: np.dtype) -> list[tuple[int, ...]]:
    """Shapes (``tczyx``) of ilastik's default pyramid: ``s0`` and its halvings.

    Level i has spatial sides ``max(int(n / 2**i), 1)``; the last level is the first whose every
    spatial side fits in one chunk (so a small image has only ``s0``).
    """
    chunks = chunk_shape(shape, dtype)
    levels = []
    for i in range(42):
        scaled = tuple(max(int(n / 2**i), 1) if a in _SPATIAL else n for a, n in zip(OME_AXES, shape))
        levels.append(scaled)
        if all(scaled[k] <= chunks[k] for k in range(2, 5)):
            break
    return levels


def matched_levels(shape: tuple[int, ...], input_scales: dict[str, dict[str, int]],
                   input_key: str) -> list[tuple[str, tuple[int, ...]]]:
    """ilastik's multi-scale levels for an export of an OME-Zarr input: the input's own levels.

    Parameters
    ----------
    shape : tuple of int
        The export's ``tczyx`` shape (computed from level ``input_key``).
    input_scales : dict
        The input's levels, largest first: path to shape per input axis.
    input_key : str
        The level the export was computed from.

    Returns
    -------
    list of (str, tuple of int)
        Level paths and ``tczyx`` shapes from ``input_key`` on (ilastik never upscales): the
        input's shapes when the export has the input level's extent, else the export scaled by
        each level's factors (``int(n / factor)``, at least 1), stopping before a level that
        would have fewer than two spatial axes longer than 1.
    """
    size = dict(zip(OME_AXES, shape))
    source = input_scales[input_key]
    if all(a not in source or a == "c" or size[a] == source[a] for a in OME_AXES):
        targets = {key: {a: level.get(a, 1) for a in OME_AXES} for key, level in input_scales.items()}
    else:
        targets = {}
        for key, level in input_scales.items():
            factors = {a: source[a] / level[a] if a in level and a in source and a != "c" else 1.0 for a in OME_AXES}
            scaled = {a: max(int(n / factors[a]), 1) for a, n in size.items()}
            if sum(scaled[a] > 1 for a in _SPATIAL) < 2 and key != input_key:
                break
            targets[key] = scaled
    keys = list(targets)
    return [(key, tuple(size["c"] if a == "c" else targets[key][a] for a in OME_AXES))
            for key in keys[keys.index(input_key):]]


def input_scaling_axes(input_scales: dict[str, dict[str, int]]) -> set[str]:
    """Axes along which an input OME-Zarr's levels differ in size (ilastik records their pixel
    size per level, not image-wide, even in a single-scale export)."""
    levels = list(input_scales.values())
    if not levels:
        return set()
    return {a for a in levels[0] if any(level.get(a) != levels[0][a] for level in levels)}


def resize_region(read: Callable[[tuple[slice, ...]], np.ndarray], source_shape: tuple[int, ...],
                  target_shape: tuple[int, ...], start: tuple[int, ...], stop: tuple[int, ...], order: int,
                  dtype: np.dtype) -> np.ndarray:
    """One box of a downscaled level, computed as ilastik's ``OpResize`` computes that box.

    Parameters
    ----------
    read : callable
        Reads a box (slices, ``tczyx``) of the source level.
    source_shape, target_shape : tuple of int
        ``tczyx`` shapes of the source level and of the level being made.
    start, stop : tuple of int
        The box of the target level (ilastik asks for one chunk at a time).
    order : int
        0: nearest neighbour, no smoothing (labels); 1: Gaussian anti-aliasing then linear.
    dtype : numpy.dtype
        The level's type; values are cast as NumPy assigns them (float to int truncates).

    Returns
    -------
    numpy.ndarray
        Shape ``stop - start``, type ``dtype``.
    """
    from scipy import ndimage  # noqa: PLC0415

    source = np.asarray(source_shape, dtype=np.int64)
    factors = np.divide(source_shape, target_shape)
    sigmas = np.zeros(5) if order == 0 else np.array([f / 4 if f > 1 else 0 for f in factors])
    scaled = factors != 1
    first = np.asarray(start) * factors + (factors / 2 - 0.5)
    last = first + (np.asarray(stop) - np.asarray(start)) * factors
    halo = np.ceil(_HALO_WINDOW * sigmas)
    lo = np.where(scaled, np.maximum(first - halo, 0), first)
    hi = np.where(scaled, np.minimum(last + halo, source), last)
    pad = _MIN_PADDING[order]
    if pad:
        lo = np.where(scaled, np.minimum(lo, first - pad), lo)
        hi = np.where(scaled, np.maximum(hi, last + pad), hi)
    lo = np.clip(np.floor(lo), 0, source).astype(np.int64)
    hi = np.clip(np.ceil(hi), 0, source).astype(np.int64)
    raw = np.asarray(read(tuple(slice(a, b) for a, b in zip(lo, hi)))).astype(np.float64)
    filtered = ndimage.gaussian_filter(raw, sigmas, mode="mirror")
    begin = first - lo
    end = last - lo - factors
    size = np.asarray(stop) - np.asarray(start)
    result = np.empty(tuple(size), dtype=dtype)
    channels = int(size[1])
    size[1], begin[1], end[1] = 1, 1, 1
    grid = np.meshgrid(*(np.linspace(a, b, n) for a, b, n in zip(begin, end, size)), indexing="ij")
    for c, plane in enumerate(np.split(filtered, channels, axis=1)):
        result[:, c:c + 1] = ndimage.map_coordinates(plane, grid, order=order, mode="mirror")
    return result


def multiscales(shapes: list[tuple[int, ...]], resolution: dict[str, float], units: dict[str, str],
                offset: dict[str, int], order: int, translation: dict[str, float] | None = None,
                names: list[str] | None = None, input_scaling: set[str] | None = None) -> dict[str, Any]:
    """ilastik's ``multiscales[0]`` entry for levels of the given ``tczyx`` shapes.

    Parameters
    ----------
    resolution : dict
        Pixel size per axis (0 or missing: 1.0).
    units : dict
        Unit per axis (empty ones are left out).
    offset : dict
        The export's start per axis (a cutout); gives a translation in physical units.
    order : int
        The downscaling's interpolation order, recorded when there is more than one level.
    translation : dict, optional
        The input OME-Zarr's translation per axis (physical units), added to the offset's.
    names : list of str, optional
        The levels' paths (default ``s0``, ``s1`` ...).
    input_scaling : set of str, optional
        Axes along which the input OME-Zarr's levels differ (see :func:`input_scaling_axes`).
    """
    names = names or [f"s{i}" for i in range(len(shapes))]
    res = {a: float(resolution.get(a) or 1.0) for a in OME_AXES}
    base = shapes[0]
    factors = [{a: (base[i] / s[i] if a != "c" else 1.0) for i, a in enumerate(OME_AXES)} for s in shapes]
    scaling_axes = {a for a in OME_AXES if len(shapes) > 1 and any(f[a] != 1 for f in factors)}
    scaling_axes |= set(input_scaling or ())
    axes = []
    for a in OME_AXES:
        entry = {"name": a, "type": _AXIS_TYPES[a]}
        if units.get(a):
            entry["unit"] = units[a]
        axes.append(entry)
    datasets = [
        {"path": name, "coordinateTransformations": [
            {"type": "scale", "scale": [f[a] * (res[a] if a in scaling_axes else 1.0) for a in OME_AXES]}]}
        for name, f in zip(names, factors)
    ]
    meta: dict[str, Any] = {"axes": axes, "datasets": datasets, "version": "0.4"}
    transforms = []
    unscaled = [res[a] if a not in scaling_axes else 1.0 for a in OME_AXES]
    if any(v != 1 for v in unscaled):
        transforms.append({"type": "scale", "scale": unscaled})
    carried = translation or {}
    translation = [float(offset.get(a, 0)) * res[a] + float(carried.get(a, 0.0)) for a in OME_AXES]
    if any(v != 0 for v in translation):
        if not transforms:
            transforms.append({"type": "scale", "scale": [1.0] * 5})
        transforms.append({"type": "translation", "translation": translation})
    if transforms:
        meta["coordinateTransformations"] = transforms
    if any(not math.isclose(float(np.prod(list(f.values()))), 1.0) for f in factors):
        meta["metadata"] = {
            "description": "ilastik's lazyflow.operators.opResize.OpResize is a lazy implementation of "
                           "skimage.transform.resize.",
            "method": "skimage.transform.resize",
            "version": "0.24.0",
            "kwargs": {"order": order, "anti_aliasing": True, "preserve_range": True},
        }
    return meta


class IlastikOmeZarrWriter:
    """An OME-Zarr folder as ilastik's OME-Zarr export writes it; appears only when complete.

    Parameters
    ----------
    final_path : str
        The ``.zarr`` folder; ilastik refuses to write over an existing one, and so does this.
    shape : tuple of int
        The export's shape in ``axes`` order.
    dtype : numpy.dtype
    axes : str
        The export's axes (any order, a subset of ``tczyx``); blocks are reordered to ``tczyx``.
    attrs : dict
        ``axistags`` (for the pixel sizes), ``drange``, ``display_mode``, ``axis_units`` (JSON).
    multiscale : bool
        Add ilastik's downscaled levels.
    labels : bool
        Downscale by nearest neighbour (label images) rather than smoothing and linear.
    offset : dict
        The export's start per axis (cutout), recorded as a translation.
    translation : dict, optional
        An OME-Zarr input's translation per axis, added to the offset's (ilastik carries it over).
    scale_key : str, optional
        The OME-Zarr input level the export was computed from: a single-scale export's level is
        named after it (default ``s0``).
    input_scales : dict, optional
        The OME-Zarr input's levels (path to shape per axis): a multi-scale export has the
        input's levels from ``scale_key`` on instead of ilastik's default pyramid.
    """

    def __init__(self, final_path: str, shape, dtype, axes: str, attrs: dict[str, Any], multiscale: bool,
                 labels: bool = False, offset: dict[str, int] | None = None,
                 translation: dict[str, float] | None = None, scale_key: str | None = None,
                 input_scales: dict[str, dict[str, int]] | None = None) -> None:
        from .zarr_io import _zarr  # noqa: PLC0415

        self._zarr = _zarr()
        self.final_path = final_path
        if os.path.exists(final_path):
            raise UserError(f"output '{final_path}': exists; like ilastik, OME-Zarr exports do not overwrite, delete it first")
        size = dict(zip(axes, shape))
        self._axes = axes
        self._shape = tuple(size.get(a, 1) for a in OME_AXES)
        self._dtype = np.dtype(dtype)
        self._multiscale, self._order = multiscale, 0 if labels else 1
        self._offset = {a: int(v) for a, v in (offset or {}).items()}
        self._translation = {a: float(v) for a, v in (translation or {}).items()}
        self._input_scales = input_scales if scale_key and input_scales and scale_key in input_scales else {}
        self._first = scale_key if self._input_scales else "s0"
        tags = json.loads(attrs["axistags"]) if "axistags" in attrs else {"axes": []}
        self._resolution = {t["key"]: t.get("resolution", 0) for t in tags["axes"]}  # as given: vigra writes 0, not 0.0
        units = attrs.get("axis_units")
        self._units = json.loads(units) if isinstance(units, str) else dict(units or {})
        self._level_attrs: dict[str, Any] = {"axistags": axistags_json(OME_AXES, self._resolution)}
        if self._units:
            self._level_attrs["axis_units"] = self._units
        for key in ("display_mode", "drange"):
            if key in attrs:
                value = attrs[key]
                self._level_attrs[key] = value.tolist() if isinstance(value, np.ndarray) else value
        self._chunks = chunk_shape(self._shape, self._dtype)
        parent = os.path.dirname(final_path) or "."
        try:
            os.makedirs(parent, exist_ok=True)
            self.tmp_path = staging.temporary_folder(final_path)
        except OSError as exc:
            raise UserError(f"output '{final_path}': cannot write there ({exc.strerror or exc})") from None
        self._group = self._zarr.open_group(self.tmp_path, mode="w", zarr_format=2)
        self._levels = [self._create(self._first, self._shape)]

    def _create(self, name: str, shape: tuple[int, ...]) -> Any:
        import numcodecs  # noqa: PLC0415

        return self._group.create_array(
            name=name, shape=shape, chunks=self._chunks, dtype=self._dtype, fill_value=0,
            compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1),
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )

    def write(self, region: tuple[slice, ...], data: np.ndarray) -> None:
        """Write a block given in the export's axis order."""
        order = [self._axes.index(a) for a in OME_AXES if a in self._axes]
        box = dict(zip(self._axes, region))
        block = np.transpose(data, order)
        expand = tuple(slice(None) if a in self._axes else None for a in OME_AXES)
        self._levels[0][tuple(box.get(a, slice(0, 1)) for a in OME_AXES)] = block[expand]

    def _downscale(self) -> None:
        if self._input_scales:
            levels = matched_levels(self._shape, self._input_scales, self._first)
        else:
            levels = [(f"s{i}", shape) for i, shape in enumerate(level_shapes(self._shape, self._dtype))]
        for name, shape in levels[1:]:
            source = self._levels[-1]
            target = self._create(name, shape)
            counts = [-(-n // c) for n, c in zip(shape, self._chunks)]
            for index in np.ndindex(*counts):
                start = tuple(k * c for k, c in zip(index, self._chunks))
                stop = tuple(min(a + c, n) for a, c, n in zip(start, self._chunks, shape))
                values = resize_region(lambda r, s=source: s[r], tuple(source.shape), shape, start, stop,
                                       self._order, self._dtype)
                target[tuple(slice(a, b) for a, b in zip(start, stop))] = values
            self._levels.append(target)

    def commit(self) -> None:
        if self._multiscale:
            self._downscale()
        shapes = [tuple(level.shape) for level in self._levels]
        for level in self._levels:
            level.attrs.update(self._level_attrs)
        self._group.attrs.update({
            "_creator": {"name": "gpuheadless", "version": __version__, "ome_zarr_exporter_version": 2},
            "multiscales": [multiscales(shapes, self._resolution, self._units, self._offset, self._order,
                                        self._translation, [level.basename for level in self._levels],
                                        input_scaling_axes(self._input_scales))],
        })
        if os.path.exists(self.final_path):
            raise UserError(f"output '{self.final_path}': appeared while writing; not overwritten")
        staging.commit(self.tmp_path, self.final_path)
        self.tmp_path = None

    def abort(self) -> None:
        staging.remove(self.tmp_path)
        self.tmp_path = None
