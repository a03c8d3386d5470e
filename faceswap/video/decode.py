"""Decode an exact frame range, as displayed.

    path, [start, stop) -> decoder choice:
        pyav (default): seek to the keyframe before `start` -> decode -> index from the frame's pts
                        (constant rate: pts / frame ticks; otherwise the pts table of the file's packets)
        decord (files whose frames carry no pts, or on request): one VideoReader -> seek_accurate(start) -> next()
    -> rotate by the display matrix where the decoder did not -> (index, timestamp_s, rgb uint8 HxWx3) -> closed

Why PyAV first: decord's reader decodes ahead without bound. Its first `next()` after a
seek pushes packets until the decoder thread returns a frame, hundreds of them, and the
thread then decodes all of those into memory (0.9 GB for a 200-frame shard taken from a
1000-frame 720p file, 3x the decoding the shard needs; at 4K a worker's memory is gone).
It also builds its frame index on open by reading every packet of the file
(dmlc/decord#296), paid again by every shard. PyAV decodes on demand in the caller's
thread; `Prefetch` bounds how far ahead it runs. Frames are named exactly: a constant-rate
mp4/mov by pts / ticks once its container index proves the spacing regular, anything else
(VFR, Matroska, WebM) through the table of every frame's pts that probing demuxes anyway.
Both decoders are checked frame-exact against barcodes in tests/test_video.py.

Rotation: source builds of decord ignore the display matrix, while the PyPI wheel
(bundling FFmpeg 4.1, which still exported it as a "rotate" tag) applies it. Which
one is loaded is checked once per process on a tiny rotated clip, so frames are
rotated exactly once either way. PyAV never applies it; a matrix that also mirrors
(`probe.orientation`) is honoured on the PyAV path and refused on decord's, which
reads it as a turn of 180 degrees.
"""

from __future__ import annotations

import functools
import os
import queue
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import decord
import numpy as np

from faceswap.errors import InputError
from faceswap.video.encode import SegmentWriter
from faceswap.video.ffmpeg import run_ffmpeg
from faceswap.video.probe import frame_pts, video_stream
from faceswap.video.probe import orientation as display_orientation


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


def _file_key(path: str) -> tuple[str, int, int] | None:
    """(path, size, mtime) of a local file, or None: what per-file facts are cached under."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return path, st.st_size, st.st_mtime_ns


# Per-process caches of facts about a file, keyed by (path, size, mtime): an actor decodes
# hundreds of shards of one film, and reading the index of a 3-hour mp4 costs ~0.3 s.
@functools.lru_cache(maxsize=8)
def _cached_clock(key: tuple[str, int, int]) -> _FrameClock | None:
    return _frame_clock(key[0])


@functools.lru_cache(maxsize=64)
def _cached_orientation(key: tuple[str, int, int]) -> tuple[int, bool]:
    return display_orientation(key[0])


def choose_decoder(path: str | os.PathLike) -> str:
    """"pyav" where the frames can be named by their timestamps (nearly every file), else "decord"."""
    try:
        return "pyav" if _clock_of(os.fspath(path)) is not None else "decord"
    except InputError:
        return "decord"  # decord then reports the problem with the file


def _clock_of(path: str) -> _FrameClock | None:
    key = _file_key(path)
    return _cached_clock(key) if key else _frame_clock(path)


class _FrameClock:
    """Frame index <-> presentation timestamp of one video stream.

    Constant rate, proven by the container's sample index (mp4/mov): index = (pts - first) / ticks,
    no packet I/O. Otherwise (VFR, Matroska, WebM, ...): the table of every frame's pts from one
    demux pass over the packets (seconds for a 3-hour film; once per process and file).
    """

    def __init__(self, first_pts: int, frames: int, ticks: float = 0.0, table: np.ndarray | None = None):
        self.first_pts, self.frames, self.ticks, self.table = first_pts, frames, ticks, table

    def pts(self, index: int) -> int:
        if self.table is not None:
            return int(self.table[index])
        return self.first_pts + round(index * self.ticks)

    def index(self, pts: int) -> int | None:
        """The frame shown at ``pts``; None for a decoded frame that is not one of the stream's
        (an edit-list trim)."""
        if self.table is None:
            return round((pts - self.first_pts) / self.ticks)
        i = int(np.searchsorted(self.table, pts))
        return i if i < self.frames and self.table[i] == pts else None


def _constant_rate_clock(path: str) -> _FrameClock | None:
    with av.open(path) as container:
        stream = video_stream(container)
        if stream is None:
            return None
        if not stream.average_rate or not stream.frames:
            return None
        entries = stream.index_entries  # mp4/mov: every sample, read from the moov box, no packet I/O
        if len(entries) != stream.frames or any(e.is_discard for e in entries):
            return None
        ticks = np.fromiter((e.timestamp for e in entries), np.int64, len(entries))
        first_pts, frames = stream.start_time or 0, stream.frames
        per_frame = 1.0 / float(stream.average_rate * stream.time_base)
    spacing = np.diff(ticks)
    regular = spacing.size and spacing.min() > 0 and spacing.max() - spacing.min() <= 1
    return _FrameClock(first_pts, frames, ticks=per_frame) if regular else None


def _frame_clock(path: str) -> _FrameClock | None:
    try:
        clock = _constant_rate_clock(path)
    except av.FFmpegError:
        clock = None
    if clock is None:
        table = frame_pts(path)  # InputError for what is not a readable video
        clock = _FrameClock(int(table[0]), len(table), table=table) if table is not None and table.size else None
    return clock


def iter_frames(
    path: str | os.PathLike,
    start: int,
    stop: int,
    *,
    rotation: int | None = None,
    threads: int = 1,
    decoder: str = "auto",
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (frame index, seconds since the first frame, RGB uint8 HxWx3) for start <= index < stop.

    `rotation` (counter-clockwise degrees, as `probe` reports) is read from the file when None; a mirroring
    display matrix is always honoured.
    `threads` defaults to 1: decoding runs inside Ray actors that each hold a fraction of a CPU.
    `decoder`: "auto" (pyav where the frames carry timestamps, see the module docstring), "pyav" or "decord".
    Timestamps are the stream's own, so variable-frame-rate sources keep their true timing.
    """
    path = os.fspath(path)
    key = _file_key(path)
    turn, mirrored = _cached_orientation(key) if key else display_orientation(path)
    rotation = turn if rotation is None else rotation
    if decoder == "auto":
        decoder = choose_decoder(path)
    if decoder == "decord":
        yield from _iter_decord(path, start, stop, rotation, mirrored, threads)
    elif decoder == "pyav":
        yield from _iter_pyav(path, start, stop, rotation, mirrored, threads)
    else:
        raise ValueError(f"unknown decoder {decoder!r}")


