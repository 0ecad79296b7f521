"""Compute a block's feature matrix exactly as ilastik does (spec §5), on any backend.

Per selected scale: presmooth with ``sqrt(s^2 - 1)`` (or ``s`` for ``s <= 1``, window 3.5), then
every selected feature at ``min(s, 1)`` with window 2.0. Separable passes run x, then y, then z;
after a pass along an axis only the part still needed along that axis is kept, and partial
results are shared between features (the Gaussian, its gradient and its Hessian reuse the same
x and y passes).
"""
from __future__ import annotations

from typing import Any, Sequence

from ..backend import Backend
from .eigen import eigenvalues_2x2, eigenvalues_3x3
from .kernels import FEATURE_WINDOW, PRESMOOTH_WINDOW, gaussian_kernel, kernel_radius, unfused_span
from .plan import DOG_RATIO, STRUCTURE_TENSOR_GRADIENT_RATIO, FeaturePlan, ScaleStep

Slices = tuple[slice, slice, slice]


def _expand(inner: Slices, halo: int, axes: Sequence[int], shape: Sequence[int]) -> Slices:
    return tuple(
        slice(max(0, s.start - halo), min(n, s.stop + halo)) if ax in axes else s
        for ax, (s, n) in enumerate(zip(inner, shape))
    )


def _relative(inner: Slices, outer: Slices) -> Slices:
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))


class _Derivatives:
    """Gaussian derivatives of one array at one sigma, sharing partial separable passes.

    ``target`` (slices into ``array``) is the region the results are needed on; along each
    filtered axis the pass output is cropped to it right away. ``line`` is where ``array``
    starts along x in the image and the image's width: fastfilters' arithmetic along x depends
    on the position in the line.
    """

    def __init__(
        self,
        bk: Backend,
        array: Any,
        axes: Sequence[int],
        sigma: float,
        target: Slices,
        line: tuple[int, int],
        window: float = FEATURE_WINDOW,
    ) -> None:
        self._bk = bk
        self._window = window
        self._axes = tuple(axes)
        self._sigma = sigma
        self._target = target
        self._line = line
        self._cache: dict[tuple[int, ...], Any] = {(): array}

    def get(self, orders: dict[int, int]) -> Any:
        """The derivative with ``orders[axis]`` along each filtered axis (x pass first)."""
        key: tuple[int, ...] = ()
        for axis in reversed(self._axes):
            parent = self._cache[key]
            key = key + (orders.get(axis, 0),)
            if key not in self._cache:
                kernel = gaussian_kernel(self._sigma, key[-1], self._window)
                unfused = None
                if axis == 2:  # the first pass, on the uncropped array
                    unfused = unfused_span(kernel.radius, self._line[0], parent.shape[2], self._line[1])
                filtered = self._bk.correlate1d(parent, kernel, axis, unfused)
                crop = [slice(None)] * filtered.ndim
                crop[axis] = self._target[axis]
                self._cache[key] = filtered[tuple(crop)]
        return self._cache[key]


def _presmooth(bk: Backend, array: Any, step: ScaleStep, axes: Sequence[int], target: Slices, line: tuple[int, int]) -> Any:
    return _Derivatives(bk, array, axes, step.presmooth_sigma, target, line, PRESMOOTH_WINDOW).get({})


def _pairs(axes: Sequence[int]) -> list[tuple[int, int]]:
    """Upper-triangle index pairs of a symmetric matrix over ``axes`` (row-major)."""
    return [(a, b) for i, a in enumerate(axes) for b in axes[i:]]


def _eigenvalues(bk: Backend, axes: Sequence[int], entries: dict[tuple[int, int], Any]) -> list[Any]:
    if bk.kernels is not None:
        return bk.kernels.eigenvalues([entries[pair] for pair in _pairs(axes)])
    if len(axes) == 2:
        a, b = axes
        return list(eigenvalues_2x2(bk.xp, entries[(a, a)], entries[(a, b)], entries[(b, b)]))
    z, y, x = axes
    return list(
        eigenvalues_3x3(
            bk.xp, entries[(z, z)], entries[(z, y)], entries[(z, x)], entries[(y, y)], entries[(y, x)], entries[(x, x)]
        )
    )


