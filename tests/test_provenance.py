"""Provenance: container tags, the face watermark, verify and the visible label.

One synthetic clip (the skimage astronaut's head moving over a background,
40 frames 480x360) is built per module: swapped with an identity "model" by
warping an aligned crop back under a hull mask, once plain and once with the
watermark embedded under that mask, both encoded with H.264 CRF 18.
"""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from faceswap.errors import InputError
from faceswap.provenance import label, metadata, verify, watermark

av = pytest.importorskip("av")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
skdata = pytest.importorskip("skimage.data")

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
FINGERPRINT = "1a2b3c4d5e6f7081"
CROP_PX = 256
LAUNDER = ["-map_metadata", "-1", "-c:v", "libx264", "-crf", "28", "-vf", "scale=iw/2:ih/2"]


def _encode(path, frames, crf=18, extra=()):
    h, w = frames[0].shape[:2]
    cmd = [FFMPEG, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", "25", "-i", "-", "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p", *extra, str(path)]
    subprocess.run(cmd, input=np.stack(frames).tobytes(), check=True)
    return path


def _ffmpeg(*args):
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", *map(str, args)], check=True)


def _astronaut_clip(n_frames=40, w=480, h=360):
    head = skdata.astronaut()[30:250, 120:330].astype(np.float32)
    hh, hw = head.shape[:2]
    yy, xx = np.mgrid[0:hh, 0:hw]
    alpha = ((((xx - hw / 2) / (hw / 2)) ** 2 + ((yy - hh / 2) / (hh / 2)) ** 2) < 1).astype(np.float32)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 5)[..., None]
    bg = cv2.resize(skdata.coffee(), (w, h)).astype(np.float32)
    frames = []
    for i in range(n_frames):
        dx, dy = round(120 + 40 * np.sin(i / 9)), round(70 + 15 * np.cos(i / 13))
        f = bg.copy()
        f[dy:dy + hh, dx:dx + hw] = f[dy:dy + hh, dx:dx + hw] * (1 - alpha) + head * alpha
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


def _swap(frame, landmarks, wm):
    """What convert does: aligned crop -> (model) -> warp back under a mask -> watermark.

    The mark is embedded after the blend (`embed_frame`, under the same mask): QIM
    needs the final host; marking the crop before the warp back measured 5.7 < 6.
    """
    matrix = watermark.similarity(landmarks, watermark.canonical_points(CROP_PX) * 0.75 + 0.125 * CROP_PX)
    crop = cv2.warpAffine(frame, matrix, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR)
    h, w = frame.shape[:2]
    back = cv2.warpAffine(crop, matrix, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(landmarks).astype(np.int32)), 255)
    mask = cv2.GaussianBlur(cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(np.float32) / 255, (0, 0), 3)
    mask[mask < 0.01] = 0
    m = mask[..., None]
    out = np.where(m > 0, np.rint(frame * (1 - m) + back * m), frame).astype(np.uint8)
    if wm is not None:
        out = wm.embed_frame(out, landmarks, mask)
    return out, mask


@pytest.fixture(scope="module")
def aligner():
    return watermark.FaceAligner()


@pytest.fixture(scope="module")
def clip(tmp_path_factory, aligner):
    out = tmp_path_factory.mktemp("provenance")
    wm = watermark.Watermarker(FINGERPRINT)
    plain, marked, masks = [], [], []
    for frame in _astronaut_clip():
        faces = aligner.landmarks(frame)
        assert len(faces) == 1
        p, mask = _swap(frame, faces[0], None)
        m, _ = _swap(frame, faces[0], wm)
        plain.append(p)
        marked.append(m)
        masks.append(mask)
    marked_mp4 = _encode(out / "marked.mp4", marked)
    laundered_mp4 = out / "laundered.mp4"
    _ffmpeg("-i", marked_mp4, *LAUNDER, laundered_mp4)
    return {"plain": plain, "marked": marked, "masks": masks, "plain_mp4": _encode(out / "plain.mp4", plain),
            "marked_mp4": marked_mp4, "laundered_mp4": laundered_mp4}


# ---------------------------------------------------------------- metadata

