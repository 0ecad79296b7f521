"""vigra's region features as ilastik's "Standard Object Features" (spec/object-classification.md §3.3-§3.4).

Images are ``(X, Y, Z, C)`` float32 and label images ``(X, Y, Z)`` with objects 1..n, as ilastik
hands them to vigra; coordinates are pixel indices in x, y(, z) order. Every feature is an array
``(n + 1, width)``, row 0 the background (zeros), computed in float64 and stored as float32.
"""
from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
from scipy import ndimage

from .eigensystem import symmetric_eigensystem

if TYPE_CHECKING:
    from ..backend import Backend

try:
    from . import _cmoments
except ImportError:  # a broken install: moment_sums says so
    _cmoments = None
try:
    from . import _cneighbourhood
except ImportError:  # not built: scipy's distance transform gives the same neighbourhoods, slower
    _cneighbourhood = None

LOCAL = ("Mean", "Variance", "Skewness", "Kurtosis", "Minimum", "Maximum", "Sum", "Covariance", "Histogram")
BINS = 64
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
NEIGHBOURHOOD_SUFFIX = " in neighborhood"


def _descending_eigen(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns in that order) of symmetric matrices,
    with vigra's method, so the vectors' signs are vigra's."""
    values = np.empty(matrices.shape[:-1])
    vectors = np.empty(matrices.shape)
    for i, matrix in enumerate(matrices):
        values[i], vectors[i] = symmetric_eigensystem(matrix)
    return values, vectors


