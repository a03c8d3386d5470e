"""Invisible watermark inside swapped faces: temporally keyed spread spectrum.

Method (this is faceswap's documented marking method)
-----------------------------------------------------
The mark lives in *face-aligned* coordinates, so it follows the face through
motion and rescaling, and it only ever touches the inner face:

    68 landmarks -> similarity (Umeyama, inner points 17..67) -> canonical grid
    (CANON_PX x CANON_PX, `canonical_points`) -> luma of the face on that grid.

* Patterns w_k.  From a fixed public key (`KEY`) we draw N_BITS white Gaussian
  fields on the grid, band-pass them to BAND_CYCLES cycles per grid, weight them
  with a feathered inner-face window (face hull, eroded: the mark stays off the
  blend seam) and orthonormalise them (QR) after six low-order polynomials, so
  lighting gradients do not project onto them.
* Payload s_k = +-1: 32 signs, the (32, 16) Reed-Muller codeword of the first 16 bits of the
  model fingerprint (`payload.py`: minimum distance 8, decoded by maximum likelihood).
* Temporal key.  Frame t belongs to block b = t // BLOCK_FRAMES; the chip
  c_k(b) = +-1 comes from SHA-256(KEY, b) (`chips`): deterministic, no state.
  Frame t's face gets  delta = a * sum_k s_k c_k(b) w_k  on the grid, warped into
  the frame through the alignment, multiplied by the caller's mask (nothing
  outside it changes) and added equally to R, G and B (luma only).  `a` is set
  so the RMS change over the face hull is `strength` (2.4 levels: 40.6 dB min).
* Why: measured on faces, a face's own projection onto a band-limited keyed
  pattern is 50-500 luma units against ~17 per bit at 40 dB, and a generated,
  aligned face is nearly the same in every frame, so a *static* additive mark
  never averages out of it; quantisation (QIM, the previous method) rejects the
  host but broke under 0.3 px landmark jitter and CRF 28.  Flipping the mark's
  signs with a keyed chip over time lets the detector cancel the host by
  differencing in time instead: the host is the same whatever the chips.
* Detection (`detect.py`) gets (true frame index, frame) pairs.  Every face is
  aligned, its grid luma divided by its std over the window (brightness changes
  cancel) and projected: p_k(t) = <x_t, w_k>; faces are linked into tracks by
  position.  Per track, a least-squares line through p_k over each chunk of
  RUN_FRAMES consecutive frames is subtracted (the static host and its drift
  cancel), faces with more residual energy than the median are scaled down to
  it (a blink, a smeared frame), the residuals are summed per block, y_k(b)
  (over a hypothesis' tracks), and
      z_k = sum_b c_k(b) y_k(b) / sqrt(sum_b y_k(b)^2),
      score = (sum_k z_k^2 - K) / sqrt(2K)      (K = N_BITS),
      t = max over the 2^16 codewords c of sum_k c_k z_k / sqrt(K).
  Hypotheses: each track of >= 8 faces alone, and all faces pooled, each with
  the chunk mean or a line subtracted.  Found = some hypothesis' t passes its
  threshold and its codeword is certain (`payload.py`); present = found, or
  the best score passes its threshold (the keyed pattern is there, no word is
  certain: "unreadable").
* False-positive bound.  For a video not marked with this key the chips are
  independent of the content, so given the residuals y, each z_k is a Rademacher
  sum with unit variance, independent over k: z_k is 1-sub-Gaussian whatever the
  faces and however frames correlate, and (Hsu, Kakade & Zhang 2012)
  P(sum z_k^2 >= K + 2 sqrt(K u) + 2u) <= e^-u.  SCORE_MIN uses u = 13.8
  (1e-6): energy 101.6, score 8.70 for 32 bits; H hypotheses (tracks, pool) use
  u = 13.8 + ln H (union bound; 9.01 for 2: one face, mean and line; 9.48 for 6).
  For the payload, sum_k c_k z_k is sqrt(K)-sub-Gaussian for each codeword, so
  over 2^16 codewords and H hypotheses t passes sqrt(2 (16 ln 2 + ln H + u))
  with probability <= e^-u: 7.15 for 2 hypotheses, 7.30 for 6.  Tracks, pool
  and the faces' weights come from face positions and residuals only, never
  from the chips, so both bounds hold for each.  Together <= 2e-6 per video.
  A single frame (or one block) gives z = 0: never found.
* Measured (tests/test_provenance.py: sample clip a_small, 384x288, 100 frames,
  embedded under the hull mask): score 101 and payload correlation t 28.9
  lossless, 93 / 27.8 H.264 CRF 18, 40 / 18.5 after `-crf 28 -vf scale=iw/2:ih/2
  -map_metadata -1`; unmarked 0.4 / 4.2, laundered unmarked -0.1 / 4.0.  Face
  PSNR 40.5 dB min, flicker (mean |frame-to-frame luma change| in the face,
  marked / unmarked) 1.07x.  Laundered convert outputs (tests/test_provenance_matrix.py,
  7 inputs of 60 frames): t 8.1-10.9 against 7.15-7.30, payload in all 7; the
  previous mark (v2: band 2-8, 40-bit tag + CRC-8 word, one Chase flip, no face
  following) read 3 of 7.  What each change gave there, one at a time
  (benchmarks/RESULTS.md): the code and its correlation test, the lower band
  (1.5-6 cycles: 20.6 against 16.2 for 2-8 on one laundering), the faces'
  weights, and following faces the detector missed (it found 34-48 of 60).
  Registration (verify's landmarks vs convert's on the output): 0.33 grid px
  median, 1.1 max.  BLOCK_FRAMES 2 / 3 / 4: laundered 35 / 38 / 26, flicker
  1.10 / 1.07 / 1.05x (v2).  Embedding ~0.6 ms per face (benchmarks/watermark.py),
  10% of a bare decode + encode.
* Limits: detection needs the true frame indices and consecutive frames, so
  dropping or inserting frames (frame-rate conversion, cuts) before re-encoding
  breaks the chip alignment; very short clips (a few blocks) cannot reach the
  threshold.  Not a security feature: key and method are public, and anyone can
  estimate and subtract the mark.

Public API
----------
`payload_for(model_fingerprint) -> bytes` (2 bytes, from `payload.py`);
`Watermarker(payload: bytes | str, strength=2.4)` with
`.embed_frame(frame uint8 HxWx3, landmarks (68,2), mask float HxW | None, frame_index, mask_origin=(0, 0),
 in_place=False) -> uint8` (a mask of a box of the frame at `mask_origin`: no full-frame mask or copy a face);
`patterns()`, `chips(block)`, `to_canonical_matrix`, `warp_luma_to_canonical`, `luma`: shared with
`detect.py`.
"""

