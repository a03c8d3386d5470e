"""The final model folder: writing it (train) and loading it for swapping (convert).

    <out>/model/model.pt      state dict only, loaded with torch.load(weights_only=True)
    <out>/model/outlines.json each identity's face outlines: the landmarks of (up to 512 of) its training
                              faces in crop units, for convert's reach (render/reach.py); optional
    <out>/model/config.json   ModelConfig, face-set crop size and centering, training summary,
                              fingerprint (first 16 hex of sha256(model.pt)); written last
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import warnings
from typing import Any

import numpy as np
import torch

from faceswap.errors import ConfigError, FaceswapError, InputError
from faceswap.model.autoencoder import FaceSwapModel, ModelConfig
from faceswap.model.precision import inference_precision
from faceswap.storage import Store

log = logging.getLogger(__name__)

MODEL_KEY = "model/model.pt"
CONFIG_KEY = "model/config.json"
OUTLINES_KEY = "model/outlines.json"
DIRECTIONS = ("a2b", "b2a")


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def weights_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def load_weights(data: bytes, name: str) -> Any:
    """torch.load with weights_only=True; anything else (code, garbage) is an InputError naming ``name``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # torch warns about pickle protocols before refusing
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unpickling failure means the same thing to the user
        text = " ".join(str(exc).split())
        if "WeightsUnpickler error:" in text:     # e.g. "Unsupported global: GLOBAL posix.system"
            reason = text.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation")[0].strip()
            reason = f"refused by torch.load(weights_only=True): {reason}"
        else:
            reason = text or type(exc).__name__
        raise InputError(f"{name} is not a valid faceswap weights file ({reason[:120]})") from None


def write_model(store: Store, state_dict: dict, mcfg: ModelConfig, crop_size: int, centering: str,
                summary: dict, outlines: dict[str, np.ndarray] | None = None) -> str:
    """Publish model.pt, outlines.json (``outlines``: identity "a"/"b" -> (N, 68, 2) in crop units), then
    config.json (each atomic); returns the fingerprint."""
    # Contiguous: a model trained with channels-last weights (model/precision.py) is stored as any other.
    data = weights_bytes({k: v.detach().cpu().contiguous() for k, v in state_dict.items()})
    fp = fingerprint(data)
    store.write_bytes(MODEL_KEY, data)
    if outlines:
        store.write_json(OUTLINES_KEY, {k: np.round(np.asarray(v, np.float64).reshape(-1, 136), 3).tolist()
                                        for k, v in outlines.items()})
    store.write_json(CONFIG_KEY, {"version": 1, "model": dataclasses.asdict(mcfg),
                                  "crop_size": int(crop_size), "centering": centering,
                                  "summary": summary, "fingerprint": fp})
    return fp


class Swapper:
    """A trained model, ready to paint faces: ``swap(crops, direction)``.

    ``crops`` are aligned exactly like the face set's crops, resized to ``size``.
    """

    def __init__(self, model: FaceSwapModel, cfg: dict, device: torch.device, batch_size: int = 32,
                 precision: str = "auto"):
        self.model = model.eval().to(device)
        self.precision = inference_precision(precision, device)
        # On a CPU, oneDNN's convolutions run 1.7x faster on channels-last tensors (the lite model on one
        # thread, a batch of 32: 6.1 -> 3.5 ms a face for the swap and the rebuild; benchmarks/RESULTS.md).
        self.memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.model_config: ModelConfig = model.cfg
        self.size: int = model.cfg.size
        self.crop_size: int = int(cfg["crop_size"])
        self.centering: str = cfg["centering"]
        self.fingerprint: str = cfg["fingerprint"]
        self.summary: dict = cfg.get("summary", {})
        self.outlines: dict[str, np.ndarray] = {}  # identity -> (N, 68, 2): see read_outlines
        self.device = device
        self.batch_size = batch_size

    def swap(self, crops: np.ndarray, direction: str = "a2b") -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 (N, size, size, 3) RGB -> (uint8 (N, size, size, 3), float32 (N, size, size) | None)."""
        faces, masks, _ = self.swap_and_rebuild(crops, direction, rebuild=False)
        return faces, masks

    def swap_and_rebuild(self, crops: np.ndarray, direction: str = "a2b", rebuild: bool = True):
        """(swapped faces, the model's masks or None, rebuilt crops or None) from one encoder pass.

        The rebuild is the crops through their own identity's decoder (A's footage through decoder A
        for ``a2b``): what the model expects the face to look like, for the occlusion mask.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        crops = np.asarray(crops)
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"swap expects uint8 crops of shape (N, {self.size}, {self.size}, 3), "
                             f"got {crops.dtype} {crops.shape}")
        to_uint8 = lambda y: (y[:, :3] * 255).round().clamp_(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()  # noqa: E731
        other, same = (self.model.decoder_b, self.model.decoder_a) if direction == "a2b" else \
            (self.model.decoder_a, self.model.decoder_b)
        faces = np.empty_like(crops)
        rebuilt = np.empty_like(crops) if rebuild else None
        masks = np.empty(crops.shape[:3], np.float32) if self.model_config.learn_mask else None
        with torch.inference_mode(), self.precision.autocast(self.device):
            for i in range(0, len(crops), self.batch_size):
                chunk = crops[i:i + self.batch_size]
                n = len(chunk)
                # Every call runs a full batch (the tail padded with blank crops): the CPU kernels round
                # differently for other batch sizes (~1e-7), which flipped a few pixels of a face by 1-3
                # levels when the same film was cut into other segments; at one batch size a face's result
                # does not depend on where in the batch it sits or what sits beside it.
                if n < self.batch_size:
                    chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, *chunk.shape[1:]), np.uint8)])
                x = torch.from_numpy(chunk).to(self.device)
                x = x.permute(0, 3, 1, 2).float().div_(255)                 # (B, 3, S, S)
                x = x.contiguous(memory_format=self.memory_format)
                code = self.model.encoder(x)
                y = other(code)[:n].float()                                  # (n, 3|4, S, S)
                faces[i:i + n] = to_uint8(y)
                if masks is not None:
                    masks[i:i + n] = y[:, 3].cpu().numpy()
                if rebuilt is not None:
                    rebuilt[i:i + n] = to_uint8(same(code)[:n].float())
        return faces, masks, rebuilt


