"""Object ids of one time point, slab by slab, for volumes larger than memory.

The time point is cut into slabs along its slowest axis longer than one pixel (z in 3D, y in
2D), each small enough for the memory budget. Each slab is segmented and labelled on its own;
regions that touch across a slab boundary (face neighbours, the 4/6-connectivity ilastik uses)
and share a value are merged afterwards. A region's id is the rank of its first pixel in raster
order, exactly as labelling the whole time point at once gives (spec/object-classification.md
§3.1): slabs are contiguous in raster order, so a pixel's global raster index is its slab's
offset plus its index inside the slab.

The per-slab (provisional) labels are kept in memory when they fit a quarter of the budget and
in a temporary HDF5 file otherwise; :class:`ObjectIds` maps them to final ids when read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import h5py
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as graph_components

from .threshold import HYSTERESIS, SIMPLE, ThresholdSettings, smoothing_radius

if TYPE_CHECKING:
    from ..backend import Backend

Region = tuple[slice, slice, slice]


@dataclass
class ObjectIds:
    """The object ids of one time point: ``read(region)`` gives (Z, Y, X) uint32 ids 1..n.

    Attributes
    ----------
    shape : (Z, Y, X)
    n_objects : int
    boxes : (n + 1, 2, 3) int64
        Per object the start and stop of its bounding box, z, y, x (row 0 unused).
    original : (n + 1,) array or None
        Label-image variant: each object's value in the input label image (row 0: 0), ilastik's
        ``original_oid``.
    """

    shape: tuple[int, int, int]
    n_objects: int
    boxes: np.ndarray
    _reader: Callable[[Region], np.ndarray]
    original: np.ndarray | None = None

    def read(self, region: Region) -> np.ndarray:
        return self._reader(region)


@dataclass
class _Regions:
    """Provisional regions of all slabs: one row per provisional label (row 0 = background)."""

    first: np.ndarray  # raster index of the first pixel
    count: np.ndarray
    low: np.ndarray  # bounding box start (n, 3)
    high: np.ndarray  # bounding box stop (n, 3)
    flag: np.ndarray  # per-variant mark (hysteresis: holds a core pixel)
    pairs: list[np.ndarray]  # provisional labels touching across a slab boundary, (k, 2)


def slab_axis(shape: tuple[int, int, int]) -> int:
    """The axis slabs are cut along: the first (slowest) of z, y, x longer than one pixel."""
    return next((a for a in range(3) if shape[a] > 1), 2)


def iter_slabs(shape: tuple[int, int, int], thickness: int) -> Iterator[Region]:
    """Slabs of at most ``thickness`` along :func:`slab_axis`, in raster order."""
    axis = slab_axis(shape)
    for start in range(0, shape[axis], thickness):
        region = [slice(0, n) for n in shape]
        region[axis] = slice(start, min(start + thickness, shape[axis]))
        yield tuple(region)


def slab_thickness(shape: tuple[int, int, int], bytes_per_voxel: float, budget: float) -> int:
    """How many planes of the slab axis fit ``budget`` (at least one)."""
    axis = slab_axis(shape)
    plane = math.prod(n for a, n in enumerate(shape) if a != axis) * bytes_per_voxel
    return max(1, min(shape[axis], int(budget // max(plane, 1.0))))


def label_equal_values(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected regions of equal non-zero value of a (Z, Y, X) slab, 4/6-connected (int64 labels)."""
    structure = ndimage.generate_binary_structure(3, 1)
    if values.shape[0] == 1:
        structure[0] = structure[2] = False
    if _one_nonzero_value(values):
        labels, count = ndimage.label(values != 0, structure=structure, output=np.int64)
        return labels, int(count)
    nonzero = np.unique(values)
    nonzero = nonzero[nonzero != 0]
    labels = np.zeros(values.shape, dtype=np.int64)
    count = 0
    for value in nonzero:
        part, found = ndimage.label(values == value, structure=structure, output=np.int64)
        labels[part > 0] = part[part > 0] + count
        count += int(found)
    return labels, count


