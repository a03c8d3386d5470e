"""Typed configs, one dataclass per stage; YAML loading that rejects unknown keys.

Each field carries its help text in ``metadata["help"]``; the CLI builds its
flags from these fields, so ``--help``, YAML and code cannot drift apart.
Configs are passed as objects, never read from globals.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any

from faceswap.errors import ConfigError


def opt(default, help: str, **extra):
    """A dataclass field with help text (and an optional ``choices``/``flag``; ``uri=True``: a path or URI,
    made absolute by ``normalized``; ``pixels=False``: a convert setting that never changes a segment's pixels;
    ``was``: the field's earlier name, named in the error a config file that still uses it gets)."""
    meta = {"help": help, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def req(help: str, **extra):
    """A required dataclass field."""
    return field(metadata={"help": help, "required": True, **extra})


@dataclass
class ExtractConfig:
    inputs: list[str] = req("video files, image files or folders, local paths or s3:// URIs", positional=True)
    out: str = req("output face set: a local folder or s3:// URI", uri=True)
    identity: list[str] = opt([], "reference images or folders of the person to keep; other faces are dropped")
    identity_threshold: float = opt(0.6, "largest face-embedding distance to the references that still counts as the same person")
    backend: str = opt("dlib", "landmark backend", choices=["dlib", "fan"])
    detector: str = opt("hog", "dlib face detector (hog is fast, cnn is more robust)", choices=["hog", "cnn"])
    model_dir: str = opt("", "folder or URI holding the fan backend's weights (default: the torch hub cache)",
                         uri=True)
    size: int = opt(256, "side of the aligned face crops, in pixels")
    centering: str = opt("face", "what the crop is centred on", choices=["face", "head"])
    image_format: str = opt("jpg", "file format of the crops (jpg: quality 95, 25x faster to write and 1/4 the "
                                   "size of png; png: lossless)", choices=["jpg", "png"])
    min_face_px: int = opt(64, "smallest face side to find, in source pixels; sets the detection scale")
    detect_every: int = opt(16, "run the full detector every K frames and track faces in between (a face "
                                 "found late is followed back to the frame it appeared in; a cut re-detects at once)")
    smooth: float = opt(0.0, "temporal smoothing of landmarks, 0 (off) to 1 (heavy)")
    clean_tracks: bool = opt(True, "clean each face track of a video before its records are written: a fit that "
                                   "leaves its track (a shape too large or shifted for a frame or a few) is "
                                   "replaced from the fits around it, holes of up to 2 frames are filled, and the "
                                   "face is smoothed along its track without lag, each eye's and the mouth's own "
                                   "shape (a blink, speech) kept as fitted", flag="--no-clean-tracks",
                             flag_help="keep every fit as the landmark model gave it, and no record where it "
                                       "gave none")
    shard_frames: int = opt(0, "frames per shard (0: chosen from the video length and the cluster size)")
    workers: int = opt(0, "parallel extraction actors (0: as many as the cluster's CPUs allow)")
    keep_going: bool = opt(False, "skip bad inputs and list them in the summary instead of stopping")
    max_failed_frames: float = opt(0.01, "share of undecodable frames in a shard that still counts as success")
    check_every: int = opt(4, "re-check tracked faces with the detector on a small crop every K frames (a "
                              "face whose landmarks stop looking like a face is re-detected at once)")
    hands: bool = opt(True, "find the hands near each face (MediaPipe's hand landmarker, taken once from its "
                            "PyPI wheel), so convert keeps a hand in front of the face in front of the new face",
                      flag="--no-hands", flag_help="find no hands (faster; convert then keeps only what the model "
                                                   "cannot rebuild in front of the face)")
    fan_detector: str = opt("sfd", "face detector of the fan backend", choices=["sfd", "blazeface"])
    device: str = opt("cpu", "torch device of the fan backend (cpu, cuda)")
    decoder: str = opt("auto", "video decoder: auto (PyAV wherever frames carry timestamps, else decord), pyav, or "
                               "decord (decodes ahead to the end of the file: memory grows with the film)",
                       choices=["auto", "pyav", "decord"])


@dataclass
class TrainConfig:
    a: str = req("face set of identity A (the face to replace), from extract", uri=True)
    b: str = req("face set of identity B (the new face), from extract", uri=True)
    out: str = req("model folder: local path or s3:// URI (checkpoints, previews, final model)", uri=True)
    preset: str = opt("auto", "model: auto picks lite (64 px, tuned for minutes on a CPU) and, with --gpu, hd "
                              "(128 px); hd256 paints 256 px on GPUs from face sets extracted at --size 256 or "
                              "more", choices=["auto", "lite", "original", "hd", "hd256"])
    steps: int = opt(0, "training steps (0: the preset's default, or no step limit with --minutes)")
    minutes: float = opt(0.0, "train until this many minutes of training have passed (a resumed run continues "
                              "the same budget; with --steps, whichever comes first; 0: no time limit)")
    batch_size: int = opt(0, "batch size per worker (0: the preset's default)")
    lr: float = opt(0.0, "learning rate (0: the preset's default)")
    workers: int = opt(1, "Ray Train workers (DDP)")
    gpu: bool = opt(False, "train on GPUs (NCCL, mixed precision); CPU uses gloo")
    precision: str = opt("auto", "arithmetic of the forward pass: auto runs it in bfloat16 where the hardware does "
                                 "that natively (GPUs; CPUs with AMX or AVX512-BF16: 1.4-1.6x the steps a minute) "
                                 "and float16 on older GPUs, else float32; fp32 runs float32 everywhere. Weights, "
                                 "checkpoints and the exported model are float32 either way",
                         choices=["auto", "fp32"])
    checkpoint_every: int = opt(200, "steps between checkpoints")
    preview_every: int = opt(200, "steps between preview images and metrics lines")
    max_failures: int = opt(3, "worker failures to retry before giving up")
    eye_mouth_weight: float = opt(0.0, "extra loss weight on eyes and mouth (0: off)")
    pose_balance: float = opt(0.5, "draw rare head poses and expressions (turns, nods, eyes shut, mouth open) more "
                                   "often: 1 draws every pose bin equally often, 0.5 gives a bin a share that goes "
                                   "as the square root of its faces (0: every face alike, as before 2026-12-03)")
    hand_mask: bool = opt(True, "leave the hands extract found over a face out of the loss (and out of a learned "
                                "mask): the decoders learn faces, not the fingers in front of them",
                          flag="--no-hand-mask", flag_help="learn every pixel of the crops, hands over the face included")
    background_weight: float = opt(1.0, "loss weight of pixels outside the face hull, which convert never pastes "
                                        "(1: every pixel alike; 0.1 is DeepFaceLab-style masked training)")
    ema: float = opt(0.0, "decay of a weight average used for previews and the exported model, e.g. 0.998 "
                          "(0: the last step's weights)")
    lr_schedule: str = opt("constant", "learning rate after the warm-up: constant, or a cosine decay to a tenth "
                                       "over the steps (or over --minutes)", choices=["constant", "cosine"])
    gan_weight: float = opt(0.0, "weight of the adversarial loss in the last part of the run: a patch "
                                 "discriminator per identity, trained from scratch, judges each decoder's faces "
                                 "against real ones (DeepFaceLab's GAN power; 0: off)")
    gan_start: float = opt(0.5, "share of the run (of --steps, or of --minutes) after which the adversarial phase "
                                "begins, when --gan-weight is set")
    code_critic: float = opt(0.01, "weight of a critic that learns to tell A's codes from B's at the encoder's "
                                   "bottleneck, which the encoder learns to defeat: decoder B then paints A's faces "
                                   "from codes like its own, so more of the new identity comes through, at some "
                                   "cost in how closely the pose follows (DeepFaceLab's true face power; 0: off, "
                                   "as before 2026-12-07)",
                            metavar="W")
    warp_until: float = opt(0.75, "share of the run (of --steps, or of --minutes) after which the inputs are no "
                                  "longer randomly warped: a clean phase to end the run, as DeepFaceLab users turn "
                                  "random warp off at the end (1: warp to the end)")
    flip: float = opt(0.5, "probability of a mirrored training sample: it lets a decoder draw turns of the "
                           "head it saw only mirrored, but when both face sets hold few poses it leaves the "
                           "swapped head's turn ambiguous (0: off)")
    init_from: str = opt("", "start a new run from this trained model folder (local or s3://, same --preset): "
                             "its shared encoder, and with --init-decoders its decoders too (pretrain on many "
                             "faces once, fine-tune each pair in minutes); a resumed run ignores it", uri=True,
                         metavar="MODEL_URI")
    init_decoders: bool = opt(False, "with --init-from, also start both decoders from that model's")
    seed: int = opt(0, "random seed")


@dataclass
class ConvertConfig:
    video: str = req("the footage to convert (identity A), local path or s3:// URI", positional=True, uri=True)
    faces: str = req("face set of that footage, from extract", uri=True)
    model: str = req("model folder from train", uri=True)
    out: str = req("output video file, local path or s3:// URI", uri=True, pixels=False)
    work: str = opt("", "where segments are kept for resume (default: <out>.work next to the output)", uri=True,
                    pixels=False)
    direction: str = opt("a2b", "which decoder renders the face", choices=["a2b", "b2a"])
    workers: int = opt(0, "parallel conversion actors (0: as many as the cluster's CPUs allow)", pixels=False)
    shard_frames: int = opt(0, "frames per segment (0: chosen from the video length and the cluster size)")
    lossless: bool = opt(False, "encode losslessly (RGB H.264, qp 0): for tests and masters")
    crf: int = opt(18, "H.264 quality when not lossless (lower is better)")
    color: str = opt("reinhard", "colour correction", choices=["reinhard", "mean", "hist", "none"])
    erode_px: int = opt(0, "shrink the blend mask by this many pixels (of the model's crop)")
    feather_px: int = opt(0, "blur the mask edge over this many pixels (0: a size-relative default)")
    seamless: bool = opt(False, "Poisson (seamless clone) blending instead of a feathered mask")
    sharpen: float = opt(0.0, "unsharp-mask amount on the swapped face (0: off)")
    precision: str = opt("auto", "arithmetic of the model's pass: auto runs it in bfloat16 on a CPU with AMX or "
                                 "AVX512-BF16 (the lite model 2.8x as fast; a face's pixels move by 2 levels of "
                                 "255 at most), else float32; fp32 runs float32 everywhere", choices=["auto", "fp32"])
    occlusion: bool = opt(True, "keep what covers the face (a hand, a microphone): pixels the model cannot rebuild "
                                "with the footage's own identity stay as decoded", flag="--no-occlusion",
                          flag_help="keep nothing in front of the face: the new face is pasted over hands and "
                                    "objects alike")
    fill: bool = opt(True, "where the new face's decoder painted its own background inside the footage's face "
                           "(its mask says where; for a model without one, colours it paints around faces and not "
                           "in them, lighter than the face), fill it from the new face: no bright arc down the "
                           "cheek", flag="--no-fill",
                     flag_help="paste the new face as its decoder painted it, background and all")
    smooth: bool = opt(True, "steady the face over time: smooth each face track's landmarks (looking ahead as "
                             "well as back, so no lag) and fill holes of up to 2 frames", flag="--no-smooth",
                       flag_help="place each face by its own frame's landmarks, as extracted (no smoothing, no filling)")
    steady: int = opt(4, "steady the swapped face: average it with its next N frames' swaps wherever the footage's "
                         "face did not change between them (0: off)", metavar="N")
    frames_out: str = opt("", "also write the swapped frames as PNG images under this URI", uri=True,
                          pixels=False)
    label: str = opt("", "visible label drawn on every frame (off when empty)", metavar="TEXT")
    watermark: bool = opt(True, "embed the invisible provenance watermark", flag="--no-watermark",
                          flag_help="do not embed the invisible watermark (the container metadata still marks the output)")
    keep_going: bool = opt(False, "finish the other segments when one fails, and list it", pixels=False)


@dataclass
class EvaluateConfig:
    original: str = req("the source video", uri=True)
    swapped: str = req("the swapped video", uri=True)
    target: list[str] = req("reference images or folders of the new face (B)")
    replaced: list[str] = opt([], "reference images or folders of the replaced face (A); default: the original's "
                                  "face in the same frame", was="source")
    json: str = opt("", "write the report as JSON here")
    plot: str = opt("", "write a PNG plot of per-frame identity distance and pose error here")
    workers: int = opt(0, "parallel evaluation tasks (0: automatic)")
    max_frames: int = opt(0, "evaluate at most this many frames, spread evenly (0: all)")
    min_face_px: int = opt(64, "smallest face side to find in the original, in pixels; sets the detection scale")
    changed_threshold: float = opt(6.0, "mean absolute difference (0-255 levels) inside a face hull above which "
                                        "the face counts as changed")
    mask_margin: float = opt(0.25, "grow the face masks by this fraction of the face width before measuring "
                                   "PSNR outside them")


@dataclass
class InspectConfig:
    a: str = req("face set A (the footage's face), from extract; local folder or s3:// URI", positional=True)
    b: str = req("face set B (the new face), from extract", positional=True)
    plot: str = opt("coverage.png", "write the coverage PNG here (both pose distributions, eye and mouth "
                                    "openness; empty: none)")
    json: str = opt("", "write the report as JSON here")


# `faceswap demo` trains DEMO_STEPS steps or DEMO_TRAIN_MINUTES minutes, whichever comes first: 1500 steps take
# 4-6 minutes on an idle 2-core machine but 12 on a day it runs at half speed, and the demo must stay within 15.
DEMO_STEPS = 1500
DEMO_TRAIN_MINUTES = 9.0


@dataclass
class RunConfig:
    """The whole pipeline: extract both sides, train, convert and assemble."""

    footage: list[str] = req("videos with the face to replace (identity A): files or folders", was="source")
    target: list[str] = req("photos or videos of the new face (identity B)")
    work: str = req("store for face sets, the model and segments: local folder or s3:// URI")
    output: str = req("the swapped video (one footage video) or a folder (several)")
    identity: list[str] = opt([], "references of the person to replace in the footage (others are left alone)")
    target_identity: list[str] = opt([], "references of the new face, to filter the target material")
    evaluate: bool = opt(True, "evaluate the output and write report.json and report.png next to it")
    extract: dict = opt({}, "extract settings (ExtractConfig fields)")
    train: dict = opt({}, "train settings (TrainConfig fields)")
    convert: dict = opt({}, "convert settings (ConvertConfig fields)")


def normalized(cfg):
    """``cfg`` with every URI field (``uri=True``) absolute and in one spelling, so plans, shard ids
    and resume do not depend on how a path was typed, and Ray workers (another working directory)
    read the same files."""
    from faceswap.storage import normalize_uri

    return dataclasses.replace(cfg, **{f.name: normalize_uri(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)
                                       if f.metadata.get("uri") and getattr(cfg, f.name)})


# -- YAML ------------------------------------------------------------------------------

def from_dict(cls, data: dict[str, Any], where: str):
    """Build ``cls`` from a mapping; unknown or missing keys raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    renamed = {f.metadata["was"]: n for n, f in names.items() if f.metadata.get("was") in unknown}
    if renamed:
        old, new = next(iter(renamed.items()))
        raise ConfigError(f"{where}: the key {old} is now called {new}")
    if unknown:
        raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                          f"(known: {', '.join(names)})")
    missing = [n for n, f in names.items() if f.metadata.get("required") and n not in data]
    if missing:
        raise ConfigError(f"{where}: missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    values = {}
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        values[name] = _coerce(value, hints[name], f"{where}: {name}")
    return cls(**values)


def _coerce(value, hint, where):
    origin = typing.get_origin(hint)
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        return [str(v) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if hint is int and float(value) != int(value):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return hint(value)
    if hint is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping")
        return value
    if hint is str:
        return "" if value is None else str(value)
    return value


def load_run_config(path: str) -> RunConfig:
    """Read a pipeline config; relative local paths are taken from the file's folder."""
    import yaml

    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such config file")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    cfg = from_dict(RunConfig, data, path)
    base = os.path.dirname(os.path.abspath(path))
    rel = lambda p: p if ("://" in p or os.path.isabs(p)) else os.path.normpath(os.path.join(base, p))  # noqa: E731
    cfg.footage = [rel(p) for p in cfg.footage]
    cfg.target = [rel(p) for p in cfg.target]
    cfg.identity = [rel(p) for p in cfg.identity]
    cfg.target_identity = [rel(p) for p in cfg.target_identity]
    cfg.work, cfg.output = rel(cfg.work), rel(cfg.output)
    # Validate the nested sections now, before any work starts.
    for section, cls in (("extract", ExtractConfig), ("train", TrainConfig), ("convert", ConvertConfig)):
        sub = getattr(cfg, section)
        fixed = {f.name for f in dataclasses.fields(cls) if f.metadata.get("required")}
        bad = sorted(set(sub) & fixed)
        if bad:
            raise ConfigError(f"{path}: {section}: {', '.join(bad)} is set by the pipeline, not in this section")
        allowed = {f.name for f in dataclasses.fields(cls)} - fixed
        unknown = sorted(set(sub) - allowed)
        if unknown:
            raise ConfigError(f"{path}: {section}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    return cfg


# -- argparse ------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser, cls, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
    """Add one flag per field of ``cls`` (``--field-name``; ``prefix`` for nested sections)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or hints[f.name] is dict:
            continue
        meta = f.metadata
        hint = hints[f.name]
        dest = f"{prefix.replace('-', '_')}{f.name}"
        flag = f"--{prefix}{f.name.replace('_', '-')}"
        if meta.get("flag"):
            flag = f"--{prefix}{meta['flag'][2:]}" if prefix else meta["flag"]
        kwargs: dict[str, Any] = {"help": meta.get("flag_help") or meta.get("help", "")}
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        required = bool(meta.get("required")) and not prefix
        if hint is bool:
            kwargs["action"] = "store_false" if f.default else "store_true"
            if prefix:
                kwargs["default"] = argparse.SUPPRESS  # absent flag: the config file's value stands
            parser.add_argument(flag, dest=dest, **kwargs)
            continue
        if typing.get_origin(hint) is list:
            kwargs["nargs"] = "+"
            kwargs["metavar"] = "REF" if not meta.get("positional") else "INPUT"
        else:
            kwargs["type"] = hint
            if "choices" not in meta:
                kwargs["metavar"] = meta.get("metavar") or {int: "N", float: "X"}.get(hint, "URI")
        if meta.get("positional") and not prefix:
            kwargs.pop("metavar", None)
            parser.add_argument(dest, metavar=f.name.upper(), **kwargs)
            continue
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = argparse.SUPPRESS if prefix else (f.default if f.default is not dataclasses.MISSING
                                                                   else f.default_factory())
        parser.add_argument(flag, dest=dest, **kwargs)


def from_args(cls, args: argparse.Namespace, prefix: str = "", **overrides):
    """Build ``cls`` from parsed arguments (fields missing from ``args`` keep their defaults)."""
    return cls(**{**section_overrides(cls, args, prefix), **overrides})


def section_overrides(cls, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The flags given for one section of ``run`` (``--train-steps 10`` -> {'steps': 10})."""
    out = {}
    for f in dataclasses.fields(cls):
        dest = f"{prefix.replace('-', '_')}{f.name}"
        if hasattr(args, dest):
            out[f.name] = getattr(args, dest)
    return out
