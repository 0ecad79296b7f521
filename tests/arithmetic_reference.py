"""Readable NumPy versions of the object stage's compiled arithmetic, for the tests: vigra's
running moment sums and the C library's powers (``objects/_cmoments.c``) and the threshold's
smoothing pass (``objects/_csmooth.c``). The compiled code must give the same bits."""
from __future__ import annotations

import math

import numpy as np

from gpuheadless.objects.features import _grouped, bincount_sums


_SPLIT = 134217729.0  # 2**27 + 1: Veltkamp's split of a double into two 26-bit halves
_WELFORD_CHUNK = 1 << 18  # padded pixels per block of objects in the running sums (about 6 float64
# temporaries of this many pixels times the columns: some 40 MB for 3 columns)


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a * b`` rounded, and its exact rounding error (Dekker), elementwise, float64."""
    product = a * b
    t = _SPLIT * a
    a_high = t - (t - a)
    a_low = a - a_high
    t = _SPLIT * b
    b_high = t - (t - b)
    b_low = b - b_high
    return product, ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low


def libm_powers(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pow(d, 3)`` and ``pow(d, 4)`` elementwise, equal to the C library's ``pow`` (vigra's).

    Parameters
    ----------
    d : (m,) float64

    Returns
    -------
    cubes, fourths : (m,) float64

    glibc's ``pow`` is correctly rounded except where the exact power lies within a tiny fraction
    of an ulp of a rounding midpoint (NumPy's vectorised ``power`` differs far more often). The
    powers are formed exactly as double-double sums; where one lies within 1/64 ulp of a midpoint
    the C library's ``math.pow`` decides.
    """
    square, square_error = _two_product(d, d)
    cube_high, cube_error = _two_product(square, d)
    cube_low = cube_error + square_error * d
    fourth_high, fourth_error = _two_product(square, square)
    fourth_low = fourth_error + 2.0 * square * square_error
    results = []
    for high, low, exponent in ((cube_high, cube_low, 3.0), (fourth_high, fourth_low, 4.0)):
        rounded = high + low
        offset = (high - rounded) + low  # exact value minus the rounded one, to well within an ulp
        ulp = np.spacing(np.abs(rounded))
        near = np.abs(np.abs(offset) - 0.5 * ulp) <= ulp / 64.0
        near |= ~np.isfinite(rounded)
        for i in np.flatnonzero(near):
            rounded[i] = math.pow(float(d[i]), exponent)
        results.append(rounded)
    return results[0], results[1]


def _object_blocks(sizes: np.ndarray) -> list[np.ndarray]:
    """Object ids grouped by similar size (within a factor 2), at most ``_WELFORD_CHUNK`` padded
    pixels a group (a larger object alone)."""
    ids = np.flatnonzero(sizes > 1)
    ids = ids[np.argsort(sizes[ids], kind="stable")]
    blocks, current, width = [], [], 0
    for i in ids:
        size = int(sizes[i])
        if current and (size > 2 * width or (len(current) + 1) * size > _WELFORD_CHUNK):
            blocks.append(np.array(current))
            current = []
        if not current:
            width = size
        current.append(i)
    if current:
        blocks.append(np.array(current))
    return blocks


