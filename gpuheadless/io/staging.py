"""Temporary outputs: hidden names beside the final one, their owner, and what a killed run left.

Every output is built under ``.<name>.<pid>@<host>.<random>.partial`` in the output's folder
and renamed into place when complete. The owner in the name lets a later run tell a leftover of
a killed process (same host, process gone) from the temporary file of a run still writing
(another gpuheadless on the same folder): only leftovers are removed. Every temporary path
of this process is also kept in a registry, so that a signal can remove them all at once
(see :mod:`gpuheadless.interrupts`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
from typing import Iterator

log = logging.getLogger(__name__)

SUFFIX = ".partial"

_in_flight: set[str] = set()
_resumable: set[str] = set()
_lock = threading.Lock()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


def host_name() -> str:
    """This machine's short name, as it appears in temporary names (no dots)."""
    return socket.gethostname().split(".")[0] or "localhost"


def owner() -> str:
    """``<pid>@<host>``: who writes a temporary output (the pid of the current process)."""
    return f"{os.getpid()}@{host_name()}"


def _prefix(final_path: str) -> tuple[str, str]:
    directory, name = os.path.split(final_path)
    return directory or ".", f".{name}."


def register(path: str) -> str:
    """Record ``path`` as a temporary output of this process; returns it."""
    with _lock:
        _in_flight.add(os.path.abspath(path))
    return path


def release(path: str | None) -> None:
    """Forget ``path`` (renamed into place or removed)."""
    if path:
        with _lock:
            _in_flight.discard(os.path.abspath(path))


def keep_for_resume(path: str) -> None:
    """Record an unfinished output that a stop leaves in place on purpose (``--resume`` continues it)."""
    with _lock:
        _resumable.add(os.path.abspath(path))


def kept_for_resume() -> list[str]:
    """The unfinished outputs of this process that a stop keeps, still unfinished."""
    with _lock:
        return sorted(p for p in _resumable if os.path.isdir(p))


def in_flight() -> list[str]:
    """Every temporary output of this process not yet released."""
    with _lock:
        return sorted(_in_flight)


def remove(path: str | None) -> None:
    """Remove a temporary file or folder and forget it; a failure here never hides an earlier error."""
    if not path:
        return
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
    except OSError:
        pass
    release(path)


def remove_all_in_flight() -> int:
    """Remove every registered temporary output (on a signal); returns how many were there."""
    paths = in_flight()
    for path in paths:
        remove(path)
    return len(paths)


def temporary_file(final_path: str) -> str:
    """A new empty hidden file beside ``final_path``, registered, with the mode ``open`` would give it.

    Leftovers of killed runs for the same final name are removed first.
    """
    remove_leftovers(final_path)
    directory, prefix = _prefix(final_path)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{owner()}.", suffix=SUFFIX, dir=directory)
    register(tmp)
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600 files; outputs are meant to be shared like any other
    finally:
        os.close(fd)
    return tmp


def temporary_folder(final_path: str) -> str:
    """A new hidden folder beside ``final_path``, registered; leftovers of killed runs removed first."""
    remove_leftovers(final_path)
    directory, prefix = _prefix(final_path)
    return register(tempfile.mkdtemp(prefix=f"{prefix}{owner()}.", suffix=SUFFIX, dir=directory))


def commit(tmp_path: str, final_path: str) -> None:
    """Rename a finished temporary output into place and forget it."""
    os.replace(tmp_path, final_path)
    release(tmp_path)


_OWNER_PATTERN = re.compile(r"^(\d+)@([^.]+)\.")


def owner_of(entry: str, final_path: str) -> tuple[int, str] | None:
    """``(pid, host)`` from a temporary name of ``final_path`` (None if ``entry`` is not one)."""
    _, prefix = _prefix(final_path)
    if not (entry.startswith(prefix) and entry.endswith(SUFFIX)):
        return None
    match = _OWNER_PATTERN.match(entry[len(prefix):])
    return (int(match.group(1)), match.group(2)) if match else None


def writer_state(pid: int, host: str) -> str:
    """``"alive"``, ``"gone"`` or ``"unknown"`` (another host's process cannot be checked from here)."""
    if host != host_name():
        return "unknown"
    if pid == os.getpid():
        return "alive"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:  # someone else's live process
        return "alive"
    return "alive"


def remove_leftovers(final_path: str) -> int:
    """Remove the temporary outputs of ``final_path`` whose writer is gone; returns how many.

    A run killed with SIGKILL (or by the machine going down) cannot clean up; the next run that
    writes the same output does. Temporary outputs of live processes, and of other hosts (whose
    processes cannot be checked from here), are left alone.
    """
    directory, _ = _prefix(final_path)
    try:
        entries = os.listdir(directory)
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        found = owner_of(entry, final_path)
        if found is None or writer_state(*found) != "gone":
            continue
        remove(os.path.join(directory, entry))
        removed += 1
    if removed:
        log.info("Removed %d temporary file(s) of '%s' left by a run that was killed", removed, final_path)
    return removed


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[str]:
    """A folder in the system's temporary directory for the run's own use, removed afterwards and on a signal."""
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        register(path)
        try:
            yield path
        finally:
            release(path)
