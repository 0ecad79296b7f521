"""The napari dock widget "Apply ilastik project": pick a ``.ilp``, run it on the selected image layer."""
from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

from magicgui import magic_factory

from ._apply import apply_to_layer

if TYPE_CHECKING:
    import napari


@magic_factory(call_button="Apply",
               project={"label": "ilastik project", "filter": "*.ilp", "mode": "r"},
               second={"label": "prediction maps / segmentation (object projects)"},
               device={"choices": ["auto", "gpu", "cpu"], "tooltip": "auto: the GPU when there is a usable one"})
def apply_project_widget(image: "napari.layers.Image", project: pathlib.Path = pathlib.Path(),
                         second: "napari.layers.Layer | None" = None,
                         device: str = "auto") -> "list[napari.types.LayerDataTuple]":
    """Apply ``project`` to ``image``; the results are added as new layers (a progress bar runs meanwhile)."""
    from napari.utils import progress  # noqa: PLC0415 - napari is there whenever this widget is

    with progress(total=0, desc=f"ilastik project on {image.name}") as bar:
        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return apply_to_layer(project, image.data, image.name, image.rgb, None if second is None else second.data,
                              device, advance)
