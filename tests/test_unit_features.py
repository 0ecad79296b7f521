"""Pixel features on small generated arrays: exact properties of fastfilters' kernels on
polynomials, and agreement with scipy.ndimage's Gaussian filters (no external data)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from gpuheadless.backend import cpu_backend
from gpuheadless.errors import UserError
from gpuheadless.features.eigen import eigenvalues_2x2, eigenvalues_3x3, eigenvalues_3x3_float64
from gpuheadless.features.kernels import gaussian_kernel, kernel_radius, unfused_span
from gpuheadless.features.plan import check_image_size, make_plan
from gpuheadless.trainer import parse_features, with_compute_in_2d

ALL_AT_2 = ",".join(f"{f}@2.0" for f in ("GaussianSmoothing", "LaplacianOfGaussian", "GaussianGradientMagnitude",
                                          "DifferenceOfGaussians", "StructureTensorEigenvalues",
                                          "HessianOfGaussianEigenvalues"))
INNER = (slice(12, -12), slice(12, -12))  # far from the borders: no mirroring reaches it at scale 2


def features_2d(image: np.ndarray, spec: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every feature channel of a 2D image, by its ilastik column name."""
    plan = make_plan(with_compute_in_2d(parse_features(spec), True, None), 1, 1)
    out = compute_features_cpu(image[None, :, :, None], plan)
    names = plan.names()
    return {name: out[i, 0] for i, name in enumerate(names)}, names


def compute_features_cpu(image: np.ndarray, plan) -> np.ndarray:
    from gpuheadless.features.compute import compute_features

    z, y, x = image.shape[:3]
    return np.asarray(compute_features(cpu_backend(), image.astype(np.float32), plan,
                                       (slice(0, z), slice(0, y), slice(0, x))))


def _grid(shape):
    return np.mgrid[: shape[0], : shape[1]].astype(np.float64)


def test_feature_columns_are_in_ilastik_order_with_two_eigenvalues_in_2d():
    """The 2D plan of all six features at one scale has 8 columns named as ilastik names them."""
    plan = make_plan(with_compute_in_2d(parse_features(ALL_AT_2), True, None), 1, 1)
    assert plan.n_features == 8
    assert plan.names() == [
        "Gaussian Smoothing (\u03c3=2.0) in 2D", "Laplacian of Gaussian (\u03c3=2.0) in 2D",
        "Gaussian Gradient Magnitude (\u03c3=2.0) in 2D", "Difference of Gaussians (\u03c3=2.0) in 2D",
        "Structure Tensor Eigenvalues (\u03c3=2.0) in 2D [0]", "Structure Tensor Eigenvalues (\u03c3=2.0) in 2D [1]",
        "Hessian of Gaussian Eigenvalues (\u03c3=2.0) in 2D [0]", "Hessian of Gaussian Eigenvalues (\u03c3=2.0) in 2D [1]",
    ]


def test_three_input_channels_in_3d_multiply_the_columns_and_eigenvalues_get_three():
    """3D eigenvalue features have 3 columns per input channel; 2 channels double every block."""
    selection = with_compute_in_2d(parse_features("GaussianSmoothing@1.0,HessianOfGaussianEigenvalues@1.0"), False, None)
    plan = make_plan(selection, 2, 10)
    assert plan.n_features == 2 * 1 + 2 * 3
    assert [(b.feature, b.offset, b.width) for b in plan.blocks] == [
        ("GaussianSmoothing", 0, 2), ("HessianOfGaussianEigenvalues", 2, 6)]
    assert plan.any_3d and plan.max_halo == kernel_radius(1.0, 3.5) + kernel_radius(1.0, 2.0)


def test_smoothing_of_a_ramp_keeps_the_ramp_and_its_derivatives_are_exact():
    """On ``a*x + b*y`` the smoothed image is the ramp, the gradient magnitude sqrt(a^2+b^2),
    the Laplacian and Hessian zero, the structure tensor's eigenvalues (a^2+b^2, 0)."""
    yy, xx = _grid((40, 48))
    a, b = 3.0, -2.0
    image = a * xx + b * yy + 200.0
    f, _ = features_2d(image, ALL_AT_2)
    inner = INNER
    np.testing.assert_allclose(f["Gaussian Smoothing (\u03c3=2.0) in 2D"][inner], image[inner], rtol=1e-5)
    np.testing.assert_allclose(f["Gaussian Gradient Magnitude (\u03c3=2.0) in 2D"][inner], np.hypot(a, b), rtol=1e-4)
    np.testing.assert_allclose(f["Structure Tensor Eigenvalues (\u03c3=2.0) in 2D [0]"][inner], a * a + b * b, rtol=1e-4)
    np.testing.assert_allclose(f["Structure Tensor Eigenvalues (\u03c3=2.0) in 2D [1]"][inner], 0, atol=1e-3)
    np.testing.assert_allclose(f["Laplacian of Gaussian (\u03c3=2.0) in 2D"][inner], 0, atol=1e-3)
    np.testing.assert_allclose(f["Hessian of Gaussian Eigenvalues (\u03c3=2.0) in 2D [0]"][inner], 0, atol=1e-3)
    # the ramp reaches the border: mirroring bends it there, so the border differs from the interior
    assert abs(f["Gaussian Gradient Magnitude (\u03c3=2.0) in 2D"][0, 0] - np.hypot(a, b)) > 0.5


