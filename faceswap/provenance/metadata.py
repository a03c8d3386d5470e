"""Provenance tags in the container: what ffmpeg `-metadata` writes and ffprobe shows.

Keys (all survive in MKV, and in MP4 when muxed with `-movflags +use_metadata_tags`;
MKV upper-cases custom keys, so `read_tags` lower-cases every key):

    comment          "AI-generated synthetic media: face swapped by faceswap <version>"
    description      the same sentence plus the model fingerprint
    synthetic_media  "true"
    ai_generated     "true"
    faceswap_version faceswap.__version__
    faceswap_model   the model fingerprint (16 hex digits of sha256(model.pt))
    creation_time    UTC date of the conversion, ISO 8601 (MP4/MKV standard key)

Tags are stripped by `-map_metadata -1`; the invisible watermark
(`provenance.watermark`) is what survives that.
"""

from __future__ import annotations

import datetime as _dt
import os

import faceswap
from faceswap.errors import InputError

MARK_KEYS = ("synthetic_media", "ai_generated")


def provenance_tags(model_fingerprint: str, now: _dt.datetime | None = None) -> dict[str, str]:
    """ffmpeg `-metadata` key/values marking a video as face-swapped by faceswap."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    stamp = now.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    version = faceswap.__version__
    sentence = f"AI-generated synthetic media: face swapped by faceswap {version}"
    return {
        "comment": sentence,
        "description": f"{sentence} (model {model_fingerprint}, {stamp})",
        "synthetic_media": "true",
        "ai_generated": "true",
        "faceswap_version": version,
        "faceswap_model": str(model_fingerprint),
        "creation_time": stamp,
    }


def read_tags(path: str, name: str | None = None) -> dict[str, str]:
    """Container-level tags of a media file, keys lower-cased (PyAV); errors name `name` or `path`."""
    import av

    name = name or path
    if not os.path.isfile(path):
        raise InputError(f"{name}: no such file")
    try:
        with av.open(path) as container:
            return {str(k).lower(): str(v) for k, v in container.metadata.items()}
    except av.FFmpegError as exc:
        raise InputError(f"{name}: not a readable media file ({exc.__class__.__name__})") from None


def is_marked_by_metadata(tags: dict[str, str]) -> bool:
    """True when any marking key says "true" (case-insensitive keys and values)."""
    low = {k.lower(): str(v).strip().lower() for k, v in tags.items()}
    return any(low.get(key) in ("true", "1", "yes") for key in MARK_KEYS)
