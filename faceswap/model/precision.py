"""The arithmetic training and convert run in: bfloat16 where the hardware does it natively, else float32.

    --precision auto:  CUDA with bf16 (Ampere on)       -> bfloat16 autocast
                       other CUDA                        -> float16 autocast + a gradient scaler
                       a CPU with AMX or AVX512-BF16     -> bfloat16 autocast, channels-last weights
                       other CPUs                        -> float32, channels-last weights
    --precision fp32:  float32 everywhere (contiguous weights on a GPU, channels-last on a CPU)

Autocast runs the convolutions and the dense layers in the low precision and keeps the weights, the
optimiser's state, the losses and every checkpoint in float32, so a model trained either way loads and
converts the same. On a CPU without native bf16 instructions, PyTorch emulates bfloat16 and is slower
than float32, so ``auto`` stays in float32 there. On this project's 2-core Sapphire Rapids machine the
lite model trains 1.4x faster in bfloat16 and 1.6x with channels-last weights as well
(``benchmarks/train.py``; benchmarks/RESULTS.md, "Train").

Convert (``inference_precision``) runs the model in bfloat16 on such a CPU as well, and in float32 on GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHOICES = ("auto", "fp32")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 matrix work natively (AMX tiles or AVX512-BF16); PyTorch's
    probes are private, so a build without them counts as no."""
    probes = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    try:
        return any(bool(probe()) for probe in probes if probe is not None)
    except RuntimeError:
        return False


@dataclass(frozen=True)
class Precision:
    """How one device trains: the autocast ``dtype`` (None: float32), whether a gradient scaler guards
    float16, and the weights' memory format."""

    dtype: torch.dtype | None
    scaled: bool
    memory_format: torch.memory_format

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self, device: torch.device):
        """The context a forward pass runs in."""
        return torch.autocast(device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for float16."""
        return torch.amp.GradScaler("cuda", enabled=self.scaled)


def _cpu_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``choice`` (one of CHOICES) stands for on a non-CUDA ``device``: bfloat16 where
    ``auto`` meets a CPU that does it natively, else None (float32)."""
    if choice not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}, not {choice!r}")
    return torch.bfloat16 if choice == "auto" and device.type == "cpu" and cpu_has_native_bf16() else None


def inference_precision(choice: str, device: torch.device) -> Precision:
    """How convert runs a model (its Swapper): ``auto`` is bfloat16 on a CPU that does it natively (the lite
    model's swap and rebuild 2.8x as fast; a face's pixels move by 0.2 levels of 255 on average, 2 at most),
    float32 elsewhere (GPUs: not measured yet). The memory format is the Swapper's own."""
    return Precision(_cpu_dtype(choice, device), False, torch.contiguous_format)


def training_precision(choice: str, device: torch.device) -> Precision:
    """The precision ``choice`` (one of CHOICES) stands for on ``device``."""
    if device.type == "cuda" and choice == "auto":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Precision(dtype, dtype == torch.float16, torch.contiguous_format)
    dtype = _cpu_dtype(choice, device)  # also refuses an unknown choice
    # oneDNN's convolutions are faster on channels-last tensors in either precision (export.Swapper too).
    return Precision(dtype, False, torch.contiguous_format if device.type == "cuda" else torch.channels_last)
