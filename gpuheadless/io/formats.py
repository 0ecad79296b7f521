"""Output formats: names, extensions, what each can hold, and vigra's automatic conversion.

ilastik offers vigra's 2D image formats, each also as ``<name> sequence`` (one file per slice
along the first non-singleton axis), ``multipage tiff`` (one page per t, z, c), ``multipage tiff
sequence``, ``hdf5``, ``compressed hdf5`` and ``numpy`` (spec §3.1). A 2D format holds at most two
non-singleton axes besides ``c``; when its codec cannot store the data type, vigra rescales the
data's actual minimum..maximum linearly onto the codec's type, and so do we.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

_ALL_NUMERIC = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64")


@dataclass(frozen=True)
class ImageFormat:
    """One 2D image codec.

    Attributes
    ----------
    extension : str
    dtypes : tuple of str
        Types stored as they are; anything else is converted to ``dtypes[0]``.
    channels : tuple of int or None
        Channel counts the codec stores (``None``: any).
    """

    extension: str
    dtypes: tuple[str, ...]
    channels: tuple[int, ...] | None


IMAGE_FORMATS = {
    "bmp": ImageFormat("bmp", ("uint8",), (1, 3)),
    "gif": ImageFormat("gif", ("uint8",), (1, 3)),
    "hdr": ImageFormat("hdr", ("float32",), (3,)),
    "jpeg": ImageFormat("jpeg", ("uint8",), (1, 3)),
    "jpg": ImageFormat("jpg", ("uint8",), (1, 3)),
    "pbm": ImageFormat("pbm", ("uint8", "uint16"), (1,)),
    "pgm": ImageFormat("pgm", ("uint8", "uint16"), (1,)),
    "png": ImageFormat("png", ("uint8", "uint16"), (1, 2, 3, 4)),
    "pnm": ImageFormat("pnm", ("uint8", "uint16"), (1, 3)),
    "ppm": ImageFormat("ppm", ("uint8", "uint16"), (3,)),
    "ras": ImageFormat("ras", ("uint8",), (1, 3)),
    "tif": ImageFormat("tif", _ALL_NUMERIC, None),
    "tiff": ImageFormat("tiff", _ALL_NUMERIC, None),
    "xv": ImageFormat("xv", ("uint8", "int16", "int32", "float32", "float64"), None),
}

VOLUME_FORMATS = {
    "hdf5": "h5", "compressed hdf5": "h5", "n5": "n5", "compressed n5": "n5", "numpy": "npy",
    "multipage tiff": "tiff", "multipage tiff sequence": "tiff",
    "zarr": "zarr", "ome-zarr": "zarr", "single-scale OME-Zarr": "zarr", "multi-scale OME-Zarr": "zarr",
}
# gpuheadless's own Zarr layouts: one chunk per block, written by cluster workers, resumable.
ZARR_FORMATS = ("zarr", "ome-zarr")
# ilastik's OME-Zarr exports (tczyx, levels s0, s1 ..., ilastik's chunks and downscaling).
ILASTIK_OME_ZARR_FORMATS = ("single-scale OME-Zarr", "multi-scale OME-Zarr")
# Formats holding a dataset inside a container, named by --output_internal_path.
CONTAINER_FORMATS = ("hdf5", "compressed hdf5", "n5", "compressed n5")

REFUSED_FORMATS = {
    "dvid": "writes to a DVID server, which gpuheadless does not support; use hdf5 and import it",
    "blockwise hdf5": "is not implemented by ilastik 1.4.2 either (it fails with NotImplementedError); use hdf5",
}


def all_format_names() -> list[str]:
    """Every ``--output_format`` name gpuheadless accepts on the command line (ilastik's list plus xv)."""
    images = list(IMAGE_FORMATS)
    return images + [f"{n} sequence" for n in images] + list(VOLUME_FORMATS) + list(REFUSED_FORMATS)


def extension(output_format: str) -> str:
    """File extension written for ``output_format``."""
    if output_format in VOLUME_FORMATS:
        return VOLUME_FORMATS[output_format]
    return IMAGE_FORMATS[image_codec(output_format)].extension


def image_codec(output_format: str) -> str:
    """The 2D codec of an image format or image sequence (``png sequence`` → ``png``)."""
    return output_format[: -len(" sequence")] if output_format.endswith(" sequence") else output_format


def is_sequence(output_format: str) -> bool:
    return output_format.endswith(" sequence")


def check_supported(output_format: str) -> None:
    """Refuse formats this version does not write, with the reason (exit 2)."""
    if output_format in REFUSED_FORMATS:
        raise UsageError(f"--output_format {output_format!r} {REFUSED_FORMATS[output_format]}")
    if output_format not in VOLUME_FORMATS and image_codec(output_format) not in IMAGE_FORMATS:
        raise UsageError(f"--output_format {output_format!r} is not a known format; choose one of {', '.join(all_format_names())}")


def step_axis(axes: str, shape: tuple[int, ...]) -> int | None:
    """Index of the first axis with extent > 1: the axis a sequence format steps along."""
    for i, n in enumerate(shape):
        if n > 1:
            return i
    return None


def check_export_fits(output_format: str, axes: str, shape: tuple[int, ...]) -> None:
    """Refuse an export the format cannot hold, saying what would work (spec §3.1, §3.4).

    Parameters
    ----------
    output_format : str
    axes : str
        The exported array's axes, in output order.
    shape : tuple of int
    """
    if output_format in VOLUME_FORMATS and output_format != "multipage tiff sequence":
        return
    if is_sequence(output_format):
        step = step_axis(axes, shape)
        if step is None:
            raise UsageError(f"--output_format {output_format!r}: the result is a single pixel; there is nothing to step along")
        axes, shape = axes[:step] + axes[step + 1:], shape[:step] + shape[step + 1:]
        if output_format == "multipage tiff sequence":
            return
    spatial = [a for a, n in zip(axes, shape) if a != "c" and n > 1]
    described = f"axes {axes} with shape {tuple(shape)}"
    if len(spatial) > 2:
        hint = "a sequence format (one image per slice), 'multipage tiff', 'hdf5' or 'numpy'"
        if is_sequence(output_format):
            hint = "'multipage tiff sequence', 'hdf5' or 'numpy'"
        raise UsageError(f"--output_format {output_format!r} writes 2D images, but each image would have {described}; use {hint}")
    codec = IMAGE_FORMATS[image_codec(output_format)]
    channels = dict(zip(axes, shape)).get("c", 1)
    if codec.channels is not None and channels not in codec.channels:
        allowed = " or ".join(str(c) for c in codec.channels)
        raise UsageError(
            f"--output_format {output_format!r} stores {allowed} channel(s), the result has {channels}; choose channels "
            f"with --cutout_subregion, or use tiff, hdf5 or numpy"
        )


def convert_for_codec(image: np.ndarray, codec_name: str) -> np.ndarray:
    """The image as the codec stores it: unchanged if its type fits, else vigra's conversion.

    Integer targets get the image's own minimum..maximum mapped linearly onto the full range of
    the target type, rounded to nearest; a float target is a plain cast.
    """
    codec = IMAGE_FORMATS[codec_name]
    if image.dtype.name in codec.dtypes:
        return image
    target = np.dtype(codec.dtypes[0])
    if target.kind == "f":
        return image.astype(target)
    info = np.iinfo(target)
    values = image.astype(np.float64)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if hi <= lo:
        return np.full(image.shape, info.min, dtype=target)
    scaled = (values - lo) * ((float(info.max) - float(info.min)) / (hi - lo)) + float(info.min)
    return np.clip(np.rint(scaled), info.min, info.max).astype(target)


def sequence_digits(offset: int, extent: int) -> int:
    """Zero padding of a bare ``{slice_index}``: ``ceil(log10(offset + extent + 1))`` digits."""
    return max(1, len(str(offset + extent)))
