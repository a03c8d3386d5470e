"""Extract's records of a video shard, held back a few frames until their face tracks are cleaned.

    tracker -> add(frame, time, rgb) + record(frame, record) (raw fits; back-filled faces land in frames still held)
      -> frames leave, BLOCK at a time, once `delay` newer ones are held (the fits around them known):
         smoothing.clean_tracks(the raw fits of [first - HALO, newest]) -> their faces' landmarks
           - a fit that left its track: replaced; a hole of up to MAX_GAP frames in a track: filled (a new record
             borrowing the nearest face of its track's id, identity distance and score)
           - every face: smoothed along its track (its eyes' and mouth's own shapes kept)
         -> each record's landmarks and matrix set, its crop cut from the held frame (CropWriter)
      -> finish(): every frame still held

Why held frames rather than a second decode: the crops are cut once, at the cleaned alignment, and the
shard is decoded once. The frames held are those the tracker keeps for back-fill, HALO (the frames ahead
that decide a face's cleaning) and a BLOCK, at most HOLD_BYTES in all (then fewer frames ahead and smaller
blocks: a 4K shard looks ahead 4 frames, one at a time). A face is cleaned from the fits of at least HALO
frames each side of it, as convert smooths a segment from its HALO: the result is the whole shard's
cleaning wherever the window reaches as far as that needs.
"""

from __future__ import annotations

import numpy as np

from faceswap.faces import align
from faceswap.faces.smoothing import HALO, MAX_GAP, clean_tracks
from faceswap.faces.tracker import HISTORY_BYTES
from faceswap.storage import check_key

# Frames held at most, in bytes (the tracker's back-fill frames are among them, not beside them).
HOLD_BYTES = 384 << 20
# Frames cleaned together from one window of fits (a window costs about as much as one frame's would).
BLOCK = 16


class CleanedRecords:
    """``add`` each decoded frame, ``record`` each face kept in it (``add`` first; back-filled faces of frames
    still held too), ``finish`` at the end; ``records`` then holds the cleaned records, crops submitted."""

    def __init__(self, crops, size: int, centering: str, image_format: str, backfill_frames: int):
        self.crops, self.size, self.centering, self.image_format = crops, size, centering, image_format
        self.backfill_frames = int(backfill_frames)
        self.records: list[dict] = []
        self._held: dict[int, tuple[float, np.ndarray]] = {}  # frame -> (time, rgb), not yet cleaned
        self._raw: dict[int, list[dict]] = {}   # frame -> its records as fitted (HALO frames back and all held)
        self._fits: dict[int, list[np.ndarray]] = {}  # frame -> those records' raw (68, 2) landmarks

    def holds(self, frame: int) -> bool:
        return frame in self._held

    def add(self, frame: int, ts: float, rgb: np.ndarray) -> None:
        """A decoded frame; once enough are held, those ``delay`` or more behind it are cleaned and cut."""
        self._held[frame] = (ts, rgb)
        backfill = max(1, min(self.backfill_frames, HISTORY_BYTES // max(1, rgb.nbytes)))  # as the tracker keeps
        capacity = max(backfill + 2, HOLD_BYTES // max(1, rgb.nbytes))
        delay = min(backfill + HALO, capacity - 1)  # frames still open to back-fill, then HALO to look ahead
        if len(self._held) >= delay + max(1, min(BLOCK, capacity - delay)):
            self._clean([f for f in sorted(self._held) if f <= frame - delay])

    def record(self, frame: int, record: dict) -> None:
        """A face of a held frame, as fitted (``record["landmarks"]`` raw; crop not cut yet)."""
        self._raw.setdefault(frame, []).append(record)
        self._fits.setdefault(frame, []).append(np.asarray(record["landmarks"], np.float64).reshape(68, 2))

    def finish(self) -> None:
        if self._held:
            self._clean(sorted(self._held))

    def _clean(self, frames: list[int]) -> None:
        """Clean and cut the held ``frames`` (consecutive, oldest first), from one window of fits."""
        cleaned = clean_tracks({f: fits for f, fits in self._fits.items() if f >= frames[0] - HALO})
        for frame in frames:
            self._cut(frame, cleaned.get(frame, ()))
        for old in [f for f in self._fits if f < frames[-1] + 1 - HALO]:  # in no later window
            self._fits.pop(old)
            self._raw.pop(old, None)

    def _cut(self, frame: int, faces: list) -> None:
        ts, rgb = self._held.pop(frame)
        taken = set()
        for points, own in faces:
            if own is not None:
                record = self._raw[frame][own]
            else:
                near, near_fit = self._nearest(frame, points)
                crop = check_key(f"{near['crop'].rsplit('/', 1)[0]}/{frame:08d}_{near['face']:02d}."
                                 f"{self.image_format}")
                if crop in taken or any(r["crop"] == crop for r in self._raw.get(frame, ())):
                    continue  # its name is another face's here: the hole stays
                dx, dy = points.mean(0) - near_fit.mean(0)
                record = {**near, "frame": frame, "timestamp_s": float(ts), "crop": crop,
                          "bbox": (np.asarray(near["bbox"], np.float64) + [dx, dy, dx, dy]).tolist()}
            taken.add(record["crop"])
            matrix = align.alignment_matrix(points, self.size, self.centering)
            record["landmarks"] = points.astype(np.float32).reshape(-1).tolist()
            record["matrix"] = np.asarray(matrix, np.float64).reshape(-1).tolist()
            self.crops.submit(record["crop"], rgb, matrix)
            self.records.append(record)

    def _nearest(self, frame: int, points: np.ndarray) -> tuple[dict, np.ndarray]:
        """The record a face filled into ``frame`` borrows from, and its raw landmarks: of the nearest frames
        with records, the face whose raw landmarks' centre is nearest ``points``' centre."""
        centre = points.mean(0)
        for step in range(1, MAX_GAP + 2):
            near = [(r, fit) for f in (frame - step, frame + step)
                    for r, fit in zip(self._raw.get(f, ()), self._fits.get(f, ()))]
            if near:
                return min(near, key=lambda pair: np.linalg.norm(pair[1].mean(0) - centre))
        raise ValueError(f"no record within {MAX_GAP + 1} frames of filled frame {frame}")
