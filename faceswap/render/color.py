"""Colour correction of a generated face towards the face it replaces.

    generated crop + original crop + region mask -> statistics inside the mask -> corrected crop

Methods: ``reinhard`` (mean and spread matched per channel in CIELAB, Reinhard et al. 2001),
``mean`` (average RGB shifted), ``hist`` (per-channel histogram matching), ``none``.
"""

from __future__ import annotations

import cv2
import numpy as np

METHODS = ("reinhard", "mean", "hist", "none")


def match_color(face: np.ndarray, target: np.ndarray, mask: np.ndarray, method: str = "reinhard") -> np.ndarray:
    """Correct ``face`` (uint8 SxSx3 RGB) so its colours inside ``mask`` match ``target``'s."""
    if method == "none":
        return face
    if method not in METHODS:
        raise ValueError(f"colour method must be one of {METHODS}, got {method!r}")
    region = mask > 0.5
    if region.sum() < 16:
        return face
    if method == "mean":
        shift = target[region].mean(0) - face[region].mean(0)
        out = np.clip(face.astype(np.float32) + shift, 0, 255).astype(np.uint8)
        return _grey_like(out, target, region)
    if method == "reinhard":
        f = cv2.cvtColor(face, cv2.COLOR_RGB2LAB).astype(np.float32)
        t = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
        f_mean, f_std = f[region].mean(0), f[region].std(0) + 1e-3
        t_mean, t_std = t[region].mean(0), t[region].std(0) + 1e-3
        # Bound the gain: a nearly flat generated region must not be blown up into noise. Lightness keeps
        # at least half its spread (a flat-lit face still has shading), but chroma follows the footage
        # all the way down: grayscale footage (a, b spread 0) gets a grayscale face, not a faded colour one.
        gain = np.clip(t_std / f_std, [0.5, 0.0, 0.0], 2.0)
        out = (f - f_mean) * gain + t_mean
        return cv2.cvtColor(np.clip(np.round(out), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return _grey_like(_match_histograms(face, target, region), target, region)


def _grey_like(face: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``face`` in grey when the footage's face carries no colour (at most 2 levels between channels)."""
    t = target[region].astype(np.int16)
    if np.abs(t - t.mean(1, keepdims=True)).max() > 2:
        return face
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[..., None], 3, axis=2)


def _match_histograms(face: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    out = np.empty_like(face)
    for c in range(3):
        src_hist = np.bincount(face[..., c][region], minlength=256).astype(np.float64)
        dst_hist = np.bincount(target[..., c][region], minlength=256).astype(np.float64)
        src_cdf = np.cumsum(src_hist) / src_hist.sum()
        dst_cdf = np.cumsum(dst_hist) / dst_hist.sum()
        lut = np.interp(src_cdf, dst_cdf, np.arange(256)).round().astype(np.uint8)
        out[..., c] = lut[face[..., c]]
    return out
