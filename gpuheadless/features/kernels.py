"""1-D filter kernels with fastfilters' rules and rounding (spec §5.4).

Radius ``floor(window * sigma + 0.5)``. The half kernel ``c[0..r]`` is built in float64 and stored
in float32 after every step, exactly as fastfilters does, because its float32 values decide
ilastik's features bit for bit: order 0 is normalised to sum 1, order 1 so that a unit ramp gives
exactly 1, order 2 has its mean over the ``2r+1`` taps removed and is scaled so that ``x**2 / 2``
gives exactly 1. Order 1 is antisymmetric: ``out[i] = sum_k c[k] * (in[i+k] - in[i-k])``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

PRESMOOTH_WINDOW = 3.5
FEATURE_WINDOW = 2.0


def kernel_radius(sigma: float, window: float) -> int:
    """Half-width of the kernel: ``floor(window * sigma + 0.5)``, 0 for a vanishing sigma."""
    if sigma < 1e-6:
        return 0
    return int(math.floor(window * sigma + 0.5))


@dataclass(frozen=True, eq=False)
class FirKernel:
    """A symmetric or antisymmetric 1-D kernel given by its half ``c[0..r]``.

    Attributes
    ----------
    half : (r+1,) float32 array, read-only
    antisymmetric : bool
        True for the first derivative (``c[-k] = -c[k]``).
    """

    half: np.ndarray
    antisymmetric: bool

    @property
    def radius(self) -> int:
        return int(self.half.shape[0]) - 1

    @property
    def taps(self) -> np.ndarray:
        """Full correlation taps for offsets ``-r..r`` (``out[i] = sum_k taps[k] * in[i + k - r]``)."""
        mirrored = -self.half[:0:-1] if self.antisymmetric else self.half[:0:-1]
        return np.concatenate([mirrored, self.half]).astype(np.float32)


@lru_cache(maxsize=None)
def gaussian_kernel(sigma: float, order: int, window: float) -> FirKernel:
    """The Gaussian derivative kernel of ``order`` (0, 1 or 2) at ``sigma``.

    A kernel of radius 0 is the identity for every order. For a derivative that is what
    fastfilters computes, not what the maths says: its single tap is normalised by a zero
    moment and becomes NaN, and its convolution treats any radius-0 kernel whose tap is not
    "further than 1e-6 from 1" (a NaN never is) as a plain copy. ilastik's Structure Tensor
    Eigenvalues at scale 0.3 (gradients at 0.15) are computed that way.

    Raises
    ------
    ValueError
        For an unsupported order.
    """
    if order not in (0, 1, 2):
        raise ValueError(f"unsupported derivative order {order}")
    r = kernel_radius(sigma, window)
    if r == 0:
        return _frozen(np.ones(1, dtype=np.float32), False)
    exponent = -0.5 / sigma / sigma
    if order == 0:
        norm = 1.0 / (math.sqrt(2.0 * math.pi) * sigma)
    else:
        norm = -1.0 / (math.sqrt(2.0 * math.pi) * math.pow(sigma, 3))
    c = np.empty(r + 1, dtype=np.float32)
    for x in range(r + 1):
        g = norm * math.exp(float(x * x) * exponent)
        c[x] = g if order == 0 else x * g if order == 1 else (1.0 - (x / sigma) * (x / sigma)) * g
    if order == 2:
        dc = _sum_of_full_kernel(c) / (2.0 * r + 1.0)
        c[:] = [float(v) - dc for v in c]
    if order == 0:
        total = _sum_of_full_kernel(c)
    else:  # the moment of order `order` of the full kernel, divided by order!
        sign = 1.0 if order == 2 else -1.0
        total = 0.0
        for x in range(1, r + 1):
            total += float(c[x]) * math.pow(-float(x), order) / math.factorial(order)
            total += sign * float(c[x]) * math.pow(float(x), order) / math.factorial(order)
    c[:] = [float(v) / total for v in c]
    if order == 1:
        c = -c
    return _frozen(c, order == 1)


def _sum_of_full_kernel(half: np.ndarray) -> float:
    """``c[0] + 2 c[1] + 2 c[2] + ...`` accumulated left to right in float64, as fastfilters does."""
    total = float(half[0])
    for v in half[1:]:
        total += 2.0 * float(v)
    return total


def _frozen(half: np.ndarray, antisymmetric: bool) -> FirKernel:
    half.setflags(write=False)
    return FirKernel(half, antisymmetric)


def unfused_span(radius: int, x_start: int, n: int, width: int) -> tuple[int, int]:
    """Which pixels fastfilters filters along x with unfused scalar arithmetic.

    fastfilters vectorises a line of ``width`` pixels from ``ceil8(r)`` to ``(width - r) & ~31``
    (when that range holds more than one 32-pixel group) and computes the rest with scalar code.
    The filtered array covers ``[x_start, x_start + n)`` of the line.

    Returns
    -------
    (plain_below, plain_from) : array positions; pixels below the first or from the second on
    are unfused.
    """
    x_align = (radius + 7) & ~7
    vector_end = max(width - radius, 0) & ~31
    if vector_end <= ((x_align + 31) & ~31):
        return n, n
    return x_align - x_start, vector_end - x_start


def gaussian_taps(sigma: float, order: int, window: float) -> np.ndarray:
    """Full correlation taps of :func:`gaussian_kernel` (``2r+1`` float32 values)."""
    return gaussian_kernel(sigma, order, window).taps
