"""The feature plan: which filters run at which scale, in which channel order (spec §5).

A project's selection matrix becomes one :class:`ScaleStep` per selected scale (all features of
a scale share one presmoothed image) and one :class:`ChannelBlock` per (feature, scale) in the
classifier's column order: feature, then scale, then input channel, then eigenvalue index.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .kernels import FEATURE_WINDOW, PRESMOOTH_WINDOW, kernel_radius

FEATURE_IDS = (
    "GaussianSmoothing",
    "LaplacianOfGaussian",
    "GaussianGradientMagnitude",
    "DifferenceOfGaussians",
    "StructureTensorEigenvalues",
    "HessianOfGaussianEigenvalues",
)
DISPLAY_NAMES = {
    "GaussianSmoothing": "Gaussian Smoothing",
    "LaplacianOfGaussian": "Laplacian of Gaussian",
    "GaussianGradientMagnitude": "Gaussian Gradient Magnitude",
    "DifferenceOfGaussians": "Difference of Gaussians",
    "StructureTensorEigenvalues": "Structure Tensor Eigenvalues",
    "HessianOfGaussianEigenvalues": "Hessian of Gaussian Eigenvalues",
}
EIGENVALUE_FEATURES = {"StructureTensorEigenvalues", "HessianOfGaussianEigenvalues"}
DOG_RATIO = 0.66
STRUCTURE_TENSOR_GRADIENT_RATIO = 0.5


# A selected scale must lie below this: the filters square it (beyond, it overflows to infinity).
MAX_SCALE = 1e100


@dataclass(frozen=True)
class FeatureSelection:
    """A project's feature selection (``FeatureSelections`` group).

    Attributes
    ----------
    feature_ids : tuple of str
        Row order of ``matrix``.
    scales : tuple of float
        Column order of ``matrix``.
    matrix : (rows, cols) bool array
    compute_in_2d : tuple of bool, optional
        One flag per scale column; ``None`` when the project predates the flag.
    """

    feature_ids: tuple[str, ...]
    scales: tuple[float, ...]
    matrix: np.ndarray
    compute_in_2d: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        if self.matrix.shape != (len(self.feature_ids), len(self.scales)):
            raise ValueError(
                f"selection matrix {self.matrix.shape} does not match "
                f"{len(self.feature_ids)} features x {len(self.scales)} scales"
            )
        unknown = set(self.feature_ids) - set(FEATURE_IDS)
        if unknown:
            raise ValueError(f"unknown feature ids {sorted(unknown)}")
        for column, scale in enumerate(self.scales):
            if np.any(self.matrix[:, column]) and not 0.0 < scale < MAX_SCALE:
                raise ValueError(f"scale {scale} is selected; a scale is a positive number of pixels")

    @property
    def is_empty(self) -> bool:
        return not bool(np.any(self.matrix))


@dataclass(frozen=True)
class ScaleStep:
    """One selected scale: presmoothing then the selected features on the presmoothed image."""

    column: int
    scale: float
    in_2d: bool
    features: tuple[str, ...]

    @property
    def presmooth_sigma(self) -> float:
        s = self.scale
        return math.sqrt(s * s - 1.0) if s > 1.0 else s

    @property
    def feature_sigma(self) -> float:
        return min(self.scale, 1.0)

    @property
    def presmooth_radius(self) -> int:
        return kernel_radius(self.presmooth_sigma, PRESMOOTH_WINDOW)

    @property
    def feature_radius(self) -> int:
        """Support of the widest selected feature filter on the presmoothed image."""
        t = self.feature_sigma
        r = kernel_radius(t, FEATURE_WINDOW)
        radius = r
        if "DifferenceOfGaussians" in self.features:
            radius = max(radius, kernel_radius(DOG_RATIO * t, FEATURE_WINDOW))
        if "StructureTensorEigenvalues" in self.features:
            radius = max(radius, kernel_radius(STRUCTURE_TENSOR_GRADIENT_RATIO * t, FEATURE_WINDOW) + r)
        return radius

    @property
    def halo(self) -> int:
        """Context needed on each filtered side for exact results."""
        return self.presmooth_radius + self.feature_radius


@dataclass(frozen=True)
class ChannelBlock:
    """The output channels of one (feature, scale) pair."""

    feature: str
    step: ScaleStep
    offset: int
    per_input_channel: int
    n_input_channels: int

    @property
    def width(self) -> int:
        return self.per_input_channel * self.n_input_channels


@dataclass(frozen=True)
class FeaturePlan:
    """Everything needed to compute a lane's feature matrix, in classifier column order."""

    steps: tuple[ScaleStep, ...]
    blocks: tuple[ChannelBlock, ...]
    n_input_channels: int

    @property
    def n_features(self) -> int:
        return sum(b.width for b in self.blocks)

    @property
    def max_halo(self) -> int:
        return max((s.halo for s in self.steps), default=0)

    @property
    def any_3d(self) -> bool:
        return any(not s.in_2d for s in self.steps)

    def names(self) -> list[str]:
        """Column names as ilastik writes them (``feature_names`` of the classifier)."""
        out = []
        for block in self.blocks:
            base = f"{DISPLAY_NAMES[block.feature]} (\u03c3={float(block.step.scale)!r})"
            if block.step.in_2d:
                base += " in 2D"
            if block.width > 1:
                out.extend(f"{base} [{i}]" for i in range(block.width))
            else:
                out.append(base)
        return out


