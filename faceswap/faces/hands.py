"""Hands in front of faces: found by extract, left out of what train learns, kept in front of the swapped face
by convert.

    hand models: MediaPipe 0.10.14's palm detector and 21-point hand landmarker (Apache 2.0), taken out of
    its PyPI wheel at run time (wheelfiles.py, pinned sha256; mediapipe itself is never installed), run by
    LiteRT (ai-edge-litert) on one CPU thread
    extract, per frame with a face (HandTracker.update):
      -> every DETECT_EVERY frames: palms detected in a square ROI_SCALE times the face around each face
      -> each palm's rotated square -> 21 landmarks + presence (below MIN_PRESENCE: no hand)
      -> a hand found is followed into the next frame from its own landmarks (no detector needed), and
         back through the frames held since the last detection (a hand found late starts where it appeared)
      -> hands/<shard>.parquet: the 21 points of each hand near a face, per frame (faceset.py)
    convert: hand_mask(points) = palm polygon + a capsule per finger bone + the wrist, grown by a margin;
      the blend keeps the footage there (render/paste.py) and colour statistics leave it out (render/face.py)
    train: the same hand_mask, in each face's crop, weighs nothing in the loss (model/losses.py)

Why a hand model: a hand is the occluder people complain about most, and it is skin. The rebuild test of
render/occlusion.py cannot see it when the hand is often on the face and the model learned it as part of the
person (as it did on the real-footage benchmark's woman before train left found hands out of its loss), and a
segmentation network learned from two identities calls "face" whatever those two people look like. A hand
landmarker trained on many hands knows a hand from a cheek; it ships in a package, which is where this project
may take weights from.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from faceswap.faces.tracker import iou
from faceswap.native_logs import dropped_lines
from faceswap.wheelfiles import WheelFiles

HAND_MODELS = WheelFiles("mediapipe==0.10.14", "hand-models", {
    "palm_detection_full.tflite": ("mediapipe/modules/palm_detection/palm_detection_full.tflite",
                                   "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54"),
    "hand_landmark_full.tflite": ("mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
                                  "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"),
})

LITERT_NOTICE = re.compile(rb"INFO: Created TensorFlow Lite XNNPACK delegate for CPU")
PALM_INPUT = 192          # the palm detector's square input, px
LANDMARK_INPUT = 224      # the landmarker's square input, px
MIN_PALM_SCORE = 0.5      # MediaPipe's default detection confidence
MIN_PRESENCE = 0.5        # the landmarker's "a hand is in this square" score: below it, no hand
ROI_SCALE = 3.0           # palms are searched in a square this many face sizes wide, around each face
DETECT_EVERY = 8          # frames between palm detections (~15 ms each); hands are followed in between and back
MAX_HANDS = 4             # per frame: two people's hands at most
HELD_FRAMES = 48          # frames a newly found hand is followed back through (2 s at 24 fps: a shard that starts
HELD_SIDE = 960           # mid-gesture, a palm the detector misses for a while), held at most this many px wide

# 21 points: 0 wrist; thumb 1-4; index 5-8; middle 9-12; ring 13-16; little finger 17-20.
FINGERS = ((0, 1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
PALM = (0, 1, 2, 5, 9, 13, 17)


def load_hand_models(timeout_s: float = 300) -> dict[str, bytes]:
    """The two model files' bytes (fetched once into the cache); InputError with one line when the
    package registry cannot be reached or a file does not match its pinned checksum."""
    from faceswap.errors import InputError

    try:
        paths = HAND_MODELS.fetch(timeout_s=timeout_s)
    except InputError as exc:
        raise InputError(f"{exc}: the hand models cannot be had; `faceswap extract --no-hands` runs without them") \
            from None
    out = {}
    for name, path in paths.items():
        with open(path, "rb") as f:
            out[name] = f.read()
    return out


@dataclass(frozen=True)
class Hand:
    points: np.ndarray    # float32 (21, 2), frame pixels
    presence: float       # the landmarker's score, MIN_PRESENCE..1


def _palm_anchors() -> np.ndarray:
    """The palm detector's 2016 SSD anchor centres (MediaPipe's SsdAnchorsCalculator for the full model:
    strides 8, 16, 16, 16, two anchors per layer and cell, layers of one stride merged)."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = math.ceil(PALM_INPUT / stride)
        for y in range(cells):
            for x in range(cells):
                centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell)
    return np.asarray(centres, np.float32)


