"""Temporal smoothing of face tracks: for convert (steady faces without lag, no holes) and for extract's records.

    records of a frame range (+ HALO frames each side) -> tracks (faces linked frame to frame)
      -> fits that leave the track (dlib's second answer: a shape too large or shifted, on a frame or three)
       replaced by interpolation from the fits around them (OUTLIER)
    -> gaps of at most MAX_GAP frames filled by interpolation
      -> landmarks smoothed per track: Savitzky-Golay (quadratic, WINDOW frames), zero phase
      -> per frame: the smoothed faces
    convert: smooth_records(records of [start - HALO, stop + HALO), start, stop)
      -> each face's crop matrix refitted to its smoothed landmarks (filled faces get one too)
    extract: clean_tracks(a shard's records, a window at a time): the same, except that the eyes' and the
      mouth's own shapes stay as fitted; a replaced or filled face gets a record (and a crop) of its own

Why Savitzky-Golay: it fits a quadratic to the frames around each frame, looking ahead as well
as back (a shard knows all its frames), so steady motion and even a turning head's acceleration
pass through unchanged (no lag) while frame-to-frame detector noise is averaged out. A causal
filter (a moving average of past frames, a One-Euro filter) must lag to smooth.
Outliers: dlib's predictor sometimes answers a box with a wrong shape for a few frames: 1.2-1.5x the
face (for up to 7 frames at a time, on the tracking benchmark) or shifted by a quarter of the eye distance
(a frame or two). Smoothing alone would spread such fits over their neighbours; instead each fit is
compared with running medians of its track, and one that leaves them is replaced by interpolation between
the fits kept around it:
  - its size (spread of the jaw, brows, nose and eyes) more than SIZE_OUTLIER off the median size of
    SIZE_WINDOW fits around it: a face does not grow by a tenth and shrink back within half a second;
  - its jaw, brows, nose and eyes more than SHAPE_OUTLIER eye distances from the median shape of
    SHAPE_WINDOW fits (per coordinate).
A median passes steady motion, zooms and a sudden turn unchanged (a step stays a step); the mouth is
left out so that speech is never taken for an error.
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
SIZE_WINDOW = 15   # fits in the running median of a track's face size (odd): outvotes a wrong run of 7
SIZE_OUTLIER = 0.10  # relative size off that median above which a fit is replaced
SHAPE_WINDOW = 7   # fits in the running median of a track's shape (odd)
SHAPE_OUTLIER = 0.15  # eye distances (mean over points 0-47) from that median above which a fit is replaced
MIN_TRACK_FOR_OUTLIERS = 5  # a shorter track has too little evidence to call any of its fits wrong
# Frames beyond a shard's ends that decide its smoothing: the smoothing window, a filled gap, and the
# median window that judges the fits the smoothing reads (twice: a replaced fit interpolates from kept ones).
HALO = WINDOW // 2 + MAX_GAP + 1 + 2 * (SIZE_WINDOW // 2)
MIN_OVERLAP = 0.3  # box overlap (IoU) that links a face to the same track in the next frame
# Points whose shape extract's records keep as fitted (clean_tracks): each eye, the mouth.
OWN_SHAPES = (list(range(36, 42)), list(range(42, 48)), list(range(48, 68)))


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
    # the frames whose window fits: all at once; the few at each end: a window shifted inward each
    out[half:t - half] = np.einsum("w,iwk->ik", inner, np.lib.stride_tricks.sliding_window_view(
        flat, n, axis=0).transpose(0, 2, 1))
    for i in [*range(half), *range(t - half, t)]:
        start = min(max(0, i - half), t - n)
        out[i] = _savgol_weights(n, i - start, order) @ flat[start:start + n]
    return out.reshape(values.shape)


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median along axis 0 of (T, ...) values over ``window`` samples centred on each one. Near the ends
    the window shrinks to stay centred (a window shifted inward would put a moving face's first frames
    behind its median)."""
    values = np.asarray(values)
    t = len(values)
    half = window // 2
    out = np.empty_like(values, dtype=np.float64)
    if t > 2 * half:  # the frames whose window fits: all at once
        out[half:t - half] = np.median(np.lib.stride_tricks.sliding_window_view(values, window, axis=0), axis=-1)
    for i in [*range(min(half, t)), *range(max(half, t - half), t)]:
        reach = min(half, i, t - 1 - i)
        out[i] = np.median(values[i - reach:i + reach + 1], axis=0)
    return out


