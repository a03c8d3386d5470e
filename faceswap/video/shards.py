"""Split a video into bounded, contiguous frame ranges (shards), the unit of work and of resume.

    VideoInfo.frames, keyframes -> target length (shard_frames, or auto from workers)
        -> ideal boundaries k * target -> snap each to a nearby keyframe
        -> Shard(source, uri, index, start, stop) covering [0, frames) once, in order

Snapping starts to keyframes lets each shard's decoder begin without decoding
frames that belong to the shard before; a boundary with no keyframe nearby stays
where it is (the decoder then seeks from the previous keyframe, correct but slower).
"""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass

from faceswap.video.probe import VideoInfo

DEFAULT_SHARD_FRAMES = 300  # ~12 s at 25 fps: a few seconds of work per shard, cheap to redo on failure
MIN_SHARD_FRAMES = 50  # below this, per-shard overhead (open, seek, write) dominates


@dataclass(frozen=True)
class Shard:
    """Frames [start, stop) of one input video."""

    source: str
    uri: str
    index: int
    start: int
    stop: int

    @property
    def id(self) -> str:
        return f"{self.source}-{self.index:05d}"

    @property
    def frames(self) -> int:
        return self.stop - self.start


def source_id(uri: str) -> str:
    """A stable, filesystem-safe id for an input: its file stem plus 8 hex of the URI's sha1."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")[:40] or "video"
    return f"{safe}-{hashlib.sha1(uri.encode('utf-8')).hexdigest()[:8]}"


def target_shard_frames(frames: int, shard_frames: int = 0, workers: int = 1) -> int:
    """Shard length to aim for: `shard_frames` if given, else DEFAULT_SHARD_FRAMES shrunk so
    that a long enough video gives every worker at least two shards."""
    if shard_frames > 0:
        return shard_frames
    per_two_each = -(-frames // max(1, 2 * workers))
    return max(MIN_SHARD_FRAMES, min(DEFAULT_SHARD_FRAMES, per_two_each))


def plan_video_shards(
    source: str, uri: str, info: VideoInfo, keyframes: list[int], shard_frames: int = 0, workers: int = 1
) -> list[Shard]:
    """Shards covering [0, info.frames) exactly once, in order; lengths within [target/2, 3*target/2]
    (a shorter video gives one shorter shard)."""
    total = info.frames
    if total <= 0:
        return []
    target = target_shard_frames(total, shard_frames, workers)
    keys = sorted(k for k in set(keyframes) if 0 < k < total)
    half = (target + 1) // 2
    starts = [0]
    while (ideal := starts[-1] + target) <= total - half:  # a shorter tail joins the last shard
        starts.append(_snap(ideal, keys, lo=starts[-1] + half, hi=min(ideal + target // 2, total - half)))
    stops = starts[1:] + [total]
    return [Shard(source, uri, i, a, b) for i, (a, b) in enumerate(zip(starts, stops))]


def _snap(ideal: int, keys: list[int], lo: int, hi: int) -> int:
    """The keyframe in [lo, hi] closest to `ideal`, else `ideal` itself."""
    best, best_distance = ideal, None
    i = bisect.bisect_left(keys, ideal)
    for k in keys[max(0, i - 1) : i + 1]:
        if lo <= k <= hi and (best_distance is None or abs(k - ideal) < best_distance):
            best, best_distance = k, abs(k - ideal)
    return best
