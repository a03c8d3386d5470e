"""The learning rate over a run: linear warm-up, then a cosine decay to a floor.

    lr(step) = base * min(1, (step + 1) / warmup)                      for step < warmup
             = base * (floor + (1 - floor) * (1 + cos(pi * t)) / 2)    t = (step - warmup) / (total - warmup)

Warm-up keeps Adam's first, badly scaled steps from throwing the fresh network around; the
decay lets the last part of the run settle into a sharp minimum instead of hopping around it
at full rate (at a constant rate the faces stay as soft as the noise of the last batches).
With a time budget the total is not known in steps: the schedule then runs on the share of the
budget spent (``progress`` in [0, 1]) instead of the step.
"""

from __future__ import annotations

import math

WARMUP_DIVISOR = 20  # warm-up over the first 5% of the steps ...
MAX_WARMUP_STEPS = 200  # ... at most this many
FLOOR = 0.1


def lr_at(step: int, base_lr: float, total: int, progress: float | None = None,
          decay: bool = True, floor: float = FLOOR) -> float:
    """The learning rate of ``step`` of ``total`` (or at ``progress`` of a time budget)."""
    if progress is None:
        warmup = max(1, min(MAX_WARMUP_STEPS, total // WARMUP_DIVISOR))
        if step < warmup:
            return base_lr * (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
    else:
        # On a time budget the steps to come are unknown: the warm-up ends after MAX_WARMUP_STEPS steps or
        # 5% of the time, whichever comes first, and the decay runs over the rest of the time.
        share = 1.0 / WARMUP_DIVISOR
        if step < MAX_WARMUP_STEPS and progress < share:
            return base_lr * max((step + 1) / MAX_WARMUP_STEPS, progress / share)
        t = (progress - share) / (1.0 - share)
    if not decay:
        return base_lr
    t = min(1.0, max(0.0, t))
    return base_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))