def hand_box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(0), points.max(0)])


def _square(rgb: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The frame's square [x0, x0 + side) x [y0, y0 + side), black where it leaves the frame."""
    h, w = rgb.shape[:2]
    out = np.zeros((side, side, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return out


class HandLandmarker:
    """The two models: palms in a square of the frame, then 21 points in each palm's rotated square.

    A hand's square is (centre x, centre y, side, angle): rotated so the wrist is below the middle finger."""

    def __init__(self, models: dict[str, bytes], threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.palm = Interpreter(model_content=models["palm_detection_full.tflite"], num_threads=threads)
        self.landmark = Interpreter(model_content=models["hand_landmark_full.tflite"], num_threads=threads)
        with dropped_lines(LITERT_NOTICE):  # LiteRT says it uses XNNPACK on every load
            for net in (self.palm, self.landmark):
                net.allocate_tensors()
        self.anchors = _palm_anchors()

    @staticmethod
    def _run(net, x: np.ndarray) -> dict[str, np.ndarray]:
        net.set_tensor(net.get_input_details()[0]["index"], x)
        net.invoke()
        return {d["name"]: net.get_tensor(d["index"]) for d in net.get_output_details()}

    def palms(self, rgb: np.ndarray, roi: tuple[int, int, int]) -> list[tuple[float, float, float, float]]:
        """Hand squares from the palms found in the frame's square ``roi`` (x0, y0, side)."""
        x0, y0, side = roi
        square = cv2.resize(_square(rgb, x0, y0, side), (PALM_INPUT, PALM_INPUT), interpolation=cv2.INTER_AREA)
        out = self._run(self.palm, square.astype(np.float32)[None] / 255.0)
        raw, logits = out["Identity"][0], out["Identity_1"][0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
        found = []
        for i in np.nonzero(scores >= MIN_PALM_SCORE)[0]:
            r = raw[i] / PALM_INPUT
            ax, ay = self.anchors[i]
            cx, cy, w, h = r[0] + ax, r[1] + ay, r[2], r[3]
            keypoints = r[4:18].reshape(7, 2) + (ax, ay)
            found.append((float(scores[i]), np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), keypoints))
        # Weighted non-maximum suppression (MediaPipe's): overlapping detections are averaged by score.
        found.sort(key=lambda d: -d[0])
        squares = []
        while found:
            group = [d for d in found if iou(found[0][1], d[1]) > 0.3]
            found = [d for d in found if iou(found[0][1], d[1]) <= 0.3]
            weights = np.array([g[0] for g in group])
            box = sum(g[1] * wt for g, wt in zip(group, weights)) / weights.sum() * side + (x0, y0, x0, y0)
            keypoints = sum(g[2] * wt for g, wt in zip(group, weights)) / weights.sum() * side + (x0, y0)
            squares.append(self._palm_square(box, keypoints))
        return squares

    @staticmethod
    def _palm_square(box: np.ndarray, keypoints: np.ndarray) -> tuple[float, float, float, float]:
        """MediaPipe's palm -> hand square: rotated by wrist (keypoint 0) -> middle finger (2), shifted half
        a palm towards the fingers, 2.6 palms wide."""
        (wx, wy), (mx, my) = keypoints[0], keypoints[2]
        angle = math.pi / 2 - math.atan2(wy - my, mx - wx)
        w, h = box[2] - box[0], box[3] - box[1]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        cx, cy = cx + 0.5 * h * math.sin(angle), cy - 0.5 * h * math.cos(angle)
        return cx, cy, 2.6 * max(w, h), angle

    @staticmethod
    def square_of(points: np.ndarray) -> tuple[float, float, float, float]:
        """MediaPipe's landmarks -> the next frame's hand square: rotated by wrist -> middle finger's base,
        around the palm and finger bases, shifted a tenth towards the fingers, twice as wide."""
        (wx, wy), (mx, my) = points[0], points[9]
        angle = math.pi / 2 - math.atan2(wy - my, mx - wx)
        c, s = math.cos(angle), math.sin(angle)
        sel = points[[0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18]].astype(np.float64)
        centre = sel.mean(0)
        local = (sel - centre) @ np.array([[c, -s], [s, c]])  # into the hand's upright frame
        lo, hi = local.min(0), local.max(0)
        mid, (w, h) = (lo + hi) / 2, hi - lo
        mid[1] -= 0.1 * h
        cx = centre[0] + mid[0] * c - mid[1] * s
        cy = centre[1] + mid[0] * s + mid[1] * c
        return cx, cy, 2.0 * max(w, h), angle

    def landmarks(self, rgb: np.ndarray, square: tuple[float, float, float, float]) -> Hand:
        """The 21 points in the hand square, in frame pixels, and the landmarker's presence score."""
        cx, cy, side, angle = square
        c, s = math.cos(angle), math.sin(angle)

        def corner(u, v):
            return cx + u * c - v * s, cy + u * s + v * c

        half = side / 2
        src = np.float32([corner(-half, -half), corner(half, -half), corner(-half, half)])
        dst = np.float32([[0, 0], [LANDMARK_INPUT, 0], [0, LANDMARK_INPUT]])
        to_crop = cv2.getAffineTransform(src, dst)
        crop = cv2.warpAffine(rgb, to_crop, (LANDMARK_INPUT, LANDMARK_INPUT), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)  # (warpAffine has no INTER_AREA: it reads linear)
        out = self._run(self.landmark, crop.astype(np.float32)[None] / 255.0)
        points = out["Identity"][0].reshape(21, 3)[:, :2]
        back = cv2.invertAffineTransform(to_crop)
        return Hand((points @ back[:, :2].T + back[:, 2]).astype(np.float32), float(out["Identity_1"][0, 0]))


def face_roi(face_box: np.ndarray) -> tuple[int, int, int]:
    """The square (x0, y0, side) searched for palms around a face box."""
    x0, y0, x1, y1 = (float(v) for v in face_box)
    side = ROI_SCALE * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), max(8, int(round(side)))


def _near_faces(hand: Hand, rois: list[tuple[int, int, int]]) -> bool:
    box = hand_box(hand.points)
    return any(box[2] > x0 and box[0] < x0 + side and box[3] > y0 and box[1] < y0 + side for x0, y0, side in rois)


class HandTracker:
    """Hands near faces, frame by frame over one stream of frames (a shard of a video, or one photo).

    ``update(rgb, face_boxes, tag)`` once per frame in order; ``found`` maps each tag to its hands (frames
    earlier than the newest may still gain hands, followed back from a later detection)."""

    def __init__(self, landmarker: HandLandmarker, detect_every: int = DETECT_EVERY):
        self.net = landmarker
        self.detect_every = max(1, int(detect_every))
        self.found: dict[object, list[Hand]] = {}
        # (tag, frame scaled to at most HELD_SIDE, its scale) of the last frames: a hand found by a detection is
        # followed back through them, over the frames where the detector missed it (~75 MB at most).
        self._held: deque = deque(maxlen=max(HELD_FRAMES, self.detect_every))
        self._previous: list[Hand] = []
        self._since_detection = self.detect_every  # the first frame with a face detects

    def _verified(self, rgb: np.ndarray, square) -> Hand | None:
        hand = self.net.landmarks(rgb, square)
        return hand if hand.presence >= MIN_PRESENCE else None

    def update(self, rgb: np.ndarray, face_boxes: list, tag: object) -> list[Hand]:
        if not len(face_boxes):  # no face: no hand matters, and the next face (a cut) starts afresh
            self._previous, self._since_detection = [], self.detect_every
            self._held.clear()
            self.found[tag] = []
            return []
        rois = [face_roi(np.asarray(box)) for box in face_boxes]
        followed = [h for h in (self._verified(rgb, self.net.square_of(p.points)) for p in self._previous) if h]
        new = []
        if self._since_detection >= self.detect_every:
            self._since_detection = 0
            for roi in rois:
                for square in self.net.palms(rgb, roi):
                    cx, cy = square[0], square[1]
                    if any(_inside(cx, cy, hand_box(h.points)) for h in followed + new):
                        continue  # a hand already followed: no second landmark pass
                    hand = self._verified(rgb, square)
                    if hand is not None:  # once more from its own landmarks: the palm's square is rough
                        again = self._verified(rgb, self.net.square_of(hand.points))
                        new.append(again if again is not None and again.presence >= hand.presence else hand)
        self._since_detection += 1
        hands = _distinct([h for h in followed + new if _near_faces(h, rois)])
        for hand in hands:
            if any(hand is h for h in new):
                self._follow_back(hand)
        step = -(-max(rgb.shape[:2]) // HELD_SIDE)  # nearest-pixel: cheap enough for every frame (~0.2 ms at 720p)
        h, w = rgb.shape[:2]
        small = rgb if step == 1 else cv2.resize(rgb, (w // step, h // step), interpolation=cv2.INTER_NEAREST)
        self._held.append((tag, small, (w // step) / w))
        self.found[tag] = hands
        self._previous = hands
        return hands

    def _follow_back(self, hand: Hand) -> None:
        """A hand found by detection, followed back through the held frames until it is lost there."""
        for tag, small, scale in reversed(self._held):
            back = self._verified(small, self.net.square_of(hand.points * scale))
            if back is not None and scale != 1.0:
                back = Hand(back.points / scale, back.presence)
            there = self.found.get(tag, [])
            if back is None or len(there) >= MAX_HANDS or \
                    any(iou(hand_box(back.points), hand_box(h.points)) > 0.3 for h in there):
                return
            self.found[tag] = there + [back]
            hand = back


def _inside(x: float, y: float, box: np.ndarray) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def _distinct(hands: list[Hand]) -> list[Hand]:
    """The best-scored of overlapping hands, at most MAX_HANDS."""
    kept: list[Hand] = []
    for hand in sorted(hands, key=lambda h: -h.presence):
        if len(kept) < MAX_HANDS and all(iou(hand_box(hand.points), hand_box(k.points)) <= 0.3 for k in kept):
            kept.append(hand)
    return kept


# -- the mask -------------------------------------------------------------------------------------

FINGER_RADIUS = 0.14   # of the hand's scale (the palm's width, or 0.6 x wrist -> middle-finger base)
MARGIN = 0.06          # grown by this share of the scale: better a sliver of the footage than a painted finger


def hand_mask(hands: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """float32 (H, W) in [0, 1]: 1 over the hands (each (21, 2) points in these pixel coordinates), fading
    to 0 outside them over a margin (feathered outwards: the hand's own pixels are fully covered)."""
    mask = np.zeros(shape[:2], np.uint8)
    if not len(hands):
        return mask.astype(np.float32)
    scales = []
    for points in hands:
        p = np.asarray(points, np.float64).reshape(21, 2)
        scale = max(float(np.linalg.norm(p[5] - p[17])), 0.6 * float(np.linalg.norm(p[0] - p[9])), 1.0)
        scales.append(scale)
        grow = MARGIN * scale
        radius = max(1, int(round((FINGER_RADIUS + MARGIN) * scale)))
        # The palm, grown by the margin (a polygon has no thickness of its own).
        hull = cv2.convexHull(np.round(p[list(PALM)]).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
        cv2.polylines(mask, [hull], True, 1, thickness=max(1, int(round(2 * grow))))
        for finger in FINGERS:
            for a, b in zip(finger[:-1], finger[1:]):
                cv2.line(mask, tuple(np.round(p[a]).astype(int)), tuple(np.round(p[b]).astype(int)), 1,
                         thickness=2 * radius)
            cv2.circle(mask, tuple(np.round(p[finger[-1]]).astype(int)), radius, 1, -1)
        # The wrist: as wide as most of the palm, a little way past the wrist point.
        wrist = p[0] + 0.4 * (p[0] - p[9])
        cv2.line(mask, tuple(np.round(p[0]).astype(int)), tuple(np.round(wrist).astype(int)), 1,
                 thickness=max(1, int(round(0.8 * scale))))
    sigma = max(0.5, MARGIN * min(scales) / 2)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    return np.minimum(np.maximum(soft, mask.astype(np.float32)), 1.0)
