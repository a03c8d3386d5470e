"""dlib landmark backend: HOG (or CNN mmod) face detector + 68-point shape predictor.

    rgb -> grey -> fhog detector (or rgb -> mmod CNN) -> boxes -> shape_predictor_68 on rgb -> points

The HOG detector runs on a grey copy: dlib's fhog takes, per pixel, the strongest
gradient of the three channels, so a grey image costs a third of the gradient work;
the whole detection takes ~25 % less time and finds the same boxes on our samples.

The shape predictor has no confidence of its own; `backend.shape_confidence`
scores how face-like each predicted shape is. It answers in whole pixels and reads the
image at offsets in the face's own frame, so a small face gets few pixels per feature: a
box under FIT_SIDE px is fitted in a crop enlarged until the box is FIT_SIDE px (cubic), and
the points come back at sub-pixel precision (benchmarks/RESULTS.md, "Face tracks").
"""

from __future__ import annotations

import cv2
import dlib
import numpy as np

from faceswap.errors import ConfigError
from faceswap.faces import models
from faceswap.faces.backend import as_boxes, shape_confidence
from faceswap.heap import model_on_huge_pages

# HOG scores below 0 are rejected by dlib's default threshold; a region where a
# face was a frame ago may keep a weaker one (half-profile, motion blur).
_RELAXED_HOG_THRESHOLD = -0.4
# Boxes smaller than this are fitted in an enlarged crop: on 7 scenes a 56 px face was within 10 % of the eye
# distance on 99.3 % of frames against 98.8 %, a 70 px face 99.5 % against 99.0 %; a real 60 px face's median
# error halved (0.026 -> 0.014 eye distances).
FIT_SIDE = 160
FIT_MARGIN = 0.6  # of the box's side, kept around it in the enlarged crop (the predictor reads past the box)


class DlibBackend:
    name = "dlib"
    window_px = 80  # both dlib detectors scan an 80x80 window

    def __init__(self, detector: str = "hog"):
        self.check(detector)
        self.detector = detector
        if detector == "hog":
            self._hog = dlib.get_frontal_face_detector()
        else:
            self._cnn = dlib.cnn_face_detection_model_v1(models.model_path(models.MMOD_DETECTOR))
        with model_on_huge_pages():  # its ~65 MB of tree leaves are read at random, per face
            self._predictor = dlib.shape_predictor(models.model_path(models.SHAPE_PREDICTOR_68))

    @staticmethod
    def check(detector: str = "hog") -> None:
        """Raise what the constructor would, without loading anything: a bad detector name or a
        missing model file."""
        if detector not in ("hog", "cnn"):
            raise ConfigError(f"dlib backend: unknown detector {detector!r} (choose hog or cnn)")
        models.model_path(models.SHAPE_PREDICTOR_68)
        if detector == "cnn":
            models.model_path(models.MMOD_DETECTOR)

    def __getstate__(self):
        return {"detector": self.detector}

    def __setstate__(self, state):
        self.__init__(state["detector"])

    def detect_scored(self, rgb: np.ndarray, upsample: int = 0,
                      relaxed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if self.detector == "hog":
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
            rects, scores, _ = self._hog.run(grey, upsample, _RELAXED_HOG_THRESHOLD if relaxed else 0.0)
            boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
        else:
            dets = self._cnn(rgb, upsample)
            boxes = [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()) for d in dets]
            scores = [d.confidence for d in dets]
        boxes, scores = as_boxes(boxes), np.asarray(scores, dtype=np.float32).reshape(-1)
        order = np.argsort(-scores, kind="stable")
        return boxes[order], scores[order]

    def detect(self, rgb: np.ndarray, upsample: int = 0) -> list[np.ndarray]:
        return list(self.detect_scored(rgb, upsample)[0])

    def landmarks(self, rgb: np.ndarray, bboxes) -> list[tuple[np.ndarray, float]]:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        out = []
        for box in as_boxes(bboxes):
            pts = self._fit(rgb, box)
            out.append((pts, shape_confidence(pts)))
        return out

    def _fit(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(68, 2) float32 points of the face in ``box``; a box under FIT_SIDE px is fitted enlarged."""
        x0, y0, x1, y1 = (float(v) for v in box)
        side = max(x1 - x0, y1 - y0)
        origin, scale, image = np.zeros(2), 1.0, rgb
        if 0 < side < FIT_SIDE:
            h, w = rgb.shape[:2]
            margin = FIT_MARGIN * side
            cx0, cy0 = int(max(0, x0 - margin)), int(max(0, y0 - margin))
            cx1, cy1 = int(min(w, np.ceil(x1 + margin))), int(min(h, np.ceil(y1 + margin)))
            if cx1 - cx0 >= 2 and cy1 - cy0 >= 2:
                scale = FIT_SIDE / side
                image = np.ascontiguousarray(cv2.resize(rgb[cy0:cy1, cx0:cx1], None, fx=scale, fy=scale,
                                                        interpolation=cv2.INTER_CUBIC))
                origin = np.array([cx0, cy0], np.float64)
        bx0, by0, bx1, by1 = ((np.array([x0, y0, x1, y1]) - np.tile(origin, 2)) * scale).round().astype(int)
        shape = self._predictor(image, dlib.rectangle(int(bx0), int(by0), int(bx1), int(by1)))
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        return (pts / scale + origin).astype(np.float32)
