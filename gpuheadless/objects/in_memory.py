"""Object Classification of arrays in memory, by the same functions as the command line.

The raw data and the second input are wrapped as image sources, so the objects, features,
probabilities and table come from :func:`~gpuheadless.objects.workflow.lane_results` and
:func:`~gpuheadless.objects.table.table_rows` unchanged: the numbers are those the command line
writes for the same inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import Backend
from ..config import RunConfig
from ..pipeline.in_memory import array_source
from ..pipeline.lane import Lane
from .classifier import predicted_classes
from ..project.objects import ObjectProject
from .table import table_rows
from .workflow import lane_results, object_budget_bytes

WHOLE = (slice(None),) * 3


@dataclass
class ObjectArrays:
    """The objects of one image, every time point.

    Attributes
    ----------
    project : ObjectProject
    results : list
        Per time point ``(ObjectIds, (n + 1, K) float32 probabilities, features)``.
    """

    project: ObjectProject
    results: list

    def identities(self) -> np.ndarray:
        """``(T, Z, Y, X)`` uint32 object ids, 1..n per time point, 0 for the background."""
        return np.stack([ids.read(WHOLE) for ids, _, _ in self.results])

    def predictions(self) -> np.ndarray:
        """``(T, Z, Y, X)`` uint8 predicted class of each object's pixels (1..K; 0 background and
        every pixel of a project without a classifier)."""
        classified = self.project.forest is not None
        return np.stack([predicted_classes(p, classified).astype(np.uint8)[ids.read(WHOLE)]
                         for ids, p, _ in self.results])

    def probabilities(self) -> np.ndarray:
        """``(T, Z, Y, X, K)`` float32 class probabilities of each object's pixels (0 on the background)."""
        return np.stack([p[ids.read(WHOLE)] for ids, p, _ in self.results])

    def table(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """The object table: column names in the CSV's order, and per column a 1-D array (int64
        ids, str labels and classes, float32 probabilities, features in their computed type)."""
        header, cells, _ = table_rows(self.project, self.results)
        return header, {name: _column(values) for name, values in zip(header, cells)}


def _column(values: list) -> np.ndarray:
    if values and isinstance(values[0], str):
        return np.array(values, dtype=object)
    return np.array(values) if values else np.zeros(0, np.float32)


def classify_arrays(project: ObjectProject, config: RunConfig, backend: Backend, raw: Any, raw_axes: str,
                    second: Any, second_axes: str) -> ObjectArrays:
    """Objects, classes and features of an image given as arrays.

    Parameters
    ----------
    project : ObjectProject
        With its classifier trained if it is to classify (see
        :func:`~gpuheadless.objects.workflow.start_object_run`).
    config : RunConfig
        Its memory budget bounds the labelling slabs and feature batches.
    backend : Backend
        Where the smoothing, labelling and object sums run (the CPU, or the GPU).
    raw : numpy.ndarray
        The raw data, axes ``raw_axes`` (letters of ``tzyxc``).
    second : numpy.ndarray
        Prediction maps, a segmentation or a label image, as the project's variant needs, of
        the raw data's ``t, z, y, x`` extents, axes ``second_axes``.

    Raises
    ------
    UserError
        The command line's messages: shapes that differ, a missing thresholded channel, a
        segmentation without objects.
    """
    raw_lane = Lane(array_source(raw, raw_axes, "raw_data"), raw_axes)
    second_lane = Lane(array_source(second, second_axes, _SECOND_NAME[project.variant]), second_axes)
    # the arrays are in memory already: provisional labels stay there too (no scratch file)
    results = lane_results(project, raw_lane, second_lane, object_budget_bytes(config, backend), None, backend)
    return ObjectArrays(project, results)


_SECOND_NAME = {"prediction": "prediction_maps", "pixel": "prediction_maps", "binary": "segmentation_image",
                "labels": "label_image"}