from __future__ import annotations

import functools
import hashlib
import math

import cv2
import numpy as np

from faceswap.faces.align import umeyama
from faceswap.provenance.payload import N_BITS, N_DATA_BITS, payload_for, word_bits

CANON_PX = 64  # side of the canonical face grid the patterns live on
KEY = b"faceswap-provenance-v3"  # public: this is a provenance signal, not DRM
BAND_CYCLES = (1.5, 6.0)  # pattern band, cycles per canonical grid (measured: survives half size + CRF 28 best)
WINDOW_ERODE = 0.04  # inner-face window: jaw+brow hull eroded by this share of the grid
BLOCK_FRAMES = 3  # frames per chip block: the mark's sign pattern changes every BLOCK_FRAMES frames (flicker 1.07x)
RUN_FRAMES = 16  # detection cancels the host by subtracting its mean over chunks of this many consecutive frames
DEFAULT_STRENGTH = 2.4  # RMS luma change over the face hull, 8-bit levels (~40.4 dB)

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


def to_canonical_matrix(landmarks: np.ndarray) -> np.ndarray:
    """2x3 matrix from the landmarks' pixel space to the canonical grid."""
    pts = np.asarray(landmarks, np.float64).reshape(68, 2)
    return umeyama(pts[_ALIGN_POINTS], canonical_points()[_ALIGN_POINTS])[:2]


# ---------------------------------------------------------------- temporal key

def chips(block: int) -> np.ndarray:
    """(N_BITS,) float32 in {-1, +1}: the keyed temporal chip of every bit for one frame block.

    A pure function of (KEY, block): embedder and detector need no shared state,
    only the true frame index (block = frame_index // BLOCK_FRAMES).
    """
    digest = hashlib.sha256(KEY + b"chips" + int(block).to_bytes(8, "little", signed=True)).digest()
    bits = np.unpackbits(np.frombuffer(digest, np.uint8))[:N_BITS]
    return bits.astype(np.float32) * 2 - 1


# ---------------------------------------------------------------- patterns

@functools.lru_cache(maxsize=1)
def patterns() -> tuple[np.ndarray, np.ndarray, float]:
    """(U, window, hull_px): U (CANON_PX^2, N_BITS) orthonormal float32 columns,
    window (CANON_PX, CANON_PX) float32, hull_px: area of the face hull on the grid."""
    g = CANON_PX
    pts = canonical_points(g)
    hull = cv2.convexHull(np.round(pts * 8).astype(np.int32))  # all 68 points, 1/8 px
    hull_mask = np.zeros((g, g), np.uint8)
    cv2.fillConvexPoly(hull_mask, hull, 255, lineType=cv2.LINE_8, shift=3)
    erode_px = max(1, round(WINDOW_ERODE * g))
    window = cv2.erode(hull_mask, np.ones((2 * erode_px + 1,) * 2, np.uint8))
    window = cv2.GaussianBlur(window.astype(np.float32) / 255, (0, 0), 0.02 * g).astype(np.float64)

    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(KEY).digest()[:8], "little"))
    fy = np.fft.fftfreq(g)[:, None] * g
    fx = np.fft.rfftfreq(g)[None, :] * g
    radius = np.hypot(fx, fy)
    band = ((radius >= BAND_CYCLES[0]) & (radius <= BAND_CYCLES[1])).astype(np.float64)
    noise = rng.standard_normal((N_BITS, g, g))
    fields = np.fft.irfft2(np.fft.rfft2(noise) * band, s=(g, g)) * window

    # orthogonal to window-weighted low-order polynomials: lighting gradients do not project
    yy, xx = np.mgrid[0:g, 0:g] / g - 0.5
    polys = [np.ones((g, g)), xx, yy, xx * xx, xx * yy, yy * yy]
    cols = np.concatenate([np.stack([p * window for p in polys]).reshape(6, -1),
                           fields.reshape(N_BITS, -1)]).T
    q, _ = np.linalg.qr(cols)
    return q[:, 6:].astype(np.float32), window.astype(np.float32), float((hull_mask > 0).sum())


