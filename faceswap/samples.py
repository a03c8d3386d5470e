"""Deterministic sample clips from public-domain stills that ship inside installed packages.

    stills (skimage astronaut = identity A, matplotlib grace_hopper = identity B)
      -> head crops (refs/*.png) -> soft elliptical head layers
      -> per frame: smooth seeded motion (shift, roll +-10 deg, scale +-10 %, brightness +-15 %)
         -> affine warp onto a gently textured background -> frame-index barcode (bottom-left)
      -> SegmentWriter (H.264) -> + beeping sine track (AAC, same duration) -> <name>.mp4 (atomic)

The barcode is BARCODE_BITS blocks in a row with their complements in the row below,
inside a white quiet zone: black/white blocks survive H.264 re-encoding (checked to
CRF 32, down to 5 px blocks at 180p), and the complement row lets `read_barcode` say
None instead of guessing on frames without one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import skimage.data

from faceswap.video.encode import SegmentWriter, temp_sibling
from faceswap.video.ffmpeg import run_ffmpeg

SAMPLE_FPS = 25
BARCODE_BITS = 20  # 2**20 frames = 11.6 hours at 25 fps, enough for the long-film benchmark

# Head crops (x0, y0, x1, y1) in the stills and the face width inside them (dlib HOG box, px).
# The astronaut crop stops above the suit: HOG finds a false second face lower in that image.
_HEAD_A = ((150, 20, 300, 210), 87.0)
_HEAD_B = ((140, 25, 395, 395), 215.0)


def _still_a() -> np.ndarray:
    return skimage.data.astronaut()


def _still_b() -> np.ndarray:
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def head_crop(identity: str) -> np.ndarray:
    """The rectangular head crop of identity "a" or "b" (RGB uint8), as saved in refs/."""
    still, ((x0, y0, x1, y1), _) = (_still_a(), _HEAD_A) if identity == "a" else (_still_b(), _HEAD_B)
    return np.ascontiguousarray(still[y0:y1, x0:x1])


# ---------------------------------------------------------------- barcode


def barcode_block_px(height: int) -> int:
    """Block size scaled with the frame height (8 px at 288p, 20 px at 720p, 5 px at 180p)."""
    return max(4, height // 36)


def barcode_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the barcode with its quiet zone, bottom-left corner."""
    block = barcode_block_px(height)
    return 0, height - 4 * block, (BARCODE_BITS + 2) * block, height


def draw_barcode(rgb: np.ndarray, index: int) -> None:
    """Stamp frame `index` (mod 2**BARCODE_BITS) into `rgb` in place."""
    height, width = rgb.shape[:2]
    block = barcode_block_px(height)
    x0, y0, x1, y1 = barcode_box(height, width)
    bits = (index >> np.arange(BARCODE_BITS - 1, -1, -1)) & 1  # MSB first, left to right
    cells = np.full((4, BARCODE_BITS + 2), 255, np.uint8)  # white quiet zone around two rows
    cells[1, 1:-1] = np.where(bits == 1, 0, 255)
    cells[2, 1:-1] = np.where(bits == 1, 255, 0)
    rgb[y0:y1, x0:x1] = np.repeat(np.repeat(cells, block, 0), block, 1)[:, :, None]


def read_barcode(rgb: np.ndarray) -> int | None:
    """The frame index stamped by `draw_barcode`, or None when the corner holds no valid code."""
    height, width = rgb.shape[:2]
    block = barcode_block_px(height)
    x0, y0, x1, y1 = barcode_box(height, width)
    if x1 > width:
        return None
    gray = rgb[y0:y1, x0:x1].astype(np.float32).mean(axis=2)
    # Mean over the inner half of each block: edges bleed after lossy coding.
    cells = gray.reshape(4, block, BARCODE_BITS + 2, block)
    q = block // 4
    inner = cells[:, q : block - q, :, q : block - q].mean(axis=(1, 3))
    top, bottom = inner[1, 1:-1], inner[2, 1:-1]
    if np.any(np.abs(top - bottom) < 96):
        return None  # a bit and its complement must disagree clearly
    bits = (top < bottom).astype(np.int64)  # black on top = 1
    return int((bits << np.arange(BARCODE_BITS - 1, -1, -1)).sum())


# ---------------------------------------------------------------- rendering


@dataclass
class _Layer:
    """A head ready to warp, and its motion."""

    rgb: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray  # (h, w) float32 in [0, 1]: a feathered ellipse
    center_xy: tuple[float, float]  # rest position in the frame (px)
    shift_px: float  # translation amplitude
    phases: np.ndarray  # (5,) per-parameter phase
    freqs_hz: np.ndarray  # (5,) per-parameter frequency


