"""The face set: what extract writes and train, convert, run and inspect read.

    <root>/manifest.json                 the set: settings, inputs (with content signatures), shards, counts
    <root>/alignments/<shard>.parquet    one record per kept face (schema below), written last per shard
    <root>/hands/<shard>.parquet         the hands near faces per frame (21 points each; faces/hands.py), before it
    <root>/faces/<shard>/<frame>_<face>.jpg|png   the aligned crops the records name

A face set is the shards its manifest names: other Parquet files under
alignments/ (a run with other settings, an unfinished one) are not part of it.
Every reader goes through this module, so the schema version, the record checks
and "which source of the set is this video" live in one place.
"""

from __future__ import annotations

import io
import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from faceswap.errors import FaceswapError, InputError
from faceswap.storage import Store, check_key

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
# The columns every reader needs; the others (score, identity_distance, ...) are for people and tools.
REQUIRED_COLUMNS = ("frame", "crop", "bbox", "landmarks", "matrix", "size")


def alignment_schema():
    import pyarrow as pa

    return pa.schema([
        ("source", pa.string()), ("shard", pa.string()), ("frame", pa.int64()), ("timestamp_s", pa.float64()),
        ("face", pa.int16()), ("bbox", pa.list_(pa.float32(), 4)), ("landmarks", pa.list_(pa.float32(), 136)),
        ("matrix", pa.list_(pa.float64(), 6)), ("size", pa.int32()), ("identity_distance", pa.float32()),
        ("crop", pa.string()), ("score", pa.float32()),
    ], metadata={"faceswap.schema": str(SCHEMA_VERSION)})


def alignment_key(shard_id: str) -> str:
    return check_key(f"alignments/{shard_id}.parquet")


def hands_schema():
    import pyarrow as pa

    return pa.schema([("frame", pa.int64()), ("hand", pa.int16()), ("points", pa.list_(pa.float32(), 42)),
                      ("presence", pa.float32())], metadata={"faceswap.schema": str(SCHEMA_VERSION)})


def hands_key(shard_id: str) -> str:
    return check_key(f"hands/{shard_id}.parquet")


# -- writing (extract) -----------------------------------------------------------------------------

def finished_shards(store: Store) -> set[str]:
    """Ids of the shards whose records are in the store (the Parquet is each shard's done-marker)."""
    return {k[len("alignments/"):-len(".parquet")] for k in store.list("alignments", ".parquet")}


