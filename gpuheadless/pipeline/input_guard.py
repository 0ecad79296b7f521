"""Inputs that change or vanish while a run reads them, noticed before an output is committed.

An HDF5 or image file replaced or rewritten during a run would give an output computed from
two different images; a Zarr or N5 folder removed during a run reads as its fill value (zeros).
Either way the output would look finished and be wrong, so the lane fails instead.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UserError
from ..io.stacks import expand_members


@dataclass(frozen=True)
class InputSnapshot:
    """What an input's files looked like when the run opened them.

    Attributes
    ----------
    display : str
        The input as the user gave it.
    files : dict
        Absolute path -> ``(device, inode, size, modification time in ns)``; for a folder (Zarr,
        N5) only ``(device, inode)``, since its chunks may change without the folder's own entry.
    """

    display: str
    files: dict[str, tuple[int, ...]]


def _identity(path: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if os.path.isdir(path):
        return (st.st_dev, st.st_ino)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def snapshot(path: str, cwd: str) -> InputSnapshot:
    """The identity of every local file of the input ``path`` (none for an http(s) input)."""
    if "://" in path:
        return InputSnapshot(path, {})
    files = {}
    for external, _ in expand_members(path, cwd):
        found = _identity(external)
        if found is not None:
            files[external] = found
    return InputSnapshot(path, files)


def check_unchanged(before: InputSnapshot) -> None:
    """Raise if a file of the input vanished or changed since :func:`snapshot`.

    Raises
    ------
    UserError
        Naming the input and the file, and what happened to it.
    """
    for path, identity in before.files.items():
        now = _identity(path)
        if now is None:
            raise UserError(f"input '{before.display}': {path} was removed during the run; its output was not written")
        if now != identity:
            raise UserError(f"input '{before.display}': {path} changed during the run; its output was not written")
