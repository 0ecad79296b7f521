"""A stand-in for CuPy on a machine without a GPU, to test code paths that must stay on the device.

``ndarray`` wraps a NumPy array as CuPy wraps device memory: NumPy functions and ufuncs work on
it through NumPy's dispatch protocols and give device arrays back (as with CuPy), but converting
it to NumPy implicitly raises ``TypeError`` as CuPy does, so a host round trip hidden in
``numpy.asarray`` fails here as it would on a GPU. Explicit transfers (``asnumpy``, ``.get()``,
``asarray`` of host data) are counted in :data:`transfers`. ``backend()`` gives a gpuheadless
``Backend`` on this module whose CUDA kernels run in the CPU emulation of ``harness.py``.
"""
from __future__ import annotations

import operator
import sys
import types
from typing import Any

import numpy as np

transfers: list[tuple[str, tuple[int, ...]]] = []  # ("to device" | "to host", shape)


def _unwrap(value: Any) -> Any:
    if isinstance(value, ndarray):
        return value._array
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _wrap(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class ndarray:  # noqa: N801 - CuPy's name
    """Device memory, emulated: a NumPy array that NumPy refuses to convert implicitly."""

    __slots__ = ("_array",)

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs)))

    def __array_function__(self, func, types_, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getitem__(self, key):
        return _wrap(self._array[_unwrap(key)])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and value.ndim:
            raise TypeError("setting a device array from a NumPy array (a host-to-device copy CuPy does not do "
                            "implicitly)")
        self._array[_unwrap(key)] = _unwrap(value)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("ctypes", "tobytes"):  # host views (NumPy's protocols) CuPy lacks
            raise AttributeError(name)
        value = getattr(self._array, name)
        if callable(value):
            return lambda *args, **kwargs: _wrap(value(*_unwrap(args), **_unwrap(kwargs)))
        return _wrap(value)

    def __len__(self):
        return len(self._array)

    def __bool__(self):
        return bool(self._array)

    def __float__(self):
        return float(self._array)

    def __int__(self):
        return int(self._array)

    def __index__(self):
        return operator.index(self._array)

    def __repr__(self):
        return f"emulated cupy.ndarray{self._array.shape} {self._array.dtype}"

    def get(self) -> np.ndarray:
        transfers.append(("to host", self._array.shape))
        return self._array.copy()


def _operator(name: str):
    def method(self, *args):
        return _wrap(getattr(self._array, name)(*_unwrap(args)))

    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor", "lshift", "rshift",
              "matmul"):
    for _form in (f"__{_name}__", f"__r{_name}__", f"__i{_name}__"):
        setattr(ndarray, _form, _operator(_form))
for _form in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__", "__neg__", "__pos__", "__abs__",
              "__invert__"):
    setattr(ndarray, _form, _operator(_form))


def asarray(array: Any, dtype: Any = None, order: Any = None) -> ndarray:
    """Device data as it is (or cast); host data copied to the device, counted."""
    if isinstance(array, ndarray):
        return array if dtype is None or array.dtype == np.dtype(dtype) else _wrap(array._array.astype(dtype))
    host = np.array(array, dtype=dtype, order=order or "K")
    transfers.append(("to device", host.shape))
    return ndarray(host)


def asnumpy(array: Any) -> np.ndarray:
    """A host copy, counted."""
    return array.get() if isinstance(array, ndarray) else np.asarray(array)


def __getattr__(name: str) -> Any:
    """NumPy's names otherwise: types and constants as they are, functions giving device arrays."""
    value = getattr(np, name)
    if isinstance(value, type) or not callable(value):
        return value

    def function(*args, **kwargs):
        return _wrap(value(*_unwrap(args), **_unwrap(kwargs)))

    return function


class _Stream:
    """A CUDA stream: work here is synchronous, so entering and synchronizing do nothing."""

    def __init__(self, non_blocking: bool = False) -> None:
        self.synchronized = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self) -> None:
        self.synchronized += 1


cuda = types.SimpleNamespace(Stream=_Stream,
                             runtime=types.SimpleNamespace(memGetInfo=lambda: (8 * 2**30, 16 * 2**30)))


class _EmulatedKernels:
    """A harness module whose kernels take emulated device arrays (their memory, unwrapped)."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def get_function(self, name: str):
        kernel = self._module.get_function(name)
        return lambda grid, block, args: kernel(grid, block, tuple(_unwrap(a) for a in args))


def backend() -> Any:
    """gpuheadless's GPU backend on this module, its CUDA kernels emulated on the CPU."""
    import scipy.ndimage

    from harness import EmulatedModule

    from gpuheadless.backend import Backend
    from gpuheadless.gpu.kernels import KernelSet

    def loader(path, options):
        return _EmulatedKernels(EmulatedModule(path, tuple(o for o in options if o != "-fmad=false")))

    return Backend("gpu", sys.modules[__name__], scipy.ndimage, {"device": "CuPy emulation"},
                   KernelSet(loader, sys.modules[__name__]))
