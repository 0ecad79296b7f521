"""ilastik's "Threshold and Size Filter" settings and its smoothing (spec/object-classification.md §2).

The thresholding, size filter and labelling themselves run slab by slab in :mod:`.labeling`.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

try:
    from . import _csmooth
except ImportError:  # a broken install: _smooth_pass says so
    _csmooth = None

SIMPLE, HYSTERESIS = 0, 1


@dataclass(frozen=True)
class ThresholdSettings:
    """The project's ``ThresholdTwoLevels`` group."""

    method: int = SIMPLE
    low: float = 0.5
    high: float = 0.8
    channel: int = 0
    core_channel: int = 0
    min_size: int = 10
    max_size: int = 1000000
    sigmas: tuple[float, float, float] = (1.0, 1.0, 1.0)  # z, y, x


def smoothing_radius(sigma: float) -> int:
    """Half the width of vigra's Gaussian window for ``sigma`` (window ratio 2.0, at least 1)."""
    return max(int(2.0 * sigma + 0.5), 1)


def gaussian_taps(sigma: float) -> np.ndarray:
    """vigra's normalised Gaussian kernel for ``sigma`` (``Kernel1D.initGaussian``, window 2.0).

    Returns
    -------
    (2 r + 1,) float64
        Taps for offsets -r..r, r = :func:`smoothing_radius`. Each raw tap is
        ``1/sqrt(2 pi)/sigma * exp(x*x * (-0.5/sigma/sigma))``; the taps are summed left to right
        and multiplied by the reciprocal of that sum. Scalar ``math`` calls (the C library's
        ``exp``, as vigra's), not NumPy's vectorised ones, whose last bit may differ.
    """
    radius = smoothing_radius(sigma)
    norm = 1.0 / math.sqrt(2.0 * math.pi) / sigma
    exponent = -0.5 / sigma / sigma
    raw = [norm * math.exp(x * x * exponent) for x in map(float, range(-radius, radius + 1))]
    total = 0.0
    for tap in raw:
        total += tap
    factor = 1.0 / total
    return np.array([tap * factor for tap in raw])


def smooth(prediction: np.ndarray, sigmas: tuple[float, float, float], axes: tuple[int, ...] | None = None,
           threads: int = 1) -> np.ndarray:
    """vigra's ``gaussianSmoothing`` (window 2.0, mirror borders) as ilastik's Threshold and Size
    Filter calls it, bit for bit, NaN and Inf included.

    Parameters
    ----------
    prediction : (Z, Y, X, C) array
        Cast to float32.
    sigmas : (z, y, x) floats
    axes : tuple of int, optional
        The spatial axes to smooth (those longer than 1 of the whole image, when ``prediction``
        is a slab of it); by default those longer than 1 here. If any of their sigmas is below
        0.1 nothing is smoothed.
    threads : int
        Threads sharing each pass's independent lines (the same values for any number).

    Returns
    -------
    (Z, Y, X, C) float32
        One pass per axis, x first, then y, then z (vigra's axis order), each summed in float64
        from the leftmost tap and rounded to float32 before the next pass.
    """
    if axes is None:
        axes = tuple(a for a in range(3) if prediction.shape[a] > 1)
    out = prediction.astype(np.float32)
    if any(sigmas[a] < 0.1 for a in axes):
        return out
    for a in sorted(axes, reverse=True):
        out = _smooth_pass(out, gaussian_taps(sigmas[a]), a, threads)
    return out


def _smooth_pass(values: np.ndarray, taps: np.ndarray, axis: int, threads: int = 1) -> np.ndarray:
    """One smoothing pass along ``axis`` by the C extension (its readable NumPy version is
    ``tests/arithmetic_reference.py``), the
    lines before the axis shared by ``threads`` threads (the extension releases the GIL)."""
    if _csmooth is None:
        raise ImportError("gpuheadless.objects._csmooth is not built: reinstall gpuheadless (pip install .)")
    values = np.ascontiguousarray(values, dtype=np.float32)
    out = np.empty_like(values)
    shape = values.shape
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    flat_in, flat_out = values.reshape(outer, -1), out.reshape(outer, -1)
    taps = np.ascontiguousarray(taps, dtype=np.float64)

    def part(bounds: tuple[int, int]) -> None:
        first, last = bounds
        _csmooth.smooth_pass(flat_in[first:last], flat_out[first:last], taps, last - first, shape[axis], inner)

    parts = min(max(threads, 1), outer)
    bounds = [(outer * k // parts, outer * (k + 1) // parts) for k in range(parts)]
    if parts == 1:
        part(bounds[0])
    else:
        with ThreadPoolExecutor(max_workers=parts) as pool:
            list(pool.map(part, bounds))
    return out
