"""ilastik's "Threshold and Size Filter" settings and its smoothing (spec/object-classification.md §2).

The thresholding, size filter and labelling themselves run slab by slab in :mod:`.labeling`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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


def _sequential_taps(taps: np.ndarray) -> np.ndarray:
    """``taps`` with a zero in front, for SciPy's correlate1d.

    An odd symmetric kernel makes SciPy add mirrored pairs first; an even, asymmetric one takes
    its general loop, which adds ``tap * value`` from the leftmost offset to the rightmost, as
    vigra's convolveLine does (the leading 0 * value adds nothing; SciPy centres an even kernel
    of length 2r + 2 on index r + 1, the original centre).
    """
    return np.concatenate([[0.0], taps])


def smooth(prediction: np.ndarray, sigmas: tuple[float, float, float], axes: tuple[int, ...] | None = None) -> np.ndarray:
    """vigra's ``gaussianSmoothing`` (window 2.0, mirror borders) as ilastik's Threshold and Size
    Filter calls it, bit for bit.

    Parameters
    ----------
    prediction : (Z, Y, X, C) array
        Cast to float32.
    sigmas : (z, y, x) floats
    axes : tuple of int, optional
        The spatial axes to smooth (those longer than 1 of the whole image, when ``prediction``
        is a slab of it); by default those longer than 1 here. If any of their sigmas is below
        0.1 nothing is smoothed.

    Returns
    -------
    (Z, Y, X, C) float32
        One pass per axis, x first, then y, then z (vigra's axis order), each summed in float64
        from the leftmost tap and rounded to float32 before the next pass.
    """
    if axes is None:
        axes = tuple(a for a in range(3) if prediction.shape[a] > 1)
    if any(sigmas[a] < 0.1 for a in axes):
        return prediction.astype(np.float32)
    out = prediction.astype(np.float32)
    for a in sorted(axes, reverse=True):
        out = ndimage.correlate1d(out, _sequential_taps(gaussian_taps(sigmas[a])), axis=a, mode="mirror",
                                  output=np.float32)
    return out


def gpu_smoother(kernels, xp):
    """:func:`smooth` through the CUDA kernel of ``kernels`` (bit-identical to the CPU's). The result
    stays on the device: the threshold is applied there and the mask labelled there."""

    def smooth_on_device(prediction: np.ndarray, sigmas: tuple[float, float, float],
                         axes: tuple[int, ...] | None = None) -> np.ndarray:
        if axes is None:
            axes = tuple(a for a in range(3) if prediction.shape[a] > 1)
        out = xp.asarray(prediction, dtype=xp.float32)
        if any(sigmas[a] < 0.1 for a in axes):
            return out
        for a in sorted(axes, reverse=True):
            out = kernels.smooth_pass(out, gaussian_taps(sigmas[a]), a)
        return out

    return smooth_on_device
