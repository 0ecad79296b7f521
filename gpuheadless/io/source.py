"""An opened input image (:class:`ImageSource`): its shape, axes and metadata, and a region reader
that turns a reader library's failures into one-line errors; ilastik's default axes by rank."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import UserError, brief


@dataclass
class ImageSource:
    """An opened input image.

    Attributes
    ----------
    display : str
        The path as the user gave it, for messages.
    axes : str
        The file's axes in order, lowercase letters of ``tzyxc``.
    shape, dtype
    nickname : str
    dataset_dir : str
        Absolute directory of the file (``{dataset_dir}``); empty for an http(s) input, whose
        ``{dataset_dir}`` is the project's folder (see :func:`~gpuheadless.pipeline.export_plan.dataset_dir`).
    resolutions, axis_units : dict
        Pixel sizes and their units per axis where the file records them.
    translation : dict
        An OME-Zarr image's offset per axis in physical units (its level's and its image-wide
        translation added), which ilastik carries into OME-Zarr exports.
    scale_key : str or None
        The OME-Zarr level read (e.g. ``"s0"``); ilastik names a single-scale export's level after it.
    scales : dict
        An OME-Zarr image's levels, largest first: path to shape per axis; ilastik's OME-Zarr
        exports of it follow these levels.
    """

    display: str
    axes: str
    shape: tuple[int, ...]
    dtype: np.dtype
    nickname: str
    dataset_dir: str
    read_region: Callable[[tuple[slice, ...]], np.ndarray]
    close: Callable[[], None] = lambda: None
    resolutions: dict[str, float] = field(default_factory=dict)
    axis_units: dict[str, str] = field(default_factory=dict)
    drange: tuple[Any, Any] | None = None
    translation: dict[str, float] = field(default_factory=dict)
    scale_key: str | None = None
    scales: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if np.dtype(self.dtype).kind == "c":  # casting to float32 would drop the imaginary part unseen
            raise UserError(f"input '{self.display}': complex numbers ({np.dtype(self.dtype)}) are not an image; "
                            "gpuheadless reads real values only")
        if 0 in self.shape:
            raise UserError(f"input '{self.display}': the image is empty (shape {tuple(self.shape)})")

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        """Read ``region`` (slices in the file's axis order).

        Raises
        ------
        UserError
            The file cannot be read there (a damaged chunk, a truncated file, a lost connection,
            any error of the reader library on bytes it cannot decode), or it gives data of
            another shape than its header declares.
        """
        box = ", ".join(f"{s.start or 0}:{s.stop}" for s in region)
        try:
            data = np.asarray(self.read_region(region))
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a reader library's own error on damaged data
            raise UserError(f"input '{self.display}': cannot read [{box}] ({brief(exc)})") from None
        expected = tuple(len(range(*s.indices(n))) for s, n in zip(region, self.shape))
        if len(region) == len(self.shape) and data.shape != expected:
            raise UserError(f"input '{self.display}': [{box}] reads as shape {data.shape}, not the {expected} its header "
                            f"declares (shape {self.shape}); the file is damaged")
        return data


def default_axes(shape: tuple[int, ...]) -> str:
    """ilastik's axes for data without axis metadata, by rank."""
    rank = len(shape)
    if rank == 2:
        return "yx"
    if rank == 3:
        return "yxc" if shape[-1] <= 4 else "zyx"
    if rank == 4:
        return "zyxc"
    if rank == 5:
        return "tzyxc"
    raise ValueError(f"{rank}-dimensional data is not supported (2 to 5 dimensions)")
