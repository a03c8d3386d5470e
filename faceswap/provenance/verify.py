"""`faceswap verify`: is this video marked as face-swapped?

    local path or s3:// URI (storage.local_input) -> container tags (metadata.read_tags)
         -> (frame index, frame) pairs: every frame of a short video, else runs of
       watermark.RUN_FRAMES consecutive frames spread evenly (PyAV decode)
         -> detect.detect (every face -> tracks -> host cancelled per track
            -> correlated with the keyed chips, each track alone and all pooled)
         -> report {file, marked, by, watermark: absent | payload | unreadable, payload, score,
                    score_threshold, payload_score, payload_threshold, tracks (per-face evidence), tags, ...}

The CLI maps marked (tags, or a watermark over its threshold) -> exit 0, unmarked -> exit 3;
a missing, empty or non-video file raises InputError (exit 2).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from faceswap.errors import InputError
from faceswap.provenance import detect, metadata, watermark
from faceswap.storage import is_remote, local_input


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


def sample_frames(path: str, max_frames: int = 128, name: str | None = None) -> list[tuple[int, np.ndarray]]:
    """(frame index, RGB frame) pairs chosen by `frame_indices` (sequential decode;
    the index is the frame's position in decode order, which the mark is keyed on). Errors name
    `name` (the URI the user gave) when given."""
    import av

    from faceswap.video.probe import video_stream

    try:
        container = av.open(path)
    except av.FFmpegError as exc:
        raise InputError(f"{name or path}: not a readable video file ({exc.__class__.__name__})") from None
    with container:
        stream = video_stream(container)
        if stream is None:
            raise InputError(f"{name or path}: not a video file (no video stream)")
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
                raise InputError(f"{name or path}: video cannot be decoded ({exc.__class__.__name__})") from None
    if not frames:
        raise InputError(f"{name or path}: video has no decodable frames")
    return frames


def verify(uri: str, max_frames: int = 128, aligner: detect.FaceAligner | None = None) -> dict:
    """Check container tags and the invisible watermark of one video file (local path or s3:// URI)."""
    uri = os.fspath(uri)
    with local_input(uri) as path:
        if not is_remote(uri):
            if not os.path.exists(path):
                raise InputError(f"{uri}: no such file")
            if not os.path.isfile(path):
                raise InputError(f"{uri}: not a file")
        if os.path.getsize(path) == 0:
            raise InputError(f"{uri}: empty file (0 bytes)")
        tags = metadata.read_tags(path, name=uri)
        result = detect.detect(sample_frames(path, max_frames=max_frames, name=uri), aligner=aligner)
    by = []
    if metadata.is_marked_by_metadata(tags):
        by.append("metadata")
    if result.present:
        by.append("watermark")
    return {
        "file": uri,
        "marked": bool(by),
        "by": by,
        "watermark": result.status,
        "payload": result.payload,
        "model_tag": tags.get("faceswap_model"),
        "watermark_share": round(result.share_frames, 4),
        "score": round(result.score, 3),
        "score_threshold": round(result.threshold, 3),
        "payload_score": round(result.payload_score, 3),
        "payload_threshold": round(result.payload_threshold, 3),
        "carrier": result.carrier,
        "frames_checked": result.frames_checked,
        "faces_checked": result.faces_checked,
        "tracks": [dataclasses.asdict(t) for t in result.tracks],
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
    numbers = (f"score {report['score']:.2f}, threshold {report['score_threshold']:.2f}; payload correlation "
               f"{report['payload_score']:.2f}, threshold {report['payload_threshold']:.2f}; "
               f"{report['faces_checked']} faces in {report['frames_checked']} frames")
    status = report["watermark"]
    if status == "payload":
        lines.append(f"  watermark: present, payload {report['payload']} ({numbers}; carried by "
                     f"{report['carrier']}, agreeing in {100 * report['watermark_share']:.0f}% of frames)")
    elif status == "unreadable":
        lines.append(f"  watermark: present but its payload is unreadable ({numbers}: the keyed pattern is there, "
                     f"no payload word is certain; the video was likely damaged after marking)")
    elif report["faces_checked"] == 0:
        lines.append(f"  watermark: absent ({numbers}: no face to read it from)")
    else:
        lines.append(f"  watermark: absent ({numbers}: the score is what unmarked faces give)")
    for track in report.get("tracks", [])[:8]:
        lines.append(f"    face track {track['track']}: {track['faces']} faces, frames {track['first_frame']}-"
                     f"{track['last_frame']}, ~{track['size_px']:.0f} px, score {track['score']:.2f}"
                     + (f", payload {track['payload']}" if track["payload"] else ""))
    return "\n".join(lines)
