"""The Python API: ``train`` and ``predict``, mirroring ``gpuheadless train`` and the batch command."""
from __future__ import annotations

import os
from typing import Any, Sequence

from .errors import UserError


def predict(
    project: str,
    inputs: Sequence[str],
    export_source: str | None = None,
    output_format: str | None = None,
    output_filename_format: str | None = None,
    prediction_masks: Sequence[str] = (),
    device: str = "auto",
    prediction_maps: Sequence[str] = (),
    segmentation_image: Sequence[str] = (),
    label_image: Sequence[str] = (),
    table_filename: str | None = None,
    **export_options: Any,
) -> list[str]:
    """Apply a project to images, as ``gpuheadless --headless --project=... INPUT ...``.

    Parameters
    ----------
    project : str
        The ``.ilp`` file.
    inputs : sequence of str
        Images: files, ``file.h5/data``, globs for stacks.
    export_source : str, optional
        ``Probabilities`` (the default), ``Simple Segmentation``, ``Uncertainty``, ``Features`` or
        ``Labels``; for Object Classification ``Object Predictions`` (its default) and the others
        of that workflow.
    output_format, output_filename_format : str, optional
        As the command-line flags (default: the project's, then ilastik's defaults).
    prediction_masks : sequence of str
        Optional masks, paired with ``inputs`` by position.
    device : str
        ``auto``, ``cpu`` or ``gpu``.
    prediction_maps, segmentation_image, label_image : sequence of str
        Object Classification projects: the second input of each lane, as the project's
        variant needs (``export_source`` then names an object source, e.g. ``Object Predictions``).
    table_filename : str, optional
        Object Classification: write the object table there (CSV, or HDF5 for ``.h5``).
    **export_options
        Any other field of :class:`gpuheadless.config.ExportOptions` (``cutout_subregion``,
        ``export_dtype``, ``output_axis_order`` ...) and ``input_axes``, ``stack_along``,
        ``retrain``, ``seed``.

    Returns
    -------
    list of str
        The written files, one per input.

    Raises
    ------
    UserError
        When an input fails (the message names it) or an option is wrong.
    """
    from .config import ExportOptions, ObjectOptions, RunConfig, ram_budget_from_env, threads_from_env  # noqa: PLC0415
    from .run import run_workflow  # noqa: PLC0415

    run_keys = {"input_axes", "stack_along", "retrain", "seed", "tree_count", "label_proportion", "ignore_training_axistags"}
    run_options = {k: export_options.pop(k) for k in list(export_options) if k in run_keys}
    config = RunConfig(
        project=os.fspath(project), inputs=[os.fspath(i) for i in inputs],
        export=ExportOptions(source=export_source, output_format=output_format,
                             output_filename_format=output_filename_format, **export_options),
        prediction_masks=[os.fspath(m) for m in prediction_masks], device=device,
        threads=threads_from_env(), ram_budget_mb=ram_budget_from_env(), progress=False, **run_options,
    )
    second = [os.fspath(p) for p in (prediction_maps or segmentation_image or label_image)]
    written, failures = run_workflow(config, ObjectOptions(second_inputs=second, table_filename=table_filename))
    if failures:
        raise UserError("; ".join(failures))
    return written


def train(*args: Any, **kwargs: Any) -> str:
    """Train a project from images and label images; see :func:`gpuheadless.trainer.train`."""
    from .trainer import train as _train  # noqa: PLC0415

    return _train(*args, **kwargs)
