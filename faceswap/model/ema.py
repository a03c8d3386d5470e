"""An exponential moving average of a model's weights, for previews and the exported model.

    after each optimiser step: ema = d * ema + (1 - d) * weights,  d = min(decay, (1 + n) / (10 + n))

The average of the last few hundred steps' weights is a smoother, sharper model than the last
step's weights, which carry the noise of the last batches (the same reason DeepFaceLab and
diffusion trainers export averaged weights). The ramp (1 + n) / (10 + n) lets the average
follow the fast early changes instead of remembering the random start. Buffers are copied.
The averaged weights live in float32 on the training device; they are part of the checkpoint,
so a resumed run continues the same average.
"""

from __future__ import annotations

import torch


class WeightAverage:
    """EMA of ``model``'s parameters (same names and shapes as its state dict)."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), not {decay}")
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                      for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        for k, v in model.state_dict().items():
            avg = self.state[k]
            if v.is_floating_point():
                avg.mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                avg.copy_(v)
        self.updates += 1

    def state_dict(self) -> dict:
        """Plain tensors and numbers: loads with torch.load(weights_only=True)."""
        return {"decay": self.decay, "updates": self.updates, "weights": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        missing = set(self.state) ^ set(state["weights"])
        if missing:
            raise ValueError(f"EMA weights do not match the model ({sorted(missing)[:3]} ...)")
        for k, v in state["weights"].items():
            self.state[k].copy_(v)

    def weights(self, like: torch.nn.Module) -> dict:
        """A copy of the averaged weights as a state dict of ``like``'s dtypes (to load or export)."""
        ref = like.state_dict()
        return {k: v.to(ref[k].dtype, copy=True) for k, v in self.state.items()}
