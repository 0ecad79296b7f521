"""A run's decisions, made once before any input is read: the project (and so the workflow), the
export source, and the device. Every stage of the run receives them; none decides them again."""
from __future__ import annotations

from dataclasses import dataclass

from .backend import Backend, select_backend
from .config import RunConfig
from .export import resolve_object_source, resolve_source
from .project.ilp import Project
from .project.objects import ObjectProject
from .project.open import read_any_project


@dataclass(frozen=True)
class Resolved:
    """What a run decided once.

    Attributes
    ----------
    project : Project or ObjectProject
        Pixel Classification / Autocontext, or Object Classification (its pixel stage included).
    source : str
        ilastik's canonical name of the export source (``--export_source``, checked against the
        workflow's list, as ilastik checks it).
    backend : Backend
        The device every stage computes on (``--device``), with ``LAZYFLOW_THREADS``.
    """

    project: Project | ObjectProject
    source: str
    backend: Backend

    @property
    def objects(self) -> bool:
        """Whether this is an Object Classification run."""
        return isinstance(self.project, ObjectProject)


def export_source(project: Project | ObjectProject, name: str | None) -> str:
    """The workflow's export source for ``--export_source`` ``name`` (None: not given).

    Raises
    ------
    UsageError
        A name the workflow does not export, with the valid ones (ilastik's message).
    """
    if isinstance(project, ObjectProject):
        return resolve_object_source(name, pixel_stage=project.pixel is not None)
    return resolve_source(name, len(project.stages))


def resolve_run(config: RunConfig, project: Project | ObjectProject | None = None) -> Resolved:
    """Read the project (unless given), check the export source and choose the device.

    Raises
    ------
    UserError
        The project cannot be read; UsageError for an export source the workflow lacks or
        ``--device gpu`` without a usable GPU.
    """
    project = read_any_project(config.project) if project is None else project
    source = export_source(project, config.export.source)
    return Resolved(project, source, select_backend(config.device, config.threads))
