"""Forest prediction: the compiled CPU path and backend dispatch (the NumPy oracle is in ``tests/``)."""
from __future__ import annotations

import mmap
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..buffers import strided_float32_span
from .model import Forest

try:  # the compiled extensions are built by ``pip install``
    from . import _cforest, _csmalltrees
except ImportError:  # pragma: no cover - a broken install: predict_cpu says so
    _cforest = _csmalltrees = None
from .small_trees import small_tree_tables

_ROWS_PER_TASK = 16384


def predict_cpu(forest: Forest, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Vigra-exact probabilities with the compiled kernel, ``threads`` row ranges at a time.

    Parameters
    ----------
    forest : Forest
    x : (n_rows, n_features) float32 array
        Any strides (row-major, or a transposed feature-major array).
    threads : int

    Returns
    -------
    (n_rows, n_classes) float32
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] < forest.n_features:
        raise ValueError(f"expected (rows, >= {forest.n_features}) features, got {x.shape}")
    if _cforest is None:
        raise ImportError("gpuheadless.forest._cforest is not built: reinstall gpuheadless (pip install .), which "
                          "compiles it")
    n_rows = x.shape[0]
    out = np.empty((n_rows, forest.n_classes), dtype=np.float32)
    if n_rows == 0:
        return out
    base = strided_float32_span(x)
    row_stride, col_stride = (s // 4 for s in x.strides)
    nodes, leaf_values, roots = packed_forest(forest)
    counts = np.ascontiguousarray(forest.forest_tree_counts, dtype=np.int32)
    small = bit_vector_tables(forest)

    def run(begin: int, end: int) -> None:
        if small is not None:  # every tree has at most 64 leaves: one comparison per split, 8 rows at once
            _csmalltrees.predict(*small, leaf_values, counts, base, out[begin:end], forest.n_classes,
                                 forest.n_features, begin, end, row_stride, col_stride)
            return
        _cforest.predict(
            nodes, leaf_values, roots, counts, base, out[begin:end], forest.n_classes, forest.n_features,
            begin, end, row_stride, col_stride,
        )

    chunks = [(b, min(b + _ROWS_PER_TASK, n_rows)) for b in range(0, n_rows, _ROWS_PER_TASK)]
    if threads <= 1 or len(chunks) == 1:
        for begin, end in chunks:
            run(begin, end)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda c: run(*c), chunks))
    return out


_NODE_BYTES = 16
_HUGE_PAGE = 2 << 20


def packed_forest(forest: Forest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernels' node table of ``forest`` (nodes, leaf values, roots), built once per forest.

    Used by the CPU kernel and copied to the device by the GPU backend.
    """
    cached = forest.scratch.get("cpu_packed")
    if cached is None:
        n_values = forest.n_nodes * forest.n_classes
        nodes = _page_aligned(forest.n_nodes * _NODE_BYTES)
        leaf_values = _page_aligned(n_values * 8).view(np.float64)
        roots = np.empty(forest.n_trees, dtype=np.int32)
        _cforest.pack(*_c_arrays(forest), nodes, leaf_values, roots, forest.n_nodes, forest.n_classes, forest.n_features)
        cached = forest.scratch["cpu_packed"] = (nodes, leaf_values, roots)
    return cached


def bit_vector_tables(forest: Forest) -> tuple[np.ndarray, ...] | None:
    """:func:`~gpuheadless.forest.small_trees.small_tree_tables` of ``forest``, built once; None
    when a tree has more than 64 leaves (then the node walker is used)."""
    if "small_trees" not in forest.scratch:
        nodes, _, roots = packed_forest(forest)
        forest.scratch["small_trees"] = small_tree_tables(nodes, roots, forest.n_features)
    return forest.scratch["small_trees"]


def _page_aligned(n_bytes: int) -> np.ndarray:
    """Zeroed bytes on anonymous memory advised to use huge pages where the OS allows.

    Deep forests are walked at random over tens of megabytes; with 4 KiB pages nearly every node
    load also misses the TLB, which made inference up to 3x slower and erratic.
    """
    size = max(_HUGE_PAGE, -(-n_bytes // _HUGE_PAGE) * _HUGE_PAGE)
    buffer = mmap.mmap(-1, size)
    if n_bytes >= _HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            buffer.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # kernels without transparent huge pages
            pass
    return np.frombuffer(buffer, dtype=np.uint8, count=max(n_bytes, 1))


def _c_arrays(forest: Forest) -> tuple[Any, ...]:
    return (
        np.ascontiguousarray(forest.feature, dtype=np.int32),
        np.ascontiguousarray(forest.threshold, dtype=np.float64),
        np.ascontiguousarray(forest.left, dtype=np.int32),
        np.ascontiguousarray(forest.right, dtype=np.int32),
        np.ascontiguousarray(forest.values, dtype=np.float64),
        np.ascontiguousarray(forest.roots, dtype=np.int32),
    )


def predict_proba(forest: Forest, x: Any, backend: Any, threads: int = 1) -> Any:
    """Probabilities for rows of ``x`` on ``backend`` (CPU: the compiled kernel).

    Parameters
    ----------
    forest : Forest
    x : (n_rows, n_features) float32 array on the backend's device
    backend : Backend
    threads : int
    """
    if backend.kernels is not None:
        return backend.kernels.forest_predict(forest, x)
    return predict_cpu(forest, x, threads)