def _grouped(columns: np.ndarray, index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``columns`` with the pixels grouped by object (raster order kept within each) and where
    each object starts: rows ``starts[i]:starts[i + 1]`` are object i's. Shapes (m, k), (n + 2,)."""
    sizes = np.bincount(index, minlength=n + 1)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    if index.size and np.any(index[1:] < index[:-1]):
        columns = columns[np.argsort(index, kind="stable")]
    return np.ascontiguousarray(columns, dtype=np.float64), starts


def moment_sums(columns: np.ndarray, index: np.ndarray, n: int, centre: np.ndarray, powers: bool,
                pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per object the central moment sums as vigra forms them, in one compiled pass.

    Parameters
    ----------
    columns : (pixels, k) float64
        In raster order.
    index : (pixels,) int64
        Object of each pixel, 0..n.
    n : int
    centre : (n + 1, k) float64
        Each object's mean (used for the powers only).
    powers : bool
        Whether to form the third and fourth powers (zeros otherwise).
    pairs : list of (a, b)
        Column pairs for the scatter matrix.

    Returns
    -------
    squares, cubes, fourths : (n + 1, k) float64
        The running sums of running updates of vigra's accumulators; the sums of ``pow(d, 3)`` and
        ``pow(d, 4)`` with the C library's ``pow``, d = column - centre.
    products : (n + 1, len(pairs)) float64
        The scatter sums of those updates, per pair of columns.

    Bit-identical to vigra's accumulators, pixel by pixel; the readable NumPy version the tests
    check it against is ``tests/arithmetic_reference.py``.
    """
    k = columns.shape[1]
    if _cmoments is None:
        raise ImportError("gpuheadless.objects._cmoments is not built: reinstall gpuheadless (pip install .)")
    grouped, starts = _grouped(columns, index, n)
    squares, cubes, fourths = (np.zeros((n + 1, k)) for _ in range(3))
    products = np.zeros((n + 1, len(pairs)))
    _cmoments.moments(grouped, starts, np.ascontiguousarray(centre, dtype=np.float64),
                      np.asarray(pairs, dtype=np.int64).reshape(-1, 2), squares, cubes, fourths, products, k,
                      bool(powers))
    return squares, cubes, fourths, products


def bincount_sums(columns: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """``(n + 1, k)``: per object the sum of each column of ``columns`` (pixels, k) float64, each
    object's pixels added in raster order as vigra adds them (the CPU's per-object sums)."""
    return np.stack([np.bincount(index, columns[:, c], n + 1) for c in range(columns.shape[1])], axis=1)


def centred_sums(columns: np.ndarray, index: np.ndarray, n: int, centre: np.ndarray, powers: bool,
                 pairs: list[tuple[int, int]]) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Per object the central moment sums as vigra forms them (the CPU's).

    Returns ``({2: squares, 3: cubes, 4: fourths}, products)``: squares (n + 1, k) and the
    scatter products (n + 1, len(pairs)) by vigra's running updates; when ``powers``, the
    sums of ``pow(d, 3)`` and ``pow(d, 4)`` (the C library's), d = column - ``centre``
    (vigra's second pass over the pixels); without ``powers`` the moments are {}.
    (:func:`moment_sums` does all of it.)
    """
    squares, cubes, fourths, products = moment_sums(columns, index, n, centre, powers, pairs)
    if not powers:
        return {}, products
    return {2: squares, 3: cubes, 4: fourths}, products


def _libm_pow(values: np.ndarray, exponent: float) -> np.ndarray:
    """``pow`` of the C library elementwise (NumPy's vectorised power may differ in the last bit)."""
    flat = [math.pow(v, exponent) if v >= 0 else math.nan for v in values.reshape(-1).tolist()]
    return np.array(flat, dtype=np.float64).reshape(values.shape)


def _intensity_stats(values: np.ndarray, index: np.ndarray, n: int, names: set[str],
                     value_range: tuple[float, float] | None,
                     backend: Backend | None, own_range: bool = False) -> dict[str, np.ndarray]:
    """Per-label statistics of ``values`` (pixels, C) for labels ``index`` in 0..n (row 0 unused).

    The histogram range is ``value_range``, else that of all labelled pixels; with ``own_range``
    each label's own (min, max), as separate vigra calls per label give. ``backend`` makes the
    per-object sums (the CPU's or the GPU's, the same values); None makes them here, on the host.
    """
    out: dict[str, np.ndarray] = {}
    count = np.bincount(index, minlength=n + 1).astype(np.float64)
    safe = np.where(count > 0, count, 1.0)
    channels = values.shape[1]
    extremes = None
    on_host = backend is None or backend.kernels is None
    if on_host and _cmoments is not None and (index.size < 2 or np.all(index[1:] >= index[:-1])):
        # pixels already grouped by object (the neighbourhoods): sums, minima and maxima in one
        # compiled pass, outside the GIL, with bincount's and vigra's order of operations
        sums, low, high = (np.zeros((n + 1, channels)) for _ in range(3))
        starts = np.concatenate([[0], np.cumsum(count.astype(np.int64))]).astype(np.int64)
        _cmoments.segments(np.ascontiguousarray(values, dtype=np.float64), starts, sums, low, high, channels)
        extremes = {"Minimum": low, "Maximum": high}
    else:
        sums = bincount_sums(values, index, n) if on_host else backend.object_sums(values, index, n)
    mean = sums / safe[:, None]
    covariance = channels > 1 and bool(names & {"Covariance", "PrincipalAxes"})
    pairs = [(a, b) for a in range(channels) for b in range(channels)] if covariance else []
    moments, products = (centred_sums if on_host else backend.centred_sums)(values, index, n, mean, True, pairs)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["Sum"] = sums
        out["Mean"] = mean
        out["Variance"] = moments[2] / safe[:, None]
        out["Skewness"] = np.sqrt(count)[:, None] * moments[3] / _libm_pow(moments[2], 1.5)
        out["Kurtosis"] = count[:, None] * moments[4] / moments[2] ** 2 - 3.0
    histogram = channels == 1 and bool(names & {"Histogram", "Quantiles"})
    if names & {"Minimum", "Maximum"} or histogram:
        out.update(extremes or _extremes(values, index, n))
    if covariance:
        out["Covariance"] = products / safe[:, None]
        # vigra takes the eigenvectors of the scatter matrix, not of the covariance (signs differ).
        out["PrincipalAxes"] = _descending_eigen(products.reshape(n + 1, channels, channels))[1].reshape(n + 1, -1)
    if histogram:
        if own_range:
            low, high = out["Minimum"][:, 0], out["Maximum"][:, 0]
        else:
            low, high = value_range or labelled_range(values[:, 0], index) or (0.0, 0.0)
        out.update(_histogram_features(values[:, 0], index, n, count, out, low, high, "Quantiles" in names))
    out["Count"] = count[:, None]
    return out


def _extremes(values: np.ndarray, index: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """``Minimum`` and ``Maximum`` (n + 1, C) per label (inf and -inf where a label has no pixel).

    NaN pixels are passed over, as by vigra's accumulators (``std::min``/``std::max`` keep the
    running value when compared with a NaN).
    """
    channels = values.shape[1]
    low = np.full((n + 1, channels), np.inf)
    high = np.full((n + 1, channels), -np.inf)
    for c in range(channels):
        np.fmin.at(low[:, c], index, values[:, c])
        np.fmax.at(high[:, c], index, values[:, c])
    return {"Minimum": low, "Maximum": high}


def labelled_range(values: np.ndarray, labels: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of ``values`` over the pixels whose label is not 0, NaN passed over as by vigra,
    or None if there are none."""
    labelled = values[labels != 0]
    labelled = labelled[~np.isnan(labelled)]
    return (float(labelled.min()), float(labelled.max())) if labelled.size else None


def _histogram_features(values: np.ndarray, index: np.ndarray, n: int, count: np.ndarray,
                        stats: dict[str, np.ndarray], low: float | np.ndarray, high: float | np.ndarray,
                        quantiles: bool = True) -> dict[str, np.ndarray]:
    """vigra's 64-bin histograms over the range [low, high] (one for all labels, or (n + 1,) one
    per label), and the quantiles interpolated from them (spec §3.3); ``stats`` holds the
    labels' Minimum and Maximum."""
    low = np.broadcast_to(np.asarray(low, dtype=np.float64), (n + 1,))
    high = np.broadcast_to(np.asarray(high, dtype=np.float64), (n + 1,))
    high = np.where(high == low, high + BINS * 2.0**-52, high)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = BINS / (high - low)  # inf / nan only on labels with no pixel
    position = scale[index] * (values - low[index])
    counted = ~np.isnan(position)  # vigra counts a NaN as an outlier, in no bin
    bins = np.where(position == BINS, BINS - 1, np.floor(position))[counted].astype(np.int64)
    bins = np.clip(bins, 0, BINS - 1)
    histogram = np.zeros((n + 1, BINS))
    np.add.at(histogram, (index[counted], bins), 1.0)
    result = {"Histogram": histogram}
    if quantiles:
        result["Quantiles"] = _quantiles(histogram, count, stats["Minimum"][:, 0], stats["Maximum"][:, 0], low, scale)
    return result


def _quantiles(histogram: np.ndarray, count: np.ndarray, minimum: np.ndarray, maximum: np.ndarray,
               low: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(n + 1, 7): per label its minimum, the QUANTILES interpolated from its histogram, its maximum."""
    quantiles = np.zeros((len(histogram), len(QUANTILES) + 2))
    for i in range(1, len(histogram)):
        if count[i] == 0:
            continue
        lo, hi = minimum[i], maximum[i]
        keys, cumulative, running = [scale[i] * (lo - low[i])], [0.0], 0.0
        for k in np.nonzero(histogram[i])[0]:
            if keys[-1] <= k:
                keys.append(float(k))
                cumulative.append(running)
            running += histogram[i, k]
            keys.append(float(k + 1))
            cumulative.append(running)
        keys[-1], cumulative[-1] = scale[i] * (hi - low[i]), count[i]
        row = [lo]
        for q in QUANTILES:
            target = count[i] * q
            for p in range(len(keys) - 1):
                if cumulative[p] < target <= cumulative[p + 1]:
                    fraction = (target - cumulative[p]) / (cumulative[p + 1] - cumulative[p])
                    row.append(low[i] + (keys[p] + fraction * (keys[p + 1] - keys[p])) / scale[i])
                    break
            else:
                row.append(lo)
        row.append(hi)
        quantiles[i] = row
    return quantiles


def standard_features(image: np.ndarray, labels: np.ndarray, names: Sequence[str], exclusive_max: bool = True,
                      dtype: type = np.float32, origin: Sequence[int] = (0, 0, 0),
                      value_range: tuple[float, float] | None = None, dims: int | None = None,
                      *, backend: Backend) -> dict[str, np.ndarray]:
    """The selected standard features of every object.

    Parameters
    ----------
    image : (X, Y, Z, C) array
    labels : (X, Y, Z) integer array, objects 1..n
    names : feature names (vigra's, without spaces)
    exclusive_max : bool
        ``Coord<Maximum>`` as max + 1 (ilastik since 2019) or the inclusive max (older projects).
    dtype : type
        float32, as ilastik stores plugin features, or float64, as it keeps its default features.
    origin : (x, y, z)
        Where ``image`` and ``labels`` sit in the time point, when they are a crop of it holding
        whole objects: coordinates are the time point's, and each object's pixels are summed in
        the same order as over the whole image, so the values are bit-identical.
    value_range : (min, max), optional
        The histogram range: the time point's labelled pixels' (required for a crop).
    dims : int, optional
        2 or 3; by default 2 when the z extent is 1 (give it for a crop of a 3D image).
    backend : Backend
        Where the per-object sums are made: on the CPU, or through the GPU's kernels (the same values).
    """
    names = set(names)
    n = int(labels.max()) if labels.size else 0
    dims = dims or (2 if labels.shape[2] == 1 else 3)
    # Only object pixels, in vigra's scan order (x fastest, then y, then z): every object's sums
    # add the same values in the same order as vigra's accumulators.
    flat_labels = labels.reshape(-1, order="F")
    flat = np.flatnonzero(flat_labels)
    index = flat_labels[flat].astype(np.int64)
    values = image.reshape(-1, image.shape[-1], order="F")[flat].astype(np.float64)
    if value_range is None and image.shape[-1] == 1:
        value_range = labelled_range(values[:, 0], index)
    out = _intensity_stats(values, index, n, names, value_range, backend)
    spatial = labels.shape if dims == 3 else labels.shape[:2]
    grids = np.stack(np.unravel_index(flat, spatial, order="F"), axis=1).astype(np.float64)
    grids += np.asarray(origin[:dims], dtype=np.float64)
    count = out["Count"][:, 0]
    safe = np.where(count > 0, count, 1.0)
    center = backend.object_sums(grids, index, n) / safe[:, None]
    out["RegionCenter"] = center
    _, products = backend.centred_sums(grids, index, n, center, False,
                                      [(a, b) for a in range(dims) for b in range(dims)])
    scatter_values, axes = _descending_eigen(products.reshape(n + 1, dims, dims))
    with np.errstate(invalid="ignore"):
        out["RegionRadii"] = np.sqrt(scatter_values / safe[:, None])
    out["RegionAxes"] = axes.reshape(n + 1, -1)
    boxes = ndimage.find_objects(labels.astype(np.int64) if labels.dtype.kind != "i" else labels)
    low = np.zeros((n + 1, dims))
    high = np.zeros((n + 1, dims))
    for i, box in enumerate(boxes, start=1):
        if box is not None:
            low[i] = [s.start + o for s, o in zip(box[:dims], origin)]
            high[i] = [s.stop + o - (0 if exclusive_max else 1) for s, o in zip(box[:dims], origin)]
    out["Coord<Minimum>"] = low
    out["Coord<Maximum>"] = high
    result = {}
    for name in names:
        if name in out:
            array = np.asarray(out[name], dtype=np.float64)
            array[0] = 0.0
            result[name] = array.astype(dtype)
    return result


def neighbourhood_features(image: np.ndarray, labels: np.ndarray, names: Sequence[str], margins: Sequence[int],
                           exclusive_max: bool = True, count: int | None = None,
                           dims: int | None = None, threads: int = 1) -> dict[str, np.ndarray]:
    """``<feature> in neighborhood`` for the selected local features (spec §3.4).

    The neighbourhood of an object is the set of pixels closer than ``max(margins)`` to it in a
    distance with per-axis pitch ``floor(max(margins) / margin_axis)``, minus the object itself
    (other objects included), inside the object's box widened by the margins. Its pixels are
    taken in vigra's scan order (x fastest), and each object's statistics are those of a vigra
    call of its own (its own histogram range); objects are computed together, a few at a time.

    ``count`` limits the objects computed to 1..count (labels above are context only, as other
    objects are); the crop must then reach the margins (and one pixel more on the high side)
    beyond those objects or the image border. ``dims`` as in :func:`standard_features`;
    ``threads`` objects' neighbourhoods are found at once.

    Returns
    -------
    dict
        ``"<name> in neighborhood"`` -> (n + 1, width) float32, row 0 zeros.
    """
    wanted = [name for name in names if name in LOCAL]
    n = count if count is not None else int(labels.max()) if labels.size else 0
    dims = dims or (2 if labels.shape[2] == 1 else 3)
    channels = image.shape[-1]
    tables = {name: np.zeros((n + 1, _local_width(name, channels))) for name in wanted}
    if not wanted:
        return {}
    boxes = ndimage.find_objects(labels.astype(np.int64))
    contexts = _contexts(image, labels, boxes, n, margins, exclusive_max, dims, threads)
    pending: list[tuple[int, np.ndarray]] = []
    held = 0
    for i, values in enumerate(contexts, start=1):  # in object order, as they are computed
        pending.append((i, values))
        held += len(values)
        if held >= _NEIGHBOURHOOD_CHUNK or i == n:
            _local_rows(pending, set(wanted), channels, tables)
            pending, held = [], 0
    return {name + NEIGHBOURHOOD_SUFFIX: table.astype(np.float32) for name, table in tables.items()}


def _contexts(image: np.ndarray, labels: np.ndarray, boxes: list, n: int, margins: Sequence[int], exclusive_max: bool,
              dims: int, threads: int) -> Iterator[np.ndarray]:
    """Each object's neighbourhood values (see :func:`_context_values`), objects 1..n in order.

    When the (X, Y, Z) arrays are views of C-contiguous (z, y, x) ones (the batches' layout), the
    compiled transform computes them outside the GIL, ``threads`` objects at a time.
    """
    labels_zyx, image_zyxc = labels.transpose(2, 1, 0), image.transpose(2, 1, 0, 3)
    if not (_cneighbourhood is not None and labels_zyx.flags.c_contiguous and labels_zyx.dtype == np.int64
            and image_zyxc.flags.c_contiguous and image_zyxc.dtype == np.float32):
        return (_context_values(image, labels, i, boxes[i - 1], margins, exclusive_max, dims) for i in range(1, n + 1))

    def one(i: int) -> np.ndarray:
        return _context_values_compiled(image_zyxc, labels_zyx, i, boxes[i - 1], margins, exclusive_max, dims)

    if threads <= 1 or n < 2:
        return map(one, range(1, n + 1))
    return _ordered(one, n, threads)


def _ordered(one, n: int, threads: int) -> Iterator[np.ndarray]:
    """``one(1), ..., one(n)`` computed on ``threads`` threads, a few ahead only (their values wait
    in memory until taken)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        ahead = deque(pool.submit(one, i) for i in range(1, min(n, 4 * threads) + 1))
        following = len(ahead) + 1
        while ahead:
            values = ahead.popleft().result()
            if following <= n:
                ahead.append(pool.submit(one, following))
                following += 1
            yield values


def _context_box(box: tuple[slice, ...], margins: Sequence[int], exclusive_max: bool, dims: int,
                 shape: Sequence[int]) -> tuple[tuple[slice, ...], np.ndarray, int]:
    """(crop in x, y[, z], pitch per axis x, y[, z], reach) of an object's neighbourhood."""
    margins = np.asarray(list(margins)[:dims], dtype=np.int64)
    reach = int(margins.max())
    pitch = np.floor(reach / margins).astype(np.float64)
    # ilastik widens the box from the stored Coord<Maximum>; the exclusive one adds a pixel.
    crop = tuple(slice(max(s.start - m, 0), min(s.stop - 1 + (1 if exclusive_max else 0) + 1 + m, size))
                 for s, m, size in zip(box[:dims], margins, shape[:dims]))
    return crop, pitch, reach


def _context_values_compiled(image_zyxc: np.ndarray, labels_zyx: np.ndarray, i: int, box: tuple[slice, ...] | None,
                             margins: Sequence[int], exclusive_max: bool, dims: int) -> np.ndarray:
    """:func:`_context_values` by the compiled transform, on the C-contiguous (z, y, x) arrays."""
    channels = image_zyxc.shape[-1]
    if box is None:
        return np.zeros((0, channels))
    crop, pitch, reach = _context_box(box, margins, exclusive_max, dims, labels_zyx.shape[::-1])
    if dims == 2:
        crop, pitch = crop + (slice(0, 1),), np.append(pitch, 1.0)
    (x0, x1), (y0, y1), (z0, z1) = ((c.start, c.stop) for c in crop)
    Z, Y, X = labels_zyx.shape
    raw = _cneighbourhood.context_values(labels_zyx, image_zyxc, Z, Y, X, channels, i, z0, y0, x0, z1, y1, x1,
                                         int(pitch[2]), int(pitch[1]), int(pitch[0]), reach)
    return np.frombuffer(raw, dtype=np.float64).reshape(-1, channels)


_NEIGHBOURHOOD_CHUNK = 1 << 19  # context pixels whose statistics are computed in one go (some 8 MB a
# float64 channel, a few temporaries of it)


def _local_width(name: str, channels: int) -> int:
    return channels * channels if name == "Covariance" else BINS if name == "Histogram" else channels


def _context_values(image: np.ndarray, labels: np.ndarray, i: int, box: tuple[slice, ...] | None,
                    margins: Sequence[int], exclusive_max: bool, dims: int) -> np.ndarray:
    """(pixels, C) float64: the intensities of object i's neighbourhood, x fastest."""
    channels = image.shape[-1]
    if box is None:
        return np.zeros((0, channels))
    crop, pitch, reach = _context_box(box, margins, exclusive_max, dims, labels.shape)
    if dims == 2:
        crop = crop + (0,)
    inside = labels[crop] == i
    distance = ndimage.distance_transform_edt(~inside, sampling=pitch)
    context = (distance < reach) & ~inside
    values = image[crop].reshape(-1, channels, order="F")
    return values[context.reshape(-1, order="F")].astype(np.float64)


def _local_rows(pending: list[tuple[int, np.ndarray]], wanted: set[str], channels: int,
                tables: dict[str, np.ndarray]) -> None:
    """The statistics of each (object id, context values) of ``pending`` into its row of ``tables``."""
    ids = np.array([i for i, _ in pending])
    values = np.concatenate([chosen for _, chosen in pending]) if pending else np.zeros((0, channels))
    index = np.repeat(np.arange(1, len(pending) + 1), [len(chosen) for _, chosen in pending])
    stats = _intensity_stats(values, index, len(pending), wanted, None, None, own_range=True)  # on the host
    for name, table in tables.items():
        table[ids] = stats[name][1:].reshape(len(pending), -1)
