"""Occlusion masks: what the model cannot rebuild (a hand, an object) is kept from the footage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceswap.faces.align import alignment_matrix, transform_points, warp_to_crop
from faceswap.faces.masks import hull_mask
from faceswap.render.occlusion import occlusion_keep

SIZE = 64


@pytest.fixture(scope="module")
def face_crop(samples_dir):
    """The sample A face as the model sees it (64 px crop), its hull, and a rebuild like a young model's:
    blurred, slightly off in colour, with noise."""
    import json
    import os

    from faceswap.video.decode import iter_frames
    from faceswap.faces.backend import make_backend

    _, _, rgb = next(iter_frames(os.path.join(samples_dir, "a_small.mp4"), 0, 1))
    backend = make_backend("dlib")
    (pts, _), = backend.landmarks(rgb, backend.detect(rgb))
    m = alignment_matrix(pts, SIZE)
    crop = warp_to_crop(rgb, m, SIZE)
    hull = hull_mask(transform_points(pts, m), (SIZE, SIZE))
    rng = np.random.default_rng(0)
    rebuilt = cv2.GaussianBlur(crop, (0, 0), 2.0).astype(np.float32) * 0.95 + 6 + rng.normal(0, 4, crop.shape)
    return crop, hull, np.clip(rebuilt, 0, 255).astype(np.uint8)


def test_an_unoccluded_face_keeps_its_whole_mask(face_crop):
    crop, hull, rebuilt = face_crop
    assert (occlusion_keep(crop, rebuilt, hull) == 1.0).all()


@pytest.mark.parametrize("occluder", ["grey bar", "textured patch", "skin-toned disc"])
def test_an_object_in_front_of_the_face_is_kept_out_of_the_mask(face_crop, occluder):
    crop, hull, rebuilt = face_crop
    covered = np.zeros((SIZE, SIZE), bool)
    occluded = crop.copy()
    if occluder == "grey bar":
        covered[36:48, 8:56] = True
        occluded[covered] = 128
    elif occluder == "textured patch":
        covered[20:44, 30:54] = True
        rng = np.random.default_rng(1)
        occluded[covered] = rng.integers(0, 255, (covered.sum(), 3))
    else:  # a hand-coloured disc, smooth, a little darker than the face
        cv2.circle(covered.view(np.uint8), (24, 40), 11, 1, -1)
        occluded[covered] = (crop[hull > 0.5].mean(0) * 0.7).astype(np.uint8)
    keep = occlusion_keep(occluded, rebuilt, hull)
    inside = hull > 0.5
    core = cv2.erode(covered.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & inside
    far = cv2.dilate(covered.astype(np.uint8), np.ones((11, 11), np.uint8)) == 0
    assert keep[core].mean() < 0.1, f"{occluder}: the object is pasted over (keep {keep[core].mean():.2f})"
    assert keep[inside & far].mean() > 0.9, f"{occluder}: the face around it is not swapped"


# -- end to end: an object moving across a real face --------------------------------------------------

FIRST, FRAMES = 200, 40  # the woman's clip: frontal, nothing in front of her face


def _occluder_texture(size: int) -> np.ndarray:
    """A colourful, textured card: a patch of the astronaut still (her flag and suit)."""
    from skimage import data

    return cv2.resize(np.ascontiguousarray(data.astronaut()[300:460, 300:460]), (size, size))


def _write_clips(src: str, clean: str, occluded: str) -> dict[int, np.ndarray]:
    """The clip's frames FIRST.. as ``clean`` and, with a card sliding across the lower left of the face,
    as ``occluded`` (lossless); returns each frame's occluder mask (bool HxW)."""
    from faceswap.faces.backend import make_backend
    from faceswap.video.decode import iter_frames
    from faceswap.video.encode import SegmentWriter
    from faceswap.video.probe import probe

    info, backend, masks = probe(src), make_backend("dlib"), {}
    with SegmentWriter(clean, info.width, info.height, info.fps, lossless=True) as w_clean, \
            SegmentWriter(occluded, info.width, info.height, info.fps, lossless=True) as w_occ:
        for i, (_, _, rgb) in enumerate(iter_frames(src, FIRST, FIRST + FRAMES)):
            w_clean.write(rgb)
            (pts, _), = backend.landmarks(rgb, backend.detect(rgb))
            eye = float(np.linalg.norm(pts[36:42].mean(0) - pts[42:48].mean(0)))
            side = int(0.8 * eye)
            # From beside the cheek towards the mouth, over the clip.
            x = int(pts[48, 0] - 1.2 * eye + i / (FRAMES - 1) * 1.0 * eye)
            y = int(pts[33, 1])
            mask = np.zeros(rgb.shape[:2], bool)
            mask[y:y + side, x:x + side] = True
            frame = rgb.copy()
            frame[mask] = _occluder_texture(side)[: mask[y:y + side, x:x + side].shape[0],
                                                  : mask[y:y + side, x:x + side].shape[1]].reshape(-1, 3)
            w_occ.write(frame)
            masks[i] = mask
    return masks


