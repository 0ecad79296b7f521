"""CPU entry point of the fastfilters-exact FIR correlation (the compiled ``_cfilters``)."""
from __future__ import annotations

import numpy as np

from ..buffers import strided_float32_span
from . import _cfilters
from .kernels import FirKernel


def correlation_operands(xp, array, axis: int, unfused: tuple[int, int] | None):
    """The operands of one correlation pass, as every implementation of it takes them.

    Returns the (Z, Y, X) float32 input (copied only if x is not contiguous or a stride is not
    a whole number of floats), an empty output, and the unfused span ``(below, from)`` along x
    (``(0, n)``, none, for the other axes).
    """
    array = xp.asarray(array, dtype=xp.float32)
    if array.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) array, got shape {array.shape}")
    if array.strides[2] != 4 or any(s < 0 or s % 4 for s in array.strides):
        array = xp.ascontiguousarray(array)
    out = xp.empty(array.shape, dtype=xp.float32)
    span = unfused if unfused is not None and axis == 2 else (0, array.shape[2])
    return array, out, span


def correlate_fastfilters(
    array: np.ndarray, kernel: FirKernel, axis: int, unfused: tuple[int, int] | None = None
) -> np.ndarray:
    """Correlate a float32 volume with ``kernel`` along ``axis`` exactly as fastfilters does.

    Parameters
    ----------
    array : (Z, Y, X) float32 array
        Any positive strides along z and y; x must be contiguous (otherwise it is copied).
    kernel : FirKernel
    axis : int
        0, 1 or 2 (x).
    unfused : (below, from), optional
        Along x: positions computed with unfused scalar arithmetic; default none.

    Returns
    -------
    (Z, Y, X) float32, C-contiguous.
    """
    array, out, (below, start) = correlation_operands(np, array, axis, unfused)
    if out.size == 0:
        return out
    n0, n1, n2 = array.shape
    _cfilters.correlate(
        strided_float32_span(array), out, kernel.half, array.strides[0] // 4, array.strides[1] // 4, n0, n1, n2, axis,
        kernel.antisymmetric, below, start,
    )
    return out

