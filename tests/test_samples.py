"""Sample clips: files, barcodes, audio, faces where dlib can see them, the long clip."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import decord
import numpy as np
import pytest

from faceswap.samples import (
    BARCODE_BITS,
    SAMPLE_FPS,
    barcode_box,
    draw_barcode,
    read_barcode,
    write_long_clip,
    write_samples,
)
from faceswap.video.probe import probe

CLIPS = ("a_small.mp4", "a_bystander_small.mp4", "b_small.mp4")


def _frames(path: str) -> np.ndarray:
    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    del reader
    return frames


def test_write_samples_lists_every_file(samples_dir):
    written = write_samples(samples_dir)  # files exist already: kept, still listed
    assert set(written) == {*CLIPS, "refs/a.png", "refs/b.png"}
    for name, path in written.items():
        assert Path(path) == Path(samples_dir) / name and Path(path).stat().st_size > 0
    assert not list(Path(samples_dir).rglob(".*part*")), "temporary files left behind"


def test_samples_are_deterministic(samples_dir, tmp_path):
    again = write_samples(tmp_path)
    for name in (*CLIPS, "refs/a.png", "refs/b.png"):
        digest = [hashlib.sha256(Path(d, name).read_bytes()).hexdigest() for d in (samples_dir, tmp_path)]
        assert digest[0] == digest[1], name
    assert set(again) == {*CLIPS, "refs/a.png", "refs/b.png"}


@pytest.mark.parametrize("name", CLIPS)
def test_barcodes_read_back_in_order(samples_dir, name):
    frames = _frames(str(Path(samples_dir) / name))
    assert frames.shape == (100, 288, 384, 3)
    assert [read_barcode(f) for f in frames] == list(range(100))


@pytest.mark.parametrize("name", CLIPS)
def test_audio_lasts_as_long_as_video(samples_dir, name):
    info = probe(Path(samples_dir) / name)
    assert info.frames == 100 and info.fps == SAMPLE_FPS and not info.vfr
    assert info.has_audio
    assert abs(info.audio_duration_s - info.duration_s) < 1 / SAMPLE_FPS


def test_barcode_round_trip_and_rejects():
    for height, width in ((288, 384), (180, 320), (720, 1280), (100, 200)):
        frame = np.full((height, width, 3), 128, np.uint8)
        assert read_barcode(frame) is None  # plain grey: no code
        for index in (0, 1, 12345, 270_000, 2**BARCODE_BITS - 1):
            draw_barcode(frame, index)
            assert read_barcode(frame) == index
    noise = np.random.default_rng(0).integers(0, 256, (288, 384, 3), dtype=np.uint8)
    assert read_barcode(noise) is None
    assert read_barcode(np.zeros((20, 30, 3), np.uint8)) is None  # too small to hold one


def test_refs_hold_one_detectable_face(samples_dir):
    dlib = pytest.importorskip("dlib")
    detector = dlib.get_frontal_face_detector()
    for identity in ("a", "b"):
        ref = cv2.cvtColor(cv2.imread(str(Path(samples_dir) / "refs" / f"{identity}.png")), cv2.COLOR_BGR2RGB)
        assert len(detector(ref, 0)) == 1, identity


@pytest.mark.parametrize("name, faces", [("a_small.mp4", 1), ("b_small.mp4", 1), ("a_bystander_small.mp4", 2)])
def test_faces_found_by_hog_and_clear_of_barcode(samples_dir, name, faces):
    dlib = pytest.importorskip("dlib")
    detector = dlib.get_frontal_face_detector()
    frames = _frames(str(Path(samples_dir) / name))[::9]
    x0, y0, x1, y1 = barcode_box(288, 384)
    for frame in frames:
        boxes = detector(frame, 0)  # no upsampling, as extract runs it
        assert len(boxes) == faces
        assert max(b.width() for b in boxes) >= 100
        for b in boxes:
            assert b.bottom() < y0 or b.left() > x1, "a face overlaps the barcode"


def test_long_clip_streams_barcoded_frames(tmp_path):
    path = write_long_clip(tmp_path / "long.mp4", seconds=6)
    info = probe(path)
    assert (info.frames, info.width, info.height, info.fps) == (150, 320, 180, 25.0)
    assert info.has_audio and abs(info.audio_duration_s - 6.0) < 1 / 25
    assert [read_barcode(f) for f in _frames(path)] == list(range(150))
