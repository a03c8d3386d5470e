"""Join encoded segments into the output film, put the source audio back, stamp metadata.

    segments/*.mp4 (same codec, size and fps as each other) -> concat demuxer, video `-c copy`
    source audio (first audio stream, if any) -> copied when the output container takes it, else AAC
    metadata -> `-metadata k=v` (+ `-movflags +use_metadata_tags` so mp4 keeps custom keys)
    -> <dir>/.<name>.part-<id><ext> -> rename to out_path

Nothing is re-encoded, so the frame count is the sum of the segments' frames. The
segments must run at the source frame rate (checked here): the concat demuxer
chains each segment after the previous one's duration, so equal rates keep the
picture in step with the untouched source audio. A VFR source comes out CFR at
its average rate.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av

from faceswap.errors import InputError
from faceswap.video.encode import fps_fraction, temp_sibling
from faceswap.video.ffmpeg import run_ffmpeg
from faceswap.video.probe import probe

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


def _audio_codec(source_path: str) -> str | None:
    with av.open(source_path) as container:
        return container.streams.audio[0].codec_context.name if container.streams.audio else None


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
    if info.has_audio:
        codec = _audio_codec(source_path)
        copyable = _COPYABLE_AUDIO.get(suffix, set())
        keep = copyable is None or codec in copyable
        audio_args = ["-map", "1:a:0?", "-c:a", "copy"] if keep else ["-map", "1:a:0?", "-c:a", "aac", "-b:a", "192k"]
    tag_args = [arg for key, value in metadata.items() for arg in ("-metadata", f"{key}={value}")]
    if suffix in _MP4_FAMILY:
        tag_args += ["-movflags", "+use_metadata_tags"]

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out_path)
    with tempfile.TemporaryDirectory(prefix="faceswap-concat-") as workdir:
        listing = Path(workdir) / "segments.txt"
        listing.write_text("".join(_concat_line(s) for s in segments), encoding="utf-8")
        try:
            run_ffmpeg(
                [
                    "-f", "concat", "-safe", "0", "-i", str(listing),
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
