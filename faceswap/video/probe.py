"""What a video file holds, read from its container and packets (no decoding but one frame).

    path -> checks (exists, non-empty) -> PyAV open -> video stream
         -> demux video packets: count, pts spacing (vfr), keyframe flags
         -> first decoded frame: display matrix -> rotation (and a mirror, where its determinant is negative)
         -> VideoInfo (displayed width/height, i.e. after rotation)

Demuxing touches only packet headers and data already in the page cache, so a
3-hour film probes in seconds; the packet count is exact where `stream.frames`
(a container claim) can be missing (mkv) or wrong (truncated files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import av
import numpy as np

from faceswap.errors import InputError


@dataclass(frozen=True)
class VideoInfo:
    """One video file. For display its stored pixels are turned counter-clockwise by `rotation`
    (0/90/180/270), then mirrored left to right where `mirrored`."""

    path: str
    frames: int
    fps: float
    width: int
    height: int
    rotation: int
    duration_s: float
    has_audio: bool
    audio_duration_s: float
    vfr: bool
    codec: str
    mirrored: bool = False


def video_stream(container: av.container.InputContainer):
    """The container's first video stream of moving pictures; None when it has none (an audio
    file whose only picture is its cover art, an attached_pic stream, counts as none)."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    """Open `path` with PyAV or raise InputError naming the file and the problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.FFmpegError as exc:
        # A text file, or an mp4 cut before its moov index, lands here.
        raise InputError(f"{path}: not a video file, or truncated ({exc.strerror})") from exc
    if video_stream(container) is None:
        container.close()
        raise InputError(f"{path}: not a video file (no video stream)")
    return container


@dataclass(frozen=True)
class _Packets:
    pts: np.ndarray  # (N,) int64 presentation timestamps in stream time_base, decode order
    keyframe: np.ndarray  # (N,) bool
    timed: bool  # every packet carried its own pts (raw streams may have none, or only a dts)
    trimmed: int  # packets an edit list hides (decoded for reference, never shown)


# The packet table of the last few files demuxed, keyed by (path, size, mtime): planning calls
# probe() and then keyframes() on the same film, and each pass over the packets of a 3-hour
# film takes ~5 s. One pass serves both.
_PACKETS: dict[tuple[str, int, int], _Packets] = {}
_PACKETS_KEPT = 4


def _video_packets(path: str, container: av.container.InputContainer) -> _Packets:
    try:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return _demux_video_packets(path, container)
    if key not in _PACKETS:
        packets = _demux_video_packets(path, container)
        while len(_PACKETS) >= _PACKETS_KEPT:
            _PACKETS.pop(next(iter(_PACKETS)))
        _PACKETS[key] = packets
    return _PACKETS[key]


def _demux_video_packets(path: str, container: av.container.InputContainer) -> _Packets:
    stream = video_stream(container)
    pts, keys = [], []
    fallback = 0
    timed, trimmed = True, 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                trimmed += packet.size > 0
                continue  # flush packets and edit-list trims are not displayed frames
            timed = timed and packet.pts is not None
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                ts = fallback  # raw streams without timestamps: keep order, spacing unknown
            fallback = ts + 1
            pts.append(ts)
            keys.append(packet.is_keyframe)
    except av.FFmpegError as exc:
        raise InputError(f"{path}: unreadable after {len(pts)} frames, truncated or corrupt ({exc.strerror})") from exc
    return _Packets(np.asarray(pts, np.int64), np.asarray(keys, bool), timed, trimmed)


def _display_matrix(frame) -> np.ndarray | None:
    """The (a, b, c, d) of a frame's display matrix (FFmpeg's 16.16 fixed point), if it has one."""
    sides = frame.side_data
    for item in sides:
        # PyAV up to 18.1.0 iterates its side data's values; 18.1.1 made it a true mapping that iterates its keys.
        side = item if hasattr(item, "type") else sides[item]
        if "DISPLAYMATRIX" in str(side.type).upper():
            return np.frombuffer(bytes(side), np.int32)[[0, 1, 3, 4]] / 65536.0
    return None


def _orientation(path: str, container: av.container.InputContainer) -> tuple[int, bool]:
    """(counter-clockwise turn 0/90/180/270, mirrored) that shows the stored pixels as players do.
    A matrix with a negative determinant mirrors (`-display_hflip`, some front cameras): with its
    mirror taken out of the first column, what remains is the turn (checked against ffmpeg's own
    rendering for all eight turns and mirrors in tests/test_video.py)."""
    stream = video_stream(container)
    try:
        frame = next(iter(container.decode(stream)), None)
    except av.FFmpegError as exc:
        raise InputError(f"{path}: first frame does not decode ({exc.strerror})") from exc
    matrix = _display_matrix(frame) if frame is not None else None
    if matrix is not None:
        a, b, c, d = matrix
        mirrored = a * d - b * c < 0
        if mirrored:
            a, c = -a, -c
        return int(round(np.degrees(np.arctan2(c, a)) / 90.0)) % 4 * 90, bool(mirrored)
    degrees = -float(stream.metadata["rotate"]) if "rotate" in stream.metadata else 0.0  # legacy tag: clockwise
    return int(round(degrees / 90.0)) % 4 * 90, False


