"""Convert: render the new face into the footage, shard by shard, then assemble the film.

    video + face set + model -> plan frame-range shards (segments already in the work store are skipped)
      -> [ConvertShard actors] records (+ HALO frames each side) -> smooth each face track, fill short holes
           (+ the hands extract found near the faces)
           -> decode -> crop each face with its (refitted) matrix
           -> encoder -> decoder B (the swap) and decoder A (the rebuild: what is not face = occluder), batched
           -> colour match -> paste under the hull mask minus occluders (what the rebuild misses, hands) -> watermark
           -> visible label (optional) -> encode -> segments/<plan>/<shard>.mkv (published atomically)
      -> assemble: concat without re-encoding + the source's audio + provenance tags -> output

A shard's segment is its resume marker. Segments live under a folder named by a
hash of everything that shapes the pixels (video, face set, model fingerprint,
settings, the watermark's version), so a rerun with other settings, or after the
mark's definition changed, never reuses a stale segment.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import os
import tempfile
import time
from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

from faceswap import __version__
from faceswap.config import ConvertConfig, normalized
from faceswap.errors import FaceswapError, InputError, raise_for_failed, shard_status
from faceswap.faces.smoothing import HALO, smooth_records
from faceswap.faceset import FaceSet, alignment_key, frame_hands, frame_records
from faceswap.provenance import watermark
from faceswap.raycluster import Cluster
from faceswap.storage import Store, local_input, split_uri

log = logging.getLogger(__name__)

PLAN_KEY = "convert.json"
SEGMENT_EXT = ".mkv"  # Matroska holds any codec we write, and concatenates cleanly
FACE_BATCH = 32  # faces per model call: amortises torch overhead, bounded memory


# -- the per-shard work -------------------------------------------------------------------------

class ConvertShard:
    """Swap the faces of one frame range and publish its segment.

    Constructed with the run's ConvertPlan as JSON. Input columns (one row per shard): ``id``, ``start``,
    ``stop``. Output columns: ``shard``, ``frames``, ``swapped_frames``, ``faces``, ``status``, ``error``,
    ``error_kind``, ``seconds``, ``node``. Fan-out: 1 shard -> 1 segment of (stop - start) frames.
    """

    def __init__(self, plan_json: str):
        import torch

        from faceswap.faces.backend import make_backend
        from faceswap.model.export import load_swapper
        from faceswap.provenance.watermark import Watermarker, payload_for

        import cv2

        self.plan = ConvertPlan.from_json(plan_json)
        self.settings = self.plan.config

        torch.set_num_threads(1)  # one core per actor: the pool, not torch or OpenCV, scales across cores
        cv2.setNumThreads(1)
        self.swapper = load_swapper(self.settings.model, precision=self.settings.precision)
        self.watermarker = Watermarker(payload_for(self.swapper.fingerprint)) if self.settings.watermark else None
        self.faces = Store(self.settings.faces)
        self.work = Store(self.plan.work)
        self.landmarker = make_backend("dlib") if self.watermarker is not None else None

    def __call__(self, batch: dict) -> dict:
        import ray

        from faceswap.heap import release_freed_memory

        out = defaultdict(list)
        for shard, start, stop in zip(batch["id"], batch["start"], batch["stop"]):
            t0 = time.monotonic()
            row = {"shard": shard, "frames": int(stop - start), "swapped_frames": 0, "faces": 0,
                   **shard_status(functools.partial(self.convert, str(shard), int(start), int(stop)))}
            release_freed_memory()  # between shards: keeps the actor's memory flat over a whole film
            row["seconds"] = time.monotonic() - t0
            row["node"] = ray.get_runtime_context().get_node_id()
            for key, value in row.items():
                out[key].append(value)
        return {k: np.array(v) for k, v in out.items()}

    def convert(self, shard: str, start: int, stop: int) -> dict:
        from faceswap.video.decode import iter_frames
        from faceswap.video.encode import SegmentWriter

        plan, s = self.plan, self.settings
        # The steady face looks s.steady frames ahead: they are decoded and swapped, not written.
        last = min(stop + max(0, s.steady), plan.frames)
        if s.smooth:  # neighbours beyond both ends decide the smoothing, so segments meet without a step
            halo = frame_records(self.faces, plan.faceset_shards, max(0, start - HALO), last + HALO)
            records = smooth_records(halo, start, last)
        else:
            records = frame_records(self.faces, plan.faceset_shards, start, last)
        # Hands in front of the faces stay in front (extract found them); off with the rest of --no-occlusion.
        hands = frame_hands(self.faces, plan.faceset_shards, start, stop) if s.occlusion else {}
        key = plan.segment_key(shard)
        counts = [0, 0]  # swapped frames, faces
        with local_input(s.video) as video_path, tempfile.TemporaryDirectory(prefix="faceswap-seg-") as tmp:
            local_segment = os.path.join(tmp, f"{shard}{SEGMENT_EXT}")
            with SegmentWriter(local_segment, plan.width, plan.height, plan.fps, lossless=s.lossless,
                               crf=s.crf, threads=1) as writer:
                pending: list[tuple[int, np.ndarray]] = []
                swapped: deque = deque()  # (index, frame, [SwappedFace]) not yet rendered, in frame order
                expected = start
                for index, _, frame in iter_frames(video_path, start, last):
                    if index != expected:
                        raise InputError(f"{s.video}: decoder returned frame {index}, expected {expected}")
                    expected += 1
                    pending.append((index, frame))
                    if sum(len(records.get(i, ())) for i, _ in pending) >= FACE_BATCH or len(pending) >= 64:
                        swapped.extend(self.swap(pending, records))
                        pending = []
                        self.render(swapped, stop, hands, writer, counts, final=False)
                if expected < stop:
                    raise InputError(f"{s.video}: decoded {expected - start} of {stop - start} frames of "
                                     f"shard {shard} (file truncated or corrupt)")
                swapped.extend(self.swap(pending, records))
                self.render(swapped, stop, hands, writer, counts, final=True)
            self.work.put_file(local_segment, key)
        return {"swapped_frames": counts[0], "faces": counts[1]}

    def swap(self, frames: list[tuple[int, np.ndarray]], records: dict) -> list[tuple[int, np.ndarray, list]]:
        """Every recorded face of ``frames`` cropped and swapped (one model call): [(index, frame, [SwappedFace])]."""
        from faceswap.faces.align import warp_to_crop
        from faceswap.render.steady import blurred

        s, size = self.settings, self.swapper.size
        jobs = []  # (frame position, landmarks, model-size matrix, original crop, bbox)
        for pos, (index, frame) in enumerate(frames):
            for landmarks, matrix, crop_size, bbox in records.get(index, ()):
                m = np.asarray(matrix, np.float64).reshape(2, 3) * (size / crop_size)
                jobs.append((pos, landmarks, m, warp_to_crop(frame, m, size), bbox))
        out = [(index, frame, []) for index, frame in frames]
        if jobs:
            generated, masks, rebuilt = self.swapper.swap_and_rebuild(np.stack([j[3] for j in jobs]), s.direction,
                                                                      rebuild=s.occlusion)
            for k, (pos, landmarks, m, original, bbox) in enumerate(jobs):
                out[pos][2].append(SwappedFace(landmarks, m, original, generated[k], bbox,
                                               None if masks is None else masks[k],
                                               None if rebuilt is None else rebuilt[k],
                                               blurred(original) if s.steady > 0 else None))
        return out

    def render(self, swapped: deque, stop: int, hands: dict, writer, counts: list, final: bool) -> None:
        """Paste the faces of every frame of ``swapped`` whose next ``steady`` frames are swapped too (all of
        them when ``final``), keeping ``hands`` (frame -> [(21, 2) points]) in front; write the frames before
        ``stop`` in order (those after it only lent their swaps); ``counts``: swapped frames and faces so far."""
        from faceswap.render.face import render_face
        from faceswap.render.steady import steady_face

        s = self.settings
        ahead = max(0, s.steady)
        outlines = self.swapper.outlines.get("b" if s.direction == "a2b" else "a")  # the new face's identity
        while swapped and (final or swapped[-1][0] >= swapped[0][0] + ahead):
            index, frame, faces = swapped.popleft()
            if index >= stop:
                continue
            pasted = False
            for face in faces:
                generated = steady_face(face.generated, face.footage_blurred, _ahead(face, index, swapped, ahead))
                rendered = render_face(frame, generated, face.original, face.landmarks, face.matrix, face.mask,
                                       s, index, face.bbox, self.watermarker, self.landmarker,
                                       rebuilt=face.rebuilt, hands=hands.get(index), outlines=outlines)
                if rendered is not None:
                    pasted, frame = True, rendered
            counts[0] += int(pasted)
            counts[1] += len(faces)
            if s.label:
                from faceswap.provenance.label import draw_label

                frame = draw_label(frame, s.label)
            if s.frames_out:
                _write_frame_png(Store(s.frames_out), index, frame)
            writer.write(frame)


def _ahead(face: "SwappedFace", index: int, swapped: deque, frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(swap, blurred footage crop) of ``face`` (of frame ``index``) in each of the next ``frames`` frames of
    ``swapped`` where it is found."""
    from faceswap.render.steady import same_face

    found = []
    for i, _, others in itertools.islice(swapped, frames):
        if i > index + frames:
            break
        j = same_face(face.landmarks, [o.landmarks for o in others])
        if j is not None:
            found.append((others[j].generated, others[j].footage_blurred))
    return found


