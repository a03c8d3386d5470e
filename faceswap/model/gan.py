"""The adversarial phase of training: a patch discriminator per identity, trained from scratch.

    last part of the run (progress >= --gan-start):
      generator step: reconstruction loss + gan_weight * softplus(-D_x(fake_x))   (x = a, b)
      discriminator step: softplus(-D_x(real_x)) + softplus(D_x(fake_x, detached))

Why: SSIM + L1 reward the average of every face the code could stand for, so a decoder paints
the mean of what it is unsure of: soft skin, smeared eyes. A discriminator that sees the real
face and the decoder's rebuild side by side, a patch at a time, penalises exactly that softness
(DeepFaceLab's "GAN power", faceswap's Phaze-A adversarial term). No pretrained network can be
downloaded here, so the discriminators learn from the face sets alone, from the moment the phase
starts (late in the run, once the decoders draw faces: a discriminator that wins from the first
step teaches a blank decoder nothing).

Each identity has its own discriminator (decoder B is judged against real B faces only). Both
see the face inside its landmark hull on a grey background (``on_grey``): the background
carries little loss weight (--background-weight) and is never pasted, so it is not judged
either. The patches each output logit sees are about 40 % of the crop's side (two strided 4x4
convolutions at 64 px, one more per doubling of the size): the texture of an eye, a mouth, a
cheek, not the whole face.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceswap.model.precision import Precision, training_precision


def discriminator_width(size: int) -> int:
    """Channels of the first layer: 32 for 64 px models (CPU), 64 from 128 px up (GPU)."""
    return 32 if size <= 64 else 64


class PatchDiscriminator(nn.Module):
    """(B, 3, S, S) in [0, 1] -> (B, 1, S / 2**downs, S / 2**downs) real/fake logits, one per patch."""

    def __init__(self, size: int, width: int | None = None):
        super().__init__()
        width = width or discriminator_width(size)
        downs = max(2, int(math.log2(size)) - 4)  # 64 px: 2, 128: 3, 256: 4
        layers, ch_in, ch = [], 3, width
        for _ in range(downs):
            layers += [nn.Conv2d(ch_in, ch, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            ch_in, ch = ch, min(2 * ch, 8 * width)
        layers += [nn.Conv2d(ch_in, ch_in, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(ch_in, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


class Discriminators(nn.Module):
    """One patch discriminator per identity, in one module (one DDP wrapper, one optimiser)."""

    def __init__(self, size: int):
        super().__init__()
        self.a, self.b = PatchDiscriminator(size), PatchDiscriminator(size)

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(x_a), self.b(x_b)


def on_grey(image: torch.Tensor, hull: torch.Tensor) -> torch.Tensor:
    """The face inside its hull (B, 1, S, S in [0, 1]) on mid grey: what the discriminators judge."""
    return image * hull + 0.5 * (1 - hull)


class Adversary:
    """The discriminators of one run, their optimiser and both sides' losses.

    ``model``: the Discriminators (or their DDP wrapper), ``raw``: the module itself (checkpoints).
    Per training step: ``generator_loss`` goes into the generator's loss before its backward pass
    (its gradient also lands on the discriminators' parameters, and is cleared by ``step``), then
    ``step`` trains the discriminators on the real faces and the generator's detached rebuilds.
    """

    def __init__(self, model: nn.Module, raw: Discriminators, opt: torch.optim.Optimizer, weight: float,
                 device: torch.device, precision: Precision | None = None):
        self.model, self.raw, self.opt, self.weight = model, raw, opt, float(weight)
        self.device, self.precision = device, precision or training_precision("auto", device)
        self.scaler = self.precision.scaler()

    def _logits(self, x_a, x_b):
        with self.precision.autocast(self.device):
            la, lb = self.model(x_a, x_b)
        return la.float(), lb.float()

    def generator_loss(self, fake_a, hull_a, fake_b, hull_b) -> torch.Tensor:
        """``weight`` * the non-saturating loss of both rebuilds (scalar, with gradient)."""
        la, lb = self._logits(on_grey(fake_a.float(), hull_a), on_grey(fake_b.float(), hull_b))
        return self.weight * (F.softplus(-la).mean() + F.softplus(-lb).mean())

    def step(self, real_a, fake_a, hull_a, real_b, fake_b, hull_b, lr: float) -> float:
        """One discriminator update on real faces and detached rebuilds; returns its loss."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        batch_a, batch_b = len(real_a), len(real_b)
        x_a = on_grey(torch.cat([real_a.float(), fake_a.detach().float()]), torch.cat([hull_a, hull_a]))
        x_b = on_grey(torch.cat([real_b.float(), fake_b.detach().float()]), torch.cat([hull_b, hull_b]))
        la, lb = self._logits(x_a, x_b)
        loss = (F.softplus(-la[:batch_a]).mean() + F.softplus(la[batch_a:]).mean()
                + F.softplus(-lb[:batch_b]).mean() + F.softplus(lb[batch_b:]).mean())
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss.item()
