"""Sharpness: is the swapped face as detailed as the footage, or a blurry patch?

    original, swapped frame + the face's landmark hull, eroded (seam left out)
      -> Laplacian of the grey image (3x3) -> sum of squared responses inside the region, both frames
      -> pooled over faces and frames -> sharpness ratio = swapped / original

The ratio of high-frequency energies: 1.0 = as sharp as the footage, a Gaussian blur of
sigma 2 gives ~0.1, values above 1 mean extra detail (noise, ringing, a sharpened swap).
The Laplacian responds to edges and texture (pores, eyelashes, teeth) and not to smooth
shading, so a face that keeps its lighting but loses its detail scores low. The hull is
eroded so the blend's seam, which adds an edge of its own, is not counted.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceswap.faces import align, masks

ERODE_IOD = 0.12  # erosion of the landmark hull, in inter-ocular distances


def region(landmarks: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Bool HxW: the face's landmark hull shrunk by ERODE_IOD inter-ocular distances."""
    px = max(1, int(round(ERODE_IOD * align.inter_ocular(np.asarray(landmarks).reshape(68, 2)))))
    return masks.erode(masks.hull_mask(landmarks, shape_hw), px) > 0.5


def laplacian_energy(rgb: np.ndarray, inside: np.ndarray) -> tuple[float, int]:
    """(sum of squared 3x3 Laplacian responses of the grey image inside ``inside``, pixels)."""
    if not inside.any():
        return 0.0, 0
    ys, xs = np.nonzero(inside)
    y0, y1 = max(0, ys.min() - 1), min(rgb.shape[0], ys.max() + 2)
    x0, x1 = max(0, xs.min() - 1), min(rgb.shape[1], xs.max() + 2)
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)
    sel = lap[inside[y0:y1, x0:x1]]
    return float(np.square(sel, dtype=np.float64).sum()), int(sel.size)


def face_energies(original: np.ndarray, swapped: np.ndarray, landmarks: np.ndarray) -> list[float]:
    """[swapped energy, original energy, pixels] of one face (original landmarks) for pooling."""
    inside = region(landmarks, original.shape[:2])
    e_s, n = laplacian_energy(swapped, inside)
    e_o, _ = laplacian_energy(original, inside)
    return [e_s, e_o, n]


def sharpness_ratio(energies) -> float | None:
    """Pooled swapped / original Laplacian energy over [e_s, e_o, n] triples; None without samples."""
    e_s = sum(float(e[0]) for e in energies)
    e_o = sum(float(e[1]) for e in energies)
    if not energies or sum(int(e[2]) for e in energies) == 0 or e_o <= 0:
        return None
    return e_s / e_o