def test_an_object_moving_across_a_real_face_stays_in_front(ray_local, real_clips, tmp_path):
    from faceswap.config import ConvertConfig, ExtractConfig, TrainConfig
    from faceswap.faces.masks import hull_mask
    from faceswap.stages.convert import run_convert
    from faceswap.stages.extract import run_extract
    from faceswap.stages.train import run_train
    from faceswap.storage import Store
    from faceswap.video.decode import iter_frames

    clean, occluded = str(tmp_path / "clean.mp4"), str(tmp_path / "occluded.mp4")
    masks = _write_clips(real_clips["WolfgangLanger_Pexels.mp4"], clean, occluded)
    faces = {name: str(tmp_path / f"faces_{name}") for name in ("a", "occluded", "b")}
    run_extract(ExtractConfig(inputs=[clean], out=faces["a"]), progress=False)
    run_extract(ExtractConfig(inputs=[occluded], out=faces["occluded"]), progress=False)
    run_extract(ExtractConfig(inputs=[real_clips["single_face.mp4"]], out=faces["b"]), progress=False)
    model = str(tmp_path / "model")
    run_train(TrainConfig(a=faces["a"], b=faces["b"], out=model, steps=150, checkpoint_every=150,
                          preview_every=150), progress=False)
    store = Store(faces["occluded"])
    hulls = {r["frame"]: hull_mask(np.asarray(r["landmarks"]).reshape(68, 2), masks[0].shape) > 0.5
             for k in store.list("alignments", suffix=".parquet") for r in store.read_parquet(k).to_pylist()}
    assert len(hulls) >= FRAMES - 2, "the face was lost behind the card"

    def changes(occlusion: bool) -> tuple[float, float]:
        """Mean change under the card, and in the rest of the face."""
        out = str(tmp_path / f"swapped_{occlusion}.mp4")
        run_convert(ConvertConfig(video=occluded, faces=faces["occluded"], model=model, out=out, lossless=True,
                                  occlusion=occlusion), progress=False)
        under, rest = [], []
        for (i, _, before), (_, _, after) in zip(iter_frames(occluded, 0, FRAMES), iter_frames(out, 0, FRAMES)):
            if i not in hulls:
                continue
            change = np.abs(after.astype(int) - before.astype(int)).mean(axis=2)
            card = cv2.erode(masks[i].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & hulls[i]
            face = hulls[i] & (cv2.dilate(masks[i].astype(np.uint8), np.ones((15, 15), np.uint8)) == 0)
            if card.sum() > 20:
                under.append(change[card].mean())
            rest.append(change[face].mean())
        assert len(under) >= FRAMES // 2
        return float(np.mean(under)), float(np.mean(rest))

    under, rest = changes(occlusion=True)
    assert under <= 6, f"the card is painted over: mean change {under:.1f} under it"
    assert rest > 8, f"the face around the card is not swapped: mean change {rest:.1f}"
    under_off, _ = changes(occlusion=False)  # the same convert without the mask paints over it
    assert under_off > 8, under_off
