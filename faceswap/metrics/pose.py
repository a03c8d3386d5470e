"""Head pose from 68 landmarks: cv2.solvePnP against a 6-point 3D mean face.

    68 landmarks (source px) -> 6 points (nose tip, chin, eye corners, mouth corners)
      -> solvePnP (pinhole camera, focal = frame width, centre = frame centre)
      -> rotation matrix -> (yaw, pitch, roll) degrees

Pose error compares the angles of a swapped face with those of the original face
in the same frame, so the unknown camera intrinsics cancel out to first order.
"""

from __future__ import annotations

import cv2
import numpy as np

# The 6-point generic 3D head model of S. Mallick, "Head Pose Estimation using OpenCV
# and Dlib", LearnOpenCV (2016), in its published units and axes (x right, y up,
# z towards the viewer, nose tip at the origin), with the iBUG-68 index of each point.
MODEL_POINTS_3D = np.array(
    [
        [0.0, 0.0, 0.0],  # 30 nose tip
        [0.0, -330.0, -65.0],  # 8  chin
        [-225.0, 170.0, -135.0],  # 36 left corner of the left eye (image left)
        [225.0, 170.0, -135.0],  # 45 right corner of the right eye
        [-150.0, -150.0, -125.0],  # 48 left mouth corner
        [150.0, -150.0, -125.0],  # 54 right mouth corner
    ],
    dtype=np.float64,
)
MODEL_INDICES = np.array([30, 8, 36, 45, 48, 54])
# To OpenCV's camera axes (x right, y down, z away from the camera): a frontal face then has R = I.
_TO_CAMERA = np.diag([1.0, -1.0, -1.0])
_MODEL_CAM = MODEL_POINTS_3D @ _TO_CAMERA
ANGLES = ("yaw", "pitch", "roll")


def head_pose(landmarks: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """(yaw, pitch, roll) in degrees of the face with these 68 landmarks.

    yaw turns the head left/right (about the vertical axis), pitch nods it,
    roll tilts it in the image plane (positive: clockwise on screen).
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)[MODEL_INDICES]
    h, w = frame_hw[:2]
    focal = float(w)
    camera = np.array([[focal, 0.0, w / 2.0], [0.0, focal, h / 2.0], [0.0, 0.0, 1.0]])
    dist = np.zeros(4)
    # EPnP gives a unique start; the iterative (Levenberg-Marquardt) refinement then
    # minimises the reprojection error from there.
    ok, rvec, tvec = cv2.solvePnP(_MODEL_CAM, pts, camera, dist, flags=cv2.SOLVEPNP_EPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(_MODEL_CAM, pts, camera, dist, rvec, tvec, useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return np.full(3, np.nan)
    rot, _ = cv2.Rodrigues(rvec)
    return rotation_to_euler(rot)


def rotation_to_euler(rot: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) degrees of R = Rz(roll) @ Ry(yaw) @ Rx(pitch) in camera axes."""
    yaw = np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0))
    pitch = np.arctan2(rot[2, 1], rot[2, 2])
    roll = np.arctan2(rot[1, 0], rot[0, 0])
    return np.degrees(np.array([yaw, pitch, roll]))


def angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute angle differences in degrees, wrapped to [0, 180]."""
    d = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64) + 180.0) % 360.0 - 180.0
    return np.abs(d)


def pose_error(original: np.ndarray, swapped: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Per-angle absolute pose differences (yaw, pitch, roll) in degrees between two landmark sets."""
    return angle_diff(head_pose(swapped, frame_hw), head_pose(original, frame_hw))
