"""CUDA kernels without a GPU (DESIGN §4): compile gate, CPU emulation against the CPU reference,
scrambled thread order, AddressSanitizer, and the whole pipeline through the GPU host code."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda"))
from harness import EmulatedModule  # noqa: E402

from gpuheadless.backend import Backend, cpu_backend  # noqa: E402
from gpuheadless.features import _ceigen  # noqa: E402
from gpuheadless.features.eigen import eigenvalues_2x2  # noqa: E402
from gpuheadless.features.filters import correlate_fastfilters  # noqa: E402
from gpuheadless.features.kernels import gaussian_kernel  # noqa: E402
from gpuheadless.forest.predict import predict_cpu  # noqa: E402
from gpuheadless.gpu.kernels import NVCC_OPTIONS, KernelSet, kernel_source_dir  # noqa: E402

SOURCES = sorted(glob.glob(os.path.join(kernel_source_dir(), "*.cu")))
_MODULES: list[EmulatedModule] = []


def _emulated_loader(path, options):
    module = EmulatedModule(path, tuple(o.replace("-fmad=false", "") for o in options if o != "-fmad=false"))
    _MODULES.append(module)
    return module


@pytest.fixture(scope="module")
def kernels():
    return KernelSet(_emulated_loader, np)


@pytest.fixture(params=["in order", "scrambled"])
def thread_order(request):
    rng = np.random.default_rng(5) if request.param == "scrambled" else None
    for module in _MODULES:
        module.scramble = rng
    yield request.param
    for module in _MODULES:
        module.scramble = None


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("source", SOURCES, ids=os.path.basename)
def test_every_kernel_compiles_with_nvcc(source, tmp_path):
    done = subprocess.run(["nvcc", "-arch=sm_90", "--cubin", *NVCC_OPTIONS, "-o", str(tmp_path / "k.cubin"), source],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("source", SOURCES, ids=os.path.basename)
def test_every_kernel_compiles_with_nvrtc(source):
    """Offline NVRTC with the flags cupy.RawModule adds (no GPU needed)."""
    nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="cupy (the gpu extra) is not installed")
    try:
        nvrtc.getVersion()
    except Exception as exc:  # the nvidia-cuda-nvrtc library is missing
        pytest.skip(f"NVRTC is not loadable: {exc}")
    with open(source) as f:
        code = f.read()
    prog = nvrtc.createProgram(code, os.path.basename(source), [], [])
    options = ["--gpu-architecture=compute_90", "--device-as-default-execution-space", *NVCC_OPTIONS, "-DN_CLASSES=3",
               f"-I{kernel_source_dir()}"]
    try:
        nvrtc.compileProgram(prog, options)
    except Exception as exc:
        pytest.fail(f"{os.path.basename(source)}: {exc}\n{nvrtc.getProgramLog(prog)}")
    finally:
        nvrtc.destroyProgram(prog)


@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_filter_kernel_equals_the_cpu_filter(order, axis, kernels, thread_order):
    rng = np.random.default_rng(order + 3 * axis)
    volume = (rng.random((7, 23, 41)) * 255).astype(np.float32)[:, 1:, 2:]  # strided
    kernel = gaussian_kernel(1.7, order, 2.0)
    unfused = (8, 32) if axis == 2 else None
    np.testing.assert_array_equal(kernels.correlate(volume, kernel, axis, unfused),
                                  correlate_fastfilters(volume, kernel, axis, unfused))


def test_eigenvalue_kernels_equal_the_cpu_solvers(kernels, thread_order):
    rng = np.random.default_rng(2)
    entries = [rng.normal(size=(5, 31)).astype(np.float32) * 10.0 for _ in range(6)]
    for e in entries:
        e[0, :3] = 0
    cpu = [np.empty(entries[0].size, np.float32) for _ in range(3)]
    _ceigen.eigenvalues3(*(e.reshape(-1) for e in entries), *cpu)
    for ours, ref in zip(kernels.eigenvalues(entries), cpu):
        np.testing.assert_array_equal(ours.reshape(-1), ref)
    for ours, ref in zip(kernels.eigenvalues(entries[:3]), eigenvalues_2x2(np, *entries[:3])):
        np.testing.assert_array_equal(ours, ref)


def test_forest_kernel_equals_the_cpu_forest_at_and_next_to_every_threshold(stored_forest, kernels, thread_order):
    from test_forest import _edge_rows

    x = _edge_rows(stored_forest, 3000)
    x[7, 3] = np.nan
    expected = predict_cpu(stored_forest, x)
    np.testing.assert_array_equal(kernels.forest_predict(stored_forest, x), expected)
    np.testing.assert_array_equal(kernels.forest_predict(stored_forest, np.asfortranarray(x)), expected)
    assert np.all(expected[7] == 0)


def test_kernels_run_clean_under_address_sanitizer(tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    runtime = subprocess.run(["g++", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(runtime):
        pytest.skip("the AddressSanitizer runtime is not installed")
    script = f"""