def make_plan(selection: FeatureSelection, n_input_channels: int, z_extent: int) -> FeaturePlan:
    """Build the plan for data with ``n_input_channels`` channels and ``z_extent`` slices.

    ``ComputeIn2d`` defaults to "2D iff z == 1" for projects without it; data with one slice is
    always filtered in 2D. Eigenvalue features have 2 channels in 2D mode and 3 in 3D mode.
    Every positive scale is computed, as fastfilters computes it: a derivative whose kernel
    has radius 0 (e.g. the structure tensor's gradients at scale 0.3) is the identity there
    (see :func:`~gpuheadless.features.kernels.gaussian_kernel`).
    """
    in_2d_flags = selection.compute_in_2d
    if in_2d_flags is None:
        in_2d_flags = tuple([z_extent == 1] * len(selection.scales))
    steps = {}
    for col, scale in enumerate(selection.scales):
        chosen = tuple(fid for row, fid in enumerate(selection.feature_ids) if selection.matrix[row, col])
        if chosen:
            steps[col] = ScaleStep(col, float(scale), bool(in_2d_flags[col]) or z_extent == 1, chosen)
    blocks = []
    offset = 0
    for row, fid in enumerate(selection.feature_ids):
        for col in range(len(selection.scales)):
            if not selection.matrix[row, col]:
                continue
            step = steps[col]
            per = (2 if step.in_2d else 3) if fid in EIGENVALUE_FEATURES else 1
            blocks.append(ChannelBlock(fid, step, offset, per, n_input_channels))
            offset += per * n_input_channels
    ordered_steps = tuple(steps[c] for c in sorted(steps))
    return FeaturePlan(ordered_steps, tuple(blocks), n_input_channels)


def check_image_size(plan: FeaturePlan, shape_zyx: tuple[int, int, int], where: str) -> None:
    """Refuse images too small for a selected scale, as ilastik does (``getInvalidScales``).

    Every selected scale ``s`` needs ``ceil(3.5 s) + 1`` pixels along x and y, and along z
    unless that scale is computed in 2D.
    """
    z, y, x = shape_zyx
    for step in plan.steps:
        need = math.ceil(PRESMOOTH_WINDOW * step.scale) + 1
        short = [name for name, size in (("x", x), ("y", y)) if size < need]
        if not step.in_2d and z < need:
            short.append("z")
        if short:
            raise UserError(
                f"{where}: image too small for feature scale {step.scale}: needs at least {need} "
                f"pixels along {', '.join(short)} (shape z,y,x = {z},{y},{x})"
            )
