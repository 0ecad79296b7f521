"""1-D filter taps with fastfilters' rules (spec §5.4).

Radius ``floor(window * sigma + 0.5)``; order 0 normalised to sum 1, order 1 so that a unit ramp
gives exactly 1, order 2 DC-corrected so that ``x**2 / 2`` gives exactly 1. Taps are for
correlation (``out[i] = sum_k taps[k] * in[i + k - r]``).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

PRESMOOTH_WINDOW = 3.5
FEATURE_WINDOW = 2.0


def kernel_radius(sigma: float, window: float) -> int:
    """Half-width of the kernel: ``floor(window * sigma + 0.5)``, 0 for a vanishing sigma."""
    if sigma < 1e-6:
        return 0
    return int(math.floor(window * sigma + 0.5))


@lru_cache(maxsize=None)
def gaussian_taps(sigma: float, order: int, window: float) -> np.ndarray:
    """Taps of the Gaussian derivative of ``order`` (0, 1 or 2) at ``sigma``.

    Returns
    -------
    (2r+1,) float32 array, read-only.

    Raises
    ------
    ValueError
        For a derivative kernel of radius 0 (fastfilters cannot compute it either).
    """
    r = kernel_radius(sigma, window)
    if r == 0:
        if order != 0:
            raise ValueError(f"a derivative of order {order} at sigma {sigma} has no support (radius 0)")
        taps = np.ones(1)
    else:
        x = np.arange(-r, r + 1, dtype=np.float64)
        g = np.exp(-(x * x) / (2.0 * sigma * sigma))
        if order == 0:
            taps = g / g.sum()
        elif order == 1:
            taps = x * g / np.sum(x * x * g)
        elif order == 2:
            h = (x * x / (sigma * sigma) - 1.0) * g
            h -= h.mean()
            taps = h / np.sum(0.5 * x * x * h)
        else:
            raise ValueError(f"unsupported derivative order {order}")
    out = taps.astype(np.float32)
    out.setflags(write=False)
    return out
