"""FAN landmark backend (face-alignment): S3FD or BlazeFace detector + 2D-FAN-4.

    rgb -> S3FD / BlazeFace -> boxes -> 2D-FAN heatmaps -> 68 points + per-point scores

Weights come from face-alignment's own loader, which keeps them in torch hub's
``checkpoints/`` folder (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``). ``model_dir`` (a local folder or an s3://
URI) holding the same file names replaces that folder. Missing weights and no
network: one InputError that says which files to put where.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error

import numpy as np

from faceswap.errors import ConfigError, InputError
from faceswap.faces.backend import as_boxes

BASE_URL = "https://www.adrianbulat.com/downloads/python-fan/"
# File names exactly as face-alignment 1.4/1.5 caches them (the name in its URL).
WEIGHTS = {
    "fan": ["2DFAN4-11f355bf06.pth.tar"],
    "sfd": ["s3fd-619a316812.pth"],
    "blazeface": ["blazeface.pth", "anchors.npy"],
}
_DETECTOR_MODULE = {"sfd": "sfd", "blazeface": "blazeface"}
_THRESHOLD, _RELAXED_THRESHOLD = 0.5, 0.3
_RELAXED_KWARGS = {"sfd": {"filter_threshold": _RELAXED_THRESHOLD},
                   "blazeface": {"min_score_thresh": _RELAXED_THRESHOLD}}


def hub_checkpoints_dir() -> str:
    import torch.hub

    return os.path.join(torch.hub.get_dir(), "checkpoints")


def required_files(detector: str) -> list[str]:
    return WEIGHTS["fan"] + WEIGHTS[detector]


def _local_weights_dir(model_dir: str, names: list[str]) -> str:
    """A local folder holding ``names``: the folder itself, or a download cache for an s3:// URI."""
    from faceswap import storage

    if not storage.is_remote(model_dir):
        folder = storage.normalize_uri(model_dir)
        nested = os.path.join(folder, "checkpoints")  # a hub folder given as model_dir
        if not all(os.path.isfile(os.path.join(folder, n)) for n in names) and os.path.isdir(nested):
            return nested
        return folder
    store = storage.Store(model_dir)
    folder = os.path.join(storage.cache_dir(), "fan-" + hashlib.sha1(store.uri.encode()).hexdigest()[:16])
    os.makedirs(folder, exist_ok=True)
    for name in names:
        if store.exists(name) and not os.path.isfile(os.path.join(folder, name)):
            store.get_file(name, os.path.join(folder, name))
    return folder


@contextlib.contextmanager
def _hub_dir(checkpoints: str):
    """Point torch hub at a folder whose ``checkpoints/`` is ``checkpoints``, for the load only."""
    import torch.hub

    parent = os.path.dirname(checkpoints.rstrip("/"))
    if os.path.basename(checkpoints.rstrip("/")) != "checkpoints":
        # face-alignment looks in <hub>/checkpoints: give it a hub folder with a link.
        from faceswap import storage

        parent = os.path.join(storage.cache_dir(), "fan-hub-" + hashlib.sha1(checkpoints.encode()).hexdigest()[:16])
        os.makedirs(parent, exist_ok=True)
        link = os.path.join(parent, "checkpoints")
        if not os.path.islink(link):
            os.symlink(checkpoints, link)
    before = torch.hub.get_dir()
    torch.hub.set_dir(parent)
    try:
        yield
    finally:
        torch.hub.set_dir(before)


def _missing_message(folder: str, missing: list[str], model_dir: str) -> str:
    if model_dir:
        return f"{model_dir}: fan backend weights missing: put {', '.join(missing)} (from {BASE_URL}) there"
    return (f"{folder}: fan backend weights missing and cannot be downloaded: put {', '.join(missing)} "
            f"(from {BASE_URL}) in that folder, or pass --model-dir FOLDER holding them")


class FanBackend:
    name = "fan"
    window_px = 32  # S3FD's smallest anchor is 16 px; FAN wants a face of a few dozen px

    def __init__(self, detector: str = "sfd", model_dir: str = "", device: str = "cpu"):
        if detector not in _DETECTOR_MODULE:
            raise ConfigError(f"fan backend: unknown detector {detector!r} (choose sfd or blazeface)")
        self.detector, self.model_dir, self.device = detector, model_dir, device
        names = required_files(detector)
        folder = _local_weights_dir(model_dir, names) if model_dir else hub_checkpoints_dir()
        missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
        if missing and model_dir:
            raise InputError(_missing_message(folder, missing, model_dir))
        import face_alignment

        try:
            with _hub_dir(folder):
                self._fa = face_alignment.FaceAlignment(
                    face_alignment.LandmarksType.TWO_D, device=device, face_detector=_DETECTOR_MODULE[detector],
                    # Keep weak detections: detect_scored applies the threshold (lower when relaxed).
                    face_detector_kwargs=_RELAXED_KWARGS[detector], flip_input=False, verbose=False,
                    # torch.compile costs minutes on a CPU and saves little at batch size 1.
                    compile=device.startswith("cuda"))
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            still = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
            raise InputError(_missing_message(folder, still or names, model_dir)) from exc

    def __getstate__(self):
        return {"detector": self.detector, "model_dir": self.model_dir, "device": self.device}

    def __setstate__(self, state):
        self.__init__(**state)

    def detect_scored(self, rgb: np.ndarray, upsample: int = 0,
                      relaxed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        factor = 2 ** int(upsample)
        img = np.ascontiguousarray(rgb, dtype=np.uint8)
        if factor > 1:
            import cv2

            img = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        dets = self._fa.face_detector.detect_from_image(img.copy())
        dets = [np.asarray(d, dtype=np.float32) for d in dets]
        threshold = _RELAXED_THRESHOLD if relaxed else _THRESHOLD
        dets = [d for d in dets if len(d) < 5 or d[4] >= threshold]
        boxes = as_boxes(dets) / factor
        scores = np.asarray([d[4] if len(d) > 4 else 1.0 for d in dets], dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        return boxes[order], scores[order]

    def detect(self, rgb: np.ndarray, upsample: int = 0) -> list[np.ndarray]:
        return list(self.detect_scored(rgb, upsample)[0])

    def landmarks(self, rgb: np.ndarray, bboxes) -> list[tuple[np.ndarray, float]]:
        boxes = as_boxes(bboxes)
        if len(boxes) == 0:
            return []
        pts, scores, _ = self._fa.get_landmarks_from_image(
            np.ascontiguousarray(rgb, dtype=np.uint8), detected_faces=list(boxes), return_landmark_score=True)
        return [(np.asarray(p, dtype=np.float32)[:, :2], float(np.clip(np.mean(s), 0.0, 1.0)))
                for p, s in zip(pts, scores)]
