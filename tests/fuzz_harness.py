"""Fuzz harness for issue 15, "a batch never loses work and never lies".

Hypothesis strategies build damaged ``.ilp`` projects (HDF5 structure, pickles, vigra forest
arrays, feature selections, label blocks), damaged HDF5, TIFF, PNG and Zarr inputs, and odd
command lines; :func:`run_case` applies gpuheadless to one such case, in this process, in a
forked child or in a fresh interpreter; :func:`check_outcome` tells whether the run kept the
promise:

* no Python traceback (nor a warning from gpuheadless's own code) on stderr, no uncaught exception
  but ``SystemExit``;
* no hang (a time limit per case) and no interpreter crash (a signal, status 134 or 139);
* exit status 0, or 1 or 2 with a short message (a few lines of bounded length);
* after a failure nothing at any final output name, and no hidden ``.partial`` left at all;
* the project and the inputs unchanged, nothing written outside the case folder, and no
  crafted pickle executed (such a pickle would create a file named ``PWNED``).

Used by ``tests/test_fuzz.py`` (a few hundred derandomized cases) and ``bench/fuzz.py``
(thousands). Every case works on copies in its own folder; the shared data is only read.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import h5py
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# --------------------------------------------------------------------------------------------
# What a run may do
# --------------------------------------------------------------------------------------------

EXPECTED_EXIT = (0, 1, 2)
MAX_ERROR_LINES = 20  # a batch of one or two inputs: log lines, the error, the summary
MAX_LINE_CHARS = 1000
DEFAULT_TIMEOUT = 60.0
MEMORY_CAP = 3 << 30  # address space a case may add to its process (beyond it: MemoryError, not the OOM killer)
MARKER = "PWNED"  # created by the crafted pickles if anything ever executed them
CASE = "@CASE@"  # stands for the case folder's absolute path in an argument list
SIDE = 40  # the pixel projects' largest feature scale (10) needs 36 pixels
MODES = ("inprocess", "fork", "subprocess")


class CaseTimeout(BaseException):
    """Raised by the alarm in an in-process run that outlived its time limit."""


# --------------------------------------------------------------------------------------------
# The pristine material every case starts from
# --------------------------------------------------------------------------------------------

PIXEL_PROJECT = "PixelClassification2d.ilp"
OBJECT_PROJECTS = {"object_seg": "ObjectClassification2d3c_wSeg.ilp", "object_pred": "ObjectClassification2d3c_wPred.ilp"}


@dataclass(frozen=True)
class Seeds:
    """Pristine files (copies outside the shared data) that cases copy and damage.

    Attributes
    ----------
    root : Path
        Folder holding the pristine files.
    data : Path
        The shared ilastik data (``projects/``, ``inputs/``), only read.
    files : dict
        Seed name -> file or folder under ``root``.
    """

    root: Path
    data: Path
    files: dict[str, Path]


def _blobs(side: int) -> np.ndarray:
    """A binary image with three separate rectangles (objects for the object projects)."""
    seg = np.zeros((side, side), np.uint8)
    seg[3:9, 3:12] = 1
    seg[side // 2 - 4:side // 2 + 6, side // 2:side // 2 + 5] = 1
    seg[side - 5:side - 3, 2:side - 2] = 1
    return seg


def build_seeds(data: Path, root: Path) -> Seeds:
    """Copy the smallest projects and write tiny valid inputs of every format under ``root``.

    Parameters
    ----------
    data : Path
        The shared ilastik data folder (read only).
    root : Path
        An empty folder for the pristine copies.
    """
    import tifffile  # noqa: PLC0415
    import zarr  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, project in (("pixel", PIXEL_PROJECT), *OBJECT_PROJECTS.items()):
        files[name] = root / f"{name}.ilp"
        shutil.copyfile(data / "projects" / project, files[name])
        files[name].chmod(0o644)
    rng = np.random.default_rng(15)
    image = rng.integers(0, 256, (SIDE, SIDE), dtype=np.uint8)
    with h5py.File(root / "img.h5", "w") as f:
        f.create_dataset("data", data=image, chunks=(16, 16), compression="gzip")
    tifffile.imwrite(root / "img.tif", image)
    Image.fromarray(image).save(root / "img.png")
    arr = zarr.create_array(str(root / "img.zarr"), shape=image.shape, chunks=(16, 16), dtype="u1", zarr_format=2)
    arr[:] = image
    group = zarr.open_group(str(root / "ome.zarr"), mode="w", zarr_format=2)
    level = group.create_array("s0", shape=image.shape, chunks=(16, 16), dtype="u1")
    level[:] = image
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
                                   "datasets": [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}]}]
    side = 32
    with h5py.File(root / "raw3c.h5", "w") as f:
        f["data"] = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    with h5py.File(root / "seg.h5", "w") as f:
        f["data"] = _blobs(side)
    with h5py.File(root / "pmap.h5", "w") as f:
        fg = _blobs(side).astype(np.float32) * 0.9 + 0.05
        f["data"] = np.stack([fg, 1 - fg], axis=-1)
    labels = np.zeros((SIDE, SIDE), np.uint8)
    labels[2:8, 2:8], labels[30:36, 30:36] = 1, 2
    with h5py.File(root / "labels.h5", "w") as f:
        f["data"] = labels
    Image.fromarray(labels).save(root / "labels.png")
    for name in ("img.h5", "img.tif", "img.png", "img.zarr", "ome.zarr", "raw3c.h5", "seg.h5", "pmap.h5", "labels.h5",
                 "labels.png"):
        files[name] = root / name
    return Seeds(root=root, data=data, files=files)


# --------------------------------------------------------------------------------------------
# Mutations: small printable operations on one file (or a file inside a Zarr folder)
# --------------------------------------------------------------------------------------------

def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of ``value`` cut to ``limit`` characters, arrays summarised."""
    if isinstance(value, np.ndarray):
        text = f"array(shape={value.shape}, dtype={value.dtype}, first={value.reshape(-1)[:4].tolist()})"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True, eq=False)
