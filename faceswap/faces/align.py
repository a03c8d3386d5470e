"""Face alignment: a mean 68-point face, Umeyama similarity transforms, warps.

    landmarks (68, 2) source px -> umeyama(inner points, mean face in crop px) -> matrix (2, 3)
    frame -> warp_to_crop(matrix, size) -> crop;  crop -> warp_from_crop -> frame

The mean face is the similarity-normalised, mirror-symmetrised average of dlib's
68-point predictions on skimage's astronaut, matplotlib's grace_hopper and the
predictor's response to a blank box (its learned prior), scaled so its bounding
box spans [0, 1]. The jaw line moves with pose, so transforms are fitted on the
51 inner points (brows, nose, eyes, mouth).
"""

from __future__ import annotations

import cv2
import numpy as np

MEAN_FACE_68 = np.array(
    [
        [0.0000, 0.1898],
        [0.0102, 0.3211],
        [0.0262, 0.4479],
        [0.0534, 0.5774],
        [0.0975, 0.7004],
        [0.1669, 0.8102],
        [0.2634, 0.8993],
        [0.3714, 0.9659],
        [0.5000, 0.9829],
        [0.6286, 0.9659],
        [0.7366, 0.8993],
        [0.8331, 0.8102],
        [0.9025, 0.7004],
        [0.9466, 0.5774],
        [0.9738, 0.4479],
        [0.9898, 0.3211],
        [1.0000, 0.1898],
        [0.0882, 0.0836],
        [0.1474, 0.0179],
        [0.2336, 0.0000],
        [0.3228, 0.0094],
        [0.4044, 0.0432],
        [0.5956, 0.0432],
        [0.6772, 0.0094],
        [0.7664, 0.0000],
        [0.8526, 0.0179],
        [0.9118, 0.0836],
        [0.5000, 0.1398],
        [0.5000, 0.2355],
        [0.5000, 0.3236],
        [0.5000, 0.4156],
        [0.3893, 0.4683],
        [0.4428, 0.4852],
        [0.5000, 0.5003],
        [0.5572, 0.4852],
        [0.6107, 0.4683],
        [0.1895, 0.1549],
        [0.2422, 0.1175],
        [0.3067, 0.1156],
        [0.3639, 0.1633],
        [0.3021, 0.1717],
        [0.2403, 0.1728],
        [0.6361, 0.1633],
        [0.6933, 0.1156],
        [0.7578, 0.1175],
        [0.8105, 0.1549],
        [0.7597, 0.1728],
        [0.6979, 0.1717],
        [0.2874, 0.6238],
        [0.3633, 0.6001],
        [0.4428, 0.5925],
        [0.5000, 0.6055],
        [0.5572, 0.5925],
        [0.6367, 0.6001],
        [0.7126, 0.6238],
        [0.6423, 0.6966],
        [0.5608, 0.7303],
        [0.5000, 0.7388],
        [0.4392, 0.7303],
        [0.3577, 0.6966],
        [0.3166, 0.6293],
        [0.4429, 0.6309],
        [0.5000, 0.6376],
        [0.5571, 0.6309],
        [0.6834, 0.6293],
        [0.5581, 0.6710],
        [0.5000, 0.6785],
        [0.4419, 0.6710],
    ],
    dtype=np.float64,
)
MEAN_FACE_68.setflags(write=False)

INNER = slice(17, 68)
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)

# Fraction of the crop left around the mean face's box on each side, and a
# downward shift: "head" keeps room for the forehead and hair.
_CENTERING = {"face": (0.125, 0.0), "head": (0.3, 0.06)}


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity transform (3, 3) mapping 2-D ``src`` points onto ``dst`` (Umeyama 1991).

    In two dimensions Umeyama's SVD solution (best proper rotation, then scale) has a closed
    form: with centred points s and d, rotation angle atan2(sum s x d, sum s . d) and scale
    hypot(sum s . d, sum s x d) / sum |s|^2. It runs for every face of every frame (alignment
    and the tracker's shape check), where the SVD version cost 5-10x more.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape:
        raise ValueError(f"umeyama: expected two (N, 2) point sets, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - src_mean, dst - dst_mean
    spread = float(np.einsum("ij,ij->", s, s))
    dot = float(np.einsum("ij,ij->", s, d))
    cross = float(np.dot(s[:, 0], d[:, 1]) - np.dot(s[:, 1], d[:, 0]))
    norm = float(np.hypot(dot, cross))
    if spread <= 1e-12 or norm <= 1e-12 * max(spread, 1.0):
        raise ValueError("umeyama: degenerate points (all source or target points coincide)")
    scale = norm / spread if estimate_scale else 1.0
    a, b = scale * dot / norm, scale * cross / norm
    t = np.eye(3)
    t[:2, :2] = ((a, -b), (b, a))
    t[:2, 2] = dst_mean - t[:2, :2] @ src_mean
    return t


def mean_face_in_crop(size: int, centering: str = "face") -> np.ndarray:
    """The mean face's 68 points in the pixel frame of a ``size`` crop."""
    if centering not in _CENTERING:
        raise ValueError(f"centering must be one of {sorted(_CENTERING)}, got {centering!r}")
    pad, shift = _CENTERING[centering]
    pts = MEAN_FACE_68 * (1.0 - 2.0 * pad) + pad
    pts = pts + np.array([0.0, shift])
    return pts * size


def alignment_matrix(landmarks: np.ndarray, size: int, centering: str = "face") -> np.ndarray:
    """(2, 3) similarity transform source px -> crop px that puts the face on the mean face."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    dst = mean_face_in_crop(size, centering)
    return umeyama(landmarks[INNER], dst[INNER])[:2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine transform."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine transform to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_to_crop(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Cut the aligned ``size`` x ``size`` crop out of a frame (outside the frame: black)."""
    scale = float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))
    # Area averaging when shrinking avoids aliasing; bilinear when enlarging.
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.warpAffine(rgb, np.asarray(matrix, dtype=np.float64), (size, size), flags=interp,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def warp_from_crop(crop: np.ndarray, matrix: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Put a crop (or a crop-sized mask) back into frame coordinates (outside the crop: 0)."""
    h, w = shape_hw[:2]
    return cv2.warpAffine(crop, np.asarray(matrix, dtype=np.float64), (w, h),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def inter_ocular(landmarks: np.ndarray) -> float:
    """Distance between the eye centres, in the landmarks' pixels."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    return float(np.linalg.norm(landmarks[LEFT_EYE].mean(axis=0) - landmarks[RIGHT_EYE].mean(axis=0)))
