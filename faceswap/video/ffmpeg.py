"""The ffmpeg binary (imageio-ffmpeg's static build) and one way to run it.

    args -> [ffmpeg -hide_banner -nostdin -y ...] -> ok | FFmpegError(the reason from stderr)

With `-loglevel error`, ffmpeg (7+, threaded) prints the cause first and then the
cascade it set off ("Task finished with error code", "Nothing was written into
output file"), so the reason quoted is the first error line, not the last.
"""

from __future__ import annotations

import functools
import re
import subprocess

import imageio_ffmpeg


class FFmpegError(RuntimeError):
    """ffmpeg exited non-zero; the message ends with its last stderr line."""


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped with imageio-ffmpeg (or IMAGEIO_FFMPEG_EXE)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def error_reason(stderr: str | bytes) -> str:
    """The line of ffmpeg's stderr that says why it failed, without the "[muxer @ 0x...]" prefix."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    return re.sub(r"^(\[[^\]]*@ 0x[0-9a-f]+\]\s*)+", "", lines[0])


def run_ffmpeg(args: list[str], what: str, timeout_s: float | None = None) -> None:
    """Run `ffmpeg <args>` quietly; raise FFmpegError("<what>: ffmpeg failed: <reason>")."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(f"{what}: ffmpeg did not finish within {timeout_s} s") from exc
    if proc.returncode != 0:
        raise FFmpegError(f"{what}: ffmpeg failed (exit {proc.returncode}): {error_reason(proc.stderr)}")
