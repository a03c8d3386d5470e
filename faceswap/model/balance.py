"""How often each face of a face set is drawn for training: rare poses and expressions more often.

    records' 68 landmarks -> yaw, pitch (metrics.coverage: eye corners and nose tip), eyes shut, mouth open
      -> one bin per state: YAW_BIN_DEG of yaw x PITCH_BIN_DEG of pitch x eyes shut x mouth open
      -> a face's draw weight: (faces in its bin) ** -balance, the weights summing to 1

Why: footage is mostly one pose. A talk-show guest faces the host; the turn to the audience, the
closed eyes of a laugh, the open mouth of a shout are a few per cent of the frames, and a uniform
draw shows them to the decoders that rarely: they come out smeared in exactly the frames a viewer
remembers. With ``balance`` 1 every occupied bin is drawn equally often; 0 is the uniform draw; in
between, a bin's share of the draws goes as its count ** (1 - balance) (0.5: as the square root).
Below 1 a single stray face (a wrong fit) is never drawn as often as a whole common pose.
"""

from __future__ import annotations

import numpy as np

from faceswap.metrics.coverage import face_states

YAW_BIN_DEG = 10.0     # faces within a bin show the same turn of the head ...
PITCH_BIN_DEG = 10.0   # ... and nod, to the decoders


def state_bins(landmarks) -> np.ndarray:
    """(N,) int: the bin of each face's pose and expression (equal ids: the same state)."""
    n = len(landmarks)
    states = face_states("", [""] * n, np.zeros(n), landmarks)  # inspect's measures and thresholds
    # Bins centred on level (yaw 0, the set's median pitch): a set facing the camera is one bin, not two.
    keys = np.stack([np.rint(np.nan_to_num(states.yaw) / YAW_BIN_DEG),
                     np.rint(np.nan_to_num(states.pitch) / PITCH_BIN_DEG),
                     states.eyes_closed, states.mouth_open], axis=1).astype(np.int64)
    return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)


def draw_weights(landmarks, balance: float) -> np.ndarray:
    """(N,) float64 summing to 1: how often each face is drawn (uniform when ``balance`` is 0)."""
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance is in [0, 1], not {balance}")
    n = len(landmarks)
    if n == 0:
        return np.zeros(0)
    if balance == 0:
        return np.full(n, 1.0 / n)
    bins = state_bins(landmarks)
    weights = np.bincount(bins)[bins].astype(np.float64) ** -balance
    return weights / weights.sum()
