"""Extract: find, track and align faces in videos and photos; write a face set.

    inputs -> validate (probe / imread) -> check store -> references -> plan shards -> skip finished
      -> Ray Data: from_items(shards) -> map_batches(ExtractShard) on an actor pool
           ExtractShard: decode frame range -> FaceTracker -> align -> identity filter
                         -> HandTracker: the hands near those faces (faces/hands.py)
                         -> each face track cleaned, a few frames behind (stages/extract_records.py: wrong
                            fits replaced, holes of up to 2 frames filled, smoothed; crops cut after that)
                         -> crops faces/<shard>/<frame>_<face>.jpg (or .png) -> hands/<shard>.parquet
                         -> alignments/<shard>.parquet (last)
      -> per-shard status rows -> checks (failed shards, sources without faces) -> manifest.json

One shard is one Ray Data row in and one summary row out. The alignment Parquet
of a shard is written last and atomically, so it marks the shard as done: a
rerun skips it and produces the same records. A shard's id ends in a hash of its
frame range and of every setting that shapes its records (the references'
embeddings included), so a rerun with other settings, or planned for another
cluster size, redoes the work instead of reusing records made another way; the
manifest names the shards of the face set, and readers take only those.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import defaultdict

import cv2
import numpy as np

from faceswap.config import ExtractConfig, normalized
from faceswap.errors import FaceswapError, InputError, raise_for_failed, shard_status
from faceswap.faceset import (alignment_key, alignment_schema, finished_shards, hands_key, hands_schema, shard_faces,
                              write_manifest)
from faceswap.raycluster import Cluster
from faceswap.stages.extract_plan import ExtractShardSpec, plan_shards, validate_inputs
from faceswap.storage import Store, check_key, local_input

# dlib's face recogniser costs ~100 ms a face: embed a track when it appears and then
# every this many of its frames, not on every frame.
IDENTITY_EVERY_FRAMES = 32
# Each actor asks for this much CPU: two fit on two cores with room for Ray Data's own tasks.
ACTOR_CPUS = 0.75


# -- the per-shard work -------------------------------------------------------------------

class ExtractShard:
    """Ray Data callable class: one shard in, one summary row out.

    In:  ``spec`` (ExtractShardSpec.to_json()).
    Out: ``shard``, ``source``, ``frames``, ``faces``, ``failed_frames``, ``status`` (ok | failed),
         ``error``, ``seconds``. Side effects: crops and alignments/<shard>.parquet in the store.
    Fan-out: 1 shard (~100-500 frames) -> one crop and one record per kept face per frame.
    """

    def __init__(self, cfg: ExtractConfig, refs: list | None = None, overlap: bool = True,
                 hand_models: dict | None = None):
        from faceswap.faces.backend import make_backend
        from faceswap.faces.identity import FaceEncoder
        from faceswap.raycluster import usable_cores

        self.cfg = c = cfg
        cv2.setNumThreads(1)  # one core per actor: the pool, not OpenCV, scales across cores
        self.backend = make_backend(c.backend, c.fan_detector if c.backend == "fan" else c.detector,
                                    c.model_dir, c.device)
        self.refs = np.asarray(refs, dtype=np.float32).reshape(-1, 128) if refs else None
        self.encoder = FaceEncoder() if self.refs is not None else None
        from faceswap.faces.hands import HandLandmarker, load_hand_models

        # The driver sends the models' bytes (workers need no registry); built alone, the shard loads them.
        self.hand_net = HandLandmarker(hand_models or load_hand_models()) if c.hands else None
        self.store = Store(c.out)
        # Decode-ahead and crop-writer threads pay where this worker has a core to spare; on one
        # core (the pool fills the node, or the process is pinned) they only add hand-offs.
        self.overlap = bool(overlap) and usable_cores() > 1

    def __call__(self, batch: dict) -> dict:
        rows = [self.process(ExtractShardSpec.from_json(spec)) for spec in batch["spec"]]
        return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}

    # One shard; every failure becomes a status row, counted and reported by run_extract.
    def process(self, shard: ExtractShardSpec) -> dict:
        import ray

        from faceswap.heap import release_freed_memory

        t0, started = time.perf_counter(), time.time()
        self.records, self.hands, self.failed, self.cleaned = [], [], 0, None
        row = shard_status(lambda: self._extract(shard))
        release_freed_memory()  # between shards: keeps the actor's memory flat over a whole film
        return {"shard": shard.id, "source": shard.source, "frames": shard.frames,
                "faces": len(self.records) if row["status"] == "ok" else 0, "failed_frames": self.failed, **row,
                "seconds": time.perf_counter() - t0, "started": started, "finished": time.time(),
                "node": ray.get_runtime_context().get_node_id()}

    def _extract(self, shard: ExtractShardSpec) -> None:
        from faceswap.faces.crop_writer import CropWriter

        # Crops are warped, encoded and stored (on a thread with `overlap`); all are in the store before the Parquet.
        with CropWriter(self.store, self.cfg.size, self.cfg.image_format, background=self.overlap) as self.crops:
            if shard.kind == "video":
                self._video(shard)
            else:
                self._images(shard)
        if self.failed > self.cfg.max_failed_frames * shard.frames:
            raise InputError(f"{shard.uri}: {self.failed} of {shard.frames} frames in [{shard.start}, "
                             f"{shard.stop}) could not be read")
        if self.hand_net is not None:
            self.store.write_parquet(hands_key(shard.id), self._hands_table())
        self.store.write_parquet(alignment_key(shard.id), self._table())  # last: the done-marker

    def _tracker(self):
        from faceswap.faces.tracker import FaceTracker

        c = self.cfg
        return FaceTracker(self.backend, detect_every=c.detect_every, min_face_px=c.min_face_px, smooth=c.smooth,
                           check_every=c.check_every)

    def _hand_tracker(self, detect_every: int | None = None):
        from faceswap.faces.hands import DETECT_EVERY, HandTracker

        if self.hand_net is None:
            return None
        return HandTracker(self.hand_net, detect_every or DETECT_EVERY)

    def _video(self, shard: ExtractShardSpec) -> None:
        from faceswap.stages.extract_records import CleanedRecords
        from faceswap.video.decode import Prefetch, iter_frames

        tracker, identities, hands = self._tracker(), {}, self._hand_tracker()
        c = self.cfg
        self.cleaned = CleanedRecords(self.crops, c.size, c.centering, c.image_format,
                                      c.detect_every) if c.clean_tracks else None
        # Decoding runs a few frames ahead in a thread where a core is free to overlap it with tracking.
        ahead = Prefetch if self.overlap else contextlib.closing
        with (local_input(shard.uri) as path,
              ahead(iter_frames(path, shard.start, shard.stop, decoder=self.cfg.decoder)) as frames):
            next_frame = shard.start
            while True:
                try:
                    index, ts, rgb = next(frames)
                except StopIteration:
                    break
                except InputError:
                    raise
                except Exception as exc:  # noqa: BLE001 - decoding died mid-shard: count what is lost
                    lost = shard.stop - next_frame
                    self.failed += lost
                    if lost > self.cfg.max_failed_frames * shard.frames:
                        raise InputError(f"{shard.uri}: decoding stopped at frame {next_frame} "
                                         f"({type(exc).__name__}: {exc})") from None
                    break
                next_frame = index + 1
                if self.cleaned is not None:
                    self.cleaned.add(index, ts, rgb)
                faces = tracker.update(rgb, tag=(index, ts))
                for (past_index, past_ts), past_rgb, face in tracker.backfilled:  # earlier frames, new faces
                    self._keep(shard, past_index, past_ts, past_rgb, face, identities)
                for face in faces:
                    self._keep(shard, index, ts, rgb, face, identities)
                if hands is not None:
                    hands.update(rgb, [face.bbox for face in faces], index)
        if self.cleaned is not None:
            self.cleaned.finish()
            self.records += self.cleaned.records
            self.cleaned = None
        self._add_hands(hands)

    def _images(self, shard: ExtractShardSpec) -> None:
        from faceswap.faces.identity import read_image

        for offset, uri in enumerate(shard.files):
            index = shard.start + offset
            try:
                with local_input(uri) as path:
                    rgb = read_image(path, uri)
            except FaceswapError:
                self.failed += 1
                continue
            # Each photo stands alone: a fresh tracker runs the full detector and numbers its faces from 0.
            identities, hands = {}, self._hand_tracker(detect_every=1)
            faces = self._tracker().update(rgb)
            for face in faces:
                self._keep(shard, index, 0.0, rgb, face, identities, every=1)
            if hands is not None:
                hands.update(rgb, [face.bbox for face in faces], index)
                self._add_hands(hands)

    def _add_hands(self, hands) -> None:
        if hands is None:
            return
        for index, found in hands.found.items():
            for k, hand in enumerate(found):
                self.hands.append({"frame": int(index), "hand": k, "points": hand.points.reshape(-1).tolist(),
                                   "presence": float(hand.presence)})

    def _keep(self, shard, index, ts, rgb, face, identities, every=IDENTITY_EVERY_FRAMES) -> None:
        from faceswap.faces import align
        from faceswap.faces.identity import min_distance

        c = self.cfg
        distance = None
        if self.refs is not None:
            seen = identities.get(face.track)
            if seen is None or seen[1] >= every:
                distance = min_distance(self.encoder.embed(rgb, face.landmarks), self.refs)
                seen = (distance, 0)
            identities[face.track] = (seen[0], seen[1] + 1)
            distance = seen[0]
            if distance > c.identity_threshold:
                return
        matrix = align.alignment_matrix(face.landmarks, c.size, c.centering)
        key = check_key(f"faces/{shard.id}/{index:08d}_{face.track:02d}.{c.image_format}")
        record = {
            "source": shard.source, "shard": shard.id, "frame": int(index), "timestamp_s": float(ts),
            "face": int(face.track), "bbox": face.bbox.tolist(), "landmarks": face.landmarks.reshape(-1).tolist(),
            "matrix": np.asarray(matrix, np.float64).reshape(-1).tolist(), "size": int(c.size),
            "identity_distance": None if distance is None else float(distance), "crop": key,
            "score": float(face.score)}
        if self.cleaned is not None and self.cleaned.holds(index):
            self.cleaned.record(index, record)  # its crop is cut once its track is cleaned
            return
        self.crops.submit(key, rgb, matrix)
        self.records.append(record)

    def _hands_table(self):
        import pyarrow as pa

        schema = hands_schema()
        self.hands.sort(key=lambda r: (r["frame"], r["hand"]))
        return pa.Table.from_pylist(self.hands, schema=schema) if self.hands else schema.empty_table()

    def _table(self):
        import pyarrow as pa

        schema = alignment_schema()
        self.records.sort(key=lambda r: (r["frame"], r["face"]))  # back-filled faces come in late
        return pa.Table.from_pylist(self.records, schema=schema) if self.records else schema.empty_table()


# -- the driver ---------------------------------------------------------------------------

def run_extract(cfg: ExtractConfig, progress: bool = True, cluster: Cluster | None = None) -> dict:
    """Extract a face set from ``cfg.inputs`` into ``cfg.out``; returns the summary printed at the end."""
    from faceswap.faces.backend import check_backend, make_backend
    from faceswap.faces.identity import load_references
    from faceswap.raycluster import cluster_cpus

    t0, started = time.perf_counter(), time.time()
    cfg = normalized(cfg)
    # Fail fast, before the cluster does any work: inputs, store, backend weights, references.
    sources, bad = validate_inputs(cfg)
    if not sources:
        raise InputError(f"extract: none of the inputs can be used ({'; '.join(b['error'] for b in bad)})")
    store = Store(cfg.out)
    store.check_writable()
    check_backend(cfg.backend, cfg.fan_detector if cfg.backend == "fan" else cfg.detector, cfg.model_dir, cfg.device)
    hand_models = None
    if cfg.hands:  # the hand models once on the driver (fetched into the cache the first time), sent to every actor
        from faceswap.faces.hands import load_hand_models

        hand_models = load_hand_models()
    refs = None
    if cfg.identity:  # the references' faces are found with the run's dlib detector (hog or cnn)
        refs = load_references(cfg.identity, make_backend("dlib", cfg.detector) if cfg.backend == "dlib" else None)

    cluster = (cluster or Cluster()).connect()
    workers = cluster.workers(cfg.workers, ACTOR_CPUS)
    shards = plan_shards(sources, cfg, workers, refs)
    done = finished_shards(store)
    todo = [s for s in shards if s.id not in done]
    pool = max(1, min(workers, len(todo)))
    # An actor overlaps decoding and crop writing with tracking only where it has ~2 cores to itself.
    overlap = cluster_cpus() / pool >= 1.5
    rows = cluster.run_shards(
        [{"spec": s.to_json()} for s in todo], ExtractShard, workers=workers, progress=progress,
        cpus=ACTOR_CPUS,  # fractional: Ray Data's own tasks keep a slice of a 2-core laptop
        kwargs={"cfg": cfg, "refs": None if refs is None else refs.tolist(), "overlap": overlap,
                "hand_models": hand_models})

    failed = [r for r in rows if r["status"] != "ok"]
    if not cfg.keep_going:
        spec_of = {s.id: s for s in todo}
        raise_for_failed(rows, "shards", lambda row: spec_of[row["shard"]].where(),
                         "rerun to retry them, or --keep-going to finish the others")

    by_id = {r["shard"]: r for r in rows}
    faces_of = {s.id: by_id[s.id]["faces"] if s.id in by_id else shard_faces(store, s.id)
                for s in shards if s.id in done or by_id.get(s.id, {}).get("status") == "ok"}
    per_source = defaultdict(lambda: {"frames": 0, "faces": 0, "failed_frames": 0, "shards": 0, "skipped": 0})
    for s in shards:
        p = per_source[s.source]
        p["frames"] += s.frames
        p["shards"] += 1
        p["skipped"] += s.id in done
        p["faces"] += faces_of.get(s.id, 0)
        p["failed_frames"] += by_id.get(s.id, {}).get("failed_frames", 0)
    incomplete = {r["source"] for r in failed}
    no_faces = [src for src in sources if per_source[src["source"]]["faces"] == 0 and src["source"] not in incomplete]
    for src in no_faces:
        what = "no faces found" if src["kind"] == "video" else "no usable face in any image"
        msg = f"{src['uri']}: {what}" + (" matching --identity" if refs is not None else "")
        if not cfg.keep_going:
            raise InputError(msg)
        bad.append({"uri": src["uri"], "error": msg})

    seconds = time.perf_counter() - t0
    new_frames = sum(r["frames"] for r in rows if r["status"] == "ok")
    new_faces = sum(r["faces"] for r in rows)
    summary = {
        "out": store.uri, "sources": len(sources), "bad_inputs": bad,
        "shards": len(shards), "shards_skipped": len(done & {s.id for s in shards}),
        "shards_failed": [{"shard": r["shard"], "error": r["error"]} for r in failed],
        "frames": sum(p["frames"] for p in per_source.values()),
        "faces": sum(p["faces"] for p in per_source.values()),
        "failed_frames": sum(p["failed_frames"] for p in per_source.values()),
        "seconds": round(seconds, 3), "frames_per_s": round(new_frames / seconds, 2) if seconds else 0.0,
        "faces_per_s": round(new_faces / seconds, 2) if seconds else 0.0, "workers": workers,
        "busy_s": round(sum(r["seconds"] for r in rows), 3),  # shard work inside the actors, summed
        # From the command's start to the first shard's, and from the last shard's end to the summary.
        "startup_s": round(min(r["started"] for r in rows) - started, 3) if rows else 0.0,
        "finish_s": round(time.time() - max(r["finished"] for r in rows), 3) if rows else 0.0,
        "nodes": sorted({str(r["node"]) for r in rows}),
        "per_source": dict(per_source),
    }
    if not failed:
        _write_manifest(store, cfg, sources, shards, faces_of, summary)
    _print_summary(summary, progress)
    return summary


def _write_manifest(store, cfg, sources, shards, faces_of, summary) -> None:
    write_manifest(
        store, settings={k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("inputs", "out")},
        inputs=[{k: v for k, v in src.items() if k not in ("info", "keyframes")} for src in sources],
        shards=[s.manifest_entry(faces_of.get(s.id, 0)) for s in shards],
        counts={k: summary[k] for k in ("frames", "faces", "failed_frames", "shards")},
        bad_inputs=summary["bad_inputs"])


def _print_summary(summary: dict, progress: bool) -> None:
    if not progress:
        return
    lines = [f"{'source':<40} {'frames':>8} {'faces':>8} {'failed':>7} {'shards':>7} {'skipped':>8}"]
    for src, p in sorted(summary["per_source"].items()):
        lines.append(f"{src:<40} {p['frames']:>8} {p['faces']:>8} {p['failed_frames']:>7} {p['shards']:>7} "
                     f"{p['skipped']:>8}")
    lines.append(f"{'total':<40} {summary['frames']:>8} {summary['faces']:>8} {summary['failed_frames']:>7} "
                 f"{summary['shards']:>7} {summary['shards_skipped']:>8}")
    lines.append(f"{summary['seconds']:.1f} s, {summary['frames_per_s']:.1f} frames/s, "
                 f"{summary['faces_per_s']:.1f} faces/s, {summary['workers']} workers -> {summary['out']}")
    for b in summary["bad_inputs"]:
        lines.append(f"skipped: {b['error']}")
    for f in summary["shards_failed"]:
        lines.append(f"failed: {f['shard']}: {f['error']}")
    print("\n".join(lines), flush=True)
