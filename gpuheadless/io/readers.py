"""Image readers: HDF5 datasets, NumPy ``.npy``, TIFF and 2D image files, read by region.

Every reader gives the file's own axes (ilastik's rules, spec §1.5) and reads any region in that
order, so large HDF5 and ``.npy`` volumes are never loaded whole.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any, Callable

import numpy as np

from ..errors import UserError
from .ilastik_layout import axes_from_attrs, json_attr
from .paths import nickname, split_dataset_path
from .source import ImageSource, default_axes

_PILLOW_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pbm", ".pgm", ".ppm", ".pnm"}
_TIFF_SUFFIXES = {".tif", ".tiff"}
_HDF5_SUFFIXES = {".h5", ".hdf5", ".ilp"}


def open_image(path: str, cwd: str | None = None) -> ImageSource:
    """Open one input given as on ilastik's command line.

    Parameters
    ----------
    path : str
        A file, or ``file.h5/internal/path``. Relative paths are taken from ``cwd``. Stacks
        (globs, path lists) are opened by :func:`gpuheadless.io.stacks.open_input`.

    Raises
    ------
    UserError
        Missing or unreadable file, missing HDF5 dataset, unsupported format.
    """
    cwd = cwd or os.getcwd()
    if "://" in path:
        return _open_url(path)
    expanded = os.path.expanduser(path)
    external, internal = split_dataset_path(expanded)
    if not os.path.isabs(external):
        external = os.path.join(cwd, external)
    if not os.path.exists(external):
        raise UserError(f"input '{path}': file does not exist")
    suffix = os.path.splitext(external)[1].lower()
    base = dict(
        display=path,
        nickname=nickname([external], [internal]),
        dataset_dir=os.path.dirname(external),
    )
    try:
        if suffix in _HDF5_SUFFIXES:
            return _open_hdf5(external, internal, path, base)
        if suffix == ".zarr":
            from .zarr_io import open_zarr_input  # noqa: PLC0415 - zarr is an optional extra

            return open_zarr_input(external, internal, path, base)
        if suffix == ".n5":
            return _open_n5(external, internal, path, base)
        if internal is not None:
            raise UserError(f"input '{path}': an internal path is only allowed for HDF5 files")
        if suffix == ".npy":
            return _open_npy(external, base)
        if suffix in _TIFF_SUFFIXES:
            return _open_tiff(external, base)
        if suffix in _PILLOW_SUFFIXES:
            return _open_pillow(external, base)
    except UserError:
        raise
    except Exception as exc:  # a reader library's own error on a corrupt file
        raise UserError(f"input '{path}': cannot read it ({type(exc).__name__}: {exc})") from None
    raise UserError(f"input '{path}': unsupported file type '{suffix}'")


def _open_url(url: str) -> ImageSource:
    """An OME-Zarr (or Zarr) image named by a ``file://`` or ``http(s)://`` URL, e.g. ``.../img.zarr/s0``."""
    from urllib.parse import unquote, urlparse  # noqa: PLC0415

    from .zarr_io import local_path, open_zarr_input  # noqa: PLC0415 - zarr is an optional extra

    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("file", "http", "https"):
        raise UserError(f"input '{url}': unsupported URL scheme '{scheme}' (file, http and https are read)")
    external, internal = split_dataset_path(url)
    if not external.endswith(".zarr"):
        raise UserError(f"input '{url}': only OME-Zarr images (a path containing .zarr) are read from URLs")
    if scheme == "file" and not os.path.exists(local_path(external)):
        raise UserError(f"input '{url}': file does not exist")
    # ilastik's rules: a URL input is named after the URL's last component alone, made safe for a
    # file name, without its extension (``.../img.zarr/s0`` -> ``s0``); its {dataset_dir} is the
    # folder holding the ``.zarr`` for a file URL, and (left empty here) the project's folder for
    # http(s)
    last = url.rstrip("/").rpartition("/")[2]
    name = os.path.splitext(re.sub(r"[^a-zA-Z0-9_.-]", "_", last))[0]
    folder = os.path.dirname(unquote(urlparse(external).path)) if scheme == "file" else ""
    base = dict(display=url, nickname=name, dataset_dir=folder)
    try:
        return open_zarr_input(external, internal, url, base)
    except UserError:
        raise
    except Exception as exc:  # a transport or decoding error from fsspec or zarr
        raise UserError(f"input '{url}': cannot read it ({type(exc).__name__}: {exc})") from None