def _turn(rgb: np.ndarray, turns: int, mirrored: bool = False) -> np.ndarray:
    """Stored pixels as displayed: turned counter-clockwise (rot90), then mirrored left to right."""
    if not turns and not mirrored:
        return rgb
    shown = np.rot90(rgb, turns)
    return np.ascontiguousarray(shown[:, ::-1] if mirrored else shown)


def _iter_decord(path: str, start: int, stop: int, rotation: int, mirrored: bool, threads: int):
    if mirrored:  # decord reads a mirroring matrix as a turn of 180 degrees
        raise InputError(f"{path}: mirrored by its display matrix, which decord cannot show (use --decoder pyav)")
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
        first_s = float(reader.get_frame_timestamp([0])[0, 0])
        timestamps_s = reader.get_frame_timestamp(range(start, stop))[:, 0]
        reader.seek_accurate(start)
        turns = (rotation // 90) % 4
        if turns and decord_applies_rotation():
            turns = 0
        for offset, index in enumerate(range(start, stop)):
            rgb = _turn(reader.next().asnumpy(), turns)
            # decord gives float32 seconds: round away the float32 noise.
            yield index, round(float(timestamps_s[offset]) - first_s, 6), rgb
    finally:
        del reader  # frees the demuxer and decoder now, not at the next garbage collection


def _iter_pyav(path: str, start: int, stop: int, rotation: int, mirrored: bool, threads: int):
    clock = _clock_of(path)
    if clock is None:
        raise InputError(f"{path}: frames carry no timestamps to number them by (decode it with decord)")
    if not 0 <= start <= stop <= clock.frames:
        raise InputError(f"{path}: frame range [{start}, {stop}) outside the decoded 0..{clock.frames} frames")
    if start == stop:
        return
    with av.open(path) as container:
        stream = video_stream(container)
        stream.codec_context.thread_count = threads
        time_base = stream.time_base
        turns = (rotation // 90) % 4
        back_frames = 0
        while True:
            # Seek to the keyframe at or before the target; if the demuxer lands after `start`
            # (B-frame reordering, an index that only lists some keyframes), step further back.
            container.seek(clock.pts(start - back_frames), stream=stream, backward=True)
            expected = start
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise InputError(f"{path}: frame without a timestamp near frame {expected}")
                index = clock.index(frame.pts)
                if index is None or index < start:
                    continue
                if index > expected:
                    break  # landed past `start` (or a gap): handled below
                if index < expected:
                    raise InputError(f"{path}: frame {index} decoded twice (not constant frame rate?)")
                time_s = round(float((frame.pts - clock.pts(0)) * time_base), 6)
                yield index, time_s, _turn(frame.to_ndarray(format="rgb24"), turns, mirrored)
                expected += 1
                if expected == stop:
                    return
            if expected != start:
                raise InputError(f"{path}: decoding stopped at frame {expected} of [{start}, {stop}) (gap or truncated)")
            if back_frames >= start:
                raise InputError(f"{path}: cannot seek to frame {start}")
            back_frames = min(start, max(2 * back_frames, 16))


class Prefetch:
    """Run a frame iterator in a background thread, ``depth`` items ahead of its consumer.

        with Prefetch(iter_frames(path, start, stop)) as frames:
            for index, ts, rgb in frames: ...

    Decoding (decord through ctypes, PyAV in C) releases the GIL, so a worker that has a
    second core decodes the next frames while it detects, tracks and encodes this one.
    An exception of the iterator is raised to the consumer at the item where it happened;
    leaving the ``with`` block early stops the thread and closes the iterator.
    """

    _END = object()

    def __init__(self, frames: Iterator, depth: int = 4):
        self._frames = frames
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._frames:
                if not self._put((item, None)):
                    return
            self._put((self._END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put((None, exc))
        finally:
            close = getattr(self._frames, "close", None)
            if close:
                close()  # the generator's own finally frees the reader, in this thread

    def __iter__(self):
        return self

    def __next__(self):
        item, exc = self._queue.get()
        if exc is not None:
            self._queue.put((self._END, None))  # a later next() ends instead of blocking
            raise exc
        if item is self._END:
            self._queue.put((self._END, None))
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
