"""The GPU-side defects of issue 14, each tested without a GPU where that is possible.

Streams are modelled by the emulated CuPy (``tests/cuda/cupy_emulation.py``, ``asynchronous()``),
kernels run in the CPU emulation (``tests/cuda/harness.py``), and NVRTC compiles offline.
"""
from __future__ import annotations

import logging
import os
import sys
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda"))
import cupy_emulation  # noqa: E402
from harness import EmulatedModule  # noqa: E402

import gpuheadless.backend as backend_module  # noqa: E402
import gpuheadless.gpu.kernels as gpu_kernels  # noqa: E402
from gpuheadless.gpu.kernels import KernelSet, kernel_source_dir  # noqa: E402


def _emulated_kernels(scramble: int | None = None) -> KernelSet:
    rng = None if scramble is None else np.random.default_rng(scramble)

    def loader(path, options):
        module = EmulatedModule(path, tuple(o for o in options if o != "-fmad=false"))
        module.scramble = rng
        return module

    return KernelSet(loader, np)


def _nvrtc():
    nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="cupy (the gpu extra) is not installed")
    try:
        nvrtc.getVersion()
    except Exception as exc:  # the nvidia-cuda-nvrtc library is missing
        pytest.skip(f"NVRTC is not loadable: {exc}")
    return nvrtc


# Defect 1: the forest's node table, uploaded on one stream, read on another.

def _two_streams_predict(stored_forest, x):
    """Predict on stream 1 (which uploads the forest), then on stream 2, before stream 1 has run."""
    bk = cupy_emulation.backend()
    xp = bk.xp
    first, second = xp.cuda.Stream(non_blocking=True), xp.cuda.Stream(non_blocking=True)
    with cupy_emulation.asynchronous():
        with first:
            a = bk.kernels.forest_predict(stored_forest, xp.asarray(x))
        with second:
            b = bk.kernels.forest_predict(stored_forest, xp.asarray(x))
            second.synchronize()
        first.synchronize()
        return a.get(), b.get()


def test_forest_upload_is_finished_before_another_stream_reads_it(stored_forest):
    from gpuheadless.forest.predict import predict_cpu

    stored_forest.scratch.clear()
    x = np.random.default_rng(0).random((50, stored_forest.n_features)).astype(np.float32)
    a, b = _two_streams_predict(stored_forest, x)
    np.testing.assert_array_equal(a, predict_cpu(stored_forest, x))
    np.testing.assert_array_equal(b, a)


def test_the_stream_model_catches_an_upload_published_too_early(stored_forest, monkeypatch):
    """The defect as it was: arrays published right after their (queued) copy."""

    def publish_at_once(self, cache, key, make):
        if key not in cache:
            cache[key] = make()
        return cache[key]

    monkeypatch.setattr(KernelSet, "_publish_once", publish_at_once)
    stored_forest.scratch.clear()
    x = np.zeros((4, stored_forest.n_features), np.float32)
    with pytest.raises(cupy_emulation.StreamRace):
        _two_streams_predict(stored_forest, x)
    stored_forest.scratch.clear()


# Defect 2: no flush-to-zero in our modules.

@pytest.mark.parametrize("source", sorted(f for f in os.listdir(kernel_source_dir()) if f.endswith(".cu")))
def test_kernels_compile_to_ptx_without_ftz(source):
    _nvrtc()
    text = gpu_kernels.module_source(os.path.join(kernel_source_dir(), source))
    options = gpu_kernels.NVRTC_OPTIONS + ("-DN_CLASSES=3",)
    ptx = gpu_kernels.compile_nvrtc(text, source, options, "90", "ptx").decode()
    assert ".entry" in ptx and ".ftz" not in ptx
    if source == "eigenvalues.cu":  # the check can see the flag: CuPy's RawModule appends it
        assert ".ftz" in gpu_kernels.compile_nvrtc(text, source, options + ("-ftz=true",), "90", "ptx").decode()


def test_cupy_loader_loads_our_cubin_not_cupys_compile(tmp_path, monkeypatch):
    _nvrtc()
    loaded = []
    fake = types.SimpleNamespace(RawModule=lambda **kw: loaded.append(kw) or kw)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(gpu_kernels, "device_arch", lambda: "90")
    monkeypatch.setenv("GPUHEADLESS_KERNEL_CACHE", str(tmp_path))
    gpu_kernels.cupy_loader(os.path.join(kernel_source_dir(), "eigenvalues.cu"), ("-fmad=false", "-I/somewhere"))
    (module,) = loaded
    assert set(module) == {"path"} and module["path"].endswith(".cubin") and os.path.getsize(module["path"]) > 1000


# Defect 7: a changed header is a new module.