def _one_nonzero_value(values: np.ndarray) -> bool:
    """Whether the non-zero values of ``values`` are all one value (or there are none), without
    sorting the slab as ``np.unique`` does (thresholded masks, binary segmentations)."""
    if values.dtype == bool:
        return True
    if values.dtype.kind == "f":  # NaN is a value of its own to np.unique: ask it
        distinct = np.unique(values)
        return len(distinct[distinct != 0]) <= 1
    top, bottom = values.max(initial=0), values.min(initial=0)
    value = top if top != 0 else bottom
    return bool(np.all((values == 0) | (values == value)))



class _ProvisionalStore:
    """Where the provisional labels of a time point live: a NumPy array or a temporary HDF5 dataset."""

    def __init__(self, shape: tuple[int, int, int], scratch: h5py.Group | None, name: str) -> None:
        dtype = np.uint32 if math.prod(shape) < 2**32 else np.uint64  # provisional labels <= pixels
        if scratch is None:
            self.data: np.ndarray | h5py.Dataset = np.zeros(shape, dtype=dtype)
        else:
            chunks = tuple(min(n, c) for n, c in zip(shape, (16, 256, 256)))
            self.data = scratch.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)


def _first_indices(flat: np.ndarray, found: int) -> np.ndarray:
    """(found,) int64: the raster index of each label 1..found's first pixel in ``flat`` (labels
    0..found, every one present), without sorting the slab."""
    where = np.flatnonzero(flat)
    first = np.full(found + 1, flat.size, dtype=np.int64)
    np.minimum.at(first, flat[where], where)
    return first[1:]


def _label_slabs(read_values: Callable[[Region], np.ndarray], shape: tuple[int, int, int], thickness: int,
                 store: _ProvisionalStore, flag_of: Callable[[Region, np.ndarray], np.ndarray] | None = None,
                 *, backend: Backend) -> _Regions:
    """Label every slab, record its regions and the pairs touching the previous slab."""
    axis = slab_axis(shape)
    after = math.prod(shape[axis + 1:])  # raster stride of the slab axis
    first, count, low, high = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)], [np.zeros((1, 3), np.int64)], \
        [np.zeros((1, 3), np.int64)]
    flag: list[np.ndarray] = [np.zeros(1, bool)]
    pairs: list[np.ndarray] = []
    total = 0
    previous: tuple[np.ndarray, np.ndarray] | None = None  # last plane of the previous slab: labels, values
    for region in iter_slabs(shape, thickness):
        values = read_values(region)
        labels, found = backend.label(values)
        offset = region[axis].start * after
        flat = labels.reshape(-1)
        first.append(_first_indices(flat, found) + offset)
        count.append(np.bincount(flat, minlength=found + 1)[1:])
        origin = np.array([r.start for r in region])
        boxes = ndimage.find_objects(labels)
        low.append(np.array([[s.start for s in b] for b in boxes], dtype=np.int64).reshape(-1, 3) + origin)
        high.append(np.array([[s.stop for s in b] for b in boxes], dtype=np.int64).reshape(-1, 3) + origin)
        flag.append(flag_of(region, labels)[1:found + 1] if flag_of else np.zeros(found, bool))
        global_labels = np.where(labels > 0, labels + total, 0)
        store.data[region] = global_labels
        head = np.take(global_labels, 0, axis=axis)
        head_values = backend.to_host(values.take(0, axis=axis))
        if previous is not None:
            touching = (previous[0] > 0) & (head > 0) & (previous[1] == head_values)
            pairs.append(np.stack([previous[0][touching], head[touching]], axis=1))
        previous = (np.take(global_labels, -1, axis=axis), backend.to_host(values.take(-1, axis=axis)))
        total += found
    return _Regions(np.concatenate(first), np.concatenate(count), np.concatenate(low), np.concatenate(high),
                    np.concatenate(flag), pairs)


def _merge(regions: _Regions) -> np.ndarray:
    """The merged region (0..m-1) of each provisional label 1..n; index 0 unused (-1)."""
    n = len(regions.first) - 1
    if n == 0:
        return np.array([-1])
    pairs = np.concatenate(regions.pairs) if regions.pairs else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0] - 1, pairs[:, 1] - 1)), shape=(n, n))
    _, root = graph_components(graph, directed=False)
    return np.concatenate([[-1], root])


