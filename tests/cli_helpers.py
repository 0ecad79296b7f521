"""Running the command line in-process from tests."""
from __future__ import annotations

import os

from gpuheadless.cli import main


def run_cli(argv, cwd, capsys):
    """``gpuheadless ARGV`` run in ``cwd``; returns (exit status, stderr)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        code = main(argv)
    finally:
        os.chdir(old)
    return code, capsys.readouterr().err
