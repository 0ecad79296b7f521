"""``gpuheadless train``: build a Pixel Classification project from images and label images.

ilastik trains only in its GUI. Here the labels come from label images (0 = unlabelled,
1..N = classes, any integer type; a few scribbles or dense), and the result is an ``.ilp`` in
ilastik's layout whose forest ilastik applies as it is, without retraining.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np

from .backend import cpu_backend
from .config import threads_from_env
from .errors import OneLineParser, UsageError, UserError, describe_write_error
from .features.plan import FEATURE_IDS, MAX_SCALE, FeatureSelection, make_plan
from .forest.train import train_forest, vigra_mtry
from .io.stacks import expand_members, open_input
from .io import staging
from .pipeline.lane import Lane
from .pipeline.training import training_samples
from .project.ilp import read_project
from .project.writer import DEFAULT_COLORS, LaneData, write_project

log = logging.getLogger(__name__)

DEFAULT_SCALES = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
# "default": the selection of ilastik's own 2D test project (28 channels per input channel in 2D).
_DEFAULT_SELECTION = {
    "GaussianSmoothing": DEFAULT_SCALES,
    "LaplacianOfGaussian": (1.0, 3.5, 10.0),
    "GaussianGradientMagnitude": (1.0, 3.5, 10.0),
    "DifferenceOfGaussians": (1.0, 3.5, 10.0),
    "StructureTensorEigenvalues": (0.7, 1.6, 5.0),
    "HessianOfGaussianEigenvalues": (0.7, 1.6, 5.0),
}
_MIN_SCALE = {"GaussianSmoothing": 0.3}  # "all": every other feature from 0.7 on (ilastik's GUI rule)


def parse_features(spec: str) -> FeatureSelection:
    """``default``, ``all``, or a comma-separated list of ``FeatureId@scale``.

    ``all`` selects every feature at every scale ilastik's GUI allows (37 entries of the 6x7
    matrix). A list may name any positive scale for any feature, as ilastik's Python API
    allows (e.g. Structure Tensor Eigenvalues at 0.3); the scale columns are the seven
    standard ones plus those. Every scale is computed in 3D (``ComputeIn2d`` False) until
    :func:`with_compute_in_2d` decides.
    """
    spec = spec.strip()
    if spec == "default":
        wanted = {(f, s) for f, scales in _DEFAULT_SELECTION.items() for s in scales}
    elif spec == "all":
        wanted = {(f, s) for f in FEATURE_IDS for s in DEFAULT_SCALES if s >= _MIN_SCALE.get(f, 0.7)}
    else:
        wanted = set()
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, scale_text = item.partition("@")
            if name not in FEATURE_IDS or not scale_text:
                raise UsageError(f"--features: {item!r} is not FeatureId@scale; feature ids: {', '.join(FEATURE_IDS)}")
            try:
                scale = float(scale_text)
            except ValueError:
                raise UsageError(f"--features: {item!r}: {scale_text!r} is not a number") from None
            if not (0 < scale < MAX_SCALE):
                raise UsageError(f"--features: {item!r}: the scale must be a positive number below {MAX_SCALE:g}")
            wanted.add((name, scale))
        if not wanted:
            raise UsageError("--features: no feature selected")
    scales = tuple(sorted({s for _, s in wanted} | set(DEFAULT_SCALES)))
    matrix = np.array([[(f, s) in wanted for s in scales] for f in FEATURE_IDS], dtype=bool)
    return FeatureSelection(FEATURE_IDS, scales, matrix, (False,) * len(scales))


def with_compute_in_2d(selection: FeatureSelection, is_2d: bool, in_2d: str | Sequence[float] | None) -> FeatureSelection:
    """The selection with ilastik's ``ComputeIn2d`` flags (one per scale column).

    Parameters
    ----------
    selection : FeatureSelection
    is_2d : bool
        True when a training image has one z slice: ilastik then requires every scale in 2D
        (otherwise it refuses the project: "scales are too large for your dataset").
    in_2d : "all", sequence of float, or None
        For 3D data: the scales to compute slice by slice; None or empty: none.

    Raises
    ------
    UsageError
        A scale in ``in_2d`` that is not one of the selection's scales.
    """
    scales = selection.scales
    if is_2d or in_2d == "all":
        flags = (True,) * len(scales)
    else:
        wanted = [float(s) for s in (in_2d or ())]
        unknown = [s for s in wanted if s not in scales]
        if unknown:
            raise UsageError(f"--in_2d: scale(s) {unknown} are not among the feature scales {list(scales)}")
        flags = tuple(s in wanted for s in scales)
    return FeatureSelection(selection.feature_ids, scales, selection.matrix, flags)


def _stored_path(raw_path: str, cwd: str, project_dir: str) -> str:
    """The input as the project stores it: members relative to the project, joined by ``os.pathsep``."""
    parts = []
    for external, internal in expand_members(raw_path, cwd):
        try:
            external = os.path.relpath(external, project_dir)
        except ValueError:  # another drive (Windows): keep it absolute
            pass
        parts.append(external + ("/" + internal if internal else ""))
    return os.pathsep.join(parts)


# ilastik's GUI offers at most 99 label classes, and its Pixel Classification label array
# treats the value 100 as the eraser: a stored 100 becomes 0 when ilastik loads the project.
MAX_LABEL = 99
# An image with this many distinct values, each on few labelled pixels, is an intensity image.
_INTENSITY_MIN_VALUES = 20
_INTENSITY_VALUES_PER_PIXEL = 0.01
# Values are checked and counted in chunks, so that a large label image is never copied whole
# (np.bincount converts to intp: 8 bytes per uint8 pixel). Larger ranges are counted on a sample.
_CHUNK = 1 << 22
_BINCOUNT_RANGE = 1 << 16
_SAMPLE_SIZE = 1 << 20


def _chunks(flat: np.ndarray):
    for start in range(0, flat.size, _CHUNK):
        yield flat[start:start + _CHUNK]


def _whole_numbers(flat: np.ndarray) -> bool:
    """Whether every value of a float array is a finite whole number."""
    return all(bool(np.isfinite(c).all() and (c == np.floor(c)).all()) for c in _chunks(flat))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _count_distinct(flat: np.ndarray, low: float, high: float, integral: bool) -> tuple[int, bool]:
    """(number of distinct values, exact?): a chunked bincount for whole numbers of a small range,
    else ``np.unique`` on an evenly strided sample (then a lower bound)."""
    if integral and high - low < _BINCOUNT_RANGE:
        counts = np.zeros(int(high - low) + 1, np.int64)
        for chunk in _chunks(flat):
            counts += np.bincount((chunk - low).astype(np.intp), minlength=counts.size)
        return int(np.count_nonzero(counts)), True
    step = max(1, flat.size // _SAMPLE_SIZE)
    return int(np.unique(flat[::step]).size), step == 1


def check_label_values(path: str, labels: np.ndarray) -> np.ndarray:
    """``labels`` as uint8 classes 0..99, or a :class:`UserError` saying why they cannot be labels.

    Refused before anything is computed: non-integer (or NaN/Inf) values of a float image,
    negative values or values above :data:`MAX_LABEL` (ilastik's limit), and an intensity image
    (more than 20 distinct values, and more than one per hundred labelled pixels).

    Parameters
    ----------
    path : str
        The label image as the user named it (for the message).
    labels : ndarray
        Its values, any integer or float type.

    Raises
    ------
    UserError
        One line naming the file, the number of distinct values found and the largest one.
    """
    if labels.size == 0:
        return labels.astype(np.uint8)
    flat = labels.reshape(-1)
    integral = labels.dtype.kind in "iub" or _whole_numbers(flat)
    low, high = float(np.fmin.reduce(flat)), float(np.fmax.reduce(flat))  # fmin/fmax: NaN ignored, no copy
    n_values, exact = _count_distinct(flat, low, high, integral)
    found = f"{'' if exact else 'at least '}{n_values} distinct values (the largest {_number(high)})"
    if not integral:
        raise UserError(f"label image '{path}' is not a label image: {found}, not all whole numbers "
                        f"(labels are 0 = unlabelled, 1..{MAX_LABEL} = classes)")
    if low < 0 or high > MAX_LABEL:
        raise UserError(f"label image '{path}': {found}, the smallest {_number(low)}; label values must be "
                        f"0..{MAX_LABEL} (ilastik holds at most {MAX_LABEL} classes)")
    labelled = sum(int(np.count_nonzero(c)) for c in _chunks(flat))
    if n_values > _INTENSITY_MIN_VALUES and n_values > _INTENSITY_VALUES_PER_PIXEL * labelled:
        raise UserError(f"label image '{path}' looks like an intensity image: {found} on {labelled} labelled "
                        "pixels (labels are 0 = unlabelled, 1..N = classes)")
    return labels.astype(np.uint8)


def _read_labels(path: str, raw: Lane, cwd: str) -> np.ndarray:
    """A label image in the lane's internal order plus ``c`` (uint8), checked against its image.

    The label array is read in the image's own axis order without ``c`` (a trailing channel
    axis of extent 1 is allowed).
    """
    source = open_input(path, cwd)
    try:
        if source.dtype.kind not in "iubf":
            raise UserError(f"label image '{path}': labels must be integers (0 = unlabelled), got {source.dtype}")
        labels = source.read(tuple(slice(None) for _ in source.shape))
    finally:
        source.close()
    raw_axes = [a for a in raw.axes if a != "c"]
    spatial = tuple(n for a, n in zip(raw.axes, raw.source.shape) if a != "c")
    if labels.ndim == len(raw_axes) + 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != spatial:
        raise UserError(
            f"label image '{path}' has shape {labels.shape}, its image '{raw.source.display}' {spatial} "
            "(without channels); they must match"
        )
    labels = check_label_values(path, labels)
    internal = [a for a in raw.internal_axes if a != "c"]
    dropped = tuple(i for i, a in enumerate(raw_axes) if a not in internal)  # axes of extent 1
    labels = np.squeeze(labels, axis=dropped) if dropped else labels
    kept = [a for a in raw_axes if a in internal]
    return np.transpose(labels, [kept.index(a) for a in internal])[..., None]


def train(
    raw: Sequence[str],
    labels: Sequence[str],
    output: str,
    features: str = "default",
    label_names: Sequence[str] | None = None,
    label_colors: Sequence[tuple[int, int, int]] | None = None,
    trees: int = 100,
    seed: int | None = None,
    cwd: str | None = None,
    threads: int | None = None,
    in_2d: str | Sequence[float] | None = None,
) -> str:
    """Train a Pixel Classification project from images and label images.

    Parameters
    ----------
    raw : sequence of str
        Training images, as the batch command takes inputs (files, ``file.h5/data``, globs).
    labels : sequence of str
        One label image per training image, same shape without channels: 0 = unlabelled,
        1..N = classes.
    output : str
        The ``.ilp`` to write (replaced when complete).
    features : str
        ``default``, ``all``, or ``FeatureId@scale,...`` (ilastik's feature ids and scales).
    label_names : sequence of str, optional
        One per class; default ``Label 1`` ... ``Label N``.
    label_colors : sequence of (r, g, b), optional
    trees : int
        Trees of the forest (ilastik: 100).
    seed : int, optional
        Makes training reproducible (ilastik's is not).
    cwd : str, optional
        Directory relative input paths are taken from.
    threads : int, optional
        Worker threads (default: ``LAZYFLOW_THREADS``).
    in_2d : "all" or sequence of float, optional
        On 3D training images, the feature scales computed slice by slice (ilastik's
        ``ComputeIn2d``). 2D images are always filtered in 2D, and the project says so, as
        ilastik requires.

    Returns
    -------
    str
        The absolute path of the written project.
    """
    cwd = cwd or os.getcwd()
    if not raw or len(raw) != len(labels):
        raise UsageError(f"train: give one --labels image per --raw image (got {len(raw)} and {len(labels)})")
    if trees < 1:
        raise UsageError(f"--trees must be at least 1, got {trees}")
    selection = parse_features(features)
    output = os.path.abspath(os.path.join(cwd, os.path.expanduser(output)))
    project_dir = os.path.dirname(output)
    lanes, channels, is_2d = [], None, False
    for raw_path, label_path in zip(raw, labels):
        source = open_input(raw_path, cwd)
        try:
            lane = Lane(source, source.axes)
            if channels is not None and lane.n_channels != channels:
                raise UserError(
                    f"training image '{raw_path}' has {lane.n_channels} channel(s), the first one {channels}; "
                    "all training images need the same channels"
                )
            channels = lane.n_channels
            lane_labels = _read_labels(label_path, lane, cwd)
            lanes.append(LaneData(_stored_path(raw_path, cwd, project_dir), source.axes, tuple(source.shape),
                                  source.nickname, lane_labels, lane.internal_axes))
            z_extent = lane.shape[1]
            is_2d = is_2d or z_extent == 1
        finally:
            source.close()
    selection = with_compute_in_2d(selection, is_2d, in_2d)
    values = np.unique(np.concatenate([np.unique(lane.labels) for lane in lanes]))
    classes = values[values > 0]
    if classes.size == 0:
        raise UserError("train: the label images have no labelled pixel (0 = unlabelled, 1..N = classes)")
    if classes.size < 2:
        raise UserError(f"train: all labels are {int(classes[0])}; a classifier needs at least two classes")
    n_classes = int(classes.max())
    names = list(label_names) if label_names else [f"Label {k}" for k in range(1, n_classes + 1)]
    if len(names) < n_classes:
        raise UsageError(f"--label_names: {len(names)} names for labels up to {n_classes}")
    colors = list(label_colors) if label_colors else [DEFAULT_COLORS[k % len(DEFAULT_COLORS)] for k in range(len(names))]
    if len(colors) < len(names):
        raise UsageError(f"--label_colors: {len(colors)} colours for {len(names)} classes")
    os.makedirs(project_dir, exist_ok=True)
    tmp = staging.temporary_file(output)
    try:
        write_project(tmp, lanes, selection, names, colors)
        project = read_project(tmp)
        threads = threads_from_env() if threads is None else threads
        x, y = training_samples(cpu_backend(), project, max(threads, 1))
        log.info("Training %d trees on %d labelled pixels (label counts %s)", trees, len(y),
                 tuple(int((y == c).sum()) for c in classes))
        forest = train_forest(x, y, n_trees=trees, threads=max(threads, 1), seed=seed)
        feature_names = make_plan(selection, channels or 1, z_extent).names()
        write_project(tmp, lanes, selection, names, colors, forest=forest, feature_names=feature_names,
                      row_count=len(y), mtry=vigra_mtry(x.shape[1]), n_trees=trees)
        staging.commit(tmp, output)
    except BaseException as exc:
        staging.remove(tmp)
        if isinstance(exc, MemoryError):
            raise UserError(f"train: out of memory while building '{output}' ({len(names)} classes); "
                            "label fewer pixels or images, or allow more memory") from None
        if isinstance(exc, OSError):
            raise UserError(f"train: output '{output}': {describe_write_error(exc, output)}") from None
        raise
    log.info("Wrote %s (%d trees, %d features, %d labelled pixels)", output, trees, x.shape[1], len(y))
    return output


def _color(text: str) -> tuple[int, int, int]:
    parts = text.strip().lstrip("#")
    if len(parts) == 6 and all(c in "0123456789abcdefABCDEF" for c in parts):
        return tuple(int(parts[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    values = parts.split(",")
    if len(values) == 3 and all(v.strip().isdigit() and int(v) <= 255 for v in values):
        return tuple(int(v) for v in values)  # type: ignore[return-value]
    raise UsageError(f"--label_colors: {text!r} is not #rrggbb or r,g,b")


def _in_2d_scales(values: Sequence[str] | None) -> str | list[float] | None:
    if not values:
        return None
    if [v.lower() for v in values] == ["all"]:
        return "all"
    try:
        return [float(v) for v in values]
    except ValueError:
        raise UsageError(f"--in_2d: give scales (numbers) or 'all', got {' '.join(values)}") from None


def main(argv: Sequence[str]) -> int:
    """``gpuheadless train ...``; returns the exit status."""

    parser = OneLineParser(prog="gpuheadless train", description=__doc__.splitlines()[0])
    parser.add_argument("--raw", nargs="+", required=True, help="training images (files, file.h5/data, globs)")
    parser.add_argument("--labels", nargs="+", required=True, help="one label image per training image")
    parser.add_argument("--output", required=True, help="the .ilp to write")
    parser.add_argument("--features", default="default", help="default, all, or FeatureId@scale,... (ilastik's ids)")
    parser.add_argument("--label_names", "--label-names", nargs="+", help="one name per class")
    parser.add_argument("--label_colors", "--label-colors", nargs="+", help="one colour per class: #rrggbb or r,g,b")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--seed", type=int, help="makes training reproducible")
    parser.add_argument("--in_2d", "--in-2d", nargs="+", metavar="SCALE",
                        help="3D images: feature scales computed slice by slice (or 'all'); 2D images always are")
    args = parser.parse_args(list(argv))
    colors = [_color(c) for c in args.label_colors] if args.label_colors else None
    path = train(args.raw, args.labels, args.output, args.features, args.label_names, colors, args.trees, args.seed,
                 in_2d=_in_2d_scales(args.in_2d))
    print(f"gpuheadless train: wrote {path}")
    return 0


__all__ = ["parse_features", "with_compute_in_2d", "train", "main"]
