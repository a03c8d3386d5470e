"""The face-swap autoencoder: one shared encoder, one decoder per identity.

    crop A --\\                         /-- decoder_a --> A (reconstruction)
              >-- encoder (shared) --<
    crop B --/                         \\-- decoder_b --> B (reconstruction)

    swap A->B:  decoder_b(encoder(crop A))

The encoder is the classic faceswap shape: strided convolutions, a dense
bottleneck that forces a pose/expression code shared by both identities, a
dense expansion and one pixel-shuffle upscale. Each decoder upscales back to
the input size and paints RGB (and, where the preset learns one, a mask).

Shapes below are for the ``original`` preset (64 px); the other presets only
change the numbers.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    preset: str = "original"
    size: int = 64                                    # input and output side, px
    encoder_dims: list[int] = field(default_factory=lambda: [128, 256, 512, 1024])
    bottleneck: int = 1024                            # width of the dense code
    dense_side: int = 4                               # side of the map the dense layer expands to
    dense_dims: int = 1024                            # channels of that map
    decoder_dims: list[int] = field(default_factory=lambda: [512, 256, 128, 64])
    kernel: int = 5                                   # encoder conv kernel
    residual_blocks: int = 0                          # residual blocks after each decoder upscale
    learn_mask: bool = False                          # decoders paint a 4th (mask) channel
    mask_head: bool = False                           # ... from a head of its own that reads the decoder's
                                                      # last features without training them (below)
    # Training defaults for the preset (TrainConfig may override).
    batch_size: int = 16
    lr: float = 5e-5
    steps: int = 20000

    def __post_init__(self):
        downs = len(self.encoder_dims)
        if self.size != self.dense_side * 2 ** len(self.decoder_dims):
            raise ValueError(f"preset {self.preset}: size {self.size} != dense_side {self.dense_side} "
                             f"* 2**{len(self.decoder_dims)} upscales")
        if self.mask_head and not self.learn_mask:
            raise ValueError(f"preset {self.preset}: mask_head needs learn_mask")
        if self.size // 2 ** downs < 1:
            raise ValueError(f"preset {self.preset}: {downs} downscales do not fit {self.size} px")

    def architecture(self) -> dict:
        """The fields that decide the weights' shapes (training defaults left out)."""
        d = dataclasses.asdict(self)
        for k in ("batch_size", "lr", "steps", "preset"):
            d.pop(k)
        return d

    def difference(self, other: "ModelConfig") -> str:
        """The architecture fields that differ, as "name mine vs other's", comma-separated."""
        mine, theirs = self.architecture(), other.architecture()
        return ", ".join(f"{k} {mine[k]} vs {theirs[k]}" for k in mine if mine[k] != theirs[k])

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


PRESETS: dict[str, ModelConfig] = {
    # Classic faceswap "original": 64 px, 4 strided 5x5 convs, 1024-wide bottleneck.
    "original": ModelConfig(),
    # Small enough to learn a recognisable swap of two sample faces in minutes on 2 CPU cores. No mask yet:
    # a mask as a 4th channel of its 16-channel last layer cost identity on the real-footage benchmark
    # (26 % and 44 % retrieval against 66 %); one from a head of its own (mask_head) did not, and with
    # convert's fill took most of the arc away, but the fill of a young (150-step) model's grey mask cost
    # laundered outputs their watermark (tests/test_provenance_matrix.py). benchmarks/RESULTS.md has both.
    "lite": ModelConfig(preset="lite", size=64, encoder_dims=[32, 64, 128, 256], bottleneck=128,
                        dense_side=4, dense_dims=256, decoder_dims=[96, 48, 32, 16], kernel=3,
                        batch_size=16, lr=4e-4, steps=1200),
    # For GPUs: 128 px, wider, residual decoder blocks and a learned mask.
    "hd": ModelConfig(preset="hd", size=128, encoder_dims=[64, 128, 256, 512, 1024], bottleneck=512,
                      dense_side=4, dense_dims=512, decoder_dims=[512, 384, 192, 96, 48],
                      residual_blocks=1, learn_mask=True, batch_size=16, lr=5e-5, steps=100000),
    # hd at 256 px: the same layers, a code map twice as wide (8x8), one more encoder downscale.
    "hd256": ModelConfig(preset="hd256", size=256, encoder_dims=[64, 128, 256, 512, 768, 1024], bottleneck=512,
                         dense_side=8, dense_dims=512, decoder_dims=[512, 384, 192, 96, 48],
                         residual_blocks=1, learn_mask=True, batch_size=8, lr=5e-5, steps=100000),
}
AUTO = "auto"


def device_preset(name: str, gpu: bool) -> str:
    """The preset ``auto`` stands for where training runs: ``hd`` on GPUs, ``lite`` on CPUs."""
    return ("hd" if gpu else "lite") if name == AUTO else name


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name])


# -- building blocks ---------------------------------------------------------------------