def running_moment_sums(columns: np.ndarray, index: np.ndarray, n: int,
                        pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Second central moments per object as vigra's accumulators update them, pixel by pixel.

    For the j-th pixel x_j of an object (raster order; j counted from 1), with S_j the running
    float64 sum and diff = S_j / j - x_j, vigra adds ``j/(j-1) * (diff * diff)`` to
    ``Central<PowerSum<2>>`` and ``(j/(j-1) * diff_b) * diff_a`` to the scatter matrix entry
    (a, b), a <= b (Welford's update; the first pixel adds nothing). Summed in this order the
    results differ from the two-pass sums in their last bits, enough to change a float32 feature
    now and then, or the sign of an eigenvector.

    Parameters
    ----------
    columns : (pixels, k) float64
        In raster order.
    index : (pixels,) int64
        Object of each pixel, 0..n.
    n : int
    pairs : list of (a, b)
        Column pairs for the scatter matrix.

    Returns
    -------
    squares : (n + 1, k) float64
    products : (n + 1, len(pairs)) float64
    """
    k = columns.shape[1]
    squares = np.zeros((n + 1, k))
    products = np.zeros((n + 1, len(pairs)))
    grouped, starts = _grouped(columns, index, n)
    sizes = np.diff(starts)
    for ids in _object_blocks(sizes):
        width = int(sizes[ids].max())
        position = np.arange(width)
        valid = position[None, :] < sizes[ids][:, None]
        rows = np.where(valid, starts[ids][:, None] + position[None, :], 0)
        values = np.where(valid[..., None], grouped[rows], 0.0)  # (objects, width, k), zero padded
        count = position + 1.0
        diff = np.cumsum(values, axis=1) / count[None, :, None] - values
        weight = np.zeros(width)
        weight[1:] = count[1:] / (count[1:] - 1.0)
        weight = np.where(valid, weight[None, :], 0.0)[..., None]
        squares[ids] = np.cumsum(weight * (diff * diff), axis=1)[:, -1]
        for q, (a, b) in enumerate(pairs):
            low, high = min(a, b), max(a, b)
            products[ids, q] = np.cumsum((weight[..., 0] * diff[..., high]) * diff[..., low], axis=1)[:, -1]
    return squares, products


def reference_moment_sums(columns, index, n, centre, powers, pairs):
    """:func:`gpuheadless.objects.features.moment_sums` with NumPy only (the readable version)."""
    squares, products = running_moment_sums(columns, index, n, pairs)
    cubes, fourths = np.zeros_like(squares), np.zeros_like(squares)
    if powers:
        shape = columns.shape
        cube_values, fourth_values = libm_powers((columns - centre[index]).reshape(-1))
        cubes = bincount_sums(cube_values.reshape(shape), index, n)
        fourths = bincount_sums(fourth_values.reshape(shape), index, n)
    return squares, cubes, fourths, products


def mirror_indices(extent: int, radius: int) -> np.ndarray:
    """Positions -radius .. extent - 1 + radius of a line of ``extent`` samples, reflected inside it.

    Returns
    -------
    (extent + 2 radius,) int64
        vigra's reflective border (d c b | a b c d | c b a), repeated for lines shorter than the
        window; a single sample reflects onto itself.
    """
    if extent == 1:
        return np.zeros(1 + 2 * radius, dtype=np.int64)
    period = 2 * (extent - 1)
    position = np.arange(-radius, extent + radius) % period
    return np.where(position < extent, position, period - position)


_CHUNK_VALUES = 1 << 20  # keeps the float64 sums of one pass to a few MB, whatever the slab


def smooth_axis(values: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    """One pass along ``axis`` of a (Z, Y, X, C) float32 array: in float64, ``tap * value`` added
    from the leftmost offset to the rightmost, starting from 0 (vigra's convolveLine), rounded to
    float32.

    Summing term by term (not through SciPy's correlate) keeps NaN and Inf where vigra keeps
    them: a NaN reaches exactly the samples within the window, an Inf stays infinite.
    """
    extent = values.shape[axis]
    reflected = mirror_indices(extent, len(taps) // 2)
    out = np.empty(values.shape, dtype=np.float32)
    split = 3 if axis == 0 else 0  # cut along another axis so the float64 sums stay small
    per_row = values.size // max(values.shape[split], 1)
    rows = max(1, _CHUNK_VALUES // max(per_row, 1))
    for first in range(0, values.shape[split], rows):
        piece = (slice(None),) * split + (slice(first, first + rows),)
        padded = np.take(values[piece], reflected, axis=axis)
        window = [slice(None)] * values.ndim
        window[axis] = slice(0, extent)
        total = np.zeros(padded[tuple(window)].shape, dtype=np.float64)
        term = np.empty_like(total)
        for k, tap in enumerate(taps):
            window[axis] = slice(k, k + extent)
            term[...] = padded[tuple(window)]
            term *= tap
            total += term
        out[piece] = total
    return out