def _step_features(
    bk: Backend, presmoothed: Any, step: ScaleStep, axes: Sequence[int], target: Slices, line: tuple[int, int]
) -> dict[str, list[Any]]:
    """All selected features of one scale on ``presmoothed``, cropped to ``target``."""
    xp = bk.xp
    t = step.feature_sigma
    wanted = set(step.features)
    d = _Derivatives(bk, presmoothed, axes, t, target, line)
    out: dict[str, list[Any]] = {}
    if wanted & {"GaussianSmoothing", "DifferenceOfGaussians"}:
        smooth = d.get({})
        if "GaussianSmoothing" in wanted:
            out["GaussianSmoothing"] = [smooth]
        if "DifferenceOfGaussians" in wanted:
            narrow = _Derivatives(bk, presmoothed, axes, DOG_RATIO * t, target, line).get({})
            out["DifferenceOfGaussians"] = [smooth - narrow]
    if "LaplacianOfGaussian" in wanted:
        total = None
        for a in reversed(axes):  # x + y + z, fastfilters' order
            term = d.get({a: 2})
            total = term if total is None else total + term
        out["LaplacianOfGaussian"] = [total]
    if "GaussianGradientMagnitude" in wanted:
        total = None
        for a in reversed(axes):
            g = d.get({a: 1})
            total = g * g if total is None else total + g * g
        out["GaussianGradientMagnitude"] = [xp.sqrt(total)]
    if "HessianOfGaussianEigenvalues" in wanted:
        hessian = {(a, b): d.get({a: 2}) if a == b else d.get({a: 1, b: 1}) for a, b in _pairs(axes)}
        out["HessianOfGaussianEigenvalues"] = _eigenvalues(bk, axes, hessian)
    if "StructureTensorEigenvalues" in wanted:
        out["StructureTensorEigenvalues"] = _structure_tensor(bk, presmoothed, t, axes, target, line)
    return out


def _structure_tensor(
    bk: Backend, presmoothed: Any, t: float, axes: Sequence[int], target: Slices, line: tuple[int, int]
) -> list[Any]:
    """Gradients at ``0.5 t``, products smoothed at ``t`` (fastfilters' argument order, spec §5.3)."""
    outer = kernel_radius(t, FEATURE_WINDOW)
    grad_target = _expand(target, outer, axes, presmoothed.shape)
    grads = _Derivatives(bk, presmoothed, axes, STRUCTURE_TENSOR_GRADIENT_RATIO * t, grad_target, line)
    g = {a: grads.get({a: 1}) for a in axes}
    inner = _relative(target, grad_target)
    product_line = (line[0] + grad_target[2].start, line[1])
    tensor = {}
    for a, b in _pairs(axes):
        tensor[(a, b)] = _Derivatives(bk, g[a] * g[b], axes, t, inner, product_line).get({})
    return _eigenvalues(bk, axes, tensor)


def compute_features(
    bk: Backend, image: Any, plan: FeaturePlan, interior: Slices, x_origin: int = 0, width: int | None = None
) -> Any:
    """Feature matrix of one time point on the ``interior`` of ``image``.

    Parameters
    ----------
    bk : Backend
    image : (Z, Y, X, C) float32 array on ``bk``
        The block with its context, clipped at the image borders (so mirroring happens exactly
        where the whole image would mirror).
    plan : FeaturePlan
    interior : tuple of 3 slices
        The block's output region inside ``image`` (z, y, x). Every filtered side needs
        ``step.halo`` pixels of context or must lie on the image border.
    x_origin : int
        Where ``image`` starts along x in the whole image.
    width : int, optional
        The whole image's width (default: ``image``'s). With ``x_origin`` it places every pixel
        in its line, which fastfilters' rounding depends on; results then do not depend on how
        the image is cut into blocks.

    Returns
    -------
    (n_features, Zi, Yi, Xi) float32 array on ``bk``, channels in classifier column order.
    """
    xp = bk.xp
    shape = tuple(s.stop - s.start for s in interior)
    out = xp.empty((plan.n_features,) + shape, dtype=xp.float32)
    spatial = image.shape[:3]
    width = spatial[2] if width is None else width
    for step in plan.steps:
        axes = (1, 2) if step.in_2d else (0, 1, 2)
        region = _expand(interior, step.halo, axes, spatial)
        pre_target = _expand(interior, step.feature_radius, axes, spatial)
        blocks = [b for b in plan.blocks if b.step.column == step.column]
        for c in range(plan.n_input_channels):
            image_line = (x_origin + region[2].start, width)
            presmoothed = _presmooth(bk, image[region + (c,)], step, axes, _relative(pre_target, region), image_line)
            presmoothed_line = (x_origin + pre_target[2].start, width)
            features = _step_features(bk, presmoothed, step, axes, _relative(interior, pre_target), presmoothed_line)
            for block in blocks:
                for k, values in enumerate(features[block.feature]):
                    out[block.offset + c * block.per_input_channel + k] = values
    return out
