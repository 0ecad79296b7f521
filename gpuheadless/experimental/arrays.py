"""The kinds of arrays the Python API takes, told apart without importing their libraries.

xarray (dims name the axes), NumPy and anything NumPy can read (``axes=`` names them), Dask
(lazy) and CuPy (on the GPU). A result goes back in the kind of array given.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np

from ..pipeline.in_memory import ArrayAxesError, check_axes

Wrap = Callable[[Any, str], Any]


def is_dask(data: Any) -> bool:
    """A ``dask.array.Array``."""
    return type(data).__module__.startswith("dask.")


def is_cupy(data: Any) -> bool:
    """A ``cupy.ndarray`` (or anything else that says it lives in CUDA memory)."""
    return type(data).__module__.startswith("cupy") or hasattr(data, "__cuda_array_interface__")


def is_xarray(data: Any) -> bool:
    """An ``xarray.DataArray``."""
    return type(data).__module__.startswith("xarray.")


def unwrap(raw_data: Any, axes: str | None, what: str = "raw_data", keyword: str = "axes") -> tuple[Any, str, Wrap]:
    """The bare array, its axes, and ``wrap(result, result_axes)`` making a result like the input.

    Parameters
    ----------
    raw_data : xarray.DataArray, numpy.ndarray, dask.array.Array or cupy.ndarray
    axes : str or None
        The axes of a bare array (ignored for an xarray, whose dims name them).
    what, keyword : str
        The argument's name and that of its axes argument, for messages.

    Raises
    ------
    ArrayAxesError
        A bare array without ``axes``, or axes that do not name its dimensions.
    """
    if is_xarray(raw_data):
        import xarray  # noqa: PLC0415 - only when given one

        dims = "".join(str(d) for d in raw_data.dims)
        data = raw_data.data
        return data, check_axes(dims, data.ndim), lambda result, wanted: xarray.DataArray(result, dims=tuple(wanted))
    if axes is None:
        raise ArrayAxesError(f"{what}: a {type(raw_data).__name__} has no axis names: pass {keyword}=, e.g. "
                             f"{keyword}='yx', or an xarray.DataArray with dims")
    return raw_data, check_axes(axes, ndim(raw_data)), lambda result, wanted: result


def ndim(data: Any) -> int:
    """The number of dimensions of any array (CuPy's and Dask's without converting them)."""
    return int(data.ndim) if hasattr(data, "ndim") else np.ndim(data)


def to_host(data: Any) -> np.ndarray:
    """A NumPy array of ``data``: CuPy copied from the GPU, Dask computed, others viewed."""
    if is_cupy(data) and hasattr(data, "get"):
        return data.get()
    return np.asarray(data)


def like(result: np.ndarray, given: Any) -> Any:
    """``result`` as the kind of array ``given`` was: on the GPU for a CuPy input, else as it is."""
    if is_cupy(given) and not is_cupy(result):
        # the module the input came from (cupy, or the tests' emulation of it) makes the result
        module = importlib.import_module(type(given).__module__.split(".")[0])
        return module.asarray(result)
    return result
