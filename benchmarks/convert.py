"""Convert throughput on the 1280x720 sample, every figure measured side by side in one run.

    python benchmarks/convert.py [--out DIR] [--frames N]

Prints frames/s of:
  decode+encode only     decode (the pipeline's decoder) -> SegmentWriter, no model (the ceiling)
  batch-1 per-face loop  decode -> crop -> model on one face -> paste -> encode, single process
  pipeline, 1 worker     `run_convert` on local Ray, one actor
  pipeline, 2 workers    the same with two actors
  pipeline, no watermark 1 worker with --no-watermark (the watermark's cost)
  pipeline, fp32         1 worker with --precision fp32 (what bfloat16 gains on a CPU with AMX/AVX512-BF16)
  model only             the swap and the rebuild alone, batches of 32, one thread, auto and fp32
Each pipeline figure is given as wall frames/s (actor start-up included, assembly excluded) and as one
actor's frames/s over its shard work (steady state). The per-face loop does the pipeline's per-face work
(the swap and the rebuild for the occlusion mask, colour match, paste, watermark) with batch-1 model calls;
the pipeline also smooths the face tracks (the defaults).
Goals: pipeline >= 50% of decode+encode-only with the lite model; 2 workers >= 1.8x 1 worker;
watermark costs <= 20% of conversion throughput.

Worker scaling is also measured with each worker given its own core, as on a cluster where a worker's
share of CPUs is its own: a fresh process (with its own local Ray) pinned to N cores runs N workers
(`--pinned`), for N = 1 and 2, next to decode+encode-only pinned to one core. Unpinned, one worker
already spreads over both cores of a 2-core machine (its x264 encoder is a separate process), so the
unpinned 2-vs-1 figure cannot show scaling there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from pinning import can_pin, pin, run_pinned


def decode_encode_only(video: str, out_dir: str, frames: int) -> float:
    from faceswap.video.decode import iter_frames
    from faceswap.video.encode import SegmentWriter
    from faceswap.video.probe import probe

    info = probe(video)
    t0 = time.perf_counter()
    with SegmentWriter(os.path.join(out_dir, "plain.mkv"), info.width, info.height, info.fps, threads=1) as w:
        for _, _, frame in iter_frames(video, 0, frames):
            w.write(frame)
    return frames / (time.perf_counter() - t0)


def per_face_loop(video: str, faces_uri: str, model_uri: str, out_dir: str, frames: int) -> float:
    """The naive loop: the pipeline's per-face work (colour match, paste, watermark), but one face at a time
    through the model, no batching, no Ray."""
    import torch

    from faceswap.config import ConvertConfig
    from faceswap.faces.align import warp_to_crop
    from faceswap.faces.backend import make_backend
    from faceswap.model.export import load_swapper
    from faceswap.provenance.watermark import Watermarker, payload_for
    from faceswap.render.face import render_face
    from faceswap.faceset import FaceSet, frame_records
    from faceswap.video.decode import iter_frames
    from faceswap.video.encode import SegmentWriter
    from faceswap.video.probe import probe

    torch.set_num_threads(1)
    info = probe(video)
    faceset = FaceSet(faces_uri)
    swapper = load_swapper(model_uri, batch_size=1)  # one face a model call, as a naive loop runs it (no padding)
    records = frame_records(faceset.store, faceset.shards(faceset.shards()[0]["source"]), 0, frames)
    marker, landmarker = Watermarker(payload_for(swapper.fingerprint)), make_backend("dlib")
    settings = ConvertConfig(video=video, faces=faces_uri, model=model_uri, out="unused.mp4")  # the defaults
    t0 = time.perf_counter()
    with SegmentWriter(os.path.join(out_dir, "naive.mkv"), info.width, info.height, info.fps, threads=1) as w:
        for index, _, frame in iter_frames(video, 0, frames):
            for landmarks, matrix, crop_size, bbox in records.get(index, ()):
                m = np.asarray(matrix, np.float64).reshape(2, 3) * (swapper.size / crop_size)
                original = warp_to_crop(frame, m, swapper.size)
                face, masks, rebuilt = swapper.swap_and_rebuild(original[None], rebuild=settings.occlusion)
                rendered = render_face(frame, face[0], original, landmarks, m, None if masks is None else masks[0],
                                       settings, index, bbox, marker, landmarker,
                                       rebuilt=None if rebuilt is None else rebuilt[0])
                frame = frame if rendered is None else rendered
            w.write(frame)
    return frames / (time.perf_counter() - t0)


def model_only(model_uri: str, precision: str, faces: int = 640) -> float:
    """Faces/s of the model alone (the swap and the rebuild, batches of 32, one thread) in ``precision``."""
    import torch

    from faceswap.model.export import load_swapper

    torch.set_num_threads(1)
    swapper = load_swapper(model_uri, precision=precision)
    crops = np.random.default_rng(0).integers(0, 256, (faces, swapper.size, swapper.size, 3), dtype=np.uint8)
    swapper.swap_and_rebuild(crops[:64])  # warm-up
    t0 = time.perf_counter()
    swapper.swap_and_rebuild(crops)
    return faces / (time.perf_counter() - t0)


def pipeline(video: str, faces_uri: str, model_uri: str, out_dir: str, workers: int, watermark: bool,
             shard_frames: int, tag: str = "pipe", precision: str = "auto") -> tuple[float, float]:
    """(wall frames/s of the conversion, actor start included; frames/s of one actor's shard work)."""
    from faceswap.config import ConvertConfig
    from faceswap.stages.convert import run_convert

    name = f"{tag}_w{workers}_{'wm' if watermark else 'nowm'}_{precision}"
    # A rerun into the same --out would otherwise reuse the finished segments (resume) and time nothing.
    shutil.rmtree(os.path.join(out_dir, f"{name}.work"), ignore_errors=True)
    cfg = ConvertConfig(video=video, faces=faces_uri, model=model_uri, out=os.path.join(out_dir, f"{name}.mp4"),
                        work=os.path.join(out_dir, f"{name}.work"), workers=workers, watermark=watermark,
                        shard_frames=shard_frames, precision=precision)
    summary = run_convert(cfg, progress=False)
    # wall: the conversion itself (actor start-up included, assembly excluded); busy: inside the actors
    return summary["frames"] / summary["convert_seconds"], summary["frames"] / summary["busy_s"]


def pinned_main(args) -> int:
    """Child of ``run_pinned``: pin this process (Ray and ffmpeg inherit it), then measure."""
    import ray

    pin(args.pinned)
    video, faces_a, model, out = args.video, args.faces, args.model, args.out
    if args.what == "decode_encode":
        print(json.dumps({"fps": decode_encode_only(video, out, args.frames)}))
        return 0
    ray.init(num_cpus=args.pinned, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    wall, actor = pipeline(video, faces_a, model, out, args.pinned, True, 200, tag=f"pinned{args.pinned}")
    ray.shutdown()
    print(json.dumps({"fps": wall, "actor_fps": actor}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # internal: one pinned measurement (see pinning.run_pinned)
    parser.add_argument("--pinned", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--what", default="pipeline", help=argparse.SUPPRESS)
    for name in ("--video", "--faces", "--model"):
        parser.add_argument(name, default="", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help="working folder (default: a temp folder)")
    parser.add_argument("--train-steps", type=int, default=30, help="steps of the lite model (speed only)")
    parser.add_argument("--repeat", type=int, default=3, help="the 200-frame clip joined this many times")
    parser.add_argument("--pinned-only", action="store_true",
                        help="only the pinned (one core per worker) measurements")
    args = parser.parse_args()
    if args.pinned:
        return pinned_main(args)

    import ray

    from faceswap.config import ExtractConfig, TrainConfig
    from faceswap.samples import write_samples
    from faceswap.stages.extract import run_extract
    from faceswap.stages.train import run_train
    from faceswap.video.probe import probe

    out = args.out or tempfile.mkdtemp(prefix="bench-convert-")
    os.makedirs(out, exist_ok=True)
    samples = write_samples(os.path.join(out, "samples"), sizes=("720p",))
    video = samples["a_720p.mp4"]
    if args.repeat > 1:  # a longer film, so actor start-up does not dominate
        from faceswap.video.assemble import assemble

        longer = os.path.join(out, f"a_720p_x{args.repeat}.mp4")
        if not os.path.exists(longer):
            assemble([video] * args.repeat, video, longer, {})
        video = longer
    frames = probe(video).frames
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    faces_a, faces_b, model = (os.path.join(out, n) for n in ("faces_a", "faces_b", "model"))
    run_extract(ExtractConfig(inputs=[video], out=faces_a), progress=False)
    run_extract(ExtractConfig(inputs=[samples["b_720p.mp4"]], out=faces_b), progress=False)
    run_train(TrainConfig(a=faces_a, b=faces_b, out=model, preset="lite", steps=args.train_steps,
                          checkpoint_every=args.train_steps, preview_every=args.train_steps), progress=False)

    # Shards on the clip's keyframes (one every 200 frames, where its copies join), as the planner does for
    # real films: a shard starting mid-GOP would first decode the frames before it.
    shard = 200
    results = {"video": f"{os.path.basename(video)} ({frames} frames, 1280x720)", "cpus": os.cpu_count()}
    r = results
    if not args.pinned_only:
        results["decode_encode_only_fps"] = decode_encode_only(video, out, frames)
        results["per_face_loop_fps"] = per_face_loop(video, faces_a, model, out, frames)
        r["pipeline_1_worker_fps"], r["actor_fps_1_worker"] = pipeline(video, faces_a, model, out, 1, True, shard)
        r["pipeline_2_workers_fps"], _ = pipeline(video, faces_a, model, out, 2, True, shard)
        r["pipeline_1_worker_no_watermark_fps"], r["actor_fps_no_watermark"] = pipeline(video, faces_a, model, out, 1,
                                                                                         False, shard)
        # --precision: bfloat16 on a CPU with AMX or AVX512-BF16 (auto) against float32, the model alone and whole
        r["pipeline_1_worker_fp32_fps"], r["actor_fps_fp32"] = pipeline(video, faces_a, model, out, 1, True, shard,
                                                                        precision="fp32")
        r["model_only_faces_per_s"], r["model_only_fp32_faces_per_s"] = (model_only(model, "auto"),
                                                                         model_only(model, "fp32"))
    ray.shutdown()  # the pinned runs start their own
    if can_pin(2):
        common = ["--video", video, "--faces", faces_a, "--model", model, "--out", out, "--frames", str(frames)]
        r["pinned_1_core_decode_encode_only_fps"] = run_pinned(__file__, common + ["--what", "decode_encode"], 1)["fps"]
        one, two = run_pinned(__file__, common, 1), run_pinned(__file__, common, 2)
        r["pinned_1_worker_1_core_fps"], r["pinned_1_worker_1_core_actor_fps"] = one["fps"], one["actor_fps"]
        r["pinned_2_workers_2_cores_fps"] = two["fps"]
        r["pinned_2_workers_actor_fps"] = two["actor_fps"]  # each actor's own speed over its shards
        r["pinned_two_vs_one_worker"] = two["fps"] / one["fps"]
        r["pinned_pipeline_vs_decode_encode"] = one["fps"] / r["pinned_1_core_decode_encode_only_fps"]
        r["pinned_actor_vs_decode_encode"] = one["actor_fps"] / r["pinned_1_core_decode_encode_only_fps"]
    if not args.pinned_only:
        r["actor_vs_decode_encode"] = r["actor_fps_1_worker"] / r["decode_encode_only_fps"]
        r["actor_vs_per_face_loop"] = r["actor_fps_1_worker"] / r["per_face_loop_fps"]
        r["watermark_cost_in_actor"] = 1 - r["actor_fps_1_worker"] / r["actor_fps_no_watermark"]
        r["pipeline_vs_decode_encode"] = r["pipeline_1_worker_fps"] / r["decode_encode_only_fps"]
        r["two_vs_one_worker"] = r["pipeline_2_workers_fps"] / r["pipeline_1_worker_fps"]
        r["pipeline_vs_per_face_loop"] = r["pipeline_1_worker_fps"] / r["per_face_loop_fps"]
        r["watermark_cost"] = 1 - r["pipeline_1_worker_fps"] / r["pipeline_1_worker_no_watermark_fps"]
        r["actor_auto_vs_fp32"] = r["actor_fps_1_worker"] / r["actor_fps_fp32"]
        r["model_only_auto_vs_fp32"] = r["model_only_faces_per_s"] / r["model_only_fp32_faces_per_s"]
    for k, v in r.items():
        print(f"{k:40s} {v:.3f}" if isinstance(v, float) else f"{k:40s} {v}")
    print(json.dumps(r))
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
