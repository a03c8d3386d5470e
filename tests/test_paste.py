"""Pasting a generated face: only where the model painted face, never the new face's own background."""

from __future__ import annotations

import dataclasses

import cv2
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

    plain = render_face(frame.copy(), face, original, landmarks, m, None, dataclasses.replace(settings, fill=False), 0)
    filled = render_face(frame.copy(), face, original, landmarks, m, model_mask, settings, 0)
    uniform = render_face(frame.copy(), np.full_like(face, 160), original, landmarks, m, None, settings, 0)
    assert plain.max() > 200                               # without the mask, the bright band is pasted ...
    # ... with it, the frame is what a face of the new face's colour all the way to the hull gives
    assert np.abs(filled.astype(int) - uniform).max() <= 2


def _maskless_decoders_face(crop_pts: np.ndarray, background) -> tuple[np.ndarray, np.ndarray]:
    """What a decoder with no mask paints for the footage's face: its own face, a fifth narrower than the
    footage's hull about the same midline (textured skin, dark eyes and brows, dark hair above), and around
    it ``background``, the colour it learned around faces. Returns the crop and where the face is."""
    from faceswap.faces.masks import hull_mask

    rng = np.random.default_rng(1)
    mid = crop_pts[27:31, 0].mean()
    narrow = crop_pts.copy()
    narrow[:17, 0] = mid + (narrow[:17, 0] - mid) * 0.8
    painted = hull_mask(narrow, (SIZE, SIZE)) > 0.5
    face = np.empty((SIZE, SIZE, 3), np.uint8)
    face[:] = background
    skin = np.array([185, 135, 115]) + rng.normal(0, 6, (SIZE, SIZE, 1))
    face[painted] = np.clip(skin, 0, 255).astype(np.uint8)[painted]
    face[: int(crop_pts[17:27, 1].min()) - 1] = (40, 30, 25)            # hair above the brows
    for group in (slice(17, 22), slice(22, 27), slice(36, 42), slice(42, 48)):  # brows and eyes
        for x, y in np.round(crop_pts[group]).astype(int):
            face[max(y - 1, 0):y + 1, max(x - 1, 0):x + 2] = (45, 35, 30)
    return face, painted


def test_a_maskless_decoders_own_background_in_the_cheek_is_found_by_its_colours_and_filled():
    """A model that learns no mask (lite) paints the new face narrower than the footage's hull and its white
    wall between them: the band is filled with the new face's skin, by default, and the painted face, its
    brows and eyes are pasted exactly as painted."""
    from faceswap.config import ConvertConfig
    from faceswap.faces.masks import hull_mask
    from faceswap.render.face import render_face
    from faceswap.render.painted import painted_face

    frame, landmarks, m = _scene()
    crop_pts = transform_points(landmarks, m)
    face, painted = _maskless_decoders_face(crop_pts, (250, 248, 240))
    hull = hull_mask(crop_pts, (SIZE, SIZE)) > 0.5
    eye_line = crop_pts[36:48, 1].mean()
    band = hull & ~painted
    band[: int(np.ceil(eye_line))] = False
    assert band.sum() > 60
    estimate = painted_face(face, crop_pts, hull.astype(np.float32))
    assert (estimate[band] < 0.5).mean() > 0.9 and (estimate[painted] >= 0.5).all() and (estimate[~hull] == 1).all()

    original = np.full((SIZE, SIZE, 3), 90, np.uint8)
    settings = ConvertConfig(video="v", faces="f", model="m", out="o", color="none", feather_px=1)
    plain = render_face(frame.copy(), face, original, landmarks, m, None, dataclasses.replace(settings, fill=False), 0)
    filled = render_face(frame.copy(), face, original, landmarks, m, None, settings, 0)
    # The band, back in the frame: its middle (away from the feathered hull edge and the face's own rim).
    from faceswap.faces.align import invert

    ys, xs = np.nonzero(band & (cv2.distanceTransform(hull.astype(np.uint8), cv2.DIST_L2, 3) > 2)
                        & (cv2.distanceTransform((~painted).astype(np.uint8), cv2.DIST_L2, 3) > 1))
    at = np.round(transform_points(np.c_[xs, ys].astype(np.float64), invert(m))).astype(int)
    assert len(at) > 20
    assert plain[at[:, 1], at[:, 0]].mean() > 230, "with --no-fill the wall is pasted down the cheek"
    skin = np.array([185, 135, 115])
    assert np.abs(filled[at[:, 1], at[:, 0]].astype(int) - skin).mean(0).max() < 20, "filled: the new face's skin"
    # Well inside the painted face, the brows and eyes included, the paste is the same pixel for pixel.
    core = cv2.erode(painted.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    ys, xs = np.nonzero(core)
    at = np.round(transform_points(np.c_[xs, ys].astype(np.float64), invert(m))).astype(int)
    assert np.array_equal(filled[at[:, 1], at[:, 0]], plain[at[:, 1], at[:, 0]])


@pytest.mark.parametrize("wall", [(185, 135, 115), (60, 45, 35)], ids=["skin-coloured", "dark"])
def test_a_background_the_colour_of_the_face_or_darker_fills_nothing(wall):
    """Where the decoder's background looks like its face (a skin-coloured wall) there is no arc to hide:
    colour cannot tell them apart. Where it is darker than the face it reads as shadow or hair (the new
    identity's own hair over the cheek is part of how that person looks). Either way the paste is the face
    as painted."""
    from faceswap.config import ConvertConfig
    from faceswap.render.face import render_face

    frame, landmarks, m = _scene()
    face, _ = _maskless_decoders_face(transform_points(landmarks, m), wall)
    original = np.full((SIZE, SIZE, 3), 90, np.uint8)
    settings = ConvertConfig(video="v", faces="f", model="m", out="o", color="none")
    plain = render_face(frame.copy(), face, original, landmarks, m, None, dataclasses.replace(settings, fill=False), 0)
    filled = render_face(frame.copy(), face, original, landmarks, m, None, settings, 0)
    assert np.abs(filled.astype(int) - plain).max() <= 12 and np.abs(filled.astype(int) - plain).mean() < 0.2


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
