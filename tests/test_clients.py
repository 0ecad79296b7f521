"""The argument lists of tools that call ilastik, replayed verbatim against gpuheadless (issue 18).

Each list is read from the tool's public source (the file is named in the test); the tool writes
its input the way it does, runs the executable with that list and reads the output where it
expects it. The result must be ilastik's reference output bit for bit.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile

from cli_helpers import run_cli

PROJECT = "PixelClassification2d.ilp"


@pytest.fixture(scope="module")
def image_and_reference(data):
    with h5py.File(data / "inputs" / "2d.h5", "r") as f:
        image = f["data"][...]
    with h5py.File(data / "reference" / "PixelClassification2d__2d__Probabilities.h5", "r") as f:
        return image, f["exported_data"][...]


def test_fiji_ilastik4ij(data, image_and_reference, tmp_path, capsys):
    """ilastik4ij ``WorkflowCommand.commonSubprocessArgs`` + ``PixelClassificationCommand``: the image
    as a 5D ``tzcyx`` HDF5 dataset ``data`` (the reverse of its ``xyczt``), the result read from
    ``exported_data`` of ``outputs/predictions.h5`` in the same axes."""
    image, reference = image_and_reference
    (tmp_path / "inputs").mkdir()
    (tmp_path / "outputs").mkdir()
    with h5py.File(tmp_path / "inputs" / "raw_data.h5", "w") as f:
        f["data"] = image[None, None, None]
    argv = ["--headless", f"--project={data / 'projects' / PROJECT}", "--output_format=hdf5",
            "--output_axis_order=tzcyx", "--input_axes=tzcyx", "--readonly=1", "--output_internal_path=exported_data",
            "--export_source=Probabilities", f"--raw_data={tmp_path / 'inputs' / 'raw_data.h5'}",
            f"--output_filename_format={tmp_path / 'outputs' / 'predictions.h5'}"]
    code, err = run_cli(argv, tmp_path, capsys)
    assert code == 0, err
    with h5py.File(tmp_path / "outputs" / "predictions.h5", "r") as f:
        result = f["exported_data"][...]
    assert result.shape == (1, 1, 2) + image.shape
    np.testing.assert_array_equal(np.moveaxis(result[0, 0], 0, -1), reference)


def test_cellprofiler_runilastik(data, image_and_reference, tmp_path, capsys):
    """CellProfiler-plugins ``active_plugins/runilastik.py`` (local executable): flag and value as
    separate words, the output file already created empty by ``NamedTemporaryFile``, the input a
    float64 ``data`` dataset scaled by the image's scale."""
    image, reference = image_and_reference
    fin, fout = tmp_path / "tmpin.h5", tmp_path / "tmpout.h5"
    with h5py.File(fin, "w") as f:
        f.create_dataset("data", image.shape, data=(image / 255.0) * 255.0)
    fout.write_bytes(b"")
    argv = ["--headless", "--project", str(data / "projects" / PROJECT), "--output_format", "hdf5",
            "--export_source", "Probabilities", "--output_filename_format", str(fout), str(fin)]
    code, err = run_cli(argv, tmp_path, capsys)
    assert code == 0, err
    with h5py.File(fout, "r") as f:
        np.testing.assert_array_equal(f["exported_data"][()], reference)


def test_knime_ilastik_headless_node(data, image_and_reference, tmp_path, capsys):
    """knip-ilastik ``IlastikHeadlessNodeModel.runIlastik``: images written as ``<name>.tif`` into a
    temporary folder, results read back from ``<name>_result.tiff`` (multipage TIFF)."""
    image, reference = image_and_reference
    tifffile.imwrite(tmp_path / "row1.tif", image)
    argv = ["--headless", f"--project={data / 'projects' / PROJECT}", "--output_format=multipage tiff",
            f"--output_filename_format={tmp_path}/{{nickname}}_result", str(tmp_path / "row1.tif")]
    code, err = run_cli(argv, tmp_path, capsys)
    assert code == 0, err
    result = tifffile.imread(tmp_path / "row1_result.tiff")
    np.testing.assert_array_equal(np.moveaxis(result.reshape(2, *image.shape), 0, -1), reference)
