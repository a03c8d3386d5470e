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