@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_tags_written_by_ffmpeg_are_read_back(tmp_path, ext):
    src = _encode(tmp_path / "src.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 3)
    tags = metadata.provenance_tags("abcdef0123456789")
    dst = tmp_path / f"tagged.{ext}"
    _ffmpeg("-i", src, "-c", "copy", *metadata.ffmpeg_args(tags), dst)
    read = metadata.read_tags(str(dst))
    for key in ("comment", "description", "synthetic_media", "ai_generated", "faceswap_model", "faceswap_version"):
        assert read[key] == tags[key], key
    assert read["creation_time"].startswith(tags["creation_time"][:19])
    assert metadata.is_marked_by_metadata(read)
    assert not metadata.is_marked_by_metadata(metadata.read_tags(str(src)))


def test_payload_for_is_fingerprint_prefix():
    assert watermark.payload_for("1a2b3c4d") == bytes.fromhex("1a2b3c")
    assert len(watermark.payload_for("not-hex")) == 3
    with pytest.raises(ValueError):
        watermark.Watermarker(b"\x00\x01")


# ---------------------------------------------------------------- watermark

def test_embed_changes_only_the_face_and_keeps_psnr(clip):
    psnr_db = []
    for plain, marked, mask in zip(clip["plain"], clip["marked"], clip["masks"]):
        inside = mask > 0
        assert np.array_equal(plain[~inside], marked[~inside])
        mse = np.mean((plain[inside].astype(np.float64) - marked[inside]) ** 2)
        psnr_db.append(10 * np.log10(255 ** 2 / mse))
    assert min(psnr_db) >= 40.0, psnr_db


def test_embed_frame_respects_mask():
    frame = skdata.astronaut()
    faces = watermark.FaceAligner().landmarks(frame)
    mask = np.zeros(frame.shape[:2], np.float32)
    mask[150:170, 200:240] = 1
    out = watermark.Watermarker(FINGERPRINT).embed_frame(frame, faces[0], mask)
    assert np.array_equal(out[mask == 0], frame[mask == 0])
    assert not np.array_equal(out, frame)


def test_marked_clip_is_detected_with_payload(clip, aligner):
    report = verify.verify(str(clip["marked_mp4"]), max_frames=30, aligner=aligner)
    assert report["marked"] and report["by"] == ["watermark"], report
    assert report["payload"] == FINGERPRINT[:6]
    assert report["score"] > watermark.SCORE_MIN
    assert "payload 1a2b3c" in verify.format_report(report)


@pytest.mark.xfail(reason="QIM mark does not yet survive CRF 28 + half-size re-encoding (see watermark docstring)",
                   strict=False)
def test_laundered_clip_is_still_detected(clip, aligner):
    report = verify.verify(str(clip["laundered_mp4"]), max_frames=30, aligner=aligner)
    assert report["tags"].get("synthetic_media") is None
    assert report["marked"] and report["payload"] == FINGERPRINT[:6], report


def test_unmarked_clip_is_not_detected(clip, aligner):
    report = verify.verify(str(clip["plain_mp4"]), max_frames=30, aligner=aligner)
    assert not report["marked"], report
    assert abs(report["score"]) < 4


def test_noise_video_is_not_detected(tmp_path, aligner):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(100)]
    report = verify.verify(str(_encode(tmp_path / "noise.mp4", frames)), max_frames=100, aligner=aligner)
    assert not report["marked"] and report["payload"] is None


def test_grace_hopper_is_not_detected(aligner):
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        grace = np.asarray(Image.open(fh).convert("RGB"))
    result = watermark.detect([grace], aligner=aligner)
    assert result.faces_checked == 1
    assert not result.found and result.score < watermark.SCORE_MIN


# ---------------------------------------------------------------- verify errors, label

def test_verify_rejects_bad_inputs(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    for path in (tmp_path / "missing.mp4", empty, text):
        with pytest.raises(InputError, match=str(path.name)):
            verify.verify(str(path))


def test_label_draws_a_box_in_the_corner():
    frame = np.full((360, 480, 3), 200, np.uint8)
    out = label.draw_label(frame, "AI-GENERATED")
    assert out.shape == frame.shape and np.array_equal(frame, np.full_like(frame, 200))
    changed = np.argwhere((out != frame).any(-1))
    assert changed[:, 0].min() > 360 / 2 and changed[:, 1].min() > 480 / 2
    assert out[changed[:, 0], changed[:, 1]].min() < 200 and out.max() == 255
    with pytest.raises(ValueError):
        label.draw_label(frame, corner="middle")