def outlier_fits(pts: np.ndarray) -> np.ndarray:
    """bool (T,): the fits of a track's (T, 68, 2) landmarks whose size or shape leaves the track's
    running medians (see the module's docstring)."""
    if len(pts) < MIN_TRACK_FOR_OUTLIERS:
        return np.zeros(len(pts), dtype=bool)
    rigid = pts[:, :48]  # jaw, brows, nose, eyes: not the mouth
    size = np.sqrt(((rigid - rigid.mean(1, keepdims=True)) ** 2).sum(2).mean(1))
    size_off = np.abs(size / np.maximum(running_median(size, SIZE_WINDOW), 1e-6) - 1) > SIZE_OUTLIER
    median = running_median(rigid, SHAPE_WINDOW)
    eye = np.linalg.norm(median[:, 36:42].mean(1) - median[:, 42:48].mean(1), axis=1)
    shape_off = np.linalg.norm(rigid - median, axis=2).mean(1) > SHAPE_OUTLIER * np.maximum(eye, 1e-6)
    return size_off | shape_off


def _repair(frames: list[int], pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A track's frames from first to last and its (T, 68, 2) landmarks there: outlier fits dropped,
    then gaps (at most MAX_GAP frames: link_tracks never links across longer ones) and dropped fits filled
    linearly (held at the track's ends)."""
    full = np.arange(frames[0], frames[-1] + 1)
    kept = ~outlier_fits(pts)
    if kept.all() and len(frames) == len(full):
        return full, pts.copy()  # nothing to replace or fill
    frames, pts = np.asarray(frames)[kept], pts[kept]
    filled = np.stack([np.stack([np.interp(full, frames, pts[:, p, c]) for c in range(2)], axis=1)
                       for p in range(68)], axis=1)
    return full, filled


def _fill_and_smooth(frames: list[int], pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_repair``, then smoothed."""
    full, filled = _repair(frames, pts)
    return full, smooth_sequence(filled)


def _per_frame(faces: dict[int, list[np.ndarray]], fix) -> dict[int, list[tuple[np.ndarray, int | None]]]:
    out: dict[int, list[tuple[np.ndarray, int | None]]] = {}
    for track in link_tracks(faces):
        frames = sorted(track)
        pts = np.stack([np.asarray(faces[f][track[f]], np.float64).reshape(68, 2) for f in frames])
        full, fixed = fix(frames, pts)
        for k, frame in enumerate(full):
            out.setdefault(int(frame), []).append((fixed[k], track.get(int(frame))))
    return out


def smooth_tracks(faces: dict[int, list[np.ndarray]]) -> dict[int, list[tuple[np.ndarray, int | None]]]:
    """Per frame, each face's smoothed (68, 2) landmarks and the index of its record in that frame
    (None for a face filled into a gap). Frames are those of ``faces`` plus the filled ones."""
    return _per_frame(faces, _fill_and_smooth)


def _clean(frames: list[int], pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_fill_and_smooth`` with each eye's and the mouth's shape as repaired: only where they sit is smoothed."""
    full, repaired = _repair(frames, pts)
    smoothed = smooth_sequence(repaired)
    for group in OWN_SHAPES:
        smoothed[:, group] += (repaired[:, group] - repaired[:, group].mean(1, keepdims=True)
                               - smoothed[:, group] + smoothed[:, group].mean(1, keepdims=True))
    return full, smoothed


def clean_tracks(faces: dict[int, list[np.ndarray]]) -> dict[int, list[tuple[np.ndarray, int | None]]]:
    """``smooth_tracks`` for extract's records: the same, except that each eye's and the mouth's own shape
    (a blink, a wink, speech) stays as fitted (or as interpolated, for a replaced or filled face); where they
    sit moves with the smoothed face."""
    return _per_frame(faces, _clean)


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
