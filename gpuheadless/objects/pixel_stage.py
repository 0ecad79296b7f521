"""The pixel stage of the Pixel Classification + Object Classification workflow.

ilastik's deprecated "Object Classification (from pixel classification)" projects hold a whole
Pixel Classification project (features, labels, forest) in front of the object stage. Here the
pixel stage is the Pixel Classification block function: each lane's probabilities are computed
once, block by block on the run's backend, into memory (or, when they exceed a quarter of the
memory budget, a temporary file). The object stage thresholds them there, and the pixel-level
images the user asks for ("Pixel Probabilities", "Simple Segmentation") are written from them
through the Pixel Classification export, with the same options.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..backend import Backend
from ..config import ExportOptions, RunConfig
from ..export import PIXEL_STAGE_SOURCES
from ..io import staging
from ..io.guarded_file import hdf5_output
from ..io.stacks import open_input
from ..pipeline.block_runner import block_budget_bytes, layout_blocks, run_local
from ..pipeline.block_task import compute_block
from ..pipeline.blocks import Block
from ..pipeline.export_plan import effective_format, plan_lane
from ..pipeline.in_memory import array_source
from ..pipeline.lane import Lane
from ..pipeline.pixel import execute_plan, lane_block_task, stage_classifiers
from ..project.ilp import Project



@dataclass(frozen=True)
class PixelStage:
    """The pixel stage of a run: its project with the classifiers resolved once, and the run's backend."""

    config: RunConfig
    project: Project
    backend: Backend

    @property
    def forest(self):
        return self.project.forest


def prepare_pixel_stage(config: RunConfig, pixel: Project, backend: Backend) -> PixelStage:
    """The pixel stage with its classifier: the stored one, or trained now (``--retrain``, or none stored)."""
    return PixelStage(config, stage_classifiers(config, pixel, backend, "Probabilities"), backend)


def _whole_image(config: RunConfig) -> RunConfig:
    """The run with plain float32 probabilities of the whole image as its export (no cutout, no conversion)."""
    return dataclasses.replace(config, export=ExportOptions(source="Probabilities", output_format="hdf5"))


@contextlib.contextmanager
def lane_probabilities(stage: PixelStage, raw_path: str) -> Iterator[tuple[Lane, Lane]]:
    """The raw data of one input, read with the pixel project's axes, and its pixel
    probabilities as a ``tzyxc`` lane, computed once, block by block.

    The probabilities stay in memory when they fit a quarter of the memory budget, else in a
    temporary HDF5 file removed afterwards. The object stage reads the raw data with the same
    axes, as ilastik's one lane feeds both stages.

    Raises
    ------
    UserError
        The input does not fit the pixel project (channels, axes, size), or cannot be read.
    """
    config = _whole_image(stage.config)
    lane_plan = plan_lane(config, stage.project, stage.forest, "Probabilities", "hdf5", raw_path, None)
    raw = Lane(open_input(raw_path, config.cwd, config.stack_along), lane_plan.lane_axes)
    try:
        task = lane_block_task(stage.backend, raw, lane_plan, stage.project, stage.forest, "Probabilities", None)
        shape = raw.shape[:4] + (task.n_classes,)
        with _destination(shape, block_budget_bytes(config, stage.backend)) as out:
            region = {a: (0, n) for a, n in zip("tzyxc", shape)}
            layout = layout_blocks(config, task, region, block_budget_bytes(config, stage.backend))

            def store(block: Block, values: np.ndarray) -> None:
                out[(block.t,) + block.slices] = values

            run_local(config, layout.blocks, lambda b: compute_block(task, b), store, lambda: None)
            yield raw, Lane(array_source(out, "tzyxc", f"pixel probabilities of '{raw.source.display}'"), "tzyxc")
    finally:
        raw.source.close()


@contextlib.contextmanager
def _destination(shape: tuple[int, ...], budget: float) -> Iterator[np.ndarray]:
    """A float32 array of ``shape`` in memory, or a dataset of a temporary file beyond a quarter of ``budget``."""
    if math.prod(shape) * 4 <= budget / 4:
        yield np.empty(shape, dtype=np.float32)
        return
    with staging.scratch_folder("gpuheadless-pixel-") as directory:
        path = os.path.join(directory, "probabilities.h5")
        open(path, "wb").close()
        with hdf5_output(path) as scratch:
            chunks = tuple(min(n, c) for n, c in zip(shape, (1, 16, 256, 256, shape[-1])))
            yield scratch.create_dataset("probabilities", shape=shape, dtype=np.float32, chunks=chunks)


def export_pixel_image(stage: PixelStage, source: str, raw_path: str, pattern: str, output_format: str | None,
                       probabilities: Lane) -> str:
    """Write ``Pixel Probabilities`` or ``Simple Segmentation`` of one input from its computed
    ``probabilities``, with the run's export options, to the object images' file name ``pattern``.

    ``{result_type}`` in the file name is the Object Classification export name (``Pixel
    Probabilities``), as ilastik names it in this workflow; ``output_format`` is the one the
    object project stores, used when the command line gives none.
    """
    config = stage.config
    export = dataclasses.replace(config.export, source=PIXEL_STAGE_SOURCES[source],
                                 output_filename_format=pattern.replace("{result_type}", source),
                                 output_format=config.export.output_format or output_format)
    config = dataclasses.replace(config, export=export)
    name = PIXEL_STAGE_SOURCES[source]
    lane_plan = plan_lane(config, stage.project, stage.forest, name, effective_format(config, stage.project), raw_path,
                          None)
    return execute_plan(config, stage.project, stage.backend, stage.forest, name, lane_plan,
                        probabilities=probabilities).output
