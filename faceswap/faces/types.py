"""The face record shared by the tracker, the extract stage and convert."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Face:
    """One face in one frame.

    bbox: float32 (4,) x0, y0, x1, y1 in source pixels (the detector's box convention).
    landmarks: float32 (68, 2) iBUG points in source pixels.
    score: detection / tracking confidence (higher is better; backend-specific scale).
    track: stable id of the face across frames (0, 1, ... in order of first sight).
    """

    bbox: np.ndarray
    landmarks: np.ndarray
    score: float
    track: int

    def __post_init__(self):
        self.bbox = np.asarray(self.bbox, dtype=np.float32).reshape(4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(68, 2)
        self.score = float(self.score)
        self.track = int(self.track)
