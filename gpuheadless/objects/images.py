"""Object images (Object Predictions, Probabilities, Identities and their Blockwise names): what
each is, where it goes and with which metadata (decided with Pixel Classification's export
functions), and writing it block by block with the pixel pipeline's block engine."""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import numpy as np

from ..backend import Backend
from ..config import ExportOptions, RunConfig
from ..errors import UserError, writing_output
from ..export import ExportTransform, make_transform, output_axes
from ..io import formats
from ..io.ilastik_layout import axistags_json
from ..io.writers import EXPORT_HINTS, open_writer
from ..pipeline.block_runner import chunk_shape, layout_blocks, place, run_local
from ..pipeline.blocks import Block
from ..pipeline.export_plan import cutout_bounds, export_resolutions, given_or_stored, output_location
from ..pipeline.lane import Lane
from ..project.objects import ObjectProject
from .classifier import predicted_classes

log = logging.getLogger(__name__)


def image_values(source: str, ids: np.ndarray, probabilities: np.ndarray, classified: bool) -> np.ndarray:
    """The export source over a region of one time point as (Z, Y, X, C)."""
    if source == "Object Identities":
        return ids[..., None].astype(np.uint32)
    if source.endswith("Predictions"):
        return predicted_classes(probabilities, classified).astype(np.uint8)[ids][..., None]
    return probabilities[ids]


@dataclass
class ImagePlan:
    """Where and how one object image is written."""

    source: str
    path: str
    internal: str
    output_format: str
    region: dict[str, tuple[int, int]]
    out_axes: str
    out_shape: tuple[int, ...]
    transform: ExportTransform
    attrs: dict
    resolutions: dict[str, float]


def plan_image(config: RunConfig, project: ObjectProject, source: str, raw: Lane, results,
                second: Lane | None) -> ImagePlan:
    """Decide file, region, axes, type and metadata of an object image, and refuse what cannot be written.

    ``second`` is the lane's second input (segmentation, label image, prediction maps), None
    while only the outputs' names are planned.
    """
    opts = given_or_stored(config.export, project.export)
    output_format = opts.output_format or "compressed hdf5"
    formats.check_supported(output_format)
    channels = project.n_classes if source.endswith("Probabilities") else 1
    source_dtype = np.dtype(np.uint32 if source == "Object Identities" else np.uint8 if source.endswith("Predictions")
                            else np.float32)
    transform = make_transform(source, opts.export_dtype, opts.pipeline_result_drange, opts.export_drange,
                               source_dtype)
    dtype, normalize = transform.dtype, transform.normalize
    if source == "Object Identities" and normalize is None and dtype.kind in "iu":
        most = max((r[0].n_objects for r in results), default=0)
        if most > np.iinfo(dtype).max:
            raise UserError(f"'{raw.source.display}': {most} objects do not fit Object Identities of type {dtype} "
                            f"(at most {np.iinfo(dtype).max}); choose a wider --export_dtype")
    start, stop = export_bounds(opts, raw, channels)
    region = {a: (start[a], stop[a]) for a in "tzyxc"}
    sizes = {a: stop[a] - start[a] for a in "tzyxc"}
    out_axes = output_axes(opts.output_axis_order, raw.axes, sizes)
    out_shape = tuple(sizes.get(a, 1) for a in out_axes)
    formats.check_export_fits(output_format, out_axes, out_shape)
    path, internal = output_location(config, project, raw, source, output_format, raw.internal_axes, start, stop)
    resolutions, units = _pixel_sizes(raw, second, out_axes)
    attrs = {"axistags": axistags_json(out_axes, resolutions), "display_mode": "default",
             EXPORT_HINTS: _export_hints(raw, start)}
    if units:
        attrs["axis_units"] = json.dumps(units)
    # as ilastik 1.4.2 writes them: display "default"; a range only where renormalised, or 0..255
    # (in the export's type) on the blockwise images and wherever the object ids inherit the
    # 0..255 that ilastik gives every uint8 input (a uint8 binary segmentation)
    if transform.drange is not None:
        attrs["drange"] = np.array(transform.drange, dtype=dtype)
    elif source.startswith("Blockwise") or (project.variant == "binary" and second is not None
                                            and second.source.dtype == np.uint8):
        attrs["drange"] = np.array((0, 255), dtype=dtype)
    return ImagePlan(source, path, internal, output_format, region, out_axes, out_shape, transform, attrs, resolutions)


