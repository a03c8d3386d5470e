"""Temporal stability: does the swapped face flicker more than the original did?

    frames t-1, t of both videos + face region at t
      -> sum |S_t - S_t-1| and sum |O_t - O_t-1| inside the region
      -> pooled over frames -> flicker ratio = swapped / original

1.0 means the swapped face changes from frame to frame exactly as much as the
original face did (the real motion); above 1 it flickers or jitters.

    landmarks of a face at t-1 and t in both videos -> mean landmark displacement
      -> pooled over faces -> jitter ratio = swapped / original (1.0: moves as the footage does)
"""

from __future__ import annotations

import numpy as np


def frame_change(prev: np.ndarray, cur: np.ndarray, region: np.ndarray) -> tuple[float, int]:
    """(sum of absolute RGB changes, samples) between two frames inside ``region`` (bool HxW)."""
    if not region.any():
        return 0.0, 0
    d = np.abs(cur[region].astype(np.int16) - prev[region].astype(np.int16))
    return float(d.sum()), int(d.size)


def flicker_ratio(swapped_change: float, original_change: float, samples: int) -> float | None:
    """Pooled swapped / original frame-to-frame change.

    None when no frame pair was measured, or when the original face region never
    changed but the swapped one did (the ratio is unbounded).
    """
    if samples <= 0:
        return None
    if original_change <= 0:
        return 1.0 if swapped_change <= 0 else None
    return float(swapped_change / original_change)


def landmark_motion(prev: np.ndarray, cur: np.ndarray) -> float:
    """Mean displacement (px) of the 68 landmarks between two frames."""
    a = np.asarray(prev, dtype=np.float64).reshape(68, 2)
    b = np.asarray(cur, dtype=np.float64).reshape(68, 2)
    return float(np.linalg.norm(b - a, axis=1).mean())


def jitter_ratio(motions) -> float | None:
    """Pooled swapped / original landmark motion over [swapped px, original px] pairs.

    1.0: the swapped face moves exactly as much as the footage's face; above 1 it wobbles (its
    landmarks move where the footage's did not); None without measured pairs or original motion.
    """
    pairs = [m for m in motions if m is not None]
    s, o = sum(float(m[0]) for m in pairs), sum(float(m[1]) for m in pairs)
    if not pairs or o <= 0:
        return None
    return s / o
