"""One small protocol for every landmark backend, and the factory that builds one.

    make_backend("dlib" | "fan") -> backend
    backend.detect(rgb) -> boxes;  backend.landmarks(rgb, boxes) -> [(68 points, confidence)]

Every backend returns boxes as float32 (4,) x0, y0, x1, y1 and 68 iBUG points in
the pixels of the image it was given. Boxes follow the backend's own detector
convention; the tracker learns each track's box-from-landmarks relation at
detection time, so nothing downstream depends on that convention.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from faceswap.errors import ConfigError

BACKENDS = ("dlib", "fan")


class LandmarkBackend(Protocol):
    name: str
    window_px: int  # smallest face box (px) the detector finds without upsampling

    def detect(self, rgb: np.ndarray, upsample: int = 0) -> list[np.ndarray]:
        """Face boxes, float32 (4,) each, best first."""

    def detect_scored(self, rgb: np.ndarray, upsample: int = 0,
                      relaxed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) float32 and scores (N,), best first; ``relaxed`` lowers the threshold
        for re-checking a region where a face is expected."""

    def landmarks(self, rgb: np.ndarray, bboxes) -> list[tuple[np.ndarray, float]]:
        """For each box: (68, 2) float32 points and a confidence in [0, 1]."""


def make_backend(name: str = "dlib", detector: str = "hog", model_dir: str = "",
                 device: str = "cpu") -> LandmarkBackend:
    """Build a backend: ``dlib`` (detector hog | cnn) or ``fan`` (detector sfd | blazeface;
    the dlib default ``hog`` means sfd). ``model_dir`` and ``device`` apply to fan."""
    if name == "dlib":
        from faceswap.faces.dlib_backend import DlibBackend

        return DlibBackend(detector=detector)
    if name == "fan":
        from faceswap.faces.fan_backend import FanBackend

        return FanBackend(detector="sfd" if detector in ("", "hog") else detector,
                          model_dir=model_dir, device=device)
    raise ConfigError(f"unknown landmark backend {name!r} (choose from {', '.join(BACKENDS)})")


def check_backend(name: str = "dlib", detector: str = "hog", model_dir: str = "", device: str = "cpu") -> None:
    """Fail fast on the driver: the errors ``make_backend`` would raise in every worker. dlib's
    model files are only looked for (loading them costs ~0.7 s); fan is built, since only its
    loader knows whether the weights can be had."""
    if name == "dlib":
        from faceswap.faces.dlib_backend import DlibBackend

        DlibBackend.check(detector)
        return
    make_backend(name, detector, model_dir, device)


def shape_confidence(points: np.ndarray) -> float:
    """How face-like a 68-point shape is: 1 on the mean face, 0 at a residual of 0.25
    (in units of the shape's RMS radius) after the best similarity fit."""
    from faceswap.faces import align

    pts = np.asarray(points, dtype=np.float64).reshape(68, 2)[align.INNER]
    ref = align.MEAN_FACE_68[align.INNER]
    t = align.umeyama(ref, pts)
    fitted = ref @ t[:2, :2].T + t[:2, 2]
    radius = np.sqrt(((pts - pts.mean(axis=0)) ** 2).sum(axis=1).mean())
    if radius <= 0:
        return 0.0
    residual = np.sqrt(((fitted - pts) ** 2).sum(axis=1).mean()) / radius
    return float(np.clip(1.0 - residual / 0.25, 0.0, 1.0))


def as_boxes(bboxes) -> np.ndarray:
    """Any list of boxes (or an (N, 4+) array) as float32 (N, 4)."""
    arr = np.asarray([np.asarray(b, dtype=np.float32).reshape(-1)[:4] for b in bboxes], dtype=np.float32)
    return arr.reshape(-1, 4)
