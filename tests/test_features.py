"""Features channel by channel against ilastik's Features exports (spec §5.9 tolerances)."""
from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from gpuheadless.backend import cpu_backend
from gpuheadless.features.compute import compute_features
from gpuheadless.features.kernels import gaussian_kernel, gaussian_taps, kernel_radius
from gpuheadless.features.plan import FeatureSelection, make_plan
from gpuheadless.project.ilp import read_project

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import parity  # noqa: E402

FEATURE_CASES = [c for c in parity.CASES if c.source == "Features"]
# float32 rounding of the input scale: 8 ulps of the largest input value (255)
ABS_FLOOR = 8 * float(np.spacing(np.float32(255)))


@pytest.mark.parametrize("case", FEATURE_CASES, ids=lambda c: c.reference)
def test_features_channel_by_channel(case, data):
    project = read_project(data / "projects" / case.project)
    with h5py.File(data / "inputs" / case.input.split("/")[1], "r") as f:
        raw = f["data"][()].astype(np.float32)
    image = raw[None, ..., None] if raw.ndim == 2 else raw[..., None]
    plan = make_plan(project.selection, 1, image.shape[0])
    lo, hi = case.options["cutout_subregion"]
    box = [slice(a, b) for a, b in zip(lo[:-1], hi[:-1])]
    interior = tuple([slice(0, 1)] + box) if len(box) == 2 else tuple(box)
    ours = np.moveaxis(compute_features(cpu_backend(), image, plan, interior), 0, -1)
    with h5py.File(data / "reference" / case.reference, "r") as f:
        ref = f["exported_data"][()]
    ours = ours.reshape(ref.shape)
    assert ours.shape[-1] == plan.n_features == project.forest.n_features
    for block in plan.blocks:
        cols = slice(block.offset, block.offset + block.width)
        err = np.abs(ours[..., cols] - ref[..., cols])
        if block.width == 3:  # 3D eigenvalues: 1e-3 of the pixel's largest eigenvalue
            bound = 1e-3 * np.abs(ref[..., cols]).max(axis=-1, keepdims=True) + ABS_FLOOR
        else:  # 1e-4 of the channel's magnitude
            bound = 1e-4 * np.abs(ref[..., cols]).max() + ABS_FLOOR
        assert np.all(err <= bound), f"{block.feature} at scale {block.step.scale}: max error {err.max()}"


def test_feature_names_match_the_stored_classifier(data):
    project = read_project(data / "projects" / "PixelClassification2d_allfeatures.ilp")
    with h5py.File(data / "projects" / "PixelClassification2d_allfeatures.ilp", "r") as f:
        stored = [n.decode() for n in f["PixelClassification/ClassifierForests/feature_names"][()]]
    assert make_plan(project.selection, 1, 1).names() == stored


def test_kernel_rules():
    assert gaussian_kernel(1.0, 1, 2.0).antisymmetric and not gaussian_kernel(1.0, 2, 2.0).antisymmetric
    assert kernel_radius(9.9499, 3.5) == 35 and kernel_radius(1.0, 2.0) == 2 and kernel_radius(0.3, 2.0) == 1
    x = np.arange(-2, 3, dtype=np.float64)
    assert np.isclose(gaussian_taps(1.0, 0, 2.0).sum(), 1, atol=1e-6)
    assert np.isclose((gaussian_taps(1.0, 1, 2.0) * x).sum(), 1, atol=1e-6)  # unit ramp gives 1
    assert np.isclose((gaussian_taps(1.0, 2, 2.0) * x * x / 2).sum(), 1, atol=1e-6)  # x^2/2 gives 1
    assert np.isclose(gaussian_taps(1.0, 2, 2.0).sum(), 0, atol=1e-6)  # DC removed


def _selection(feature_ids, scales, in_2d=None):
    matrix = np.ones((len(feature_ids), len(scales)), dtype=bool)
    return FeatureSelection(tuple(feature_ids), tuple(scales), matrix, in_2d)


def test_compute_in_2d_on_3d_data_filters_slices_independently():
    rng = np.random.default_rng(1)
    volume = rng.random((6, 40, 40, 1), dtype=np.float32) * 100
    plan = make_plan(_selection(["GaussianSmoothing", "HessianOfGaussianEigenvalues"], [1.6], in_2d=(True,)), 1, 6)
    assert plan.n_features == 3  # two eigenvalues in 2D mode
    full = compute_features(cpu_backend(), volume, plan, (slice(0, 6), slice(0, 40), slice(0, 40)))
    single = compute_features(cpu_backend(), volume[2:3], plan, (slice(0, 1), slice(0, 40), slice(0, 40)))
    np.testing.assert_array_equal(full[:, 2:3], single)


def test_channels_are_filtered_independently_in_channel_major_order():
    rng = np.random.default_rng(2)
    image = rng.random((1, 30, 30, 2), dtype=np.float32)
    plan = make_plan(_selection(["StructureTensorEigenvalues"], [1.0]), 2, 1)
    both = compute_features(cpu_backend(), image, plan, (slice(0, 1), slice(0, 30), slice(0, 30)))
    first = compute_features(cpu_backend(), image[..., :1], make_plan(_selection(["StructureTensorEigenvalues"], [1.0]), 1, 1),
                             (slice(0, 1), slice(0, 30), slice(0, 30)))
    np.testing.assert_array_equal(both[:2], first)  # [c0_ev0, c0_ev1, c1_ev0, c1_ev1]


