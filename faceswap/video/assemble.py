"""Join encoded segments into the output film, put the source audio back, stamp metadata.

    segments/*.mp4 (same codec, size and fps as each other) -> concat demuxer, video `-c copy`
    source audio (every audio stream, if any) -> each copied when the output container takes it, else AAC
    metadata -> `-metadata k=v` (+ `-movflags +use_metadata_tags` so mp4 keeps custom keys)
    -> <dir>/.<name>.part-<id><ext> -> rename to out_path

Nothing is re-encoded, so the frame count is the sum of the segments' frames. The
segments must run at the source frame rate (checked here): the concat demuxer
chains each segment after the previous one's duration, so equal rates keep the
picture in step with the untouched source audio. A variable-frame-rate source
gets its own frame times back: the joined video is remuxed (PyAV, no re-encode)
with frame j shown when the source shows frame j, so the picture stays in step
with the audio through every change of rate.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from faceswap.errors import InputError
from faceswap.video.encode import fps_fraction, temp_sibling
from faceswap.video.ffmpeg import run_ffmpeg
from faceswap.video.probe import frame_pts, probe, video_stream

# Audio codecs each container family stores as they are; anything else is re-encoded to AAC.
_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}
_COPYABLE_AUDIO = {
    ".mp4": _MP4_AUDIO,
    ".m4v": _MP4_AUDIO,
    ".mov": _MP4_AUDIO | {"pcm_s16le", "pcm_s24le", "pcm_s16be", "pcm_s24be", "pcm_f32le"},
    ".mkv": None,  # None: Matroska stores any codec
}
_MP4_FAMILY = {".mp4", ".m4v", ".mov"}


def _segment_rate(path: Path) -> Fraction:
    if not path.is_file():
        raise InputError(f"{path}: segment missing")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: segment has no video stream")
            stream = container.streams.video[0]
            return Fraction(stream.average_rate or stream.guessed_rate or 0)
    except av.FFmpegError as exc:
        raise InputError(f"{path}: segment unreadable ({exc.strerror})") from exc


def _video_time_base(path: str) -> Fraction:
    with av.open(path) as container:
        return Fraction(video_stream(container).time_base)


def _audio_codecs(source_path: str) -> list[str]:
    with av.open(source_path) as container:
        return [stream.codec_context.name for stream in container.streams.audio]


def _at(grid: np.ndarray, j: float) -> float:
    """``grid`` (one value per frame) at fractional frame ``j``, extended linearly past both ends."""
    n = len(grid)
    if n == 1:
        return float(grid[0])
    if j < 0:
        return float(grid[0] + j * (grid[1] - grid[0]))
    if j > n - 1:
        return float(grid[-1] + (j - n + 1) * (grid[-1] - grid[-2]))
    return float(np.interp(j, np.arange(n), grid))


def retime(video: Path, pts: np.ndarray, time_base: Fraction, out: Path) -> None:
    """Remux a constant-rate ``video`` so its frame j is shown at ``pts[j]`` ticks of ``time_base``
    (the source's own timestamps, kept to the tick; nothing re-encoded). Decode timestamps follow
    the same map, so B-frames keep dts <= pts and dts rising."""
    with av.open(str(video)) as src, av.open(str(out), "w") as dst:
        ist = src.streams.video[0]
        ost = dst.add_stream_from_template(ist)
        ost.time_base = time_base
        ticks = 1.0 / float(ist.average_rate * ist.time_base)  # pts per frame in the constant-rate file
        first = ist.start_time or 0
        grid = np.asarray(pts, np.float64)
        frames, last_dts = 0, None
        for packet in src.demux(ist):
            if packet.dts is None or packet.pts is None:
                continue  # the demuxer's flush packet
            new_pts = round(_at(grid, (packet.pts - first) / ticks))
            dts = min(round(_at(grid, (packet.dts - first) / ticks)), new_pts)
            if last_dts is not None and dts <= last_dts:
                dts = last_dts + 1
            packet.stream = ost
            packet.time_base = time_base
            packet.pts, packet.dts, last_dts = new_pts, dts, dts
            dst.mux(packet)
            frames += 1
    if frames != len(pts):
        raise InputError(f"{video}: {frames} frames to retime, the source has {len(pts)}")


def _concat_line(path: Path) -> str:
    # The concat demuxer's quoting: close the quote, escaped quote, reopen.
    return "file '" + str(path.resolve()).replace("'", "'\\''") + "'\n"


def assemble(
    segment_paths: list[str | os.PathLike],
    source_path: str | os.PathLike,
    out_path: str | os.PathLike,
    metadata: dict[str, str],
) -> str:
    """Write `out_path` from the segments (in the given order) and the source's audio; return out_path."""
    if not segment_paths:
        raise InputError(f"{out_path}: no segments to assemble")
    source_path, out_path = os.fspath(source_path), Path(out_path)
    info = probe(source_path)
    source_rate = fps_fraction(info.fps)
    segments = [Path(p) for p in segment_paths]
    for segment in segments:
        rate = _segment_rate(segment)
        if not rate or abs(float(rate) - float(source_rate)) > 1e-3 * float(source_rate):
            raise InputError(f"{segment}: segment runs at {float(rate):.3f} fps, source at {float(source_rate):.3f} fps")

    suffix = out_path.suffix.lower()
    audio_args: list[str] = []
    if info.has_audio:  # every audio track (languages, commentary), each copied or, where it must be, AAC
        copyable = _COPYABLE_AUDIO.get(suffix, set())
        audio_args = ["-map", "1:a?"]
        for i, codec in enumerate(_audio_codecs(source_path)):
            keep = copyable is None or codec in copyable
            audio_args += [f"-c:a:{i}", "copy"] if keep else [f"-c:a:{i}", "aac", f"-b:a:{i}", "192k"]
    tag_args = [arg for key, value in metadata.items() for arg in ("-metadata", f"{key}={value}")]
    if suffix in _MP4_FAMILY:
        tag_args += ["-movflags", "+use_metadata_tags"]

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out_path)
    with tempfile.TemporaryDirectory(prefix="faceswap-concat-") as workdir:
        listing = Path(workdir) / "segments.txt"
        listing.write_text("".join(_concat_line(s) for s in segments), encoding="utf-8")
        video_in = ["-f", "concat", "-safe", "0", "-i", str(listing)]
        table = frame_pts(source_path) if info.vfr else None
        if table is not None:
            joined, timed = Path(workdir) / "joined.mp4", Path(workdir) / "timed.mp4"
            run_ffmpeg([*video_in, "-map", "0:v:0", "-c", "copy", str(joined)], what=str(out_path))
            retime(joined, table - table[0], _video_time_base(source_path), timed)
            video_in = ["-i", str(timed)]
        try:
            run_ffmpeg(
                [
                    *video_in,
                    "-i", source_path,
                    "-map", "0:v:0", "-c:v", "copy",
                    *audio_args,
                    *tag_args,
                    str(tmp),
                ],
                what=str(out_path),
            )
            os.replace(tmp, out_path)
        finally:
            tmp.unlink(missing_ok=True)
    return str(out_path)
