"""A steady swapped face: each face averaged with the same face's next swaps where the footage did not change.

    the swap of a face at frame t + the footage's crop of it (both aligned: model-size crops)
    + the same face's swaps and footage crops at t+1 .. t+K
      -> per pixel, neighbour k's weight = exp(-(change of the footage's crop from t to t+k / TOLERANCE)^2)
         (both crops blurred to the scale of features, so codec noise is not change)
      -> swap_t = (swap_t + sum_k weight_k * swap_t+k) / (1 + sum_k weight_k)

A decoder answers small changes of its input (codec noise, a flicker of light, a refitted alignment) with
larger changes of its output, most where it paints what it saw least (a pose or an expression the new
identity's photos lack): the pasted face shimmers and its features wobble where the footage's stood still.
Where the footage's face did not change, its swaps are averaged; where it did (a blink, speech, a hand
coming in, a cut), a neighbour's weight falls to nothing and the face's own swap is kept, so real motion
passes unchanged. The crops are compared and averaged as aligned (the face at the same place in each),
so a moving head is not smeared.

It looks ahead only: a segment then needs the few frames after its end (decoding on), never the group of
pictures before its start, and a film comes out pixel for pixel the same however it is cut.
"""

from __future__ import annotations

import cv2
import numpy as np

TOLERANCE = 6.0  # levels of 255: the footage's (blurred) change at which a neighbour's weight is 1/e
MATCH_SHARE = 0.25  # a face at t+k is the same face when its landmarks' centre is this share of its width away


def blurred(crop: np.ndarray) -> np.ndarray:
    """A crop at the scale the footage's change is judged at (float32)."""
    sigma = max(1.0, crop.shape[0] / 48.0)
    return cv2.GaussianBlur(crop.astype(np.float32), (0, 0), sigma)


def steady_face(generated: np.ndarray, footage: np.ndarray, ahead: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``generated`` (uint8 SxSx3, the swap of the footage's crop whose ``blurred`` view is ``footage``)
    averaged with the swaps in ``ahead`` ([(swap, blurred footage crop)] of the same face in the next frames)
    where the footage is unchanged. Each crop is blurred once (convert keeps the view with its swap)."""
    if not ahead:
        return generated
    total = generated.astype(np.float32)
    weights = np.ones(generated.shape[:2], np.float32)
    for swap, later in ahead:
        change = np.abs(later - footage).mean(axis=2)
        weight = np.exp(-np.square(change / TOLERANCE))
        total += weight[..., None] * swap.astype(np.float32)
        weights += weight
    return np.clip(np.rint(total / weights[..., None]), 0, 255).astype(np.uint8)


def same_face(landmarks: np.ndarray, candidates: list[np.ndarray]) -> int | None:
    """Index of the face in ``candidates`` (landmarks (68, 2) each) that is ``landmarks``' face in a nearby
    frame: the nearest by centre, within MATCH_SHARE of the face's width; None when none is.

    Deliberately not ``faces.smoothing.link_tracks``: that links greedily from a range's first frame, so
    where faces cross, its answer for a frame can depend on where the range began; this match looks at the
    two frames alone, so a film's steady faces are the same however convert cuts it into segments."""
    pts = np.asarray(landmarks, np.float64).reshape(68, 2)
    centre, width = pts.mean(0), float(np.ptp(pts[:, 0]))
    best, best_d = None, MATCH_SHARE * max(width, 1.0)
    for i, other in enumerate(candidates):
        d = float(np.linalg.norm(np.asarray(other, np.float64).reshape(68, 2).mean(0) - centre))
        if d <= best_d:
            best, best_d = i, d
    return best
