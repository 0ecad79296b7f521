"""Apply an ilastik project to a napari layer's data: layers in, layer data out (no Qt, no napari).

napari layers carry no axis names, so the axes are guessed as ilastik guesses them: the
project's training axes when they have the layer's number of dimensions, else ilastik's
defaults by rank (an RGB layer is ``yxc``).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from ..errors import UserError
from ..io.readers import default_axes
from ..project.objects import workflow_variant

LayerData = tuple[Any, dict[str, Any], str]  # napari's LayerDataTuple: (data, layer options, layer type)
Progress = Callable[[int, int], None]


def guess_axes(ndim: int, rgb: bool, trained: str | None) -> str:
    """The axes of a layer of ``ndim`` dimensions (``rgb``: its last one holds the colours).

    Raises
    ------
    UserError
        No axes of ``tzyxc`` fit the layer.
    """
    if rgb:
        return "tzyx"[4 - (ndim - 1):] if ndim > 3 else "yxc"
    if trained and len(trained) == ndim:
        return trained
    try:
        return default_axes(tuple([8] * ndim))
    except Exception:  # noqa: BLE001 - a rank ilastik has no default for
        raise UserError(f"a layer of {ndim} dimensions: no ilastik axes fit it") from None


def apply_to_layer(project: str | os.PathLike[str], image: Any, name: str = "image", rgb: bool = False,
                   second: Any = None, device: str = "auto", progress: Progress | None = None) -> list[LayerData]:
    """Run an ilastik project on a layer's data; the results as napari layer data.

    Parameters
    ----------
    project : str
        A Pixel Classification, Autocontext or Object Classification ``.ilp``.
    image : array
        The layer's data (NumPy, Dask or CuPy), axes as :func:`guess_axes` finds them.
    name : str
        The layer's name; the new layers are named after it.
    rgb : bool
        Whether the layer is RGB(A).
    second : array, optional
        Object Classification: the prediction maps, segmentation or label image layer's data,
        as the project needs (none for a Pixel + Object Classification project).
    device : str
        ``auto``, ``gpu`` or ``cpu``.
    progress : callable, optional
        ``progress(done, total)`` as blocks finish.

    Returns
    -------
    list of (data, options, layer type)
        Pixel projects: the probabilities (an image layer per class, float32) and the simple
        segmentation (labels, uint8, 1..K). Object projects: object identities and predictions
        (labels; the object table, a DataFrame, in the identities layer's ``metadata``).
    """
    if workflow_variant(project):
        return _objects(project, image, name, rgb, second, device, progress)
    return _pixels(project, image, name, rgb, device, progress)


def _pixels(project, image, name, rgb, device, progress) -> list[LayerData]:
    from ..experimental.api import AutocontextPipeline, PixelClassificationPipeline  # noqa: PLC0415
    from ..project.ilp import read_project  # noqa: PLC0415

    stages = len(read_project(os.fspath(project)).stages)
    kind = AutocontextPipeline if stages > 1 else PixelClassificationPipeline
    pipeline = kind.from_ilp_file(project, device=device)
    trained = pipeline._project.lanes[-1].axes if pipeline._project.lanes else None
    axes = guess_axes(image.ndim, rgb, trained)
    probabilities = np.asarray(_host(pipeline.get_probabilities(image, axes=axes, progress=progress)))
    n = probabilities.shape[-1]
    labels = pipeline._project.label_names
    if len(labels) != n:  # an Autocontext project's last stage has its own classes
        labels = [f"Label {k + 1}" for k in range(n)]
    segmentation = (np.argmax(probabilities, axis=-1) + 1).astype(np.uint8)
    return [(probabilities, {"name": [f"{name} {label}" for label in labels], "channel_axis": -1,
                             "blending": "additive", "contrast_limits": [(0.0, 1.0)] * len(labels)}, "image"),
            (segmentation, {"name": f"{name} Simple Segmentation"}, "labels")]


def _objects(project, image, name, rgb, second, device, progress) -> list[LayerData]:
    from ..experimental.object_api import ObjectClassificationPipeline  # noqa: PLC0415

    pipeline = ObjectClassificationPipeline.from_ilp_file(project, device=device)
    axes = guess_axes(image.ndim, rgb, pipeline._project.training_axes)
    if pipeline.second_input is not None and second is None:
        raise UserError(f"this project needs {pipeline.second_input.replace('_', ' ')}: choose its layer")
    if progress is not None:
        progress(0, 1)
    result = pipeline.classify(image, None if pipeline.second_input is None else second, axes=axes)
    if progress is not None:
        progress(1, 1)
    options: dict[str, Any] = {"name": f"{name} Object Identities"}
    try:
        options["metadata"] = {"object table": result.table}
    except ImportError:
        pass  # without pandas, the layers come without their table
    return [(_host(result.identities), options, "labels"),
            (_host(result.predictions), {"name": f"{name} Object Predictions"}, "labels")]


def _host(array: Any) -> Any:
    """napari draws host arrays: a CuPy result comes back from the GPU here, once."""
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else array
