"""The object stage on several threads and in compiled code gives the reference values bit for bit:
neighbourhoods (against scipy's distance transform), neighbourhood tables, threshold smoothing; and
its default memory cap."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from gpuheadless.objects import features as F


def _scene(shape_zyx, seed):
    rng = np.random.default_rng(seed)
    labels = ndimage.label(ndimage.gaussian_filter(rng.random(shape_zyx), 2) > 0.52)[0].astype(np.int64)
    image = rng.normal(size=shape_zyx + (2,)).astype(np.float32)
    image[tuple(rng.integers(0, n, 5) for n in shape_zyx)] = np.nan  # NaN passes through as a value
    return labels, image


@pytest.mark.parametrize("shape, margins, dims", [
    ((1, 60, 70), (3, 3), 2), ((1, 60, 70), (5, 2), 2), ((12, 40, 50), (4, 4, 1), 3), ((12, 40, 50), (3, 3, 3), 3),
    ((12, 40, 50), (6, 2, 3), 3), ((9, 30, 31), (30, 30, 1), 3)])
def test_compiled_neighbourhoods_equal_the_reference(shape, margins, dims):
    labels_zyx, image_zyxc = _scene(shape, sum(margins))
    labels, image = labels_zyx.transpose(2, 1, 0), image_zyxc.transpose(2, 1, 0, 3)  # the batches' (X, Y, Z) views
    boxes = ndimage.find_objects(labels)
    assert len(boxes) >= 3
    total = 0
    for i, box in enumerate(boxes, start=1):
        expected = F._context_values(image, labels, i, box, margins, True, dims)
        got = F._context_values_compiled(image_zyxc, labels_zyx, i, box, margins, True, dims)
        np.testing.assert_array_equal(got, expected)
        total += len(got)
    assert total > 0


def test_threads_give_the_same_tables():
    labels_zyx, image_zyxc = _scene((10, 40, 40), 7)
    labels, image = labels_zyx.transpose(2, 1, 0), image_zyxc.transpose(2, 1, 0, 3)
    names = ["Mean", "Variance", "Minimum", "Maximum", "Covariance"]
    one = F.neighbourhood_features(image, labels, names, (3, 3, 2), dims=3)
    two = F.neighbourhood_features(image, labels, names, (3, 3, 2), dims=3, threads=2)
    assert one.keys() == two.keys() and len(one) == len(names)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name])
    assert np.isfinite(one["Mean in neighborhood"][1:]).any()


@pytest.mark.parametrize("shape", [(9, 33, 35, 2), (1, 40, 41, 1)])
def test_smoothing_on_threads_equals_one_thread(shape):
    from gpuheadless.objects.threshold import smooth

    values = np.random.default_rng(1).random(shape, dtype=np.float32)
    one = smooth(values, (1.0, 1.5, 2.0))
    for threads in (2, 3, 64):
        np.testing.assert_array_equal(smooth(values, (1.0, 1.5, 2.0), threads=threads), one)
    assert not np.array_equal(one, values)


def test_object_budget_is_capped_by_default_not_below_a_smaller_budget():
    from gpuheadless.backend import cpu_backend
    from gpuheadless.config import RunConfig
    from gpuheadless.objects.workflow import OBJECT_WORKING_SET, object_budget_bytes

    cpu = cpu_backend()
    assert object_budget_bytes(RunConfig(project="p.ilp", inputs=[], ram_budget_mb=12_000), cpu) == OBJECT_WORKING_SET
    assert object_budget_bytes(RunConfig(project="p.ilp", inputs=[], ram_budget_mb=600), cpu) < OBJECT_WORKING_SET


def test_object_budget_on_a_gpu_is_capped_by_its_free_memory_and_gpu_memory_mb():
    """Issue 14's defect 3: the object stage's slabs are sized for the device they run on."""
    from gpuheadless.backend import cpu_backend
    from gpuheadless.config import RunConfig
    from gpuheadless.objects.workflow import object_budget_bytes

    class SmallGpu:
        def device_free_bytes(self) -> int:
            return 200 * 2**20

    config = RunConfig(project="p.ilp", inputs=[], ram_budget_mb=12_000)
    assert object_budget_bytes(config, SmallGpu()) == 0.8 * 200 * 2**20
    capped = RunConfig(project="p.ilp", inputs=[], ram_budget_mb=12_000, gpu_memory_mb=64)
    assert object_budget_bytes(capped, SmallGpu()) == 64 * 2**20
    assert object_budget_bytes(capped, cpu_backend()) > 64 * 2**20  # the GPU cap is not the host's


def test_grouped_statistics_equal_bincount_and_ufunc_at():
    """Sums, minima and maxima of pixels grouped by object (the compiled pass) equal bincount's sums
    and fmin/fmax.at's extremes; NaN is passed over, an object without pixels keeps inf/-inf."""
    rng = np.random.default_rng(5)
    index = np.sort(rng.integers(1, 40, 5000))
    index = index[index != 17]  # an object without pixels
    values = rng.normal(size=(len(index), 2))
    values[::97, 1] = np.nan
    values[index == 3] = np.nan  # an object of NaN only
    stats = F._intensity_stats(values, index, 40, {"Sum", "Minimum", "Maximum"}, None, None)
    for c in range(2):
        np.testing.assert_array_equal(stats["Sum"][:, c], np.bincount(index, values[:, c], 41))
    expected = F._extremes(values, index, 40)
    for name in ("Minimum", "Maximum"):
        np.testing.assert_array_equal(stats[name], expected[name])
    assert stats["Minimum"][17, 0] == np.inf and stats["Minimum"][3, 0] == np.inf


def test_first_pixel_of_each_label():
    from gpuheadless.objects.labeling import _first_indices

    labels, found = ndimage.label(np.random.default_rng(2).random((6, 30, 30)) > 0.7)
    flat = labels.reshape(-1).astype(np.int64)
    ids, first = np.unique(flat, return_index=True)
    np.testing.assert_array_equal(_first_indices(flat, found), first[ids != 0])


def test_pixel_probabilities_stay_in_memory_or_go_to_a_scratch_file_removed_afterwards(tmp_path, monkeypatch):
    """The Pixel + Object pixel stage: probabilities within a quarter of the budget in memory,
    beyond it in a temporary HDF5 file, gone once the lane is done."""
    import h5py

    from gpuheadless.objects.pixel_stage import _destination

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with _destination((2, 1, 30, 40, 3), budget=4 * 2 * 30 * 40 * 3 * 4) as out:
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
    with _destination((2, 1, 30, 40, 3), budget=4 * 2 * 30 * 40 * 3 * 4 - 1) as out:
        assert isinstance(out, h5py.Dataset) and out.shape == (2, 1, 30, 40, 3)
        out[1, :, 5:9] = 0.25
        assert float(out[1, 0, 6, 7, 2]) == 0.25
        assert any(tmp_path.iterdir())
    assert not any(tmp_path.iterdir())
