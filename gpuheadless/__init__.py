"""gpuheadless: ilastik's headless Pixel Classification, with ilastik's numbers, faster.

The command line mirrors ``run_ilastik.sh --headless``; the Python API mirrors the command line.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .api import predict, train  # noqa: E402
from .errors import UsageError, UserError  # noqa: E402

__all__ = ["UserError", "UsageError", "__version__", "predict", "train"]
