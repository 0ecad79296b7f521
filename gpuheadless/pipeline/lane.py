"""A lane: one input image seen in ilastik's internal geometry (t, z, y, x, c)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import UserError
from ..io.readers import ImageSource
from ..project.ilp import Project

_AXES = "tzyxc"

log = logging.getLogger(__name__)


@dataclass
class Lane:
    """An opened input with the axes it is read with.

    Attributes
    ----------
    source : ImageSource
    axes : str
        The axes the file is read with (its own, the training lane's, or ``--input_axes``).
    shape : tuple of 5 ints
        Extents in ``tzyxc`` order (1 for axes the file lacks).
    nonfinite_seen : bool
        Whether a read of this process met a NaN or an infinity (floating-point inputs only).
    """

    source: ImageSource
    axes: str

    def __post_init__(self) -> None:
        extent = dict(zip(self.axes, self.source.shape))
        self.shape = tuple(extent.get(a, 1) for a in _AXES)
        self.nonfinite_seen = False

    @property
    def n_channels(self) -> int:
        return self.shape[4]

    @property
    def internal_axes(self) -> str:
        """ilastik's internal order: non-singleton ``t`` and ``z``, then ``yxc`` (``yxc``, ``zyxc``, ``tyxc`` ...)."""
        return "".join(a for a, n in zip("tz", self.shape[:2]) if n > 1) + "yxc"

    @property
    def spatial_axes(self) -> str:
        return ("z" if self.shape[1] > 1 else "") + "yx"

    def read(self, t: int, region: tuple[slice, slice, slice], dtype: npt.DTypeLike = np.float32) -> np.ndarray:
        """The (Z, Y, X, C) block of time step ``t`` over ``region`` (z, y, x slices), as ``dtype``
        (float32 by default; None keeps the file's type, as label images need)."""
        wanted = {"t": slice(t, t + 1), "z": region[0], "y": region[1], "x": region[2], "c": slice(None)}
        data = self.source.read(tuple(wanted[a] for a in self.axes))
        present = [a for a in _AXES if a in self.axes]
        data = np.transpose(data, [self.axes.index(a) for a in present])
        for i, a in enumerate(_AXES):
            if a not in self.axes:
                data = np.expand_dims(data, i)
        if data.dtype.kind in "fc" and not self.nonfinite_seen and not np.isfinite(data).all():
            self.nonfinite_seen = True
        if not isinstance(data, np.ndarray):  # a CuPy array (the array API's device path) stays on the device
            return data[0].astype(data.dtype if dtype is None else dtype, order="C", copy=False)
        return np.ascontiguousarray(data[0], dtype=dtype)


def warn_if_nonfinite(lane: Lane, what: str, consequence: str) -> None:
    """One line when the lane's reads met NaN or infinite values: nothing refuses them, as in ilastik."""
    if lane.nonfinite_seen:
        log.warning("%s '%s' holds NaN or infinite values: %s", what, lane.source.display, consequence)


def lane_axes(source: ImageSource, input_axes: str | None, project: Project | None, ignore_training: bool) -> str:
    """Decide the axes to read ``source`` with (spec §1.5).

    ``--input_axes`` wins; otherwise the project's last training lane's axes are used when they
    fit the file's rank (ilastik imposes them), else the file's own axes.
    """
    ndim = len(source.shape)
    if input_axes:
        axes = input_axes.lower()
        if (
            len(set(axes)) != len(axes)
            or any(a not in "xyztc" for a in axes)
            or "x" not in axes
            or "y" not in axes
        ):
            raise UserError(f"--input_axes {input_axes!r}: needs distinct letters of xyztc including x and y")
        if len(axes) != ndim:
            raise UserError(f"input '{source.display}': --input_axes {input_axes!r} has {len(axes)} axes, the data has {ndim}")
        return axes
    if not ignore_training and project is not None and project.lanes:
        trained = project.lanes[-1].axes
        if trained and len(trained) == ndim:
            return trained
    return source.axes


def check_against_training(lane: Lane, project: Project, expected_channels: int | None) -> None:
    """ilastik's batch constraints: same spatial axes and channel count as the training data."""
    if project.lanes:
        trained = project.lanes[-1]
        extents = dict(zip(trained.axes, trained.shape)) if trained.shape and len(trained.shape) == len(trained.axes) else {}
        trained_spatial = {a for a in trained.axes if a in "zyx" and extents.get(a, 2) > 1}
        ours = set(lane.spatial_axes)
        if trained_spatial and trained_spatial != ours:
            raise UserError(
                f"input '{lane.source.display}' is {len(ours)}D ({''.join(a for a in 'zyx' if a in ours)}) but the project "
                f"was trained on {len(trained_spatial)}D data ({''.join(a for a in 'zyx' if a in trained_spatial)})"
            )
    if expected_channels is not None and lane.n_channels != expected_channels:
        raise UserError(
            f"input '{lane.source.display}' has {lane.n_channels} channel(s) but the project was trained on "
            f"{expected_channels} channel(s)"
        )
