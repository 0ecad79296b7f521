"""Object Classification on arrays: raw data and prediction maps (or a segmentation) in, object
images and the object table out.

ilastik's experimental API named these pipelines ``ObjectClassificationFromPredictionPipeline``
and ``ObjectClassificationFromSegmentationPipeline``, with ``get_object_probabilities(raw_data,
prediction_maps)`` (or ``segmentation_image``); those names work here. gpuheadless adds the
object identities, predictions and the table (a ``pandas.DataFrame``), and one call giving them
all (:meth:`ObjectClassificationPipeline.classify`). Every value is the command line's for the same
inputs: the same functions compute them.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import numpy as np

from ..backend import select_backend
from ..config import RunConfig, ram_budget_from_env, threads_from_env
from ..errors import UserError
from ..objects.in_memory import ObjectArrays, classify_arrays
from ..project.objects import ObjectProject, read_object_project
from ..objects.workflow import check_plugins, start_object_run
from ..pipeline.in_memory import ArrayAxesError, ArrayTask, array_source, check_fits, probabilities_tzyxc, to_axes
from .arrays import like, ndim, to_host, unwrap

SECOND_INPUT = {"prediction": "prediction_maps", "binary": "segmentation_image", "labels": "label_image"}


@dataclasses.dataclass
class ObjectClassificationResult:
    """The objects of one image.

    Images come in the kind of array the raw data was given as (xarray, NumPy, or CuPy), with the
    raw data's axes: ``identities`` and ``predictions`` without ``c`` (label images),
    ``probabilities`` with ``c`` (one channel per class; appended last when the raw data has none).

    Attributes
    ----------
    identities : array, uint32
        Object ids, 1..n per time point in ilastik's order; 0 is the background.
    predictions : array, uint8
        Each object's predicted class (1..K, the project's label order); 0 for the background
        and, where the project has no classifier, everywhere.
    probabilities : array, float32
        Each object's class probabilities over its pixels; 0 on the background.
    """

    identities: Any
    predictions: Any
    probabilities: Any
    _objects: ObjectArrays = dataclasses.field(repr=False)

    @functools.cached_property
    def table(self) -> Any:
        """The object table as a ``pandas.DataFrame``: the CSV of ``--table_filename``, as values.

        One row per object of every time point; the CSV's columns in its order (``object_id``,
        ``timestep``, ``labelimage_oid``, ``User Label``, ``Predicted Class``, ``Probability of
        <class>``, then the features): int64 ids, str labels and classes, float32 probabilities,
        features in their computed type (float32 or float64).

        Raises
        ------
        ImportError
            pandas is not installed.
        """
        return object_table(self._objects)


def object_table(objects: ObjectArrays) -> Any:
    """The table of ``objects`` as a ``pandas.DataFrame`` (see :attr:`ObjectClassificationResult.table`)."""
    try:
        import pandas  # noqa: PLC0415 - optional: only the table needs it
    except ImportError:
        raise ImportError("the object table as a DataFrame needs pandas: pip install pandas") from None
    header, columns = objects.table()
    return pandas.DataFrame({name: columns[name] for name in header}, columns=header)


class ObjectClassificationPipeline:
    """A trained Object Classification project, applied to arrays.

    :meth:`from_ilp_file` gives the pipeline of the project's kind: from prediction maps
    (:class:`ObjectClassificationFromPredictionPipeline`), from a binary segmentation
    (:class:`ObjectClassificationFromSegmentationPipeline`), from a label image, or Pixel +
    Object Classification (the raw data only; the project's pixel classifier runs first).

    Examples
    --------
    >>> pipeline = ObjectClassificationPipeline.from_ilp_file("Objects.ilp")  # doctest: +SKIP
    >>> result = pipeline.classify(raw, prediction_maps=probabilities, axes="zyx")  # doctest: +SKIP
    >>> result.identities, result.predictions, result.table  # doctest: +SKIP
    """

    _VARIANTS: tuple[str, ...] = ("prediction", "binary", "labels", "pixel")

    @classmethod
    def from_ilp_file(cls, path: str | os.PathLike[str], device: str = "auto") -> "ObjectClassificationPipeline":
        """Open an Object Classification project.

        A project with labelled objects but no stored classifier gets one trained now, from its
        own training data (as the command line does); one with neither classifies nothing (its
        predictions and probabilities are 0) but still gives objects and features.

        Parameters
        ----------
        path : str
            The ``.ilp`` file.
        device : str
            ``auto`` (a usable GPU, else the CPU), ``cpu`` or ``gpu``: for the pixel stage and
            the objects' smoothing, labelling and sums.

        Raises
        ------
        UserError
            Not an Object Classification project (or not of this class's kind), damaged, or
            selecting features gpuheadless does not compute.
        """
        project = read_object_project(os.fspath(path))
        if project.variant not in cls._VARIANTS:
            raise UserError(f"project file '{path}': {cls.__name__} takes projects from {_KIND[cls._VARIANTS[0]]}, "
                            f"this one is from {_KIND[project.variant]}; use ObjectClassificationPipeline")
        check_plugins(project)
        chosen = _CLASSES.get(project.variant, ObjectClassificationPipeline) if cls is ObjectClassificationPipeline else cls
        return chosen(project, device)

    def __init__(self, project: ObjectProject, device: str = "auto") -> None:
        self._config = RunConfig(project=str(project.path), inputs=[], threads=threads_from_env(),
                                 ram_budget_mb=ram_budget_from_env(), device=device, progress=False)
        self._backend = select_backend(device, self._config.threads)
        run = start_object_run(self._config, project, self._backend)
        self._project = project
        self._pixel = run.pixel.project if run.pixel is not None else None

    @property
    def second_input(self) -> str | None:
        """The keyword of the second input this project takes (``prediction_maps``,
        ``segmentation_image``, ``label_image``), or None for Pixel + Object Classification."""
        return SECOND_INPUT.get(self._project.variant)

    def classify(self, raw_data: Any, second: Any = None, *, axes: str | None = None, second_axes: str | None = None,
                 prediction_maps: Any = None, segmentation_image: Any = None,
                 label_image: Any = None) -> ObjectClassificationResult:
        """Objects, their classes and features.

        Parameters
        ----------
        raw_data : xarray.DataArray, numpy.ndarray or cupy.ndarray
            The image, axes from ``t, z, y, x, c`` (dims of an xarray, else ``axes``).
        second : array, optional
            The second input given by position: what :attr:`second_input` names.
        axes : str, optional
            The axes of a bare ``raw_data`` array, e.g. ``"zyx"``.
        second_axes : str, optional
            The axes of a bare second input; by default the raw data's (with ``c`` added last
            when the second input has one dimension more, e.g. prediction maps of a
            single-channel image).
        prediction_maps, segmentation_image, label_image : array, optional
            The second input by name, as the project's kind needs: probabilities (float, the
            project thresholds one of their channels), a binary segmentation (each connected
            region of one non-zero value is an object) or a label image (each non-zero value is
            an object). The same ``t, z, y, x`` extents as the raw data.

        Returns
        -------
        ObjectClassificationResult

        Raises
        ------
        ValueError
            Missing or wrong axes, a second input the project does not take or one missing
            (also a ``UserError``).
        UserError
            The command line's checks: shapes that differ, a thresholded channel the prediction
            maps lack, a segmentation without any object.
        """
        raw, axes, wrap = unwrap(raw_data, axes)
        given = self._second(second, prediction_maps, segmentation_image, label_image)
        host_raw = to_host(raw)
        if self._pixel is not None:
            second_data, second_axes = self._pixel_probabilities(host_raw, axes), "tzyxc"
        else:
            second_data, second_axes, _ = unwrap(given, second_axes or _second_axes(axes, ndim(given)),
                                                 self.second_input, "second_axes")
            second_data = to_host(second_data)
        objects = classify_arrays(self._project, self._config, self._backend, host_raw, axes, second_data, second_axes)
        labels = "".join(a for a in axes if a != "c")
        channels = axes if "c" in axes else axes + "c"

        def out(image: np.ndarray, wanted: str) -> Any:
            return wrap(like(to_axes(image if image.ndim == 5 else image[..., None], wanted), raw), wanted)

        return ObjectClassificationResult(out(objects.identities(), labels), out(objects.predictions(), labels),
                                          out(objects.probabilities(), channels), objects)

    def get_object_probabilities(self, raw_data: Any, second: Any = None, **inputs: Any) -> Any:
        """Each object's class probabilities over its pixels, as ilastik's API returns them
        (float32, the raw data's axes with ``c``); arguments as :meth:`classify`."""
        return self.classify(raw_data, second, **inputs).probabilities

    def get_object_predictions(self, raw_data: Any, second: Any = None, **inputs: Any) -> Any:
        """Each object's predicted class over its pixels (uint8); arguments as :meth:`classify`."""
        return self.classify(raw_data, second, **inputs).predictions

    def get_object_identities(self, raw_data: Any, second: Any = None, **inputs: Any) -> Any:
        """The object ids (uint32); arguments as :meth:`classify`."""
        return self.classify(raw_data, second, **inputs).identities

    def get_table(self, raw_data: Any, second: Any = None, **inputs: Any) -> Any:
        """The object table as a ``pandas.DataFrame``; arguments as :meth:`classify`."""
        return self.classify(raw_data, second, **inputs).table

    def _second(self, second: Any, prediction_maps: Any, segmentation_image: Any, label_image: Any) -> Any:
        """The one second input of this project's kind, from position or keyword."""
        named = {k: v for k, v in (("prediction_maps", prediction_maps), ("segmentation_image", segmentation_image),
                                   ("label_image", label_image)) if v is not None}
        wanted = self.second_input
        if wanted is None:
            if second is not None or named:
                raise ArrayAxesError("this project computes its pixel probabilities itself: give raw_data only")
            return None
        wrong = sorted(set(named) - {wanted})
        if wrong:
            raise ArrayAxesError(f"this project takes {wanted} (objects from {_KIND[self._project.variant]}), not "
                                 f"{', '.join(wrong)}")
        if second is not None and named:
            raise ArrayAxesError(f"{wanted} given twice (by position and by name)")
        value = second if second is not None else named.get(wanted)
        if value is None:
            raise ArrayAxesError(f"this project needs {wanted}= besides raw_data")
        return value

    def _pixel_probabilities(self, raw: np.ndarray, axes: str) -> np.ndarray:
        """Pixel + Object Classification: the pixel stage's ``(T, Z, Y, X, C)`` probabilities."""
        project = self._pixel
        check_fits(project, project.forest, axes, tuple(raw.shape))
        task = ArrayTask(project, project.forest, self._backend, self._config)
        return probabilities_tzyxc(task, array_source(raw, axes), axes)


class ObjectClassificationFromPredictionPipeline(ObjectClassificationPipeline):
    """Objects from prediction maps: ilastik's name (see :class:`ObjectClassificationPipeline`)."""

    _VARIANTS = ("prediction",)


class ObjectClassificationFromSegmentationPipeline(ObjectClassificationPipeline):
    """Objects from a binary segmentation: ilastik's name (see :class:`ObjectClassificationPipeline`)."""

    _VARIANTS = ("binary",)


_CLASSES = {"prediction": ObjectClassificationFromPredictionPipeline,
            "binary": ObjectClassificationFromSegmentationPipeline}
_KIND = {"prediction": "prediction maps", "binary": "a binary segmentation", "labels": "a label image",
         "pixel": "pixel classification"}


def _second_axes(raw_axes: str, ndim: int) -> str | None:
    """The second input's axes by default: the raw data's, with ``c`` added or removed to fit ``ndim``."""
    if ndim == len(raw_axes):
        return raw_axes
    if ndim == len(raw_axes) + 1 and "c" not in raw_axes:
        return raw_axes + "c"
    if ndim == len(raw_axes) - 1 and "c" in raw_axes:
        return raw_axes.replace("c", "")
    return None


__all__ = ["ObjectClassificationFromPredictionPipeline", "ObjectClassificationFromSegmentationPipeline",
           "ObjectClassificationPipeline", "ObjectClassificationResult"]
