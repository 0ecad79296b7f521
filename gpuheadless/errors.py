"""The one exception type for problems the user can fix, the words for failed writes, and the
argument parser that reports its errors that way."""
from __future__ import annotations

import argparse
import contextlib
import os
import re
from typing import Iterator


class UserError(Exception):
    """A problem with the user's input, printed as one line without a traceback.

    The message should name the file (or option) and say what is wrong.
    ``exit_code`` is 1 for a failed input and 2 for a usage error.
    """

    exit_code = 1


class UsageError(UserError):
    """A malformed or unsupported command line (exit status 2)."""

    exit_code = 2


class NotImplementedYet(UsageError):
    """An ilastik option that gpuheadless accepts but does not implement yet."""

    def __init__(self, option: str, detail: str = "") -> None:
        msg = f"{option} is an ilastik option that gpuheadless does not implement yet"
        super().__init__(msg + (f": {detail}" if detail else ""))


def brief(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` of an unexpected exception, cut to ``limit`` characters, for a one-line error."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# HDF5 reports the system's error inside its own message: "... errno = 28, error message = ..."
_HDF5_ERRNO = re.compile(r"errno = (\d+)")


def describe_write_error(exc: OSError, path: str) -> str:
    """Why writing ``path`` failed, in a few words (a full disk, a size limit, a vanished folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"its folder '{folder}' was removed during the run"
    code = exc.errno
    if code is None:
        found = _HDF5_ERRNO.search(str(exc))
        code = int(found.group(1)) if found else None
    return f"cannot write it ({os.strerror(code) if code else exc})"


@contextlib.contextmanager
def writing_output(path: str) -> Iterator[None]:
    """Within: an ``OSError`` (full disk, ``ulimit -f``, the folder removed) becomes a one-line UserError."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"output '{path}': {describe_write_error(exc, path)}") from None


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are a :class:`UsageError` (one line, exit 2), as argparse's
    own but without the usage block."""

    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message}")
