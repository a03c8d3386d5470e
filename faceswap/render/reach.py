"""How wide the new face may be pasted: no wider at the cheeks than its decoder has learned to paint it.

    the footage's face (68 points in the model's crop) + the new identity's outlines (the landmarks of its
    training faces, in the same aligned crop, saved with the model)
      -> the NEAREST outlines in shape (pose and expression)
      -> each cheek point of the footage's jaw kept no further from the face's midline than those outlines'
         (less CHEEK_INSET of the crop): the chin, the brows and everything inside are the footage's
      -> each brow's outer end no further out than the (cut) temple below it
      -> the hull of those points, feathered: (S, S) in [0, 1], multiplied into the paste mask

Why: a decoder paints, around the face it learned, whatever surrounded that face in its training crops.
When the footage's head is turned further than any face of the new identity (a person filmed only from
the front, replacing one who turns 20 deg), the footage's hull reaches past the painted cheek, and the
paste carried that person's background into the face: a bright rim down one cheek on the real-footage
benchmark's sheet. There the footage's own cheek is kept instead.
"""

from __future__ import annotations

import numpy as np

OUTLINES_MAX = 512  # outlines saved per identity (evenly strided over its face set)
NEAREST = 8         # outlines averaged for one face: one nearest would jump from frame to frame
# Of the crop's side. A decoder's painted cheek is soft and blends into the background it learned over
# its last few pixels, so the paste stops CHEEK_INSET inside the learned cheek line, and fades over FEATHER.
CHEEK_INSET = 0.03
FEATHER = 0.03
CHEEKS = np.r_[0:6, 11:17]  # the jaw from each ear down to below the mouth's corners: not the chin
MIDLINE = slice(27, 31)  # the nose bridge
BROWS = slice(17, 27)
TEMPLE_RIGHT, TEMPLE_LEFT = [0, 1, 2], [14, 15, 16]  # the jaw's top points, at the eyes' height
CHIN = slice(5, 12)


def outlines_of(landmarks: list[np.ndarray], crop_size: int) -> np.ndarray:
    """(N, 68, 2) float32 in crop units (0..1) from a face set's landmarks in crop pixels; at most
    OUTLINES_MAX, evenly strided so a long film's faces are all represented."""
    pts = np.stack([np.asarray(p, np.float32).reshape(68, 2) for p in landmarks]) / float(crop_size)
    if len(pts) > OUTLINES_MAX:
        pts = pts[np.linspace(0, len(pts) - 1, OUTLINES_MAX).round().astype(int)]
    return pts


def reach_points(points: np.ndarray, outlines: np.ndarray) -> np.ndarray:
    """The footage's (68, 2) points (crop units) with each cheek point of the jaw pulled in to at most the NEAREST
    outlines' distance from the midline less CHEEK_INSET, each brow's outer end to at most its temple's, and the
    brows and chin moved out by FEATHER (there the footage's own hull and feather decide)."""
    pts = np.asarray(points, np.float64).reshape(68, 2)
    out = np.asarray(outlines, np.float64).reshape(-1, 68, 2)
    nearest = out[np.argsort(((out - pts) ** 2).sum((1, 2)))[:NEAREST]].mean(0)
    mid = pts[MIDLINE, 0].mean()
    side = pts[CHEEKS, 0] - mid
    learned = np.maximum(np.abs(nearest[CHEEKS, 0] - nearest[MIDLINE, 0].mean()) - CHEEK_INSET, 0.0)
    cut = pts.copy()
    cut[CHEEKS, 0] = mid + np.sign(side) * np.minimum(np.abs(side), learned)
    # On a turned head the far brow's outer end reaches as far out as the cheek: the hull from it down to the
    # jaw's top would carry the paste past a cut cheek, at the eye's height (the bright line stayed there).
    for temple in (TEMPLE_RIGHT, TEMPLE_LEFT):
        limit = np.abs(cut[temple, 0] - mid).max()
        brows = (np.sign(cut[BROWS, 0] - mid) == np.sign(cut[temple, 0].mean() - mid)) & \
            (np.abs(cut[BROWS, 0] - mid) > limit)
        cut[BROWS, 0][brows] = mid + np.sign(cut[BROWS, 0][brows] - mid) * limit
    cut[BROWS, 1] -= FEATHER
    cut[CHIN, 1] += FEATHER
    return cut


def reach_mask(points_px: np.ndarray, size: int, outlines: np.ndarray) -> np.ndarray | None:
    """(size, size) float32 in [0, 1]: 1 where the new face may be pasted (see the module's docstring),
    or None where the footage's cheeks are nowhere wider than learned; ``points_px``: the footage's face
    in the model's crop, pixels."""
    from faceswap.faces.masks import feather, hull_mask

    pts = np.asarray(points_px, np.float64).reshape(68, 2) / size
    cut = reach_points(pts, outlines)
    if np.allclose(cut[CHEEKS, 0], pts[CHEEKS, 0]):
        return None
    return feather(hull_mask(cut * size, (size, size)), max(1, int(round(FEATHER * size))))
