"""ilastik's Python API (``ilastik.experimental.api``) on gpuheadless: arrays in, probabilities out.

A script written for ilastik runs after changing ``from ilastik.experimental.api import ...`` to
``from gpuheadless.experimental.api import ...``: same names, same checks (``ValueError`` for a
wrong channel count or number of spatial axes), same result axes (the training data's, with
``c``), and the numbers of the command line (the same block function computes them).

``AutocontextPipeline`` gives each stage's probabilities (``get_probabilities_stage_1`` and
``_2``, as ilastik's, and ``get_probabilities(data, stage=n)`` for any stage).
``ObjectClassificationPipeline`` (:mod:`.object_api`) gives objects, their classes and the object
table from the raw data and prediction maps or a segmentation.

Accepted data: an ``xarray.DataArray`` with dims named from ``t, z, y, x, c`` (an xarray comes
back), a NumPy array with ``axes="yxc"`` (a NumPy array comes back, in the result axes), a
Dask array with ``axes`` (a lazy Dask array comes back), and a CuPy array with ``axes`` (a CuPy
array comes back; on the GPU backend it never leaves the GPU).
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable

from ..backend import select_backend
from ..config import RunConfig, ram_budget_from_env, threads_from_env
from ..errors import UserError
from ..pipeline.in_memory import (ArrayTask, array_source, check_fits, device_source, probabilities_tzyxc, result_axes,
                                  to_axes)
from ..project.ilp import read_project
from ..project.objects import workflow_variant
from .arrays import is_cupy, is_dask, like, to_host, unwrap
from .object_api import (ObjectClassificationFromPredictionPipeline, ObjectClassificationFromSegmentationPipeline,
                         ObjectClassificationPipeline, ObjectClassificationResult)


class PixelClassificationPipeline:
    """A trained Pixel Classification project, applied to arrays.

    Examples
    --------
    >>> pipeline = PixelClassificationPipeline.from_ilp_file("MyProject.ilp")  # doctest: +SKIP
    >>> probabilities = pipeline.get_probabilities(xarray.DataArray(image, dims=("y", "x")))  # doctest: +SKIP
    """

    _STAGES_NEEDED = 1

    @classmethod
    def from_ilp_file(cls, path: str | os.PathLike[str], device: str = "auto") -> "PixelClassificationPipeline":
        """Open a project with a trained classifier.

        Parameters
        ----------
        path : str
            The ``.ilp`` file.
        device : str
            ``auto`` (a usable GPU, else the CPU), ``cpu`` or ``gpu``.

        Raises
        ------
        UserError
            The project cannot be read, or holds no trained classifier (ilastik's API refuses it too).
        """
        project = read_project(os.fspath(path))
        if len(project.stages) < cls._STAGES_NEEDED:
            raise UserError(f"project file '{path}' is not an Autocontext project")
        for k, stage in enumerate(project.stages[:max(cls._STAGES_NEEDED, 1)]):
            if stage.forest is None:
                where = f" for stage {k + 1}" if cls._STAGES_NEEDED > 1 else ""
                raise UserError(f"project file '{path}': no trained classifier is stored{where} (train it in ilastik, "
                                "or use gpuheadless train)")
        return cls(project, device)

    def __init__(self, project: Any, device: str = "auto") -> None:
        self._config = RunConfig(project=str(project.path), inputs=[], threads=threads_from_env(),
                                 ram_budget_mb=ram_budget_from_env(), device=device, progress=False)
        self._project, self._backend = project, select_backend(device)

    def get_probabilities(self, raw_data: Any, axes: str | None = None, *,
                          progress: Callable[[int, int], None] | None = None) -> Any:
        """Probabilities of every class for every pixel.

        Parameters
        ----------
        raw_data : xarray.DataArray, numpy.ndarray, dask.array.Array or cupy.ndarray
            The image, with the training data's number of spatial axes and channels. Dims of an
            xarray name the axes; other arrays need ``axes``. A CuPy array stays on the GPU when
            the pipeline's device is the GPU (blocks are read, computed and stored there);
            on the CPU it is copied to the host and the result back to the GPU.
        axes : str, optional
            The axes of a NumPy or Dask array, e.g. ``"yx"``, ``"zyxc"``.
        progress : callable, optional
            ``progress(done, total)`` after each block (gpuheadless's addition; not for Dask
            arrays, which compute when asked to).

        Returns
        -------
        xarray.DataArray, numpy.ndarray, dask.array.Array or cupy.ndarray
            float32, the axes of the training data plus ``c`` (one channel per class, in the
            project's label order); the same kind of array as given.

        Raises
        ------
        ValueError
            The channel count or the number of spatial axes differs from the training data
            (:class:`~gpuheadless.pipeline.in_memory.ArrayAxesError`, also a ``UserError``).
        """
        return self._probabilities(raw_data, axes, 0, progress)

    def predict(self, raw_data: Any, axes: str | None = None) -> Any:
        """Deprecated name of :meth:`get_probabilities`, as in ilastik."""
        warnings.warn("The predict method will disappear in future versions, please use get_probabilities()",
                      DeprecationWarning, stacklevel=2)
        return self.get_probabilities(raw_data, axes)

    def _probabilities(self, raw_data: Any, axes: str | None, stage: int,
                       progress: Callable[[int, int], None] | None = None) -> Any:
        """Stage ``stage``'s probabilities (0-based), the stages before it run on the way."""
        task = ArrayTask(self._project, self._project.forest, self._backend, self._config, stage)
        data, axes, wrap = unwrap(raw_data, axes)
        check_fits(task.project, task.forest, axes, tuple(data.shape))
        wanted = result_axes(task.project, axes, tuple(data.shape))
        if is_dask(data):
            from ..pipeline.lazy_arrays import lazy_probabilities  # noqa: PLC0415 - dask is an optional extra

            return wrap(lazy_probabilities(task, data, axes, wanted), wanted)
        if is_cupy(data) and self._backend.on_device:
            result = probabilities_tzyxc(task, device_source(data, axes), axes, on_device=True, progress=progress)
        else:  # a CuPy array on the CPU backend is computed on the host and goes back to the GPU
            result = like(probabilities_tzyxc(task, array_source(to_host(data), axes), axes, progress=progress), data)
        return wrap(to_axes(result, wanted), wanted)


class AutocontextPipeline(PixelClassificationPipeline):
    """A trained Autocontext project, applied to arrays, as ilastik's ``AutocontextPipeline``.

    Stage 2 classifies the image stacked with stage 1's probabilities converted to the image's
    type, as ilastik does; data, axes and results as :class:`PixelClassificationPipeline`.

    Examples
    --------
    >>> pipeline = AutocontextPipeline.from_ilp_file("MyAutocontext.ilp")  # doctest: +SKIP
    >>> probabilities = pipeline.get_probabilities_stage_2(xarray.DataArray(image, dims=("y", "x")))  # doctest: +SKIP
    """

    _STAGES_NEEDED = 2

    def get_probabilities_stage_1(self, raw_data: Any, axes: str | None = None) -> Any:
        """Stage 1's probabilities (see :meth:`PixelClassificationPipeline.get_probabilities`)."""
        return self._probabilities(raw_data, axes, 0)

    def get_probabilities_stage_2(self, raw_data: Any, axes: str | None = None) -> Any:
        """Stage 2's probabilities, from the image and stage 1's."""
        return self._probabilities(raw_data, axes, 1)

    def get_probabilities(self, raw_data: Any, axes: str | None = None, stage: int | None = None, *,
                          progress: Callable[[int, int], None] | None = None) -> Any:
        """The probabilities of ``stage`` (1-based; the last by default): projects of 3 and 4 stages too."""
        last = len(self._project.stages)
        stage = last if stage is None else stage
        if not 1 <= stage <= last:
            raise ValueError(f"Invalid argument stage={stage}. This project has stages 1 to {last}.")
        return self._probabilities(raw_data, axes, stage - 1, progress)


def from_project_file(path: str | os.PathLike[str]) -> Any:
    """Deprecated: :meth:`PixelClassificationPipeline.from_ilp_file`, as in ilastik; an Object
    Classification project gives its :class:`ObjectClassificationPipeline`, as ilastik's did."""
    warnings.warn("The `from_project_file` function will disappear in future versions. Please use "
                  "`PixelClassificationPipeline.from_ilp_file(path)`", DeprecationWarning, stacklevel=2)
    if workflow_variant(path):
        return ObjectClassificationPipeline.from_ilp_file(path)
    return PixelClassificationPipeline.from_ilp_file(path)


__all__ = ["AutocontextPipeline", "ObjectClassificationFromPredictionPipeline", "ObjectClassificationFromSegmentationPipeline",
           "ObjectClassificationPipeline", "ObjectClassificationResult", "PixelClassificationPipeline", "from_project_file"]
