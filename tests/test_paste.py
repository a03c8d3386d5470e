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
from faceswap.render.paste import paste_face

SIZE = 64


def _scene():
    """A grey frame, a face's landmarks in it (the mean face, 80 px wide) and the crop matrix."""
    from faceswap.faces.align import MEAN_FACE_68

    frame = np.full((200, 200, 3), 90, np.uint8)
    landmarks = MEAN_FACE_68 * 80 + 60
    return frame, landmarks, alignment_matrix(landmarks, SIZE)


def test_the_models_mask_keeps_the_background_it_painted_out_of_the_frame():
    """A decoder B that painted its own (bright) background over the right cheek, and says so in its mask:
    the cheek keeps the footage, the rest of the face is the new one."""
    frame, landmarks, m = _scene()
    face = np.full((SIZE, SIZE, 3), 160, np.uint8)
    crop_pts = transform_points(landmarks, m)
    cheek_x = int(np.round(crop_pts[:, 0].max() - 6))     # the last 6 crop px of the face's right side
    face[:, cheek_x:] = 250
    model_mask = np.ones((SIZE, SIZE), np.float32)
    model_mask[:, cheek_x - 2:] = 0.0

    plain, masked = frame.copy(), frame.copy()
    assert paste_face(plain, face, m, landmarks) is not None
    assert paste_face(masked, face, m, landmarks, model_mask=model_mask) is not None
    assert plain.max() > 200                               # without the mask, the bright edge is pasted ...
    assert masked.max() <= 160                             # ... with it, none of it reaches the frame
    centre = tuple(np.round(landmarks[30]).astype(int))    # the nose: the new face in both
    assert masked[centre[1], centre[0]].tolist() == plain[centre[1], centre[0]].tolist() == [160, 160, 160]


def test_a_checkpoint_of_another_version_of_the_same_preset_says_so():
    old = dataclasses.replace(preset("lite"), learn_mask=True)
    state = {"model": FaceSwapModel(old).state_dict(), "optimizer": {}, "step": 10, "model_config": old.to_json()}
    with pytest.raises(ConfigError, match=r"ckpt\.pt: checkpoint holds another version of the 'lite' preset "
                                          r"\(learn_mask True vs False\)"):
        read_checkpoint(weights_bytes(state), "ckpt.pt", preset("lite"))
