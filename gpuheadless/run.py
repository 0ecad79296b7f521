"""Run a project on a batch of inputs: the decisions once (:mod:`.resolve`), then its workflow.

The command line and the Python API both come here; neither looks into the project itself.
"""
from __future__ import annotations

from .config import ObjectOptions, RunConfig
from .resolve import resolve_run


def run_workflow(config: RunConfig, objects: ObjectOptions | None = None) -> tuple[list[str], list[str]]:
    """Apply the project of ``config`` to its inputs with the project's workflow.

    Parameters
    ----------
    config : RunConfig
    objects : ObjectOptions, optional
        The Object Classification inputs and options (second inputs, table, extra images);
        ignored by Pixel Classification, as ilastik ignores them there.

    Returns
    -------
    written : list of str
        The files written.
    failures : list of str
        One line per input that failed (the batch goes on after one).
    """
    resolved = resolve_run(config)
    if resolved.objects:
        from .objects.workflow import run_object_batch  # noqa: PLC0415 - the object code is loaded only for it

        return run_object_batch(config, objects or ObjectOptions(), resolved)
    from .pipeline.pixel import run_batch  # noqa: PLC0415

    results, failures = run_batch(config, resolved=resolved)
    return [r.output for r in results], failures
