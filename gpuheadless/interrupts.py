"""Stop signals: SIGTERM, SIGHUP and SIGINT end a run within a second, leaving no temporary file.

SLURM's ``scancel`` and time limits send SIGTERM (then SIGKILL), a closed terminal SIGHUP,
Ctrl-C SIGINT. Within :func:`stop_on_signals` each raises :class:`Stopped` in the main thread, so
writers abort and remove their temporary files as for any failure. The main thread may be
inside a long computation that Python cannot interrupt, and worker threads finish their block
before the interpreter may exit; so a watchdog thread, woken by the signal itself, removes every
temporary output and ends the process if it is still running ``grace_s`` after the signal.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Iterator

from .io import staging

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_S = 0.8

_report_lock = threading.Lock()
_reported = False
_stopping = False


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; ``exit_code`` is 128 + the signal number, as a shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def report_stop(signum: int) -> int:
    """Print the one line saying the run was stopped (once per process); returns the exit status."""
    global _reported
    with _report_lock:
        if not _reported:
            _reported = True
            name = signal.Signals(signum).name
            kept = staging.kept_for_resume()
            resume = f"; {len(kept)} unfinished Zarr output(s) kept: the same command with --resume continues" if kept else ""
            print(f"gpuheadless: stopped by {name}; temporary files removed, nothing left at the final names{resume}",
                  file=sys.stderr, flush=True)
    return 128 + signum


def _on_signal(signum: int, _frame: object) -> None:
    global _stopping
    if _stopping:  # a second signal while cleaning up: let the cleanup (or the watchdog) finish
        return
    _stopping = True
    raise Stopped(signum)


def _watch(reader: socket.socket, grace_s: float) -> None:
    """Wait for a stop signal's byte; past the grace time, clean up and end the process."""
    with reader:
        while True:
            try:
                data = reader.recv(1)
            except OSError:
                return
            if not data:  # the run ended without a stop signal
                return
            if data[0] in STOP_SIGNALS:
                break
    signum = data[0]
    time.sleep(grace_s)
    staging.remove_all_in_flight()
    code = report_stop(signum)
    logging.shutdown()
    os._exit(code)


@contextlib.contextmanager
def stop_on_signals(grace_s: float = GRACE_S) -> Iterator[None]:
    """Within this block, SIGTERM, SIGHUP and SIGINT stop the run (see the module's description).

    Also ignores SIGXFSZ, so a file-size limit (``ulimit -f``) makes a write fail with ``EFBIG``,
    reported like a full disk, instead of killing the interpreter. Outside the main thread (an
    embedding application's worker) nothing is changed.
    """
    global _stopping
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS + (signal.SIGXFSZ,)}
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    watchdog = threading.Thread(target=_watch, args=(reader, grace_s), name="gpuheadless-stop-watchdog", daemon=True)
    watchdog.start()
    _stopping = False
    try:
        for s in STOP_SIGNALS:
            signal.signal(s, _on_signal)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(old_fd)
        if not _stopping:  # after a stop the watchdog stays armed until the process ends
            writer.close()
