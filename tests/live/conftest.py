"""The live compatibility suite: runs only where ``ILASTIK`` names a real ilastik (see ilastik_runner)."""
from __future__ import annotations

import pytest

from .ilastik_runner import ilastik_command


@pytest.fixture(scope="session")
def ilastik():
    """Skips the test unless a real ilastik is available."""
    command = ilastik_command()
    if command is None:
        pytest.skip("needs a real ilastik: set ILASTIK to its launcher (../shared/tools/build-ilastik.sh makes one)")
    return command
