"""Object Classification larger than memory: slab-wise labelling and batched features give the
one-block results bit for bit."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy import ndimage

from gpuheadless.backend import cpu_backend
from gpuheadless.objects.labeling import label_image_ids, segmentation_ids, threshold_ids
from gpuheadless.objects.threshold import ThresholdSettings
from object_reference import object_ids, relabel_consecutive, threshold

WHOLE = (slice(None),) * 3
CPU = cpu_backend()


def _prediction(shape, seed):
    rng = np.random.default_rng(seed)
    maps = ndimage.gaussian_filter(rng.random(shape + (2,)).astype(np.float32), (1.5, 1.5, 1.5, 0)).astype(np.float32)
    return (maps - maps.min()) / (maps.max() - maps.min())


@pytest.mark.parametrize("shape", [(20, 30, 40), (1, 60, 50)])
@pytest.mark.parametrize("method,channel", [(0, 0), (0, 1), (1, 1)])
def test_slab_thresholding_equals_the_whole_image(shape, method, channel, tmp_path):
    maps = _prediction(shape, 0)
    settings = ThresholdSettings(method=method, low=0.55, high=0.62, channel=channel, core_channel=1, min_size=3,
                                 max_size=300, sigmas=(0.8, 1.3, 0.7))
    reference = object_ids(threshold(maps, settings))
    assert reference.max() >= 2
    boxes = ndimage.find_objects(reference)
    with h5py.File(tmp_path / "scratch.h5", "w") as scratch:
        for thickness in (1, 2, 3, 7, 1000):
            ids = threshold_ids(lambda region: maps[region], shape, settings, thickness,
                                scratch if thickness == 2 else None, f"t{thickness}", CPU)
            np.testing.assert_array_equal(ids.read(WHOLE), reference, err_msg=f"thickness {thickness}")
            assert ids.n_objects == reference.max()
            for i, box in enumerate(boxes, start=1):
                assert list(ids.boxes[i, 0]) == [s.start for s in box] and list(ids.boxes[i, 1]) == [s.stop for s in box]


@pytest.mark.parametrize("shape", [(20, 30, 40), (1, 60, 50)])
def test_slab_segmentation_and_label_images_equal_the_whole_image(shape):
    maps = _prediction(shape, 1)
    segmentation = (maps[..., 0] > 0.5).astype(np.uint8) + (maps[..., 1] > 0.55)  # touching 1- and 2-regions
    reference = object_ids(segmentation)
    labels = np.random.default_rng(2).integers(0, 2**40, size=20).astype(np.uint64)[reference % 20] * (reference > 0)
    relabelled = relabel_consecutive(labels)
    for thickness in (1, 3, 1000):
        np.testing.assert_array_equal(segmentation_ids(lambda r: segmentation[r], shape, thickness, None, "s", CPU).read(WHOLE),
                                      reference)
        np.testing.assert_array_equal(label_image_ids(lambda r: labels[r], shape, thickness).read(WHOLE), relabelled)


CASES = [
    ("ObjectClassification5t3d2c_wPred.ilp", "--prediction_maps", "5t3d2c_Probabilities.h5/exported_data", "5t3d2c.h5/data"),
    ("ObjectClassification2d_wPred.ilp", "--prediction_maps", "2d_Probabilities.h5/exported_data", "2d.h5/data"),
    ("ObjectClassification2d3c_wLabels.ilp", "--label_image", "2d3c_Object Identities.h5/exported_data", "2d3c.h5/data"),
]


@pytest.mark.parametrize("name,flag,second,raw", CASES, ids=[c[0] for c in CASES])
def test_tiny_budget_gives_the_one_block_results(name, flag, second, raw, data, tmp_path, capsys, monkeypatch):
    """Images and the table (every selected feature, printed exactly) with a 64 KiB budget, far
    below the volume, equal those of one block."""
    import gpuheadless.objects.workflow as workflow
    from cli_helpers import run_cli

    project = data / "projects" / name

    def run(folder):
        folder.mkdir()
        code, err = run_cli(["--headless", f"--project={project}", f"--raw_data={data}/inputs/{raw}",
                             f"{flag}={data}/inputs/{second}", "--export_source=Object Identities",
                             "--export_object_probability_img", "--output_format=hdf5",
                             f"--output_filename_format={folder}/{{result_type}}.h5",
                             f"--table_filename={folder}/objects.csv", "--debug"], tmp_path, capsys)
        assert code == 0, err
        return folder, err

    whole, _ = run(tmp_path / "whole")
    monkeypatch.setattr(workflow, "block_budget_bytes", lambda config, backend=None: 64 * 2**10)
    small, log = run(tmp_path / "small")
    assert "objects labelled in slabs of" in log and "batches" in log and "temporary file" in log
    images = {}
    for image in ("Object Identities.h5", "Object Probabilities.h5"):
        with h5py.File(whole / image, "r") as a, h5py.File(small / image, "r") as b:
            images[image] = a["exported_data"][()]
            np.testing.assert_array_equal(images[image], b["exported_data"][()])
    # neither run may pass by being empty: several objects, and on each object its class
    # probabilities summing to 1 (zero off the objects)
    ids, probabilities = images["Object Identities.h5"], images["Object Probabilities.h5"]
    assert ids.max() >= 2 and probabilities.shape[-1] >= 2
    inside = ids[..., 0] > 0 if ids.shape[-1] == 1 else ids.max(axis=-1) > 0
    np.testing.assert_allclose(probabilities[inside].sum(axis=-1), 1.0, atol=1e-5)
    assert probabilities[inside].max() > 0.5 and not probabilities[~inside].any()
    assert (whole / "objects_table.csv").read_text() == (small / "objects_table.csv").read_text()
