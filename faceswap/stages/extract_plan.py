"""Extract's plan: which inputs can be used, and the shards of work they make.

    inputs -> validate_inputs (probe / imread each file) -> sources (one per video; one per folder of photos)
      -> plan_shards -> ExtractShardSpec per frame range (video) or run of photos, its id ending in a hash of
         the range and of settings_fingerprint (every setting that shapes the records, the references too)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

import cv2
import numpy as np

from faceswap.config import ExtractConfig
from faceswap.errors import FaceswapError, InputError
from faceswap.faceset import SCHEMA_VERSION
from faceswap.inputs import expand, is_image
from faceswap.storage import is_remote, local_input, normalize_uri

IMAGES_PER_SHARD = 32


def _check_image(uri: str, min_face_px: int) -> None:
    with local_input(uri) as local:
        if not os.path.isfile(local):
            raise InputError(f"{uri}: no such file")
        if os.path.getsize(local) == 0:
            raise InputError(f"{uri}: empty file (0 bytes)")
        img = cv2.imread(local, cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"{uri}: not a readable image")
        h, w = img.shape[:2]
        if min(h, w) < min_face_px:  # cannot hold a face the detector is set to find
            raise InputError(f"{uri}: image too small ({w}x{h}; faces must be at least --min-face-px "
                             f"{min_face_px} px)")


def validate_inputs(cfg: ExtractConfig) -> tuple[list[dict], list[dict]]:
    """Sources to extract (one per video; one per input argument for its photos) and bad inputs."""
    from faceswap.video.probe import keyframes, probe, signature
    from faceswap.video.shards import source_id

    if not cfg.inputs:
        raise InputError("extract: no inputs given")
    sources, bad = [], []

    def refuse(uri, exc):
        if not cfg.keep_going:
            raise exc
        bad.append({"uri": uri, "error": str(exc)})

    seen: set[str] = set()
    for arg in cfg.inputs:
        try:
            files = expand(arg)
        except FaceswapError as exc:
            refuse(arg, exc)
            continue
        files = [f for f in files if f not in seen]  # a file named twice (or in two folders given) counts once
        seen.update(files)
        images = []
        for uri in files:
            try:
                if is_image(uri):
                    _check_image(uri, cfg.min_face_px)
                    images.append(uri)
                    continue
                with local_input(uri) as local:
                    info = probe(local)
                    keys = keyframes(local)
                    sig = signature(local)
                sources.append({"kind": "video", "uri": uri, "source": source_id(uri), "signature": sig,
                                "frames": info.frames, "fps": info.fps, "width": info.width, "height": info.height,
                                "keyframes": keys, "info": info})
            except FaceswapError as exc:
                refuse(uri, exc if uri in str(exc) else InputError(f"{uri}: {exc}"))
        if images:
            folder = arg if is_remote(arg) else normalize_uri(arg)
            sources.append({"kind": "images", "uri": folder, "source": source_id(folder), "frames": len(images),
                            "files": images})
    return sources, bad


# The settings that shape a shard's records; the others (workers, decoder, ...) change how, not what.
RECORD_SETTINGS = ("backend", "detector", "fan_detector", "size", "centering", "image_format", "min_face_px",
                   "detect_every", "check_every", "smooth", "identity_threshold", "hands", "clean_tracks")


def settings_fingerprint(cfg: ExtractConfig, refs: np.ndarray | None) -> str:
    """Hash of what decides a shard's records: the record settings, the schema and the references
    (their embeddings to 3 decimals, so the same photos give the same hash on any machine)."""
    doc = {k: getattr(cfg, k) for k in RECORD_SETTINGS}
    doc["schema"] = SCHEMA_VERSION
    if refs is not None:
        doc["identity"] = hashlib.sha1(np.round(np.asarray(refs, np.float64), 3).tobytes()).hexdigest()
    return hashlib.sha1(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ExtractShardSpec:
    """One unit of extract's work, as it travels to an actor (to_json/from_json): frames [start, stop) of a
    video, or images [start, stop) of a folder (``files``). ``source``: the input's id (video.shards.source_id)."""

    id: str
    kind: str  # "video" | "images"
    source: str
    uri: str
    start: int
    stop: int
    files: tuple[str, ...] = ()

    @property
    def frames(self) -> int:
        return self.stop - self.start

    def where(self) -> str:
        return f"{self.uri}: shard {self.id} (frames [{self.start}, {self.stop}))"

    def manifest_entry(self, faces: int) -> dict:
        return {"id": self.id, "source": self.source, "uri": self.uri, "start": self.start, "stop": self.stop,
                "faces": faces}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ExtractShardSpec":
        doc = json.loads(text)
        return cls(**{**doc, "files": tuple(doc.get("files", ()))})

    @classmethod
    def planned(cls, base: str, fingerprint: str, **fields) -> "ExtractShardSpec":
        """A spec whose id ends in a hash of the settings' fingerprint and of what it covers."""
        files = list(fields.get("files", ()))
        tag = hashlib.sha1(json.dumps([fingerprint, fields["start"], fields["stop"], files]).encode()).hexdigest()[:8]
        return cls(id=f"{base}-{tag}", **{**fields, "files": tuple(files)})


def plan_shards(sources: list[dict], cfg: ExtractConfig, workers: int,
                refs: np.ndarray | None = None) -> list[ExtractShardSpec]:
    from faceswap.video.shards import plan_video_shards

    fingerprint = settings_fingerprint(cfg, refs)
    shards = []
    for src in sources:
        if src["kind"] == "video":
            for s in plan_video_shards(src["source"], src["uri"], src["info"], src["keyframes"],
                                       shard_frames=cfg.shard_frames, workers=workers):
                shards.append(ExtractShardSpec.planned(s.id, fingerprint, kind="video", source=s.source, uri=s.uri,
                                                       start=s.start, stop=s.stop))
        else:
            files = src["files"]
            for i, start in enumerate(range(0, len(files), IMAGES_PER_SHARD)):
                stop = min(start + IMAGES_PER_SHARD, len(files))
                shards.append(ExtractShardSpec.planned(f"{src['source']}-{i:05d}", fingerprint, kind="images",
                                                       source=src["source"], uri=src["uri"], start=start, stop=stop,
                                                       files=files[start:stop]))
    return shards
