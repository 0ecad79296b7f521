"""Hand strided NumPy arrays to the compiled kernels without copying."""
from __future__ import annotations

import numpy as np


def strided_float32_span(array: np.ndarray) -> memoryview:
    """The flat float32 buffer from ``array``'s first element to its last, for strided reads.

    The compiled kernels take this buffer plus the array's element strides. Strides must be
    non-negative multiples of 4 bytes.
    """
    if array.dtype != np.float32:
        raise ValueError(f"expected float32, got {array.dtype}")
    if any(s < 0 or s % 4 for s in array.strides):
        raise ValueError("strides must be non-negative multiples of 4 bytes")
    if array.flags.c_contiguous:
        return memoryview(array.reshape(-1))
    count = sum((n - 1) * (s // 4) for n, s in zip(array.shape, array.strides)) + 1
    start = array.__array_interface__["data"][0]
    flat = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_float * count).from_address(start))
    return memoryview(flat)
