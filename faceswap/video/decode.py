"""Decode an exact frame range with decord, as displayed.

    path, [start, stop) -> one decord VideoReader -> seek_accurate(start) (decodes from the keyframe before)
        -> next() sequentially -> rotate by the display matrix unless this decord build already did
        -> (index, timestamp_s, rgb uint8 HxWx3) ... -> reader released

Reading sequentially after one accurate seek decodes every frame of the range
exactly once; per-index random access would re-seek.

Rotation: source builds of decord ignore the display matrix, while the PyPI wheel
(bundling FFmpeg 4.1, which still exported it as a "rotate" tag) applies it. Which
one is loaded is checked once per process on a tiny rotated clip, so frames are
rotated exactly once either way.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import decord
import numpy as np

from faceswap.errors import InputError
from faceswap.video.encode import SegmentWriter
from faceswap.video.ffmpeg import run_ffmpeg
from faceswap.video.probe import rotation as display_rotation


@functools.cache
def decord_applies_rotation() -> bool:
    """Whether the loaded decord turns frames by the display matrix itself (checked on a 180-degree clip)."""
    pattern = np.zeros((16, 16, 3), np.uint8)
    pattern[:, 8:] = 255  # stored: black left, white right; displayed after 180 degrees: white left
    with tempfile.TemporaryDirectory(prefix="faceswap-rot-") as tmp:
        stored, tagged = Path(tmp) / "stored.mp4", Path(tmp) / "tagged.mp4"
        with SegmentWriter(stored, 16, 16, 25, lossless=True) as writer:
            writer.write(pattern)
        run_ffmpeg(["-display_rotation", "180", "-i", str(stored), "-c", "copy", str(tagged)], "decord rotation check")
        reader = decord.VideoReader(str(tagged), ctx=decord.cpu(0), num_threads=1)
        frame = reader[0].asnumpy()
        del reader
    return bool(frame[:, :8].mean() > frame[:, 8:].mean())


def iter_frames(
    path: str | os.PathLike, start: int, stop: int, *, rotation: int | None = None, threads: int = 1
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (frame index, presentation timestamp in s, RGB uint8 HxWx3) for start <= index < stop.

    `rotation` (counter-clockwise degrees, as `probe` reports) is read from the file when None.
    `threads` defaults to 1: decoding runs inside Ray actors that each hold a fraction of a CPU.
    Timestamps are the stream's own, so variable-frame-rate sources keep their true timing.
    """
    path = os.fspath(path)
    if rotation is None:
        rotation = display_rotation(path)
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
    except decord.DECORDError as exc:
        raise InputError(f"{path}: decord cannot open it ({str(exc).splitlines()[0]})") from exc
    try:
        total = len(reader)
        if not 0 <= start <= stop <= total:
            raise InputError(f"{path}: frame range [{start}, {stop}) outside the decoded 0..{total} frames")
        if start == stop:
            return
        timestamps_s = reader.get_frame_timestamp(range(start, stop))[:, 0]
        reader.seek_accurate(start)
        turns = (rotation // 90) % 4
        if turns and decord_applies_rotation():
            turns = 0
        for offset, index in enumerate(range(start, stop)):
            rgb = reader.next().asnumpy()
            if turns:
                rgb = np.ascontiguousarray(np.rot90(rgb, turns))  # rot90 turns counter-clockwise
            yield index, round(float(timestamps_s[offset]), 6), rgb  # decord gives float32 seconds
    finally:
        del reader  # frees the demuxer and decoder now, not at the next garbage collection
