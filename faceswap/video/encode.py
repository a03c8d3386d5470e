"""Encode RGB frames into one video segment by piping raw pixels to ffmpeg.

    rgb uint8 HxWx3 -> ffmpeg stdin (rawvideo rgb24 at an exact rational fps)
        -> libx264 yuv420p (crf, `-preset veryfast`)     default
        -> libx264 yuv444p                                odd width or height (4:2:0 needs even sizes)
        -> libx264rgb rgb24 qp 0                          lossless: decoding returns the written pixels
    -> <dir>/.<name>.part-<id><ext> -> rename to <path> on a clean close

Odd sizes keep their exact size: 4:2:0 chroma cannot represent an odd width or
height, and padding would change the frame size that assemble concatenates, so
those segments use 4:4:4 (High 4:4:4 profile; fine for ffmpeg-based players, not
for every hardware decoder).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from fractions import Fraction
from pathlib import Path

import numpy as np

from faceswap.video.ffmpeg import FFmpegError, error_reason, ffmpeg_exe


def fps_fraction(fps: float | Fraction | str) -> Fraction:
    """An exact frame rate: 25 -> 25/1, 29.97 -> 30000/1001, "24000/1001" kept as is."""
    if isinstance(fps, Fraction):
        rate = fps
    elif isinstance(fps, str):
        rate = Fraction(fps)
    else:
        # Float rates from containers are rounded NTSC-style rates; 1001 is the largest
        # denominator in common use, so snap to it rather than carry float noise.
        rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return rate


def temp_sibling(path: Path) -> Path:
    """A hidden temporary name next to `path`, keeping its extension (ffmpeg picks the muxer from it)."""
    return path.with_name(f".{path.stem}.part-{uuid.uuid4().hex[:8]}{path.suffix}")


class SegmentWriter:
    """Context manager writing RGB frames to `path`; the file appears only on a clean exit."""

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: float | Fraction | str,
        lossless: bool = False,
        crf: int = 18,
        *,
        preset: str = "veryfast",
        gop_frames: int = 0,
        threads: int = 0,
    ):
        """`gop_frames` 0 keeps x264's keyframe interval; `threads` 0 lets x264 decide."""
        if width <= 0 or height <= 0:
            raise ValueError(f"bad frame size {width}x{height}")
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.fps = fps_fraction(fps)
        self.lossless = lossless
        self.frames_written = 0
        self._tmp = temp_sibling(self.path)
        self._frame_bytes = self.width * self.height * 3
        if lossless:
            codec = ["-c:v", "libx264rgb", "-qp", "0", "-pix_fmt", "rgb24"]
        else:
            odd = self.width % 2 or self.height % 2
            codec = ["-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv444p" if odd else "yuv420p"]
        codec += ["-preset", preset, "-threads", str(threads)]
        if gop_frames > 0:
            codec += ["-g", str(gop_frames)]
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}",
            "-framerate", f"{self.fps.numerator}/{self.fps.denominator}", "-i", "pipe:0",
            *codec, "-an", str(self._tmp),
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # stderr goes to a real file: a pipe nobody reads can fill up and stall ffmpeg.
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame: uint8 (height, width, 3) RGB."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: frame must be uint8 ({self.height}, {self.width}, 3), got {rgb.dtype} {rgb.shape}"
            )
        try:
            self._proc.stdin.write(np.ascontiguousarray(rgb).data)
        except (BrokenPipeError, OSError) as exc:
            self._proc.wait()
            reason = self._stderr_tail()
            self._discard()
            raise FFmpegError(f"{self.path}: ffmpeg stopped while encoding: {reason}") from exc
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the stream and publish the file; raise FFmpegError if ffmpeg failed."""
        if self._proc.stdin.closed:
            return self.path
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg already died; its exit code below says why
        rc = self._proc.wait()
        if rc != 0 or self.frames_written == 0:
            reason = self._stderr_tail() if rc != 0 else "no frames written"
            self._discard()
            raise FFmpegError(f"{self.path}: encoding failed: {reason}")
        self._stderr.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file (used when the caller failed)."""
        if not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._discard()

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return error_reason(self._stderr.read())

    def _discard(self) -> None:
        self._stderr.close()
        self._tmp.unlink(missing_ok=True)
