"""The selected features of every object of one time point, a batch of objects at a time.

Objects are taken in id order and grouped while the box around the group (widened by the
neighbourhood margins) fits the memory budget. A batch reads only that box of the raw data and
the ids; the other objects in it are background for the standard and hull features and context
for the neighbourhood features, as over the whole image. Each object's pixels are visited in the
same raster order as over the whole image, and coordinates are the time point's, so the values
equal the one-batch run bit for bit. An object larger than the budget is still computed whole.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from .features import NEIGHBOURHOOD_SUFFIX, labelled_range, neighbourhood_features, standard_features
from .hull import hull_features
from .skeleton import skeleton_features
from .labeling import ObjectIds, Region, iter_slabs, slab_thickness

if TYPE_CHECKING:
    from ..backend import Backend

log = logging.getLogger(__name__)

STANDARD_PLUGIN = "Standard Object Features"
DEFAULT_FEATURES = ("Count", "Coord<Minimum>", "Coord<Maximum>", "RegionCenter")
HULL_PLUGINS = ("2D Convex Hull Features", "3D Convex Hull Features")
SKELETON_PLUGIN = "2D Skeleton Features"
PLUGINS = (STANDARD_PLUGIN,) + HULL_PLUGINS + (SKELETON_PLUGIN,)


def feature_bytes_per_voxel(channels: int) -> float:
    """Working memory of the feature computation per voxel of a batch's box (float64 copies of the
    intensities, their centred powers, coordinates and labels)."""
    return 64.0 * channels + 96.0


def _histogram_range(read_raw: Callable[[Region], np.ndarray], ids: ObjectIds, budget: float) -> tuple[float, float] | None:
    """(min, max) of the raw data over all object pixels of the time point, slab by slab."""
    low, high = math.inf, -math.inf
    for region in iter_slabs(ids.shape, slab_thickness(ids.shape, 24.0, budget)):
        found = labelled_range(read_raw(region)[..., 0].astype(np.float64), ids.read(region))
        if found:
            low, high = min(low, found[0]), max(high, found[1])
    return (low, high) if low <= high else None


def _batches(ids: ObjectIds, widen_low: np.ndarray, widen_high: np.ndarray, bytes_per_voxel: float,
             budget: float) -> list[tuple[int, int, Region]]:
    """Consecutive id ranges [first, last] and the box (z, y, x) each reads."""
    shape = np.array(ids.shape)
    batches = []
    start = 1
    low = high = None
    for i in range(1, ids.n_objects + 1):
        box_low = np.maximum(ids.boxes[i, 0] - widen_low, 0)
        box_high = np.minimum(ids.boxes[i, 1] + widen_high, shape)
        if low is None:
            low, high = box_low, box_high
            continue
        new_low, new_high = np.minimum(low, box_low), np.maximum(high, box_high)
        if np.prod(new_high - new_low) * bytes_per_voxel > budget:
            batches.append((start, i - 1, tuple(slice(int(a), int(b)) for a, b in zip(low, high))))
            start, low, high = i, box_low, box_high
        else:
            low, high = new_low, new_high
    if low is not None:
        batches.append((start, ids.n_objects, tuple(slice(int(a), int(b)) for a, b in zip(low, high))))
    return batches


def object_features(read_raw: Callable[[Region], np.ndarray], ids: ObjectIds, selected: dict[str, list[str]],
                    margins: dict[str, np.ndarray], channels: int, budget: float,
                    backend: Backend) -> dict[str, dict[str, np.ndarray]]:
    """``{plugin: {feature: (n + 1, width)}}`` of one time point, plus ilastik's ``Default features``.

    Parameters
    ----------
    read_raw : callable
        ``region (z, y, x) -> (Z, Y, X, C)`` float32 raw data.
    ids : ObjectIds
    selected : the project's selected features per plugin
    margins : the neighbourhood margins (x, y[, z]) per feature name
    channels : int
    budget : float
        Bytes a batch may use.
    backend : Backend
        Where the standard features' per-object sums are made (the CPU, or the GPU's kernels);
        its ``threads`` objects have their neighbourhoods found at once (on the CPU).
    """
    n = ids.n_objects
    dims = 3 if ids.shape[0] > 1 else 2
    names = selected.get(STANDARD_PLUGIN, [])
    plain = [name for name in names if not name.endswith(NEIGHBOURHOOD_SUFFIX)]
    local = [name[: -len(NEIGHBOURHOOD_SUFFIX)] for name in names if name.endswith(NEIGHBOURHOOD_SUFFIX)]
    reach = np.max([margins.get(name + NEIGHBOURHOOD_SUFFIX, [0]) for name in local], axis=0) if local else None
    widen_low = np.zeros(3, np.int64)
    widen_high = np.zeros(3, np.int64)
    if reach is not None:
        reach_zyx = np.zeros(3, np.int64)
        reach_zyx[3 - dims:] = np.asarray(reach[:dims])[::-1]
        widen_low, widen_high = reach_zyx, reach_zyx + 1  # ilastik widens from the exclusive maximum
    if dims == 2 and selected.get(SKELETON_PLUGIN):
        # The skeleton needs the pixel around each object (the image border is no boundary).
        widen_low = np.maximum(widen_low, [0, 1, 1])
        widen_high = np.maximum(widen_high, [0, 1, 1])
    value_range = None
    if channels == 1 and {"Histogram", "Quantiles"} & set(plain):
        value_range = _histogram_range(read_raw, ids, budget)
    tables: dict[str, dict[str, np.ndarray]] = {}
    batches = _batches(ids, widen_low, widen_high, feature_bytes_per_voxel(channels), budget)
    for first, last, region in batches:
        part = _batch_features(read_raw, ids, region, first, last, plain, local, reach, selected, value_range, dims,
                               backend)
        for plugin, table in part.items():
            out = tables.setdefault(plugin, {})
            for name, rows in table.items():
                if name not in out:
                    out[name] = np.zeros((n + 1,) + rows.shape[1:], dtype=rows.dtype)
                out[name][first:last + 1] = rows[1:]
    if ids.original is not None and "Default features" in tables:
        # ilastik keeps the label image's own values as a default feature (integers, not float64)
        tables["Default features"]["original_oid"] = ids.original.reshape(-1, 1)
    if len(batches) > 1:
        log.debug("features of %d objects in %d batches", n, len(batches))
    if not batches:  # no object: empty tables of the right widths
        empty = _batch_features(read_raw, ids, tuple(slice(0, 1) for _ in range(3)), 1, 0, plain, local, reach,
                                selected, value_range, dims, backend)
        tables = {p: {k: np.zeros((1,) + v.shape[1:], v.dtype) for k, v in t.items()} for p, t in empty.items()}
        if ids.original is not None:
            tables["Default features"]["original_oid"] = ids.original.reshape(-1, 1)
    return tables


def _batch_features(read_raw, ids: ObjectIds, region: Region, first: int, last: int, plain, local, reach, selected,
                    value_range, dims: int, backend: Backend) -> dict[str, dict[str, np.ndarray]]:
    """The features of objects first..last (rows 1..k) from the box ``region``."""
    k = last - first + 1
    found = ids.read(region).astype(np.int64)
    mine = (found >= first) & (found <= last)
    batch = np.where(mine, found - (first - 1), 0)
    # (X, Y, Z) views of the (z, y, x) arrays: vigra's scan order (x fastest) is then their memory order.
    image_xyzc = np.transpose(read_raw(region), (2, 1, 0, 3))
    batch_xyz = np.transpose(batch, (2, 1, 0))
    origin = tuple(r.start for r in region)[::-1]
    computed = standard_features(image_xyzc, batch_xyz, list(plain) + list(DEFAULT_FEATURES), True, np.float64,
                                 origin, value_range, dims, backend=backend)
    computed = {name: _rows(values, k) for name, values in computed.items()}
    defaults = {name: computed[name] for name in DEFAULT_FEATURES}  # float64, as vigra returns them
    features = {name: values.astype(np.float32) for name, values in computed.items()}  # plugin features: float32
    if local:
        # Other objects are the neighbourhood's context: label them k + 1, beyond the objects computed.
        context_xyz = np.transpose(np.where(mine, batch, np.where(found > 0, k + 1, 0)), (2, 1, 0))
        features.update(neighbourhood_features(image_xyzc, context_xyz, local, reach, True, count=k, dims=dims,
                                               threads=backend.threads))
    # a name the project selects but no plugin computes is left out here; feature_matrix names it
    result = {STANDARD_PLUGIN: {name: features[name] for name in selected.get(STANDARD_PLUGIN, []) if name in features},
              "Default features": defaults}
    for plugin in HULL_PLUGINS:
        if selected.get(plugin):
            result[plugin] = {name: _rows(values, k) for name, values in
                              hull_features(batch_xyz, selected[plugin], origin, dims).items()}
    if dims == 2 and selected.get(SKELETON_PLUGIN):
        result[SKELETON_PLUGIN] = {name: _rows(values, k) for name, values in skeleton_features(
            batch_xyz, selected[SKELETON_PLUGIN], origin[:2], ids.shape[1:]).items()}
    return result


def _rows(values: np.ndarray, k: int) -> np.ndarray:
    """``values`` with exactly k + 1 rows (a batch whose last objects are absent gives fewer)."""
    if len(values) == k + 1:
        return values
    out = np.zeros((k + 1,) + values.shape[1:], dtype=values.dtype)
    out[: min(len(values), k + 1)] = values[: k + 1]
    return out
