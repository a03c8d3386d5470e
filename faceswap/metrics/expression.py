"""Expression error: how far the swapped eyes and mouth sit from the original ones.

    original, swapped 68 landmarks -> Umeyama similarity (swapped -> original, fitted on
    the 51 inner points) -> mean distance over eyes + mouth (points 36-67) / inter-ocular distance

The similarity fit removes position, in-plane rotation and scale, so what is
left is shape: eyes opening or closing, the mouth moving. 0 for identical landmarks.
"""

from __future__ import annotations

import numpy as np

from faceswap.faces import align

EYES_MOUTH = slice(36, 68)


def expression_error(original: np.ndarray, swapped: np.ndarray) -> float:
    """Mean eye/mouth landmark distance after similarity alignment, in inter-ocular distances."""
    orig = np.asarray(original, dtype=np.float64).reshape(68, 2)
    swap = np.asarray(swapped, dtype=np.float64).reshape(68, 2)
    iod = align.inter_ocular(orig)
    if iod <= 0:
        return float("nan")
    t = align.umeyama(swap[align.INNER], orig[align.INNER])
    fitted = swap @ t[:2, :2].T + t[:2, 2]
    return float(np.linalg.norm(fitted[EYES_MOUTH] - orig[EYES_MOUTH], axis=1).mean() / iod)


# Eye and mouth openness of one face, for face-set coverage (faceswap inspect).
_EYES = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47))  # corner, top, top, corner, bottom, bottom
EYES_CLOSED_BELOW = 0.18   # eye aspect ratio: ~0.25-0.35 open, ~0.03-0.15 shut or squeezed (lids meet, lashes stay)
MOUTH_OPEN_ABOVE = 0.25    # inner-lip gap over inner mouth width: ~0 closed, ~0.2-0.3 a toothy smile or speech, 0.5+ wide open


def eye_openness(landmarks: np.ndarray) -> float:
    """Eye aspect ratio (Soukupova and Cech, 2016), the mean of both eyes: lid gap / eye width."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    ratios = []
    for c0, t0, t1, c1, b1, b0 in _EYES:
        gap = np.linalg.norm(pts[t0] - pts[b0]) + np.linalg.norm(pts[t1] - pts[b1])
        ratios.append(gap / max(2.0 * np.linalg.norm(pts[c0] - pts[c1]), 1e-6))
    return float(np.mean(ratios))


def mouth_openness(landmarks: np.ndarray) -> float:
    """Inner-lip gap (points 61-67, 62-66, 63-65, averaged) over the inner mouth width (60-64)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    gap = np.mean([np.linalg.norm(pts[a] - pts[b]) for a, b in ((61, 67), (62, 66), (63, 65))])
    return float(gap / max(np.linalg.norm(pts[60] - pts[64]), 1e-6))