def _pixel_sizes(raw: Lane, second: Lane | None, out_axes: str) -> tuple[dict[str, float], dict[str, str]]:
    """The pixel sizes and their units an object image records, as ilastik 1.4.2 writes them
    (checked live): the second input's (prediction maps, segmentation, label image) where it has
    them, else the raw data's, kept only for axes longer than one pixel as in Pixel Classification."""
    sizes = export_resolutions(raw, out_axes)
    units = raw.source.axis_units if raw.axes == raw.source.axes else {}
    if second is not None:
        theirs = export_resolutions(second, out_axes)
        sizes = {a: theirs.get(a) or sizes.get(a, 0) for a in out_axes}
        if second.source.axis_units and second.axes == second.source.axes:
            units = second.source.axis_units
    return sizes, {a: u for a, u in units.items() if a in out_axes}


def export_bounds(opts: ExportOptions, raw: Lane, channels: int) -> tuple[dict[str, int], dict[str, int]]:
    """Start and stop per ``tzyxc`` axis of the exported region (``--cutout_subregion``, else the project's)."""
    extent = dict(zip("tzyxc", raw.shape[:4] + (channels,)))
    return cutout_bounds(opts.cutout_subregion, raw.internal_axes, extent)


def _export_hints(raw: Lane, start: dict[str, int]) -> dict:
    """What the writers need beyond attributes (see ``writers.EXPORT_HINTS``).

    Every object image is a label image to ilastik 1.4.2, Object Probabilities too: they all
    inherit the object ids' label semantics, so its OME-Zarr pyramids are nearest neighbour
    (``order`` 0) for each of them.
    """
    own_axes = raw.axes == raw.source.axes
    return {"labels": True, "offset": dict(start), "translation": raw.source.translation if own_axes else {},
            "scale_key": raw.source.scale_key}


@dataclass(frozen=True)
class ImageTask:
    """One object image as a region computation for the block engine
    (:func:`~gpuheadless.pipeline.block_runner.layout_blocks`, ``run_local``): a block's image is
    looked up from its object ids, so it needs no halo and about ``16 + 8 C`` bytes per voxel."""

    lane: Lane
    backend: Backend
    source: str
    results: list
    classified: bool
    channels: slice

    def halo(self) -> tuple[int, int, int]:
        return (0, 0, 0)

    def block_bytes(self, shape: tuple[int, int, int]) -> float:
        return math.prod(shape) * (16.0 + 8.0 * (self.channels.stop - self.channels.start))

    def compute(self, block: Block) -> np.ndarray:
        """The image over ``block``, (Z, Y, X, C)."""
        ids, probabilities, _ = self.results[block.t]
        return image_values(self.source, ids.read(block.slices), probabilities, self.classified)[..., self.channels]


def write_image(config: RunConfig, plan: ImagePlan, project: ObjectProject, raw: Lane, results, budget: float,
                backend: Backend) -> str:
    """Write an object image block by block with the block engine, as Pixel Classification writes
    its outputs (the ids are read per block, never whole; chunked formats are chunked by the blocks)."""
    task = ImageTask(raw, backend, plan.source, results, project.forest is not None, slice(*plan.region["c"]))
    layout = layout_blocks(config, task, plan.region, budget)
    with writing_output(plan.path):
        writer = open_writer(plan.output_format, plan.path, plan.internal, plan.out_shape, plan.transform.dtype,
                             plan.out_axes, plan.attrs, chunks=chunk_shape(layout, plan.out_axes, plan.out_shape),
                             resolutions=plan.resolutions)

    def store(block: Block, values: np.ndarray) -> None:
        writer.write(*place(block, values, plan.transform, plan.region, plan.out_axes))

    try:
        with writing_output(plan.path):
            run_local(config, layout.blocks, task.compute, store, lambda: None)
            writer.commit()
    except BaseException:
        writer.abort()
        raise
    log.info("Exported %s of %s to %s", plan.source, raw.source.display, plan.path)
    return plan.path