class Op:
    """One mutation of one file; ``apply`` never raises for a mutation that does not fit."""

    def apply(self, path: Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __str__(self) -> str:
        fields = ", ".join(f"{k}={_short(v, 400)}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


def _h5_store(f: h5py.File, item: str, value: Any) -> None:
    """Create dataset ``item`` holding ``value`` (replacing what was there)."""
    if item in f or f.get(item, getlink=True) is not None:
        del f[item]
    parent = item.rsplit("/", 1)[0] if "/" in item else ""
    if parent and parent not in f:
        f.require_group(parent)
    if isinstance(value, HugeDataset):
        f.create_dataset(item, shape=value.shape, dtype=value.dtype, chunks=tuple(min(16, s) or 1 for s in value.shape))
    elif isinstance(value, bytes):
        f.create_dataset(item, data=np.void(value) if value else np.void(b"\0"))
    elif isinstance(value, str):
        try:
            f.create_dataset(item, data=value)
        except (ValueError, TypeError):  # a NUL or a lone surrogate: keep the bytes
            f.create_dataset(item, data=np.void(value.encode("utf-8", "surrogatepass") or b"\0"))
    else:
        f.create_dataset(item, data=value)


@dataclass(frozen=True)
class HugeDataset:
    """A chunked dataset declaring ``shape`` without storing any chunk (reads as the fill value)."""

    shape: tuple[int, ...]
    dtype: str = "u1"


def _h5_edit(path: Path, change: Callable[[h5py.File], Any]) -> None:
    """Apply ``change`` to ``path`` opened for editing; an h5py error skips the mutation."""
    try:
        with h5py.File(path, "r+") as f:
            change(f)
    except (KeyError, ValueError, TypeError, OSError, RuntimeError, IndexError, AttributeError, MemoryError):
        pass


class H5Op(Op):
    """A mutation of an HDF5 file's structure: ``change`` edits the open file."""

    def apply(self, path: Path) -> None:
        _h5_edit(path, self.change)

    def change(self, f: h5py.File) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class H5Delete(H5Op):
    """Remove a group or dataset."""

    item: str

    def change(self, f: h5py.File) -> None:
        del f[self.item]


@dataclass(frozen=True, eq=False)
class H5Rename(H5Op):
    """Move a group or dataset to another name in the same group."""

    item: str
    name: str

    def change(self, f: h5py.File) -> None:
        parent = self.item.rsplit("/", 1)[0] if "/" in self.item else ""
        f.move(self.item, f"{parent}/{self.name}" if parent else self.name)


@dataclass(frozen=True, eq=False)
class H5Write(H5Op):
    """Replace (or create) a dataset with ``value``: an array, text, bytes or a :class:`HugeDataset`."""

    item: str
    value: Any

    def change(self, f: h5py.File) -> None:
        _h5_store(f, self.item, self.value)


@dataclass(frozen=True, eq=False)
class H5Group(H5Op):
    """Replace a dataset (or group) by an empty group."""

    item: str

    def change(self, f: h5py.File) -> None:
        if self.item in f:
            del f[self.item]
        f.create_group(self.item)


@dataclass(frozen=True, eq=False)
class H5Poke(H5Op):
    """Set one element of an existing dataset (cast to its dtype, wrapping), keeping its shape."""

    item: str
    where: float  # position as a fraction of the size
    value: float

    def change(self, f: h5py.File) -> None:
        ds = f[self.item]
        if ds.size > 2**20:  # a declared-huge dataset: nothing to poke
            return
        values = np.array(ds[()])
        if values.size == 0 or values.dtype.kind not in "biuf":
            return
        flat = values.reshape(-1)
        with np.errstate(all="ignore"):
            if values.dtype.kind == "f":
                flat[min(int(self.where * flat.size), flat.size - 1)] = self.value
            elif np.isfinite(self.value):
                info = np.iinfo(np.int64)
                wrapped = np.array(int(max(min(self.value, info.max), info.min))).astype(values.dtype)
                flat[min(int(self.where * flat.size), flat.size - 1)] = wrapped
        ds[...] = values


@dataclass(frozen=True, eq=False)
class H5Attr(H5Op):
    """Set (or, with ``value`` None, delete) an attribute."""

    item: str
    name: str
    value: Any

    def change(self, f: h5py.File) -> None:
        attrs = f[self.item].attrs if self.item else f.attrs
        if self.value is None:
            del attrs[self.name]
        else:
            attrs[self.name] = self.value


@dataclass(frozen=True, eq=False)
class H5Sequences(H5Op):
    """Replace a dataset by variable-length sequences of bytes (a type ilastik never stores)."""

    item: str

    def change(self, f: h5py.File) -> None:
        if self.item in f:
            del f[self.item]
        ds = f.create_dataset(self.item, (2,), dtype=h5py.vlen_dtype(np.uint8))
        ds[0], ds[1] = np.arange(3, dtype=np.uint8), np.arange(5, dtype=np.uint8)


@dataclass(frozen=True, eq=False)
class H5Link(H5Op):
    """Replace an item by a soft link (``target`` inside the file) or an external link (``file``)."""

    item: str
    target: str
    file: str = ""

    def change(self, f: h5py.File) -> None:
        if f.get(self.item, getlink=True) is not None:
            del f[self.item]
        f[self.item] = h5py.ExternalLink(self.file, self.target) if self.file else h5py.SoftLink(self.target)


@dataclass(frozen=True, eq=False)
class Truncate(Op):
    """Keep only the first ``keep`` fraction of the file's bytes."""

    keep: float

    def apply(self, path: Path) -> None:
        os.truncate(path, int(path.stat().st_size * self.keep))


@dataclass(frozen=True, eq=False)
class FlipBytes(Op):
    """XOR bytes at positions given as fractions of the file size."""

    flips: tuple[tuple[float, int], ...]

    def apply(self, path: Path) -> None:
        raw = bytearray(path.read_bytes())
        for where, mask in self.flips:
            if raw:
                raw[min(int(where * len(raw)), len(raw) - 1)] ^= mask or 0xFF
        path.write_bytes(bytes(raw))


@dataclass(frozen=True, eq=False)
class Overwrite(Op):
    """Replace the whole content by ``content`` (empty: an empty file)."""

    content: bytes

    def apply(self, path: Path) -> None:
        path.write_bytes(self.content)


@dataclass(frozen=True, eq=False)
class Rewrite(Op):
    """Write ``array`` as a new file of the same format (HDF5 ``data``, TIFF, PNG, Zarr array)."""

    array: np.ndarray

    def apply(self, path: Path) -> None:
        write_image(path, self.array)


def write_image(path: Path, array: np.ndarray) -> None:
    """``array`` as the image file ``path`` (its suffix picks the format); unwritable arrays are skipped."""
    suffix = path.suffix.lower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _write_image(path, suffix, array)


def _write_image(path: Path, suffix: str, array: np.ndarray) -> None:
    try:
        if suffix == ".h5":
            with h5py.File(path, "w") as f:
                f.create_dataset("data", data=array)
        elif suffix == ".tif":
            import tifffile  # noqa: PLC0415

            tifffile.imwrite(path, array)
        elif suffix == ".png":
            from PIL import Image  # noqa: PLC0415

            Image.fromarray(array).save(path)
        elif suffix == ".zarr":
            import zarr  # noqa: PLC0415

            shutil.rmtree(path, ignore_errors=True)
            arr = zarr.create_array(str(path), shape=array.shape, dtype=array.dtype, zarr_format=2,
                                    chunks=tuple(max(1, min(16, s)) for s in array.shape) or None)
            if array.size:
                arr[...] = array
    except Exception:  # noqa: BLE001 - a writer refusing this array: the mutation is skipped
        pass


@dataclass(frozen=True, eq=False)
class InFile(Op):
    """Apply ``op`` to the file ``rel`` inside a folder (a Zarr chunk or metadata file)."""

    rel: str
    op: Op

    def apply(self, path: Path) -> None:
        inner = path / self.rel
        if inner.is_file():
            self.op.apply(inner)

    def __str__(self) -> str:
        return f"InFile({self.rel!r}, {self.op})"


@dataclass(frozen=True, eq=False)
class Remove(Op):
    """Delete the file ``rel`` inside a folder (a Zarr chunk or metadata file)."""

    rel: str

    def apply(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            (path / self.rel).unlink()


@dataclass(frozen=True, eq=False)
class JsonSet(Op):
    """Set ``keys`` (a path of dict keys and list indices) in the JSON file ``rel`` to ``value``."""

    rel: str
    keys: tuple[Any, ...]
    value: Any

    def apply(self, path: Path) -> None:
        target = path / self.rel
        try:
            doc = json.loads(target.read_text())
            node = doc
            for key in self.keys[:-1]:
                node = node[key]
            node[self.keys[-1]] = self.value
            target.write_text(json.dumps(doc))
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            pass


@dataclass(frozen=True, eq=False)
class TiffTag(Op):
    """Overwrite the (inline) value of a tag of the first TIFF page, in the file's byte order."""

    code: int
    value: int

    def apply(self, path: Path) -> None:
        import tifffile  # noqa: PLC0415

        try:
            with tifffile.TiffFile(path) as tif:
                tag = tif.pages[0].tags.get(self.code)
                if tag is None or tag.count != 1 or tag.dtype not in (3, 4):
                    return
                offset, fmt = tag.valueoffset, tif.byteorder + ("H" if tag.dtype == 3 else "I")
            with open(path, "r+b") as stream:
                stream.seek(offset)
                stream.write(struct.pack(fmt, self.value & (0xFFFF if fmt[-1] == "H" else 0xFFFFFFFF)))
        except Exception:  # noqa: BLE001 - no page, no such tag: the mutation is skipped
            pass


@dataclass(frozen=True, eq=False)
class PngHeader(Op):
    """Rewrite the PNG IHDR fields (width, height, bit depth, colour type), the CRC fixed or not."""

    width: int
    height: int
    depth: int
    color: int
    fix_crc: bool

    def apply(self, path: Path) -> None:
        raw = bytearray(path.read_bytes())
        if len(raw) < 33 or raw[12:16] != b"IHDR":
            return
        raw[16:26] = struct.pack(">IIBB", self.width & 0xFFFFFFFF, self.height & 0xFFFFFFFF, self.depth & 0xFF,
                                 self.color & 0xFF)
        if self.fix_crc:
            raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])) & 0xFFFFFFFF)
        path.write_bytes(bytes(raw))


# --------------------------------------------------------------------------------------------
# A case: files to build in a fresh folder, and the command line to run there
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileSpec:
    """A file (or folder) of a case: a copy of seed ``seed`` at ``name``, then ``ops`` applied in order."""

    name: str
    seed: str
    ops: tuple[Op, ...] = ()


@dataclass(frozen=True)
class Case:
    """One fuzz case.

    Attributes
    ----------
    target : str
        Which harness target made it (for the counts).
    files : tuple of FileSpec
        What the case folder holds before the run.
    argv : tuple of str
        The command line after ``gpuheadless`` (``@CASE@`` stands for the case folder).
    inputs : int
        How many images the command line names (0: a successful run need not write anything).
    isolate : bool
        The case damages HDF5 bytes (which can crash the HDF5 library): never run in-process.
    """

    target: str
    files: tuple[FileSpec, ...]
    argv: tuple[str, ...]
    inputs: int = 1
    isolate: bool = False

    def describe(self) -> str:
        """A readable account of the case: files with their mutations, then the command line."""
        lines = [f"target {self.target}"]
        for spec in self.files:
            lines.append(f"  {spec.name} <- {spec.seed}" + "".join(f"\n      {op}" for op in spec.ops))
        lines.append("  gpuheadless " + " ".join(_quote(a) for a in self.argv))
        return "\n".join(lines)


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./{}-]+", arg) else repr(arg)


class HarnessError(RuntimeError):
    """The harness itself failed to build a case (not a finding about gpuheadless)."""


def materialize(case: Case, seeds: Seeds, folder: Path) -> None:
    """Build the case's files in the empty ``folder`` (and ``inputdata`` -> the shared inputs).

    The mutations run in a forked child: editing a damaged HDF5 file can leave the library holding
    it open (and flushing it later, from whichever process holds that state) or even crash it,
    and neither may reach this process, which runs the cases.

    Raises
    ------
    HarnessError
        A mutation raised an exception (a harness bug).
    """
    (folder / "inputdata").symlink_to(seeds.data / "inputs")
    for spec in case.files:
        target = folder / spec.name
        target.parent.mkdir(parents=True, exist_ok=True)
        source = seeds.files[spec.seed]
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    if any(spec.ops for spec in case.files):
        _in_child(lambda: [op.apply(folder / spec.name) for spec in case.files for op in spec.ops])


def _in_child(work: Callable[[], Any]) -> None:
    """Run ``work`` in a forked child; a crash of the child is ignored (the files stay as they are)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        code = 0
        try:
            work()
        except BaseException:  # noqa: BLE001 - reported to the parent
            os.write(write_end, traceback.format_exc().encode()[-4000:])
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stream:
        message = stream.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
        raise HarnessError(f"a mutation failed:\n{message}")


# --------------------------------------------------------------------------------------------
# Running a case
# --------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What one run did.

    Attributes
    ----------
    mode : str
        ``inprocess``, ``fork`` or ``subprocess``.
    code : int or None
        Exit status (None when killed or when an exception escaped in-process).
    signal : int or None
        The signal that killed the child, if any.
    stdout, stderr : str
    exception : str or None
        Traceback of an exception other than SystemExit that escaped ``main`` in-process.
    timed_out : bool
    seconds : float
    """

    mode: str
    code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    exception: str | None = None
    timed_out: bool = False
    seconds: float = 0.0


