"""Inputs that name several files or datasets: globs, path lists and HDF5 globs (spec §1.5).

``"stack_*.png"``, ``a.tif:b.tif`` and ``vol.h5/slices/img*`` each become one image: the members,
sorted as strings, are stacked along ``--stack_along`` (default ``z``). If the members lack that
axis it is put in front (``yxc`` slices give ``zyxc``); otherwise they are joined along it.
Members are opened when a block needs them, so a long stack is never held in memory whole.
"""
from __future__ import annotations

import fnmatch
import glob
import os
import threading
from collections import OrderedDict

import numpy as np

from ..errors import UsageError, UserError
from .paths import nickname, split_dataset_path
from .readers import ImageSource, open_image

_GLOB_CHARS = "*?["
_CACHED_MEMBERS = 4


def has_glob(text: str) -> bool:
    return any(ch in text for ch in _GLOB_CHARS)


def expand_members(path: str, cwd: str) -> list[tuple[str, str | None]]:
    """The (external file, internal dataset) members an input names, sorted as ilastik sorts them.

    Raises
    ------
    UsageError
        A glob that matches nothing.
    UserError
        Members with different file extensions.
    """
    expanded = os.path.expanduser(path)
    parts = expanded.split(os.pathsep) if os.pathsep in expanded and not os.path.exists(expanded) else [expanded]
    members: list[tuple[str, str | None]] = []
    for part in parts:
        external, internal = split_dataset_path(part)
        if not os.path.isabs(external):
            external = os.path.join(cwd, external)
        externals = sorted(glob.glob(external)) if has_glob(external) else [external]
        if not externals:
            raise UsageError(f"input '{path}': the pattern '{part}' matches no file")
        for ext in externals:
            if internal is not None and has_glob(internal):
                names = _matching_datasets(ext, internal, path)
                members.extend((ext, name) for name in names)
            else:
                members.append((ext, internal))
    members.sort(key=lambda m: m[0] + ("/" + m[1] if m[1] else ""))
    suffixes = {os.path.splitext(ext)[1].lower() for ext, _ in members}
    if len(suffixes) > 1:
        raise UserError(f"input '{path}': the members of a stack must share one file type, found {', '.join(sorted(suffixes))}")
    return members


def _matching_datasets(external: str, pattern: str, display: str) -> list[str]:
    import h5py  # noqa: PLC0415

    if not os.path.exists(external):
        raise UserError(f"input '{display}': file does not exist")
    try:
        with h5py.File(external, "r") as f:
            names: list[str] = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    except OSError as exc:
        raise UserError(f"input '{display}': not a readable HDF5 file ({exc})") from None
    matched = sorted(n for n in names if fnmatch.fnmatchcase(n, pattern.strip("/")))
    if not matched:
        raise UsageError(f"input '{display}': no dataset in {external} matches '{pattern}'")
    return matched


def open_input(path: str, cwd: str | None = None, stack_along: str = "z") -> ImageSource:
    """Open an input as given on the command line: one file or dataset, or a stack of them.

    Parameters
    ----------
    path : str
        A file, ``file.h5/internal/path``, a glob, a list joined with the OS path separator, or
        an HDF5 file with a glob as internal path.
    cwd : str, optional
        Directory relative paths are taken from (default: the current one).
    stack_along : str
        Axis (one of ``tzyxc``) the members of a stack are joined along.
    """
    cwd = cwd or os.getcwd()
    expanded = os.path.expanduser(path)
    is_list = os.pathsep in expanded and not os.path.exists(expanded)
    if "://" in path or not (has_glob(expanded) or is_list):  # a URL is one image, never a list
        return open_image(path, cwd)
    stack_along = (stack_along or "z").lower()
    if len(stack_along) != 1 or stack_along not in "tzyxc":
        raise UsageError(f"--stack_along: expected one of t, z, y, x, c, got {stack_along!r}")
    members = expand_members(path, cwd)
    return _StackReader(path, members, cwd, stack_along).source()


class _StackReader:
    """Reads regions of a stack, opening members on demand (a few stay open)."""

    def __init__(self, display: str, members: list[tuple[str, str | None]], cwd: str, axis: str) -> None:
        self.display, self.members, self.cwd, self.axis = display, members, cwd, axis
        self._lock = threading.Lock()
        self._open: OrderedDict[int, ImageSource] = OrderedDict()
        first = self._member(0)
        self.member_axes, self.member_shape, self.dtype = first.axes, first.shape, first.dtype
        self.first = first
        for index in range(1, len(members)):  # headers only: every member must match the first
            self._check(open_image(self._member_path(index), cwd), index).close()
        if axis in first.axes:
            self.position = first.axes.index(axis)
            self.step = first.shape[self.position]
            axes = first.axes
            shape = list(first.shape)
            shape[self.position] = self.step * len(members)
        else:
            self.position, self.step = None, 1
            axes = axis + first.axes
            shape = [len(members)] + list(first.shape)
        self.axes, self.shape = axes, tuple(shape)

    def _member_path(self, index: int) -> str:
        external, internal = self.members[index]
        return external + ("/" + internal if internal else "")

    def _member(self, index: int) -> ImageSource:
        with self._lock:
            source = self._open.get(index)
            if source is not None:
                self._open.move_to_end(index)
                return source
        source = open_image(self._member_path(index), self.cwd)
        if index:
            self._check(source, index)
        with self._lock:
            self._open[index] = source
            while len(self._open) > _CACHED_MEMBERS:
                _, old = self._open.popitem(last=False)
                old.close()
        return source

    def _check(self, source: ImageSource, index: int) -> ImageSource:
        if source.shape != self.member_shape or source.axes != self.member_axes or source.dtype != self.dtype:
            described = f"shape {source.shape}, {source.dtype}"
            source.close()
            raise UserError(
                f"input '{self.display}': member '{self._member_path(index)}' has {described}, the first member "
                f"shape {self.member_shape}, {self.dtype}; a stack needs members of one shape and type"
            )
        return source

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        if self.position is None:
            along, rest = region[0], region[1:]
        else:
            along, rest = region[self.position], region
        start, stop, _ = along.indices(self.shape[0 if self.position is None else self.position])
        if stop <= start:
            raise ValueError(f"empty read along the stack axis: {along}")
        pieces = []
        for index in range(start // self.step, (stop - 1) // self.step + 1):
            member = self._member(index)
            if self.position is None:
                pieces.append(member.read(tuple(rest))[None])
            else:
                local = list(rest)
                local[self.position] = slice(max(start - index * self.step, 0), min(stop - index * self.step, self.step))
                pieces.append(member.read(tuple(local)))
        return np.concatenate(pieces, axis=0 if self.position is None else self.position)

    def close(self) -> None:
        with self._lock:
            for source in self._open.values():
                source.close()
            self._open.clear()

    def source(self) -> ImageSource:
        externals = [e for e, _ in self.members]
        internals = [i for _, i in self.members]
        return ImageSource(
            display=self.display, axes=self.axes, shape=self.shape, dtype=self.dtype,
            nickname=nickname(externals, internals), dataset_dir=os.path.dirname(externals[0]),
            read_region=self.read, close=self.close, resolutions=self.first.resolutions,
            axis_units=self.first.axis_units, drange=self.first.drange,
        )
