"""Extract's held-back cleaning: block by block, it writes what cleaning the whole shard at once would,
each crop once, with back-filled faces and holes at block edges."""

from __future__ import annotations

import numpy as np

from faceswap.faces import smoothing
from faceswap.faces.align import MEAN_FACE_68
from faceswap.stages.extract_records import BLOCK, CleanedRecords


class _Crops:
    def __init__(self):
        self.cut = []

    def submit(self, key, rgb, matrix):
        self.cut.append((key, int(rgb[0, 0, 0]), np.asarray(matrix)))


def _record(frame: int, landmarks: np.ndarray) -> dict:
    return {"source": "s", "shard": "s-0", "frame": frame, "timestamp_s": frame / 25, "face": 0,
            "bbox": [0.0, 0.0, 1.0, 1.0], "landmarks": landmarks.reshape(-1).tolist(), "matrix": [0.0] * 6,
            "size": 64, "identity_distance": None, "crop": f"faces/s-0/{frame:08d}_00.jpg", "score": 1.0}


def test_held_back_cleaning_writes_what_cleaning_the_whole_shard_would():
    rng = np.random.default_rng(4)
    frames = 150
    fits = {f: MEAN_FACE_68 * 80 + [200 + 1.5 * f + 20 * np.sin(f / 9), 150] + rng.normal(0, 0.4, (68, 2))
            for f in range(frames)}
    centre = fits[70].mean(0)
    for f in range(68, 73):                 # a wrong fit for 5 frames, across what becomes a block's edge
        fits[f] = (fits[f] - fits[f].mean(0)) * 1.35 + fits[f].mean(0)
    del fits[100]                           # a frame the tracker missed
    late = set(range(40, 48))               # faces back-filled into frames still held, 2 frames late
    crops = _Crops()
    held = CleanedRecords(crops, size=64, centering="face", image_format="jpg", backfill_frames=2)
    small = np.zeros((8, 8, 3), np.uint8)   # the frame's first pixel names it, so a crop's frame is known
    for f in range(frames):
        rgb = small.copy()
        rgb[0, 0, 0] = f % 256
        held.add(f, f / 25, rgb)
        if f in fits and f not in late:
            held.record(f, _record(f, fits[f]))
        if f - 2 in late:
            assert held.holds(f - 2)
            held.record(f - 2, _record(f - 2, fits[f - 2]))
        if f == 3 * BLOCK + 40:
            assert len(held.records) > BLOCK  # blocks leave while the shard is still being read
    held.finish()

    whole = smoothing.clean_tracks({f: [p] for f, p in fits.items()})
    got = {r["frame"]: r for r in held.records}
    assert sorted(got) == list(range(frames)) == sorted(whole)
    for f in range(frames):
        assert np.allclose(np.reshape(got[f]["landmarks"], (68, 2)), whole[f][0][0], atol=1e-3), f
    assert abs(np.ptp(np.reshape(got[70]["landmarks"], (68, 2))[:, 0]) - 80 * np.ptp(MEAN_FACE_68[:, 0])) < 2
    assert np.allclose(np.reshape(got[70]["landmarks"], (68, 2)).mean(0), centre, atol=2)
    filled = got[100]
    assert filled["crop"] == "faces/s-0/00000100_00.jpg" and filled["timestamp_s"] == 4.0
    # every crop cut once, from its own frame, at its record's matrix
    assert sorted(key for key, _, _ in crops.cut) == sorted(r["crop"] for r in held.records)
    for key, first_pixel, matrix in crops.cut:
        frame = int(key.rsplit("/", 1)[1][:8])
        assert first_pixel == frame % 256 and np.allclose(matrix.reshape(-1), got[frame]["matrix"])
