"""Hands in front of faces: found by extract (faces/hands.py), kept in front of the new face by convert."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceswap.faces.hands import FINGERS, hand_mask


def _open_hand(x: float = 200.0, y: float = 300.0, palm: float = 60.0) -> np.ndarray:
    """21 points of an upright open hand: wrist at (x, y), fingers up, the palm ``palm`` px wide."""
    pts = np.zeros((21, 2))
    pts[0] = (x, y)
    bases = [(x - 0.55 * palm, y - 0.45 * palm), (x - 0.45 * palm, y - 1.0 * palm), (x - 0.15 * palm, y - 1.05 * palm),
             (x + 0.15 * palm, y - 1.0 * palm), (x + 0.45 * palm, y - 0.9 * palm)]
    for finger, (bx, by) in zip(FINGERS, bases):
        joints = finger[1:] if finger[0] == 0 else finger
        for k, j in enumerate(joints):
            pts[j] = (bx + (bx - x) * 0.1 * k, by - 0.35 * palm * k)
    return pts


def test_the_hand_mask_covers_every_finger_and_the_palm_and_not_the_face_beside_it():
    pts = _open_hand()
    mask = hand_mask([pts], (400, 400))
    for finger in FINGERS:
        for a, b in zip(finger[:-1], finger[1:]):
            for t in np.linspace(0, 1, 5):
                x, y = (1 - t) * pts[a] + t * pts[b]
                assert mask[int(round(y)), int(round(x))] == 1.0, (a, b, t)
    centre = pts[[0, 5, 9, 13, 17]].mean(0)
    assert mask[int(centre[1]), int(centre[0])] == 1.0
    # Beside the hand, more than a palm's width away: the face, untouched.
    assert mask[150:250, 330:].max() == 0.0 and mask[150:250, :70].max() == 0.0
    # The edge fades outwards only: between the fingers the footage fades in, it never reaches into them.
    assert 0.0 < mask[int(pts[6, 1]), int((pts[6, 0] + pts[10, 0]) / 2)] <= 1.0
    assert hand_mask([], (10, 10)).max() == 0.0


def test_the_mask_scales_with_the_hand():
    small, large = hand_mask([_open_hand(palm=30)], (400, 400)), hand_mask([_open_hand(palm=90)], (400, 400))
    assert 6 < (large == 1).sum() / (small == 1).sum() < 12  # area grows with the square of the size


# -- on real footage -----------------------------------------------------------------------------------

def _hands_per_frame(faces_uri: str) -> dict[int, list[np.ndarray]]:
    from faceswap.faceset import FaceSet, frame_hands

    faceset = FaceSet(faces_uri)
    return frame_hands(faceset.store, faceset.shards(), 0, 1 << 30)


def test_extract_finds_her_hand_where_it_covers_her_face_and_no_hand_elsewhere(ray_local, real_clips, tmp_path):
    """The woman's clip: her hand is over her mouth, nose and eyes from about frame 60 to 228; before and
    after, and in the man's clip (a cut to a cartoon included), there is no hand."""
    from faceswap.config import ExtractConfig
    from faceswap.stages.extract import run_extract

    woman, man = str(tmp_path / "woman"), str(tmp_path / "man")
    run_extract(ExtractConfig(inputs=[real_clips["WolfgangLanger_Pexels.mp4"]], out=woman), progress=False)
    hands = _hands_per_frame(woman)
    covered = [i for i in range(70, 221) if hands.get(i)]
    assert len(covered) >= 0.98 * 151, f"her hand found on {len(covered)} of 151 frames"
    stray = sorted(i for i in hands if hands[i] and not 50 <= i < 236)
    assert not stray, f"hands found where there are none: frames {stray[:10]}"
    # Training leaves her hand out of the loss: each sample of a frame with a hand carries it, in the crop.
    from faceswap.faceset import FaceSet
    from faceswap.model.dataset import decode_sample

    faceset = FaceSet(woman)
    records, _ = faceset.training_records()
    with_hand = [r for r in records if r.hands]
    assert len(with_hand) == sum(1 for i in hands if hands[i])
    covered = [decode_sample(faceset.store, r, 64)[1] for r in with_hand[40:120:10]]
    assert all(((m[..., 2] > 127) & (m[..., 0] > 0)).sum() > 0.1 * (m[..., 0] > 0).sum() for m in covered)
    assert not any(r.hands for r in faceset.training_records(hands=False)[0])
    run_extract(ExtractConfig(inputs=[real_clips["face_noface.mov"]], out=man), progress=False)
    assert not any(_hands_per_frame(man).values())


