"""The napari plugin (npe2): "Apply ilastik project" on the selected image layer.

Needs the ``napari`` extra; nothing else in gpuheadless imports this package.
"""
