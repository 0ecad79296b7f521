"""Which classifier a run uses: the stored forest, or one trained on the project's own labels."""
from __future__ import annotations

import os

import logging

import numpy as np

from ..backend import Backend
from ..errors import UserError
from ..features.compute import compute_features
from ..features.plan import check_image_size, make_plan
from ..forest.model import Forest
from ..forest.train import train_forest
from ..io.stacks import open_input
from ..project.ilp import Project, TrainingLane
from .lane import Lane

log = logging.getLogger(__name__)


def needs_training(project: Project, retrain: bool, tree_count: int | None, label_proportion: float | None) -> bool:
    """ilastik retrains for ``--retrain``, ``--tree-count``, ``--label-proportion`` or a missing forest."""
    return retrain or tree_count is not None or label_proportion is not None or project.forest is None


def resolve_classifier(
    bk: Backend,
    project: Project,
    retrain: bool = False,
    tree_count: int | None = None,
    label_proportion: float | None = None,
    threads: int = 1,
    seed: int | None = None,
) -> Forest:
    """The forest for this run.

    Raises
    ------
    UserError
        If training is needed but the project holds no labels.
    """
    if not needs_training(project, retrain, tree_count, label_proportion):
        return project.forest
    if not project.has_labels:
        why = project.forest_note or "retraining was requested"
        raise UserError(f"project file '{project.path}': {why} and it holds no labels to train one from")
    if project.forest is None:
        log.warning("%s: %s; a new classifier is trained for this run.", project.path.name, project.forest_note)
    x, y = training_samples(bk, project, threads)
    if label_proportion is not None:
        if not 0 < label_proportion <= 1:
            raise UserError(f"--label-proportion must be in (0, 1], got {label_proportion}")
        rng = np.random.default_rng(seed)
        keep = rng.choice(len(y), size=max(1, int(len(y) * label_proportion)), replace=False)
        x, y = x[keep], y[keep]
    classes = np.unique(y)
    if len(classes) < 2:
        raise UserError(f"project file '{project.path}': labels of only one class ({classes.tolist()}); need at least two")
    trees = tree_count or project.tree_count
    log.info("Training a new forest: %d trees on %d labelled pixels (label counts %s)", trees, len(y),
             tuple(int((y == c).sum()) for c in classes))
    return train_forest(x, y, n_trees=trees, threads=threads, seed=seed)


def training_samples(bk: Backend, project: Project, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every labelled pixel of every training lane.

    Features are computed only on the boxes around stored label blocks (plus the halo).
    """
    xs, ys = [], []
    lanes = {lane.index: lane for lane in project.lanes}
    for index, blocks in sorted(project.labels.items()):
        blocks = [b for b in blocks if np.any(b.values)]
        if not blocks:
            continue
        if index not in lanes:
            raise UserError(f"project file '{project.path}': labels for lane {index}, which has no input data")
        lane = _open_training_lane(project, lanes[index])
        try:
            plan = make_plan(project.selection, lane.n_channels, lane.shape[1])
            check_image_size(plan, lane.shape[1:4], lane.source.display)
            for block in blocks:
                x, y = _block_samples(bk, lane, plan, block.slices, block.values)
                xs.append(x)
                ys.append(y)
        finally:
            lane.source.close()
    if not xs:
        raise UserError(f"project file '{project.path}': no labelled pixels")
    return np.concatenate(xs), np.concatenate(ys)


def _open_training_lane(project: Project, lane: TrainingLane) -> Lane:
    paths = lane.resolved_paths
    try:  # a stack lane lists its members; they are stacked along z, ilastik's default
        source = open_input(os.pathsep.join(paths), cwd=str(project.path.parent))
    except UserError as exc:
        raise UserError(
            f"project file '{project.path}': cannot read the training data of lane {lane.index} "
            f"({lane.file_path}, relative to the project) to retrain: {exc}"
        ) from None
    axes = lane.axes if lane.axes and len(lane.axes) == len(source.shape) else source.axes
    return Lane(source, axes)


def _block_samples(bk: Backend, lane: Lane, plan, slices: tuple[slice, ...], values: np.ndarray):
    internal = lane.internal_axes
    if len(slices) != len(internal):
        raise UserError(f"{lane.source.display}: a label block has {len(slices)} axes, expected {internal}")
    by_axis = dict(zip(internal, slices))
    values = values.reshape([s.stop - s.start for s in slices])
    labels = np.moveaxis(values, internal.index("c"), -1)[..., 0]
    # Reorder label values to (t, z, y, x) with singleton axes restored.
    present = [a for a in internal if a != "c"]
    for i, a in enumerate("tzyx"):
        if a not in present:
            labels = np.expand_dims(labels, i)
    t_slice = by_axis.get("t", slice(0, 1))
    zyx = tuple(by_axis.get(a, slice(0, 1)) for a in "zyx")
    halo = plan.max_halo
    xs, ys = [], []
    for t_index, t in enumerate(range(t_slice.start, t_slice.stop)):
        block_labels = labels[t_index]
        if not np.any(block_labels):
            continue
        z_halo = halo if plan.any_3d and lane.shape[1] > 1 else 0
        hal = (z_halo, halo, halo)
        region = tuple(slice(max(0, s.start - h), min(n, s.stop + h)) for s, h, n in zip(zyx, hal, lane.shape[1:4]))
        image = bk.asarray(lane.read(t, region))
        interior = tuple(slice(s.start - r.start, s.stop - r.start) for s, r in zip(zyx, region))
        features = bk.to_host(compute_features(bk, image, plan, interior, region[2].start, lane.shape[3]))
        mask = block_labels != 0
        xs.append(features[:, mask].T)
        ys.append(block_labels[mask].astype(np.uint32))
    if not xs:
        return np.zeros((0, plan.n_features), np.float32), np.zeros(0, np.uint32)
    return np.concatenate(xs), np.concatenate(ys)


__all__ = ["needs_training", "resolve_classifier", "training_samples"]