def test_second_derivatives_of_a_paraboloid_are_exact():
    """On ``(x^2 + 3 y^2) / 2`` the Laplacian is 4 and the Hessian's eigenvalues are (3, 1), largest first."""
    yy, xx = _grid((40, 48))
    image = (xx - 24) ** 2 / 2 + 3 * (yy - 20) ** 2 / 2
    f, _ = features_2d(image, "LaplacianOfGaussian@2.0,HessianOfGaussianEigenvalues@2.0")
    np.testing.assert_allclose(f["Laplacian of Gaussian (\u03c3=2.0) in 2D"][INNER], 4.0, rtol=1e-3)
    np.testing.assert_allclose(f["Hessian of Gaussian Eigenvalues (\u03c3=2.0) in 2D [0]"][INNER], 3.0, rtol=1e-3)
    np.testing.assert_allclose(f["Hessian of Gaussian Eigenvalues (\u03c3=2.0) in 2D [1]"][INNER], 1.0, rtol=1e-3)


def test_3d_hessian_eigenvalues_of_a_quadric_are_exact():
    """On a quadric with Hessian H in 3D, the three Hessian eigenvalues are H's, largest first, inside."""
    zz, yy, xx = np.mgrid[:20, :20, :20].astype(np.float64) - 10
    image = (xx ** 2 + 2 * yy ** 2 + 3 * zz ** 2) / 2 + 0.5 * xx * yy + 0.3 * zz * yy
    hessian = np.array([[3.0, 0.3, 0.0], [0.3, 2.0, 0.5], [0.0, 0.5, 1.0]])  # z, y, x
    expected = np.linalg.eigvalsh(hessian)[::-1]
    plan = make_plan(with_compute_in_2d(parse_features("HessianOfGaussianEigenvalues@1.0"), False, None), 1, 20)
    out = compute_features_cpu(image[..., None], plan)
    assert out.shape == (3, 20, 20, 20)
    inside = out[:, 7:-7, 7:-7, 7:-7]
    for k in range(3):
        np.testing.assert_allclose(inside[k], expected[k], rtol=1e-3)


def test_features_agree_with_scipy_gaussian_filters():
    """Each feature at scale 2 (total sigma 2 after presmoothing) is scipy's Gaussian filter of
    sigma 2 with mirrored borders, within the truncation error of ilastik's short kernels."""
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.random((40, 48)) * 255, 1.0)
    f, _ = features_2d(image, ALL_AT_2)

    def close(ours, reference, fraction):
        err = np.abs(ours.astype(np.float64) - reference)[6:-6, 6:-6].max()
        assert np.ptp(reference) > 0 and err <= fraction * np.ptp(reference), (err, np.ptp(reference))

    m = "mirror"
    smooth = ndimage.gaussian_filter(image, 2.0, mode=m)
    close(f["Gaussian Smoothing (\u03c3=2.0) in 2D"], smooth, 0.01)
    close(f["Difference of Gaussians (\u03c3=2.0) in 2D"],
          smooth - ndimage.gaussian_filter(image, np.sqrt(3 + 0.66 ** 2), mode=m), 0.03)
    close(f["Laplacian of Gaussian (\u03c3=2.0) in 2D"], ndimage.gaussian_laplace(image, 2.0, mode=m), 0.1)
    close(f["Gaussian Gradient Magnitude (\u03c3=2.0) in 2D"], ndimage.gaussian_gradient_magnitude(image, 2.0, mode=m), 0.1)
    hessian = [ndimage.gaussian_filter(image, 2.0, order=o, mode=m) for o in ((2, 0), (1, 1), (0, 2))]
    eig = np.linalg.eigvalsh(np.stack([np.stack(hessian[:2], -1), np.stack(hessian[1:], -1)], -2))[..., ::-1]
    close(f["Hessian of Gaussian Eigenvalues (\u03c3=2.0) in 2D [0]"], eig[..., 0], 0.1)
    close(f["Hessian of Gaussian Eigenvalues (\u03c3=2.0) in 2D [1]"], eig[..., 1], 0.1)
    # the smoothing is not the identity and the derivatives are not zero
    assert np.abs(f["Gaussian Smoothing (\u03c3=2.0) in 2D"] - image).max() > 1
    assert np.abs(f["Laplacian of Gaussian (\u03c3=2.0) in 2D"]).max() > 1


