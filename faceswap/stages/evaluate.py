"""Evaluate a swap the way the face-swap literature does: identity, pose, expression,
temporal stability, fidelity outside the face, and the film's integrity.

    original + swapped -> probe both, load references (fail fast)
      -> frames to evaluate (all, or --max-frames spread evenly) -> frame-range shards of the original
      -> [Ray Data actors, EvaluateShard: decode the same frames (and each one's predecessor) from both
          -> faces in the original (dlib) -> per face: changed? -> landmarks on the swapped frame
          -> identity distances, pose error, expression error, Laplacian energy (sharpness),
             landmark motion since the frame before in both (jitter)
          -> per frame: flicker sums, squared error outside the face masks, barcodes]
      -> per-frame records -> metrics.report.build_report -> JSON, table, plot

Metric definitions and units: the README's metrics table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from contextlib import ExitStack

import numpy as np

from faceswap.config import EvaluateConfig, normalized
from faceswap.errors import OK, InputError, StageFailed, raise_for_failed, shard_status
from faceswap.faces.identity import SAME_PERSON
from faceswap.faces.tracker import detect_near, detect_scaled, detection_scale
from faceswap.metrics import expression, fidelity, pose, report, sharpness, temporal
from faceswap.raycluster import Cluster
from faceswap.storage import local_input, split_uri

# One dlib actor is single-threaded; 0.75 CPU each lets two share a 2-core node with
# room for Ray Data's own read tasks.
ACTOR_CPUS = 0.75
MIN_SHAPE_CONFIDENCE = 0.3  # as the tracker: below this the 68 points do not look like a face
SELECTED_PER_SHARD = 50  # evaluated frames per task: ~10-20 s of work, cheap to redo


class EvaluateShard:
    """Per-frame metrics for one shard.

    Input columns: ``shard`` (str), ``frames`` (list of frame indices to evaluate, sorted).
    Output columns: ``shard``, ``frame``, ``record`` (JSON of the frame's record), ``status``, ``error``,
    ``error_kind``. 1 shard -> 1 row per frame, or one failed row (frame -1) for a shard that failed.
    """

    def __init__(self, cfg: EvaluateConfig, target: list, replaced: list, excluded_boxes: list):
        """``target``, ``replaced``: the references' embeddings (B, and A or none); ``excluded_boxes``:
        regions changed on purpose (the visible label), left out of PSNR outside the faces."""
        from faceswap.faces.backend import make_backend
        from faceswap.faces.identity import FaceEncoder

        self.cfg = cfg
        self.target = np.asarray(target, dtype=np.float32).reshape(-1, 128)
        self.replaced = np.asarray(replaced, dtype=np.float32).reshape(-1, 128)
        self.excluded_boxes = excluded_boxes
        self.backend = make_backend("dlib")
        self.encoder = FaceEncoder()
        self.scale = detection_scale(self.backend, cfg.min_face_px)  # as extract's tracker

    def __call__(self, batch: dict) -> dict:
        frames = [int(f) for f in batch["frames"][0]]
        shard = str(batch["shard"][0])
        rows: list[dict] = []

        def evaluate():
            with ExitStack() as stack:
                orig_path = stack.enter_context(local_input(self.cfg.original))
                swap_path = stack.enter_context(local_input(self.cfg.swapped))
                for index, prev, orig, swap in _frame_pairs(orig_path, swap_path, frames):
                    rec = self.evaluate_frame(index, orig, swap, prev)
                    rows.append({"shard": shard, "frame": index, "record": json.dumps(report.clean(rec)), **OK})

        status = shard_status(evaluate)
        if status["status"] != "ok":
            rows = [{"shard": shard, "frame": -1, "record": "", **status}]
        return {k: [r[k] for r in rows] for k in ("shard", "frame", "record", *OK)}

    # -- one frame ---------------------------------------------------------------------------

    def find_faces(self, rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(box, 68 landmarks) of each face in the frame, detector order."""
        boxes, _ = detect_scaled(self.backend, rgb, self.scale)
        faces = []
        for box, (pts, conf) in zip(boxes, self.backend.landmarks(rgb, boxes)):
            if conf >= MIN_SHAPE_CONFIDENCE:
                faces.append((np.asarray(box, np.float32), np.asarray(pts, np.float32)))
        return faces

    def redetect(self, rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, bool]:
        """The detector's box for the face near ``box`` in ``rgb`` (relaxed threshold, on a crop),
        or ``box`` itself when the detector sees none there."""
        found = detect_near(self.backend, rgb, box, margin=0.5, scale=self.scale)
        return (box, False) if found is None else (found[0], True)

    def identity(self, swapped: np.ndarray, pts_s: np.ndarray, original: np.ndarray,
                 pts_o: np.ndarray) -> tuple[float, float]:
        """(distance to the target refs, distance to the replaced face) of the swapped face."""
        emb = self.encoder.embed(swapped, pts_s)
        d_target = float(np.linalg.norm(self.target - emb, axis=1).min())
        if len(self.replaced):
            d_replaced = float(np.linalg.norm(self.replaced - emb, axis=1).min())
        else:
            d_replaced = float(np.linalg.norm(self.encoder.embed(original, pts_o) - emb))
        return d_target, d_replaced

    def evaluate_frame(self, index: int, orig: np.ndarray, swap: np.ndarray,
                       prev: tuple[np.ndarray, np.ndarray] | None) -> dict:
        from faceswap.faces.masks import hull_mask
        from faceswap.samples import read_barcode

        hw = orig.shape[:2]
        faces, hulls, changed_hulls = [], [], []
        for i, (box, pts_o) in enumerate(self.find_faces(orig)):
            hull = hull_mask(pts_o, hw)
            diff = fidelity.face_difference(orig, swap, hull)
            changed = diff > self.cfg.changed_threshold
            # An unchanged face is the original face: same box, so the same landmarks on the same pixels.
            box_s, redetected = self.redetect(swap, box) if changed else (box, False)
            pts_s = np.asarray(self.backend.landmarks(swap, [box_s])[0][0], np.float32)
            d_target, d_replaced = self.identity(swap, pts_s, orig, pts_o)
            per_angle = pose.pose_error(pts_o, pts_s, hw)
            motion = None
            if prev is not None:  # the same boxes on the frames before: how far each face's landmarks moved
                motion = [temporal.landmark_motion(self.backend.landmarks(prev[1], [box_s])[0][0], pts_s),
                          temporal.landmark_motion(self.backend.landmarks(prev[0], [box])[0][0], pts_o)]
            faces.append({
                "face": i, "bbox": box, "changed": bool(changed), "face_diff": diff,
                "redetected": bool(redetected),
                "identity_distance_target": d_target, "identity_distance_replaced": d_replaced,
                "retrieved": bool(d_target < d_replaced and d_target < SAME_PERSON),
                "pose_original_deg": pose.head_pose(pts_o, hw), "pose_swapped_deg": pose.head_pose(pts_s, hw),
                "pose_error_per_angle_deg": per_angle, "pose_error_deg": float(np.mean(per_angle)),
                "expression_error": expression.expression_error(pts_o, pts_s),
                "motion_px": motion,  # [swapped, original] landmark motion since the frame before: jitter_ratio
                # Laplacian energy [swapped, original, pixels] in the eroded hull: pooled into sharpness_ratio.
                "sharpness_energy": sharpness.face_energies(orig, swap, pts_o),
            })
            hulls.append((hull, box))
            if changed:
                changed_hulls.append(hull)
        margin = lambda box: int(math.ceil(self.cfg.mask_margin * (box[2] - box[0])))  # noqa: E731
        grown = [fidelity.outside_mask([h], hw, margin(b)) for h, b in hulls]
        outside = np.logical_and.reduce(grown) if grown else np.ones(hw, dtype=bool)
        for x0, y0, x1, y1 in self.excluded_boxes:
            outside[y0:y1, x0:x1] = False
        sse, n = fidelity.squared_error(orig, swap, outside)
        rec = {
            "frame": index, "faces": faces, "changed_faces": sum(f["changed"] for f in faces),
            "outside_sse": sse, "outside_n": n, "psnr_outside_db": fidelity.psnr_db(sse, n),
            "barcode_original": read_barcode(orig), "barcode_swapped": read_barcode(swap),
        }
        # Flicker sums (swapped, original, samples) over the changed faces and over all faces.
        for name, region_hulls in (("changed", changed_hulls), ("all", [h for h, _ in hulls])):
            if prev is None or not region_hulls:
                rec[f"flicker_{name}"] = [0.0, 0.0, 0]
                continue
            region = np.clip(np.sum(region_hulls, axis=0), 0, 1) > 0.5
            s_sum, cnt = temporal.frame_change(prev[1], swap, region)
            o_sum, _ = temporal.frame_change(prev[0], orig, region)
            rec[f"flicker_{name}"] = [s_sum, o_sum, cnt]
        return rec


def _frame_pairs(orig_path: str, swap_path: str, frames: list[int]):
    """Yield (index, (orig t-1, swap t-1) or None, orig t, swap t) for each selected frame.

    Selected frames and their predecessors are decoded as contiguous runs, so all
    frames of a shard are one run and a sparse subset costs two frames each.
    """
    from faceswap.video.decode import iter_frames

    wanted = set(frames)
    runs: list[list[int]] = []
    for f in frames:
        lo = max(0, f - 1)
        if runs and lo <= runs[-1][1]:
            runs[-1][1] = f + 1
        else:
            runs.append([lo, f + 1])
    for start, stop in runs:
        prev = None
        for (i, _, orig), (j, _, swap) in zip(iter_frames(orig_path, start, stop), iter_frames(swap_path, start, stop)):
            if i != j:
                raise InputError(f"{swap_path}: decoded frame {j} where the original gave {i}")
            if orig.shape != swap.shape:
                raise InputError(f"{swap_path}: frame {i} is {swap.shape[1]}x{swap.shape[0]}, "
                                 f"the original's is {orig.shape[1]}x{orig.shape[0]}")
            if i in wanted:
                yield i, prev, orig, swap
            prev = (orig, swap)


def select_frames(total: int, max_frames: int) -> list[int]:
    """All frame indices, or ``max_frames`` of them spread evenly (first and last included)."""
    if max_frames <= 0 or max_frames >= total:
        return list(range(total))
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, max_frames)})


