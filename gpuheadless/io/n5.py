"""N5 containers: reading datasets and writing them as ilastik 1.4.2 (through z5py) does.

N5 is small enough to implement here rather than add a dependency (zarr 3 dropped N5; the
``zarr-n5`` and ``z5py`` packages are respectively young and conda-only): a container is a
folder with ``attributes.json`` (``{"n5": "2.0.0"}``), a dataset a folder whose
``attributes.json`` holds ``dimensions``, ``blockSize``, ``dataType`` and ``compression``, and
each block a file ``<i_fastest>/.../<i_slowest>`` holding a big-endian header (mode, rank,
the block's own extent per axis) and the block's values, big-endian, raw or gzip.

N5 lists axes fastest first, so everything in the attributes and block paths is the reverse of
NumPy's C order; edge blocks are stored with their truncated extent.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import threading
import zlib
from typing import Any

import numpy as np

from ..errors import UserError
from . import staging

N5_VERSION = "2.0.0"
_ATTRIBUTES = "attributes.json"
_DTYPES = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64")


def is_dataset(path: str) -> bool:
    """Whether ``path`` is an N5 dataset (a folder whose attributes name a shape and type)."""
    attrs = read_attributes(path)
    return "dimensions" in attrs and "dataType" in attrs


def read_attributes(path: str) -> dict[str, Any]:
    """The ``attributes.json`` of a container, group or dataset (``{}`` when it has none)."""
    try:
        with open(os.path.join(path, _ATTRIBUTES), encoding="utf-8") as stream:
            value = json.load(stream)
    except FileNotFoundError:
        return {}
    return value if isinstance(value, dict) else {}


def find_datasets(container: str) -> list[str]:
    """Internal paths of every dataset below ``container``, sorted."""
    found = []
    for root, dirs, _ in os.walk(container):
        dirs.sort()
        if root != container and is_dataset(root):
            found.append(os.path.relpath(root, container).replace(os.sep, "/"))
            dirs[:] = []
    return found


class N5Dataset:
    """A readable N5 dataset.

    Attributes
    ----------
    shape : tuple of int
        In NumPy (C) order, i.e. the reverse of the stored ``dimensions``.
    dtype : numpy.dtype
        Native byte order.
    chunks : tuple of int
        Block shape in NumPy order.
    attrs : dict
        Every attribute of the dataset, as stored.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.attrs = read_attributes(path)
        try:
            self.shape = tuple(int(n) for n in reversed(self.attrs["dimensions"]))
            self.chunks = tuple(int(n) for n in reversed(self.attrs["blockSize"]))
            self.dtype = np.dtype(self.attrs["dataType"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"input '{path}': not an N5 dataset (attributes.json lacks or garbles {exc})") from None
        if self.dtype.name not in _DTYPES or len(self.shape) != len(self.chunks) or min(self.chunks, default=0) < 1:
            raise UserError(f"input '{path}': N5 dataset of type {self.attrs['dataType']!r}, dimensions "
                            f"{self.attrs['dimensions']} and block size {self.attrs['blockSize']} cannot be read")
        compression = self.attrs.get("compression", {"type": "raw"})
        self._compression = compression.get("type", "raw") if isinstance(compression, dict) else str(compression)
        if self._compression not in ("raw", "gzip"):
            raise UserError(f"input '{path}': N5 compression {self._compression!r} is not supported (raw and gzip are)")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _read_block(self, index: tuple[int, ...]) -> np.ndarray | None:
        """The block at grid position ``index`` (NumPy order), or None where none was written."""
        file = os.path.join(self.path, *(str(i) for i in reversed(index)))
        if not os.path.exists(file):
            return None
        return _decode_block(file, self.dtype, self._compression == "gzip")

    def __getitem__(self, region: tuple[slice, ...]) -> np.ndarray:
        """Read a box given as slices (step 1) in NumPy order; missing blocks read as 0."""
        bounds = [s.indices(n)[:2] for s, n in zip(region, self.shape)]
        out = np.zeros(tuple(max(b - a, 0) for a, b in bounds), dtype=self.dtype)
        if out.size == 0:
            return out
        ranges = [range(a // c, (b - 1) // c + 1) for (a, b), c in zip(bounds, self.chunks)]
        for index in np.ndindex(*(len(r) for r in ranges)):
            grid = tuple(r[i] for r, i in zip(ranges, index))
            block = self._read_block(grid)
            if block is None:
                continue
            src, dst = [], []
            for g, c, (a, b), n in zip(grid, self.chunks, bounds, block.shape):
                lo, hi = max(a, g * c), min(b, g * c + n)
                src.append(slice(lo - g * c, hi - g * c))
                dst.append(slice(lo - a, hi - a))
            out[tuple(dst)] = block[tuple(src)]
        return out


def open_dataset(container: str, internal: str) -> N5Dataset:
    """The dataset ``internal`` of the N5 container ``container``."""
    return N5Dataset(os.path.join(container, *internal.strip("/").split("/")))


def _json_value(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


class N5Writer:
    """One dataset in an N5 container, laid out as ilastik writes it; appears only when complete.

    The dataset is built in a hidden folder and renamed into place at :meth:`commit`; a new
    container is built whole under a temporary name. Other datasets of an existing container are
    kept (ilastik opens the container for appending and replaces only its dataset).

    Parameters
    ----------
    final_path : str
        The ``.n5`` container.
    internal_path : str
        The dataset inside it, e.g. ``exported_data``.
    shape : tuple of int
        In the output's axis order (NumPy order).
    dtype : numpy.dtype
    axes : str
        The output's axes; stored reversed as ``axes`` (neuroglancer's convention, as ilastik).
    chunks : tuple of int
        Block shape in NumPy order.
    attrs : dict
        Attributes to store (``axistags``, ``drange``, ``display_mode``, ``axis_units``).
    compress : bool
        gzip level 1 (``compressed n5``) or raw blocks (``n5``).
    """

    def __init__(self, final_path: str, internal_path: str, shape, dtype, axes: str, chunks, attrs: dict[str, Any],
                 compress: bool) -> None:
        self.final_path = final_path
        internal = internal_path.strip("/")
        if not internal:
            raise UserError(f"output '{final_path}': --output_internal_path is empty")
        if any(part in ("", ".", "..") for part in internal.split("/")):
            raise UserError(f"output '{final_path}': --output_internal_path {internal_path!r} must name a dataset "
                            "inside the container (no empty, '.' or '..' parts)")
        if np.dtype(dtype).name not in _DTYPES:
            raise UserError(f"output '{final_path}': N5 cannot store {np.dtype(dtype).name}")
        if os.path.exists(final_path) and not _is_container(final_path):
            raise UserError(f"output '{final_path}': exists and is not an N5 container (no attributes.json with 'n5')")
        self._shape, self._dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        self._chunks = tuple(max(1, min(int(c), n)) if n else 1 for c, n in zip(chunks, self._shape))
        self._level = 1 if compress else None
        self._lock = threading.Lock()
        parent = os.path.dirname(final_path) or "."
        self.tmp_path = None
        try:
            self._create(final_path, parent, internal, axes, attrs, compress)
        except BaseException:
            self.abort()
            raise

    def _create(self, final_path: str, parent: str, internal: str, axes: str, attrs: dict[str, Any],
                compress: bool) -> None:
        """The temporary container or dataset folder and the dataset's attributes."""
        try:
            os.makedirs(parent, exist_ok=True)
            self._new_container = not os.path.isdir(final_path)
            if self._new_container:
                self.tmp_path = staging.temporary_folder(final_path)
                _write_json(os.path.join(self.tmp_path, _ATTRIBUTES), {"n5": N5_VERSION})
                container = self.tmp_path
            else:
                container = final_path
                self.tmp_path = None
            group, name = os.path.split(os.path.join(container, *internal.split("/")))
            self._target = os.path.join(group, name)
            if self._new_container:
                os.makedirs(group, exist_ok=True)
                self._dataset = self._target
            else:  # new groups of an existing container are made at commit, so a failed run leaves none
                self._dataset = staging.temporary_folder(os.path.join(parent, name))
                self.tmp_path = self._dataset
            os.makedirs(self._dataset, exist_ok=True)
        except OSError as exc:
            raise UserError(f"output '{final_path}': cannot write there ({exc.strerror or exc})") from None
        stored = {key: _json_value(value) for key, value in attrs.items()}
        stored.update({
            "axes": axes[::-1],
            "blockSize": list(reversed(self._chunks)),
            "compression": {"level": 1, "type": "gzip"} if compress else {"type": "raw"},
            "dataType": self._dtype.name,
            "dimensions": list(reversed(self._shape)),
        })
        _write_json(os.path.join(self._dataset, _ATTRIBUTES), stored)

    def write(self, region: tuple[slice, ...], data: np.ndarray) -> None:
        """Write ``data`` at ``region`` (slices in NumPy order, any alignment).

        Blocks the region covers only in part are read back, merged and rewritten, so the
        pipeline's blocks need not match the N5 blocks.
        """
        starts = [s.start or 0 for s in region]
        stops = [a + n for a, n in zip(starts, data.shape)]
        ranges = [range(a // c, (b - 1) // c + 1) for a, b, c in zip(starts, stops, self._chunks)]
        with self._lock:
            for index in np.ndindex(*(len(r) for r in ranges)):
                grid = tuple(r[i] for r, i in zip(ranges, index))
                origin = [g * c for g, c in zip(grid, self._chunks)]
                full = tuple(min(c, n - o) for o, c, n in zip(origin, self._chunks, self._shape))
                lo = [max(a, o) for a, o in zip(starts, origin)]
                hi = [min(b, o + f) for b, o, f in zip(stops, origin, full)]
                piece = data[tuple(slice(l - a, h - a) for l, h, a in zip(lo, hi, starts))]
                if piece.shape == full:
                    block = piece
                else:
                    block = self._read_back(grid, full)
                    block[tuple(slice(l - o, h - o) for l, h, o in zip(lo, hi, origin))] = piece
                self._write_block(grid, block)

    def _read_back(self, grid: tuple[int, ...], full: tuple[int, ...]) -> np.ndarray:
        """A block written before (or zeros), to merge a partial write into."""
        file = os.path.join(self._dataset, *(str(i) for i in reversed(grid)))
        if not os.path.exists(file):
            return np.zeros(full, dtype=self._dtype)
        return np.array(_decode_block(file, self._dtype, self._level is not None))

    def _write_block(self, grid: tuple[int, ...], block: np.ndarray) -> None:
        header = struct.pack(f">HH{block.ndim}I", 0, block.ndim, *reversed(block.shape))
        payload = np.ascontiguousarray(block, dtype=self._dtype.newbyteorder(">")).tobytes()
        if self._level is not None:
            payload = gzip.compress(payload, compresslevel=self._level, mtime=0)
        folder = os.path.join(self._dataset, *(str(i) for i in reversed(grid[1:])))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, str(grid[0])), "wb") as stream:
            stream.write(header + payload)

    def commit(self) -> None:
        if self._new_container:
            staging.commit(self.tmp_path, self.final_path)
        else:
            if os.path.isdir(self._target):
                shutil.rmtree(self._target)
            elif os.path.exists(self._target):
                os.remove(self._target)
            os.makedirs(os.path.dirname(self._target), exist_ok=True)
            staging.commit(self._dataset, self._target)
        self.tmp_path = None

    def abort(self) -> None:
        staging.remove(self.tmp_path)
        self.tmp_path = None


def _is_container(path: str) -> bool:
    """Whether ``path`` is an N5 container (a folder whose attributes.json names the N5 version)."""
    try:
        with open(os.path.join(path, _ATTRIBUTES)) as stream:
            return "n5" in json.load(stream)
    except (OSError, ValueError):
        return False


def _decode_block(file: str, dtype: np.dtype, compressed: bool) -> np.ndarray:
    """One block file as an array of its own (possibly truncated) extent, NumPy order."""
    try:
        return _decode_block_bytes(file, dtype, compressed)
    except (struct.error, zlib.error, ValueError, OSError) as exc:
        raise UserError(f"N5 block {file} is damaged ({type(exc).__name__}: {exc})") from None


def _decode_block_bytes(file: str, dtype: np.dtype, compressed: bool) -> np.ndarray:
    with open(file, "rb") as stream:
        raw = stream.read()
    mode, rank = struct.unpack(">HH", raw[:4])
    if mode != 0:
        raise UserError(f"N5 block {file}: mode {mode} is not supported (only default blocks are)")
    extent = struct.unpack(f">{rank}I", raw[4:4 + 4 * rank])
    payload = raw[4 + 4 * rank:]
    if compressed:
        payload = zlib.decompress(payload, wbits=47)  # gzip or zlib header: N5 writers differ
    values = np.frombuffer(payload, dtype=dtype.newbyteorder(">"), count=int(np.prod(extent)))
    return values.reshape(tuple(reversed(extent))).astype(dtype)


def _write_json(path: str, value: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(value, stream)
