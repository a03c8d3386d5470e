"""Where the dlib model files live.

The files ship in the ``face_recognition_models`` package; importing it pulls in
``pkg_resources`` (slow, deprecated), so the folder is found from its spec.
"""

from __future__ import annotations

import functools
import importlib.util
import os

from faceswap.errors import InputError

SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
FACE_RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"


@functools.lru_cache(maxsize=None)
def models_dir() -> str:
    """The ``models/`` folder of the installed ``face_recognition_models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.origin:
        raise InputError("face_recognition_models: package not installed (pip install face_recognition_models)")
    return os.path.join(os.path.dirname(spec.origin), "models")


def model_path(name: str) -> str:
    """Full path of one dlib model file; InputError naming it when it is missing."""
    path = os.path.join(models_dir(), name)
    if not os.path.isfile(path):
        raise InputError(f"{path}: dlib model file missing (reinstall face_recognition_models)")
    return path