def test_3d_smoothing_agrees_with_scipy_and_2d_mode_filters_slices_alone():
    """3D smoothing at scale 2 is scipy's 3D Gaussian; "in 2D" leaves the z axis unfiltered."""
    rng = np.random.default_rng(1)
    volume = rng.random((16, 18, 20)) * 100
    for in_2d, sigma in ((False, (2.0, 2.0, 2.0)), (True, (0.0, 2.0, 2.0))):
        selection = with_compute_in_2d(parse_features("GaussianSmoothing@2.0"), False, [2.0] if in_2d else None)
        plan = make_plan(selection, 1, 16)
        ours = compute_features_cpu(volume[..., None], plan)[0]
        reference = ndimage.gaussian_filter(volume, sigma, mode="mirror")
        assert np.abs(ours - reference).max() <= 0.02 * np.ptp(reference)
        assert np.abs(ours - volume).max() > 5


def test_kernels_follow_fastfilters_normalisation():
    """Order 0 sums to 1, order 1 gives 1 on a unit ramp, order 2 gives 1 on x^2/2; radius floor(w s + 0.5)."""
    for sigma in (0.7, 1.0, 1.6, 3.5):
        r = kernel_radius(sigma, 2.0)
        assert r == int(np.floor(2.0 * sigma + 0.5)) and r >= 1
        x = np.arange(-r, r + 1, dtype=np.float64)
        k0, k1, k2 = (gaussian_kernel(sigma, order, 2.0).taps.astype(np.float64) for order in (0, 1, 2))
        assert len(k0) == 2 * r + 1
        assert abs(k0.sum() - 1) < 1e-6 and abs(k2.sum()) < 1e-6
        assert abs(np.dot(k1, x) - 1) < 1e-6 and abs(np.dot(k2, x * x / 2) - 1) < 1e-6
    assert kernel_radius(0.3, 2.0) == 1 and kernel_radius(1e-9, 2.0) == 0
    np.testing.assert_array_equal(gaussian_kernel(0.1, 1, 2.0).taps, [1.0])  # radius 0: the identity
    with pytest.raises(ValueError):
        gaussian_kernel(1.0, 3, 2.0)


def test_unfused_span_covers_the_unvectorised_ends_of_a_line():
    """fastfilters vectorises x from ceil8(r) to (width - r) & ~31; short lines are all scalar."""
    assert unfused_span(3, 0, 200, 200) == (8, (200 - 3) & ~31)
    assert unfused_span(3, 50, 100, 200) == (8 - 50, 192 - 50)
    assert unfused_span(3, 0, 40, 40) == (40, 40)


def test_eigenvalues_equal_numpy_and_are_sorted_descending():
    """Closed-form 2x2 and 3x3 symmetric eigenvalues equal numpy.linalg.eigvalsh, largest first."""
    rng = np.random.default_rng(2)
    m = rng.normal(size=(50, 3, 3)).astype(np.float32)
    m = (m + np.swapaxes(m, 1, 2)) / 2
    expected = np.linalg.eigvalsh(m.astype(np.float64))[:, ::-1]
    entries = [m[:, 0, 0], m[:, 0, 1], m[:, 0, 2], m[:, 1, 1], m[:, 1, 2], m[:, 2, 2]]
    for solver in (lambda *e: eigenvalues_3x3(np, *e), lambda *e: eigenvalues_3x3_float64(np, *e)):
        got = np.stack(solver(*entries), axis=1)
        np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
        assert np.all(np.diff(got, axis=1) <= 1e-6)
    two = np.stack(eigenvalues_2x2(np, m[:, 0, 0], m[:, 0, 1], m[:, 1, 1]), axis=1)
    np.testing.assert_allclose(two, np.linalg.eigvalsh(m[:, :2, :2].astype(np.float64))[:, ::-1], atol=1e-5)


def test_images_too_small_for_a_scale_are_refused():
    """A scale s needs ceil(3.5 s) + 1 pixels along x and y (and z in 3D), as ilastik checks."""
    plan = make_plan(with_compute_in_2d(parse_features("GaussianSmoothing@3.5"), True, None), 1, 1)
    check_image_size(plan, (1, 14, 14), "img")  # ceil(12.25) + 1 = 14 fits
    with pytest.raises(UserError, match="needs at least 14 pixels along x"):
        check_image_size(plan, (1, 20, 13), "img")


def test_feature_selection_specs_are_parsed_and_bad_ones_refused():
    """``default`` selects ilastik's 2D test project features; bad ids and scales are refused."""
    from gpuheadless.errors import UsageError

    assert make_plan(with_compute_in_2d(parse_features("default"), True, None), 1, 1).n_features == 28
    assert int(parse_features("all").matrix.sum()) == 37
    for bad in ("Gaussian@1.0", "GaussianSmoothing@x", "GaussianSmoothing@-1", "GaussianSmoothing", ""):
        with pytest.raises(UsageError):
            parse_features(bad)
