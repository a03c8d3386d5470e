"""Training checkpoints: their format, where they live, and which one to resume from.

    <out>/checkpoints/step_<N:07d>/checkpoint.pt   weights, optimiser, step, model config, run config
                                  /meta.json       {"step", "bytes", "preset"}: written with it, the size
                                                   tells a whole checkpoint from one cut short by a kill

Ray Train persists each step's folder (its run name is ``checkpoints``); the driver and
the workers find the newest complete one here, and ``read_checkpoint`` refuses one of
another architecture. Loading is weights_only: a checkpoint is never unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile

from faceswap.errors import ConfigError, FaceswapError, InputError
from faceswap.model.autoencoder import ModelConfig
from faceswap.model.export import load_weights, weights_bytes
from faceswap.storage import Store

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"  # Ray Train run name: <out>/checkpoints/step_<N:07d>/
CKPT_FILE, CKPT_META = "checkpoint.pt", "meta.json"
_STEP_DIR = re.compile(r"^step_(\d{7,})$")


def step_dir(step: int) -> str:
    return f"step_{step:07d}"


def step_key(step: int, name: str) -> str:
    return f"{CHECKPOINTS}/{step_dir(step)}/{name}"


def checkpoint_state(raw, opt, step: int, mcfg: ModelConfig, cfg, ema=None, elapsed_s: float = 0.0,
                     adversary=None, critic=None) -> dict:
    """Everything needed to resume; plain tensors, numbers and strings, so weights_only loads it:
    the weights, the optimiser, the step, the weight average (``ema``), the training time spent so far
    (a time budget continues from it), the discriminators and their optimiser (``adversary``, a
    model/gan.Adversary), the code critic and its optimiser (``critic``, a model/code_critic.CodeAdversary)
    and both configs."""
    state = {"model": raw.state_dict(), "optimizer": opt.state_dict(), "step": step, "elapsed_s": float(elapsed_s),
             "model_config": mcfg.to_json(), "train_config": json.dumps(dataclasses.asdict(cfg))}
    if ema is not None:
        state["ema"] = ema.state_dict()
    if adversary is not None:
        state["discriminator"] = adversary.raw.state_dict()
        state["discriminator_optimizer"] = adversary.opt.state_dict()
    if critic is not None:
        state["code_critic"] = critic.raw.state_dict()
        state["code_critic_optimizer"] = critic.opt.state_dict()
    return state


def write_checkpoint_dir(state: dict, preset: str) -> str:
    """A local folder holding the checkpoint's two files, for ray.train.report to persist."""
    folder = tempfile.mkdtemp(prefix="faceswap-ckpt-")
    data = weights_bytes(state)
    with open(os.path.join(folder, CKPT_FILE), "wb") as f:
        f.write(data)
    with open(os.path.join(folder, CKPT_META), "w") as f:
        json.dump({"step": state["step"], "bytes": len(data), "preset": preset}, f)
    return folder


def checkpoint_steps(out: Store) -> list[int]:
    """Steps of the checkpoint folders under ``<out>/checkpoints`` with a meta.json, ascending."""
    steps = []
    for key in out.list(CHECKPOINTS, suffix=CKPT_META):
        parts = key.split("/")
        m = _STEP_DIR.match(parts[1]) if len(parts) == 3 else None
        if m:
            steps.append(int(m.group(1)))
    return sorted(steps)


def find_checkpoint(out: Store) -> tuple[str, int, bytes] | None:
    """The newest complete checkpoint under ``<out>/checkpoints``: (key of checkpoint.pt, step, bytes).

    A checkpoint counts once its meta.json and a checkpoint.pt of the size meta.json names are
    both there; one cut short by a kill during upload is skipped for the one before it.
    """
    for step in reversed(checkpoint_steps(out)):
        pt_key = step_key(step, CKPT_FILE)
        try:
            expected = out.read_json(step_key(step, CKPT_META))["bytes"]
            data = out.read_bytes(pt_key) if out.exists(pt_key) else b""
        except (FaceswapError, KeyError, TypeError):
            expected, data = -1, b""
        if len(data) == expected:
            return pt_key, step, data
        log.warning("%s: incomplete checkpoint, skipped", out.url(f"{CHECKPOINTS}/{step_dir(step)}"))
    return None


def read_checkpoint(data: bytes, name: str, mcfg: ModelConfig) -> dict:
    """Load a checkpoint (weights_only) and refuse one of another architecture."""
    state = load_weights(data, name)
    if not isinstance(state, dict) or not {"model", "optimizer", "step", "model_config"} <= set(state):
        raise InputError(f"{name} is not a valid faceswap weights file (not a training checkpoint)")
    try:
        stored = ModelConfig.from_dict(json.loads(state["model_config"]))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} is not a valid faceswap weights file (model config: {exc})") from None
    if stored.architecture() != mcfg.architecture():
        diff = stored.difference(mcfg)
        if stored.preset == mcfg.preset:  # the preset's definition changed between releases
            raise ConfigError(f"{name}: checkpoint holds another version of the '{stored.preset}' preset "
                              f"({diff}); resume it with the faceswap release that wrote it, or use a new --out")
        raise ConfigError(f"{name}: checkpoint holds a '{stored.preset}' model, this run asks for "
                          f"'{mcfg.preset}' ({diff}); use the same --preset or a new --out")
    return state