def _exit_status(exc: SystemExit) -> tuple[int, str]:
    """Python's exit status for ``SystemExit`` and what the interpreter would print for it."""
    if exc.code is None:
        return 0, ""
    if isinstance(exc.code, int):
        return exc.code, ""
    return 1, f"{exc.code}\n"


def _environment(folder: Path) -> dict[str, str]:
    return {"HOME": str(folder), "LAZYFLOW_THREADS": "1", "LAZYFLOW_TOTAL_RAM_MB": "1024"}


@contextlib.contextmanager
def _patched_environ(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _address_space() -> int:
    """The current process's virtual memory size in bytes."""
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[0]) * resource.getpagesize()


@contextlib.contextmanager
def memory_cap(extra: int = MEMORY_CAP):
    """Within: allocations beyond ``extra`` more bytes of address space fail (``MemoryError``).

    A case that asks for absurd amounts of memory must not summon the OOM killer on a shared
    machine; the soft limit is restored afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _reset_logging() -> None:
    """Drop the handlers ``main`` installed (they point at this case's captured streams or log file)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        with contextlib.suppress(Exception):
            handler.close()


def _on_alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout()


def _call_main(argv: list[str]) -> tuple[int, str]:
    """``gpuheadless.cli.main(argv)``; ``SystemExit`` becomes its status (and message)."""
    from gpuheadless.cli import main  # noqa: PLC0415

    try:
        return main(argv), ""
    except SystemExit as exc:
        return _exit_status(exc)


def run_in_process(argv: list[str], folder: Path, timeout: float) -> Outcome:
    """Call ``main`` here, in ``folder``, with stdout and stderr captured and an alarm as time limit."""
    outcome = Outcome("inprocess")
    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_alarm = os.getcwd(), signal.signal(signal.SIGALRM, _on_alarm)
    start = time.monotonic()
    caught: list[warnings.WarningMessage] = []
    try:
        with _patched_environ(_environment(folder)), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                memory_cap(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # as a fresh interpreter would show them (a test runner hides them)
            os.chdir(folder)
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                outcome.code, extra = _call_main(argv)
                err.write(extra)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except CaseTimeout:
        outcome.timed_out = True
    except Exception:  # noqa: BLE001 - the property: nothing but SystemExit escapes main
        outcome.exception = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
        os.chdir(old_cwd)
        _reset_logging()
    outcome.seconds = time.monotonic() - start
    shown = dict.fromkeys(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
    outcome.stdout, outcome.stderr = out.getvalue(), err.getvalue() + "".join(shown)
    return outcome


def _child(argv: list[str], folder: Path, out_path: Path, err_path: Path) -> None:
    """The forked child: run ``main`` with fds 1 and 2 on files; never returns."""
    code = 70
    try:
        for fd, target in ((1, out_path), (2, err_path)):
            handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(handle, fd)
            os.close(handle)
        sys.stdout = open(1, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
        os.chdir(folder)
        os.environ.update(_environment(folder))
        warnings.resetwarnings()  # Python's own filters, not a test runner's recorder
        warnings.simplefilter("default")
        resource.setrlimit(resource.RLIMIT_AS, (_address_space() + MEMORY_CAP, resource.getrlimit(resource.RLIMIT_AS)[1]))
        try:
            code, extra = _call_main(argv)
            sys.stderr.write(extra)
        except BaseException:  # noqa: BLE001 - as the interpreter would: traceback, status 1
            traceback.print_exc()
            code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code if isinstance(code, int) and 0 <= code < 256 else 70)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "backslashreplace")
    except OSError:
        return ""


def run_forked(argv: list[str], folder: Path, timeout: float) -> Outcome:
    """Run ``main`` in a forked child (a crash kills only the child); SIGKILL after ``timeout``."""
    outcome = Outcome("fork")
    out_path, err_path = folder.parent / f"{folder.name}.stdout", folder.parent / f"{folder.name}.stderr"
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _child(argv, folder, out_path, err_path)
    status, pause = 0, 0.002
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            outcome.timed_out = True
            break
        time.sleep(pause)
        pause = min(pause * 1.5, 0.05)
    outcome.seconds = time.monotonic() - start
    if not outcome.timed_out:
        if os.WIFSIGNALED(status):
            outcome.signal = os.WTERMSIG(status)
        else:
            outcome.code = os.WEXITSTATUS(status)
    outcome.stdout, outcome.stderr = _read_text(out_path), _read_text(err_path)
    for path in (out_path, err_path):
        with contextlib.suppress(OSError):
            path.unlink()
    return outcome


def _cap_child() -> None:
    """In a fresh interpreter (before it starts): the same address-space cap, over a 2 GiB start."""
    resource.setrlimit(resource.RLIMIT_AS, ((2 << 30) + MEMORY_CAP, resource.getrlimit(resource.RLIMIT_AS)[1]))


def run_subprocess(argv: list[str], folder: Path, timeout: float) -> Outcome:
    """Run ``python -m gpuheadless ARGV`` in a fresh interpreter."""
    outcome = Outcome("subprocess")
    env = {**os.environ, **_environment(folder)}
    command = [sys.executable, "-m", "gpuheadless", *argv]
    start = time.monotonic()
    try:
        proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, timeout=timeout, check=False,
                              preexec_fn=_cap_child)
    except subprocess.TimeoutExpired as exc:
        outcome.timed_out = True
        outcome.stdout = (exc.stdout or b"").decode("utf-8", "backslashreplace")
        outcome.stderr = (exc.stderr or b"").decode("utf-8", "backslashreplace")
    else:
        if proc.returncode < 0:
            outcome.signal = -proc.returncode
        else:
            outcome.code = proc.returncode
        outcome.stdout = proc.stdout.decode("utf-8", "backslashreplace")
        outcome.stderr = proc.stderr.decode("utf-8", "backslashreplace")
    outcome.seconds = time.monotonic() - start
    return outcome


RUNNERS: dict[str, Callable[[list[str], Path, float], Outcome]] = {
    "inprocess": run_in_process, "fork": run_forked, "subprocess": run_subprocess,
}


# --------------------------------------------------------------------------------------------
# The property
# --------------------------------------------------------------------------------------------

Snapshot = dict[str, tuple[str, int, int]]


def snapshot(folder: Path) -> Snapshot:
    """Every entry under ``folder`` (links not followed): relative path -> (kind, size, mtime_ns)."""
    found: Snapshot = {}
    for top, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = os.path.join(top, name)
            st_ = os.lstat(path)
            kind = "l" if os.path.islink(path) else "d" if os.path.isdir(path) else "f"
            found[os.path.relpath(path, folder)] = (kind, st_.st_size if kind == "f" else 0,
                                                    st_.st_mtime_ns if kind == "f" else 0)
    return found


def flag_values(argv: Sequence[str], flag: str) -> list[str]:
    """The values given to ``flag`` (``--flag=V`` or ``--flag V``) in ``argv``."""
    values = []
    for i, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            values.append(arg[len(flag) + 1:])
        elif arg == flag and i + 1 < len(argv):
            values.append(argv[i + 1])
    return values


def _allowed_writes(case: Case, folder: Path) -> set[str]:
    """Entries a run may create even when it fails: its log file (and the folders above it)."""
    allowed = set()
    for value in flag_values(case.argv, "--logfile"):
        path = os.path.normpath(os.path.join(folder, os.path.expanduser(value.replace(CASE, str(folder)))))
        rel = os.path.relpath(path, folder)
        allowed.add(rel)
    return allowed


def _may_replace(case: Case, folder: Path) -> set[str]:
    """Existing files the command line asks to replace (``train --output``)."""
    if not case.argv or case.argv[0] != "train":
        return set()
    out = set()
    for value in flag_values(case.argv, "--output"):
        out.add(os.path.relpath(os.path.normpath(os.path.join(folder, value.replace(CASE, str(folder)))), folder))
    return out


RESUMABLE = re.compile(r"\.zarr\.partial$")
IGNORED_NEW = {".cupy"}  # CuPy's kernel cache in $HOME (the case folder), not an output
_QUOTED = re.compile(r"'[^']*'")
_BATCH_SUMMARY = re.compile(r"(\d+) of (\d+) input\(s\) failed")
# a Python warning raised by gpuheadless's own code (a library's warning about a file it reads is its business)
_PY_WARNING = re.compile(r"gpuheadless/[\w/]+\.py:\d+: \w*Warning: ")


def check_outcome(case: Case, outcome: Outcome, before: Snapshot, after: Snapshot, folder: Path,
                  outside: tuple[set[str], set[str]] | None = None, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """The violations of the property by one run (empty: the run kept every promise).

    Parameters
    ----------
    case, outcome
        The case and what its run did.
    before, after : Snapshot
        The case folder before and after the run.
    folder : Path
        The case folder.
    outside : (set, set), optional
        Names in the case folder's parent before and after the run (nothing may appear there).
    timeout : float
        The time limit the run had.
    """
    found: list[str] = []
    err = outcome.stderr
    if outcome.timed_out:
        found.append(f"hang: still running after {timeout:.0f} s")
    if outcome.signal is not None:
        found.append(f"crash: killed by signal {outcome.signal} ({signal.Signals(outcome.signal).name})")
    if outcome.exception:
        found.append("uncaught exception escaped main: " + outcome.exception.strip().splitlines()[-1][:300])
    if "Traceback (most recent call last)" in err:
        last = [line for line in err.splitlines() if line.strip()][-1]
        found.append(f"traceback on stderr: {last[:300]}")
    elif "--- Logging error ---" in err:
        found.append("logging error report on stderr")
    warning = _PY_WARNING.search(err)
    if warning:
        line = next(x for x in err.splitlines() if _PY_WARNING.search(x))
        found.append(f"Python warning on stderr: {line.strip()[:300]}")
    code = outcome.code
    if code is not None and code not in EXPECTED_EXIT:
        found.append(f"unexpected exit status {code}" + (" (interpreter crash)" if code in (134, 139) else ""))
    lines = [line for line in err.splitlines() if line.strip()]
    if code not in (None, 0) and not any(v.startswith("traceback") for v in found):
        # a value the message quotes counts as one character: a damaged file may hold a long one
        widths = [len(_QUOTED.sub("'…'", line)) for line in lines]
        if not lines:
            found.append(f"exit status {code} without any message on stderr")
        elif len(lines) > MAX_ERROR_LINES or max(widths) > MAX_LINE_CHARS:
            found.append(f"error message not short: {len(lines)} lines, longest {max(widths)} chars")
    # An unfinished Zarr output is kept on purpose (README: ``--resume`` continues it); any other is a leftover.
    partials = sorted(p for p in after if ".partial" in os.path.basename(p) and not RESUMABLE.search(p))
    if partials:
        found.append(f"temporary output left: {partials[:3]}")
    allowed = _allowed_writes(case, folder)
    replaceable = _may_replace(case, folder)
    changed = sorted(p for p, v in before.items() if after.get(p) != v and p not in replaceable and p not in allowed)
    if changed:
        found.append(f"an existing file was changed or removed: {changed[:3]}")
    new = sorted(p for p in after if p not in before and p not in allowed and not any(
        p.startswith(a + os.sep) for a in allowed) and ".partial" not in p and p.split(os.sep)[0] not in IGNORED_NEW)
    summary = _BATCH_SUMMARY.search(err)
    some_succeeded = summary is not None and int(summary.group(1)) < int(summary.group(2))
    if code not in (None, 0) and new and not some_succeeded:
        top = sorted({p.split(os.sep)[0] for p in new})
        found.append(f"exit status {code} but output left at: {top[:3]}")
    if code == 0 and case.inputs and not new and not (set(before) & replaceable) and not outcome.stdout.strip() \
            and "--resume" not in case.argv and "nothing to do" not in err:
        found.append("exit status 0 but nothing was written")
    if any(os.path.basename(p) == MARKER for p in after):
        found.append("a crafted pickle was executed (PWNED file created)")
    if outside is not None and outside[1] - outside[0]:
        found.append(f"wrote outside the case folder: {sorted(outside[1] - outside[0])[:3]}")
    return found


@dataclass
class Result:
    """One evaluated case: what ran, how, and what went wrong."""

    case: Case
    outcome: Outcome
    violations: list[str]


def evaluate(case: Case, seeds: Seeds, workdir: Path, mode: str = "inprocess", timeout: float = DEFAULT_TIMEOUT) -> Result:
    """Build ``case`` in a fresh ``workdir/case``, run it in ``mode`` and check the property.

    An ``isolate`` case never runs in-process (it is forked instead).
    """
    if case.isolate and mode == "inprocess":
        mode = "fork"
    folder = workdir / "case"
    if folder.exists() or folder.is_symlink():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    materialize(case, seeds, folder)
    argv = [a.replace(CASE, str(folder)) for a in case.argv]
    outside_before = set(os.listdir(workdir))
    before = snapshot(folder)
    outcome = RUNNERS[mode](argv, folder, timeout)
    after = snapshot(folder)
    outside_after = set(os.listdir(workdir))
    violations = check_outcome(case, outcome, before, after, folder, (outside_before, outside_after), timeout)
    for name in outside_after - outside_before:  # keep the next case's check clean
        with contextlib.suppress(OSError):
            path = workdir / name
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    return Result(case, outcome, violations)


def report(result: Result) -> str:
    """A violation report: the case, the mode, the exit, the violations and the end of stderr."""
    o = result.outcome
    tail = "\n".join(o.stderr.strip().splitlines()[-6:])
    return (f"{result.case.describe()}\n  mode {o.mode}, exit {o.code}, signal {o.signal}, {o.seconds:.2f} s\n"
            + "".join(f"  VIOLATION: {v}\n" for v in result.violations)
            + (f"  stderr tail:\n{tail}\n" if tail else "")
            + (f"  exception:\n{o.exception}\n" if o.exception else ""))


# --------------------------------------------------------------------------------------------
# Values: arrays, texts, pickles
# --------------------------------------------------------------------------------------------

DTYPES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8", "?", "c8", "c16", ">u2", ">f4")
FLOAT_SPECIALS = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 1e300, 3.5, 10.0, 1e6, 2.0 ** 31, 2.0 ** 63, float("nan"),
                  float("inf"), float("-inf"))
INT_SPECIALS = (0, 1, 2, 3, -1, -2, 7, 255, 256, 2 ** 15, 2 ** 30, 0x40000000, 2 ** 31 - 1, 2 ** 32, 2 ** 53, -(2 ** 31))


def small_arrays(max_dims: int = 3, max_side: int = 8) -> st.SearchStrategy[np.ndarray]:
    """Small arrays of any numeric dtype and shape (0-d and empty included, NaN and infinities too)."""
    return hnp.arrays(st.sampled_from(DTYPES).map(np.dtype),
                      hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))


