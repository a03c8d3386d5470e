"""Colour correction carries the footage's own colour: its mean and spread, and none at all when
the footage is grayscale.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from faceswap.render.color import METHODS, match_color


def _saturation(rgb: np.ndarray, region: np.ndarray) -> float:
    return float(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1][region].mean())


@pytest.fixture(scope="module")
def faces():
    """A colourful generated face (the astronaut's) and the footage's face (Grace Hopper's, from the
    sample photos), cut to the same square, with a round face region."""
    import matplotlib.cbook

    generated = cv2.resize(skimage.data.astronaut()[30:230, 150:350], (128, 128), interpolation=cv2.INTER_AREA)
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = cv2.cvtColor(cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    footage = cv2.resize(hopper[80:380, 100:400], (128, 128), interpolation=cv2.INTER_AREA)
    mask = np.zeros((128, 128), np.float32)
    cv2.circle(mask, (64, 64), 50, 1.0, -1)
    return generated, footage, mask


@pytest.mark.parametrize("method", [m for m in METHODS if m != "none"])
def test_grayscale_footage_gets_a_grayscale_face(faces, method):
    generated, footage, mask = faces
    grey = np.repeat(cv2.cvtColor(footage, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    region = mask > 0.5
    assert _saturation(generated, region) > 40
    out = match_color(generated, grey, mask, method)
    assert _saturation(out, region) < 1.5
    # Its lightness follows the footage's.
    assert abs(out[region].mean() - grey[region].mean()) < 6


@pytest.mark.parametrize("method", ["reinhard", "mean", "hist"])
def test_colour_footage_keeps_colour_and_takes_its_mean(faces, method):
    generated, footage, mask = faces
    region = mask > 0.5
    out = match_color(generated, footage, mask, method)
    assert _saturation(out, region) > 0.5 * _saturation(footage, region)
    assert np.abs(out[region].mean(0) - footage[region].mean(0)).max() < 8