@dataclass
class SwappedFace:
    """One face of a frame through the model: what rendering it needs."""

    landmarks: np.ndarray   # (68, 2) in frame pixels (smoothed)
    matrix: np.ndarray      # (2, 3) frame -> model-size crop
    original: np.ndarray    # the footage's crop (uint8 S x S x 3)
    generated: np.ndarray   # its swap
    bbox: np.ndarray
    mask: np.ndarray | None     # the model's own mask, if it learns one
    rebuilt: np.ndarray | None  # the crop through its own identity's decoder (occlusion), or None
    footage_blurred: np.ndarray | None  # steady.blurred(original), what the steady face compares (None: off)


def _write_frame_png(store: Store, index: int, frame: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not ok:
        raise FaceswapError(f"{store.url()}: cannot encode frame {index} as PNG")
    store.write_bytes(f"frames/{index:08d}.png", data.tobytes())


# -- planning ---------------------------------------------------------------------------------------

def default_work(out: str) -> str:
    return f"{out}.work"


@dataclass(frozen=True)
class ConvertPlan:
    """A convert run, planned once on the driver: what every actor and `assemble` read (work/convert.json)."""

    settings: dict         # the ConvertConfig, URIs normalised
    work: str              # the work store's URI
    video_id: str
    faceset_source: str    # the face set's source id of this video
    faceset_shards: list   # [{id, source, start, stop}] of that source
    fingerprint: str       # the model's
    frames: int
    fps: float
    width: int
    height: int
    has_audio: bool
    vfr: bool
    workers: int
    shards: list           # [{id, start, stop}]: one segment each
    version: int = 1
    kind: str = "convert"
    faceswap: str = __version__

    @property
    def config(self) -> ConvertConfig:
        return ConvertConfig(**self.settings)

    @property
    def hash(self) -> str:
        """What shapes the pixels of a segment: same hash, same segment. The settings that decide only
        where and how a run works (``pixels=False`` in ConvertConfig) are left out."""
        fields = {f.name: f for f in dataclasses.fields(ConvertConfig)}
        shaping = {k: v for k, v in self.settings.items() if fields[k].metadata.get("pixels", True)}
        faceset = hashlib.sha256(json.dumps(self.faceset_shards, sort_keys=True).encode()).hexdigest()[:12]
        # The mark's version too: segments marked by an older definition would not verify with this one.
        mark = watermark.KEY.decode() if shaping.get("watermark", True) else None
        doc = {"settings": shaping, "video": self.video_id, "fingerprint": self.fingerprint, "faceset": faceset,
               "shards": self.shards, "mark": mark}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]

    def segment_key(self, shard: str) -> str:
        return f"segments/{self.hash}/{shard}{SEGMENT_EXT}"

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "hash": self.hash}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "plan") -> "ConvertPlan":
        try:
            doc = json.loads(text)
            doc.pop("hash", None)
            return cls(**doc)
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{where}: not a convert plan of this faceswap version ({exc})") from None


