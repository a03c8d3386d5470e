"""Temporal smoothing of face tracks for convert: steady faces without lag, no holes.

    records of a frame range (+ HALO frames each side) -> tracks (faces linked frame to frame)
      -> gaps of at most MAX_GAP frames filled by interpolation
      -> landmarks smoothed per track: Savitzky-Golay (quadratic, WINDOW frames), zero phase
      -> per frame: the smoothed faces
    convert: smooth_records(records of [start - HALO, stop + HALO), start, stop)
      -> each face's crop matrix refitted to its smoothed landmarks (filled faces get one too)

Why Savitzky-Golay: it fits a quadratic to the frames around each frame, looking ahead as well
as back (a shard knows all its frames), so steady motion and even a turning head's acceleration
pass through unchanged (no lag) while frame-to-frame detector noise is averaged out. A causal
filter (a moving average of past frames, a One-Euro filter) must lag to smooth.
Shard joins: a shard reads HALO frames beyond each end, so a frame near a join sees the same
neighbours whichever shard renders it, and the two segments meet without a step.
Cuts: a track ends where no face overlaps the last one (the tracker also ends tracks at a cut);
smoothing never crosses from one track to the next.
"""

from __future__ import annotations

import numpy as np

from faceswap.faces.tracker import iou

WINDOW = 7        # frames in each fit (odd); ~0.3 s at 24 fps
ORDER = 2         # polynomial order: keeps constant speed and steady acceleration
MAX_GAP = 2       # missing frames inside a track that are filled (the original face would flash back)
HALO = WINDOW // 2 + MAX_GAP + 1  # frames beyond a shard's ends that decide its smoothing
MIN_OVERLAP = 0.3  # box overlap (IoU) that links a face to the same track in the next frame


def _box(landmarks: np.ndarray) -> np.ndarray:
    return np.concatenate([landmarks.min(0), landmarks.max(0)])


def link_tracks(faces: dict[int, list[np.ndarray]]) -> list[dict[int, int]]:
    """Tracks as {frame: index of the face in that frame's list}; a face joins the track whose last
    face (at most MAX_GAP + 1 frames back) overlaps it most, greedily by overlap."""
    tracks: list[dict[int, int]] = []
    last: list[tuple[int, np.ndarray]] = []  # per track: (frame, box) of its newest face
    for frame in sorted(faces):
        boxes = [_box(np.asarray(lm, np.float64).reshape(68, 2)) for lm in faces[frame]]
        pairs = sorted(((iou(box, last[t][1]), t, i) for t in range(len(tracks)) for i, box in enumerate(boxes)
                        if 0 < frame - last[t][0] <= MAX_GAP + 1), reverse=True)
        used_t, used_i = set(), set()
        for overlap, t, i in pairs:
            if overlap < MIN_OVERLAP or t in used_t or i in used_i:
                continue
            tracks[t][frame] = i
            last[t] = (frame, boxes[i])
            used_t.add(t)
            used_i.add(i)
        for i, box in enumerate(boxes):
            if i not in used_i:
                tracks.append({frame: i})
                last.append((frame, box))
    return tracks


def _savgol_weights(n: int, center: int, order: int) -> np.ndarray:
    """Weights over ``n`` samples that evaluate a least-squares polynomial fit at ``center``."""
    x = np.arange(n, dtype=np.float64) - center
    vander = np.vander(x, min(order, n - 1) + 1, increasing=True)  # (n, k)
    # The fit's value at x = 0 is the first coefficient: row 0 of the pseudo-inverse.
    return np.linalg.pinv(vander)[0]


