"""Output writers: blockwise, under a temporary name, renamed into place only when complete.

A crash or an error therefore never leaves a file that looks finished. Formats of this version:
``hdf5``, ``compressed hdf5``, ``numpy``, ``tif``/``tiff`` (one 2D image, channels as samples) and
``multipage tiff`` (one page per t, z, c).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from ..errors import UserError

SUPPORTED_FORMATS = ("hdf5", "compressed hdf5", "numpy", "tif", "tiff", "multipage tiff")
_TYPE_FLAGS = {"t": 8, "c": 1}


def axistags_json(axes: str, resolutions: dict[str, float] | None = None) -> str:
    """vigra's AxisTags JSON for ``axes`` (space 2, channel 1, time 8)."""
    resolutions = resolutions or {}
    doc = {
        "axes": [
            {"key": a, "typeFlags": _TYPE_FLAGS.get(a, 2), "resolution": resolutions.get(a, 0), "description": ""}
            for a in axes
        ]
    }
    return json.dumps(doc, indent=2)


def determine_block_shape(max_shape: tuple[int, ...], target_volume: int) -> tuple[int, ...]:
    """As isotropic a block as fits ``target_volume`` elements (ilastik's ``determineBlockShape``)."""
    n = len(max_shape)
    shape = [1] * n
    remaining = max(int(target_volume), 1)
    for k, i in enumerate(sorted(range(n), key=lambda i: max_shape[i])):
        side = int(round(remaining ** (1.0 / (n - k))))
        shape[i] = max(1, min(side, max_shape[i]))
        remaining = max(remaining // shape[i], 1)
    return tuple(shape)


def _temporary_path(final_path: str) -> str:
    directory, name = os.path.split(final_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=directory or ".")
    os.close(fd)
    return tmp


class Writer:
    """Base class: ``write`` blocks, then ``commit`` (rename into place) or ``abort`` (delete)."""

    def __init__(self, final_path: str) -> None:
        self.final_path = final_path
        directory = os.path.dirname(final_path) or "."
        try:
            os.makedirs(directory, exist_ok=True)
            self.tmp_path = _temporary_path(final_path)
        except OSError as exc:
            raise UserError(f"output '{final_path}': cannot write there ({exc.strerror or exc})") from None

    def write(self, region: tuple[slice, ...], data: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Flush and close the temporary file."""

    def commit(self) -> None:
        self._finish()
        os.replace(self.tmp_path, self.final_path)

    def abort(self) -> None:
        try:
            self._finish()
        except Exception:  # noqa: BLE001 - cleaning up after a failure; the first error is reported
            pass
        if os.path.exists(self.tmp_path):
            os.remove(self.tmp_path)


class HDF5Writer(Writer):
    """One dataset in an HDF5 file; other datasets of an existing file are kept (ilastik appends)."""

    def __init__(self, final_path: str, internal_path: str, shape, dtype, axes: str, attrs: dict[str, Any], compress: bool):
        import h5py  # noqa: PLC0415

        super().__init__(final_path)
        if not internal_path:
            self.abort()
            raise UserError(f"output '{final_path}': --output_internal_path is empty")
        if os.path.exists(final_path) and h5py.is_hdf5(final_path):
            shutil.copyfile(final_path, self.tmp_path)
        self._file = h5py.File(self.tmp_path, "a")
        if internal_path in self._file:
            del self._file[internal_path]
        chunk_limits = tuple(1 if a in "tc" else n for a, n in zip(axes, shape))
        chunks = determine_block_shape(chunk_limits, 512000 // np.dtype(dtype).itemsize)
        self._ds = self._file.create_dataset(
            internal_path, shape=shape, dtype=dtype, chunks=chunks if all(shape) else None,
            compression="gzip" if compress else None, compression_opts=1 if compress else None,
        )
        for i, axis in enumerate(axes):
            self._ds.dims[i].label = axis
        for key, value in attrs.items():
            self._ds.attrs[key] = value

    def write(self, region, data):
        self._ds[region] = data

    def _finish(self):
        if self._file:
            self._file.close()
            self._file = None


class NumpyWriter(Writer):
    """A ``.npy`` file filled through a memory map."""

    def __init__(self, final_path: str, shape, dtype):
        super().__init__(final_path)
        self._array = np.lib.format.open_memmap(self.tmp_path, mode="w+", dtype=dtype, shape=tuple(shape))

    def write(self, region, data):
        self._array[region] = data

    def _finish(self):
        if self._array is not None:
            self._array.flush()
            del self._array
            self._array = None


class TiffWriter(Writer):
    """TIFF output, staged in a memory-mapped scratch array and encoded at commit.

    ``multipage`` writes one page per (t, z, c) in that order; otherwise the image must have at
    most two non-singleton axes besides ``c`` and is written as one page with ``c`` samples.
    """

    def __init__(self, final_path: str, shape, dtype, axes: str, multipage: bool, resolutions: dict[str, float]):
        non_channel = [a for a, n in zip(axes, shape) if a != "c" and n > 1]
        if not multipage and len(non_channel) > 2:
            raise UserError(
                f"output '{final_path}': the 'tiff' format holds one 2D image, but the result has axes "
                f"{axes} with shape {tuple(shape)}; use 'multipage tiff', 'hdf5' or 'numpy'"
            )
        super().__init__(final_path)
        self._axes, self._multipage, self._resolutions = axes, multipage, resolutions
        self._scratch = self.tmp_path + ".npy"
        self._array = np.lib.format.open_memmap(self._scratch, mode="w+", dtype=dtype, shape=tuple(shape))

    def write(self, region, data):
        self._array[region] = data

    def _finish(self):
        import tifffile  # noqa: PLC0415

        if self._array is None:
            return
        array, axes = self._array, self._axes
        self._array = None
        try:
            for a in "tzcyx":
                if a not in axes:
                    array, axes = array[..., None], axes + a
            if self._multipage:
                ordered = np.transpose(array, [axes.index(a) for a in "tzcyx"])
                pages = ordered.reshape((-1,) + ordered.shape[-2:])
                tifffile.imwrite(self.tmp_path, pages, photometric="minisblack", metadata={"axes": "QYX"})
            else:
                image = np.transpose(array, [axes.index(a) for a in "yxc" + "tz"]).reshape(
                    array.shape[axes.index("y")], array.shape[axes.index("x")], -1
                )
                if image.shape[-1] == 1:
                    image = image[..., 0]
                tifffile.imwrite(self.tmp_path, image, photometric="minisblack", planarconfig="contig" if image.ndim == 3 else None)
        finally:
            del array
            if os.path.exists(self._scratch):
                os.remove(self._scratch)

    def abort(self):
        self._array = None
        if os.path.exists(self._scratch):
            os.remove(self._scratch)
        if os.path.exists(self.tmp_path):
            os.remove(self.tmp_path)


def open_writer(
    output_format: str,
    path: str,
    internal_path: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    axes: str,
    attrs: dict[str, Any],
    resolutions: dict[str, float],
) -> Writer:
    """Create the writer for ``output_format`` (one of :data:`SUPPORTED_FORMATS`)."""
    if output_format in ("hdf5", "compressed hdf5"):
        return HDF5Writer(path, internal_path, shape, dtype, axes, attrs, compress=output_format == "compressed hdf5")
    if output_format == "numpy":
        return NumpyWriter(path, shape, dtype)
    if output_format in ("tif", "tiff", "multipage tiff"):
        return TiffWriter(path, shape, dtype, axes, multipage=output_format == "multipage tiff", resolutions=resolutions)
    raise UserError(f"--output_format {output_format!r} is not supported by this version")