@dataclass(frozen=True)
class _Inputs:
    """The checked inputs of a run: probed video, the face set's records of it, the model."""

    info: object
    keyframes: list
    faceset_source: str
    faceset_shards: list
    fingerprint: str


def check_inputs(cfg: ConvertConfig) -> _Inputs:
    """Probe the video, find its records in the face set, validate the model: fail fast, before Ray."""
    from faceswap.model.export import load_swapper
    from faceswap.video.probe import keyframes, probe, signature

    with local_input(cfg.video) as path:
        if not os.path.exists(path):
            raise InputError(f"{cfg.video}: no such file")
        info = probe(path)
        keys = keyframes(path)
        sig = signature(path)
    faceset = FaceSet(cfg.faces)
    source = faceset.find_source(cfg.video, info.frames, sig)
    faceset_shards = [{"id": e["id"], "source": e["source"], "start": int(e["start"]), "stop": int(e["stop"])}
                      for e in faceset.shards(source)]
    for entry in faceset_shards:
        alignment_key(entry["id"])  # refuse an unsafe shard id before any actor reads it
    swapper = load_swapper(cfg.model)  # validates the weights on the driver: a bad file is exit 2, not 1
    return _Inputs(info, keys, source, faceset_shards, swapper.fingerprint)


def make_plan(cfg: ConvertConfig, inputs: _Inputs, workers: int) -> ConvertPlan:
    """The segments of the run (no I/O: the inputs are checked, the worker count known)."""
    from faceswap.video.shards import plan_video_shards, source_id

    info = inputs.info
    shards = plan_video_shards(source_id(cfg.video), cfg.video, info, inputs.keyframes,
                               shard_frames=cfg.shard_frames, workers=workers)
    return ConvertPlan(
        settings=dataclasses.asdict(cfg), work=Store(cfg.work or default_work(cfg.out)).uri,
        video_id=source_id(cfg.video), faceset_source=inputs.faceset_source, faceset_shards=inputs.faceset_shards,
        fingerprint=inputs.fingerprint, frames=info.frames, fps=info.fps, width=info.width, height=info.height,
        has_audio=info.has_audio, vfr=info.vfr, workers=workers,
        shards=[{"id": sh.id, "start": sh.start, "stop": sh.stop} for sh in shards])