def smooth_sequence(values: np.ndarray, window: int = WINDOW, order: int = ORDER) -> np.ndarray:
    """Zero-phase Savitzky-Golay smoothing along axis 0 of (T, ...) values; near the ends the fit
    uses the frames there are (the window shifts inward), so the ends do not lag either."""
    values = np.asarray(values, dtype=np.float64)
    t = len(values)
    if t < 3:
        return values.copy()
    n = min(window, t if t % 2 else t - 1)
    half = n // 2
    flat = values.reshape(t, -1)
    out = np.empty_like(flat)
    inner = _savgol_weights(n, half, order)
    for i in range(t):
        start = min(max(0, i - half), t - n)
        weights = inner if start == i - half else _savgol_weights(n, i - start, order)
        out[i] = weights @ flat[start:start + n]
    return out.reshape(values.shape)


def _fill_and_smooth(frames: list[int], pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A track's frames from first to last and its (T, 68, 2) landmarks there: gaps (at most MAX_GAP
    frames: link_tracks never links across longer ones) filled linearly, then smoothed."""
    full = np.arange(frames[0], frames[-1] + 1)
    filled = np.stack([np.stack([np.interp(full, frames, pts[:, p, c]) for c in range(2)], axis=1)
                       for p in range(68)], axis=1)
    return full, smooth_sequence(filled)


def smooth_tracks(faces: dict[int, list[np.ndarray]]) -> dict[int, list[tuple[np.ndarray, int | None]]]:
    """Per frame, each face's smoothed (68, 2) landmarks and the index of its record in that frame
    (None for a face filled into a gap). Frames are those of ``faces`` plus the filled ones."""
    out: dict[int, list[tuple[np.ndarray, int | None]]] = {}
    for track in link_tracks(faces):
        frames = sorted(track)
        pts = np.stack([np.asarray(faces[f][track[f]], np.float64).reshape(68, 2) for f in frames])
        full, smoothed = _fill_and_smooth(frames, pts)
        for k, frame in enumerate(full):
            out.setdefault(int(frame), []).append((smoothed[k], track.get(int(frame))))
    return out


def smooth_records(records: dict[int, list], start: int, stop: int) -> dict[int, list]:
    """Convert's records of frames [start, stop), smoothed and with short holes filled.

    ``records``: frame -> [(landmarks (68, 2), matrix (6,) frame -> crop, crop size, bbox (4,))] as
    ``faceset.frame_records`` returns them, read for [start - HALO, stop + HALO) so that both sides of a
    shard join see the same neighbours. Each face's matrix is refitted to its smoothed landmarks: the
    similarity that puts the smoothed points where its record's matrix put the record's own points (so
    the crop's framing, whatever centering extract used, is kept). A filled face borrows the crop size
    and framing of its track's nearest recorded face; its bbox is interpolated.
    """
    from faceswap.faces.align import INNER, transform_points, umeyama

    faces = {f: [r[0] for r in recs] for f, recs in records.items() if recs}
    out: dict[int, list] = {}
    for track in link_tracks(faces):
        frames = sorted(track)
        if frames[-1] < start or frames[0] >= stop:
            continue
        own = [records[f][track[f]] for f in frames]
        pts = np.stack([np.asarray(r[0], np.float64).reshape(68, 2) for r in own])
        boxes = np.stack([np.asarray(r[3], np.float64).reshape(4) for r in own])
        full, smoothed = _fill_and_smooth(frames, pts)
        nearest = np.searchsorted(frames, full)  # index of the first recorded frame at or after each frame
        for k, frame in enumerate(full):
            if not start <= frame < stop:
                continue
            after = min(nearest[k], len(frames) - 1)
            near = after if after == 0 or frames[after] - frame <= frame - frames[after - 1] else after - 1
            landmarks, matrix, size, _ = own[near]
            target = transform_points(pts[near][INNER], np.asarray(matrix, np.float64).reshape(2, 3))
            fitted = umeyama(smoothed[k][INNER], target)[:2]
            bbox = np.array([np.interp(frame, frames, boxes[:, c]) for c in range(4)])
            out.setdefault(int(frame), []).append((smoothed[k], fitted.reshape(6), int(size), bbox))
    return out
