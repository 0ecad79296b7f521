"""gpuheadless: ilastik's headless Pixel Classification, with ilastik's numbers, faster.

The command line mirrors ``run_ilastik.sh --headless``; the Python API mirrors the command line.
"""
from __future__ import annotations

from ._version import __version__
from .api import predict, train
from .errors import UsageError, UserError

_API = ("AutocontextPipeline", "ObjectClassificationPipeline", "PixelClassificationPipeline", "from_project_file")
__all__ = [*_API, "UserError", "UsageError", "__version__", "predict", "train"]


def __getattr__(name: str):
    """ilastik's API names, imported when first used (the command line does not need them)."""
    if name in _API:
        from .experimental import api  # noqa: PLC0415

        return getattr(api, name)
    raise AttributeError(f"module 'gpuheadless' has no attribute {name!r}")