def test_extract_without_hands_writes_none(ray_local, samples_dir, tmp_path):
    import os

    from faceswap.config import ExtractConfig
    from faceswap.stages.extract import run_extract
    from faceswap.storage import Store

    out = str(tmp_path / "faces")
    run_extract(ExtractConfig(inputs=[os.path.join(samples_dir, "a_small.mp4")], out=out, hands=False),
                progress=False)
    assert Store(out).list("hands") == [] and _hands_per_frame(out) == {}


# -- end to end: her real hand moving across her face ---------------------------------------------------

HAND_FRAME = 104            # her hand over her nose and cheek
FIRST, FRAMES = 200, 40     # frontal, nothing in front of her face


def _cut_hand(src: str) -> tuple[np.ndarray, np.ndarray]:
    """Her hand in frame HAND_FRAME: its pixels (RGB) and where they are (bool), as the hand model sees it,
    shrunk inside the model's generous outline so the cut-out is hand, not cheek."""
    from faceswap.faces.backend import make_backend
    from faceswap.faces.hands import HandLandmarker, HandTracker, load_hand_models
    from faceswap.video.decode import iter_frames

    (_, _, still), = iter_frames(src, 40, 41)  # her face before the hand comes up; she barely moves
    box = make_backend("dlib").detect(still)
    tracker = HandTracker(HandLandmarker(load_hand_models()), detect_every=1)
    for index, _, rgb in iter_frames(src, 56, HAND_FRAME + 1):  # from before the hand comes up
        hands = tracker.update(rgb, box, index)
    assert hands, "no hand in the source frame"
    where = hand_mask([hands[0].points], rgb.shape) >= 1.0
    where = cv2.erode(where.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    return rgb, where


def _write_clip(src: str, out: str) -> dict[int, np.ndarray]:
    """Frames FIRST.. of her clip with her hand (from HAND_FRAME) sliding sideways across her face (lossless);
    returns each frame's hand pixels (bool HxW)."""
    from faceswap.video.decode import iter_frames
    from faceswap.video.encode import SegmentWriter
    from faceswap.video.probe import probe

    hand_rgb, hand_at = _cut_hand(src)
    info, masks = probe(src), {}
    with SegmentWriter(out, info.width, info.height, info.fps, lossless=True) as writer:
        for i, (_, _, rgb) in enumerate(iter_frames(src, FIRST, FIRST + FRAMES)):
            shift = int(round(-40 + 50 * i / (FRAMES - 1)))  # px: from beside her nose towards her far cheek
            at = np.roll(hand_at, shift, axis=1)
            frame = rgb.copy()
            frame[at] = np.roll(hand_rgb, shift, axis=1)[at]
            writer.write(frame)
            masks[i] = at
    return masks


def test_her_hand_moving_across_her_face_stays_in_front_of_the_new_face(ray_local, real_clips, tmp_path):
    """A real hand in every frame of her face set: training leaves it out of the loss (the hands extract
    found), and convert keeps it in front of the new face, where the hand model finds it."""
    from faceswap.config import ConvertConfig, ExtractConfig, TrainConfig
    from faceswap.faces.masks import hull_mask
    from faceswap.stages.convert import run_convert
    from faceswap.stages.extract import run_extract
    from faceswap.stages.train import run_train
    from faceswap.storage import Store
    from faceswap.video.decode import iter_frames

    clip = str(tmp_path / "hand.mp4")
    masks = _write_clip(real_clips["WolfgangLanger_Pexels.mp4"], clip)
    faces_a, faces_b = str(tmp_path / "faces_a"), str(tmp_path / "faces_b")
    run_extract(ExtractConfig(inputs=[clip], out=faces_a), progress=False)
    run_extract(ExtractConfig(inputs=[real_clips["single_face.mp4"]], out=faces_b), progress=False)
    hands = _hands_per_frame(faces_a)
    assert sum(bool(hands.get(i)) for i in range(FRAMES)) >= FRAMES - 2, "the pasted hand was not found"
    model = str(tmp_path / "model")
    run_train(TrainConfig(a=faces_a, b=faces_b, out=model, steps=150, checkpoint_every=150, preview_every=150),
              progress=False)
    store = Store(faces_a)
    hulls = {r["frame"]: hull_mask(np.asarray(r["landmarks"]).reshape(68, 2), masks[0].shape) > 0.5
             for k in store.list("alignments", suffix=".parquet") for r in store.read_parquet(k).to_pylist()}
    out = str(tmp_path / "swapped.mp4")
    run_convert(ConvertConfig(video=clip, faces=faces_a, model=model, out=out, lossless=True), progress=False)
    under, rest = [], []
    for (i, _, before), (_, _, after) in zip(iter_frames(clip, 0, FRAMES), iter_frames(out, 0, FRAMES)):
        if i not in hulls:
            continue
        change = np.abs(after.astype(int) - before.astype(int)).mean(axis=2)
        hand = masks[i] & hulls[i]
        face = hulls[i] & (cv2.dilate(masks[i].astype(np.uint8), np.ones((25, 25), np.uint8)) == 0)
        if hand.sum() > 50:
            under.append(change[hand].mean())
        rest.append(change[face].mean())
    assert len(under) >= FRAMES // 2
    assert np.mean(under) <= 6, f"her hand is painted over: mean change {np.mean(under):.1f} under it"
    assert np.mean(rest) > 8, f"the face beside her hand is not swapped: mean change {np.mean(rest):.1f}"


def test_extract_without_the_hand_models_is_one_line_naming_the_way_out(run_cli, samples_dir, tmp_path):
    """No cached models and no registry (an offline laptop): exit 2 before any work, one line that names
    --no-hands, nothing written."""
    import os

    cache, out = tmp_path / "empty-cache", tmp_path / "faces"
    proc = run_cli("extract", os.path.join(samples_dir, "a_small.mp4"), "--out", out,
                   env={"FACESWAP_CACHE": str(cache), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path),
                        "PIP_EXTRA_INDEX_URL": "", "PIP_INDEX_URL": "http://127.0.0.1:9/simple"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("faceswap: error: mediapipe==0.10.14") and "--no-hands" in lines[0]
    assert not out.exists() or not any(out.rglob("*.parquet"))
    assert not [p for p in cache.rglob("*") if p.is_file()]  # nothing half-fetched left in the cache


def test_loading_the_hand_models_prints_nothing_but_keeps_what_else_is_written():
    """LiteRT announces its XNNPACK delegate on fd 2 of every extract actor; Ray forwards it after the
    command's own last line. It is dropped where it is printed; other output of that moment is kept."""
    import subprocess
    import sys

    code = ("import os\n"
            "from faceswap.faces.hands import HandLandmarker, load_hand_models\n"
            "from faceswap.native_logs import dropped_lines\n"
            "import re\n"
            "models = load_hand_models()\n"
            "with dropped_lines(re.compile(rb'noise')):\n"
            "    os.write(2, b'noise 1\\nkept 1\\n')\n"
            "HandLandmarker(models)\n"
            "os.write(2, b'after\\n')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == "kept 1\nafter\n", proc.stderr
