"""Closed-form Gaussian expectations for relu, leaky relu and erf.

They check the quadrature of ``sweep.theory.gaussian`` and document the standard results.
(u₁, u₂) is a centred Gaussian pair with variances q₁, q₂ and covariance Σ = c√(q₁q₂).
All functions are numpy, float64, and broadcast over their arguments.
"""

from __future__ import annotations

import numpy as np


def relu_moments(q):
    """Moments of relu(u), u ~ N(0, q).

    Returns:
      ``(E[φ], E[φ²], E[φ'²])`` = (√(q/2π), q/2, 1/2).
    """
    q = np.asarray(q, np.float64)
    return np.sqrt(q / (2 * np.pi)), q / 2, np.full_like(q, 0.5)


def relu_pair(q1, q2, cov):
    """E[relu(u₁) relu(u₂)] = √(q₁q₂)/(2π) · (√(1−c²) + (π − arccos c) c), the arc-cosine kernel."""
    q1, q2, cov = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (q1, q2, cov)))
    root = np.sqrt(q1 * q2)
    c = np.clip(cov / root, -1.0, 1.0)
    return root / (2 * np.pi) * (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c)


def relu_slope_pair(q1, q2, cov):
    """E[relu'(u₁) relu'(u₂)] = P(u₁ > 0, u₂ > 0) = (π − arccos c)/(2π)."""
    c = np.clip(np.asarray(cov, np.float64) / np.sqrt(np.asarray(q1, np.float64) * np.asarray(q2, np.float64)), -1, 1)
    return (np.pi - np.arccos(c)) / (2 * np.pi)


def leaky_relu_pair(slope, q1, q2, cov):
    """E[φ(u₁)φ(u₂)] for φ(u) = relu(u) − a·relu(−u): (1 + a²) K(Σ) − 2a K(−Σ), K = ``relu_pair``."""
    return (1 + slope**2) * relu_pair(q1, q2, cov) - 2 * slope * relu_pair(q1, q2, -np.asarray(cov))


def leaky_relu_slope_pair(slope, q1, q2, cov):
    """E[φ'(u₁)φ'(u₂)] for leaky relu: (1 + a²) P(Σ) + 2a P(−Σ), P = ``relu_slope_pair``."""
    return (1 + slope**2) * relu_slope_pair(q1, q2, cov) + 2 * slope * relu_slope_pair(q1, q2, -np.asarray(cov))


def erf_pair(q1, q2, cov):
    """E[erf(u₁) erf(u₂)] = (2/π) arcsin(2Σ / √((1 + 2q₁)(1 + 2q₂))); Σ = q gives E[erf(u)²]."""
    q1, q2, cov = (np.asarray(a, np.float64) for a in (q1, q2, cov))
    return 2 / np.pi * np.arcsin(2 * cov / np.sqrt((1 + 2 * q1) * (1 + 2 * q2)))


def erf_slope_pair(q1, q2, cov):
    """E[erf'(u₁) erf'(u₂)] = (4/π) / √((1 + 2q₁)(1 + 2q₂) − 4Σ²); Σ = q gives (4/π)/√(1 + 4q)."""
    q1, q2, cov = (np.asarray(a, np.float64) for a in (q1, q2, cov))
    return 4 / np.pi / np.sqrt((1 + 2 * q1) * (1 + 2 * q2) - 4 * cov**2)
