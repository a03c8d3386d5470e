"""Write aligned crops on a background thread, a bounded number behind the caller.

    caller: submit(key, frame, matrix) ──> thread: warp_to_crop -> JPEG/PNG encode -> store.write_bytes
    caller: flush() (or leaving the ``with`` block) waits for every crop; a failure is raised there

``CropWriter(..., background=False)`` does the same work inside ``submit`` instead: for a
worker that has one core, where a second thread only adds hand-offs and context switches.

Warping, encoding and file writes release the GIL, so on a machine with a free core
(an actor's decode thread rarely fills one) the crops cost the tracking loop almost
nothing. The thread holds a reference to each frame until its crop is written; at most
``ahead`` crops wait, so memory stays bounded whatever the film's length.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np

from faceswap.faces import align

# JPEG crops: 0.15 ms and ~19 kB for a 256 px face, where PNG takes ~3.7 ms and ~90 kB.
JPEG_QUALITY = 95


def encode_crop(crop: np.ndarray, image_format: str) -> bytes:
    """An RGB crop as the bytes of a .jpg (quality 95) or .png (fast compression) file."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if image_format == "png" else [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    ok, data = cv2.imencode(f".{image_format}", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"cannot encode a {crop.shape} crop as {image_format}")
    return data.tobytes()


class CropWriter:
    """``with CropWriter(store, size, fmt) as w: w.submit(key, rgb, matrix)``; crops are in the
    store when the block ends without an error."""

    def __init__(self, store, size: int, image_format: str, ahead: int = 8, background: bool = True):
        self.store, self.size, self.image_format = store, int(size), image_format
        self.ahead = max(1, int(ahead))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crop-writer") if background else None
        self._pending: collections.deque[Future] = collections.deque()

    def _write(self, key: str, rgb: np.ndarray, matrix: np.ndarray) -> None:
        crop = align.warp_to_crop(rgb, matrix, self.size)
        self.store.write_bytes(key, encode_crop(crop, self.image_format))

    def submit(self, key: str, rgb: np.ndarray, matrix: np.ndarray) -> None:
        """Queue one crop; blocks while ``ahead`` crops wait; raises an earlier crop's failure."""
        if self._pool is None:
            self._write(key, rgb, matrix)
            return
        while len(self._pending) >= self.ahead:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, key, rgb, matrix))

    def flush(self) -> None:
        """Wait until every submitted crop is stored; raises the first failure."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Drop crops not yet started and stop the thread (after an error: nothing more is written)."""
        for f in self._pending:
            f.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()
