"""Invisible watermark inside swapped faces: face-aligned dither modulation (QIM).

Method (this is faceswap's documented marking method)
-----------------------------------------------------
The mark lives in *face-aligned* coordinates, so it follows the face through
motion and rescaling, and it only ever touches the inner face:

    68 landmarks -> similarity (Umeyama, inner points 17..67) -> canonical grid
    (CANON_PX x CANON_PX, `canonical_points`) -> luma of the face on that grid.

* Patterns. From a fixed public key (`KEY`) we draw N_BITS white Gaussian
  fields on the grid, band-pass them to BAND_CYCLES cycles per grid, weight
  them with a feathered inner-face window (jaw + brow hull, eroded: the mark
  never reaches the blend seam, hair or background) and orthonormalise them
  (QR) after six low-order polynomials, so lighting gradients do not project
  onto them.  Each pattern also gets a keyed dither in [0, 1).
* Payload. 40 bits = 8-bit tag `TAG` + 24 bits of the model fingerprint
  (`payload_for`) + CRC-8.
* Why not additive spread spectrum: measured on real faces, the projection of
  a face onto a band-limited random pattern is 50-500 luma units, against
  ~8 for an additive mark at 40 dB; for a face that looks alike in every frame
  this host interference does not average out over frames.  So we use
  host-rejecting quantisation index modulation (Chen & Wornell 2001, spread
  transform): the projection p_i = <luma, u_i> is moved to the nearest point of
  the lattice step * (dither_i + {0 for bit 1 | 1/2 for bit 0} + k).  The move
  is at most step/2 per bit; `lattice_step` sets step so the change is
  `strength` luma levels RMS over the window (2.5 by default: ~41-43 dB PSNR
  over the face mask).  The change is computed on the grid, warped back into
  the caller's crop (`embed_crop`) or frame (`embed_frame`) and added equally to
  R, G and B (luma only).  A second pass corrects what the resampling lost.
* Detection (`detect`).  Each face found (dlib HOG + 68 landmarks) gives
  phasors exp(2j*pi*(p_i/step - dither_i)): angle 0 = bit 1, pi = bit 0.  They
  are averaged over all faces of all sampled frames; bits = sign of the real
  part.  Because the dither is uniform, the pooled phase psi_i of an unmarked
  face is uniform on the circle whatever the face and however frames correlate,
  so the statistic
      score = (sum_i |Re Z_i| - (2/pi) sum_i |Z_i|) / sqrt((1/2 - 4/pi^2) sum_i |Z_i|^2)
  has mean 0 and variance 1 under "no mark" exactly (given the magnitudes).
  With 40 bits its ceiling is ~7.46 (all phases on the axis).  A mark is
  *found* when score > SCORE_MIN (6.0: about 1e-9 for a normal; the
  distribution-free Hoeffding bound exp(-2 * 36 * 0.0947) = 1.1e-3) AND the word
  has the right tag and CRC (2^-16 for random bits): below 2e-8 per video even with the loose bound.
* Limits (measured, see tests/test_provenance.py): survives lossless and
  H.264 CRF 18 output; does NOT yet survive CRF 28 + half-size re-encoding:
  QIM is sensitive to anything that moves the projections by ~step/4 (landmark
  jitter of 0.3 px, compression smoothing of the face), which that laundering
  does.  Marking the crop before it is warped back (`embed_crop`) loses margin
  to the warp-back resampling (score 5.7 < 6 on a CRF 18 clip, vs 6.5 with
  `embed_frame` after the blend): convert should call `embed_frame(blended,
  landmarks, mask)`.  Not a security feature: key and method are public.

Public API
----------
`payload_for(model_fingerprint) -> bytes` (3 bytes);
`Watermarker(payload: bytes | str, strength=2.5)` with
`.embed_crop(crop uint8 SxSx3, crop_landmarks (68,2) | None) -> uint8` and
`.embed_frame(frame uint8 HxWx3, landmarks (68,2), mask float HxW | None) -> uint8`;
`detect(frames: Iterable[np.ndarray RGB]) -> WatermarkResult`;
`FaceAligner()` (dlib detector + landmarks, shared by `detect` and tests).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import math
import os
from collections.abc import Iterable

import cv2
import numpy as np

from faceswap.errors import InputError

CANON_PX = 64  # side of the canonical face grid the patterns live on
KEY = b"faceswap-provenance-v1"  # public: this is a provenance signal, not DRM
TAG = 0xA5  # fixed first byte of every payload word
N_DATA_BITS = 24
N_BITS = 8 + N_DATA_BITS + 8  # tag + data + CRC-8
BAND_CYCLES = (4.0, 16.0)  # pattern band, cycles per canonical grid
WINDOW_ERODE = 0.04  # inner-face window: jaw+brow hull eroded by this share of the grid
SCORE_MIN = 6.0  # detection threshold on the standardised score (see module docstring)
FRAME_Z_MIN = 3.0  # per-frame agreement with the found word for share_frames
EMBED_PASSES = 2
DEFAULT_STRENGTH = 2.5  # RMS luma change over the face window, 8-bit levels

# Mean 68-point face in a unit box: dlib landmarks of two frontal sample faces
# (skimage astronaut, matplotlib grace_hopper), similarity-aligned, averaged
# and mirror-symmetrised.  Part of the mark's definition: never change it.
_MEAN_FACE_UNIT = np.array([
    [0.0, 0.19], [0.005, 0.319], [0.016, 0.446], [0.031, 0.572], [0.074, 0.688],
    [0.141, 0.786], [0.235, 0.869], [0.339, 0.935], [0.46, 0.96], [0.583, 0.948],
    [0.694, 0.893], [0.796, 0.821], [0.873, 0.731], [0.929, 0.62], [0.957, 0.497],
    [0.981, 0.372], [1.0, 0.244], [0.08, 0.085], [0.141, 0.014], [0.23, 0.0],
    [0.322, 0.017], [0.402, 0.059], [0.614, 0.07], [0.699, 0.037], [0.792, 0.03],
    [0.879, 0.054], [0.931, 0.131], [0.502, 0.184], [0.497, 0.266], [0.493, 0.352],
    [0.488, 0.437], [0.373, 0.478], [0.427, 0.496], [0.484, 0.515], [0.542, 0.502],
    [0.598, 0.49], [0.18, 0.173], [0.235, 0.146], [0.301, 0.149], [0.357, 0.199],
    [0.294, 0.204], [0.227, 0.203], [0.644, 0.214], [0.705, 0.17], [0.771, 0.174],
    [0.822, 0.208], [0.773, 0.232], [0.706, 0.226], [0.26, 0.597], [0.343, 0.592],
    [0.426, 0.591], [0.479, 0.608], [0.533, 0.597], [0.616, 0.607], [0.698, 0.621],
    [0.613, 0.7], [0.533, 0.731], [0.472, 0.734], [0.413, 0.724], [0.336, 0.686],
    [0.29, 0.607], [0.422, 0.631], [0.477, 0.641], [0.534, 0.637], [0.667, 0.627],
    [0.532, 0.674], [0.476, 0.673], [0.42, 0.668]], dtype=np.float64)
_ALIGN_POINTS = slice(17, 68)  # brows, nose, eyes, mouth: stable under a swap
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def canonical_points(size_px: int = CANON_PX) -> np.ndarray:
    """The mean face placed on a `size_px` canonical grid, (68, 2) float64."""
    return (_MEAN_FACE_UNIT * 0.8 + 0.1) * size_px


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991) mapping src -> dst, as a 2x3 matrix."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    s, d = src - src_mean, dst - dst_mean
    cov = d.T @ s / len(src)
    u, sv, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1
    rot = u @ fix @ vt
    scale = np.trace(np.diag(sv) @ fix) / max((s ** 2).sum() / len(src), 1e-12)
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = dst_mean - scale * rot @ src_mean
    return m


def to_canonical_matrix(landmarks: np.ndarray) -> np.ndarray:
    """2x3 matrix from the landmarks' pixel space to the canonical grid."""
    pts = np.asarray(landmarks, np.float64).reshape(68, 2)
    return similarity(pts[_ALIGN_POINTS], canonical_points()[_ALIGN_POINTS])