def _integrity(info_o, info_s, records: list[dict]) -> dict:
    """Frame counts, frame order by barcode, audio and video durations of both files."""
    coded = [r for r in records if r["barcode_original"] is not None]
    in_order = [r["barcode_swapped"] == r["frame"] for r in coded]
    share = float(np.mean(in_order)) if coded else None
    one_frame_s = 1.0 / info_o.fps if info_o.fps else 0.04
    return {
        "frames_original": info_o.frames, "frames_swapped": info_s.frames,
        "frame_count_ok": info_o.frames == info_s.frames,
        "barcode_frames": len(coded), "frame_order_share": share,
        "order_ok": None if share is None else share == 1.0,
        "duration_original_s": info_o.duration_s, "duration_swapped_s": info_s.duration_s,
        "has_audio_original": info_o.has_audio, "has_audio_swapped": info_s.has_audio,
        "audio_duration_original_s": info_o.audio_duration_s if info_o.has_audio else None,
        "audio_duration_swapped_s": info_s.audio_duration_s if info_s.has_audio else None,
        # AAC frames are ~21-46 ms: within one video frame (plus one AAC frame) counts as kept.
        "audio_ok": (info_o.has_audio == info_s.has_audio
                     and (not info_o.has_audio
                          or abs(info_o.audio_duration_s - info_s.audio_duration_s) <= one_frame_s + 0.05)),
    }


