"""Any ilastik project, read once by the reader its workflow needs."""
from __future__ import annotations

import os

from .ilp import Project, read_project
from .objects import ObjectProject, read_object_project, workflow_variant


def read_any_project(path: str | os.PathLike[str]) -> Project | ObjectProject:
    """The Pixel Classification, Autocontext or Object Classification project at ``path``.

    Raises
    ------
    UserError
        What :func:`~gpuheadless.project.ilp.read_project` or
        :func:`~gpuheadless.project.objects.read_object_project` refuses, naming the file.
    """
    return read_object_project(path) if workflow_variant(path) else read_project(path)