def read_model(uri: str) -> tuple[dict, ModelConfig, FaceSwapModel]:
    """``<uri>/model/`` checked and loaded: (config.json, its ModelConfig, the model on the CPU)."""
    store = Store(uri)
    if not store.exists(CONFIG_KEY) or not store.exists(MODEL_KEY):
        raise InputError(f"{store.uri}: not a trained model folder (no {MODEL_KEY} and {CONFIG_KEY})")
    try:
        cfg = store.read_json(CONFIG_KEY)
        mcfg = ModelConfig.from_dict(cfg["model"])
        cfg["crop_size"], cfg["centering"], cfg["fingerprint"]  # noqa: B018 - presence check
    except (FaceswapError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{store.url(CONFIG_KEY)}: not a valid model config ({exc})") from None
    data = store.read_bytes(MODEL_KEY)
    name = store.url(MODEL_KEY)
    if fingerprint(data) != cfg["fingerprint"]:
        raise InputError(f"{name} is not a valid faceswap weights file (sha256 does not match config.json's "
                         f"fingerprint {cfg['fingerprint']})")
    state = load_weights(data, name)
    model = FaceSwapModel(mcfg)
    try:
        model.load_state_dict(state)
    except (RuntimeError, AttributeError, TypeError) as exc:
        raise InputError(f"{name} is not a valid faceswap weights file (does not fit preset {mcfg.preset}: "
                         f"{str(exc).splitlines()[0][:120]})") from None
    return cfg, mcfg, model


def read_outlines(store: Store) -> dict[str, np.ndarray]:
    """identity -> (N, 68, 2) float32 face outlines of the model folder (empty for a model trained before
    they were saved); a malformed file is refused in one line."""
    if not store.exists(OUTLINES_KEY):
        return {}
    try:
        raw = store.read_json(OUTLINES_KEY)
        return {k: np.asarray(raw[k], np.float32).reshape(-1, 68, 2) for k in ("a", "b") if raw.get(k)}
    except (FaceswapError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{store.url(OUTLINES_KEY)}: not valid face outlines ({str(exc)[:120]})") from None


def load_swapper(uri: str, device: str = "cpu", batch_size: int = 32, precision: str = "auto") -> Swapper:
    """Load ``<uri>/model/`` (a model folder from train). ``device="cuda"`` uses a GPU when there is one;
    ``precision``: convert's --precision (model/precision.py)."""
    cfg, _, model = read_model(uri)
    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("no CUDA device here; swapping on the CPU")
        device = "cpu"
    swapper = Swapper(model, cfg, torch.device(device), batch_size, precision)
    swapper.outlines = read_outlines(Store(uri))
    return swapper


def init_weights(uri: str, mcfg: ModelConfig, decoders: bool = False) -> dict:
    """The weights ``faceswap train --init-from`` starts a new run with: the encoder's of the model folder
    at ``uri``, and the decoders' too with ``decoders``; a model of another architecture is refused (exit 2)."""
    _, init_cfg, model = read_model(uri)
    if init_cfg.architecture() != mcfg.architecture():
        diff = init_cfg.difference(mcfg)
        if init_cfg.preset == mcfg.preset:  # the preset's definition changed between releases
            raise ConfigError(f"{uri}: --init-from holds a model of another version of the "
                              f"'{init_cfg.preset}' preset ({diff}); train the model to start from again")
        raise ConfigError(f"{uri}: --init-from holds a '{init_cfg.preset}' model, this run trains "
                          f"'{mcfg.preset}' ({diff}); use --preset {init_cfg.preset}")
    parts = ("encoder.", "decoder_a.", "decoder_b.") if decoders else ("encoder.",)
    return {k: v for k, v in model.state_dict().items() if k.startswith(parts)}
