"""Who is this face? dlib's 128-d face embeddings and reference sets.

    references (images / folders, local or s3) -> detect + landmarks -> FaceEncoder.embed -> (N, 128)
    face in a frame -> embed -> min_distance(emb, refs) <= 0.6 -> same person

Embeddings are computed on dlib's own 150 px face chip (5-point alignment from
the 68 landmarks), so they do not depend on the crop size used elsewhere.
"""

from __future__ import annotations

import os

import cv2
import dlib
import numpy as np

from faceswap.errors import InputError
from faceswap.faces import models

SAME_PERSON = 0.6
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class FaceEncoder:
    """dlib's ResNet face recogniser (~100 ms per face on one CPU core)."""

    def __init__(self):
        self._net = dlib.face_recognition_model_v1(models.model_path(models.FACE_RECOGNITION))

    def embed(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(128,) float32 embedding of the face with these 68 landmarks (source px)."""
        pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        rect = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
        chip = dlib.get_face_chip(np.ascontiguousarray(rgb, dtype=np.uint8), shape, size=150, padding=0.25)
        return np.asarray(self._net.compute_face_descriptor(chip), dtype=np.float32)


def min_distance(emb: np.ndarray, refs: np.ndarray) -> float:
    """Smallest Euclidean distance from one embedding to any reference (inf without references)."""
    refs = np.asarray(refs, dtype=np.float32).reshape(-1, 128)
    if len(refs) == 0:
        return float("inf")
    return float(np.linalg.norm(refs - np.asarray(emb, dtype=np.float32).reshape(1, 128), axis=1).min())


def read_image(path: str, name: str | None = None) -> np.ndarray:
    """RGB uint8 image from a local file; InputError naming it when it cannot be read."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{name or path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def list_images(ref: str) -> list[str]:
    """The image URIs a reference names: the file itself, or the images of a folder (sorted)."""
    from faceswap import storage

    if storage.is_remote(ref):
        store = storage.Store(ref)
        keys = [k for k in store.list() if k.lower().endswith(IMAGE_SUFFIXES)] if not ref.lower().endswith(
            IMAGE_SUFFIXES) else []
        return [store.url(k) for k in keys] if keys else [ref]
    path = storage.normalize_uri(ref)
    if os.path.isdir(path):
        return [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.lower().endswith(IMAGE_SUFFIXES)]
    if not os.path.exists(path):
        raise InputError(f"{ref}: no such file or folder")
    return [path]


def load_references(refs, backend=None, encoder: FaceEncoder | None = None) -> np.ndarray:
    """(N, 128) embeddings, one per reference image (its largest face).

    InputError naming the file when a reference is unreadable or has no face, or
    when a folder holds no images.
    """
    from faceswap import storage
    from faceswap.faces.backend import make_backend

    backend = backend or make_backend("dlib")
    encoder = encoder or FaceEncoder()
    embeddings = []
    for ref in ([refs] if isinstance(refs, str) else list(refs)):
        images = list_images(ref)
        if not images:
            raise InputError(f"{ref}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for uri in images:
            with storage.local_input(uri) as local:  # StoreError (one line, naming the URI) on s3 trouble
                if not os.path.isfile(local):
                    raise InputError(f"{uri}: no such file")
                rgb = read_image(local, uri)
            boxes = backend.detect(rgb, upsample=1 if max(rgb.shape[:2]) < 1000 else 0)
            if not boxes:
                raise InputError(f"{uri}: no face found in reference image")
            largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
            pts, _ = backend.landmarks(rgb, [largest])[0]
            embeddings.append(encoder.embed(rgb, pts))
    return np.stack(embeddings).astype(np.float32)