def orientation(path: str | os.PathLike) -> tuple[int, bool]:
    """The display rotation of `path` (counter-clockwise degrees) and whether it is mirrored."""
    with _open(path) as container:
        return _orientation(os.fspath(path), container)


def _is_vfr(sorted_pts: np.ndarray) -> bool:
    """Irregular spacing of presentation timestamps; one tick of rounding is allowed."""
    if len(sorted_pts) < 3:
        return False
    deltas = np.diff(sorted_pts)
    typical = float(np.median(deltas))
    tolerance = max(1.0, 0.02 * typical)
    return bool(np.any(np.abs(deltas - typical) > tolerance))


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe `path`; raise InputError (one line naming it) for anything that is not a readable video."""
    path = os.fspath(path)
    with _open(path) as container:
        stream = video_stream(container)
        time_base = float(stream.time_base) if stream.time_base else 1.0 / 90000
        packets = _video_packets(path, container)
        frames = len(packets.pts)
        if frames == 0:
            raise InputError(f"{path}: video stream holds no frames")
        if stream.frames and frames + packets.trimmed < stream.frames:  # a cut with -c copy trims, not truncates
            raise InputError(f"{path}: truncated video ({frames + packets.trimmed} of {stream.frames} frames present)")
        sorted_pts = np.sort(packets.pts)
        vfr = _is_vfr(sorted_pts)
        rate = stream.average_rate or stream.guessed_rate
        if frames >= 2:
            spacing_s = float(np.median(np.diff(sorted_pts))) * time_base
            span_s = float(sorted_pts[-1] - sorted_pts[0]) * time_base + spacing_s
        else:
            spacing_s, span_s = (1.0 / float(rate) if rate else 0.04), 0.0
        if not rate or vfr:
            fps = frames / span_s if span_s > 0 else 1.0 / spacing_s
        else:
            fps = float(rate)
        duration_s = span_s if frames >= 2 else 1.0 / fps
        container.seek(0)
        rot, mirrored = _orientation(path, container)
        width, height = stream.codec_context.width, stream.codec_context.height
        if rot in (90, 270):
            width, height = height, width
        has_audio = bool(container.streams.audio)
        audio_duration_s = _audio_duration(path, container) if has_audio else 0.0
        return VideoInfo(
            path=path,
            frames=frames,
            fps=fps,
            width=width,
            height=height,
            rotation=rot,
            mirrored=mirrored,
            duration_s=duration_s,
            has_audio=has_audio,
            audio_duration_s=audio_duration_s,
            vfr=vfr,
            codec=stream.codec_context.name,
        )


def _audio_duration(path: str, container: av.container.InputContainer) -> float:
    stream = container.streams.audio[0]
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    # Containers without a per-stream duration (mkv, webm): the end of the last audio packet.
    container.seek(0)
    end = 0
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                end = max(end, packet.pts + (packet.duration or 0))
    except av.FFmpegError as exc:
        raise InputError(f"{path}: audio unreadable, truncated or corrupt ({exc.strerror})") from exc
    start = stream.start_time or 0
    return float((end - start) * stream.time_base)


def signature(path: str | os.PathLike, chunk: int = 1 << 16) -> str:
    """What tells one video file from another wherever it is stored: sha1 of its size and of its
    first and last 64 KiB (the container header, index and frames), read in microseconds."""
    import hashlib

    digest = hashlib.sha1()
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        digest.update(str(size).encode())
        f.seek(0)
        digest.update(f.read(chunk))
        f.seek(max(0, size - chunk))
        digest.update(f.read(chunk))
    return digest.hexdigest()[:16]


def frame_pts(path: str | os.PathLike) -> np.ndarray | None:
    """Presentation timestamps of every frame in display order, so frame i is the one whose pts is
    entry i; None where they cannot name the frames (a packet without its own pts, two frames on one pts)."""
    path = os.fspath(path)
    with _open(path) as container:
        packets = _video_packets(path, container)
    table = np.sort(packets.pts)
    if not packets.timed or (table.size > 1 and np.any(np.diff(table) == 0)):
        return None
    return table



def keyframes(path: str | os.PathLike) -> list[int]:
    """Frame indices (presentation order) of the keyframes of `path`, from packet flags only."""
    path = os.fspath(path)
    with _open(path) as container:
        packets = _video_packets(path, container)
    order = np.argsort(packets.pts, kind="stable")  # decode order -> presentation order
    return np.flatnonzero(packets.keyframe[order]).tolist()
