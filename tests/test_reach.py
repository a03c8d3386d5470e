"""Convert's reach: the new face is never pasted wider at the cheeks than its decoder learned to paint it,
so the background that surrounded the new identity's faces in training is not carried into the footage.
"""

from __future__ import annotations

import numpy as np
import pytest

from faceswap.config import ConvertConfig
from faceswap.faces.align import MEAN_FACE_68
from faceswap.faces.masks import hull_mask
from faceswap.model.export import OUTLINES_KEY, load_swapper, write_model
from faceswap.render import reach
from faceswap.render.face import render_face
from faceswap.storage import Store

SIZE = 128


def _face(turn: float = 0.0, width: float = 1.0, brow_turn: float = 0.0) -> np.ndarray:
    """The mean face in crop units (0..1), its jaw ``width`` times as wide; ``turn`` moves the right cheek
    outward (a head turned so that cheek shows more), ``brow_turn`` the right brow."""
    pts = MEAN_FACE_68 * 0.7 + 0.15
    mid = pts[27:31, 0].mean()
    pts[:17, 0] = mid + (pts[:17, 0] - mid) * width
    right = pts[:17, 0] > mid
    pts[:17, 0][right] += turn * (pts[:17, 0][right] - mid)
    brow = pts[17:27, 0] > mid
    pts[17:27, 0][brow] += brow_turn * (pts[17:27, 0][brow] - mid)
    return pts


def _outlines(n: int = 20, **kw) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([_face(**kw) + rng.normal(0, 0.003, (68, 2)) for _ in range(n)]).astype(np.float32)


def _render(outlines, brow_turn: float = 0.0):
    """A turned footage face (dark skin, grey background) replaced by a frontal new face painted over a white
    background, as a decoder trained on a person filmed from the front in front of a white wall paints."""
    footage = _face(turn=0.45, brow_turn=brow_turn) * SIZE
    frame = np.full((SIZE, SIZE, 3), 60, np.uint8)
    frame[hull_mask(footage, (SIZE, SIZE)) > 0.5] = (120, 80, 60)
    generated = np.full((SIZE, SIZE, 3), 250, np.uint8)
    generated[hull_mask(_face() * SIZE, (SIZE, SIZE)) > 0.5] = (200, 150, 120)
    out = frame.copy()
    # The reach alone: the colour fill (render/painted.py, tests/test_paste.py) hides that wall its own way.
    settings = ConvertConfig(video="v.mp4", faces="f", model="m", out="o.mp4", color="none", fill=False)
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    render_face(out, generated, frame.copy(), footage, identity, None, settings, 0, outlines=outlines)
    return frame, out, footage


def test_a_cheek_turned_past_the_learned_face_keeps_the_footage():
    frame, cut, footage = _render(_outlines())
    _, whole, _ = _render(None)
    # The footage's right cheek beyond the new face's frontal cheek: where the decoder painted its white wall.
    past = (hull_mask(footage, (SIZE, SIZE)) > 0.5) & (hull_mask(_face(width=1.1) * SIZE, (SIZE, SIZE)) < 0.5)
    past[:, : SIZE // 2] = False
    assert past.sum() > 60
    bright = lambda img: float(img[past].astype(float).mean())  # noqa: E731
    assert bright(whole) > bright(frame) + 40, "without the reach the white background is pasted onto the cheek"
    assert abs(bright(cut) - bright(frame)) < 12, "with it the footage's own cheek stays"
    # Inside the face both paste the new face alike.
    inner = hull_mask(_face(width=0.7) * SIZE, (SIZE, SIZE)) > 0.5
    assert np.abs(cut[inner].astype(int) - whole[inner].astype(int)).mean() < 1.0


def test_a_brow_turned_past_the_learned_face_does_not_carry_the_paste_out_with_it():
    """On a turned head the brow's outer end reaches out as far as the cheek: the hull from it down to the
    jaw must not bring the new face's background back in at the eye's height."""
    frame, cut, footage = _render(_outlines(), brow_turn=0.6)
    _, whole, _ = _render(None, brow_turn=0.6)
    past = (hull_mask(footage, (SIZE, SIZE)) > 0.5) & (hull_mask(_face(width=1.1) * SIZE, (SIZE, SIZE)) < 0.5)
    past[:, : SIZE // 2] = False
    upper = past.copy()
    upper[int(footage[36:48, 1].mean()):] = False  # from the brows down to the eyes
    assert upper.sum() > 20
    bright = lambda img: float(img[upper].astype(float).mean())  # noqa: E731
    assert bright(whole) > bright(frame) + 25, "without the reach the white background is pasted by the brow"
    assert abs(bright(cut) - bright(frame)) < 8, "with it the footage stays there"


def test_a_new_face_as_wide_as_the_footage_is_not_cut():
    assert reach.reach_mask(_face() * SIZE, SIZE, _outlines(width=1.15)) is None
    mask = reach.reach_mask(_face(turn=0.45) * SIZE, SIZE, _outlines())
    assert mask is not None and mask.shape == (SIZE, SIZE) and 0 <= mask.min() and mask.max() <= 1


def test_the_nearest_outlines_decide():
    # The new identity was filmed both frontal and turned: a turned footage face is matched to the turned
    # ones, and keeps its cheek; matched to frontal ones only, it loses it.
    turned = _face(turn=0.45) * SIZE
    hull = hull_mask(turned, (SIZE, SIZE)) > 0.5
    both = np.concatenate([_outlines(10), _outlines(10, turn=0.45, width=1.25)])  # wider by more than the inset
    assert reach.reach_mask(turned, SIZE, both) is None
    frontal = reach.reach_mask(turned, SIZE, _outlines())
    assert (frontal[hull] < 0.5).sum() > 0.08 * hull.sum()


def test_outlines_are_saved_with_the_model_and_bad_ones_refused(tmp_path):
    from faceswap.errors import InputError
    from faceswap.model.autoencoder import FaceSwapModel, preset

    cfg = preset("lite")
    model = FaceSwapModel(cfg)
    many = [p * 128 for p in _outlines(600)]
    saved = {"a": reach.outlines_of(many, 128), "b": reach.outlines_of(many[:5], 128)}
    assert saved["a"].shape == (reach.OUTLINES_MAX, 68, 2) and saved["b"].shape == (5, 68, 2)
    write_model(Store(str(tmp_path)), model.state_dict(), cfg, 128, "face", {"steps": 0}, saved)
    swapper = load_swapper(str(tmp_path))
    assert np.allclose(swapper.outlines["b"], saved["b"], atol=1e-3)
    Store(str(tmp_path)).write_bytes(OUTLINES_KEY, b'{"a": [[1, 2, 3]]}')
    with pytest.raises(InputError, match=r"outlines\.json: not valid face outlines"):
        load_swapper(str(tmp_path))
