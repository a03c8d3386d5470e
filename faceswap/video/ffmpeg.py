"""The ffmpeg binary (imageio-ffmpeg's static build) and one way to run it.

    args -> [ffmpeg -hide_banner -nostdin -y ...] -> ok | FFmpegError(last stderr line)
"""

from __future__ import annotations

import functools
import subprocess

import imageio_ffmpeg


class FFmpegError(RuntimeError):
    """ffmpeg exited non-zero; the message ends with its last stderr line."""


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped with imageio-ffmpeg (or IMAGEIO_FFMPEG_EXE)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def last_line(stderr: str | bytes) -> str:
    """The last non-empty line of ffmpeg's stderr: usually the actual reason."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def run_ffmpeg(args: list[str], what: str, timeout_s: float | None = None) -> None:
    """Run `ffmpeg <args>` quietly; raise FFmpegError("<what>: ffmpeg failed: <reason>")."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(f"{what}: ffmpeg did not finish within {timeout_s} s") from exc
    if proc.returncode != 0:
        raise FFmpegError(f"{what}: ffmpeg failed (exit {proc.returncode}): {last_line(proc.stderr)}")
