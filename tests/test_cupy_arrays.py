"""CuPy arrays in the Python API (issue 18): a CuPy array in gives a CuPy array out, and on the GPU
backend the image never leaves the device.

Without a GPU, CuPy is emulated (``tests/cuda/cupy_emulation.py``): device arrays that refuse
implicit conversion to NumPy as CuPy does, the GPU backend's CUDA kernels run in the CPU
emulation, and every explicit transfer counted. ``test_cupy_on_a_real_gpu`` runs where a GPU is.
"""
from __future__ import annotations

import os
import sys

import h5py
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda"))
import cupy_emulation  # noqa: E402
from tiny_objects import prediction_maps, tiny_image, write_tiny_project  # noqa: E402

import gpuheadless.experimental.api as api  # noqa: E402
import gpuheadless.experimental.object_api as object_api  # noqa: E402


HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "autocontext")
PROJECT = os.path.join(HERE, "two-stage-2d.ilp")


def _reference():
    """The image (Y, X, 1) uint8 and ilastik's stage-2 probabilities of it (repository data)."""
    with h5py.File(os.path.join(HERE, "two-stage-2d-unseen.h5"), "r") as f:
        image = f["data"][...]
    with h5py.File(os.path.join(HERE, "reference/two-stage-2d-unseen__Probabilities_All_Stages.h5"), "r") as f:
        every_stage = f["exported_data"][...]
    return image, every_stage


@pytest.fixture
def emulated_gpu(monkeypatch):
    backend = cupy_emulation.backend()
    monkeypatch.setattr(api, "select_backend", lambda device, threads=1: backend)
    monkeypatch.setattr(object_api, "select_backend", lambda device, threads=1: backend)
    cupy_emulation.transfers.clear()
    return backend


def test_cupy_in_stays_on_the_gpu_and_cupy_comes_out(emulated_gpu):
    image, every_stage = _reference()
    device_image = cupy_emulation.ndarray(image.copy())  # as if it had been made on the GPU
    pipeline = api.AutocontextPipeline.from_ilp_file(PROJECT, device="gpu")
    assert pipeline._backend.on_device
    result = pipeline.get_probabilities_stage_2(device_image, axes="yxc")  # both stages, chained on the device
    assert isinstance(result, cupy_emulation.ndarray)
    moved = list(cupy_emulation.transfers)
    assert not [t for t in moved if t[0] == "to host"], moved
    # to the device: only filter taps and the packed forests (1-D), never image data
    assert moved and all(len(shape) == 1 for _, shape in moved), moved
    n = result.shape[-1]
    np.testing.assert_array_equal(result.get(), every_stage[..., -n:])  # ilastik's numbers


def test_cupy_in_on_the_cpu_backend_is_computed_on_the_host_and_returned_as_cupy():
    image, every_stage = _reference()
    cupy_emulation.transfers.clear()
    pipeline = api.AutocontextPipeline.from_ilp_file(PROJECT, device="cpu")
    result = pipeline.get_probabilities(cupy_emulation.ndarray(image.copy()), axes="yxc", stage=1)
    assert isinstance(result, cupy_emulation.ndarray)
    assert [t[0] for t in cupy_emulation.transfers] == ["to host", "to device"]
    n = result.shape[-1]
    np.testing.assert_array_equal(result.get(), every_stage[..., :n])


def test_cupy_objects_come_back_as_cupy(emulated_gpu, tmp_path):
    raw, foreground, classes, centres = tiny_image()
    project = tmp_path / "tiny.ilp"
    write_tiny_project(project)
    pipeline = object_api.ObjectClassificationPipeline.from_ilp_file(project, device="gpu")
    expected = object_api.ObjectClassificationPipeline.from_ilp_file(project, device="cpu").classify(
        raw, prediction_maps(foreground), axes="yx")
    result = pipeline.classify(cupy_emulation.ndarray(raw), cupy_emulation.ndarray(prediction_maps(foreground)),
                               axes="yx")
    for name in ("identities", "predictions", "probabilities"):
        ours = getattr(result, name)
        assert isinstance(ours, cupy_emulation.ndarray), name
        np.testing.assert_array_equal(ours.get(), getattr(expected, name), err_msg=name)
    assert sorted({int(v) for v in expected.predictions[tuple(np.transpose(centres))]}) == [1, 2]


def test_the_emulation_refuses_implicit_host_copies_as_cupy_does():
    device = cupy_emulation.ndarray(np.arange(6.0))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(device)
    assert isinstance(np.sqrt(device), cupy_emulation.ndarray) and isinstance(device[1:] + 1, cupy_emulation.ndarray)


@pytest.mark.gpu
def test_cupy_on_a_real_gpu():
    """A CuPy image on a real GPU: CuPy out, equal to the CPU's NumPy result (repository data only)."""
    from gpuheadless.backend import probe_gpu

    backend, reason = probe_gpu()
    if backend is None:
        pytest.skip(f"no usable GPU: {reason}")
    import cupy

    image, _ = _reference()
    project = PROJECT
    expected = api.AutocontextPipeline.from_ilp_file(project, device="cpu").get_probabilities(image, axes="yxc")
    result = api.AutocontextPipeline.from_ilp_file(project, device="gpu").get_probabilities(cupy.asarray(image),
                                                                                          axes="yxc")
    assert isinstance(result, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(result), expected)