@pytest.mark.parametrize("box", [(slice(10, 20), slice(20, 35), slice(5, 30)), (slice(0, 12), slice(3, 50), slice(90, 200))])
def test_blocks_with_halo_equal_the_whole_image_bit_for_bit(box):
    rng = np.random.default_rng(3)
    volume = (rng.random((30, 50, 200, 1)) * 255).astype(np.float32)
    selection = _selection(["GaussianSmoothing", "StructureTensorEigenvalues", "DifferenceOfGaussians", "HessianOfGaussianEigenvalues"], [0.7, 3.5])
    plan = make_plan(selection, 1, 30)
    whole = compute_features(cpu_backend(), volume, plan, (slice(0, 30), slice(0, 50), slice(0, 200)))
    h = plan.max_halo
    region = tuple(slice(max(0, s.start - h), min(n, s.stop + h)) for s, n in zip(box, volume.shape))
    interior = tuple(slice(s.start - r.start, s.stop - r.start) for s, r in zip(box, region))
    block = compute_features(cpu_backend(), volume[region], plan, interior, region[2].start, volume.shape[2])
    np.testing.assert_array_equal(block, whole[(slice(None),) + box])


def _reference_correlate(a, kernel, axis, unfused=(0, None)):
    """Plain NumPy statement of the filter's arithmetic (fused steps emulated in float64)."""
    r, n = kernel.radius, a.shape[axis]
    padded = np.take(a, [abs(i) if i < n else 2 * n - 2 - i for i in range(-r, n + r)], axis=axis)
    acc = a * kernel.half[0]
    positions = np.arange(n).reshape([-1 if d == axis else 1 for d in range(3)])
    plain = (positions < unfused[0]) | (positions >= (n if unfused[1] is None else unfused[1]))
    for k in range(1, r + 1):
        plus = np.take(padded, np.arange(r + k, r + k + n), axis=axis)
        minus = np.take(padded, np.arange(r - k, r - k + n), axis=axis)
        pair = plus - minus if kernel.antisymmetric else plus + minus
        fused = (pair.astype(np.float64) * np.float64(kernel.half[k]) + acc).astype(np.float32)
        acc = np.where(plain, acc + pair * kernel.half[k], fused)
    return acc


@pytest.mark.parametrize("path", ["portable", "cpu default"])
@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_compiled_filter_follows_fastfilters_arithmetic(order, axis, path):
    from gpuheadless.features import _cfilters
    from gpuheadless.features.filters import correlate_fastfilters

    rng = np.random.default_rng(order * 3 + axis)
    volume = (rng.random((9, 40, 70)) * 255).astype(np.float32)[:, 2:, 1:]  # strided view
    kernel = gaussian_kernel(2.3, order, 2.0)
    unfused = (8, 40) if axis == 2 else None
    _cfilters.force_path(0 if path == "portable" else -1)
    try:
        ours = correlate_fastfilters(volume, kernel, axis, unfused)
    finally:
        _cfilters.force_path(-1)
    expected = _reference_correlate(volume, kernel, axis, unfused if unfused else (0, None))
    np.testing.assert_array_equal(ours, expected)


def test_compiled_filter_mirrors_lines_shorter_than_the_kernel():
    from gpuheadless.features.filters import correlate_fastfilters

    line = np.arange(5, dtype=np.float32).reshape(1, 1, 5)
    smoothed = correlate_fastfilters(line, gaussian_kernel(5.0, 0, 3.5), 2)  # radius 18 > 5 pixels
    assert np.all(np.isfinite(smoothed)) and np.allclose(smoothed, 2, atol=0.5)
    single = correlate_fastfilters(np.ones((1, 1, 1), np.float32), gaussian_kernel(2.0, 0, 2.0), 2)
    assert np.allclose(single, 1.0, atol=1e-6)  # one pixel mirrors onto itself


def test_eigenvalue_kernel_paths_agree_bit_for_bit():
    from gpuheadless.features import _ceigen

    rng = np.random.default_rng(7)
    n = 10_003
    entries = [rng.normal(size=n).astype(np.float32) * 10 ** rng.integers(-3, 3, n).astype(np.float32) for _ in range(6)]
    for e in entries:
        e[:40] = 0  # all-zero matrices give zeros
    entries[1][40:60] = 0  # diagonal blocks: repeated roots, atan2 on its axes
    results = []
    for path in (0, -1):
        _ceigen.force_path(path)
        try:
            out = [np.empty(n, np.float32) for _ in range(3)]
            _ceigen.eigenvalues3(*entries, *out)
        finally:
            _ceigen.force_path(-1)
        results.append(out)
    for portable, default in zip(*results):
        np.testing.assert_array_equal(portable, default)
    assert np.all(results[0][0][:40] == 0)
    assert np.all(results[0][0] >= results[0][1]) and np.all(results[0][1] >= results[0][2])
    trace = sum(entries[i].astype(np.float64) for i in (0, 3, 5))
    np.testing.assert_allclose(sum(r.astype(np.float64) for r in results[0]), trace, rtol=1e-3, atol=1e-3 * np.abs(trace).max())
