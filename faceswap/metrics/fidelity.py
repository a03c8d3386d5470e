"""Which faces changed, and how well everything else was kept.

    original, swapped frame + one face's hull mask -> mean |diff| inside the hull -> changed?
    original, swapped frame + all faces' hulls (dilated) -> squared error outside -> PSNR dB

PSNR is pooled: errors and pixel counts are summed over frames first, so a
frame with a small visible background counts for what it shows.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceswap.faces import masks

PSNR_CAP_DB = 100.0  # identical pixels: PSNR is infinite; JSON has no inf, so cap it
# Mean absolute difference (0-255 levels, mean over RGB) inside a face hull above which the
# face counts as changed. H.264 at CRF 18-23 leaves ~1-2 levels of noise on a face;
# a swap or a recolouring moves it by tens.
CHANGED_THRESHOLD = 6.0


def face_difference(original: np.ndarray, swapped: np.ndarray, hull: np.ndarray) -> float:
    """Mean absolute RGB difference (levels) inside a face's hull mask (0 when the hull is empty).

    The hull is eroded a little so the edge of a feathered blend does not decide on
    its own; a swap changes the inside of the face.
    """
    inner = masks.erode(hull, max(1, int(round(0.05 * math.sqrt(float(hull.sum()))))))
    if inner.sum() < 16:
        inner = hull
    sel = inner > 0.5
    if not sel.any():
        return 0.0
    diff = np.abs(original[sel].astype(np.int16) - swapped[sel].astype(np.int16))
    return float(diff.mean())


def outside_mask(hulls: list[np.ndarray], shape_hw: tuple[int, int], margin_px: int) -> np.ndarray:
    """bool HxW: True outside every face hull grown by ``margin_px`` (True everywhere without faces)."""
    h, w = shape_hw[:2]
    if not hulls:
        return np.ones((h, w), dtype=bool)
    union = np.clip(np.sum(hulls, axis=0), 0, 1).astype(np.uint8)
    if margin_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin_px + 1, 2 * margin_px + 1))
        union = cv2.dilate(union, kernel)
    return union == 0


def squared_error(original: np.ndarray, swapped: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    """(sum of squared errors, number of samples) over the True pixels of ``mask`` (all channels)."""
    if not mask.any():
        return 0.0, 0
    d = original[mask].astype(np.float64) - swapped[mask].astype(np.float64)
    return float((d * d).sum()), int(d.size)


def psnr_db(sse: float, count: int, peak: float = 255.0) -> float | None:
    """PSNR in dB from pooled squared errors, capped at PSNR_CAP_DB (None when nothing was compared)."""
    if count <= 0:
        return None
    mse = sse / count
    if mse <= 0:
        return PSNR_CAP_DB
    return float(min(PSNR_CAP_DB, 10.0 * math.log10(peak * peak / mse)))
