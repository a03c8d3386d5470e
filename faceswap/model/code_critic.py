"""A shared code that does not say whose face it is: a critic on the encoder's bottleneck (--code-critic W).

    every step, after the autoencoder's:
      critic:         softplus(-C(code_a)) + softplus(C(code_b))        (codes detached: tell A's from B's)
      encoder's loss: + W * (softplus(C(code_a)) + softplus(-C(code_b)))   (each side's code passes for the other's)

Why: the swap feeds A's code to decoder B, which learned from B's codes only. Where the two sides' codes differ
(A's identity carried through the bottleneck), decoder B paints from codes it never saw: a soft average that
keeps A's features, and on the real-footage benchmark the swapped face was often nearer the replaced person than
the new one. A critic that learns to tell A's codes from B's, and an encoder trained to defeat it, pull both
identities' codes into one distribution, so what tells the faces apart is left to the decoders
(DeepFaceLab's "true face power", a discriminator on the code). The price: a code that carries less of who the
face is also carries a little less of how it is posed (benchmarks/RESULTS.md).

The critic is small (two hidden layers of 256 on the bottleneck's 128-1024 numbers), runs in float32, and is
one module for both sides (one forward per pass, as DDP wants); its weights and optimiser live in the
checkpoints, never in the exported model.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

HIDDEN = 256


class CodeCritic(nn.Module):
    """(N, bottleneck) codes of A and of B -> (N,) logits each: > 0 says "identity A"."""

    def __init__(self, width: int, hidden: int = HIDDEN):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, code_a: torch.Tensor, code_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(torch.cat([code_a, code_b]).float()).squeeze(1)
        return logits[:len(code_a)], logits[len(code_a):]


class CodeAdversary:
    """The critic of one run (``model``: it or its DDP wrapper; ``raw``: the module, for checkpoints), its
    optimiser and both losses. Per step: ``encoder_loss`` joins the autoencoder's loss before its backward
    pass (its gradient also lands on the critic, and ``step`` clears it), then ``step`` trains the critic."""

    def __init__(self, model: nn.Module, raw: CodeCritic, opt: torch.optim.Optimizer, weight: float):
        self.model, self.raw, self.opt, self.weight = model, raw, opt, float(weight)

    def encoder_loss(self, code_a: torch.Tensor, code_b: torch.Tensor) -> torch.Tensor:
        """``weight`` * how well the critic still tells the codes apart (scalar, with gradient)."""
        la, lb = self.model(code_a, code_b)
        return self.weight * (F.softplus(la).mean() + F.softplus(-lb).mean())

    def step(self, code_a: torch.Tensor, code_b: torch.Tensor, lr: float) -> float:
        """One critic update on the step's codes (detached); returns its loss (2 ln 2 = 1.386: no better
        than a coin)."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        la, lb = self.model(code_a.detach(), code_b.detach())
        loss = F.softplus(-la).mean() + F.softplus(lb).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()
