"""Zarr and OME-Zarr (NGFF 0.4) inputs and outputs; needs the ``cluster`` extra (zarr).

Outputs are Zarr v2 arrays whose chunks are the pipeline's blocks, so distributed workers write
their blocks directly and in parallel, and rewriting a block is harmless. An output is built
under the hidden ``.<name>.partial`` with one marker file per finished block (what ``--resume``
reads) and renamed into place when complete. The unfinished output is kept when a run fails or is
stopped, for ``--resume``; its owner file keeps a second process from writing into it meanwhile.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np

from ..errors import UsageError, UserError
from . import staging
from .ilastik_layout import axes_from_attrs, json_attr
from .source import ImageSource, default_axes

PARTIAL_SUFFIX = ".partial"
_DONE_DIR = ".gpuheadless-done"
_OWNER_FILE = ".gpuheadless-owner"
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_NGFF_ORDER = "tczyx"


def ngff_axes(axes: str) -> str:
    """The axes an OME-Zarr (NGFF 0.4) image of an export in ``axes`` is stored in.

    NGFF orders axes by type: time, then channel, then 2 or 3 space axes (``t, c, z, y, x``);
    ``y`` and ``x`` are added with extent 1 where the export has no such axis. The export's own
    order (``--output_axis_order``) does not apply, as it does not to ilastik's OME-Zarr exports.
    """
    return "".join(a for a in _NGFF_ORDER if a in axes or a in "yx")


def to_stored(axes: str, stored: str, region: tuple[slice, ...], data: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
    """A block ``data`` at ``region``, both in ``axes`` order, in the ``stored`` axis order."""
    if axes == stored:
        return region, data
    where = dict(zip(axes, region))
    data = np.transpose(data, [axes.index(a) for a in stored if a in axes])
    data = data.reshape([1 if a not in axes else n for a, n in zip(stored, _expand(stored, axes, data.shape))])
    return tuple(where.get(a, slice(0, 1)) for a in stored), data


def _expand(stored: str, axes: str, shape: tuple[int, ...]) -> list[int]:
    """``shape`` (the axes of ``stored`` that ``axes`` has) with 1 for the others."""
    sizes = iter(shape)
    return [next(sizes) if a in axes else 1 for a in stored]


def _zarr() -> Any:
    try:
        import zarr  # noqa: PLC0415
    except ImportError:
        raise UsageError("Zarr needs the cluster extra: pip install 'gpuheadless[cluster]'") from None
    return zarr


def is_url(path: str) -> bool:
    """Whether an input names a URL (``file://``, ``http(s)://`` ...), as ilastik decides: it has ``://``."""
    return "://" in path


def local_path(url: str) -> str:
    """The local path of a ``file://`` URL (percent-escapes decoded); other strings unchanged."""
    from urllib.parse import unquote, urlparse  # noqa: PLC0415

    if not url.startswith("file:"):
        return url
    parsed = urlparse(url)
    return unquote(parsed.path)


class _Root:
    """Where a Zarr hierarchy lives: a local folder, or an ``http(s)`` address read through fsspec."""

    def __init__(self, location: str, display: str) -> None:
        self.location, self.display = location.rstrip("/"), display
        self.remote = location.startswith(("http://", "https://"))
        self._fs = None
        if self.remote:
            try:
                import fsspec  # noqa: PLC0415

                self._fs = fsspec.filesystem("http")
            except ImportError as exc:
                raise UsageError(
                    f"input '{display}': reading Zarr over http(s) needs the cluster extra "
                    f"(pip install 'gpuheadless[cluster]'; {exc})"
                ) from None

    def json(self, path: str) -> dict[str, Any] | None:
        """The JSON document at ``path`` below the root, or None where there is none."""
        import json  # noqa: PLC0415

        address = f"{self.location}/{path}"
        try:
            if self.remote:
                text = self._fs.cat_file(address)
            else:
                with open(address, "rb") as stream:
                    text = stream.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise UserError(f"input '{self.display}': cannot read {address} ({exc})") from None
        try:
            value = json.loads(text)
        except ValueError:
            raise UserError(f"input '{self.display}': {address} is not valid JSON") from None
        return value if isinstance(value, dict) else None

    def attributes(self, path: str = "") -> dict[str, Any]:
        """A node's user attributes: ``.zattrs`` (Zarr v2) or ``zarr.json``'s ``attributes`` (v3)."""
        prefix = f"{path}/" if path else ""
        v2 = self.json(prefix + ".zattrs")
        if v2 is not None:
            return v2
        v3 = self.json(prefix + "zarr.json") or {}
        return v3.get("attributes") or {}

    def array_shape(self, path: str = "") -> list[int] | None:
        """An array's shape from ``.zarray`` (v2) or ``zarr.json`` (v3); None where ``path`` is no array."""
        prefix = f"{path}/" if path else ""
        v2 = self.json(prefix + ".zarray")
        if v2 is not None:
            return v2.get("shape")
        v3 = self.json(prefix + "zarr.json") or {}
        return v3.get("shape") if v3.get("node_type") == "array" else None

    def array(self, path: str) -> Any:
        zarr = _zarr()
        if self.remote:
            from zarr.storage import FsspecStore  # noqa: PLC0415

            store = FsspecStore.from_url(self.location, read_only=True)
            return zarr.open_array(store=store, path=path, mode="r")
        return zarr.open_array(self.location + ("/" + path if path else ""), mode="r")


def open_zarr_input(external: str, internal: str | None, display: str, base: dict) -> Any:
    """An :class:`~gpuheadless.io.readers.ImageSource` for a Zarr array or an OME-Zarr image.

    ``external`` is the ``.zarr`` folder, a ``file://`` URL or an ``http(s)://`` address;
    ``internal`` the array inside it (an OME-Zarr level such as ``s0``). An OME-Zarr image named
    without a level is read at its lowest resolution (its last level), as ilastik does. Root
    metadata is read from ``.zattrs`` (or a Zarr v3 ``zarr.json``) directly, so an OME-Zarr without
    ``.zgroup`` opens too.
    """

    root = _Root(local_path(external) if external.startswith("file:") else external, display)
    inner = (internal or "").strip("/")
    attrs = root.attributes()
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")  # NGFF 0.4 / 0.5
    axes, resolutions, units, translation, scale_key, scales = None, {}, {}, {}, None, {}
    if multiscales and isinstance(multiscales, list):
        spec = next((m for m in multiscales if any(d.get("path") == inner for d in m.get("datasets", []))), None)
        if spec is None and not inner:
            spec = multiscales[0]
        if spec is not None:
            names = [a["name"] if isinstance(a, dict) else a for a in spec.get("axes", "tczyx")]
            axes = "".join(str(n).lower() for n in names)
            level = next(d for d in spec["datasets"] if d.get("path") == inner) if inner else spec["datasets"][-1]
            inner = scale_key = level["path"]
            resolutions = _level_resolution(spec, level, axes)
            named = {a["name"]: a.get("unit") or "" for a in spec.get("axes", []) if isinstance(a, dict)}
            if any(named.values()) or any(resolutions.values()):  # ilastik keeps units only with a pixel size
                units = {a: named.get(a, "") for a in axes}
            translation = _translation(spec, level, axes)
            scales = _level_shapes(root, spec, axes)
    elif not inner and root.array_shape() is None:
        raise UserError(f"input '{display}': a Zarr group without OME-Zarr multiscales; append the array path")
    try:
        array = root.array(inner)
    except Exception as exc:  # zarr's and fsspec's own errors for a missing or broken array
        raise UserError(f"input '{display}': not a readable Zarr array ({type(exc).__name__}: {exc})") from None
    if not multiscales:  # a plain Zarr array: the axistags its writer stored (ours, as HDF5's)
        axes, resolutions = axes_from_attrs(array.attrs, tuple(array.shape))
        units = json_attr(array.attrs, "axis_units") or {}
    if not axes or len(axes) != array.ndim:
        axes = default_axes(tuple(array.shape))
    return ImageSource(
        axes=axes, shape=tuple(array.shape), dtype=np.dtype(array.dtype), read_region=lambda r: array[r],
        resolutions=resolutions, axis_units=units, translation=translation, scale_key=scale_key,
        scales=scales if len(axes) == array.ndim else {}, **base,
    )


def _level_shapes(root: Any, spec: dict[str, Any], axes: str) -> dict[str, dict[str, int]]:
    """Shape per axis of every level of an OME-Zarr image, largest first; {} if one is unreadable."""
    shapes = {}
    for dataset in spec.get("datasets", []):
        shape = root.array_shape(str(dataset.get("path")))
        if not isinstance(shape, list) or len(shape) != len(axes):
            return {}
        shapes[str(dataset["path"])] = dict(zip(axes, (int(n) for n in shape)))
    return shapes


def _transform(transforms: Any, kind: str) -> list[float] | None:
    """The first ``kind`` ("scale" or "translation") transform of a list that has a scale (OME-Zarr 0.4)."""
    if not isinstance(transforms, list):
        return None
    valid = [t for t in transforms if isinstance(t, dict) and t.get("type") in ("scale", "translation")
             and t.get("type") in t and "path" not in t]
    if not any(t["type"] == "scale" for t in valid):
        return None
    found = next((t[kind] for t in valid if t["type"] == kind), None)
    try:
        return [float(v) for v in found] if isinstance(found, list) else None
    except (TypeError, ValueError):  # not numbers: no transform, as ilastik ignores invalid ones
        return None


def _level_resolution(spec: dict[str, Any], level: dict[str, Any], axes: str) -> dict[str, float]:
    """Pixel size per axis (channel included) of one level: its scale times the image-wide scale, if any.

    As ilastik: a scale with another length than the axes counts as missing.
    """
    values = _transform(level.get("coordinateTransformations"), "scale")
    if values is None or len(values) != len(axes):
        return {}
    outer = _transform(spec.get("coordinateTransformations"), "scale")
    if outer is not None and len(outer) == len(axes):
        values = [a * b for a, b in zip(values, outer)]
    return dict(zip(axes, values))


def _translation(spec: dict[str, Any], level: dict[str, Any], axes: str) -> dict[str, float]:
    """The level's translation plus the image-wide one, per axis (missing: 0)."""
    total = dict.fromkeys(axes, 0.0)
    for transforms in (level.get("coordinateTransformations"), spec.get("coordinateTransformations")):
        values = _transform(transforms, "translation")
        for axis, value in zip(axes, values or []):
            total[axis] += value
    return {a: v for a, v in total.items() if v}


class ZarrWriter:
    """A Zarr v2 output with one chunk per block; OME-Zarr metadata when ``ome`` is set.

    Parameters
    ----------
    final_path : str
        The ``.zarr`` folder to create.
    chunks : tuple of int
        Chunk shape in output axis order (the block shape, with t = 1 and c whole).
    resume : bool
        Keep a matching unfinished output and its record of finished blocks.
    """

    def __init__(self, final_path: str, shape, dtype, axes: str, chunks, attrs: dict[str, Any], ome: bool,
                 resolutions: dict[str, float], resume: bool = False, pyramid: bool = False) -> None:
        zarr = _zarr()
        self.final_path = final_path
        self.axes = axes  # the blocks' order
        self.stored_axes = ngff_axes(axes) if ome else axes  # the array's order
        if ome:
            shape = _expand(self.stored_axes, axes, [shape[axes.index(a)] for a in self.stored_axes if a in axes])
            chunks = _expand(self.stored_axes, axes, [chunks[axes.index(a)] for a in self.stored_axes if a in axes])
            attrs = _reordered_axistags(attrs, self.stored_axes)
        axes = self.stored_axes
        self._resolutions, self._pyramid = resolutions, pyramid and ome
        self.tmp_path = partial_path(final_path)
        self._array_path = os.path.join(self.tmp_path, "0") if ome else self.tmp_path
        _refuse_live_writer(final_path, self.tmp_path)
        staging.keep_for_resume(self.tmp_path)  # before it exists: a stop at any moment reports it
        try:
            os.makedirs(os.path.dirname(final_path) or ".", exist_ok=True)
            existing = None
            if resume and os.path.isdir(self.tmp_path):
                try:
                    existing = zarr.open_array(self._array_path, mode="r+")
                except Exception:
                    existing = None
            if existing is not None and tuple(existing.shape) == tuple(shape) and existing.dtype == np.dtype(dtype):
                self._array = existing
            else:
                shutil.rmtree(self.tmp_path, ignore_errors=True)
                if ome:
                    group = zarr.open_group(self.tmp_path, mode="w", zarr_format=2)
                    group.attrs["multiscales"] = [_multiscales(axes, resolutions)]
                self._array = zarr.open_array(self._array_path, mode="w", shape=tuple(shape), chunks=tuple(chunks),
                                              dtype=dtype, zarr_format=2, fill_value=0)
                for key, value in attrs.items():
                    self._array.attrs[key] = value.tolist() if isinstance(value, np.ndarray) else value
            os.makedirs(os.path.join(self.tmp_path, _DONE_DIR), exist_ok=True)
            with open(os.path.join(self.tmp_path, _OWNER_FILE), "w") as stream:
                stream.write(staging.owner())
        except OSError as exc:
            raise UserError(f"output '{final_path}': cannot write there ({exc.strerror or exc})") from None

    @property
    def array_path(self) -> str:
        """Where the array is being built (workers write their blocks there)."""
        return self._array_path

    def write(self, region: tuple[slice, ...], data: np.ndarray) -> None:
        """Write a block given in the export's axis order (``axes``)."""
        region, data = to_stored(self.axes, self.stored_axes, region, data)
        self._array[region] = data

    def mark_done(self, block_id: str) -> None:
        mark_done(self.tmp_path, block_id)

    def done_blocks(self) -> set[str]:
        """Ids of the blocks a previous run finished (``--resume``)."""
        return set(os.listdir(os.path.join(self.tmp_path, _DONE_DIR)))

    def commit(self) -> None:
        if self._pyramid:
            write_pyramid(self.tmp_path, self.stored_axes, self._resolutions)
        shutil.rmtree(os.path.join(self.tmp_path, _DONE_DIR), ignore_errors=True)
        os.remove(os.path.join(self.tmp_path, _OWNER_FILE))
        if os.path.exists(self.final_path):
            shutil.rmtree(self.final_path)
        os.replace(self.tmp_path, self.final_path)

    def abort(self) -> None:
        """Keep the unfinished output and its record, so ``--resume`` can carry on."""


def partial_path(final_path: str) -> str:
    """Where the output ``final_path`` is built: ``.<name>.partial`` beside it."""
    directory, name = os.path.split(final_path)
    return os.path.join(directory, f".{name}{PARTIAL_SUFFIX}")


def _refuse_live_writer(final_path: str, path: str) -> None:
    """Refuse to take over an unfinished output that a live process on this host is writing."""
    try:
        with open(os.path.join(path, _OWNER_FILE)) as stream:
            pid, _, host = stream.read().strip().partition("@")
    except OSError:
        return
    if pid.isdigit() and int(pid) != os.getpid() and staging.writer_state(int(pid), host) == "alive":
        raise UserError(f"output '{final_path}': another gpuheadless process (pid {pid}) is writing it now")


def unfinished_chunks(final_path: str, ome: bool, axes: str) -> dict[str, int] | None:
    """Chunk extents per axis of an unfinished output at ``final_path`` (None if there is none)."""
    path = partial_path(final_path)
    if not os.path.isdir(os.path.join(path, _DONE_DIR)):
        return None
    try:
        array = _zarr().open_array(os.path.join(path, "0") if ome else path, mode="r")
    except Exception:
        return None
    stored = ngff_axes(axes) if ome else axes
    return dict(zip(stored, array.chunks)) if len(array.chunks) == len(stored) else None


def mark_done(partial_path: str, block_id: str) -> None:
    """Record a finished block (after its data is written; idempotent)."""
    with open(os.path.join(partial_path, _DONE_DIR, block_id), "w"):
        pass


def write_region(array_path: str, region: tuple[slice, ...], data: np.ndarray, axes: str | None = None,
                 stored: str | None = None) -> None:
    """Write one block into an existing Zarr array (from any process).

    ``axes`` and ``stored``: the block's axis order and the array's (see :func:`to_stored`).
    """
    if axes is not None and stored is not None:
        region, data = to_stored(axes, stored, region, data)
    _zarr().open_array(array_path, mode="r+")[region] = data


def _reordered_axistags(attrs: dict[str, Any], stored: str) -> dict[str, Any]:
    """``attrs`` with its vigra ``axistags`` listing the axes in the ``stored`` order."""
    import json  # noqa: PLC0415

    text = attrs.get("axistags")
    if not isinstance(text, str):
        return attrs
    try:
        tags = json.loads(text)
        by_key = {tag["key"]: tag for tag in tags["axes"]}
    except (ValueError, KeyError, TypeError):
        return attrs
    if set(by_key) - set(stored):
        return attrs
    template = {"typeFlags": 2, "resolution": 0, "description": ""}
    tags["axes"] = [by_key.get(a, {"key": a, **template}) for a in stored]
    return {**attrs, "axistags": json.dumps(tags, indent=2) if "\n" in text else json.dumps(tags)}


def _multiscales(axes: str, resolutions: dict[str, float], levels: int = 1) -> dict[str, Any]:
    """NGFF 0.4 ``multiscales``: level k halves every spatial axis k times."""
    datasets = []
    for level in range(levels):
        factor = {a: 2**level if a in "zyx" else 1 for a in axes}
        scale = [float(resolutions.get(a) or 1.0) * factor[a] if a != "c" else 1.0 for a in axes]
        datasets.append({"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    return {"version": "0.4", "axes": [{"name": a, "type": _AXIS_TYPES[a]} for a in axes], "datasets": datasets}


_PYRAMID_MIN_SIDE = 32


def write_pyramid(group_path: str, axes: str, resolutions: dict[str, float]) -> int:
    """Add levels 1, 2 ... to an OME-Zarr image: every second voxel of the level above along each
    spatial axis (no smoothing, so labels stay labels), until a side would drop below 32.

    Levels are written slab by slab along the first spatial axis, so memory stays bounded.
    Returns the number of levels.
    """
    zarr = _zarr()
    group = zarr.open_group(group_path, mode="r+")
    spatial = [i for i, a in enumerate(axes) if a in "zyx"]
    level = 0
    while True:
        source = group[str(level)]
        if min(source.shape[i] for i in spatial) // 2 < _PYRAMID_MIN_SIDE:
            break
        shape = tuple((n + 1) // 2 if i in spatial else n for i, n in enumerate(source.shape))
        chunks = tuple(min(c, n) for c, n in zip(source.chunks, shape))
        target = zarr.open_array(os.path.join(group_path, str(level + 1)), mode="w", shape=shape, chunks=chunks,
                                 dtype=source.dtype, zarr_format=2, fill_value=0)
        first = spatial[0]
        step = max(2, 2 * chunks[first])
        for begin in range(0, source.shape[first], step):
            index = [slice(None, None, 2) if i in spatial else slice(None) for i in range(len(axes))]
            index[first] = slice(begin, min(begin + step, source.shape[first]), 2)
            out = [slice(None)] * len(axes)
            out[first] = slice(begin // 2, begin // 2 + len(range(*index[first].indices(source.shape[first]))))
            target[tuple(out)] = source[tuple(index)]
        level += 1
    group.attrs["multiscales"] = [_multiscales(axes, resolutions, level + 1)]
    return level + 1

