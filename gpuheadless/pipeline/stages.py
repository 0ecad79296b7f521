"""Classification stages of one block: Pixel Classification is one stage, Autocontext several.

Stage n + 1 computes its features on the raw data stacked (along ``c``) with stage n's
probabilities converted to the raw data's type, as ilastik's Autocontext workflow feeds them
(``DtypeConvertFunction``: scaled to the type's full range and truncated for integer types,
cast for floating-point ones). A block of stage n + 1 needs stage n's probabilities on the block
widened by its own halo, so the stages run from the first on ever smaller regions and nothing
between them is written.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..backend import Backend
from ..features.compute import compute_features
from ..features.plan import FeaturePlan
from ..forest.model import Forest
from ..forest.predict import predict_proba
from .lane import Lane

Region = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Stage:
    """One stage's features and classifier; ``n_classes`` probability channels."""

    plan: FeaturePlan
    forest: Forest | None
    n_classes: int


def stage_halo(plan: FeaturePlan, lane: Lane) -> tuple[int, int, int]:
    """The (z, y, x) margin a stage's features read around the pixels they are computed on."""
    z_halo = plan.max_halo if plan.any_3d and lane.shape[1] > 1 else 0
    return (z_halo, plan.max_halo, plan.max_halo)


def chain_halo(stages: Sequence[Stage], lane: Lane) -> tuple[int, int, int]:
    """The margin of raw data the last of ``stages`` needs: the stages' halos added up."""
    halos = [stage_halo(s.plan, lane) for s in stages]
    return tuple(sum(h[a] for h in halos) for a in range(3))


def widen(region: Region, halo: Sequence[int], shape: Sequence[int]) -> Region:
    """``region`` grown by ``halo`` on each side, clipped to an image of (z, y, x) ``shape``."""
    return tuple(slice(max(0, r.start - h), min(n, r.stop + h)) for r, h, n in zip(region, halo, shape))


def _inside(inner: Region, outer: Region) -> Region:
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))


def to_input_type(xp: Any, probabilities: Any, dtype: np.dtype) -> Any:
    """Probabilities in [0, 1] as ilastik hands them to the next stage: in the raw data's type.

    Returns
    -------
    float32 array
        Integer types: ``((max - min) * p - min)`` truncated to ``dtype`` (255 p for uint8);
        floating-point types: ``p`` cast to ``dtype``. Back in float32 for the filters.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        converted = ((int(info.max) - int(info.min)) * probabilities - int(info.min)).astype(dtype)
    else:
        converted = probabilities.astype(dtype)
    return converted.astype(xp.float32)


def class_probabilities(bk: Backend, forest: Forest, features: Any, n_classes: int, threads: int) -> Any:
    """``(Z, Y, X, n_classes)`` float32 forest probabilities of ``(F, Z, Y, X)`` features; column
    k - 1 holds label k, labels without a column are 0."""
    shape = features.shape[1:]
    rows = features.reshape(features.shape[0], -1).T
    scores = predict_proba(forest, rows, bk, threads)
    probabilities = bk.xp.zeros((rows.shape[0], n_classes), dtype=bk.xp.float32)
    for column, label in enumerate(forest.labels):
        if 1 <= label <= n_classes:
            probabilities[:, int(label) - 1] = scores[:, column]
    return probabilities.reshape(tuple(shape) + (n_classes,))


@dataclass(frozen=True)
class StageRunner:
    """Runs a lane's stages on regions of one time step.

    ``measure(name)`` is a context manager timing the read, features and forest steps.
    """

    bk: Backend
    lane: Lane
    stages: tuple[Stage, ...]
    threads: int
    measure: Any

    def stage_input(self, k: int, t: int, region: Region) -> Any:
        """``(Z, Y, X, C)`` float32 input of stage ``k`` over ``region``: the raw data, stacked
        after the first stage with the previous stage's probabilities."""
        with self.measure("read"):
            raw = self.bk.asarray(self.lane.read(t, region))
        if k == 0:
            return raw
        previous = self.probabilities(k - 1, t, region)
        converted = to_input_type(self.bk.xp, previous, self.lane.source.dtype)
        return self.bk.xp.concatenate([raw, converted], axis=-1)

    def features(self, k: int, t: int, region: Region) -> Any:
        """``(F, Z, Y, X)`` features of stage ``k`` over ``region``."""
        wide = widen(region, stage_halo(self.stages[k].plan, self.lane), self.lane.shape[1:4])
        image = self.stage_input(k, t, wide)
        with self.measure("features"):
            return compute_features(self.bk, image, self.stages[k].plan, _inside(region, wide), wide[2].start,
                                    self.lane.shape[3])

    def probabilities(self, k: int, t: int, region: Region, mask: Any = None) -> Any:
        """``(Z, Y, X, K)`` probabilities of stage ``k`` over ``region`` (times ``mask`` if given)."""
        features = self.features(k, t, region)
        with self.measure("forest"):
            stage = self.stages[k]
            probabilities = class_probabilities(self.bk, stage.forest, features, stage.n_classes, self.threads)
            if mask is not None:
                probabilities = probabilities * self.bk.asarray(mask[..., None].astype(np.float32))
            return probabilities