def _finish(regions: _Regions, store: _ProvisionalStore, shape: tuple[int, int, int],
            keep: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[ObjectIds, np.ndarray]:
    """Merge the regions, drop those ``keep(count, flag)`` rejects, number the rest by first pixel.

    Returns the ids and, per provisional label, its merged region's final id (for chained passes).
    """
    root = _merge(regions)
    m = int(root.max()) + 1 if len(root) > 1 else 0
    member = root[1:]
    first = np.full(m, np.iinfo(np.int64).max)
    np.minimum.at(first, member, regions.first[1:])
    count = np.bincount(member, regions.count[1:], minlength=m).astype(np.int64)
    flag = np.bincount(member, regions.flag[1:].astype(np.int64), minlength=m) > 0
    low = np.full((m, 3), np.iinfo(np.int64).max)
    high = np.zeros((m, 3), np.int64)
    for d in range(3):
        np.minimum.at(low[:, d], member, regions.low[1:, d])
        np.maximum.at(high[:, d], member, regions.high[1:, d])
    kept = np.nonzero(keep(count, flag))[0]
    order = kept[np.argsort(first[kept], kind="stable")]
    final_of_region = np.zeros(m, np.uint32)
    final_of_region[order] = np.arange(1, len(order) + 1, dtype=np.uint32)
    final = np.concatenate([[0], final_of_region[member]]).astype(np.uint32)
    boxes = np.zeros((len(order) + 1, 2, 3), np.int64)
    boxes[1:, 0], boxes[1:, 1] = low[order], high[order]
    provisional = store.data
    return ObjectIds(shape, len(order), boxes, lambda region: final[provisional[region]]), final


def _size_ok(settings: ThresholdSettings) -> Callable[[np.ndarray], np.ndarray]:
    return lambda count: (count >= settings.min_size) & (count <= settings.max_size)


def _smoothed_slab(read_prediction: Callable[[Region], np.ndarray], region: Region, shape: tuple[int, int, int],
                   settings: ThresholdSettings, backend: Backend) -> np.ndarray:
    """The project's smoothing of the prediction maps over ``region``, read with the halo it needs."""
    axis = slab_axis(shape)
    axes = tuple(a for a in range(3) if shape[a] > 1)
    halo = smoothing_radius(settings.sigmas[axis]) if axis in axes else 0
    start = max(region[axis].start - halo, 0)
    stop = min(region[axis].stop + halo, shape[axis])
    wide = list(region)
    wide[axis] = slice(start, stop)
    smoothed = backend.smooth(read_prediction(tuple(wide)), settings.sigmas, axes)
    inner = [slice(None)] * 4
    inner[axis] = slice(region[axis].start - start, region[axis].stop - start)
    return smoothed[tuple(inner)]


def threshold_ids(read_prediction: Callable[[Region], np.ndarray], shape: tuple[int, int, int],
                  settings: ThresholdSettings, thickness: int, scratch: h5py.Group | None, name: str,
                  backend: Backend) -> ObjectIds:
    """Threshold and Size Filter (simple or hysteresis) and object ids of one time point, slab by slab.

    Parameters
    ----------
    read_prediction : callable
        ``region -> (Z, Y, X, C)`` float32 prediction maps.
    shape : (Z, Y, X)
    settings : ThresholdSettings
    thickness : int
        Planes per slab.
    scratch : h5py.Group or None
        Where provisional labels go when they do not stay in memory.
    name : str
        A dataset name, unique in ``scratch``.
    backend : Backend
        Where slabs are smoothed and labelled (the CPU, or the GPU's kernels: the same ids).
    """
    if settings.method not in (SIMPLE, HYSTERESIS):
        raise ValueError(f"thresholding method {settings.method} (graph cut / IPHT) is not supported yet")
    size_ok = _size_ok(settings)

    def smoothed(region: Region) -> np.ndarray:
        return _smoothed_slab(read_prediction, region, shape, settings, backend)

    def final_mask(region: Region) -> np.ndarray:
        data = smoothed(region)
        final = data[..., settings.channel]
        if settings.method == HYSTERESIS and settings.channel != settings.core_channel:
            final = final + data[..., settings.core_channel]
        return (final >= np.float32(settings.low)).astype(np.uint8)

    if settings.method == SIMPLE:
        store = _ProvisionalStore(shape, scratch, name)
        regions = _label_slabs(final_mask, shape, thickness, store, backend=backend)
        return _finish(regions, store, shape, lambda count, flag: size_ok(count))[0]

    core_store = _ProvisionalStore(shape, scratch, name + "-cores")

    def core_mask(region: Region) -> np.ndarray:
        return (smoothed(region)[..., settings.core_channel] >= np.float32(settings.high)).astype(np.uint8)

    core_regions = _label_slabs(core_mask, shape, thickness, core_store, backend=backend)
    _, core_final = _finish(core_regions, core_store, shape, lambda count, flag: size_ok(count))

    def holds_core(region: Region, labels: np.ndarray) -> np.ndarray:
        cores = core_final[core_store.data[region]] > 0
        marked = np.zeros(int(labels.max()) + 1, dtype=bool)
        marked[labels[cores]] = True
        return marked

    store = _ProvisionalStore(shape, scratch, name)
    regions = _label_slabs(final_mask, shape, thickness, store, holds_core, backend=backend)
    ids = _finish(regions, store, shape, lambda count, flag: flag & size_ok(count))[0]
    if scratch is not None:
        del scratch[name + "-cores"]
    return ids


def label_image_ids(read_labels: Callable[[Region], np.ndarray], shape: tuple[int, int, int],
                    thickness: int) -> ObjectIds:
    """Label-image variant: each non-zero value is one object (connected or not), numbered by the
    raster order of its first pixel (spec §3.1); values are read again, not stored."""
    axis = slab_axis(shape)
    after = math.prod(shape[axis + 1:])
    values, first, low, high = [], [], [], []
    for region in iter_slabs(shape, thickness):
        slab = read_labels(region)
        found, first_index, inverse = np.unique(slab.reshape(-1), return_index=True, return_inverse=True)
        inverse = inverse.reshape(slab.shape)
        origin = np.array([r.start for r in region])
        boxes = ndimage.find_objects(inverse + 1)  # object k of ``found`` has label k + 1
        nonzero = found != 0
        values.append(found[nonzero])
        first.append(first_index[nonzero] + region[axis].start * after)
        low.append(np.array([[s.start for s in b] for b, keep in zip(boxes, nonzero) if keep], np.int64).reshape(-1, 3)
                   + origin)
        high.append(np.array([[s.stop for s in b] for b, keep in zip(boxes, nonzero) if keep], np.int64).reshape(-1, 3)
                    + origin)
    all_values = np.concatenate(values) if values else np.zeros(0)
    distinct, where = np.unique(all_values, return_inverse=True)
    m = len(distinct)
    first_pixel = np.full(m, np.iinfo(np.int64).max)
    np.minimum.at(first_pixel, where, np.concatenate(first) if first else np.zeros(0, np.int64))
    box_low = np.full((m, 3), np.iinfo(np.int64).max)
    box_high = np.zeros((m, 3), np.int64)
    for d in range(3):
        np.minimum.at(box_low[:, d], where, np.concatenate(low)[:, d])
        np.maximum.at(box_high[:, d], where, np.concatenate(high)[:, d])
    order = np.argsort(first_pixel, kind="stable")
    rank = np.zeros(m + 1, np.uint32)  # index 0: values absent from ``distinct`` (only 0)
    rank[order + 1] = np.arange(1, m + 1, dtype=np.uint32)
    boxes = np.zeros((m + 1, 2, 3), np.int64)
    boxes[1:, 0], boxes[1:, 1] = box_low[order], box_high[order]

    def read(region: Region) -> np.ndarray:
        slab = read_labels(region)
        position = np.searchsorted(distinct, slab)
        found = (position < m) & (distinct[np.minimum(position, m - 1)] == slab) if m else np.zeros(slab.shape, bool)
        return np.where(found, rank[position + 1], 0).astype(np.uint32)

    original = np.concatenate([np.zeros(1, distinct.dtype), distinct[order]])
    return ObjectIds(shape, m, boxes, read, original)


def segmentation_ids(read_segmentation: Callable[[Region], np.ndarray], shape: tuple[int, int, int], thickness: int,
                     scratch: h5py.Group | None, name: str, backend: Backend) -> ObjectIds:
    """Object ids of a segmentation: connected regions of equal non-zero value, slab by slab."""
    store = _ProvisionalStore(shape, scratch, name)
    regions = _label_slabs(read_segmentation, shape, thickness, store, backend=backend)
    return _finish(regions, store, shape, lambda count, flag: np.ones(len(count), bool))[0]
