"""HDF5 outputs whose failed writes never reach the HDF5 library.

HDF5 2.0 does not survive a failed write: after ``ENOSPC`` (a full disk) or ``EFBIG`` (a file-size
limit) the file can no longer be closed, and freeing its dataset handles crashes the interpreter
(SIGSEGV). So HDF5 outputs are written through a Python file object that records the first
failed write and from then on pretends success: HDF5 stays consistent, closes cleanly, and the
caller raises the recorded error once the file is closed (or as soon as it checks). Reading back
after a failed write raises it at once, since the data read may never have been written.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Iterator


class GuardedFile(io.RawIOBase):
    """An unbuffered binary file that keeps the first write error instead of raising it.

    Parameters
    ----------
    path : str
        An existing file, opened for reading and writing.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self._file = open(path, "r+b", buffering=0)  # noqa: SIM115 - closed by close()
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer: Any) -> int:
        if self.error is not None:  # what was to be read back may never have been written
            raise self.error
        return self._file.readinto(buffer)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        while self.error is None and view.nbytes:
            try:
                view = view[self._file.write(view) or 0:]
            except OSError as exc:
                self.error = exc
        return memoryview(data).nbytes

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._file.truncate(size)
            except OSError as exc:
                self.error = exc
        return self._file.tell() if size is None else size

    def flush(self) -> None:
        if self.error is None and not self._file.closed:
            try:
                self._file.flush()
            except OSError as exc:
                self.error = exc

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        super().close()

    def raise_error(self) -> None:
        """Raise the recorded write error, if any."""
        if self.error is not None:
            raise self.error


@contextlib.contextmanager
def hdf5_output(path: str, mode: str = "w") -> Iterator[Any]:
    """An ``h5py.File`` on ``path`` (which must exist) written through a :class:`GuardedFile`.

    Raises the first write error (``OSError``) after the file is closed.
    """
    import h5py  # noqa: PLC0415

    guard = GuardedFile(path)
    try:
        with h5py.File(guard, mode) as file:
            yield file
    finally:
        guard.close()
    guard.raise_error()
