"""A restricted unpickler for the few pickles ilastik stores in a project.

``.ilp`` files come from strangers: a plain :func:`pickle.loads` would run whatever a crafted
pickle asks for. This unpickler only rebuilds plain containers and a short allow-list of
ilastik class names, which become inert :class:`PickledObject` records; any other global is
refused before anything is called.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from typing import Any

# ilastik/lazyflow classes that projects reference (classifier factories and classifier types).
_ALLOWED_CLASSES = {
    ("lazyflow.classifiers.parallelVigraRfLazyflowClassifier", "ParallelVigraRfLazyflowClassifierFactory"),
    ("lazyflow.classifiers.parallelVigraRfLazyflowClassifier", "ParallelVigraRfLazyflowClassifier"),
    ("lazyflow.classifiers.vigraRfLazyflowClassifier", "VigraRfLazyflowClassifierFactory"),
    ("lazyflow.classifiers.vigraRfLazyflowClassifier", "VigraRfLazyflowClassifier"),
    ("lazyflow.classifiers.vigraRfPixelwiseClassifier", "VigraRfPixelwiseClassifierFactory"),
    ("lazyflow.classifiers.vigraRfPixelwiseClassifier", "VigraRfPixelwiseClassifier"),
    ("lazyflow.classifiers.sklearnLazyflowClassifier", "SklearnLazyflowClassifierFactory"),
    ("lazyflow.classifiers.sklearnLazyflowClassifier", "SklearnLazyflowClassifier"),
}
_OBJECT_NAMES = {("__builtin__", "object"), ("builtins", "object")}
_RECONSTRUCTOR_NAMES = {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something outside the allow-list."""


@dataclass(frozen=True)
class PickledClass:
    """Stand-in for an allow-listed class: only its qualified name is kept."""

    module: str
    name: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class PickledObject:
    """Inert record of an object a pickle described: its class name and its state dict."""

    cls: PickledClass
    state: dict[str, Any] = field(default_factory=dict)

    def __setstate__(self, state: Any) -> None:  # called by the BUILD opcode
        if isinstance(state, dict):
            self.state = dict(state)
        else:
            self.state = {"__state__": state}


_BUILTIN_OBJECT = PickledClass("builtins", "object")


def _reconstructor(cls: Any, base: Any, state: Any) -> PickledObject:
    if not isinstance(cls, PickledClass):
        raise UnsafePickleError("copy_reg._reconstructor called with a class outside the allow-list")
    obj = PickledObject(cls)
    if state is not None:
        obj.__setstate__(state)
    return obj


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _RECONSTRUCTOR_NAMES:
            return _reconstructor
        if (module, name) in _OBJECT_NAMES:
            return _BUILTIN_OBJECT
        if (module, name) in _ALLOWED_CLASSES:
            return PickledClass(module, name)
        raise UnsafePickleError(f"refusing to load {module}.{name} (not an allow-listed ilastik class)")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not allowed")


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` allowing only containers and allow-listed ilastik class names.

    Python 2 ``S'...'`` strings are decoded as Latin-1, as ilastik 1.2 projects need.

    Raises
    ------
    UnsafePickleError
        If the pickle references any other global, or calls something not allow-listed.
    pickle.UnpicklingError
        If the data is not a valid pickle.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError:
        raise
    except TypeError as exc:
        # e.g. REDUCE applied to one of our inert stand-ins
        raise UnsafePickleError(f"the pickle tries to call something it may not ({exc})") from exc
    except (EOFError, ValueError, AttributeError, IndexError, KeyError) as exc:
        raise pickle.UnpicklingError(str(exc)) from exc
