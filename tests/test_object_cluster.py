"""Object Classification on Dask (``--scheduler``): each lane a task on a worker, a time series one
task per time point; outputs identical to one process; a lane failing on a worker is reported as
in one process. Generated data only."""
from __future__ import annotations

import json

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


def _time_series(tmp_path, count: int = 3) -> tuple[str, str]:
    """A lane of ``count`` time points (t, y, x), each a different tiny image."""
    images = [tiny_image(seed=10 + t) for t in range(count)]
    raw = np.stack([image[0] for image in images])
    maps = np.stack([prediction_maps(image[1]) for image in images])
    for name, data, axes in (("series", raw, "tyx"), ("series_maps", maps, "tyxc")):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            d = f.create_dataset("data", data=data)
            d.attrs["axistags"] = json.dumps({"axes": [{"key": a, "typeFlags": {"t": 8, "c": 1}.get(a, 2),
                                                        "resolution": 0, "description": ""} for a in axes]})
    return f"{tmp_path}/series.h5/data", f"{tmp_path}/series_maps.h5/data"


def test_time_points_as_tasks_equal_one_process(tmp_path, capsys):
    """A time series is split into one task per time point, the client writing the lane; beside it
    a single-image lane runs as one task: every image and table equals a one-process run."""
    project = tmp_path / "tiny.ilp"
    write_tiny_project(project)
    lanes = [_time_series(tmp_path)] + _inputs(tmp_path, 1)
    one, cluster = tmp_path / "one", tmp_path / "cluster"
    one.mkdir()
    cluster.mkdir()
    assert _run(project, lanes, one, capsys)[0] == 0
    code, err = _run(project, lanes, cluster, capsys, "--scheduler=local:2")
    assert code == 0, err
    assert "Dask: 1 lane(s) as one task each, 1 as 3 time-point tasks" in err
    written = sorted(p.name for p in one.iterdir())
    assert len(written) == 6 and written == sorted(p.name for p in cluster.iterdir())
    for name in written:
        if name.endswith(".csv"):
            text = (one / name).read_text()
            assert text == (cluster / name).read_text()
            continue
        with h5py.File(one / name, "r") as a, h5py.File(cluster / name, "r") as b:
            values = a["exported_data"][()]
            if name.startswith("series"):
                assert values.shape[0] == 3 and all(values[t].max() > 0 for t in range(3))
            np.testing.assert_array_equal(values, b["exported_data"][()], err_msg=name)
    assert len((one / "series-data_table.csv").read_text().splitlines()) > 3 * 4  # objects of every time point


def test_a_time_series_failing_is_one_line(tmp_path, capsys):
    project = tmp_path / "tiny.ilp"
    write_tiny_project(project)
    raw, _ = _time_series(tmp_path)
    with h5py.File(tmp_path / "short_maps.h5", "w") as f:  # two time points for three
        f["data"] = np.zeros((2, 48, 64, 2), np.float32)
    out = tmp_path / "out"
    out.mkdir()
    code, err = _run(project, [(raw, f"{tmp_path}/short_maps.h5/data")], out, capsys, "--scheduler=local:2")
    assert code == 1 and "has shape" in err and "Traceback" not in err
    assert not list(out.iterdir())
