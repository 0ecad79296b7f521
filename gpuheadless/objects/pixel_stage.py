"""The pixel stage of the Pixel Classification + Object Classification workflow.

ilastik's deprecated "Object Classification (from pixel classification)" projects hold a whole
Pixel Classification project (features, labels, forest) in front of the object stage. Here the
pixel stage is the Pixel Classification pipeline itself, run block by block within the memory
budget: once into a temporary HDF5 file whose probabilities the object stage thresholds, and once
more for each pixel-level image the user asked to export ("Pixel Probabilities", "Simple
Segmentation"), through the same export machinery and options as Pixel Classification.
"""
from __future__ import annotations

import dataclasses
import os

from ..config import ExportOptions, RunConfig
from ..errors import UserError

PIXEL_SOURCES = {"Pixel Probabilities": "Probabilities", "Simple Segmentation": "Simple Segmentation"}
TEMPORARY_DATASET = "exported_data"


def _pixel_config(config: RunConfig, raw_path: str, export: ExportOptions) -> RunConfig:
    """The run restricted to one input, in this process, with these export options."""
    return dataclasses.replace(config, inputs=[raw_path], prediction_masks=[], scheduler=None, resume=False,
                               progress=False, export=export)


def _run(config: RunConfig) -> str:
    from ..pipeline.pixel import run_batch  # noqa: PLC0415 - the pixel pipeline is only needed for this variant

    results, failures = run_batch(config)
    if failures:
        raise UserError("; ".join(failures))
    return results[0].output


def probabilities_for_objects(config: RunConfig, raw_path: str, directory: str) -> str:
    """Compute the pixel probabilities of one input into ``directory``; returns ``file.h5/dataset``.

    Parameters
    ----------
    config : RunConfig
        The run; its export options are not applied (the object stage needs plain float32).
    raw_path : str
        The raw input, as given on the command line.
    directory : str
        A private temporary directory.
    """
    target = os.path.join(directory, "pixel_probabilities.h5")
    if os.path.exists(target):
        os.remove(target)
    _run(_pixel_config(config, raw_path, ExportOptions(source="Probabilities", output_format="hdf5",
                                                       output_filename_format=target,
                                                       output_internal_path=TEMPORARY_DATASET)))
    return f"{target}/{TEMPORARY_DATASET}"


def export_pixel_image(config: RunConfig, source: str, raw_path: str, pattern: str) -> str:
    """Export ``Pixel Probabilities`` or ``Simple Segmentation`` of one input with the run's export
    options, to the object images' file name ``pattern``.

    ``{result_type}`` in the file name is the Object Classification export name (``Pixel
    Probabilities``), as ilastik names it in this workflow.
    """
    export = dataclasses.replace(config.export, source=PIXEL_SOURCES[source],
                                 output_filename_format=pattern.replace("{result_type}", source))
    return _run(_pixel_config(config, raw_path, export))