# ---------------------------------------------------------------- payload

def _crc8(data: bytes) -> int:
    """CRC-8 (polynomial 0x07, init 0)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def payload_for(model_fingerprint: str) -> bytes:
    """The 3 payload bytes for a model: the first 24 bits of its hex fingerprint.

    A fingerprint that is not hex (or shorter than 6 digits) is hashed first.
    """
    fp = str(model_fingerprint).strip().lower()
    try:
        if len(fp) < 6:
            raise ValueError(fp)
        return bytes.fromhex(fp[:6])
    except ValueError:
        return hashlib.sha256(fp.encode()).digest()[:3]


def _word_bits(payload: bytes) -> np.ndarray:
    word = bytes([TAG]) + payload + bytes([_crc8(bytes([TAG]) + payload)])
    bits = np.unpackbits(np.frombuffer(word, np.uint8))
    return bits.astype(np.float32) * 2 - 1  # (N_BITS,) in {-1, +1}


def _decode_word(signs: np.ndarray) -> str | None:
    """Payload hex from +-1 bit signs, or None when tag or CRC do not match."""
    word = np.packbits((signs > 0).astype(np.uint8)).tobytes()
    if word[0] != TAG or _crc8(word[:-1]) != word[-1]:
        return None
    return word[1:-1].hex()


# ---------------------------------------------------------------- patterns

@functools.lru_cache(maxsize=1)
def _patterns() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, dither, window): U (CANON_PX^2, N_BITS) orthonormal float32 columns,
    dither (N_BITS,) in [0, 1) lattice steps, window (CANON_PX, CANON_PX)."""
    g = CANON_PX
    pts = canonical_points(g)
    hull = cv2.convexHull(np.round(pts[:27] * 8).astype(np.int32))  # jaw + brows, 1/8 px
    window = np.zeros((g, g), np.uint8)
    cv2.fillConvexPoly(window, hull, 255, lineType=cv2.LINE_8, shift=3)
    erode_px = max(1, round(WINDOW_ERODE * g))
    window = cv2.erode(window, np.ones((2 * erode_px + 1,) * 2, np.uint8))
    window = cv2.GaussianBlur(window.astype(np.float32) / 255, (0, 0), 0.02 * g)

    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(KEY).digest()[:8], "little"))
    fy = np.fft.fftfreq(g)[:, None] * g
    fx = np.fft.rfftfreq(g)[None, :] * g
    radius = np.hypot(fx, fy)
    band = ((radius >= BAND_CYCLES[0]) & (radius <= BAND_CYCLES[1])).astype(np.float64)
    noise = rng.standard_normal((N_BITS, g, g))
    fields = np.fft.irfft2(np.fft.rfft2(noise) * band, s=(g, g)) * window

    yy, xx = np.mgrid[0:g, 0:g] / g - 0.5
    polys = [np.ones((g, g)), xx, yy, xx * xx, xx * yy, yy * yy]
    cols = np.concatenate([np.stack([p * window for p in polys]).reshape(6, -1),
                           fields.reshape(N_BITS, -1)]).T
    q, _ = np.linalg.qr(cols)
    dither = rng.random(N_BITS)
    return q[:, 6:].astype(np.float32), dither, window.astype(np.float32)


