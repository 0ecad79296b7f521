"""Output writers: blockwise, under a temporary name, renamed into place only when complete.

A crash or an error therefore never leaves a file that looks finished. HDF5 and NumPy outputs
are written block by block; image files are staged and encoded at the end (see
:mod:`gpuheadless.io.formats` for the formats).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from typing import Any

import numpy as np

from ..errors import UserError
from . import encoders, formats, staging
from .guarded_file import GuardedFile
from .naming import format_known
from .ilastik_layout import determine_block_shape
from .ome_tiff import write_multipage_tiff

def ilastik_chunks(axes: str, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, ...]:
    """ilastik's HDF5 and N5 chunk shape: about 512 kB, one t and one c per chunk."""
    limits = tuple(1 if a in "tc" else n for a, n in zip(axes, shape))
    return determine_block_shape(limits, 512000 // np.dtype(dtype).itemsize)


def reserve_space(path: str) -> None:
    """Allocate the disk blocks of a memory-mapped file now.

    A memory map over a sparse file meets a full disk at its first write into a hole, as a
    SIGBUS that kills the interpreter; allocated up front, a full disk or a file-size limit is
    an ``OSError`` here instead.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    finally:
        os.close(fd)


class Writer:
    """Base class: ``write`` blocks, then ``commit`` (rename into place) or ``abort`` (delete)."""

    def __init__(self, final_path: str) -> None:
        self.final_path = final_path
        directory = os.path.dirname(final_path) or "."
        try:
            os.makedirs(directory, exist_ok=True)
            self.tmp_path = staging.temporary_file(final_path)
        except OSError as exc:
            raise UserError(f"output '{final_path}': cannot write there ({exc.strerror or exc})") from None

    def write(self, region: tuple[slice, ...], data: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Flush and close the temporary file."""

    def commit(self) -> None:
        self._finish()
        staging.commit(self.tmp_path, self.final_path)

    def abort(self) -> None:
        try:
            self._finish()
        except Exception:  # noqa: BLE001 - cleaning up after a failure; the first error is reported
            pass
        staging.remove(self.tmp_path)


class HDF5Writer(Writer):
    """One dataset in an HDF5 file; other datasets of an existing file are kept (ilastik appends)."""

    def __init__(self, final_path: str, internal_path: str, shape, dtype, axes: str, attrs: dict[str, Any], compress: bool):
        import h5py  # noqa: PLC0415

        super().__init__(final_path)
        self._file = None
        if not internal_path:
            self.abort()
            raise UserError(f"output '{final_path}': --output_internal_path is empty")
        try:
            appending = os.path.exists(final_path) and h5py.is_hdf5(final_path)
            if appending:
                shutil.copyfile(final_path, self.tmp_path)
            self._guard = GuardedFile(self.tmp_path)
            self._file = h5py.File(self._guard, "a" if appending else "w")
            if internal_path in self._file:
                del self._file[internal_path]
            chunks = ilastik_chunks(axes, shape, dtype)
            self._ds = self._file.create_dataset(
                internal_path, shape=shape, dtype=dtype, chunks=chunks if all(shape) else None,
                compression="gzip" if compress else None, compression_opts=1 if compress else None,
            )
            for i, axis in enumerate(axes):
                self._ds.dims[i].label = axis
            for key, value in attrs.items():
                self._ds.attrs[key] = value
        except BaseException:
            self.abort()
            raise

    def write(self, region, data):
        self._ds[region] = data
        self._guard.raise_error()

    def _finish(self):
        if self._file:
            self._file.close()
            self._file = None
            self._guard.close()
            self._guard.raise_error()


class NumpyWriter(Writer):
    """A ``.npy`` file filled through a memory map."""

    def __init__(self, final_path: str, shape, dtype):
        super().__init__(final_path)
        self._array = None
        try:
            self._array = np.lib.format.open_memmap(self.tmp_path, mode="w+", dtype=dtype, shape=tuple(shape))
            reserve_space(self.tmp_path)
        except BaseException:
            self.abort()
            raise

    def write(self, region, data):
        self._array[region] = data

    def _finish(self):
        if self._array is not None:
            self._array.flush()
            del self._array
            self._array = None


class ImageFileWriter(Writer):
    """Image files (2D formats, multipage TIFF, and sequences of either), encoded at commit.

    Blocks are staged in a memory-mapped scratch array next to the output. At commit every file
    is encoded under a temporary name, and all are renamed into place only when all succeeded.

    Parameters
    ----------
    final_path : str
        The output path; for a sequence it contains ``{slice_index}``.
    output_format : str
        A 2D codec (``png``, ``tiff`` ...), ``multipage tiff``, or either followed by ``sequence``.
    slice_offset : int
        Added to the position along the step axis to give ``{slice_index}`` (the cutout start).
    attrs : dict, optional
        ``axistags`` (JSON) and ``axis_units``: the pixel sizes a multipage TIFF records.
    """

    def __init__(self, final_path: str, shape, dtype, axes: str, output_format: str, slice_offset: int = 0,
                 attrs: dict[str, Any] | None = None):
        self.final_path = final_path
        self._axes, self._format, self._offset = axes, output_format, slice_offset
        self._resolutions, self._units = _pixel_sizes(attrs or {})
        directory = os.path.dirname(final_path) or "."
        try:
            os.makedirs(directory, exist_ok=True)
            self._scratch = staging.temporary_file(os.path.join(directory, "gpuheadless-staging.npy"))
        except OSError as exc:
            raise UserError(f"output '{final_path}': cannot write there ({exc.strerror or exc})") from None
        self.tmp_path = self._scratch
        self._written: list[tuple[str, str]] = []
        try:
            self._array = np.lib.format.open_memmap(self._scratch, mode="w+", dtype=dtype, shape=tuple(shape))
            reserve_space(self._scratch)
        except BaseException:
            self.abort()
            raise

    def write(self, region, data):
        self._array[region] = data

    def _files(self) -> list[tuple[str, np.ndarray, str]]:
        """(path, array, axes) of every file to write."""
        array, axes = self._array, self._axes
        if not formats.is_sequence(self._format):
            return [(self.final_path, array, axes)]
        step = formats.step_axis(axes, array.shape)
        rest = axes[:step] + axes[step + 1:]
        pattern = self.final_path.replace("{slice_index}", "{slice_index:0%dd}" % formats.sequence_digits(self._offset, array.shape[step]))
        return [
            (format_known(pattern, {"slice_index": self._offset + i}), np.take(array, i, axis=step), rest)
            for i in range(array.shape[step])
        ]

    def commit(self):
        try:
            for path, array, axes in self._files():
                tmp = staging.temporary_file(path)
                self._written.append((tmp, path))
                with open(tmp, "wb") as stream:
                    if self._format.startswith("multipage tiff"):
                        write_multipage_tiff(stream, array, axes, self._resolutions, self._units)
                    else:
                        codec = formats.image_codec(self._format)
                        image = formats.convert_for_codec(_as_image(np.asarray(array), axes), codec)
                        encoders.encode_image(stream, image, codec)
            for tmp, path in self._written:
                staging.commit(tmp, path)
            self._written = []
        finally:
            self.abort()

    def abort(self):
        self._array = None
        for tmp, _ in self._written:
            staging.remove(tmp)
        self._written = []
        staging.remove(self._scratch)


def _pixel_sizes(attrs: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Resolution and unit per axis from a dataset's ``axistags`` and ``axis_units`` attributes."""
    tags = json.loads(attrs["axistags"]) if attrs.get("axistags") else {"axes": []}
    units = attrs.get("axis_units") or {}
    if isinstance(units, str):
        units = json.loads(units)
    return {t["key"]: float(t.get("resolution") or 0) for t in tags["axes"]}, dict(units)


def _as_image(array: np.ndarray, axes: str) -> np.ndarray:
    """``(H, W, C)`` from an array with at most two non-singleton axes besides ``c``."""
    if "c" not in axes:
        array, axes = array[..., None], axes + "c"
    size = dict(zip(axes, array.shape))
    non_channel = [a for a in axes if a != "c"]
    chosen = [a for a in non_channel if size[a] > 1]
    for a in reversed(non_channel):  # fewer than two: pad with the trailing singleton axes (y, x)
        if len(chosen) < 2 and a not in chosen:
            chosen.append(a)
    chosen.sort(key=axes.index)
    order = [axes.index(a) for a in non_channel if a not in chosen] + [axes.index(a) for a in chosen] + [axes.index("c")]
    image = np.transpose(array, order)
    return image.reshape(image.shape[-3:])


EXPORT_HINTS = "_gpuheadless_export"
"""Key of ``attrs`` carrying what some writers need beyond attributes, never stored itself:
a dict with ``labels`` (bool: the source is a label image, downscaled by nearest neighbour) and
``offset`` (dict axis -> int: the export's start, recorded by OME-Zarr as a translation),
``translation`` (dict axis -> float: an OME-Zarr input's translation, carried into OME-Zarr
exports), ``scale_key`` (the OME-Zarr input level read, naming a single-scale export's level)
and ``scales`` (the OME-Zarr input's levels, which a multi-scale export follows)."""


def open_writer(
    output_format: str,
    path: str,
    internal_path: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    axes: str,
    attrs: dict[str, Any],
    slice_offset: int = 0,
    chunks: tuple[int, ...] | None = None,
    resolutions: dict[str, float] | None = None,
    resume: bool = False,
    pyramid: bool = False,
) -> Any:
    """Create the writer for ``output_format`` (checked with :func:`formats.check_supported`).

    ``chunks`` (the block layout in output axes), ``resolutions`` and ``resume`` matter for
    gpuheadless's own ``zarr``/``ome-zarr``; ilastik's formats use ilastik's chunking.
    """
    attrs = dict(attrs)
    hints = attrs.pop(EXPORT_HINTS, None) or {}
    if output_format in formats.ILASTIK_OME_ZARR_FORMATS:
        from .ome_zarr_ilastik import IlastikOmeZarrWriter  # noqa: PLC0415 - zarr is an optional extra

        return IlastikOmeZarrWriter(path, shape, dtype, axes, attrs, multiscale=output_format == "multi-scale OME-Zarr",
                                    labels=bool(hints.get("labels")), offset=hints.get("offset"),
                                    translation=hints.get("translation"), scale_key=hints.get("scale_key"),
                                    input_scales=hints.get("scales"))
    if output_format in formats.ZARR_FORMATS:
        from .zarr_io import ZarrWriter  # noqa: PLC0415 - zarr is an optional extra

        return ZarrWriter(path, shape, dtype, axes, chunks or shape, attrs, ome=output_format != "zarr",
                          resolutions=resolutions or {}, resume=resume, pyramid=pyramid)
    if output_format in ("n5", "compressed n5"):
        from .n5 import N5Writer  # noqa: PLC0415

        return N5Writer(path, internal_path, shape, dtype, axes, ilastik_chunks(axes, shape, dtype), attrs,
                        compress=output_format == "compressed n5")
    if output_format in ("hdf5", "compressed hdf5"):
        return HDF5Writer(path, internal_path, shape, dtype, axes, attrs, compress=output_format == "compressed hdf5")
    if output_format == "numpy":
        return NumpyWriter(path, shape, dtype)
    return ImageFileWriter(path, shape, dtype, axes, output_format, slice_offset, attrs)
