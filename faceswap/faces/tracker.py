"""Track faces through a video without running the full detector on every frame.

    frame ─┬─ every K frames, or after a loss: detector on a downscaled frame ─┐
           └─ other frames: box from last frame's landmarks ───────────────────┤
                                                                               v
           re-check each box with the detector on a small crop (relaxed threshold)
                 -> landmarks on the full-resolution frame (a fit that changed size since the last
                    frame is refitted in a smaller box) -> shape check -> Face(track=id)

* The downscale puts `min_face_px` at the detector's window size (80 px for dlib),
  so a 1080p frame is searched at a few hundred pixels wide.
* A track keeps the relation between its detector box and its landmarks (in
  units of the landmarks' own size) from the last detection, so boxes predicted
  from landmarks follow the detector's convention whatever the backend.
* On every frame a track must still look like itself: a 16x16 grey thumbnail of its
  predicted box is compared with the last frame's (normalised cross-correlation).
  Below `min_similarity` (a cut, an occlusion) the track ends and the full detector
  runs on that frame: nothing is reported on whatever replaced the face, and a face
  found in its place is a new track (so `--identity` judges it afresh).
* A face the crop re-check does not confirm is not reported for that frame; a
  track missed `max_misses` times in a row, or whose landmarks stop looking like
  a face, is dropped. Either way the next frame runs the full detector. Track ids count up from 0 in order of first sight and are never reused.
* Back-fill: a face the full detector finds for the first time may have been in view
  since just after the previous full detection. The tracker keeps the frames since
  then (at most HISTORY_BYTES of them: where fewer than ``detect_every`` frames fit, as
  at 4K, the full detector runs that much more often) and follows the new face backwards
  through them (box from the later frame's landmarks, a detector re-check on every one,
  landmarks), until the re-check fails, the shape stops looking like a face, or it meets
  a face already reported there. Those faces come out in ``backfilled`` after the
  ``update`` that found the face, so a long ``detect_every`` costs no frames of a face
  that walks in between detections.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from faceswap.faces.types import Face


@dataclass
class _Track:
    id: int
    points: np.ndarray        # (68, 2) raw landmarks of the last frame, source px
    rel: np.ndarray           # (4,) detector box relative to the landmarks' centre, in landmark radii
    score: float              # last detector score
    misses: int = 0           # consecutive frames the detector re-check did not confirm it
    smoothed: np.ndarray | None = None
    look: np.ndarray | None = None  # thumbnail signature of the last reported box


@dataclass
class _Past:
    """A frame since the last full detection, kept for back-fill."""
    tag: object               # the caller's (e.g. frame index and time)
    rgb: np.ndarray
    boxes: list = field(default_factory=list)  # boxes of the faces reported in it


# Frames kept for back-fill, at most: detect_every of them, and no more than this many bytes.
HISTORY_BYTES = 256 << 20
# A face smaller than the detector's window is enlarged in its re-check crop, at most this much: the
# detector's smallest box is its window, so at scale 1 a 70 px face came back in an 80-100 px box and
# its landmarks, fitted to that box, came out up to 1.4x the face (benchmarks/tracking.py).
MAX_UPSCALE = 2.0
# dlib's shape predictor has a second, wrong answer for a box a pyramid level or two too large: eyes, nose
# and mouth 1.1-1.6x the face's, held by the track until a detector re-check (benchmarks/tracking.py). A
# tracked face whose fit changed size by more than SIZE_STEP (log) since the last frame is fitted again in
# its box shrunk to SHRUNK_BOX, and the fit nearer its last size is kept (fit_landmarks).
SHRUNK_BOX = 0.8
SIZE_STEP = 0.02
# A new face has no last size: it is fitted in its box and in the box shrunk to SHRUNK_BOX, and the shrunk
# box's fit is kept when the other is more than NEW_FACE_STEP (log) larger. On the tracking benchmark's shard
# starts the shrunk box's fit was 0.99-1.02x the face every time; the box's own 1.02-1.03x where it was right
# and 1.35-1.47x where it was the wrong answer (which the track then held until its next re-check, 4 frames).
NEW_FACE_STEP = 0.10


def _frame_of(points: np.ndarray) -> tuple[np.ndarray, float]:
    centre = points.mean(axis=0)
    radius = float(np.sqrt(((points - centre) ** 2).sum(axis=1).mean()))
    return centre, max(radius, 1e-3)


def relate_box(box: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(4,) a detector box relative to its face's landmarks: offsets from their centre in landmark radii."""
    centre, radius = _frame_of(points)
    return (np.asarray(box, np.float64).reshape(2, 2) - centre).reshape(4) / radius


