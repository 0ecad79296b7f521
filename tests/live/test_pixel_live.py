"""Pixel Classification side by side: every MANIFEST command line, and every export source of
every test project with default names and formats, run by the real ilastik and by gpuheadless.

The cases, the comparisons and the explained differences live in ``bench/against_ilastik.py``
(which prints them as a table); here each command is one test, failing on any file that only
one program wrote or that differs beyond what is explained there.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import against_ilastik as live  # noqa: E402

COMMANDS = [c for group in live.GROUPS.values() for c in group(live.DEFAULT_DATA)] \
    if (live.DEFAULT_DATA / "reference").is_dir() else []


@pytest.fixture(scope="module")
def workspaces(ilastik, data, tmp_path_factory):
    """One MANIFEST-shaped working folder per program, shared by the commands (as in MANIFEST.md)."""
    root = tmp_path_factory.mktemp("side-by-side")
    return {p: live.prepare_workspace(data, root / p) for p in ("ilastik", "gpuheadless")}


def _id(command: live.Command) -> str:
    return command.group + ":" + " ".join(a.split("=", 1)[-1] for a in command.args[1:])


@pytest.mark.parametrize("command", COMMANDS, ids=[_id(c) for c in COMMANDS])
def test_outputs_equal_live_ilastik(command, workspaces, data):
    comparisons, finished = live.run_both(command, workspaces, data)
    for program, done in finished.items():
        assert done.returncode == 0, f"{program} failed:\n{done.tail}"
    problems = [f"{c.output}: {'; '.join(c.problems)}" for c in comparisons if not c.ok]
    assert not problems, "\n".join(problems)
