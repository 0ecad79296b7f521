"""Input path rules: HDF5 internal paths and lane nicknames, as ilastik applies them (spec §1.5, §3.3)."""
from __future__ import annotations

import os
import re
from pathlib import PurePath

_CONTAINER_SUFFIXES = (".ilp", ".h5", ".hdf5", ".npz", ".n5", ".zarr")


def split_dataset_path(path: str) -> tuple[str, str | None]:
    """Split ``file.h5/group/data`` into the file and the internal path.

    Of the container suffixes, the one whose first occurrence is latest in the string wins, and
    the path is split at that suffix's last occurrence (ilastik's ``PathComponents``).

    Returns
    -------
    external : str
    internal : str or None
        Without a leading ``/``; ``None`` when the path names the file itself.
    """
    best, best_first = None, -1
    for suffix in _CONTAINER_SUFFIXES:
        first = path.find(suffix)
        if first > best_first:
            best, best_first = suffix, first
    if best is None:
        return path, None
    cut = path.rfind(best) + len(best)
    internal = path[cut:].strip("/")
    return path[:cut], internal or None


def nickname(external_paths: list[str], internal_paths: list[str | None]) -> str:
    """ilastik's lane nickname from the (sorted, absolute) member paths of one input.

    The common prefix of the extension-less external paths, its last component; if there is an
    internal path, ``-`` and the common prefix of the internal paths with ``/`` replaced by ``-``.
    Every ``*`` is removed.
    """
    stems = [re.sub(r"\.[^./\\]*$", "", p) for p in external_paths]
    prefix = os.path.commonprefix(stems)
    name = PurePath(prefix).name if prefix else ""
    if not name:
        name = "stack_at-" + PurePath(stems[0]).name
    internals = [p for p in internal_paths if p]
    if internals and len(internals) == len(internal_paths):
        inner = os.path.commonprefix(internals).lstrip("/")
        if inner:
            name = name + "-" + inner.replace("/", "-")
    return name.replace("*", "")