def place_box(rel: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The box `rel` (from `relate_box`) placed on other landmarks: where the detector would put it."""
    centre, radius = _frame_of(points)
    return (rel.reshape(2, 2) * radius + centre).reshape(4).astype(np.float32)


def _predict_box(track: _Track, points: np.ndarray | None = None) -> np.ndarray:
    """The track's detector box placed on ``points`` (default: its last landmarks)."""
    return place_box(track.rel, track.points if points is None else points)


def _look(rgb: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """A 16x16 grey thumbnail of ``box``, zero mean and unit norm (None: box off the frame or flat)."""
    h, w = rgb.shape[:2]
    x0, y0 = int(max(0, box[0])), int(max(0, box[1]))
    x1, y1 = int(min(w, box[2])), int(min(h, box[3]))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    step = max(1, min(x1 - x0, y1 - y0) // 32)  # read ~32x32 pixels of the box, not all of them
    roi = np.ascontiguousarray(rgb[y0:y1:step, x0:x1:step])
    thumb = cv2.resize(roi, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
    grey = thumb.mean(axis=2).ravel() if thumb.ndim == 3 else thumb.ravel()
    grey -= grey.mean()
    norm = float(np.linalg.norm(grey))
    return grey / norm if norm > 1e-3 else None


def inner_radius(points: np.ndarray) -> float:
    """RMS distance of the brows, eyes, nose and mouth (`align.INNER`) from their centre: a face's size."""
    from faceswap.faces.align import INNER

    return _frame_of(np.asarray(points, np.float64).reshape(68, 2)[INNER])[1]


def shrink_box(box: np.ndarray, factor: float) -> np.ndarray:
    """``box`` (x0, y0, x1, y1) scaled by ``factor`` about its centre."""
    box = np.asarray(box, np.float32)
    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * factor
    return np.concatenate([centre - half, centre + half])


def fit_landmarks(backend, rgb: np.ndarray, boxes, sizes=None) -> list[tuple[np.ndarray, float]]:
    """(landmarks, confidence) of the face in each box. ``sizes``: each face's `inner_radius` a frame ago
    (None: a new face). A fit whose size is more than SIZE_STEP from that is fitted again in its box shrunk
    to SHRUNK_BOX, and the fit nearer the face's last size is kept: a face does not grow by a tenth between
    two frames, the predictor's wrong answer does (benchmarks/tracking.py: frames within 10 % of the eye
    distance 91.5 -> 99.9 % for a 56 px face, 95.2 -> 99.7 % at 70 px, 95.9 -> 99.8 % at 100 px). A new face
    is always fitted in the shrunk box too, and the shrunk box's fit kept where the box's own is more than
    NEW_FACE_STEP larger."""
    if not len(boxes):
        return []
    out = backend.landmarks(rgb, boxes)
    for k, (box, size) in enumerate(zip(boxes, sizes if sizes is not None else [None] * len(out))):
        r = inner_radius(out[k][0])
        new = size is None or size <= 0
        if r <= 0 or (not new and abs(np.log(r / size)) <= SIZE_STEP):
            continue
        (small, conf), = backend.landmarks(rgb, [shrink_box(box, SHRUNK_BOX)])
        r_small = inner_radius(small)
        if r_small <= 0:
            continue
        if (np.log(r / r_small) > NEW_FACE_STEP) if new else abs(np.log(r_small / size)) < abs(np.log(r / size)):
            out[k] = (small, conf)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def detection_scale(backend, min_face_px: int) -> float:
    """Scale at which ``min_face_px`` becomes the detector's window; at most 2x up."""
    return min(2.0, backend.window_px / max(1, int(min_face_px)))


def detect_scaled(backend, rgb: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The detector on the whole frame resized by ``scale``: (boxes in frame pixels, scores)."""
    if abs(scale - 1.0) < 1e-3:
        return backend.detect_scored(rgb)
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    boxes, scores = backend.detect_scored(small)
    return boxes / scale, scores


def detect_near(backend, rgb: np.ndarray, box: np.ndarray, margin: float = 0.3,
                scale: float | None = None) -> tuple[np.ndarray, float] | None:
    """The detector (relaxed threshold) on a crop around ``box`` grown by ``margin`` of its side: the
    best hit overlapping ``box`` (IoU above 0.3) and its score, or None. ``scale``: the crop's resize
    (default: the face at ~1.1x the detector window, enlarging a small face up to MAX_UPSCALE)."""
    h, w = rgb.shape[:2]
    side = float(max(box[2] - box[0], box[3] - box[1]))
    # The face should sit at ~1.1x the detector window; margin for motion and box error.
    s = min(MAX_UPSCALE, 1.1 * backend.window_px / max(side, 1.0)) if scale is None else scale
    bw, bh = (side, side) if scale is None else (box[2] - box[0], box[3] - box[1])
    x0, y0 = int(max(0, box[0] - margin * bw)), int(max(0, box[1] - margin * bh))
    x1, y1 = int(min(w, box[2] + margin * bw)), int(min(h, box[3] + margin * bh))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    crop = rgb[y0:y1, x0:x1]
    if s != 1.0:
        crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    boxes, scores = backend.detect_scored(crop, relaxed=True)
    best, best_iou = None, 0.3  # below this overlap it is some other face
    for b, sc in zip(boxes, scores):
        b = b / s + np.array([x0, y0, x0, y0], dtype=np.float32)
        o = iou(b, box)
        if o > best_iou:
            best, best_iou = (b.astype(np.float32), float(sc)), o
    return best


class FaceTracker:
    """Faces of consecutive frames of one shot: ``update(rgb) -> list[Face]`` per frame."""

    def __init__(self, backend, detect_every: int = 8, min_face_px: int = 64, smooth: float = 0.0,
                 max_misses: int = 2, min_confidence: float = 0.3, check_every: int = 1,
                 backfill: bool = True, min_similarity: float = 0.6):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if not 0.0 <= smooth < 1.0:
            raise ValueError(f"smooth must be in [0, 1), got {smooth}")
        self.backend = backend
        self.detect_every = int(detect_every)
        self.min_face_px = int(min_face_px)
        self.detect_scale = detection_scale(backend, self.min_face_px)
        self.smooth = float(smooth)
        self.max_misses = int(max_misses)
        self.min_confidence = float(min_confidence)
        self.check_every = max(1, int(check_every))
        self.backfill = bool(backfill)
        self.min_similarity = float(min_similarity)
        self.stats = {"frames": 0, "full_detections": 0, "crop_checks": 0, "dropped": 0, "backfilled": 0,
                      "changed_looks": 0}
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and kept frames (a cut, a new shard); ids keep counting up."""
        self._tracks: list[_Track] = []
        self._since_detect = None  # frames since the last full detection; None: detect now
        self._next_id = getattr(self, "_next_id", 0)
        self._history: deque[_Past] = deque()
        self.backfilled: list[tuple[object, np.ndarray, Face]] = []

    # -- detection ---------------------------------------------------------------
    def _detect_full(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.stats["full_detections"] += 1
        return detect_scaled(self.backend, rgb, self.detect_scale)

    def _detect_near(self, rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Re-run the detector on a small crop around ``box``; the best overlapping hit or None."""
        self.stats["crop_checks"] += 1
        return detect_near(self.backend, rgb, box)

    def _refine(self, rgb: np.ndarray, box: np.ndarray, score: float) -> tuple[np.ndarray, float]:
        """A new face's full-frame box measured again by the crop re-check at the face's own scale
        (the full frame's box is a coarse pyramid level's); the full-frame box when that misses."""
        hit = self._detect_near(rgb, box)
        return (hit[0], max(hit[1], score)) if hit is not None else (box, score)

    # -- back-fill ---------------------------------------------------------------
    def _follow_back(self, track: _Track) -> list[tuple[int, _Past, Face]]:
        """A new track's faces in the kept frames as (frames ago, frame, face), newest first,
        until it cannot be confirmed."""
        out, points = [], track.points
        for age, past in enumerate(reversed(self._history), start=1):
            box = _predict_box(track, points)
            if any(iou(box, b) > 0.3 for b in past.boxes):
                break  # that face is another track's there
            hit = self._detect_near(past.rgb, box)
            if hit is None:
                break
            (pts, conf), = fit_landmarks(self.backend, past.rgb, [hit[0]], [inner_radius(points)])
            if conf < self.min_confidence:
                break
            past.boxes.append(hit[0])
            out.append((age, past, Face(bbox=hit[0], landmarks=pts, score=hit[1], track=track.id)))
            points = pts
        self.stats["backfilled"] += len(out)
        return out

    def _history_frames(self, rgb: np.ndarray) -> int:
        return max(1, min(self.detect_every, HISTORY_BYTES // max(1, rgb.nbytes)))

    def _detect_every(self, rgb: np.ndarray) -> int:
        """Frames between full detections: ``detect_every``, or fewer where the kept frames could
        not reach back to the last full detection (4K and up), so back-fill still covers them all."""
        return self._history_frames(rgb) if self.backfill else self.detect_every

    def _remember(self, tag, rgb: np.ndarray, full: bool, faces: list[Face]) -> None:
        if not self.backfill:
            return
        if full:
            self._history.clear()  # back-fill never reaches past the last full detection
        limit = self._history_frames(rgb)
        while len(self._history) >= limit:
            self._history.popleft()
        self._history.append(_Past(tag, rgb, [f.bbox for f in faces]))

    # -- one frame ---------------------------------------------------------------
    def update(self, rgb: np.ndarray, tag=None) -> list[Face]:
        """Faces in this frame (tracks in id order). Afterwards ``backfilled`` lists
        (tag, frame, Face) of earlier frames, oldest first, for faces first found now; ``tag``
        is handed back there with its frame."""
        self.stats["frames"] += 1
        self.backfilled = []
        # A track whose box no longer looks as it did a frame ago (a cut, an occlusion) ends here,
        # and the full detector runs: a face in its place is a new track, judged afresh by --identity.
        boxes: list[np.ndarray] = []
        looks: list[np.ndarray | None] = []
        kept: list[_Track] = []
        for t in self._tracks:
            box = _predict_box(t)
            look = _look(rgb, box)
            if t.look is not None and (look is None or float(t.look @ look) < self.min_similarity):
                self.stats["changed_looks"] += 1
                self._since_detect = None
                continue
            kept.append(t)
            boxes.append(box)
            looks.append(look)
        self._tracks = kept
        detected = [False] * len(boxes)

        full = self._since_detect is None or self._since_detect + 1 >= self._detect_every(rgb)
        self._since_detect = 0 if full else self._since_detect + 1
        check = full or self._since_detect % self.check_every == 0

        new_boxes: list[tuple[np.ndarray, float]] = []
        coarse: dict[int, tuple[np.ndarray, float]] = {}  # track -> its full-frame detection
        if full:
            det_boxes, det_scores = self._detect_full(rgb)
            used = set()
            for i, box in enumerate(boxes):
                cands = [(iou(b, box), j) for j, b in enumerate(det_boxes) if j not in used]
                o, j = max(cands, default=(0.0, -1))
                if o >= 0.3:
                    used.add(j)
                    coarse[i] = (det_boxes[j], float(det_scores[j]))
            new_boxes = [self._refine(rgb, det_boxes[j], float(det_scores[j]))
                         for j in range(len(det_boxes)) if j not in used]
        if check:
            # A tracked face is measured by the crop re-check on every frame it is checked, full detection or
            # not: the full frame's box comes from a coarse pyramid level (benchmarks/tracking.py: boxes a
            # level too large gave shapes 1.4x the face); that box is used only when the re-check misses.
            for i, t in enumerate(self._tracks):
                hit = self._detect_near(rgb, boxes[i]) or coarse.get(i)
                if hit is not None:
                    boxes[i], detected[i] = hit[0], True
                    t.score = hit[1]

        fresh = set()
        for box, score in new_boxes:
            # A fresh detection on top of a live track is that track, not a new face.
            if any(iou(box, b) > 0.3 for b in boxes):
                continue
            fresh.add(self._next_id)
            self._tracks.append(_Track(self._next_id, np.zeros((68, 2), np.float32), np.zeros(4), score))
            self._next_id += 1
            boxes.append(box)
            detected.append(True)
            looks.append(None)

        # each tracked face's size a frame ago guards its fit (a new face has none yet)
        sizes = [None if t.id in fresh else inner_radius(t.points) for t in self._tracks]
        results = fit_landmarks(self.backend, rgb, boxes, sizes)
        keep: list[_Track] = []
        faces: list[Face] = []
        lost = False
        for t, box, hit, look, (pts, conf) in zip(self._tracks, boxes, detected, looks, results):
            t.misses = 0 if hit else (t.misses + (1 if check else 0))
            duplicate = any(iou(box, f.bbox) > 0.5 for f in faces)  # two tracks on one face: keep the older
            if duplicate or conf < self.min_confidence or t.misses > self.max_misses:
                self.stats["dropped"] += 1
                lost = True
                continue
            t.points = pts
            if hit:
                t.rel = relate_box(box, pts)
            if self.smooth > 0 and t.smoothed is not None:
                t.smoothed = self.smooth * t.smoothed + (1.0 - self.smooth) * pts
            else:
                t.smoothed = pts.copy()
            keep.append(t)
            if t.misses:
                continue  # alive for a frame or two in case it comes back, but not reported unconfirmed
            t.look = look if not hit and look is not None else _look(rgb, box)  # hit: the box moved
            faces.append(Face(bbox=box, landmarks=t.smoothed, score=t.score if hit else t.score * conf,
                              track=t.id))
        self._tracks = keep
        if lost or any(t.misses for t in keep):
            self._since_detect = None  # a face was lost or is doubtful: full detection next frame
        faces.sort(key=lambda f: f.track)
        if self.backfill and fresh and self._history:
            found = [x for t in keep if t.id in fresh and not t.misses for x in self._follow_back(t)]
            found.sort(key=lambda x: (-x[0], x[2].track))  # oldest frame first, then track id
            self.backfilled = [(past.tag, past.rgb, face) for _, past, face in found]
        self._remember(tag, rgb, full, faces)
        return faces
