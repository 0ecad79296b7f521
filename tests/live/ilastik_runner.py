"""Running the real ilastik and gpuheadless side by side, for the live compatibility suite.

``ILASTIK`` names either ilastik's launcher (``run_ilastik.sh``, or ``run_ilastik`` made by
``../shared/tools/build-ilastik.sh``) or a Python interpreter that has ilastik installed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    """One finished process: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def ilastik_command() -> list[str] | None:
    """The command that starts ilastik, from ``$ILASTIK``; None where it is unset or missing."""
    launcher = os.environ.get("ILASTIK")
    if not launcher or not Path(launcher).exists():
        return None
    name = Path(launcher).name
    if name.startswith("python"):
        return [launcher, "-m", "ilastik"]
    return [launcher]


def _environment(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["LAZYFLOW_THREADS"] = str(threads)
    return env


def run_ilastik(args: list[str], cwd: Path, threads: int = 1, timeout: float = 900) -> Run:
    """``ilastik --headless ARGS`` in ``cwd``.

    One thread by default: with more, ilastik adds its forests' votes in the order its threads
    finish them, and its probabilities vary by a float32 rounding from run to run.
    """
    command = ilastik_command()
    assert command is not None, "ILASTIK is not set"
    done = subprocess.run([*command, "--headless", *args], cwd=cwd, env=_environment(threads),
                          capture_output=True, text=True, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


def run_ilastik_python(script: str, cwd: Path, timeout: float = 900) -> Run:
    """A Python script run by ilastik's own interpreter (ilastik's Python API, its readers)."""
    command = ilastik_command()
    assert command is not None, "ILASTIK is not set"
    python = command[0] if len(command) == 3 else _launcher_python(command[0])
    done = subprocess.run([python, "-c", script], cwd=cwd, env=_environment(2),
                          capture_output=True, text=True, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


def _launcher_python(launcher: str) -> str:
    """The interpreter a launcher script execs (``exec /path/python -m ilastik``)."""
    for line in Path(launcher).read_text(errors="replace").splitlines():
        words = line.split()
        if words[:1] == ["exec"] and len(words) > 1 and "python" in Path(words[1]).name:
            return words[1]
    sibling = Path(launcher).with_name("venv") / "bin" / "python"
    if sibling.exists():
        return str(sibling)
    raise AssertionError(f"cannot tell which Python {launcher} runs; set ILASTIK to that Python instead")


def run_gpuheadless(args: list[str], cwd: Path, threads: int = 2, timeout: float = 900) -> Run:
    """``gpuheadless ARGS`` as a fresh process in ``cwd`` (``--headless`` is the caller's)."""
    done = subprocess.run([sys.executable, "-m", "gpuheadless", *args], cwd=cwd, env=_environment(threads),
                          capture_output=True, text=True, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


# ilastik 1.4.2 defines its 3- and 4-stage Autocontext workflows only in debug mode, and its debug
# mode also imports workflows whose packages a plain build lacks (elf, hytra). The same two
# classes, as ilastik writes them, are registered instead; ilastik finds a workflow by class name.
AUTOCONTEXT_STAGES_PRELUDE = r"""
import os
os.environ["LAZYFLOW_THREADS"] = "1"
from ilastik.workflows.newAutocontext.newAutocontextWorkflow import NewAutocontextWorkflowBase


class AutocontextThreeStage(NewAutocontextWorkflowBase):
    workflowName = "AutocontextThreeStage"
    workflowDisplayName = "Autocontext (3-stage)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, n_stages=3, **kwargs)


class AutocontextFourStage(NewAutocontextWorkflowBase):
    workflowName = "AutocontextFourStage"
    workflowDisplayName = "Autocontext (4-stage)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, n_stages=4, **kwargs)
"""


def run_ilastik_headless_with_stages(args: list[str], cwd: Path, timeout: float = 900) -> Run:
    """``ilastik --headless ARGS`` at one thread, by ilastik's own entry point, with the 3- and
    4-stage Autocontext workflows registered (see :data:`AUTOCONTEXT_STAGES_PRELUDE`)."""
    script = (AUTOCONTEXT_STAGES_PRELUDE + "import json, sys\n"
              f"sys.argv = ['ilastik', '--headless', *json.loads({json.dumps(json.dumps(args))})]\n"
              "from ilastik.__main__ import main\nmain()\n")
    return run_ilastik_python(script, cwd, timeout)
