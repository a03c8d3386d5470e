"""What covers the face: pixels the model cannot rebuild are kept from the footage.

    original crop + the model's own-identity rebuild of it (A through decoder A)
      -> both low-passed to what the model can paint -> per-pixel colour distance (CIELAB, delta E / 100)
      -> scale: a low percentile of the error inside the face hull (what the model rebuilds well)
      -> occluded where the error is OCCLUSION_RATIO x that scale and above ERROR_FLOOR
      -> specks removed, small holes closed, grown by a margin -> keep mask (1 face, 0 occluder), feathered

Why the rebuild: the autoencoder learned this person's face from the face set; a hand, a microphone or
a cup in front of it is not in its code, so its rebuild of those pixels is the face it expects, far from
what the frame shows. Skin it has learned (including the blur it paints everywhere at low steps) is
near; the threshold is relative to the face's own rebuild error, so a blurry young model does not
mask its whole face. A frame with nothing in front of the face keeps a mask of exactly 1.
"""

from __future__ import annotations

import cv2
import numpy as np

OCCLUSION_RATIO = 3.0    # error over the face's well-rebuilt level that marks an occluder
ERROR_FLOOR = 0.12       # and at least this colour distance (delta E 12: plainly another colour or shade)
SCALE_PERCENTILE = 30    # the face's rebuild error: low enough that a large occluder does not set it
MIN_AREA = 0.01          # occluders smaller than this share of the hull are specks


def occlusion_keep(original: np.ndarray, rebuilt: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """float32 (S, S) in [0, 1]: 0 where something covers the face in ``original``, 1 elsewhere.

    ``original``, ``rebuilt``: uint8 (S, S, 3) crops (the footage's, and the model's rebuild of it with
    its own identity's decoder); ``hull``: the face hull in the same crop (S, S), > 0.5 inside.
    """
    size = original.shape[0]
    inside = hull > 0.5
    if inside.sum() < 16:
        return np.ones(hull.shape, np.float32)
    # Compare at the scale of objects, not of detail: a young model paints no pores, lashes or teeth
    # edges, and that is not an occluder. Colour as the eye sees it: a grey microphone on skin differs
    # little in RGB brightness but plainly in hue.
    sigma = max(1.0, size / 24.0)
    lab = lambda rgb: cv2.cvtColor(cv2.GaussianBlur(rgb.astype(np.float32) / 255.0, (0, 0), sigma),  # noqa: E731
                                   cv2.COLOR_RGB2LAB)
    error = np.linalg.norm(lab(original) - lab(rebuilt), axis=2) / 100.0
    scale = float(np.percentile(error[inside], SCALE_PERCENTILE))
    occluded = ((error > max(ERROR_FLOOR, OCCLUSION_RATIO * scale)) & inside).astype(np.uint8)
    if not occluded.any():
        return np.ones(hull.shape, np.float32)
    k = max(3, int(round(size / 32)) | 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    occluded = cv2.morphologyEx(occluded, cv2.MORPH_OPEN, disc)    # specks: the model's misses, not objects
    occluded = cv2.morphologyEx(occluded, cv2.MORPH_CLOSE, disc)   # holes in an object
    count, labels, stats, _ = cv2.connectedComponentsWithStats(occluded, connectivity=8)
    big = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= MIN_AREA * inside.sum()]
    if not big:
        return np.ones(hull.shape, np.float32)
    occluded = np.isin(labels, big).astype(np.uint8)
    # The comparison's blur halves the error at the object's edge: grow it back by that blur, then feather
    # outward so the object's own pixels stay fully kept.
    grow = 2 * int(np.ceil(sigma)) + 1
    occluded = cv2.dilate(occluded, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    soft = cv2.GaussianBlur(occluded.astype(np.float32), (0, 0), sigma / 2.0)
    return 1.0 - np.maximum(soft, occluded)