def lattice_step(strength: float = DEFAULT_STRENGTH) -> float:
    """QIM step for a strength: uniform error of step/sqrt(12) per bit, spread over the window."""
    _, _, window = _patterns()
    area_px = float((window ** 2).sum())
    return strength * math.sqrt(12.0 * area_px / N_BITS)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ _LUMA


def _warp_luma_to_canonical(luma: np.ndarray, to_canon: np.ndarray) -> np.ndarray:
    """Resample luma onto the canonical grid, low-passed first when shrinking."""
    scale = math.sqrt(abs(np.linalg.det(to_canon[:, :2])))
    if scale < 0.8:
        luma = cv2.GaussianBlur(luma, (0, 0), 0.45 / scale)
    return cv2.warpAffine(luma, to_canon, (CANON_PX, CANON_PX), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


# ---------------------------------------------------------------- embedding

class Watermarker:
    """Embeds one payload into face crops or frames (see the module docstring).

    `payload`: 3 bytes, or a model fingerprint string (passed to `payload_for`).
    `strength`: RMS luma change over the face window in 8-bit levels; the
    detector does not need to know it (detection works on any step >= the
    default, the lattice step is fixed by `lattice_step(DEFAULT_STRENGTH)`).
    """

    def __init__(self, payload: bytes | str, strength: float = DEFAULT_STRENGTH):
        if isinstance(payload, str):
            payload = payload_for(payload)
        if len(payload) != N_DATA_BITS // 8:
            raise ValueError(f"watermark payload must be {N_DATA_BITS // 8} bytes, got {len(payload)}")
        self.payload = bytes(payload)
        self.strength = float(strength)
        self._u, dither, _ = _patterns()
        self.step = lattice_step(DEFAULT_STRENGTH)
        bits = _word_bits(self.payload)
        # lattice of bit b_i: step * (dither_i + (0 if b_i > 0 else 1/2) + k)
        self._offset = self.step * (dither + np.where(bits > 0, 0.0, 0.5))
        # distortion compensation: move a fraction of the way when strength < default
        self._kappa = min(1.0, self.strength / DEFAULT_STRENGTH)

    def canonical_delta(self, canon_luma: np.ndarray) -> np.ndarray:
        """Luma change on the canonical grid (CANON_PX x CANON_PX float32) for this host face."""
        host = self._u.T @ canon_luma.reshape(-1).astype(np.float32)  # (N_BITS,)
        target = self._offset + np.round((host - self._offset) / self.step) * self.step
        coef = (self._kappa * (target - host)).astype(np.float32)
        return (self._u @ coef).reshape(CANON_PX, CANON_PX)

    def _delta_in(self, rgb: np.ndarray, to_canon: np.ndarray) -> np.ndarray:
        """The luma change in `rgb`'s own pixel space (HxW float32)."""
        luma = _luma(rgb)
        canon = _warp_luma_to_canonical(luma, to_canon)
        h, w = rgb.shape[:2]
        delta = np.zeros((h, w), np.float32)
        # two passes: the second corrects what resampling to and from the grid lost
        for _ in range(EMBED_PASSES):
            change = self.canonical_delta(canon)
            delta += cv2.warpAffine(change, to_canon, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            canon = _warp_luma_to_canonical(luma + delta, to_canon)
        return delta

    def embed_crop(self, face_crop: np.ndarray, crop_landmarks: np.ndarray | None = None) -> np.ndarray:
        """Mark an aligned face crop (uint8 SxSx3 RGB) before it is warped into the frame.

        `crop_landmarks`: the face's 68 landmarks in crop pixels (e.g.
        `transform_points(landmarks, matrix)`); None means the crop was aligned
        like the canonical grid itself (`canonical_points(S)`).
        """
        size_px = face_crop.shape[0]
        if crop_landmarks is None:
            crop_landmarks = canonical_points(size_px)
        delta = self._delta_in(face_crop, to_canonical_matrix(crop_landmarks))
        return _add_luma(face_crop, delta)

    def embed_frame(self, frame: np.ndarray, landmarks: np.ndarray,
                    mask: np.ndarray | None = None) -> np.ndarray:
        """Mark one face directly in a frame; `mask` (HxW in [0,1]) limits it further."""
        to_canon = to_canonical_matrix(landmarks)
        # work on the face's bounding box only: cost independent of frame size
        pts = np.asarray(landmarks, np.float64).reshape(68, 2)
        h, w = frame.shape[:2]
        pad = 0.25 * (pts.max(0) - pts.min(0)).max()
        x0, y0 = np.floor(np.maximum(pts.min(0) - pad, 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(pts.max(0) + pad, [w, h])).astype(int)
        if x1 <= x0 or y1 <= y0:
            return frame.copy()
        roi = frame[y0:y1, x0:x1]
        shifted = to_canon.copy()
        shifted[:, 2] += to_canon[:, :2] @ np.array([x0, y0], np.float64)
        delta = self._delta_in(roi, shifted)
        if mask is not None:
            delta *= np.asarray(mask, np.float32)[y0:y1, x0:x1]
        out = frame.copy()
        out[y0:y1, x0:x1] = _add_luma(roi, delta)
        return out


def _add_luma(rgb: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Add the same change to R, G and B (= luma), round, clip; unchanged where delta == 0."""
    out = rgb.astype(np.float32) + delta[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- detection

@dataclasses.dataclass(frozen=True)
class WatermarkResult:
    found: bool
    payload: str | None  # 6 hex digits: the first 24 bits of the model fingerprint
    share_frames: float  # share of checked frames that carry the found word on their own
    score: float  # standardised statistic, ~N(0,1) unmarked; found needs > SCORE_MIN
    frames_checked: int
    faces_checked: int = 0


class FaceAligner:
    """dlib HOG detector + 68-point landmarks -> canonical luma grids."""

    def __init__(self, model_dir: str = ""):
        import dlib

        if not model_dir:
            spec = importlib.util.find_spec("face_recognition_models")
            if spec is None or spec.origin is None:
                raise InputError("face_recognition_models: not installed (needed for dlib landmarks)")
            model_dir = os.path.join(os.path.dirname(spec.origin), "models")
        path = os.path.join(model_dir, "shape_predictor_68_face_landmarks.dat")
        if not os.path.isfile(path):
            raise InputError(f"{path}: dlib 68-point landmark model not found")
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(path)

    def landmarks(self, rgb: np.ndarray) -> list[np.ndarray]:
        """(68, 2) float64 landmarks of every face found in an RGB frame."""
        rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
        # HOG's window is 80 px: upsample small frames so half-size faces are found
        upsample = 1 if min(rgb.shape[:2]) < 400 else 0
        out = []
        for rect in self._detector(rgb, upsample):
            shape = self._predictor(rgb, rect)
            out.append(np.array([[p.x, p.y] for p in shape.parts()], np.float64))
        return out

    def canonical_faces(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Luma of every face resampled onto the canonical grid."""
        faces = self.landmarks(rgb)
        if not faces:
            return []
        luma = _luma(rgb[..., :3])
        return [_warp_luma_to_canonical(luma, to_canonical_matrix(pts)) for pts in faces]


def face_phasors(canon_luma: np.ndarray) -> np.ndarray:
    """(N_BITS,) complex unit phasors: angle 0 = bit 1 lattice, pi = bit 0 lattice."""
    u, dither, _ = _patterns()
    step = lattice_step(DEFAULT_STRENGTH)
    proj = u.T @ canon_luma.reshape(-1).astype(np.float32)
    return np.exp(2j * np.pi * (proj / step - dither))


_ABS_COS_MEAN = 2 / math.pi  # E|cos psi| for psi uniform
_ABS_COS_VAR = 0.5 - 4 / math.pi ** 2  # Var|cos psi| for psi uniform


def pooled_score(phasors: np.ndarray) -> tuple[float, np.ndarray]:
    """(score, pooled complex (N_BITS,)) for stacked per-face phasors (faces, N_BITS)."""
    pooled = phasors.mean(0)
    r = np.abs(pooled)
    denom = math.sqrt(_ABS_COS_VAR * float((r ** 2).sum()))
    if denom == 0:
        return 0.0, pooled
    score = (float((np.abs(pooled.real)).sum()) - _ABS_COS_MEAN * float(r.sum())) / denom
    return score, pooled


def detect(frames: Iterable[np.ndarray], aligner: FaceAligner | None = None) -> WatermarkResult:
    """Look for the mark in RGB frames (sampled across a video); see the module docstring."""
    aligner = aligner or FaceAligner()
    per_face: list[np.ndarray] = []
    face_frame: list[int] = []
    frames_checked = 0
    for frame in frames:
        for canon in aligner.canonical_faces(frame):
            per_face.append(face_phasors(canon))
            face_frame.append(frames_checked)
        frames_checked += 1
    if not per_face:
        return WatermarkResult(False, None, 0.0, 0.0, frames_checked, 0)
    stacked = np.stack(per_face)  # (faces, N_BITS) complex
    score, pooled = pooled_score(stacked)
    payload = _decode_word(pooled.real)
    found = score > SCORE_MIN and payload is not None
    share = 0.0
    if found:
        signs = np.sign(pooled.real)
        per_frame = (stacked.real * signs).sum(1) / math.sqrt(N_BITS / 2)  # ~N(0,1) off the word
        share = len({f for f, s in zip(face_frame, per_frame) if s > FRAME_Z_MIN}) / frames_checked
    return WatermarkResult(
        found=found,
        payload=payload if found else None,
        share_frames=share,
        score=score,
        frames_checked=frames_checked,
        faces_checked=len(per_face),
    )
