"""CPU entry point of the fastfilters-exact FIR correlation (the compiled ``_cfilters``)."""
from __future__ import annotations

import numpy as np

from ..buffers import strided_float32_span
from . import _cfilters
from .kernels import FirKernel


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
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) array, got shape {array.shape}")
    if array.strides[2] != 4 or array.strides[0] < 0 or array.strides[1] < 0 or array.strides[0] % 4 or array.strides[1] % 4:
        array = np.ascontiguousarray(array)
    n0, n1, n2 = array.shape
    out = np.empty(array.shape, dtype=np.float32)
    if out.size == 0:
        return out
    below, start = unfused if unfused is not None and axis == 2 else (0, n2)
    _cfilters.correlate(
        strided_float32_span(array), out, kernel.half, array.strides[0] // 4, array.strides[1] // 4, n0, n1, n2, axis,
        kernel.antisymmetric, below, start,
    )
    return out

