"""Reconstruction losses: SSIM + L1 per pixel, weighted to the face, optional mask loss.

    loss = mean_w( L1(pred, target) + (1 - SSIM(pred, target)) / 2 ) + mask_weight * L1(mask, hull - hands)

``w`` (``pixel_weights``) = (background + (1 - background) * face hull) * (1 + eye_mouth_weight * eyes/mouth)
* (1 - hands): convert pastes only the face, so hair, neck and background get a small share of the model's
capacity (``background`` < 1, DeepFaceLab's "masked training"), and eyes and mouth (the parts a
viewer judges identity and expression by) count more. The hands extract found over a face count for
nothing, and a learned mask learns the face without them (as DeepFaceLab's XSeg-masked training): a decoder
taught to rebuild the fingers over one person's nose paints them onto the other person's face.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# 68-point landmark index ranges (iBUG layout).
RIGHT_EYE, LEFT_EYE, MOUTH = range(36, 42), range(42, 48), range(48, 60)
JAW_AND_BROWS = list(range(0, 27))


@functools.lru_cache(maxsize=8)
def _gaussian_window(size: int, sigma: float, channels: int, device: str, dtype) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()
    return w.to(device=device, dtype=dtype)                                # (C, 1, k, k)


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> per-pixel SSIM (B, 1, H, W), channel-averaged."""
    c = x.shape[1]
    w = _gaussian_window(window, sigma, c, str(x.device), x.dtype)
    pad = window // 2
    blur = lambda t: F.conv2d(F.pad(t, [pad] * 4, mode="reflect"), w, groups=c)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(1, keepdim=True)


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                        mask_pred: torch.Tensor | None = None, mask_target: torch.Tensor | None = None,
                        mask_weight: float = 0.5) -> torch.Tensor:
    """pred/target (B, 3, H, W); weight (B, 1, H, W) | None; masks (B, 1, H, W) | None -> scalar."""
    pred, target = pred.float(), target.float()
    per_pixel = (pred - target).abs().mean(1, keepdim=True) + (1 - ssim_map(pred, target)) / 2  # (B, 1, H, W)
    if weight is None:
        loss = per_pixel.mean()
    else:
        loss = (per_pixel * weight).sum() / weight.sum()
    if mask_pred is not None and mask_target is not None:
        loss = loss + mask_weight * (mask_pred.float() - mask_target.float()).abs().mean()
    return loss


def pixel_weights(aux: torch.Tensor, eye_mouth_weight: float, background: float) -> torch.Tensor | None:
    """(B, 2|3, S, S) aux maps (face hull, eyes+mouth[, hands]) -> (B, 1, S, S) loss weights, or None (uniform)."""
    hands = aux[:, 2:3] if aux.shape[1] > 2 and bool(aux[:, 2].any()) else None
    if eye_mouth_weight <= 0 and background >= 1 and hands is None:
        return None
    weight = background + (1 - background) * aux[:, 0:1] if background < 1 else torch.ones_like(aux[:, 0:1])
    if eye_mouth_weight > 0:
        weight = weight * (1 + eye_mouth_weight * aux[:, 1:2])
    if hands is not None:
        weight = weight * (1 - hands)
    return weight


def visible_face(aux: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S): the face hull less the hands over it (a learned mask's target, the adversary's face)."""
    return aux[:, 0:1] * (1 - aux[:, 2:3]) if aux.shape[1] > 2 else aux[:, 0:1]


# -- landmark-derived maps (built per sample in the data reader, in crop pixels) ---------------

def landmark_maps(points: np.ndarray, size: int, hands=()) -> np.ndarray:
    """(68, 2) crop-space landmarks (and ``hands``: (21, 2) points each, same pixels) -> uint8 (size, size, 3):
    face hull mask, eye+mouth regions, hands."""
    from faceswap.faces.hands import hand_mask

    maps = np.zeros((3, size, size), np.uint8)
    if len(hands):
        maps[2] = np.round(hand_mask(list(hands), (size, size)) * 255).astype(np.uint8)
    pts = np.round(points).astype(np.int32)
    cv2.fillConvexPoly(maps[0], cv2.convexHull(pts[JAW_AND_BROWS]), 255)
    grow = max(1, size // 32)
    for region in (RIGHT_EYE, LEFT_EYE, MOUTH):
        cv2.fillConvexPoly(maps[1], cv2.convexHull(pts[list(region)]), 255)
    maps[1] = cv2.dilate(maps[1], np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return maps.transpose(1, 2, 0)
