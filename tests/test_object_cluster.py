"""Object Classification on Dask (``--scheduler``): each lane a task on a worker, outputs identical
to one process; a lane failing on its worker is reported as in one process. Generated data only."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from cli_helpers import run_cli
from tiny_objects import prediction_maps, tiny_image, write_tiny_project

pytest.importorskip("distributed")


def _inputs(tmp_path, count: int) -> list[tuple[str, str]]:
    lanes = []
    for seed in range(count):
        raw, foreground, classes, _ = tiny_image(seed=seed)
        assert len(set(classes.tolist())) == 2  # both size classes present: the predictions can differ
        for name, data in ((f"raw{seed}", raw), (f"maps{seed}", prediction_maps(foreground))):
            with h5py.File(tmp_path / f"{name}.h5", "w") as f:
                f["data"] = data
        lanes.append((f"{tmp_path}/raw{seed}.h5/data", f"{tmp_path}/maps{seed}.h5/data"))
    return lanes


def _run(project, lanes, out, capsys, *extra):
    args = ["--headless", f"--project={project}", "--export_source=Object Identities", "--export_object_prediction_img",
            f"--table_filename={out}/{{nickname}}.csv", f"--output_filename_format={out}/{{nickname}}_{{result_type}}.h5",
            *extra, "--raw_data", *[r for r, _ in lanes], "--prediction_maps", *[m for _, m in lanes]]
    return run_cli(args, out, capsys)


def test_object_lanes_on_a_local_cluster_equal_one_process(tmp_path, capsys):
    project = tmp_path / "tiny.ilp"
    write_tiny_project(project)
    lanes = _inputs(tmp_path, 3)
    one, cluster = tmp_path / "one", tmp_path / "cluster"
    one.mkdir()
    cluster.mkdir()
    code, err = _run(project, lanes, one, capsys)
    assert code == 0, err
    code, err = _run(project, lanes, cluster, capsys, "--scheduler=local:2")
    assert code == 0, err
    assert "applies to Pixel Classification" not in err
    written = sorted(p.name for p in one.iterdir())
    assert len(written) == 9 and written == sorted(p.name for p in cluster.iterdir())  # 3 lanes x 2 images + table
    for name in written:
        if name.endswith(".csv"):
            assert (one / name).read_text() == (cluster / name).read_text()
            continue
        with h5py.File(one / name, "r") as a, h5py.File(cluster / name, "r") as b:
            values = a["exported_data"][()]
            assert values.max() > 0  # objects found, not an empty image
            np.testing.assert_array_equal(values, b["exported_data"][()], err_msg=name)
            assert sorted(a["exported_data"].attrs) == sorted(b["exported_data"].attrs)


def test_a_lane_failing_on_its_worker_is_one_line_and_the_others_are_written(tmp_path, capsys):
    project = tmp_path / "tiny.ilp"
    write_tiny_project(project)
    lanes = _inputs(tmp_path, 2)
    with h5py.File(tmp_path / "maps1.h5", "a") as f:  # the thresholded channel 1 missing
        del f["data"]
        f["data"] = np.zeros((48, 64, 1), np.float32)
    out = tmp_path / "out"
    out.mkdir()
    code, err = _run(project, lanes, out, capsys, "--scheduler=local:2")
    assert code == 1
    assert "have 1 channel(s); the project thresholds channel 1" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["raw0-data_Object Identities.h5", "raw0-data_Object Predictions.h5",
                                                      "raw0-data_table.csv"]