def huge_datasets() -> st.SearchStrategy[HugeDataset]:
    """Datasets declaring absurd shapes (never written: reading them allocates everything)."""
    side = st.sampled_from((2 ** 31, 2 ** 32, 2 ** 40, 2 ** 48))
    return st.builds(HugeDataset, st.tuples(side, side) | st.tuples(st.just(1), side, side),
                     st.sampled_from(("u1", "f4", "f8")))


_INTERESTING_TEXT = (
    "", " ", "\x00", "a\x00b", "Pixel Classification", "PixelClassificationWorkflow", "Object Classification",
    "Object Classification (from binary image)", "Object Classification (from prediction image)",
    "Object Classification (from label image)", "Object Classification (from pixel classification)",
    "Carving", "Tracking", "nonsense", "1.4.0", "1.3.3post2", "0.5", "99.99.99", "{}", "[]", "null", "1",
    '{"axes": []}', '{"axes": [1, 2]}', '{"axes": [{"key": "y"}, {"key": "x"}]}',
    '{"axes": [{"key": "q"}, {"key": "x"}]}', '{"axes": [{"key": "y", "resolution": "a"}]}',
    '{"axes": [{"key": "y", "resolution": [1]}, {"key": "x"}]}', '{"axes": {"key": "y"}}', '{"y": "nm"}', '["nm"]',
    "yx", "xy", "yxc", "zyx", "tczyx", "qq", "c", "y", "inputdata/2d.h5/data", "inputdata/missing.h5",
    "/nonexistent/x.h5", "../../../../../../etc/passwd", "{dataset_dir}/{nickname}.h5", "{nickname", "{0}",
    "{nickname!r}_{result_type}", "hdf5", "png", "numpy", "zarr", "multipage tiff", "dvid", "exported_data", "/",
    "//", "uint8", "float64", "complex64", "bogus", "\udcff", "é" * 40, "x" * 5000,
)


def texts() -> st.SearchStrategy[str]:
    """Texts a project may hold where it keeps strings: names, JSON, paths, formats, junk."""
    return st.one_of(st.sampled_from(_INTERESTING_TEXT), st.text(max_size=30),
                     st.integers(1, 5000).map(lambda n: "[" * n + "]" * n))