def test_a_changed_header_changes_the_compiled_module(tmp_path, monkeypatch):
    _nvrtc()
    monkeypatch.setenv("GPUHEADLESS_KERNEL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "scale.h").write_text("#define SCALE 2.0f\n")
    kernel = tmp_path / "k.cu"
    kernel.write_text('#include "scale.h"\nextern "C" __global__ void k(float *x) { x[0] = x[0] * SCALE; }\n')
    first = gpu_kernels.cached_cubin(str(kernel), (), "90")
    assert gpu_kernels.cached_cubin(str(kernel), (), "90") == first
    (tmp_path / "scale.h").write_text("#define SCALE 3.0f\n")
    second = gpu_kernels.cached_cubin(str(kernel), (), "90")
    assert second != first and os.path.exists(first) and os.path.exists(second)
    assert "SCALE 3.0f" in gpu_kernels.module_source(str(kernel))


# Defect 5: per-object sums parallel over (object, column), still in raster order.

def test_object_sums_of_a_large_object_equal_bincount_in_any_thread_order():
    from arithmetic_reference import running_moment_sums

    from gpuheadless.objects.features import bincount_sums

    rng = np.random.default_rng(7)
    index = np.concatenate([np.full(3000, 2), rng.integers(0, 6, 500), [5] * 3]).astype(np.int64)  # 4: empty
    index[index == 4] = 3
    columns = rng.normal(size=(index.size, 5)) * 10.0 ** rng.integers(-8, 8, (index.size, 5))
    order = np.argsort(index, kind="stable")
    starts = np.searchsorted(index[order], np.arange(7))
    expected = bincount_sums(columns, index, 5)
    pairs = [(0, 1), (3, 2)]
    squares, products = running_moment_sums(columns, index, 5, pairs)
    for scramble in (None, 1, 2):
        kernels = _emulated_kernels(scramble)
        np.testing.assert_array_equal(kernels.object_sums(columns, order, starts), expected)
        ours_squares, ours_products = kernels.object_moment_sums(columns, order, starts, True, pairs)
        np.testing.assert_array_equal(ours_squares, squares)
        np.testing.assert_array_equal(ours_products, products)
        _, only_pairs = kernels.object_moment_sums(columns, order, starts, False, pairs)
        np.testing.assert_array_equal(only_pairs, products)


# Defect 6: path halving keeps every pixel's root its component's first pixel.

def test_labeling_with_path_halving_on_a_long_serpentine():
    from gpuheadless.objects.labeling import label_equal_values

    snake = np.zeros((1, 41, 40), np.uint8)
    snake[0, ::2, :] = 1
    snake[0, 1::4, -1] = 1
    snake[0, 3::4, 0] = 1
    snake[0, 40, :] = 2  # a second value touching the snake's end
    labels, _ = label_equal_values(snake)
    flat = labels.reshape(-1)
    first = {v: int(np.argmax(flat == v)) for v in np.unique(flat) if v}
    expected = np.array([first[v] if v else -1 for v in flat]).reshape(snake.shape)
    for scramble in (None, 3, 4):
        np.testing.assert_array_equal(_emulated_kernels(scramble).label_roots(snake), expected)


# Defect 4: the probe compiles our kernels and never raises.

def _fake_cupy(monkeypatch, properties=None):
    def kernel(*_args):
        return lambda x: types.SimpleNamespace(get=lambda: np.asarray(x) * 2)

    def device_properties(_device):
        if properties is None:
            raise RuntimeError("cudaErrorInsufficientDriver")
        return properties

    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=device_properties)
    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime), ElementwiseKernel=kernel,
                                 ones=np.ones, float32=np.float32)
    ndimage = types.ModuleType("cupyx.scipy.ndimage")
    scipy = types.ModuleType("cupyx.scipy")
    scipy.ndimage = ndimage
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = scipy
    for name, module in (("cupy", cupy), ("cupyx", cupyx), ("cupyx.scipy", scipy), ("cupyx.scipy.ndimage", ndimage)):
        monkeypatch.setitem(sys.modules, name, module)


def test_probe_reports_failing_device_properties(monkeypatch):
    _fake_cupy(monkeypatch, properties=None)
    backend, reason = backend_module.probe_gpu()
    assert backend is None and "cudaErrorInsufficientDriver" in reason


def test_probe_compiles_every_kernel(monkeypatch):
    _fake_cupy(monkeypatch, properties={"name": b"Fake GPU"})
    compiled = []
    monkeypatch.setattr(gpu_kernels, "cupy_loader", lambda path, options: compiled.append(os.path.basename(path))
                        or types.SimpleNamespace(get_function=lambda name: name))
    backend, reason = backend_module.probe_gpu()
    assert reason == "" and backend.info["device"] == "Fake GPU"
    assert sorted(set(compiled)) == sorted(f for f in os.listdir(kernel_source_dir()) if f.endswith(".cu"))


@pytest.mark.parametrize("failure", ["compile error", "no kernel folder"])
def test_auto_falls_back_to_the_cpu_with_one_line_when_our_kernels_do_not_compile(failure, monkeypatch, caplog):
    _fake_cupy(monkeypatch, properties={"name": b"Fake GPU"})

    def broken_loader(path, options):
        raise RuntimeError("eigenvalues.cu(12): error: identifier \"x\" is undefined\nmore of the log")

    def no_folder():
        raise FileNotFoundError("the CUDA sources (kernels/*.cu) are not installed")

    if failure == "compile error":
        monkeypatch.setattr(gpu_kernels, "cupy_loader", broken_loader)
    else:
        monkeypatch.setattr(gpu_kernels, "kernel_source_dir", no_folder)
    monkeypatch.setattr(backend_module, "_announced", set())
    with caplog.at_level(logging.INFO, logger="gpuheadless.backend"):
        chosen = backend_module.select_backend("auto")
    assert chosen.name == "cpu"
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("Using the CPU: the CUDA kernels of gpuheadless cannot be compiled") and "\n" not in line


# Defect 8: one host copy per block.

def test_asarray_sends_a_block_once_and_converts_small_integers_on_the_device():
    bk = cupy_emulation.backend()
    cupy_emulation.transfers.clear()
    block = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    moved = bk.asarray(block, dtype=np.float32)
    assert cupy_emulation.transfers == [("to device", (2, 3, 4))]
    assert moved.dtype == np.float32 and moved._array.dtype == np.float32
    np.testing.assert_array_equal(moved.get(), block.astype(np.float32))
    wide = np.linspace(0, 1e-40, 6).reshape(2, 3)  # float64 -> float32 stays on the host: subnormals kept
    np.testing.assert_array_equal(bk.asarray(wide, dtype=np.float32).get(), wide.astype(np.float32))
