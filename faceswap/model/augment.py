"""Batched augmentation on the training device.

    clean crops (B, 3, S, S) + aux maps (B, K, S, S)
      -> random flip / rotation / scale / shift (same for image and aux) -> target
      -> colour jitter (image)                                           -> target
      -> random smooth grid warp of the target                           -> input

The network sees the warped input and must paint the clean target, which is
what teaches a decoder to draw its identity from the shared code rather than
copy pixels. The aux maps (face hull mask, eye/mouth weights) follow the
geometric part so losses stay aligned with the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rotation_deg: float = 10.0
    scale: float = 0.05          # +- relative zoom
    shift: float = 0.05          # +- share of the crop side
    flip: float = 0.5            # probability of a horizontal flip
    brightness: float = 0.1      # +- added
    contrast: float = 0.1        # +- relative
    saturation: float = 0.1      # +- relative
    warp: float = 0.04           # std-dev of the warp displacement, in units of the crop half-side
    warp_grid: int = 5           # control points per side of the warp field


def _affine(batch: int, cfg: AugmentConfig, gen: torch.Generator, device) -> torch.Tensor:
    """(B, 2, 3) output->input sampling matrices in normalised coordinates."""
    u = lambda: torch.rand(batch, generator=gen) * 2 - 1  # noqa: E731  uniform in [-1, 1]
    angle = u() * math.radians(cfg.rotation_deg)
    scale = 1 + u() * cfg.scale
    flip = torch.where(torch.rand(batch, generator=gen) < cfg.flip, -1.0, 1.0)
    tx, ty = u() * cfg.shift * 2, u() * cfg.shift * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1),
                         torch.stack([sin * flip, cos, ty], 1)], 1)   # (B, 2, 3)
    return theta.to(device)


def _warp_grid(batch: int, size: int, cfg: AugmentConfig, gen: torch.Generator, device) -> torch.Tensor:
    """(B, S, S, 2) identity grid plus a smooth random displacement field."""
    eye = torch.eye(2, 3).expand(batch, 2, 3)
    base = F.affine_grid(eye, (batch, 1, size, size), align_corners=False).to(device)
    noise = torch.randn(batch, 2, cfg.warp_grid, cfg.warp_grid, generator=gen) * cfg.warp
    # Pin the border so the warp moves features, not the crop edges.
    noise[:, :, 0], noise[:, :, -1], noise[:, :, :, 0], noise[:, :, :, -1] = 0, 0, 0, 0
    field = F.interpolate(noise.to(device), size=(size, size), mode="bicubic", align_corners=True)
    return base + field.permute(0, 2, 3, 1)


def _jitter(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    b = len(x)
    u = lambda: (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1).to(x.device)  # noqa: E731
    grey = x.mean(1, keepdim=True)
    x = grey + (x - grey) * (1 + u() * cfg.saturation)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * (1 + u() * cfg.contrast)
    return (x + u() * cfg.brightness).clamp(0, 1)


def augment(images: torch.Tensor, aux: torch.Tensor | None, cfg: AugmentConfig,
            gen: torch.Generator, warp: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """images (B, 3, S, S) float [0,1], aux (B, K, S, S) | None -> (input, target, aux). Without ``warp``
    (the clean phase at the end of a run) the input is the target itself."""
    b, _, s, _ = images.shape
    theta = _affine(b, cfg, gen, images.device)
    grid = F.affine_grid(theta, (b, 1, s, s), align_corners=False)                 # (B, S, S, 2)
    stacked = images if aux is None else torch.cat([images, aux], 1)
    moved = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    target, aux = moved[:, :3], (None if aux is None else moved[:, 3:])
    target = _jitter(target, cfg, gen)
    if not warp:
        return target, target, aux
    field = _warp_grid(b, s, cfg, gen, images.device)
    inp = F.grid_sample(target, field, mode="bilinear", padding_mode="reflection", align_corners=False)
    return inp, target, aux
