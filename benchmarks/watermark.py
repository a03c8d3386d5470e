"""Watermark embed cost per face vs a plain decode + H.264 encode of the same frames.

    python benchmarks/watermark.py [n_frames]

Prints ms per face for `Watermarker.embed_frame` and `embed_crop` (256 px crop),
ms per frame for decode + encode (PyAV, libx264 CRF 18, 480x360), and the ratio.
Landmarks are detected once up front and are not part of the embed cost (convert
already has them).
"""

from __future__ import annotations

import sys
import tempfile
import time

import av
import cv2
import numpy as np
import skimage.data

from faceswap.provenance import watermark


def _frames(n_frames: int) -> list[np.ndarray]:
    head = skimage.data.astronaut()[30:250, 120:330]
    bg = cv2.resize(skimage.data.coffee(), (480, 360))
    out = []
    for i in range(n_frames):
        f = bg.copy()
        dx = 120 + int(20 * np.sin(i / 5))
        f[70:290, dx:dx + 210] = head
        out.append(f)
    return out


def main(n_frames: int = 60) -> None:
    frames = _frames(n_frames)
    aligner = watermark.FaceAligner()
    landmarks = [aligner.landmarks(f)[0] for f in frames]
    wm = watermark.Watermarker("1a2b3c4d5e6f7081")
    mask = np.ones(frames[0].shape[:2], np.float32)

    t0 = time.perf_counter()
    for f, pts in zip(frames, landmarks):
        wm.embed_frame(f, pts, mask)
    frame_ms = 1000 * (time.perf_counter() - t0) / n_frames

    crop_px = 256
    crops, crop_pts = [], []
    for f, pts in zip(frames, landmarks):
        m = watermark.similarity(pts, watermark.canonical_points(crop_px) * 0.75 + 0.125 * crop_px)
        crops.append(cv2.warpAffine(f, m, (crop_px, crop_px)))
        crop_pts.append(pts @ m[:, :2].T + m[:, 2])
    t0 = time.perf_counter()
    for c, pts in zip(crops, crop_pts):
        wm.embed_crop(c, pts)
    crop_ms = 1000 * (time.perf_counter() - t0) / n_frames

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/plain.mp4"
        t0 = time.perf_counter()
        with av.open(path, "w") as out:
            stream = out.add_stream("libx264", rate=25, options={"crf": "18"})
            stream.width, stream.height, stream.pix_fmt = 480, 360, "yuv420p"
            for f in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            out.mux(stream.encode(None))
        with av.open(path) as inp:
            decoded = sum(1 for fr in inp.decode(video=0) if fr.to_ndarray(format="rgb24") is not None)
        codec_ms = 1000 * (time.perf_counter() - t0) / n_frames
    assert decoded == n_frames
    print(f"embed_frame: {frame_ms:.2f} ms/face   embed_crop(256 px): {crop_ms:.2f} ms/face")
    print(f"decode+encode 480x360: {codec_ms:.2f} ms/frame   embed/codec: {frame_ms / codec_ms:.1%}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
