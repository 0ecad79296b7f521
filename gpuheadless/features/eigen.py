"""Closed-form eigenvalues of symmetric 2x2 and 3x3 matrices, per pixel, sorted descending."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _ceigen


def eigenvalues_2x2(xp: Any, a: Any, b: Any, c: Any) -> tuple[Any, Any]:
    """Eigenvalues of ``[[a, b], [b, c]]`` in float32, largest first.

    ``(a + c)/2 +- sqrt(((a - c)/2)**2 + b**2)``.
    """
    half_trace = (a + c) * 0.5
    half_diff = (a - c) * 0.5
    root = xp.sqrt(half_diff * half_diff + b * b)
    return half_trace + root, half_trace - root


def eigenvalues_3x3(xp: Any, a00: Any, a01: Any, a02: Any, a11: Any, a12: Any, a22: Any) -> tuple[Any, Any, Any]:
    """Eigenvalues of a symmetric 3x3 matrix per pixel, largest first.

    NumPy arrays go to the compiled kernel, which reproduces fastfilters' float32 solver bit for
    bit; other array modules use :func:`eigenvalues_3x3_float64`.
    """
    if xp is np:
        entries = [np.ascontiguousarray(v, dtype=np.float32) for v in (a00, a01, a02, a11, a12, a22)]
        out = [np.empty(entries[0].shape, dtype=np.float32) for _ in range(3)]
        _ceigen.eigenvalues3(*(e.reshape(-1) for e in entries), *(o.reshape(-1) for o in out))
        return out[0], out[1], out[2]
    return eigenvalues_3x3_float64(xp, a00, a01, a02, a11, a12, a22)


def eigenvalues_3x3_float64(xp: Any, a00: Any, a01: Any, a02: Any, a11: Any, a12: Any, a22: Any) -> tuple[Any, Any, Any]:
    """Eigenvalues of a symmetric 3x3 matrix per pixel, largest first (trigonometric solution).

    Entries are divided by the largest absolute entry before solving and the eigenvalues scaled
    back. Computed in float64, returned as float32; within 1e-4 of the largest eigenvalue of
    fastfilters' float32 solver.
    """
    f64 = xp.float64
    m = [xp.asarray(v, dtype=f64) for v in (a00, a01, a02, a11, a12, a22)]
    scale = xp.abs(m[0])
    for v in m[1:]:
        scale = xp.maximum(scale, xp.abs(v))
    safe = xp.where(scale > 0, scale, 1.0)
    b00, b01, b02, b11, b12, b22 = (v / safe for v in m)
    q = (b00 + b11 + b22) / 3.0
    c00, c11, c22 = b00 - q, b11 - q, b22 - q
    off = b01 * b01 + b02 * b02 + b12 * b12
    p2 = c00 * c00 + c11 * c11 + c22 * c22 + 2.0 * off
    p = xp.sqrt(p2 / 6.0)
    safe_p = xp.where(p > 0, p, 1.0)
    d00, d11, d22 = c00 / safe_p, c11 / safe_p, c22 / safe_p
    d01, d02, d12 = b01 / safe_p, b02 / safe_p, b12 / safe_p
    det = d00 * (d11 * d22 - d12 * d12) - d01 * (d01 * d22 - d12 * d02) + d02 * (d01 * d12 - d11 * d02)
    r = xp.clip(det * 0.5, -1.0, 1.0)
    phi = xp.arccos(r) / 3.0
    e0 = q + 2.0 * p * xp.cos(phi)
    e2 = q + 2.0 * p * xp.cos(phi + 2.0 * math.pi / 3.0)
    e1 = 3.0 * q - e0 - e2
    return tuple((e * scale).astype(xp.float32) for e in (e0, e1, e2))