def _only_dataset(found: list[str], display: str, what: str, path_name: str) -> str:
    """The one dataset of a container named without an internal path; else say how to name one."""
    if len(found) != 1:
        raise UserError(f"input '{display}': {'no' if not found else 'several'} {what}; "
                        f"append the {path_name}, e.g. {display}/{found[0] if found else 'data'}")
    return found[0]


def _open_n5(external: str, internal: str | None, display: str, base: dict) -> ImageSource:
    from . import n5  # noqa: PLC0415

    if internal is None:
        internal = _only_dataset(n5.find_datasets(external), display, "datasets in the N5 container", "internal path")
        base["nickname"] = nickname([external], [None])
    location = os.path.join(external, *internal.strip("/").split("/"))
    if not n5.is_dataset(location):
        raise UserError(f"input '{display}': no N5 dataset '{internal}' in {external}")
    ds = n5.open_dataset(external, internal)
    axes, resolutions = axes_from_attrs(ds.attrs, ds.shape)
    units = json_attr(ds.attrs, "axis_units") or {}
    drange = tuple(np.asarray(ds.attrs["drange"]).tolist()) if "drange" in ds.attrs else None
    return ImageSource(axes=axes, shape=ds.shape, dtype=ds.dtype, read_region=lambda r: ds[r], resolutions=resolutions,
                       axis_units=units, drange=drange, **base)


def _open_hdf5(external: str, internal: str | None, display: str, base: dict) -> ImageSource:
    import h5py  # noqa: PLC0415

    try:
        handle = h5py.File(external, "r")
    except OSError as exc:
        raise UserError(f"input '{display}': not a readable HDF5 file ({exc})") from None
    try:
        if internal is None:
            found: list[str] = []
            handle.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and 2 <= o.ndim <= 5 else None)
            internal = _only_dataset(found, display, "image datasets in the file", "HDF5 internal path")
            base["nickname"] = nickname([external], [None])
        if internal not in handle or not isinstance(handle[internal], h5py.Dataset):
            raise UserError(f"input '{display}': no dataset '{internal}' in {external}")
        ds = handle[internal]
        axes, resolutions = axes_from_attrs(ds.attrs, ds.shape)
        units = json_attr(ds.attrs, "axis_units") or {}
        drange = tuple(np.asarray(ds.attrs["drange"]).tolist()) if "drange" in ds.attrs else None
        return ImageSource(
            axes=axes, shape=tuple(ds.shape), dtype=ds.dtype, read_region=lambda r: ds[r], close=handle.close,
            resolutions=resolutions, axis_units=units, drange=drange, **base,
        )
    except BaseException:
        handle.close()
        raise




def _open_npy(external: str, base: dict) -> ImageSource:
    array = np.load(external, mmap_mode="r", allow_pickle=False)
    return ImageSource(axes=default_axes(array.shape), shape=array.shape, dtype=array.dtype, read_region=lambda r: array[r], **base)


_TIFF_AXES = {"T": "t", "Z": "z", "I": "z", "Q": "z", "Y": "y", "X": "x", "C": "c", "S": "c"}


def _open_tiff(external: str, base: dict) -> ImageSource:
    import tifffile  # noqa: PLC0415

    with tifffile.TiffFile(external) as tif:
        series = tif.series[0]
        axes = "".join(_TIFF_AXES.get(a, "?") for a in series.axes)
        shape, dtype = tuple(series.shape), np.dtype(series.dtype)
        if "?" in axes or len(set(axes)) != len(axes):
            axes = default_axes(shape)
        resolutions, units = _tiff_pixel_sizes(tif, axes)
        _check_tiff_size(tif.pages.first, base["display"])

    def decode() -> np.ndarray:
        with tifffile.TiffFile(external) as tif:
            return tif.series[0].asarray()

    return ImageSource(
        axes=axes, shape=shape, dtype=dtype, read_region=_decoded_once(decode),
        resolutions=resolutions, axis_units=units, **base,
    )


def _check_tiff_size(page: Any, display: str) -> None:
    """An uncompressed page must hold the bytes its size tags declare (a lying header: damaged)."""
    declared = int(np.prod(page.shaped, dtype=np.float64) * np.dtype(page.dtype).itemsize) if page.dtype is not None else 0
    stored = sum(int(n) for n in page.databytecounts)
    if page.compression == 1 and page.bitspersample % 8 == 0 and declared > stored:
        raise UserError(f"input '{display}': its TIFF header declares {page.imagewidth} x {page.imagelength} pixels "
                        f"({declared:,} bytes), the file holds {stored:,}; it is damaged")


