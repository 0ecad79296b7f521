"""Symmetric eigensystems as vigra computes them: Householder tridiagonalisation followed by the
implicit QL method (the EISPACK tred2/tql2 pair), eigenvalues sorted descending.

Only the signs of the eigenvectors depend on the method, but ilastik's ``RegionAxes`` and
``PrincipalAxes`` features are the vectors themselves and the object classifier splits on them,
so the same method is needed to get ilastik's predictions.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np


def _c_hypot():
    """The C library's ``hypot`` (vigra's on Linux); Python's ``math.hypot`` rounds differently
    about once in 200 calls."""
    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        function = libm.hypot
    except (OSError, AttributeError):  # no C library to load: the nearest we have
        return math.hypot
    function.restype = ctypes.c_double
    function.argtypes = [ctypes.c_double, ctypes.c_double]
    return function


hypot = _c_hypot()


def _tridiagonalise(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Householder reduction of symmetric ``v`` (modified in place to the transformation)."""
    n = v.shape[0]
    d = v[n - 1].copy()
    e = np.zeros(n)
    for i in range(n - 1, 0, -1):
        scale = float(np.sum(np.abs(d[:i])))
        h = 0.0
        if scale == 0.0:
            e[i] = d[i - 1]
            for j in range(i):
                d[j] = v[i - 1, j]
                v[i, j] = 0.0
                v[j, i] = 0.0
        else:
            for k in range(i):
                d[k] /= scale
                h += d[k] * d[k]
            f = d[i - 1]
            g = math.sqrt(h)
            if f > 0:
                g = -g
            e[i] = scale * g
            h = h - f * g
            d[i - 1] = f - g
            e[:i] = 0.0
            for j in range(i):
                f = d[j]
                v[j, i] = f
                g = e[j] + v[j, j] * f
                for k in range(j + 1, i):
                    g += v[k, j] * d[k]
                    e[k] += v[k, j] * f
                e[j] = g
            f = 0.0
            for j in range(i):
                e[j] /= h
                f += e[j] * d[j]
            hh = f / (h + h)
            for j in range(i):
                e[j] -= hh * d[j]
            for j in range(i):
                f = d[j]
                g = e[j]
                for k in range(j, i):
                    v[k, j] -= f * e[k] + g * d[k]
                d[j] = v[i - 1, j]
                v[i, j] = 0.0
        d[i] = h
    for i in range(n - 1):
        v[n - 1, i] = v[i, i]
        v[i, i] = 1.0
        h = d[i + 1]
        if h != 0.0:
            for k in range(i + 1):
                d[k] = v[k, i + 1] / h
            for j in range(i + 1):
                g = 0.0
                for k in range(i + 1):
                    g += v[k, i + 1] * v[k, j]
                for k in range(i + 1):
                    v[k, j] -= g * d[k]
        for k in range(i + 1):
            v[k, i + 1] = 0.0
    for j in range(n):
        d[j] = v[n - 1, j]
        v[n - 1, j] = 0.0
    v[n - 1, n - 1] = 1.0
    e[0] = 0.0
    return d, e


def _ql(d: np.ndarray, e: np.ndarray, v: np.ndarray) -> None:
    """Implicit QL iterations on the tridiagonal (d, e), accumulating rotations into ``v``."""
    n = len(d)
    e[:-1] = e[1:].copy()
    e[n - 1] = 0.0
    f = 0.0
    tst1 = 0.0
    eps = 2.0**-52
    for l in range(n):
        tst1 = max(tst1, abs(d[l]) + abs(e[l]))
        m = l
        while m < n - 1 and abs(e[m]) > eps * tst1:
            m += 1
        if m > l:
            for _ in range(60):  # converges in a few iterations for 2x2 and 3x3
                g = d[l]
                p = (d[l + 1] - g) / (2.0 * e[l])
                r = hypot(p, 1.0)
                if p < 0:
                    r = -r
                d[l] = e[l] / (p + r)
                d[l + 1] = e[l] * (p + r)
                dl1 = d[l + 1]
                h = g - d[l]
                for i in range(l + 2, n):
                    d[i] -= h
                f += h
                p = d[m]
                c = c2 = c3 = 1.0
                el1 = e[l + 1]
                s = s2 = 0.0
                for i in range(m - 1, l - 1, -1):
                    c3, c2, s2 = c2, c, s
                    g = c * e[i]
                    h = c * p
                    r = hypot(p, e[i])
                    e[i + 1] = s * r
                    s = e[i] / r
                    c = p / r
                    p = c * d[i] - s * g
                    d[i + 1] = h + s * (c * g + s * d[i])
                    for k in range(n):
                        h = v[k, i + 1]
                        v[k, i + 1] = s * v[k, i] + c * h
                        v[k, i] = c * v[k, i] - s * h
                p = -s * s2 * c3 * el1 * e[l] / dl1
                e[l] = s * p
                d[l] = c * p
                if abs(e[l]) <= eps * tst1:
                    break
        d[l] = d[l] + f
        e[l] = 0.0


def symmetric_eigensystem(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of a symmetric matrix as vigra's ``symmetricEigensystem``.

    Parameters
    ----------
    matrix : (n, n) float64, symmetric

    Returns
    -------
    values : (n,) float64
        Ordered by descending absolute value (vigra's order; descending for the positive
        semi-definite scatter matrices of the object features).
    vectors : (n, n) float64
        Unit eigenvectors as columns, in that order, with vigra's signs.
    """
    v = np.array(matrix, dtype=np.float64)
    d, e = _tridiagonalise(v)
    _ql(d, e, v)
    n = len(d)
    for i in range(n - 1):  # selection sort by absolute value, largest first, as vigra's tql2 ends
        k = i
        for j in range(i + 1, n):
            if abs(d[j]) > abs(d[k]):
                k = j
        if k != i:
            d[i], d[k] = d[k], d[i]
            v[:, [i, k]] = v[:, [k, i]]
    return d, v