import sys, numpy as np
sys.path.insert(0, {os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda")!r})
from harness import EmulatedModule
from gpuheadless.gpu.kernels import KernelSet
from gpuheadless.features.kernels import gaussian_kernel
ks = KernelSet(lambda p, o: EmulatedModule(p, tuple(x for x in o if x != "-fmad=false"), sanitize=True), np)
v = np.random.default_rng(0).random((4, 9, 13)).astype(np.float32)
for axis in range(3):
    ks.correlate(v, gaussian_kernel(3.0, 1, 2.0), axis, (8, 8))
ks.eigenvalues([v[..., i] for i in range(6)])
ks.label_roots((v > 0.5).astype(np.uint8) + (v > 0.8))
ks.smooth_pass(v[..., None], np.array([0.25, 0.5, 0.25]), 1)
order = np.arange(v.size); starts = np.array([0, 100, 100, v.size])
ks.object_sums(v.reshape(-1, 1).astype(np.float64), order, starts)
ks.object_moment_sums(v.reshape(-1, 2).astype(np.float64), order[:v.size // 2], np.array([0, 50, 50, v.size // 2]), True, [(0, 1)])
print("clean")
"""
    env = dict(os.environ, LD_PRELOAD=runtime, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="halt_on_error=1")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and "clean" in done.stdout, done.stderr[-3000:]


def _first_pixel_of_component(labels: np.ndarray) -> np.ndarray:
    """Per pixel the raster index of the first pixel of its label, -1 for 0."""
    flat = labels.reshape(-1)
    values, first = np.unique(flat, return_index=True)
    lookup = dict(zip(values.tolist(), first.tolist()))
    lookup[0] = -1
    return np.vectorize(lookup.get, otypes=[np.int64])(labels)


@pytest.mark.parametrize("shape", [(5, 30, 40, 2), (1, 33, 77, 1), (3, 2, 9, 1)])
def test_smoothing_kernel_equals_the_cpu_smoothing(shape, kernels, thread_order):
    emulated = Backend("gpu", np, scipy.ndimage, {"device": "CPU emulation"}, kernels)
    values = np.random.default_rng(1).random(shape).astype(np.float32)
    for sigmas in ((1.0, 1.0, 1.0), (0.7, 1.3, 2.5), (3.0, 3.0, 3.0)):  # (3, 2, 9): reflections beyond the edge
        np.testing.assert_array_equal(emulated.smooth(values, sigmas), cpu_backend().smooth(values, sigmas))


@pytest.mark.parametrize("shape", [(1, 40, 57), (9, 21, 17)])
def test_labeling_kernels_find_the_cpu_components(shape, kernels, thread_order):
    from gpuheadless.objects.labeling import label_equal_values

    rng = np.random.default_rng(3)
    noise = scipy.ndimage.gaussian_filter(rng.random(shape), 1.0)
    values = (noise > np.quantile(noise, 0.55)).astype(np.uint16) + (noise > np.quantile(noise, 0.8))  # touching 1s and 2s
    roots = kernels.label_roots(values)
    np.testing.assert_array_equal(roots, _first_pixel_of_component(label_equal_values(values)[0]))


def test_object_sum_kernels_give_the_cpu_standard_features(data, kernels, thread_order):
    import h5py

    from gpuheadless.objects.features import standard_features

    names = ["Count", "Sum", "Mean", "Variance", "Skewness", "Kurtosis", "Covariance", "PrincipalAxes", "RegionCenter",
             "RegionRadii", "RegionAxes", "Minimum", "Maximum"]
    with h5py.File(data / "projects/ObjectClassification5t3d2c_wPred.ilp", "r") as f, \
            h5py.File(data / "inputs/5t3d2c.h5", "r") as raw:
        labels = f["ObjectExtraction/LabelImage_v2/labelimage000/block0002"][0, ..., 0]  # x, y, z
        image = np.transpose(raw["data"][2], (2, 1, 0, 3)).astype(np.float32)
    emulated = Backend("gpu", np, scipy.ndimage, {"device": "CPU emulation"}, kernels)
    cpu = standard_features(image, labels, names, origin=(3, 5, 7), backend=cpu_backend())
    gpu = standard_features(image, labels, names, origin=(3, 5, 7), backend=emulated)
    assert len(cpu["Count"]) > 10
    for name in names:
        np.testing.assert_array_equal(gpu[name], cpu[name], err_msg=name)


def test_objects_through_the_gpu_labeling_host_code_equal_ilastiks(data, tmp_path, capsys, kernels, monkeypatch):
    """The Object Classification workflow with the (emulated) CUDA smoothing, labelling and object sums:
    ilastik's images, and the CPU run's table (every feature, printed exactly)."""
    import h5py
    from cli_helpers import run_cli

    import gpuheadless.resolve as resolve

    emulated = Backend("gpu", np, scipy.ndimage, {"device": "CPU emulation"}, kernels)
    monkeypatch.setattr(resolve, "select_backend", lambda device, threads=1: emulated)
    code, err = run_cli(["--headless", f"--project={data}/projects/ObjectClassification5t3d2c_wPred.ilp",
                         f"--raw_data={data}/inputs/5t3d2c.h5/data",
                         f"--prediction_maps={data}/inputs/5t3d2c_Probabilities.h5/exported_data",
                         "--export_source=Object Identities", "--export_object_prediction_img",
                         f"--table_filename={tmp_path}/gpu.csv",
                         f"--output_filename_format={tmp_path}/{{result_type}}.h5"], tmp_path, capsys)
    assert code == 0, err
    monkeypatch.undo()
    code, err = run_cli(["--headless", f"--project={data}/projects/ObjectClassification5t3d2c_wPred.ilp",
                         f"--raw_data={data}/inputs/5t3d2c.h5/data", "--table_only", f"--table_filename={tmp_path}/cpu.csv",
                         f"--prediction_maps={data}/inputs/5t3d2c_Probabilities.h5/exported_data"], tmp_path, capsys)
    assert code == 0, err
    assert (tmp_path / "gpu_table.csv").read_text() == (tmp_path / "cpu_table.csv").read_text()
    for ours, ref in (("Object Identities", "Object_Identities"), ("Object Predictions", "Object_Predictions")):
        with h5py.File(tmp_path / f"{ours}.h5", "r") as a, h5py.File(
                data / f"reference/ObjectClassification5t3d2c_wPred__5t3d2c__{ref}.h5", "r") as b:
            np.testing.assert_array_equal(a["exported_data"][()], b["exported_data"][()])


def test_whole_pipeline_through_the_gpu_host_code_is_bit_identical(data, tmp_path, kernels):
    """compute_block with the GPU backend's kernel path (emulated) against the CPU backend."""
    from gpuheadless.config import ExportOptions, RunConfig
    from gpuheadless import resolve
    from gpuheadless.pipeline import pixel

    emulated = Backend("gpu", np, scipy.ndimage, {"device": "CPU emulation"}, kernels)
    outputs = {}
    for name, backend in (("cpu", cpu_backend()), ("emulated", emulated)):
        config = RunConfig(project=str(data / "projects/PixelClassification3d.ilp"), inputs=["inputs/3d.h5/data"],
                           export=ExportOptions(output_format="numpy", output_filename_format=str(tmp_path / f"{name}.npy")),
                           threads=1, ram_budget_mb=600, cwd=str(data), progress=False)
        original = resolve.select_backend
        resolve.select_backend = lambda device, threads=1, b=backend: b
        try:
            results, failures = pixel.run_batch(config)
        finally:
            resolve.select_backend = original
        assert not failures
        outputs[name] = np.load(results[0].output)
    np.testing.assert_array_equal(outputs["emulated"], outputs["cpu"])


@pytest.mark.gpu
def test_gpu_matches_cpu_on_a_real_device(data, tmp_path):
    from gpuheadless.backend import probe_gpu

    backend, reason = probe_gpu()
    if backend is None:
        pytest.skip(f"no usable GPU: {reason}")
    from gpuheadless import predict

    cpu = predict(str(data / "projects/PixelClassification2d.ilp"), [str(data / "inputs/2d.h5/data")], device="cpu",
                  output_format="numpy", output_filename_format=str(tmp_path / "cpu.npy"))
    gpu = predict(str(data / "projects/PixelClassification2d.ilp"), [str(data / "inputs/2d.h5/data")], device="gpu",
                  output_format="numpy", output_filename_format=str(tmp_path / "gpu.npy"))
    np.testing.assert_array_equal(np.load(gpu[0]), np.load(cpu[0]))


@pytest.mark.gpu
def test_gpu_objects_match_cpu_on_a_real_device(data, tmp_path):
    from gpuheadless.backend import probe_gpu

    backend, reason = probe_gpu()
    if backend is None:
        pytest.skip(f"no usable GPU: {reason}")
    from gpuheadless import predict

    outputs = {}
    for device in ("cpu", "gpu"):
        (outputs[device],) = predict(str(data / "projects/ObjectClassification5t3d2c_wPred.ilp"),
                                     [str(data / "inputs/5t3d2c.h5/data")], device=device, output_format="numpy",
                                     export_source="Object Identities",
                                     prediction_maps=[str(data / "inputs/5t3d2c_Probabilities.h5/exported_data")],
                                     output_filename_format=str(tmp_path / f"{device}.npy"))
    np.testing.assert_array_equal(np.load(outputs["gpu"]), np.load(outputs["cpu"]))


def test_gpu_block_budget_follows_free_device_memory_and_the_cap():
    from gpuheadless.config import RunConfig
    from gpuheadless.pipeline.blocks import choose_block_shape
    from gpuheadless.pipeline.pixel import block_budget_bytes

    class FakeGpu:
        def device_free_bytes(self):
            return 4 * 2**30

    config = RunConfig(project="p.ilp", inputs=[], ram_budget_mb=64_000)
    assert block_budget_bytes(config, FakeGpu()) == pytest.approx(0.8 * 4 * 2**30)
    config.gpu_memory_mb = 1024
    assert block_budget_bytes(config, FakeGpu()) == 1024 * 2**20
    # A 2 GB volume (1024 x 1024 x 512 float32) with a 1 GB cap: blocks whose working set fits.
    from gpuheadless.pipeline.blocks import block_cost_bytes

    shape = choose_block_shape((512, 1024, 1024), (38, 38, 38), lambda s: block_cost_bytes(s, (38, 38, 38), 1, 61, 2),
                               1024 * 2**20, 1)
    assert block_cost_bytes(shape, (38, 38, 38), 1, 61, 2) <= 1024 * 2**20