class Down(nn.Module):
    """Strided conv: (B, C, H, W) -> (B, C', H/2, W/2)."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=2, padding=kernel // 2)

    def forward(self, x):
        return F.leaky_relu(self.conv(x), 0.1)


class Up(nn.Module):
    """Conv to 4x channels + pixel shuffle: (B, C, H, W) -> (B, C', 2H, 2W)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        return F.leaky_relu(self.shuffle(self.conv(x)), 0.1)


class Residual(nn.Module):
    """Two 3x3 convs with a skip: shape unchanged."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        y = F.leaky_relu(self.conv1(x), 0.2)
        return F.leaky_relu(x + self.conv2(y), 0.2)


class Encoder(nn.Module):
    """(B, 3, 64, 64) -> (B, 512, 8, 8) for ``original``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dims = [3] + cfg.encoder_dims
        self.downs = nn.Sequential(*[Down(a, b, cfg.kernel) for a, b in zip(dims, dims[1:])])
        side = cfg.size // 2 ** len(cfg.encoder_dims)
        self.flat = cfg.encoder_dims[-1] * side * side
        self.bottleneck = nn.Linear(self.flat, cfg.bottleneck)
        self.expand = nn.Linear(cfg.bottleneck, cfg.dense_side * cfg.dense_side * cfg.dense_dims)
        self.dense_shape = (cfg.dense_dims, cfg.dense_side, cfg.dense_side)
        self.up = Up(cfg.dense_dims, cfg.decoder_dims[0])

    def forward(self, x):
        return self.spread(self.code(x))

    def code(self, x):
        """(B, 3, 64, 64) -> (B, 1024): the bottleneck, the shared pose/expression code."""
        x = self.downs(x)                          # (B, 1024, 4, 4)
        return self.bottleneck(x.flatten(1))       # (B, 1024)

    def spread(self, x):
        """The code -> (B, 512, 8, 8), what the decoders read."""
        x = self.expand(x)                         # (B, 1024*4*4)
        x = x.view(-1, *self.dense_shape)          # (B, 1024, 4, 4)
        return self.up(x)                          # (B, 512, 8, 8)


class Decoder(nn.Module):
    """(B, 512, 8, 8) -> (B, 3 or 4, 64, 64) in [0, 1] for ``original``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dims = cfg.decoder_dims
        layers = []
        for a, b in zip(dims, dims[1:]):
            layers.append(Up(a, b))                # (B, 256, 16, 16) -> ... -> (B, 64, 64, 64)
            layers += [Residual(b) for _ in range(cfg.residual_blocks)]
        self.ups = nn.Sequential(*layers)
        self.out = nn.Conv2d(dims[-1], 4 if cfg.learn_mask and not cfg.mask_head else 3, 5, padding=2)
        # The mask's own head reads the last features detached: its loss never changes what the decoder
        # paints, so a small decoder spends none of its capacity on it. Two convs (~17 % of lite's step):
        # with one, lite's mask came out speckled, with holes at the eyes and mouth (benchmarks/RESULTS.md).
        self.mask = nn.Sequential(nn.Conv2d(dims[-1], dims[-1], 3, padding=1), nn.LeakyReLU(0.1),
                                  nn.Conv2d(dims[-1], 1, 5, padding=2)) if cfg.mask_head else None

    def forward(self, x):
        features = self.ups(x)                       # (B, 64, 64, 64)
        y = self.out(features)                       # (B, 3|4, 64, 64)
        if self.mask is not None:
            y = torch.cat([y, self.mask(features.detach())], 1)
        return torch.sigmoid(y)                      # (B, 3|4, 64, 64) in [0, 1]


class FaceSwapModel(nn.Module):
    """One encoder object shared by both sides; ``decoder_a`` and ``decoder_b``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder_a = Decoder(cfg)
        self.decoder_b = Decoder(cfg)

    def forward(self, a, b, codes: bool = False):
        """Reconstruct both sides in one pass, so DDP sees every parameter used each step.

        a, b: (B, 3, S, S) in [0, 1] -> (B, 3|4, S, S), (B, 3|4, S, S)
        ``codes``: also each side's bottleneck code, (B, bottleneck) twice (for --code-critic).
        """
        z = self.encoder.code(torch.cat([a, b]))   # (2B, 1024): one encoder for both identities
        spread = self.encoder.spread(z)            # (2B, 512, 8, 8)
        out_a, out_b = self.decoder_a(spread[: len(a)]), self.decoder_b(spread[len(a):])
        return (out_a, out_b, z[: len(a)], z[len(a):]) if codes else (out_a, out_b)

    def swap(self, x, direction: str = "a2b"):
        """(B, 3, S, S) -> (B, 3|4, S, S): A's pose painted with B's face (``a2b``) or back."""
        decoder = {"a2b": self.decoder_b, "b2a": self.decoder_a,
                   "a2a": self.decoder_a, "b2b": self.decoder_b}[direction]
        return decoder(self.encoder(x))