class _Evil:
    """Pickles (any protocol) a call of ``func(*args)`` that would create the marker file."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def _crafted_pickles() -> list[bytes]:
    """Pickles that would create ``PWNED`` in the current folder if anything unpickled them."""
    import builtins  # noqa: PLC0415

    evil = [_Evil(builtins.open, MARKER, "w"), _Evil(builtins.eval, f"open({MARKER!r}, 'w')"),
            _Evil(builtins.exec, f"open({MARKER!r}, 'w')"), _Evil(os.system, f"touch {MARKER}")]
    out = [pickle.dumps(e, protocol=p) for e in evil for p in range(6)]
    factory = b"lazyflow.classifiers.parallelVigraRfLazyflowClassifier\nParallelVigraRfLazyflowClassifierFactory\n"
    out += [
        b"c__builtin__\nopen\n(S'PWNED'\nS'w'\ntR.",
        b"cposix\nsystem\n(Vtouch PWNED\ntR.",
        b"(VPWNED\nVw\nibuiltins\nopen\n.",  # INST
        b"ccopy_reg\n_reconstructor\n(cbuiltins\nopen\nc__builtin__\nobject\nNtR.",
        b"ccopy_reg\n_reconstructor\n(c" + factory + b"c__builtin__\nobject\nN(VPWNED\nVw\nttR.",
        b"c" + factory + b"(VPWNED\nVw\ntR.",  # REDUCE on an allow-listed name
        b"c" + factory + b"(tR.",
        b"ccopy_reg\n_reconstructor\n(c" + factory + b"cbuiltins\nopen\nNtR.",
        b"cbuiltins\ngetattr\n(c" + factory + b"V__class__\ntR.",
        b"\x80\x02c" + factory + b")\x81.",  # NEWOBJ on a stand-in
        b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x8c\x04open\x93\x8c\x05PWNED\x8c\x01w\x86R.",
        b"P0\n.",  # persistent id
        b"\x82\x01.",  # extension code
        b"g999\n.",  # memo miss
        b"(" * 100000 + b".",
        b"]" + b"(]" * 50000 + b".",
    ]
    return out


_ORIGINAL_FACTORY = (b"ccopy_reg\n_reconstructor\np1\n(clazyflow.classifiers.parallelVigraRfLazyflowClassifier\n"
                     b"ParallelVigraRfLazyflowClassifierFactory\np2\nc__builtin__\nobject\np3\nNtRp4\n(dp5\n"
                     b"S'_variable_importance_path'\np6\nNsS'_kwargs'\np7\n(dp8\nsS'_variable_importance_enabled'\np9\n"
                     b"I00\nsS'VERSION'\np10\nI2\nsS'_num_trees'\np11\nI100\nsS'_label_proportion'\np12\nNsS'_num_forests'"
                     b"\np13\nI8\nsb.")
_FACTORY_VALUES = (b"I0\n", b"I-5\n", b"I3\n", b"F2.5\n", b"Fnan\n", b"Finf\n", b"S'abc'\n", b"N", b"(l", b"(dp99\n",
                   b"I01\n", b"L12L\n")


def _factory_variant(field_name: bytes, literal: bytes) -> bytes:
    """The project's own classifier-factory pickle with one field's value replaced."""
    pattern = re.compile(re.escape(b"S'" + field_name + b"'\n") + rb"(p\d+\n)(I\d+\n|N)")
    return pattern.sub(lambda m: b"S'" + field_name + b"'\n" + m.group(1) + literal, _ORIGINAL_FACTORY)


def _python_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.binary(max_size=8),
                       st.complex_numbers(max_magnitude=10))
    return st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                                                        st.dictionaries(st.text(max_size=5), inner, max_size=3),
                                                        st.frozensets(st.integers(), max_size=3)), max_leaves=8)


def pickles() -> st.SearchStrategy[bytes]:
    """Pickled bytes: crafted attacks, damaged or altered real pickles, pickles of plain values, junk."""
    fields = st.sampled_from((b"_num_trees", b"_num_forests", b"_label_proportion", b"VERSION"))
    return st.one_of(
        st.sampled_from(_crafted_pickles()),
        st.builds(_factory_variant, fields, st.sampled_from(_FACTORY_VALUES)),
        st.integers(0, len(_ORIGINAL_FACTORY)).map(lambda n: _ORIGINAL_FACTORY[:n]),
        st.tuples(st.integers(0, len(_ORIGINAL_FACTORY) - 1), st.integers(1, 255)).map(
            lambda t: _ORIGINAL_FACTORY[:t[0]] + bytes([_ORIGINAL_FACTORY[t[0]] ^ t[1]]) + _ORIGINAL_FACTORY[t[0] + 1:]),
        st.builds(lambda v, p: pickle.dumps(v, protocol=p), _python_values(), st.integers(0, 5)),
        st.binary(max_size=64),
    )


# --------------------------------------------------------------------------------------------
# Project mutations
# --------------------------------------------------------------------------------------------

_LANE = "Input Data/infos/lane0000/Raw Data"
_PC_FOREST = "PixelClassification/ClassifierForests/Forest0000"
PIXEL_ITEMS = (
    "workflowName", "ilastikVersion", "currentApplet", "FeatureSelections", "FeatureSelections/FeatureIds",
    "FeatureSelections/Scales", "FeatureSelections/SelectionMatrix", "FeatureSelections/ComputeIn2d", "Input Data",
    "Input Data/infos", "Input Data/infos/lane0000", _LANE, f"{_LANE}/axistags", f"{_LANE}/axisorder",
    f"{_LANE}/filePath", f"{_LANE}/nickname", f"{_LANE}/shape", f"{_LANE}/axis_units", "PixelClassification",
    "PixelClassification/LabelNames", "PixelClassification/LabelColors", "PixelClassification/LabelSets",
    "PixelClassification/LabelSets/labels000", "PixelClassification/LabelSets/labels000/block0000",
    "PixelClassification/LabelSets/labels000/block0003", "PixelClassification/ClassifierFactory",
    "PixelClassification/ClassifierForests", "PixelClassification/ClassifierForests/pickled_type",
    "PixelClassification/ClassifierForests/known_labels", _PC_FOREST, f"{_PC_FOREST}/_ext_param",
    f"{_PC_FOREST}/_ext_param/labels", f"{_PC_FOREST}/_ext_param/column_count_", f"{_PC_FOREST}/_ext_param/class_count_",
    f"{_PC_FOREST}/_options", f"{_PC_FOREST}/_options/predict_weighted_", f"{_PC_FOREST}/Tree_00",
    f"{_PC_FOREST}/Tree_00/topology", f"{_PC_FOREST}/Tree_00/parameters", f"{_PC_FOREST}/Tree_12/topology",
    "PixelClassification/ClassifierForests/Forest0007", "Prediction Export", "Prediction Export/OutputFilenameFormat",
    "Prediction Export/OutputFormat", "Prediction Export/OutputInternalPath", "Prediction Export/ExportDtype",
    "Prediction Export/OutputAxisOrder", "Prediction Export/RegionStart", "Prediction Export/RegionStop",
    "Prediction Export/InputMin", "Prediction Export/InputMax", "Prediction Export/ExportMin",
    "Prediction Export/ExportMax",
)
PIXEL_PICKLES = ("PixelClassification/ClassifierFactory", "PixelClassification/ClassifierForests/pickled_type")
PIXEL_ARRAYS = ("FeatureSelections/SelectionMatrix", "FeatureSelections/Scales", f"{_PC_FOREST}/Tree_00/topology",
                f"{_PC_FOREST}/Tree_00/parameters", f"{_PC_FOREST}/_ext_param/labels",
                f"{_PC_FOREST}/_ext_param/column_count_", f"{_PC_FOREST}/_ext_param/class_count_",
                "PixelClassification/LabelSets/labels000/block0000", "PixelClassification/LabelSets/labels000/block0003",
                "PixelClassification/ClassifierForests/known_labels", "PixelClassification/LabelColors")
PIXEL_ATTRS = (("PixelClassification/LabelSets/labels000/block0000", "blockSlice"),
               ("PixelClassification/LabelSets/labels000/block0003", "blockSlice"),
               ("PixelClassification/LabelColors", "isEmpty"))
FEATURE_IDS = ("GaussianSmoothing", "LaplacianOfGaussian", "GaussianGradientMagnitude", "DifferenceOfGaussians",
               "StructureTensorEigenvalues", "HessianOfGaussianEigenvalues")

_OC_FOREST = "ObjectClassification/ClassifierForests/Forest0000"
_OC_FEATURES = "ObjectClassification/SelectedFeatures"
OBJECT_ITEMS = (
    "workflowName", "ilastikVersion", "ThresholdTwoLevels", "ThresholdTwoLevels/Channel",
    "ThresholdTwoLevels/CoreChannel", "ThresholdTwoLevels/CurOperator", "ThresholdTwoLevels/LowThreshold",
    "ThresholdTwoLevels/HighThreshold", "ThresholdTwoLevels/SingleThreshold", "ThresholdTwoLevels/MinSize",
    "ThresholdTwoLevels/MaxSize", "ThresholdTwoLevels/SmootherSigma", "ThresholdTwoLevels/SmootherSigma/x",
    "ThresholdTwoLevels/SmootherSigma/y", _OC_FEATURES, f"{_OC_FEATURES}/Standard Object Features",
    f"{_OC_FEATURES}/Standard Object Features/Count", f"{_OC_FEATURES}/Standard Object Features/Mean in neighborhood",
    f"{_OC_FEATURES}/Standard Object Features/Mean in neighborhood/margin", f"{_OC_FEATURES}/2D Convex Hull Features",
    f"{_OC_FEATURES}/2D Skeleton Features", f"{_OC_FEATURES}/2D Convex Hull Features/Convexity/displaytext",
    f"{_OC_FEATURES}/Unknown Plugin", "ObjectExtraction", "ObjectExtraction/Features",
    "ObjectExtraction/Features/Standard Object Features/Mean in neighborhood/margin", "ObjectClassification",
    "ObjectClassification/LabelNames", "ObjectClassification/ClassifierForests", _OC_FOREST,
    f"{_OC_FOREST}/_ext_param", f"{_OC_FOREST}/_ext_param/labels", f"{_OC_FOREST}/_ext_param/column_count_",
    f"{_OC_FOREST}/_ext_param/class_count_", f"{_OC_FOREST}/_options/predict_weighted_", f"{_OC_FOREST}/Tree_00",
    f"{_OC_FOREST}/Tree_00/topology", f"{_OC_FOREST}/Tree_00/parameters", "ObjectClassification/ExportSettings",
    "ObjectClassification/LabelInputs", "ObjectClassification/LabelInputs/0000", "ObjectClassification/LabelInputs/0000/0",
    "Object Information Export", "Object Information Export/OutputFilenameFormat", "Object Information Export/OutputFormat",
    "Object Information Export/OutputInternalPath", "Input Data/infos", _LANE, f"{_LANE}/axistags", f"{_LANE}/filePath",
    "Input Data/infos/lane0000/Segmentation Image/filePath", "Input Data/infos/lane0000/Prediction Maps/filePath",
)
OBJECT_PICKLES = ("ObjectClassification/ExportSettings", "ObjectClassification/ClassifierForests/pickled_type")
OBJECT_ARRAYS = ("ThresholdTwoLevels/Channel", "ThresholdTwoLevels/LowThreshold", "ThresholdTwoLevels/MinSize",
                 "ThresholdTwoLevels/MaxSize", "ThresholdTwoLevels/SmootherSigma/x", f"{_OC_FOREST}/Tree_00/topology",
                 f"{_OC_FOREST}/Tree_00/parameters", f"{_OC_FOREST}/_ext_param/labels",
                 f"{_OC_FOREST}/_ext_param/column_count_", f"{_OC_FOREST}/_ext_param/class_count_",
                 "ObjectClassification/LabelInputs/0000/0",
                 f"{_OC_FEATURES}/Standard Object Features/Mean in neighborhood/margin")


def _selection_values() -> st.SearchStrategy[tuple[str, Any]]:
    """Feature selections: matrices of any shape, odd scales, unknown or repeated feature ids."""
    matrix = hnp.arrays(np.bool_, st.tuples(st.integers(0, 8), st.integers(0, 9)) | st.sampled_from(((6, 7, 1), (42,), ())))
    scales = hnp.arrays(np.float64, st.integers(0, 9), elements=st.sampled_from(FLOAT_SPECIALS) | st.floats(-5, 50))
    ids = st.lists(st.sampled_from(FEATURE_IDS + ("Foo", "", "GaussianSmoothing ", "gaussiansmoothing")), max_size=8).map(
        lambda names: np.array([n.encode() for n in names], dtype="S40") if names else np.zeros(0, "S1"))
    return st.one_of(st.tuples(st.just("FeatureSelections/SelectionMatrix"), matrix),
                     st.tuples(st.just("FeatureSelections/Scales"), scales),
                     st.tuples(st.just("FeatureSelections/FeatureIds"), ids),
                     st.tuples(st.just("FeatureSelections/ComputeIn2d"), hnp.arrays(np.bool_, st.integers(0, 9))))


def _block_slices() -> st.SearchStrategy[str]:
    bounds = st.tuples(st.sampled_from((0, 1, 5, 40, 313, 2 ** 31, 4 * 10 ** 9)), st.sampled_from((0, 1, 42, 355, 2 ** 32)))
    return st.one_of(st.lists(bounds, min_size=0, max_size=4).map(lambda bs: "[" + ",".join(f"{a}:{b}" for a, b in bs) + "]"),
                     st.sampled_from(("", "[]", "[a:b]", "[-1:5,0:3,0:1]", "[313:355,252:441]", "garbage")))


def project_ops(items: Sequence[str], pickle_items: Sequence[str], array_items: Sequence[str],
                attrs: Sequence[tuple[str, str]] = (), selection: bool = False) -> st.SearchStrategy[Op]:
    """One mutation of a project: structure, values, pickles, forest arrays, selections, label blocks."""
    item = st.sampled_from(items)
    name = st.sampled_from(("x", "Forest9999", "labels001", "block9999", "Raw Data ", "0001", "StorageVersion"))
    value = st.one_of(small_arrays(), texts(), huge_datasets(), st.binary(max_size=16))
    pokes = st.builds(H5Poke, st.sampled_from(array_items), st.floats(0, 1),
                      st.sampled_from(FLOAT_SPECIALS + tuple(float(i) for i in INT_SPECIALS)))
    choices = [
        st.builds(H5Delete, item),
        st.builds(H5Rename, item, name),
        st.builds(H5Write, item, value),
        st.builds(H5Group, item),
        st.builds(H5Sequences, item),
        pokes,
        st.builds(H5Write, st.sampled_from(pickle_items), pickles()),
        st.builds(H5Write, st.sampled_from(array_items), small_arrays(max_dims=2, max_side=48)),
        st.builds(H5Link, item, st.sampled_from(("/", "/missing", "..", items[0])), st.sampled_from(("", "missing.h5"))),
    ]
    if attrs:
        choices.append(st.builds(lambda ia, v: H5Attr(ia[0], ia[1], v), st.sampled_from(attrs),
                                 st.one_of(_block_slices(), st.none(), st.integers(-1, 2), st.just(np.zeros((2, 2))))))
    if selection:
        choices.append(_selection_values().map(lambda iv: H5Write(iv[0], iv[1])))
    return st.one_of(choices)


def _byte_ops() -> st.SearchStrategy[Op]:
    """Damage at the byte level: truncation, flipped bytes, an empty or junk file."""
    return st.one_of(
        st.builds(Truncate, st.floats(0, 0.999)),
        st.builds(FlipBytes, st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=8).map(tuple)),
        st.builds(Overwrite, st.sampled_from((b"", b"\x89HDF\r\n\x1a\n", b"II*\x00", b"\x89PNG\r\n\x1a\n"))
                  | st.binary(max_size=64)),
    )


# --------------------------------------------------------------------------------------------
# Targets: one strategy of cases each
# --------------------------------------------------------------------------------------------

PIXEL_SOURCES = ("Probabilities", "Simple Segmentation", "Uncertainty", "Features", "Labels")
OUTPUT_FORMATS = ("hdf5", "compressed hdf5", "png", "tiff", "multipage tiff", "numpy", "zarr", "ome-zarr", "n5",
                  "png sequence")


def _extra_flags() -> st.SearchStrategy[list[str]]:
    """Export options that steer a pixel run down other code paths."""
    return st.lists(st.one_of(
        st.sampled_from(PIXEL_SOURCES).map(lambda s: f"--export_source={s}"),
        st.sampled_from(OUTPUT_FORMATS).map(lambda s: f"--output_format={s}"),
        st.just(["--retrain", "--tree-count=2"]),
        st.sampled_from(("uint8", "float64")).map(lambda s: f"--export_dtype={s}"),
    ), max_size=2).map(lambda flags: [x for f in flags for x in (f if isinstance(f, list) else [f])])


def _with_byte_damage(ops: st.SearchStrategy[list[Op]]) -> st.SearchStrategy[tuple[list[Op], bool]]:
    """Project mutations, one case in eight followed by byte damage (such a case is forked)."""
    return st.tuples(ops, st.integers(0, 7), _byte_ops()).map(
        lambda t: (t[0] + [t[2]], True) if t[1] == 0 else (t[0], False))


def ilp_pixel_cases() -> st.SearchStrategy[Case]:
    """The 2D Pixel Classification project damaged by 1-3 mutations, run on a valid 40x40 HDF5 image."""
    ops = st.lists(project_ops(PIXEL_ITEMS, PIXEL_PICKLES, PIXEL_ARRAYS, PIXEL_ATTRS, selection=True), min_size=1, max_size=3)
    return st.builds(lambda o, extra: Case("ilp_pixel", (FileSpec("project.ilp", "pixel", tuple(o[0])),
                                                         FileSpec("in/img.h5", "img.h5")),
                                           ("--headless", "--project=project.ilp", *extra, "in/img.h5/data"), isolate=o[1]),
                     _with_byte_damage(ops), _extra_flags())


def ilp_object_cases() -> st.SearchStrategy[Case]:
    """A 2D Object Classification project (binary or prediction variant) damaged, run on tiny valid inputs."""
    ops = st.lists(project_ops(OBJECT_ITEMS, OBJECT_PICKLES, OBJECT_ARRAYS), min_size=1, max_size=3)
    extra = st.lists(st.sampled_from(("--table_filename=out/t.csv", "--table_filename=out/t.h5",
                                      "--export_source=Object Probabilities", "--export_source=Object Identities",
                                      "--export_object_probability_img", "--output_format=tiff")), max_size=2, unique=True)

    def build(seed: str, o: tuple[list[Op], bool], flags: list[str]) -> Case:
        second = ("--segmentation_image=in/seg.h5/data" if seed == "object_seg" else "--prediction_maps=in/pmap.h5/data")
        return Case("ilp_object", (FileSpec("project.ilp", seed, tuple(o[0])), FileSpec("in/raw3c.h5", "raw3c.h5"),
                                   FileSpec("in/seg.h5", "seg.h5"), FileSpec("in/pmap.h5", "pmap.h5")),
                    ("--headless", "--project=project.ilp", "--raw_data=in/raw3c.h5/data", second, *flags), isolate=o[1])

    return st.builds(build, st.sampled_from(tuple(OBJECT_PROJECTS)), _with_byte_damage(ops), extra)


_IMAGE_SHAPES = ((SIDE, SIDE), (SIDE, SIDE, 1), (SIDE, SIDE, 3), (1, SIDE, SIDE), (3, SIDE, SIDE), (2, SIDE, SIDE, 1),
                 (SIDE,), (0, SIDE), (SIDE, 0), (1, 1), (36, 36), (35, SIDE), (1, 1, 1, 1, 1, 1), (), (SIDE, SIDE, 2, 2),
                 (1, 2, SIDE, SIDE, 1))


def image_arrays(dtypes: Sequence[str] = DTYPES, shapes: Sequence[tuple[int, ...]] = _IMAGE_SHAPES) -> st.SearchStrategy[np.ndarray]:
    """Whole images of odd dtypes and shapes; float ones may hold NaN and infinities."""
    return hnp.arrays(st.sampled_from(dtypes).map(np.dtype), st.sampled_from(shapes))


def _input_case(fmt: str, file_ops: st.SearchStrategy[Op], isolate_bytes: bool) -> st.SearchStrategy[Case]:
    names = {"h5": ("in/img.h5", "img.h5", "in/img.h5/data"), "tiff": ("in/img.tif", "img.tif", "in/img.tif"),
             "png": ("in/img.png", "img.png", "in/img.png"), "zarr": ("in/img.zarr", "img.zarr", "in/img.zarr"),
             "ome-zarr": ("in/ome.zarr", "ome.zarr", "in/ome.zarr")}

    def build(kind: str, ops: list[Op], extra: list[str]) -> Case:
        name, seed, arg = names[kind]
        isolate = isolate_bytes and any(isinstance(op, (Truncate, FlipBytes, Overwrite)) for op in ops)
        return Case(f"input_{fmt}", (FileSpec("project.ilp", "pixel"), FileSpec(name, seed, tuple(ops))),
                    ("--headless", "--project=project.ilp", *extra, arg), isolate=isolate)

    kinds = ("zarr", "ome-zarr") if fmt == "zarr" else (fmt,)
    return st.builds(build, st.sampled_from(kinds), st.lists(file_ops, min_size=1, max_size=3), _extra_flags())


def input_h5_cases() -> st.SearchStrategy[Case]:
    """HDF5 inputs: odd contents, absurd declared shapes, links, attributes, damaged bytes (forked)."""
    ops = st.one_of(
        st.builds(Rewrite, image_arrays()),
        st.builds(H5Write, st.just("data"), huge_datasets() | image_arrays(("u1", "f4", "f8", "?", "c8", "i8"))),
        st.builds(H5Write, st.just("data"), texts()),
        st.builds(H5Write, st.just("extra"), small_arrays()),
        st.builds(H5Poke, st.just("data"), st.floats(0, 1), st.sampled_from(FLOAT_SPECIALS)),
        st.builds(H5Group, st.just("data")),
        st.builds(H5Link, st.just("data"), st.sampled_from(("/", "/missing", "/data")), st.sampled_from(("", "other.h5"))),
        st.builds(H5Attr, st.just("data"), st.sampled_from(("axistags", "resolution", "DIMENSION_LABELS")),
                  texts() | small_arrays(max_dims=1)),
        _byte_ops(),
    )
    return _input_case("h5", ops, isolate_bytes=True)


_TIFF_TAGS = (256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 339)


def input_tiff_cases() -> st.SearchStrategy[Case]:
    """TIFF inputs: odd contents, lying tags (sizes, sample formats, strips), damaged bytes."""
    ops = st.one_of(
        st.builds(Rewrite, image_arrays(("u1", "i1", "u2", "i2", "u4", "i4", "u8", "f2", "f4", "f8", "?", "c8"))),
        st.builds(TiffTag, st.sampled_from(_TIFF_TAGS), st.sampled_from(INT_SPECIALS)),
        _byte_ops(),
    )
    return _input_case("tiff", ops, isolate_bytes=False)


def input_png_cases() -> st.SearchStrategy[Case]:
    """PNG inputs: odd contents, lying headers (with and without a fixed CRC), damaged bytes."""
    shapes = ((SIDE, SIDE), (SIDE, SIDE, 3), (SIDE, SIDE, 4), (1, 1), (SIDE, 1), (36, 36))
    ops = st.one_of(
        st.builds(Rewrite, image_arrays(("u1",), shapes) | image_arrays(("u2", "?"), ((SIDE, SIDE), (1, 1)))),
        st.builds(PngHeader, st.sampled_from((0, 1, 40, 41, 2 ** 16, 2 ** 31 - 1, 2 ** 32 - 1)),
                  st.sampled_from((0, 1, 40, 39, 2 ** 20, 2 ** 31 - 1)), st.sampled_from((1, 2, 4, 8, 16, 0, 3, 255)),
                  st.sampled_from((0, 2, 3, 4, 6, 1, 7)), st.booleans()),
        _byte_ops(),
    )
    return _input_case("png", ops, isolate_bytes=False)


def input_zarr_cases() -> st.SearchStrategy[Case]:
    """Zarr and OME-Zarr inputs: lying metadata (shapes, dtypes, chunks, compressors, multiscales),
    missing or damaged chunks, odd contents."""
    array_meta = st.sampled_from((".zarray", "s0/.zarray"))
    meta = st.one_of(
        st.builds(JsonSet, array_meta, st.just(("chunks",)),
                  st.lists(st.sampled_from((0, 1, 16, 40, 2 ** 31, 2 ** 40, -1)), max_size=3)),
        # shapes: small or absurd (a large but possible shape, 40 x 2**31, is a long run, not a fault)
        st.builds(JsonSet, array_meta, st.just(("shape",)), st.lists(st.sampled_from((0, 1, 16, 40, -1)), max_size=3)),
        st.builds(JsonSet, array_meta, st.just(("shape",)), st.sampled_from(([2 ** 40, 2 ** 40], [2 ** 32, 2 ** 32]))),
        st.builds(JsonSet, array_meta, st.just(("dtype",)),
                  st.sampled_from(("|u1", "<f8", "<c8", "|b1", "<U4", "|O", "|V8", "bogus", 7))),
        st.builds(JsonSet, array_meta, st.sampled_from((("compressor",), ("filters",), ("fill_value",), ("order",),
                                                        ("zarr_format",))),
                  st.sampled_from((None, {"id": "bogus"}, {"id": "zlib", "level": 99}, [], "NaN", "F", 3, "x"))),
        st.builds(JsonSet, st.just(".zattrs"), st.sampled_from((("multiscales",), ("multiscales", 0, "axes"),
                                                                ("multiscales", 0, "datasets"),
                                                                ("multiscales", 0, "datasets", 0, "path"))),
                  st.sampled_from(([], {}, None, "s0", "s9", ["y"], [{"name": "q"}, {"name": "x"}], [{"path": "s9"}], 3))),
    )
    chunk = st.sampled_from(("0.0", "1.1", "2.2", "s0/0.0", "s0/2.1"))
    ops = st.one_of(
        meta,
        st.builds(InFile, chunk, _byte_ops()),
        st.builds(InFile, array_meta, _byte_ops()),
        st.builds(Remove, chunk | st.sampled_from((".zarray", "s0/.zarray", ".zattrs", ".zgroup"))),
        st.builds(Rewrite, image_arrays(("u1", "f4", "f8", "?", "i8", "c8"))),
    )
    return _input_case("zarr", ops, isolate_bytes=False)


# --- command lines --------------------------------------------------------------------------------

_VALUES = (
    "", "-", "--", "0", "1", "-1", "2", "3", "1e309", "nan", "inf", "-inf", "0.001", "1e-300", "yes", "no", "true", "maybe",
    "None", "[(0,0),(10,10)]", "[(None,None),(None,None)]", "[(0,0,0),(10,10,1)]", "[(5,5),(2,2)]", "[(0,0),(99999,99999)]",
    "[(0),(1)]", "[(-5,-5),(None,None)]", "(0,1)", "(1,0)", "(0,255)", "(nan,1)", "(0,inf)", "[]", "()", "uint8",
    "float32", "int64", "bool", "yxc", "cyx", "zyxc", "tzyxc", "xyxy", "q", "yx", "xy", "c", "png", "hdf5", "compressed hdf5",
    "multipage tiff", "tif sequence", "zarr", "ome-zarr", "numpy", "dvid", "blockwise hdf5", "Probabilities",
    "Simple Segmentation", "Uncertainty", "Features", "Labels", "Object Predictions", "Object Identities", "probabilities",
    "local:abc", "cpu", "gpu", "auto", "é", "\udcff", "x" * 300, "classic", "none", "z", "t", "y",
)
_PATHS = (
    "in/img.h5/data", "in/img.h5", "in/img.h5/nope", "in/img.h5/data/extra", "in/missing.h5", "in", "in/", "*.h5", "in/*.h5",
    "in/*.png", "in/img.tif", "in/img.png", "in/img.zarr", "in/ome.zarr/s0", "project.ilp", "~/in/img.h5/data",
    f"{CASE}/in/img.h5/data", "in/../in/img.h5/data", "out/x.h5", "out/", "sub dir/with space.h5", "ünï.h5",
    f"file://{CASE}/in/ome.zarr", "in/labels.h5/data", "in/raw3c.h5/data", "in/seg.h5/data", "out/log.txt", "out",
)
_PLACEHOLDERS = ("{nickname}", "{result_type}", "{dataset_dir}", "{x_start}", "{x_stop}", "{y_start}", "{t_start}",
                 "{slice_index}", "{roi}", "{unknown}", "{", "}", "{}", "{0}", "{nickname!r}", "{nickname:>5}",
                 "{nickname[0]}", "{nickname.x}", "%s", "/", "x", " ", ".h5", ".png", ".tif", ".zarr", ".npy", "ü", "-")


def output_filename_formats() -> st.SearchStrategy[str]:
    """``--output_filename_format`` values: placeholders, odd characters, folders (inside the case folder)."""
    prefix = st.sampled_from(("out/", "{dataset_dir}/", "", f"{CASE}/out/", "sub dir/", "~/"))
    return st.builds(lambda p, parts: p + "".join(parts), prefix, st.lists(st.sampled_from(_PLACEHOLDERS), max_size=6))


_SKIPPED_FLAGS = {"--debug", "--scheduler", "-h", "--help", "--version"}


def _flag_names() -> list[str]:
    from gpuheadless.cli import build_parser, option_strings  # noqa: PLC0415

    return [f for f in option_strings(build_parser()) if f not in _SKIPPED_FLAGS]


def _argument_text() -> st.SearchStrategy[str]:
    """Any argument a shell could pass (no NUL byte; undecodable bytes arrive as surrogates)."""
    return st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)) | st.sampled_from("\udcff\udc80"),
                   max_size=20)


def _flag_with_value(flags: Sequence[str]) -> st.SearchStrategy[list[str]]:
    value = st.one_of(st.sampled_from(_VALUES), st.sampled_from(_PATHS), _argument_text(), output_filename_formats(),
                      st.integers(-3, 10 ** 6).map(str))
    return st.one_of(
        st.sampled_from(flags).map(lambda f: [f]),
        st.builds(lambda f, v: [f"{f}={v}"], st.sampled_from(flags), value),
        st.builds(lambda f, vs: [f, *vs], st.sampled_from(flags), st.lists(value, min_size=1, max_size=2)),
        output_filename_formats().map(lambda v: [f"--output_filename_format={v}"]),
        st.sampled_from(("--output_fomat=png", "-x", "--", "-", "--headless=1", "--project", "--proj=project.ilp",
                         "--export-source=Features")).map(lambda f: [f]),
    )


def _project_arg() -> st.SearchStrategy[list[str]]:
    return st.sampled_from((["--project=project.ilp"], ["--project=project.ilp"], ["--project=project.ilp"],
                            ["--project", "project.ilp"], ["--project=objects.ilp"], ["--project=objects.ilp"],
                            ["--project=missing.ilp"], ["--project=in"], ["--project=in/img.h5"], ["--project="], []))


_PLAUSIBLE = {
    "--export_source": PIXEL_SOURCES + ("Object Predictions", "Object Probabilities", "Object Identities",
                                        "Blockwise Object Predictions", "simple segmentation"),
    "--output_format": OUTPUT_FORMATS + ("tif", "bmp", "gif", "jpeg", "pgm", "multipage tiff sequence", "compressed n5",
                                         "single-scale OME-Zarr", "multi-scale OME-Zarr", "blockwise hdf5", "dvid"),
    "--cutout_subregion": ("[(0,0),(20,20)]", "[(None,None),(None,None)]", "[(0,0,0),(40,40,1)]", "[(0,0,0),(40,40,2)]",
                           "[(5,5,0),(45,45,1)]", "[(30,30),(10,10)]", "[(0,0),(40,40)]", "[(-10,0),(None,None)]"),
    "--export_dtype": ("uint8", "uint16", "int8", "float32", "float64", "uint64"),
    "--pipeline_result_drange": ("(0,1)", "(0.0,1.0)", "(1,0)", "(0,0)", "(nan,1)"),
    "--export_drange": ("(0,255)", "(0,65535)", "(-1,1)", "(255,0)", "(0,0)"),
    "--output_axis_order": ("yxc", "cyx", "xyc", "tzyxc", "zyxc", "yx", "c", "xyz"),
    "--output_internal_path": ("exported_data", "/a/b", "", "data/", "//", "exported_data/x"),
    "--input_axes": ("yx", "xy", "yxc", "zyx", "tyx", "cyx", "yxz"),
    "--stack_along": ("z", "t", "c", "y", "q"),
    "--table_filename": ("out/t.csv", "out/t.h5", "t", "out/"),
    "--prediction_mask": ("in/seg.h5/data", "in/img.h5/data", "in/missing.h5"),
    "--raw_data": ("in/img.h5/data", "in/raw3c.h5/data", "in/img.png", "in/*.h5"),
    "--segmentation_image": ("in/seg.h5/data", "in/img.h5/data"),
    "--prediction_maps": ("in/pmap.h5/data", "in/seg.h5/data"),
    "--label_image": ("in/seg.h5/data", "in/labels.h5/data"),
    "--tree-count": ("1", "2", "0", "-3"),
    "--label-proportion": ("0.5", "1", "0", "2", "nan"),
    "--seed": ("1", "-1", "0"),
    "--gpu_memory_mb": ("1", "0.001", "64", "-5", "inf"),
    "--device": ("cpu", "gpu", "auto"),
    "--readonly": ("1", "0", "yes", "maybe"),
}
_PLAIN = ("--retrain", "--resume", "--pyramid", "--table_only", "--ignore_training_axistags",
          "--export_object_prediction_img", "--export_object_probability_img", "--export_pixel_probability_img",
          "--headless", "--clean_paths", "--nobatch")


def plausible_flags() -> st.SearchStrategy[list[str]]:
    """A flag with a value of the kind it takes (which gets past the parser into the run)."""
    return st.one_of(
        st.sampled_from(sorted(_PLAUSIBLE)).flatmap(lambda f: st.sampled_from(_PLAUSIBLE[f]).map(lambda v: [f"{f}={v}"])),
        st.sampled_from(_PLAIN).map(lambda f: [f]),
        output_filename_formats().map(lambda v: [f"--output_filename_format={v}"]),
    )


def _batch_argv(flags: Sequence[str]) -> st.SearchStrategy[tuple[list[str], int]]:
    def build(project: list[str], pieces: list[list[str]], plausible: list[list[str]], inputs: list[str]
              ) -> tuple[list[str], int]:
        argv = ["--headless", *project, *[x for p in pieces + plausible for x in p], *inputs]
        return argv, len(inputs) + len(flag_values(argv, "--raw_data"))

    random_flags = st.one_of(st.just([]), st.just([]), st.lists(_flag_with_value(flags), min_size=1, max_size=2))
    return st.builds(build, _project_arg(), random_flags,
                     st.lists(plausible_flags(), max_size=4),
                     st.lists(st.sampled_from(_PATHS), max_size=2))


def _train_argv() -> st.SearchStrategy[tuple[list[str], int]]:
    raw = st.lists(st.sampled_from(("in/img.h5/data", "in/img.png", "in/img.tif", "in/missing.h5", "in/raw3c.h5/data",
                                    "in/*.h5", "in/labels.h5/data")), min_size=0, max_size=2)
    labels = st.lists(st.sampled_from(("in/labels.h5/data", "in/labels.png", "in/img.h5/data", "in/seg.h5/data",
                                       "in/missing.h5", "in/pmap.h5/data")), min_size=0, max_size=2)
    output = st.sampled_from(("out/new.ilp", "new.ilp", "project.ilp", "out", "in/img.h5", "sub dir/ü.ilp", f"{CASE}/n.ilp",
                              "missing/dir/new.ilp", ""))
    options = st.lists(st.one_of(
        st.sampled_from(("default", "all", "GaussianSmoothing@1.0", "GaussianSmoothing@0", "Foo@1", "@", "", "x" * 50,
                         "GaussianSmoothing@1.0,HessianOfGaussianEigenvalues@3.5", "GaussianSmoothing@nan",
                         "GaussianSmoothing@1e9", "GaussianSmoothing@1e200")).map(lambda v: ["--features", v]),
        st.lists(st.sampled_from(("a", "b", "", "é", "a")), min_size=0, max_size=3).map(lambda v: ["--label_names", *v]),
        st.lists(st.sampled_from(("#ff0000", "0,0,255", "red", "#gg0000", "300,0,0", "")), max_size=3).map(
            lambda v: ["--label_colors", *v]),
        st.sampled_from(("1", "2", "3", "0", "-1", "x", "")).map(lambda v: ["--trees", v]),
        st.sampled_from(("1", "-1", "x", str(2 ** 70))).map(lambda v: ["--seed", v]),
        st.sampled_from(("all", "1.0", "x", "nan")).map(lambda v: ["--in_2d", v]),
        st.sampled_from(("--bogus", "--raw", "--labels")).map(lambda v: [v]),
    ), max_size=3)

    def build(r: list[str], lab: list[str], out: str, opts: list[list[str]]) -> tuple[list[str], int]:
        argv = ["train"] + (["--raw", *r] if r else []) + (["--labels", *lab] if lab else []) + ["--output", out]
        argv += [x for o in opts for x in o]
        if not any(o[:1] == ["--trees"] for o in opts):
            argv += ["--trees", "2"]
        return argv, 1

    return st.builds(build, raw, labels, output, options)


_CLI_FILES = (FileSpec("project.ilp", "pixel"), FileSpec("objects.ilp", "object_seg"), FileSpec("in/img.h5", "img.h5"),
              FileSpec("in/img.tif", "img.tif"), FileSpec("in/img.png", "img.png"), FileSpec("in/img.zarr", "img.zarr"),
              FileSpec("in/ome.zarr", "ome.zarr"), FileSpec("in/labels.h5", "labels.h5"),
              FileSpec("in/labels.png", "labels.png"), FileSpec("in/raw3c.h5", "raw3c.h5"), FileSpec("in/seg.h5", "seg.h5"),
              FileSpec("in/pmap.h5", "pmap.h5"))


def cli_cases() -> st.SearchStrategy[Case]:
    """Command lines: random flags and values, placeholders, odd paths; one in six is ``train``."""
    flags = _flag_names()
    argv = st.one_of(_batch_argv(flags), _batch_argv(flags), _batch_argv(flags), _batch_argv(flags), _batch_argv(flags),
                     _train_argv())
    return argv.map(lambda ai: Case("cli", _CLI_FILES, tuple(ai[0]), inputs=ai[1]))


TARGETS: dict[str, Callable[[], st.SearchStrategy[Case]]] = {
    "ilp_pixel": ilp_pixel_cases,
    "ilp_object": ilp_object_cases,
    "input_h5": input_h5_cases,
    "input_tiff": input_tiff_cases,
    "input_png": input_png_cases,
    "input_zarr": input_zarr_cases,
    "cli": cli_cases,
}


def pick_mode(index: int, fork_every: int = 10, subprocess_every: int = 50) -> str:
    """The runner for the ``index``-th case of a target: mostly in-process, a sample forked or in a fresh interpreter."""
    if subprocess_every and index % subprocess_every == subprocess_every - 1:
        return "subprocess"
    if fork_every and index % fork_every == fork_every - 1:
        return "fork"
    return "inprocess"


__all__ = ["Case", "FileSpec", "Outcome", "Result", "Seeds", "TARGETS", "build_seeds", "check_outcome", "evaluate",
           "pick_mode", "report", "run_forked", "run_in_process", "run_subprocess"]