def shard_faces(store: Store, shard_id: str) -> int:
    """Faces recorded by a finished shard (read from the Parquet footer only)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(io.BytesIO(store.read_bytes(alignment_key(shard_id)))).metadata.num_rows


def write_manifest(store: Store, settings: dict, inputs: list[dict], shards: list[dict], counts: dict,
                   bad_inputs: list[dict]) -> None:
    """Publish the set: from here on readers see exactly ``shards``."""
    import faceswap

    store.write_json(MANIFEST, {
        "version": SCHEMA_VERSION, "kind": "faceset", "faceswap_version": faceswap.__version__,
        "settings": settings, "inputs": inputs, "shards": shards, "counts": counts, "bad_inputs": bad_inputs,
    })


# -- reading -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FaceRecord:
    """One training sample: a crop, its landmarks and the hands extract found near it, in crop pixels."""

    crop: str                  # key relative to the face set root
    landmarks: np.ndarray      # (68, 2) float32, crop pixels at ``size``
    size: int                  # side of the stored crop, px
    hands: tuple = ()          # (21, 2) float32 points of each hand of the face's frame, crop pixels at ``size``


@dataclass(frozen=True)
class FaceSetInfo:
    uri: str
    crop_size: int
    centering: str
    faces: int


def read_alignments(store: Store, shard_id: str, frames: tuple[int, int] | None = None) -> list[dict]:
    """The checked records of one shard (only frames [start, stop) with ``frames``): each a dict of
    REQUIRED_COLUMNS. A record that names an unsafe key or lacks values is an InputError naming the file."""
    key = alignment_key(shard_id)
    table = store.read_parquet(key)  # a listed shard that is gone: StoreError "<url>: no such object", exit 2
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(f"{store.url(key)}: missing alignment column(s) {', '.join(missing)}")
    if frames is not None:
        index = table.column("frame").to_numpy()
        table = table.take(np.nonzero((index >= frames[0]) & (index < frames[1]))[0])
    rows = table.select(list(REQUIRED_COLUMNS)).to_pylist()
    for row in rows:
        try:
            check_key(row["crop"])
        except FaceswapError:
            raise InputError(f"{store.url(key)}: unsafe crop key {row['crop']!r} (must be relative, without '..')") \
                from None
        lm, mat, box = row["landmarks"], row["matrix"], row["bbox"]
        if lm is None or len(lm) != 136 or mat is None or len(mat) != 6 or box is None or len(box) != 4:
            raise InputError(f"{store.url(key)}: malformed record for frame {row['frame']} (needs 136 landmark "
                             f"values, a 6-value matrix and a 4-value box)")
    return rows


def frame_records(store: Store, shards: list[dict], start: int, stop: int) -> dict[int, list]:
    """frame -> [(landmarks (68, 2), matrix (6,), crop size, bbox (4,))] for the kept faces of frames
    [start, stop), from the given shard entries of one source (convert's actors hold them in their plan)."""
    out: dict[int, list] = defaultdict(list)
    for entry in shards:
        if entry["stop"] <= start or entry["start"] >= stop:
            continue
        for row in read_alignments(store, entry["id"], (start, stop)):
            out[int(row["frame"])].append((np.asarray(row["landmarks"], np.float64).reshape(68, 2), row["matrix"],
                                           int(row["size"]), row["bbox"]))
    return out


def frame_hands(store: Store, shards: list[dict], start: int, stop: int) -> dict[int, list[np.ndarray]]:
    """frame -> [(21, 2) points of each hand near a face] for frames [start, stop); empty for shards
    extracted without hands (``--no-hands``, or by a faceswap before hands were found)."""
    out: dict[int, list] = defaultdict(list)
    for entry in shards:
        if entry["stop"] <= start or entry["start"] >= stop:
            continue
        for frame, hands in shard_hands(store, entry["id"]).items():
            if start <= frame < stop:
                out[frame].extend(hands)
    return out


def shard_hands(store: Store, shard_id: str) -> dict[int, list[np.ndarray]]:
    """frame -> [(21, 2) points of each hand near a face] of one shard (empty without a hands file)."""
    out: dict[int, list] = defaultdict(list)
    key = hands_key(shard_id)
    if not store.exists(key):
        return out
    table = store.read_parquet(key)
    if "frame" not in table.column_names or "points" not in table.column_names:
        raise InputError(f"{store.url(key)}: missing hand column(s) frame, points")
    for row in table.select(["frame", "points"]).to_pylist():
        if row["points"] is None or len(row["points"]) != 42:
            raise InputError(f"{store.url(key)}: malformed hand for frame {row['frame']} (needs 42 values)")
        out[int(row["frame"])].append(np.asarray(row["points"], np.float64).reshape(21, 2))
    return out


class FaceSet:
    """A published face set: its manifest and the records of the shards it names."""

    def __init__(self, uri: str):
        self.store = Store(uri)
        self.store.check_readable()
        if not self.store.exists(MANIFEST):
            what = "an unfinished extract" if self.store.list("alignments", suffix=".parquet") else "not a face set"
            raise InputError(f"{self.store.uri}: no manifest.json ({what}; run `faceswap extract` until it succeeds)")
        self.manifest = self.store.read_json(MANIFEST)
        if not isinstance(self.manifest, dict) or not isinstance(self.manifest.get("shards", []), list):
            raise InputError(f"{self.store.url(MANIFEST)}: not a face set manifest")

    @property
    def uri(self) -> str:
        return self.store.uri

    @property
    def settings(self) -> dict:
        return self.manifest.get("settings", {})

    def inputs(self, kind: str | None = None) -> list[dict]:
        """The manifest's inputs (``kind``: only "video" or "images" ones); entries of older sets without
        a kind are videos."""
        found = [e for e in self.manifest.get("inputs", []) if isinstance(e, dict)]
        return [e for e in found if kind is None or e.get("kind", "video") == kind]

    def shards(self, source: str | None = None) -> list[dict]:
        """The shard entries the manifest names (of one source with ``source``)."""
        return [e for e in self.manifest.get("shards", []) if source is None or e.get("source") == source]

    def find_source(self, video_uri: str, frames: int, signature: str) -> str:
        """Which source of the set is this video: the one whose content signature it has (moved or
        renamed files included); for a set without signatures, the same URI, else the same file name
        with the same frame count. Anything else is another video: its faces are elsewhere."""
        from faceswap.video.shards import source_id

        sources = {e.get("source") or e.get("id"): e for e in self.inputs("video")}
        signed = {sid: e["signature"] for sid, e in sources.items() if e.get("signature")}
        if signed:
            found = [sid for sid, s in signed.items() if s == signature]
            if found:
                return found[0]
            if source_id(video_uri) in signed:
                raise InputError(f"{self.uri}: was extracted from another version of {video_uri} (the file changed "
                                 f"since; extract it again)")
        else:
            if source_id(video_uri) in sources:
                return source_id(video_uri)
            name = os.path.basename(video_uri)
            by_name = [sid for sid, e in sources.items()
                       if os.path.basename(str(e.get("uri", ""))) == name and int(e.get("frames", -1)) == frames]
            if len(by_name) == 1:
                return by_name[0]
        raise InputError(f"{self.uri}: this face set has no records for {video_uri} "
                         f"(its videos: {', '.join(sorted(str(e.get('uri')) for e in sources.values())) or 'none'})")

    def records(self) -> list[dict]:
        """Every checked record of the set, shard by shard."""
        return [row for entry in self.shards() for row in read_alignments(self.store, entry["id"])]

    def training_records(self, hands: bool = True) -> tuple[list[FaceRecord], FaceSetInfo]:
        """The faces as training samples (landmarks and, with ``hands``, the hands of their frames, in crop
        pixels), and the set's crop size and centering."""
        from faceswap.faces.align import transform_points

        records, sizes = [], set()
        for entry in self.shards():
            found = shard_hands(self.store, entry["id"]) if hands else {}
            for row in read_alignments(self.store, entry["id"]):
                m = np.asarray(row["matrix"], np.float64).reshape(2, 3)
                in_crop = [transform_points(p, m).astype(np.float32)
                           for p in [np.reshape(row["landmarks"], (68, 2)), *found.get(int(row["frame"]), ())]]
                records.append(FaceRecord(row["crop"], in_crop[0], int(row["size"]), tuple(in_crop[1:])))
                sizes.add(int(row["size"]))
        if not records:
            raise InputError(f"{self.uri}: the face set has no faces")
        if len(sizes) > 1:
            raise InputError(f"{self.uri}: crops of different sizes {sorted(sizes)} in one face set")
        info = FaceSetInfo(self.uri, sizes.pop(), self.settings.get("centering", "face"), len(records))
        return records, info
