"""The steady face: a swap averaged with the next frames' swaps where the footage did not change, kept where it did."""

from __future__ import annotations

import numpy as np
from skimage import data as skdata

from faceswap.render.steady import blurred, same_face, steady_face

SIZE = 64


def _crop() -> np.ndarray:
    import cv2

    face = cv2.resize(skdata.astronaut()[40:240, 140:340], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return (face * (185 / 255)).astype(np.uint8)


def test_a_still_face_loses_its_shimmer_and_a_change_is_kept_whole():
    """Footage that stands still (codec noise only) in the top half, and changes (a blink: a dark band) in
    the bottom half of the next frames; the swaps shimmer by +-12 levels everywhere. The top half comes out
    the average of the three swaps; the bottom half is the frame's own swap, to the level."""
    rng = np.random.default_rng(0)
    footage = _crop()
    nexts = []
    for k in (1, 2):
        f = np.clip(footage.astype(int) + rng.integers(-2, 3, footage.shape), 0, 255).astype(np.uint8)
        f[SIZE // 2:] += 70  # the change (the crop is at most 185: no clipping)
        nexts.append(f)
    swaps = [np.clip(footage.astype(int) + rng.choice([-12, 12], footage.shape), 0, 255).astype(np.uint8)
             for _ in range(3)]
    out = steady_face(swaps[0], blurred(footage), [(swaps[1], blurred(nexts[0])), (swaps[2], blurred(nexts[1]))])
    out = out.astype(int)
    mean = np.mean([s.astype(int) for s in swaps], axis=0)
    top, bottom = slice(4, SIZE // 2 - 6), slice(SIZE // 2 + 6, SIZE - 4)  # clear of the blur at the edges
    assert np.abs(out[top] - mean[top]).max() <= 2
    assert np.abs(out[bottom] - swaps[0][bottom].astype(int)).max() <= 1
    # the shimmer of the still half: from 12 levels off the footage to about 12 / sqrt(3)
    assert np.abs(out[top] - footage[top].astype(int)).mean() < 0.7 * 12


def test_nothing_ahead_changes_nothing():
    crop = _crop()
    assert steady_face(crop, blurred(crop), []) is crop


def test_the_same_face_is_the_nearest_within_a_quarter_of_its_width():
    rng = np.random.default_rng(1)
    face = rng.uniform(100, 200, (68, 2))  # about 100 px wide
    width = np.ptp(face[:, 0])
    near, far = face + (0.1 * width, 0), face + (0.5 * width, 0)
    assert same_face(face, [far, near]) == 1
    assert same_face(face, [far]) is None
    assert same_face(face, []) is None
