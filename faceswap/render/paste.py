"""Paste a generated face back into its frame, touching only pixels under its mask.

    face crop (model size) + 2x3 source->crop matrix + landmarks
        -> region of interest in the frame (the crop's footprint, clipped)
        -> warp crop into the ROI, hull mask (eroded, feathered inside the hull), minus what covers the face
           (the occlusion keep mask, warped; the hands, drawn in the ROI)
        -> frame[roi] = mask * face + (1 - mask) * frame[roi]

Work happens on the ROI only, so the cost does not grow with the frame size,
and pixels outside the mask are left exactly as decoded.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceswap.faces.align import invert, transform_points, warp_from_crop
from faceswap.faces.masks import erode, feather, hull_mask


def face_roi(matrix: np.ndarray, size: int, shape_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The frame box (x0, y0, x1, y1) covered by a ``size`` crop, clipped to the frame."""
    corners = transform_points(np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64), invert(matrix))
    h, w = shape_hw[:2]
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1, y1


def shift_matrix(matrix: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The same source->crop transform, for source coordinates relative to (x0, y0)."""
    m = np.asarray(matrix, np.float64).copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    return m


def blend_mask(landmarks: np.ndarray, roi: tuple[int, int, int, int], erode_px: int, feather_px: int) -> np.ndarray:
    """Hull mask in ROI coordinates, eroded, then feathered so it never reaches past the hull."""
    x0, y0, x1, y1 = roi
    pts = np.asarray(landmarks, np.float64).reshape(68, 2) - [x0, y0]
    mask = hull_mask(pts, (y1 - y0, x1 - x0))
    if feather_px <= 0:
        width = float(pts[:, 0].max() - pts[:, 0].min())
        feather_px = max(2, int(round(0.06 * width)))
    # Erode by the feather width first: the blur then fades out exactly at the hull edge.
    mask = erode(mask, max(0, erode_px) + feather_px)
    return feather(mask, feather_px)


def paste_face(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray, landmarks: np.ndarray,
               keep: np.ndarray | None = None, erode_px: int = 0, feather_px: int = 0,
               seamless: bool = False, hands: list | None = None) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Blend ``face`` (uint8 SxSx3, aligned by ``matrix``) into ``frame`` in place; ``hands`` ((21, 2) points
    in frame pixels) stay in front of it.

    Returns the ROI (x0, y0, x1, y1) and the blend mask over it, or None when nothing was pasted.
    """
    size = face.shape[0]
    roi = face_roi(matrix, size, frame.shape)
    if roi is None:
        return None
    x0, y0, x1, y1 = roi
    m = shift_matrix(matrix, x0, y0)
    shape = (y1 - y0, x1 - x0)
    warped = warp_from_crop(face, m, shape)
    mask = blend_mask(landmarks, roi, erode_px, feather_px)
    if keep is not None:  # (S, S) in [0, 1] in the face's crop: 0 where the footage stays (an occluder)
        mask *= warp_from_crop(keep.astype(np.float32), m, shape)
    if hands:
        from faceswap.faces.hands import hand_mask

        mask *= 1.0 - hand_mask([np.asarray(h, np.float64) - (x0, y0) for h in hands], shape)
    if not mask.any():
        return None
    original = frame[y0:y1, x0:x1]
    if seamless:
        binary = (mask > 0.05).astype(np.uint8) * 255
        ys, xs = np.nonzero(binary)
        center = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
        cloned = cv2.seamlessClone(warped, np.ascontiguousarray(original), binary, center, cv2.NORMAL_CLONE)
        warped = cloned
    # One pass, rounded to uint8; where the mask is 0 the pixel keeps its exact decoded value.
    mask = np.ascontiguousarray(mask, np.float32)
    frame[y0:y1, x0:x1] = cv2.blendLinear(warped, np.ascontiguousarray(original), mask, 1.0 - mask)
    return roi, mask


RIM_SHARE = 1 / 14  # of the crop's side: the band inside a learned mask's edge that fades into the fill
DEEP_SHARE = 1 / 8  # of the crop's side: past this far inside the face, the painted face is always kept


def fill_unpainted(face: np.ndarray, model_mask: np.ndarray) -> np.ndarray:
    """``face`` (uint8 SxSx3) with what its decoder painted as background (``model_mask`` below 0.5, fading
    in up to 0.75) filled from the face well inside it (push-pull: weighted averages up an image pyramid,
    then down). The face hull of the footage is often wider than the new face the decoder paints (the
    other person's cheeks sit elsewhere around the same eyes, nose and mouth); pasted as is, that band
    shows the other person's background as a bright or dark arc down the cheek. Everything the mask calls
    face keeps its painted pixels, outline included: the face's extent is part of who it is."""
    size = face.shape[0]
    inside = (model_mask >= 0.5).astype(np.uint8)
    if inside.all():
        return face
    face_area = inside.copy()
    flooded = np.pad(inside, 1)  # a ring of background joins every stretch of background on the crop's edge
    cv2.floodFill(flooded, np.zeros((size + 4, size + 4), np.uint8), (0, 0), 2)
    face_area[flooded[1:-1, 1:-1] == 0] = 1  # enclosed holes: inside the face's outline
    depth = cv2.distanceTransform(face_area, cv2.DIST_L2, 3)
    # Kept: what the mask calls face, fading in over RIM_SHARE of the crop inside its edge: at a young
    # model's resolution the new face's rim is half its own background (a bright arc against a white wall).
    keep = np.clip(depth / max(1.0, RIM_SHARE * size), 0.0, 1.0) * \
        np.clip((model_mask.astype(np.float32) - 0.5) / 0.25, 0.0, 1.0)
    # Deep inside the face nothing is filled, whatever the mask says there: a young mask is grey at the eyes,
    # nose and mouth, and filling them made a 150-step face unrecognisable to the detector (and to verify).
    keep = np.maximum(keep, (depth >= DEEP_SHARE * size).astype(np.float32))
    # The fill's colours come from a twelfth of the crop inside the mask: past its soft edge and the new
    # face's own outline (a jaw's shadow, a rim light), which smeared outwards would draw a line.
    grow = max(1, size // 12)
    source = cv2.erode(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    if not source.any():
        return face
    return blend_fill(face, keep, filled_from(face, source > 0))


def filled_from(face: np.ndarray, source: np.ndarray) -> np.ndarray:
    """float32 SxSx3: every pixel of ``face`` estimated from its ``source`` pixels (bool SxS, some true) by
    push-pull: weighted averages up an image pyramid, then back down, each level keeping what it knows."""
    weight = source.astype(np.float32)
    image = face.astype(np.float32) * weight[..., None]
    levels = []
    while min(weight.shape) > 2:
        levels.append((image, weight))
        image, weight = cv2.pyrDown(image), cv2.pyrDown(weight)
    estimate = image / np.maximum(weight, 1e-6)[..., None]
    for image, weight in reversed(levels):
        up = cv2.pyrUp(estimate, dstsize=(weight.shape[1], weight.shape[0]))
        known = np.clip(weight, 0.0, 1.0)[..., None]
        estimate = known * (image / np.maximum(weight, 1e-6)[..., None]) + (1.0 - known) * up
    return estimate


def blend_fill(face: np.ndarray, keep: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """uint8: ``face`` where ``keep`` (SxS in [0, 1]) is 1, ``fill`` where it is 0, mixed between."""
    out = keep[..., None] * face.astype(np.float32) + (1.0 - keep[..., None]) * fill
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def sharpen(face: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp mask: ``face + amount * (face - blur(face))``."""
    if amount <= 0:
        return face
    blurred = cv2.GaussianBlur(face, (0, 0), sigmaX=1.0)
    return cv2.addWeighted(face, 1.0 + amount, blurred, -amount, 0)
