"""Every command line of the reference MANIFEST, run by the real ilastik and by gpuheadless.

The cases, the comparisons and the explained differences live in ``bench/against_ilastik.py``
(which prints them as a table); here each output file is one test.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import against_ilastik as live  # noqa: E402

COMMANDS = live.manifest_commands(live.DEFAULT_DATA) if (live.DEFAULT_DATA / "reference").is_dir() else []
OUTPUTS = [(name, command) for command in COMMANDS for name in command.outputs]


@pytest.fixture(scope="module")
def workspaces(ilastik, data, tmp_path_factory):
    """One MANIFEST-shaped working folder per program, and the commands already run in them."""
    root = tmp_path_factory.mktemp("manifest")
    return {p: live.prepare_workspace(data, root / p) for p in ("ilastik", "gpuheadless")}, {}


@pytest.mark.parametrize("name,command", OUTPUTS, ids=[name for name, _ in OUTPUTS])
def test_output_equals_live_ilastik(name, command, workspaces, data):
    folders, done = workspaces
    if command not in done:
        done[command] = {p: live.run(p, command, folder) for p, folder in folders.items()}
    for program, (code, _, tail) in done[command].items():
        assert code == 0, f"{program} failed:\n{tail}"
    result = live.compare_output(name, folders["gpuheadless"], folders["ilastik"], data)
    assert result.ok, "; ".join(result.problems)
