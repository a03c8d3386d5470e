"""`faceswap verify`: is this video marked as face-swapped?

    path -> container tags (metadata.read_tags) -> marked by metadata?
         -> (frame index, frame) pairs: every frame of a short video, else runs of
       watermark.RUN_FRAMES consecutive frames spread evenly (PyAV decode)
         -> watermark.detect (largest face -> canonical grid -> projections
            -> host cancelled per run -> correlated with the keyed chips)
         -> report {file, marked, by, payload, watermark_share, score, tags, ...}

The CLI maps marked -> exit 0, unmarked -> exit 3; a missing, empty or
non-video file raises InputError (exit 2).
"""

from __future__ import annotations

import os

import numpy as np

from faceswap.errors import InputError
from faceswap.provenance import metadata, watermark


def frame_indices(total: int, max_frames: int) -> list[int]:
    """Which frames to check: all of a video with at most `max_frames` frames, else
    max_frames // RUN_FRAMES runs of RUN_FRAMES consecutive frames spread evenly
    (the detector needs consecutive frames: it cancels the face by differencing in time)."""
    run = watermark.RUN_FRAMES
    if total <= max_frames:
        return list(range(total))
    n_runs = max(1, max_frames // run)
    starts = np.linspace(0, max(total - run, 0), n_runs).round().astype(int)
    return sorted({int(s) + k for s in starts for k in range(run) if int(s) + k < total})


def sample_frames(path: str, max_frames: int = 128) -> list[tuple[int, np.ndarray]]:
    """(frame index, RGB frame) pairs chosen by `frame_indices` (sequential decode;
    the index is the frame's position in decode order, which the mark is keyed on)."""
    import av

    from faceswap.video.probe import video_stream

    try:
        container = av.open(path)
    except av.FFmpegError as exc:
        raise InputError(f"{path}: not a readable video file ({exc.__class__.__name__})") from None
    with container:
        stream = video_stream(container)
        if stream is None:
            raise InputError(f"{path}: not a video file (no video stream)")
        total = stream.frames or 0
        if total <= 0 and stream.duration and stream.average_rate:
            total = int(float(stream.duration * stream.time_base) * float(stream.average_rate))
        # unknown length: take the first max_frames frames
        wanted = set(frame_indices(total, max_frames)) if total > 0 else set(range(max_frames))
        last = max(wanted)
        frames: list[tuple[int, np.ndarray]] = []
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    frames.append((index, frame.to_ndarray(format="rgb24")))
                if index >= last:
                    break
        except av.FFmpegError as exc:
            if not frames:
                raise InputError(f"{path}: video cannot be decoded ({exc.__class__.__name__})") from None
    if not frames:
        raise InputError(f"{path}: video has no decodable frames")
    return frames


def verify(path: str, max_frames: int = 128, aligner: watermark.FaceAligner | None = None) -> dict:
    """Check container tags and the invisible watermark of one video file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not a file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    tags = metadata.read_tags(path)
    frames = sample_frames(path, max_frames=max_frames)
    result = watermark.detect(frames, aligner=aligner)
    by = []
    if metadata.is_marked_by_metadata(tags):
        by.append("metadata")
    if result.found:
        by.append("watermark")
    return {
        "file": path,
        "marked": bool(by),
        "by": by,
        "payload": result.payload,
        "model_tag": tags.get("faceswap_model"),
        "watermark_share": round(result.share_frames, 4),
        "score": round(result.score, 3),
        "score_threshold": watermark.SCORE_MIN,
        "frames_checked": result.frames_checked,
        "faces_checked": result.faces_checked,
        "tags": tags,
    }


def format_report(report: dict) -> str:
    """Human-readable lines for a `verify` report."""
    lines = [f"{report['file']}: {'MARKED as synthetic' if report['marked'] else 'no mark found'}"]
    tags = report.get("tags", {})
    if "metadata" in report["by"]:
        lines.append(f"  metadata: synthetic media, model {tags.get('faceswap_model', '?')}, "
                     f"faceswap {tags.get('faceswap_version', '?')}, {tags.get('creation_time', '?')}")
    else:
        lines.append("  metadata: no provenance tags")
    wm = (f"payload {report['payload']}" if report["payload"] else "not found")
    lines.append(f"  watermark: {wm} (score {report['score']:.2f}, threshold {report['score_threshold']:.1f}; "
                 f"{report['faces_checked']} faces in {report['frames_checked']} frames; "
                 f"agreeing with the payload in {100 * report['watermark_share']:.0f}% of frames)")
    return "\n".join(lines)