def amplitude(strength: float = DEFAULT_STRENGTH) -> float:
    """Per-bit amplitude a on the grid for an RMS change of `strength` over the face hull."""
    _, _, hull_px = patterns()
    return strength * math.sqrt(hull_px / N_BITS)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ _LUMA


def warp_luma_to_canonical(lum: np.ndarray, to_canon: np.ndarray) -> np.ndarray:
    """Resample luma onto the canonical grid, low-passed first when shrinking."""
    scale = math.sqrt(abs(np.linalg.det(to_canon[:, :2])))
    if scale < 0.8:
        lum = cv2.GaussianBlur(lum, (0, 0), 0.45 / scale)
    return cv2.warpAffine(lum, to_canon, (CANON_PX, CANON_PX), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


# ---------------------------------------------------------------- embedding

class Watermarker:
    """Adds the temporally keyed mark of one payload to faces (see the module docstring).

    `payload`: 2 bytes, or a model fingerprint string (passed to `payload_for`).
    `strength`: RMS luma change over the face hull in 8-bit levels (2.4 ~ 40.4 dB);
    the detector does not need to know it.
    """

    def __init__(self, payload: bytes | str, strength: float = DEFAULT_STRENGTH):
        if isinstance(payload, str):
            payload = payload_for(payload)
        if len(payload) != N_DATA_BITS // 8:
            raise ValueError(f"watermark payload must be {N_DATA_BITS // 8} bytes, got {len(payload)}")
        self.payload = bytes(payload)
        self.strength = float(strength)
        self._u, _, _ = patterns()
        self._bits = word_bits(self.payload)
        self._amp = amplitude(self.strength)

    def canonical_delta(self, frame_index: int) -> np.ndarray:
        """The mark of frame `frame_index` on the canonical grid (CANON_PX x CANON_PX float32)."""
        coef = self._amp * self._bits * chips(int(frame_index) // BLOCK_FRAMES)
        return (self._u @ coef).reshape(CANON_PX, CANON_PX)

    def embed_frame(self, frame: np.ndarray, landmarks: np.ndarray, mask: np.ndarray | None,
                    frame_index: int, mask_origin: tuple[int, int] = (0, 0), in_place: bool = False) -> np.ndarray:
        """Mark one face of frame `frame_index` (uint8 HxWx3 RGB, 68 landmarks in frame px).

        Only pixels with `mask` > 0 change (the mark is multiplied by the mask;
        None = the inner-face window alone). `mask` covers the frame, or, with `mask_origin` (x, y),
        a box of it whose top-left corner is there (zero outside it). Returns a new array, or `frame`
        itself marked with `in_place`.
        """
        to_canon = to_canonical_matrix(landmarks)
        # work on the face's bounding box only: cost independent of frame size
        pts = np.asarray(landmarks, np.float64).reshape(68, 2)
        h, w = frame.shape[:2]
        pad = 0.1 * (pts.max(0) - pts.min(0)).max()
        x0, y0 = np.floor(np.maximum(pts.min(0) - pad, 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(pts.max(0) + pad, [w, h])).astype(int)
        out = frame if in_place else frame.copy()
        if x1 <= x0 or y1 <= y0:
            return out
        shifted = to_canon.copy()
        shifted[:, 2] += to_canon[:, :2] @ np.array([x0, y0], np.float64)
        delta = cv2.warpAffine(self.canonical_delta(frame_index), shifted, (int(x1 - x0), int(y1 - y0)),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if mask is not None:
            delta *= _window(np.asarray(mask, np.float32), mask_origin, (x0, y0, x1, y1))
        out[y0:y1, x0:x1] = _add_luma(frame[y0:y1, x0:x1], delta)
        return out


def _window(mask: np.ndarray, origin: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """The frame box (x0, y0, x1, y1) of a mask whose top-left pixel sits at frame point ``origin``."""
    x0, y0, x1, y1 = box
    ox, oy = (int(v) for v in origin)
    out = np.zeros((y1 - y0, x1 - x0), np.float32)
    ix0, iy0 = max(x0, ox), max(y0, oy)
    ix1, iy1 = min(x1, ox + mask.shape[1]), min(y1, oy + mask.shape[0])
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = mask[iy0 - oy:iy1 - oy, ix0 - ox:ix1 - ox]
    return out


def _add_luma(rgb: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Add the same change to R, G and B (= luma), round, clip; unchanged where delta == 0."""
    # rgb is integral, so rint(rgb + delta) == rgb + rint(delta): add in int16, no float image
    out = rgb.astype(np.int16) + np.rint(delta).astype(np.int16)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)