def label_box(uri: str, width: int, height: int) -> list[int] | None:
    """(x0, y0, x1, y1) of the visible label convert burnt in, when the file's tags say it has one.

    The label is drawn on a white frame with convert's own call and found where it changed
    pixels, so its geometry lives in one place (provenance.label).
    """
    from faceswap.provenance.label import draw_label
    from faceswap.provenance.metadata import read_tags

    with local_input(uri) as path:
        text = read_tags(path).get("faceswap_label")
    if not text:
        return None
    white = np.full((height, width, 3), 255, np.uint8)
    ys, xs = np.nonzero((draw_label(white, text) != 255).any(axis=2))
    if not len(xs):
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _probe(uri: str):
    from faceswap.video.probe import keyframes, probe

    with local_input(uri) as path:
        if not os.path.exists(path):
            raise InputError(f"{uri}: no such file")
        return probe(path), keyframes(path)


def run_evaluate(cfg: EvaluateConfig, cluster: Cluster | None = None) -> dict:
    """Evaluate ``cfg.swapped`` against ``cfg.original``; write ``cfg.json`` / ``cfg.plot``; return the report."""
    from faceswap.faces.identity import load_references
    from faceswap.video.shards import plan_video_shards, source_id

    cfg = normalized(cfg)
    if not cfg.target:
        raise InputError("evaluate: --target needs at least one reference image of the new face")
    info_o, keys = _probe(cfg.original)
    info_s, _ = _probe(cfg.swapped)
    if (info_o.width, info_o.height) != (info_s.width, info_s.height):
        raise InputError(f"{cfg.swapped}: frames are {info_s.width}x{info_s.height}, "
                         f"the original's are {info_o.width}x{info_o.height}")
    target = load_references(cfg.target)
    replaced = load_references(cfg.replaced) if cfg.replaced else np.zeros((0, 128), np.float32)
    total = min(info_o.frames, info_s.frames)
    frames = select_frames(total, cfg.max_frames)

    cluster = (cluster or Cluster()).connect()
    workers = cluster.workers(cfg.workers, ACTOR_CPUS)
    # Shards sized so each holds about SELECTED_PER_SHARD evaluated frames, and every worker gets work.
    per_shard = max(1, min(SELECTED_PER_SHARD, math.ceil(len(frames) / workers)))
    shard_frames = max(1, math.ceil(total * per_shard / max(1, len(frames))))
    planned = plan_video_shards(source_id(cfg.original), cfg.original, dataclasses.replace(info_o, frames=total),
                                keys, shard_frames=shard_frames, workers=workers)
    sel = np.asarray(frames)
    tasks = [{"shard": sh.id, "frames": sel[(sel >= sh.start) & (sel < sh.stop)].tolist()} for sh in planned]
    tasks = [t for t in tasks if t["frames"]]
    label = label_box(cfg.swapped, info_s.width, info_s.height)
    # The visible "AI-GENERATED" label is a deliberate change: left out of PSNR outside the faces.
    excluded = [label] if label else []
    rows = cluster.run_shards(tasks, EvaluateShard, args=(cfg, target.tolist(), replaced.tolist(), excluded),
                              workers=workers, cpus=ACTOR_CPUS, progress=True)
    raise_for_failed(rows, "shards", lambda row: f"{cfg.swapped}: shard {row['shard']}", "rerun to retry them")
    records = [json.loads(row["record"]) for row in rows]
    if len(records) != len(frames):
        raise StageFailed(f"{cfg.swapped}: {len(records)} frame records for {len(frames)} selected frames")
    # What the numbers were measured with, recorded in the report.
    settings = {"excluded_boxes": excluded, "min_face_px": cfg.min_face_px, "changed_threshold": cfg.changed_threshold,
                "mask_margin": cfg.mask_margin, "max_frames": cfg.max_frames, "psnr_cap_db": fidelity.PSNR_CAP_DB,
                "same_person": SAME_PERSON,
                "identity_replaced_from": "--replaced references" if cfg.replaced else "the original face in the same frame"}
    result = report.build_report(records, _integrity(info_o, info_s, records), settings)
    result = {"original": cfg.original, "swapped": cfg.swapped, **result}
    if cfg.json:
        store, key = split_uri(cfg.json)
        store.write_json(key, result)
    if cfg.plot:
        store, key = split_uri(cfg.plot)
        store.write_bytes(key, report.plot_png(result))
    return result


def print_report(result: dict) -> None:
    """Print the report as a table."""
    print(report.format_table(result), flush=True)
