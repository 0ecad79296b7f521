"""Which classifier a run uses: the stored forest, or one trained on the project's own labels."""
from __future__ import annotations

import contextlib
import logging
import os

import numpy as np

from ..backend import Backend
from ..errors import UserError
from ..features.plan import check_image_size
from ..forest.model import Forest
from ..forest.train import train_forest
from ..io.stacks import open_input
from ..project.ilp import Project, TrainingLane
from .export_plan import stage_plans
from .lane import Lane
from .stages import Stage, StageRunner

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
    stage: int = 0,
    upstream: tuple[Forest, ...] = (),
) -> Forest:
    """The forest for this run: the stored one, or one trained on the project's labels.

    ``stage`` (0-based) picks an Autocontext stage; ``upstream`` holds the forests this run uses
    for the stages before it.

    Raises
    ------
    UserError
        If training is needed but the project holds no labels.
    """
    target = project.stages[stage]
    if not needs_training(target, retrain, tree_count, label_proportion):
        return target.forest
    where = f" (stage {stage + 1})" if len(project.stages) > 1 else ""
    if not target.has_labels:
        why = target.forest_note or "retraining was requested"
        raise UserError(f"project file '{project.path}'{where}: {why} and it holds no labels to train one from")
    if target.forest is None:
        log.warning("%s%s: %s; a new classifier is trained for this run.", project.path.name, where, target.forest_note)
    x, y = training_samples(bk, project, threads, stage, upstream)
    if label_proportion is not None:
        if not 0 < label_proportion <= 1:
            raise UserError(f"--label-proportion must be in (0, 1], got {label_proportion}")
        rng = np.random.default_rng(seed)
        keep = rng.choice(len(y), size=max(1, int(len(y) * label_proportion)), replace=False)
        x, y = x[keep], y[keep]
    classes = np.unique(y)
    if len(classes) < 2:
        raise UserError(f"project file '{project.path}'{where}: labels of only one class ({classes.tolist()}); "
                        "need at least two")
    trees = tree_count or target.tree_count
    log.info("Training a new forest%s: %d trees on %d labelled pixels (label counts %s)", where, trees, len(y),
             tuple(int((y == c).sum()) for c in classes))
    return train_forest(x, y, n_trees=trees, threads=threads, seed=seed)


def training_samples(bk: Backend, project: Project, threads: int = 1, stage: int = 0,
                     upstream: tuple[Forest, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every labelled pixel of every training lane.

    Features are computed only on the boxes around stored label blocks (plus the halo). For an
    Autocontext project, ``stage`` (0-based) picks the stage's labels and features, and
    ``upstream`` holds the forests of the stages before it, whose probabilities its features read.
    """
    stage_project = project.stages[stage]
    xs, ys = [], []
    lanes = {lane.index: lane for lane in project.lanes}
    for index, blocks in sorted(stage_project.labels.items()):
        blocks = [b for b in blocks if np.any(b.values)]
        if not blocks:
            continue
        if index not in lanes:
            raise UserError(f"project file '{project.path}': labels for lane {index}, which has no input data")
        lane = _open_training_lane(project, lanes[index])
        try:
            plans = stage_plans(project, lane)[:stage + 1]
            for plan in plans:
                check_image_size(plan, lane.shape[1:4], lane.source.display)
            stages = tuple(Stage(plan, forest, s.n_classes)
                           for plan, forest, s in zip(plans, (*upstream, None), project.stages))
            runner = StageRunner(bk, lane, stages, threads, lambda name: contextlib.nullcontext())
            for block in blocks:
                x, y = _block_samples(bk, lane, runner, block.slices, block.values)
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


def _block_samples(bk: Backend, lane: Lane, runner: StageRunner, slices: tuple[slice, ...], values: np.ndarray):
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
    last = len(runner.stages) - 1
    xs, ys = [], []
    for t_index, t in enumerate(range(t_slice.start, t_slice.stop)):
        block_labels = labels[t_index]
        if not np.any(block_labels):
            continue
        features = bk.to_host(runner.features(last, t, zyx))
        mask = block_labels != 0
        xs.append(features[:, mask].T)
        ys.append(block_labels[mask].astype(np.uint32))
    if not xs:
        return np.zeros((0, runner.stages[last].plan.n_features), np.float32), np.zeros(0, np.uint32)
    return np.concatenate(xs), np.concatenate(ys)


__all__ = ["needs_training", "resolve_classifier", "training_samples"]
