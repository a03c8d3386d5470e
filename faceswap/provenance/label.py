"""Optional visible label ("AI-GENERATED") burnt into a corner of each frame; off by default.

A semi-opaque dark box with white text, sized from the frame height so it stays
legible from 240p to 4K. Used by convert when `--label` is given.
"""

from __future__ import annotations

import cv2
import numpy as np

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def draw_label(frame: np.ndarray, text: str = "AI-GENERATED", corner: str = "bottom-right",
               opacity: float = 0.6) -> np.ndarray:
    """Return a copy of an RGB uint8 frame with `text` in a box at `corner`."""
    if corner not in CORNERS:
        raise ValueError(f"label corner must be one of {CORNERS}, got {corner!r}")
    out = frame.copy()
    h, w = out.shape[:2]
    scale = max(0.35, h / 900)
    thick = max(1, round(h / 400))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad_px = max(3, round(h / 120))
    bw, bh = tw + 2 * pad_px, th + base + 2 * pad_px
    x0 = pad_px if "left" in corner else max(0, w - bw - pad_px)
    y0 = pad_px if "top" in corner else max(0, h - bh - pad_px)
    x1, y1 = min(w, x0 + bw), min(h, y0 + bh)
    box = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.rint(box * (1 - opacity)).astype(np.uint8)
    cv2.putText(out, text, (x0 + pad_px, y0 + pad_px + th), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thick, cv2.LINE_AA)
    return out