# -- the driver --------------------------------------------------------------------------------------

# Each actor holds one core's worth of work; 0.9 leaves Ray Data's own tasks room on a 2-core node.
ACTOR_CPUS = 0.9


def run_convert(cfg: ConvertConfig, progress: bool = True, cluster: Cluster | None = None) -> dict:
    """Convert ``cfg.video`` and assemble ``cfg.out``; returns the summary."""
    from faceswap.stages.assemble import assemble_plan, check_output

    t0 = time.monotonic()
    cfg = normalized(cfg)  # one spelling of every path: the plan's hash and resume depend on it
    check_output(cfg.out, cfg.video)
    out_store, _ = split_uri(cfg.out)
    out_store.check_writable()
    inputs = check_inputs(cfg)
    cluster = (cluster or Cluster()).connect()
    plan = make_plan(cfg, inputs, cluster.workers(cfg.workers, ACTOR_CPUS))
    work = Store(plan.work)
    work.check_writable()
    work.write_text(PLAN_KEY, plan.to_json())

    done = set(work.list(f"segments/{plan.hash}", suffix=SEGMENT_EXT))
    todo = [sh for sh in plan.shards if plan.segment_key(sh["id"]) not in done]
    t_convert = time.monotonic()
    rows = cluster.run_shards(todo, ConvertShard, args=(plan.to_json(),), workers=plan.workers, cpus=ACTOR_CPUS,
                              progress=progress)
    convert_s = time.monotonic() - t_convert
    failed = [r for r in rows if r["status"] != "ok"]
    if not cfg.keep_going:
        spans = {sh["id"]: sh for sh in plan.shards}

        def where(row):
            span = spans[row["shard"]]
            return f"{cfg.video}: segment {row['shard']} (frames [{span['start']}, {span['stop']}))"

        raise_for_failed(rows, "segments", where, "rerun to retry them, or --keep-going to finish the others")
    summary = {
        "video": cfg.video, "out": cfg.out, "frames": plan.frames, "segments": len(plan.shards),
        "segments_reused": len(plan.shards) - len(todo), "segments_failed": [r["shard"] for r in failed],
        "swapped_frames": int(sum(r["swapped_frames"] for r in rows)), "faces": int(sum(r["faces"] for r in rows)),
        "nodes": sorted({r["node"] for r in rows}), "model_fingerprint": plan.fingerprint,
        "busy_s": round(sum(r["seconds"] for r in rows), 3),  # shard work inside the actors, summed
    }
    if not failed:
        assemble_plan(plan, cfg.out)
    summary["seconds"] = round(time.monotonic() - t0, 2)
    summary["convert_seconds"] = round(convert_s, 3)
    summary["frames_per_s"] = round(sum(r["frames"] for r in rows) / convert_s, 2) if rows else 0.0
    work.write_json(f"summaries/{plan.hash}.json", summary)
    if progress:
        print_summary(summary)
    return summary


def print_summary(summary: dict) -> None:
    lines = [
        ("output", summary["out"]), ("frames", summary["frames"]), ("swapped frames", summary["swapped_frames"]),
        ("faces swapped", summary["faces"]), ("frames/s (converted)", summary["frames_per_s"]),
        ("segments", summary["segments"]), ("segments reused", summary["segments_reused"]),
        ("segments failed", len(summary["segments_failed"])), ("model", summary["model_fingerprint"]),
    ]
    width = max(len(k) for k, _ in lines)
    print("convert summary")
    for k, v in lines:
        print(f"  {k:<{width}}  {v}")
