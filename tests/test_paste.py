"""Pasting a generated face: only where the model painted face, never the new face's own background."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from faceswap.errors import ConfigError
from faceswap.faces.align import alignment_matrix, transform_points
from faceswap.model.autoencoder import FaceSwapModel, preset
from faceswap.model.checkpoints import read_checkpoint
from faceswap.model.export import weights_bytes
from faceswap.render.paste import RIM_SHARE, fill_unpainted

SIZE = 64


def _scene():
    """A grey frame, a face's landmarks in it (the mean face, 80 px wide) and the crop matrix."""
    from faceswap.faces.align import MEAN_FACE_68

    frame = np.full((200, 200, 3), 90, np.uint8)
    landmarks = MEAN_FACE_68 * 80 + 60
    return frame, landmarks, alignment_matrix(landmarks, SIZE)


def test_background_the_decoder_painted_inside_the_hull_is_filled_with_its_face():
    """Decoder B painted its own bright background over the right cheek of the footage's hull, and says so in
    its mask: the cheek is swapped all the same, in the new face's colour, with no bright arc."""
    from faceswap.config import ConvertConfig
    from faceswap.render.face import render_face

    frame, landmarks, m = _scene()
    face = np.full((SIZE, SIZE, 3), 160, np.uint8)
    crop_pts = transform_points(landmarks, m)
    cheek_x = int(np.round(crop_pts[:, 0].max() - 6))     # the last 6 crop px of the hull's right side
    face[:, cheek_x:] = 250
    model_mask = np.ones((SIZE, SIZE), np.float32)
    model_mask[:, cheek_x:] = 0.0
    original = np.full((SIZE, SIZE, 3), 90, np.uint8)
    settings = ConvertConfig(video="v", faces="f", model="m", out="o", color="none")

    plain = render_face(frame.copy(), face, original, landmarks, m, None, settings, 0)
    filled = render_face(frame.copy(), face, original, landmarks, m, model_mask, settings, 0)
    uniform = render_face(frame.copy(), np.full_like(face, 160), original, landmarks, m, None, settings, 0)
    assert plain.max() > 200                               # without the mask, the bright band is pasted ...
    # ... with it, the frame is what a face of the new face's colour all the way to the hull gives
    assert np.abs(filled.astype(int) - uniform).max() <= 2


def test_fill_keeps_the_painted_face_exactly():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[8:56, 12:52] = 1.0
    out = fill_unpainted(face, mask)
    r = int(np.ceil(SIZE * RIM_SHARE))
    face_past_rim = np.s_[8 + r:56 - r, 12 + r:52 - r]
    assert np.array_equal(out[face_past_rim], face[face_past_rim])  # what it calls face, past its rim: untouched
    assert not np.array_equal(out[8, 12:52], face[8, 12:52])       # the rim fades into the fill
    assert not np.array_equal(out[:8], face[:8])                   # outside: filled
    assert np.array_equal(fill_unpainted(face, np.ones_like(mask)), face)
    # A young mask unsure of an eye (grey, deep inside the face) keeps the eye as painted.
    unsure = mask.copy()
    unsure[26:32, 22:30] = 0.3
    assert np.array_equal(fill_unpainted(face, unsure)[face_past_rim], face[face_past_rim])


def test_a_checkpoint_of_another_version_of_the_same_preset_says_so():
    old = dataclasses.replace(preset("lite"), learn_mask=True, mask_head=True)
    state = {"model": FaceSwapModel(old).state_dict(), "optimizer": {}, "step": 10, "model_config": old.to_json()}
    with pytest.raises(ConfigError, match=r"ckpt\.pt: checkpoint holds another version of the 'lite' preset "
                                          r"\(learn_mask True vs False, mask_head True vs False\)"):
        read_checkpoint(weights_bytes(state), "ckpt.pt", preset("lite"))
