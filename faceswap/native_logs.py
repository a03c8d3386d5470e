"""Ray's native (C++) log lines about Ray's own design, kept off the user's terminal.

Ray's core worker writes some lines straight to the process's stderr (fd 2), beneath Python's
logging, so no logging filter reaches them. One opens every command that runs a stage:

    [... E ...] core_worker.cc:2465: Actor with class name: 'MapWorker(MapBatches(ExtractShard))' and ID: '...'
    has constructor arguments in the object store and max_restarts > 0. ...

Ray Data puts every actor pool's constructor arguments in the object store and restarts lost actors by
design (ray-project/ray#53727): the line says nothing about the user's command, and an E line reads as an
error.

LiteRT (the hand models, faces/hands.py) prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to
fd 2 of every actor that loads them, as late as Ray forwards it (after the command's own error line, past this
filter). ``dropped_lines`` takes such a line out at its source: fd 2 is captured for the one call that prints
it and replayed without it. The command's own process runs with fd 2 through a pipe; a thread copies everything to the real
stderr as it comes, except whole lines that match NATIVE_NOISE (also as an actor's forwarded log line:
Ray Train's controller prints it for its own actors). Partial lines (progress bars redrawn with \\r) pass
at once; only a line that starts like a log line ("[", "(", a colour code) waits for its newline.

    fd 2 -> pipe -> pump thread -> the real stderr, minus NATIVE_NOISE lines
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading

# A native line, or one a Ray actor's log forwarded to the driver ("\x1b[36m(TrainController pid=9)\x1b[0m [...").
_ACTOR_PREFIX = rb"^(?:\x1b\[\d+m)?(?:\([^\n]*?\))?(?:\x1b\[0m)? ?"  # "(MapWorker(MapBatches(X)) pid=9)" too
_LINE_START = _ACTOR_PREFIX + rb"\[[^\]\n]*\] "
NATIVE_NOISE = (
    re.compile(_LINE_START + rb"core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in the "
               rb"object store and max_restarts > 0"),
)
_HELD_STARTS = (b"[", b"\x1b[", b"(")  # how such lines begin: only these wait for their newline
_HOLD_LIMIT = 1 << 16  # a "[" line longer than this without a newline is not a log line: let it through


class NativeLogFilter:
    """``with NativeLogFilter(): ...``: fd 2 filtered for the block (a process's entry point only: it
    swaps the process's stderr, so never inside a library call or under a test runner's capture)."""

    def __init__(self, noise: tuple[re.Pattern, ...] = NATIVE_NOISE):
        self.noise = noise
        self.dropped = 0

    def __enter__(self) -> "NativeLogFilter":
        sys.stderr.flush()
        self._real = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._pump, args=(read, os.dup(self._real)),
                                        name="native-log-filter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        sys.stderr.flush()
        os.dup2(self._real, 2)  # our end of the pipe closes: the pump copies what is left, then ends
        os.close(self._real)
        # Child processes that inherited fd 2 may keep the pipe open; what we wrote is out within this.
        self._thread.join(timeout=2.0)

    def _pump(self, read: int, out: int) -> None:
        buf, at_line_start = b"", True
        try:
            while chunk := os.read(read, 1 << 16):
                buf, at_line_start = self._emit(buf + chunk, out, at_line_start, final=False)
            self._emit(buf, out, at_line_start, final=True)
        except OSError:
            os.dup2(out, 2)  # never leave the process writing into a pipe nobody reads
        finally:
            os.close(read)
            os.close(out)

    def _emit(self, buf: bytes, out: int, at_line_start: bool, final: bool) -> tuple[bytes, bool]:
        """Write what can be decided now; returns (the held rest, whether it begins a line)."""
        while buf:
            newline = buf.find(b"\n")
            held = at_line_start and buf.startswith(_HELD_STARTS)
            if held and newline < 0 and not final and len(buf) < _HOLD_LIMIT:
                return buf, True  # a native log line in the making: wait for its end
            part, buf = (buf, b"") if newline < 0 else (buf[:newline + 1], buf[newline + 1:])
            if held and any(p.match(part) for p in self.noise):
                self.dropped += 1
            else:
                _write_all(out, part)
            at_line_start = part.endswith(b"\n")
        return b"", at_line_start


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


@contextlib.contextmanager
def dropped_lines(pattern: re.Pattern):
    """fd 2 captured for the block (a short native call), then written back without the lines that match
    ``pattern``: nothing else is lost, only delayed by the block's length."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured.read().splitlines(keepends=True) if not pattern.match(line))
            if kept:
                _write_all(2, kept)