def _decoded_once(decode: Callable[[], np.ndarray]) -> Callable[[tuple[slice, ...]], np.ndarray]:
    """A region reader for formats decoded whole: decodes on the first read, then slices."""
    lock = threading.Lock()
    cache: list[np.ndarray] = []

    def read(region: tuple[slice, ...]) -> np.ndarray:
        with lock:
            if not cache:
                cache.append(decode())
        return cache[0][region]

    return read


def _tiff_pixel_sizes(tif: Any, axes: str) -> tuple[dict[str, float], dict[str, str]]:
    """Pixel sizes and units as ilastik's TIFF reader takes them (ilastik keeps them on export).

    OME-XML (``PhysicalSizeX`` …, preferred) or ImageJ metadata with the resolution tags; the
    units come back for every axis of ``axes`` in that order, ``""`` where none is recorded.
    """
    page = tif.pages[0]
    if tif.is_ome and tif.ome_metadata:
        resolutions, units = _ome_pixel_sizes(tif.ome_metadata)
    elif tif.imagej_metadata:
        meta = tif.imagej_metadata
        resolutions = {"x": _tiff_fraction(page.tags.get("XResolution")), "y": _tiff_fraction(page.tags.get("YResolution")),
                       "z": float(meta.get("spacing", 0.0)), "t": float(meta.get("finterval", 0.0))}
        units = {a: str(meta.get(key, "")) for a, key in (("x", "unit"), ("y", "yunit"), ("z", "zunit"), ("t", "tunit"))}
        for axis in "yz":  # ImageJ leaves out y and z units equal to x's
            if units["x"] and resolutions[axis] and not units[axis]:
                units[axis] = units["x"]
    else:
        return {}, {}
    if not any(resolutions.values()) and not any(units.values()):
        return {}, {}
    return ({a: resolutions[a] for a in axes if a != "c"},
            {a: "" if a == "c" else units.get(a, "") for a in axes})


def _tiff_fraction(tag: Any) -> float:
    """A resolution tag as pixel size; within 1e-8 of a whole number it is that number (TIFF rounding)."""
    if tag is None or not tag.value[0]:
        return 0.0
    size = tag.value[1] / tag.value[0]
    return float(round(size)) if abs(size - round(size)) < 1e-8 else size


def _ome_pixel_sizes(xml: str) -> tuple[dict[str, float], dict[str, str]]:
    import xml.etree.ElementTree as ET  # noqa: PLC0415

    pixels = ET.fromstring(xml).find("{*}Image/{*}Pixels")
    if pixels is None:
        return {}, {}
    keys = {"x": "PhysicalSizeX", "y": "PhysicalSizeY", "z": "PhysicalSizeZ", "t": "TimeIncrement"}
    return ({a: float(pixels.attrib.get(k, 0)) for a, k in keys.items()},
            {a: pixels.attrib.get(k + "Unit", "") for a, k in keys.items()})


_PILLOW_BANDS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4, "LA": 2, "PA": 2, "CMYK": 3, "YCbCr": 3, "I;16": 1, "I;16B": 1, "I": 1, "F": 1}
_PILLOW_DTYPES = {"I;16": np.uint16, "I;16B": np.uint16, "I": np.int32, "F": np.float32}


def _open_pillow(external: str, base: dict) -> ImageSource:
    from PIL import Image  # noqa: PLC0415

    with Image.open(external) as image:  # reads the header only
        width, height, mode = image.width, image.height, image.mode
        if mode == "P" and "transparency" in image.info:
            mode = "PA"
    if mode not in _PILLOW_BANDS:
        raise UserError(f"input '{base['display']}': unsupported image mode {mode}")
    bands = _PILLOW_BANDS[mode]

    def decode() -> np.ndarray:
        with Image.open(external) as image:
            if image.mode == "P":
                image = image.convert("RGBA" if bands == 4 or bands == 2 else "RGB")
            elif image.mode == "1":
                image = image.convert("L")
            elif image.mode in ("CMYK", "YCbCr"):
                image = image.convert("RGB")
            array = np.asarray(image)
        return array[:, :, None] if array.ndim == 2 else array

    if mode == "PA":
        bands = 4
    dtype = np.dtype(_PILLOW_DTYPES.get(mode, np.uint8))
    return ImageSource(axes="yxc", shape=(height, width, bands), dtype=dtype, read_region=_decoded_once(decode), **base)
