"""ilastik 1.4.2's ``multipage tiff`` export: an OME-TIFF with five axes ``TZCYX``.

ilastik reorders the export to ``tzcyx`` (adding axes of extent 1), and tifffile writes it as
OME-TIFF: little-endian, one uncompressed page (one strip) per (t, z, c) in that order,
``minisblack``, and OME-XML in the first page's description with ``DimensionOrder="XYCZT"``,
the five sizes, the pixel sizes of the axes that have one (``PhysicalSizeX/Y/Z``,
``TimeIncrement``) and their units as OME symbols (``pixel`` for a spatial axis without a
known unit). Readers (tifffile, Bio-Formats, Fiji) therefore see the axes, e.g. ``ZCYX`` for a
3D two-channel result. This module writes the same layout, page by page.
"""
from __future__ import annotations

from typing import BinaryIO, Iterator

import numpy as np

EXPORT_AXES = "tzcyx"
_SIZE_KEYS = {"x": "PhysicalSizeX", "y": "PhysicalSizeY", "z": "PhysicalSizeZ", "t": "TimeIncrement"}
_UNIT_KEYS = {"x": "PhysicalSizeXUnit", "y": "PhysicalSizeYUnit", "z": "PhysicalSizeZUnit", "t": "TimeIncrementUnit"}
_BIGTIFF_BYTES = 2**32 - 2**25  # classic TIFF offsets are 32 bit; ilastik itself fails beyond, we switch to BigTIFF

# SI prefixes, largest first: where two symbols share a lower-case spelling ("Mm"/"mm", "Ps"/"ps")
# the later, smaller unit keeps it, as in ilastik's table.
_PREFIXES = (
    ("Y", "yotta"), ("Z", "zetta"), ("E", "exa"), ("P", "peta"), ("T", "tera"), ("G", "giga"), ("M", "mega"),
    ("k", "kilo"), ("h", "hecto"), ("da", "deca"), ("", ""), ("d", "deci"), ("c", "centi"), ("m", "milli"),
    ("µ", "micro"), ("n", "nano"), ("p", "pico"), ("f", "femto"), ("a", "atto"), ("z", "zepto"), ("y", "yocto"),
)
# Exact spellings kept as they are (their lower-case forms name other units).
_EXACT_LENGTHS = ("Mm", "mm", "Pm", "pm", "Ym", "ym", "Zm", "zm")
_EXACT_TIMES = ("Ms", "ms", "Ps", "ps", "Ys", "ys", "Zs", "zs")


def _length_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for symbol, prefix in _PREFIXES:
        unit = symbol + "m"
        for base in ("meter", "metre"):
            table[prefix + base] = table[prefix + base + "s"] = unit
        table[unit.lower()] = unit
    table.update({"micron": "µm", "microns": "µm", "um": "µm", "μm": "µm"})  # the second µ is Greek mu
    for unit, names in {
        "Å": ("ångström", "ångströms", "angstrom", "angstroms"), "thou": ("thou", "thous"), "li": ("line", "lines", "li"),
        "in": ("inch", "inches", "in"), "ft": ("foot", "feet", "ft"), "yd": ("yard", "yards", "yd"),
        "mi": ("mile", "miles", "mi"), "ua": ("ua", "astronomical unit"),
        "ly": ("light year", "lightyear", "light years", "lightyears", "ly"), "pc": ("parsec", "parsecs", "pc"),
        "pt": ("point", "points", "pt"),
    }.items():
        table.update(dict.fromkeys(names, unit))
    return table


def _time_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for symbol, prefix in _PREFIXES:
        unit = symbol + "s"
        table[prefix + "second"] = table[prefix + "seconds"] = unit
        table[unit.lower()] = unit
    del table["ms"]  # ilastik knows "ms" and "Ms" only spelled exactly (milli and mega)
    table.update({"sec": "s", "secs": "s", "us": "µs", "μs": "µs", "m": "min", "min": "min", "minute": "min",
                  "minutes": "min", "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "d": "d", "day": "d",
                  "days": "d"})
    return table


_LENGTHS = _length_table()
_TIMES = _time_table()


def ome_unit(unit: str, axis: str) -> str:
    """The OME-XML unit symbol ilastik writes for ``unit`` on ``axis``.

    Spatial axes: a known length (``"micrometer"``, ``"nm"``, ``"Å"`` …) as its symbol, anything
    else (also no unit) as ``"pixel"``. Time: a known duration as its symbol, anything else ``""``
    (left out). Matching ignores case except for spellings whose case tells units apart.
    """
    if axis == "t":
        return unit if unit in _EXACT_TIMES else _TIMES.get(unit.lower(), "")
    return unit if unit in _EXACT_LENGTHS else _LENGTHS.get(unit.lower(), "pixel")


def pixels_metadata(resolutions: dict[str, float], units: dict[str, str]) -> dict[str, float | str]:
    """The OME ``Pixels`` attributes ilastik adds: sizes where non-zero, units by :func:`ome_unit`.

    Parameters
    ----------
    resolutions : dict
        Axis key to pixel size (0 or missing: none).
    units : dict
        Axis key to unit name as stored in ilastik's ``axis_units``.
    """
    pixels: dict[str, float | str] = {}
    for axis in EXPORT_AXES:
        if axis not in _SIZE_KEYS:
            continue
        if resolutions.get(axis):
            pixels[_SIZE_KEYS[axis]] = float(resolutions[axis])
        symbol = ome_unit(units.get(axis, "") or "", axis)
        if symbol:
            pixels[_UNIT_KEYS[axis]] = symbol
    return pixels


def to_export_axes(array: np.ndarray, axes: str) -> np.ndarray:
    """A view of ``array`` (axes ``axes``, a subset of ``tzyxc``) as ``tzcyx``, missing axes of extent 1."""
    for axis in EXPORT_AXES:
        if axis not in axes:
            array, axes = array[..., None], axes + axis
    return np.transpose(array, [axes.index(a) for a in EXPORT_AXES])


def write_multipage_tiff(stream: BinaryIO, array: np.ndarray, axes: str, resolutions: dict[str, float] | None = None,
                         units: dict[str, str] | None = None, software: str = "gpuheadless") -> None:
    """Write ``array`` as ilastik's multipage TIFF (OME-TIFF, ``TZCYX``), one page at a time.

    Parameters
    ----------
    stream : binary file
        Open for writing (seekable).
    array : numpy.ndarray
        Any numeric type, axes ``axes``; may be a memory map (pages are read one by one).
    axes : str
        The array's axes, a subset of ``tzyxc`` in any order.
    resolutions, units : dict, optional
        Pixel size and unit name per axis (as in ilastik's axistags and ``axis_units``).
    software : str
        The TIFF ``Software`` tag.
    """
    import tifffile  # noqa: PLC0415

    ordered = to_export_axes(array, axes)
    n_pages = int(np.prod(ordered.shape[:3]))
    pages_shape = (n_pages,) + ordered.shape[3:]

    def pages() -> Iterator[np.ndarray]:
        for index in np.ndindex(*ordered.shape[:3]):
            yield np.ascontiguousarray(ordered[index])

    metadata = {"axes": EXPORT_AXES.upper(), "Pixels": pixels_metadata(resolutions or {}, units or {})}
    with tifffile.TiffWriter(stream, byteorder="<", ome=True, bigtiff=ordered.nbytes > _BIGTIFF_BYTES) as writer:
        writer.write(data=pages(), shape=ordered.shape if n_pages else pages_shape, dtype=ordered.dtype,
                     software=software, metadata=metadata)