def _head_layer(identity: str, face_px: float, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    crop = head_crop(identity)
    (_, face_w) = _HEAD_A if identity == "a" else _HEAD_B
    scale = face_px / face_w
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    rgb = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    if mirror:
        rgb = np.ascontiguousarray(rgb[:, ::-1])
    h, w = rgb.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (w // 2, h // 2), (int(w * 0.46), int(h * 0.47)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.04 * w))
    return rgb, alpha


def _background(height: int, width: int, seed: int, textured: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(90, 180, 3).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = (xx / width - 0.5)[..., None] * rng.uniform(-30, 30, 3) + (yy / height - 0.5)[..., None] * 20
    texture = cv2.GaussianBlur(rng.normal(0, 12, (height, width)).astype(np.float32), (0, 0), max(2.0, height / 40))
    return np.clip(base + gradient + textured * texture[..., None], 0, 255).astype(np.uint8)


class _Scene:
    """Renders frame i of one clip; state is fixed at construction, so frames are order-independent."""

    def __init__(
        self, width: int, height: int, heads: list[tuple[str, float, bool, float, float]], seed: int, textured: bool = True
    ):
        """heads: (identity, face_px, mirror, rest x as a fraction of width, rest y fraction of height)."""
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        self.background = _background(height, width, seed, textured)
        self.layers = []
        for identity, face_px, mirror, fx, fy in heads:
            rgb, alpha = _head_layer(identity, face_px, mirror)
            self.layers.append(
                _Layer(
                    rgb=rgb,
                    alpha=alpha,
                    center_xy=(fx * width, fy * height),
                    shift_px=0.12 * face_px,
                    phases=rng.uniform(0, 2 * math.pi, 5),
                    # About one cycle per 4 s clip: smooth, yet every extreme is reached.
                    freqs_hz=rng.uniform(0.2, 0.35, 5),
                )
            )
        self.light_phase = rng.uniform(0, 2 * math.pi)

    def head_matrix(self, layer: int, index: int, fps: float) -> np.ndarray:
        """(2, 3) affine from head ``layer``'s pixels (its ``head_crop`` resized to the layer) to frame ``index``."""
        layer_ = self.layers[layer]
        wave = np.sin(2 * math.pi * layer_.freqs_hz * index / fps + layer_.phases)
        dx, dy = layer_.shift_px * wave[0], 0.6 * layer_.shift_px * wave[1]
        angle_deg, scale = 10.0 * wave[2], 1.0 + 0.10 * wave[3]
        h, w = layer_.rgb.shape[:2]
        cx, cy = layer_.center_xy
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, scale)
        matrix[:, 2] += (cx + dx - w / 2, cy + dy - h / 2)
        return matrix

    def render(self, index: int, fps: float) -> np.ndarray:
        """Frame `index` as uint8 RGB; ~0.3 ms at 320x180 (all work in small uint8 ROIs)."""
        t = index / fps
        frame = self.background.copy()
        for k, layer in enumerate(self.layers):
            h, w = layer.rgb.shape[:2]
            matrix = self.head_matrix(k, index, fps)
            # Warp only into the layer's bounding box in the frame: most of the frame is background.
            corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ matrix.T
            x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
            x1 = min(int(np.ceil(corners[:, 0].max())) + 1, self.width)
            y1 = min(int(np.ceil(corners[:, 1].max())) + 1, self.height)
            if x1 <= x0 or y1 <= y0:
                continue
            matrix[:, 2] -= (x0, y0)
            size = (x1 - x0, y1 - y0)
            rgb = cv2.warpAffine(layer.rgb, matrix, size, flags=cv2.INTER_LINEAR)
            alpha = cv2.warpAffine(layer.alpha, matrix, size, flags=cv2.INTER_LINEAR)
            roi = frame[y0:y1, x0:x1]
            frame[y0:y1, x0:x1] = cv2.blendLinear(rgb, roi, alpha, 1.0 - alpha)
        gain = 1.0 + 0.15 * math.sin(2 * math.pi * 0.3 * t + self.light_phase)
        frame = cv2.convertScaleAbs(frame, alpha=gain)
        draw_barcode(frame, index)
        return frame


# ---------------------------------------------------------------- files


def _encode(path: Path, scene: _Scene, frames: int, fps: int, crf: int = 20, preset: str = "veryfast") -> None:
    """Video via SegmentWriter, then a beep track muxed in; the final name appears atomically."""
    video_tmp = temp_sibling(path)
    try:
        # A keyframe every 2 s, as streaming encoders do: gives shard planning keyframes to snap to.
        with SegmentWriter(video_tmp, scene.width, scene.height, fps, crf=crf, preset=preset, gop_frames=2 * fps) as w:
            for i in range(frames):
                w.write(scene.render(i, fps))
        mux_beeps(video_tmp, path, Fraction(frames, fps))
    finally:
        video_tmp.unlink(missing_ok=True)


def mux_beeps(video_path: str | os.PathLike, out_path: str | os.PathLike, duration_s: Fraction | float) -> None:
    """Copy the video of `video_path` and add a 440 Hz tone with a beep every second (AAC), `duration_s` long."""
    out_path = Path(out_path)
    tmp = temp_sibling(out_path)
    try:
        run_ffmpeg(
            [
                "-i", str(video_path),
                # The beep every second makes audio drift audible and measurable.
                "-f", "lavfi", "-i", f"sine=frequency=440:beep_factor=4:sample_rate=22050:duration={float(duration_s):.6f}",
                "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "48k", "-ac", "1",
                str(tmp),
            ],
            what=str(out_path),
        )
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)


_SIZES = {"small": (384, 288, 100), "720p": (1280, 720, 200)}  # width, height, frames (4 s / 8 s at 25 fps)


def write_samples(out_dir: str | os.PathLike, sizes: tuple[str, ...] | list[str] = ("small",)) -> dict[str, str]:
    """Write the sample clips and refs under `out_dir`; return {file name: path}.

    Per size S: a_S.mp4 (identity A alone), b_S.mp4 (identity B alone, different motion);
    for "small" also a_bystander_small.mp4: A with a smaller bystander. No third
    public-domain face ships in our packages, so the bystander is grace_hopper
    mirrored (identity B): extract with A references must still leave it out.
    Existing files are kept (the clips are deterministic).
    """
    out = Path(out_dir)
    (out / "refs").mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for identity in ("a", "b"):
        ref = out / "refs" / f"{identity}.png"
        if not ref.exists():
            tmp = temp_sibling(ref)
            cv2.imwrite(str(tmp), cv2.cvtColor(head_crop(identity), cv2.COLOR_RGB2BGR))
            os.replace(tmp, ref)
        written[f"refs/{identity}.png"] = str(ref)
    for size in sizes:
        if size not in _SIZES:
            raise ValueError(f"unknown sample size {size!r}; choose from {sorted(_SIZES)}")
        width, height, frames = _SIZES[size]
        face_px = 0.42 * height  # >= 109 px at the smallest scale: dlib HOG (no upsampling) sees ~80 px and up
        clips = {
            f"a_{size}.mp4": _Scene(width, height, [("a", face_px, False, 0.5, 0.42)], seed=1),
            f"b_{size}.mp4": _Scene(width, height, [("b", face_px, False, 0.52, 0.45)], seed=2),
        }
        if size == "small":
            clips[f"a_bystander_{size}.mp4"] = _Scene(
                width, height, [("a", 0.40 * height, False, 0.28, 0.42), ("b", 0.31 * height, True, 0.76, 0.40)], seed=3
            )
        for name, scene in clips.items():
            path = out / name
            if not path.exists():
                _encode(path, scene, frames, SAMPLE_FPS)
            written[name] = str(path)
    return written


def write_long_clip(path: str | os.PathLike, seconds: float, width: int = 320, height: int = 180, fps: int = SAMPLE_FPS) -> str:
    """A long low-resolution film of identity A for scale benchmarks, streamed in constant memory.

    Frames are rendered one at a time (small affine warps on a plain background)
    straight into the encoder at `-preset superfast`: ~640 frames/s measured on a
    busy 2-core machine, so 3 hours (270,000 frames) take about 7 minutes.
    """
    path = Path(path)
    frames = round(seconds * fps)
    if frames <= 0:
        raise ValueError(f"{path}: need a positive duration, got {seconds} s")
    # HOG (no upsampling) needs faces of ~80 px or more, whatever the frame height.
    face_px = max(0.38 * height, min(90.0, 0.5 * height))
    scene = _Scene(width, height, [("a", face_px, False, 0.5, 0.40)], seed=4, textured=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    # superfast at CRF 24: measured fastest end to end (ultrafast writes 3x the bytes).
    _encode(path, scene, frames, fps, crf=24, preset="superfast")
    return str(path)
