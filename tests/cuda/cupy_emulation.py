"""A stand-in for CuPy on a machine without a GPU, to test code paths that must stay on the device.

``ndarray`` wraps a NumPy array as CuPy wraps device memory: NumPy functions and ufuncs work on
it through NumPy's dispatch protocols and give device arrays back (as with CuPy), but converting
it to NumPy implicitly raises ``TypeError`` as CuPy does, so a host round trip hidden in
``numpy.asarray`` fails here as it would on a GPU. Explicit transfers (``asnumpy``, ``.get()``,
``asarray`` of host data) are counted in :data:`transfers`. ``backend()`` gives a gpuheadless
``Backend`` on this module whose CUDA kernels run in the CPU emulation of ``harness.py``.

Inside ``with asynchronous():`` streams are modelled as CUDA runs them: a host-to-device copy
and a kernel launch are queued on the calling thread's current stream and run in that stream's
order, when the stream is synchronized or the host needs a result. Reading, on one stream,
memory that another stream's queued work has yet to write raises :class:`StreamRace` (on a GPU:
stale values or an illegal address).
"""
from __future__ import annotations

import contextlib
import operator
import sys
import threading
import types
from typing import Any, Callable

import numpy as np

transfers: list[tuple[str, tuple[int, ...]]] = []  # ("to device" | "to host", shape)
_modelled = {"asynchronous": False}
_current = threading.local()


class StreamRace(RuntimeError):
    """Memory read on one stream while another stream's queued work still has to write it."""


@contextlib.contextmanager
def asynchronous():
    """Model asynchronous copies and kernels on streams (see the module's docstring)."""
    _modelled["asynchronous"] = True
    try:
        yield
    finally:
        _modelled["asynchronous"] = False


def _settle(value: "ndarray") -> None:
    """Make ``value`` readable on the current stream: run its writer's queue if that is this
    stream (stream order), refuse if it is another one."""
    writer = value._pending
    if writer is None:
        return
    if writer is not get_current_stream():
        raise StreamRace(f"{value!r} is read on {get_current_stream()!r} while {writer!r} has yet to write it")
    writer.synchronize()


def _unwrap(value: Any) -> Any:
    if isinstance(value, ndarray):
        _settle(value)
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

    __slots__ = ("_array", "_pending")

    def __init__(self, array: np.ndarray) -> None:
        self._array = array
        self._pending: _Stream | None = None  # the stream whose queued work writes this memory

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
        _settle(self)
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
    if not _modelled["asynchronous"]:
        return ndarray(host)
    device = ndarray(_poison(host))
    get_current_stream().enqueue(lambda: np.copyto(device._array, host), [device])
    return device


def _poison(like: np.ndarray) -> np.ndarray:
    """Memory not yet written: NaN, or the largest integer."""
    if like.dtype.kind == "f":
        return np.full_like(like, np.nan)
    if like.dtype.kind in "iu":
        return np.full_like(like, np.iinfo(like.dtype).max)
    return np.empty_like(like)


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
    """A CUDA stream: a queue of work run in order (at once unless :func:`asynchronous`)."""

    def __init__(self, non_blocking: bool = False) -> None:
        self.synchronized = 0
        self._queue: list[tuple[Callable[[], Any], list[ndarray]]] = []

    def __enter__(self):
        _current.__dict__.setdefault("stack", []).append(self)
        return self

    def __exit__(self, *exc):
        _current.stack.pop()
        return False

    def __repr__(self):
        return f"emulated stream {id(self):#x}"

    def enqueue(self, work: Callable[[], Any], writes: list[ndarray]) -> None:
        """Queue ``work``, which writes ``writes``; until it has run they are pending here."""
        for array in writes:
            array._pending = self
        self._queue.append((work, writes))

    def synchronize(self) -> None:
        self.synchronized += 1
        while self._queue:
            work, writes = self._queue.pop(0)
            work()
            for array in writes:
                if array._pending is self:
                    array._pending = None


_NULL_STREAM = _Stream()


def get_current_stream() -> _Stream:
    """The stream of the innermost ``with stream:`` of this thread, else the null stream."""
    stack = getattr(_current, "stack", None)
    return stack[-1] if stack else _NULL_STREAM


cuda = types.SimpleNamespace(Stream=_Stream, get_current_stream=get_current_stream,
                             runtime=types.SimpleNamespace(memGetInfo=lambda: (8 * 2**30, 16 * 2**30)))


class _EmulatedKernels:
    """A harness module whose kernels take emulated device arrays (their memory, unwrapped)."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def get_function(self, name: str):
        kernel = self._module.get_function(name)
        written = [not ptype.startswith("const") and ptype.endswith("*") for ptype, _ in self._module.signatures[name]]

        def launch(grid, block, args):
            if not _modelled["asynchronous"]:
                return kernel(grid, block, tuple(_unwrap(a) for a in args))
            stream = get_current_stream()

            def run():
                for a in args:
                    if isinstance(a, ndarray) and a._pending not in (None, stream):
                        raise StreamRace(f"{name} on {stream!r} reads {a!r}, which {a._pending!r} has yet to write")
                kernel(grid, block, tuple(a._array if isinstance(a, ndarray) else a for a in args))

            stream.enqueue(run, [a for a, w in zip(args, written) if w and isinstance(a, ndarray)])

        return launch


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
