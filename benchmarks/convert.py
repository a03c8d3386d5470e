"""Convert throughput on the 1280x720 sample, every figure measured side by side in one run.

    python benchmarks/convert.py [--out DIR] [--frames N]

Prints frames/s of:
  decode+encode only     decord decode -> SegmentWriter, no model (the ceiling)
  batch-1 per-face loop  decode -> crop -> model on one face -> paste -> encode, single process
  pipeline, 1 worker     `run_convert` on local Ray, one actor
  pipeline, 2 workers    the same with two actors
  pipeline, no watermark 1 worker with --no-watermark (the watermark's cost)
Goals: pipeline >= 50% of decode+encode-only with the lite model; 2 workers >= 1.8x 1 worker;
watermark costs <= 20% of conversion throughput.
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
    """The naive loop: one face at a time through the model, no batching, no Ray."""
    import torch

    from faceswap.faces.align import warp_to_crop
    from faceswap.model.export import load_swapper
    from faceswap.render.paste import paste_face
    from faceswap.stages.convert import load_records
    from faceswap.storage import Store
    from faceswap.video.decode import iter_frames
    from faceswap.video.encode import SegmentWriter
    from faceswap.video.probe import probe

    torch.set_num_threads(1)
    info = probe(video)
    store = Store(faces_uri)
    manifest = store.read_json("manifest.json")
    swapper = load_swapper(model_uri)
    records = load_records(store, manifest["shards"], manifest["shards"][0]["source"], 0, frames)
    t0 = time.perf_counter()
    with SegmentWriter(os.path.join(out_dir, "naive.mkv"), info.width, info.height, info.fps, threads=1) as w:
        for index, _, frame in iter_frames(video, 0, frames):
            for landmarks, matrix, crop_size, _ in records.get(index, ()):
                m = np.asarray(matrix, np.float64).reshape(2, 3) * (swapper.size / crop_size)
                face, _ = swapper.swap(warp_to_crop(frame, m, swapper.size)[None])
                paste_face(frame, face[0], m, landmarks)
            w.write(frame)
    return frames / (time.perf_counter() - t0)


def pipeline(video: str, faces_uri: str, model_uri: str, out_dir: str, workers: int, watermark: bool,
             shard_frames: int) -> float:
    from faceswap.config import ConvertConfig
    from faceswap.stages.convert import run_convert

    name = f"pipe_w{workers}_{'wm' if watermark else 'nowm'}"
    cfg = ConvertConfig(video=video, faces=faces_uri, model=model_uri, out=os.path.join(out_dir, f"{name}.mp4"),
                        work=os.path.join(out_dir, f"{name}.work"), workers=workers, watermark=watermark,
                        shard_frames=shard_frames)
    summary = run_convert(cfg, progress=False)
    # frames/s of the conversion itself (actors warm-up included, assembly excluded)
    return summary["frames"] / summary["convert_seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="", help="working folder (default: a temp folder)")
    parser.add_argument("--train-steps", type=int, default=30, help="steps of the lite model (speed only)")
    args = parser.parse_args()

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
    frames = probe(video).frames
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    faces_a, faces_b, model = (os.path.join(out, n) for n in ("faces_a", "faces_b", "model"))
    run_extract(ExtractConfig(inputs=[video], out=faces_a), progress=False)
    run_extract(ExtractConfig(inputs=[samples["b_720p.mp4"]], out=faces_b), progress=False)
    run_train(TrainConfig(a=faces_a, b=faces_b, out=model, preset="lite", steps=args.train_steps,
                          checkpoint_every=args.train_steps, preview_every=args.train_steps), progress=False)

    shard = max(25, frames // 4)  # 4 segments: both actors of the 2-worker run stay busy
    results = {"video": f"{os.path.basename(video)} ({frames} frames, 1280x720)", "cpus": os.cpu_count()}
    results["decode_encode_only_fps"] = decode_encode_only(video, out, frames)
    results["per_face_loop_fps"] = per_face_loop(video, faces_a, model, out, frames)
    results["pipeline_1_worker_fps"] = pipeline(video, faces_a, model, out, 1, True, shard)
    results["pipeline_2_workers_fps"] = pipeline(video, faces_a, model, out, 2, True, shard)
    results["pipeline_1_worker_no_watermark_fps"] = pipeline(video, faces_a, model, out, 1, False, shard)
    r = results
    r["pipeline_vs_decode_encode"] = r["pipeline_1_worker_fps"] / r["decode_encode_only_fps"]
    r["two_vs_one_worker"] = r["pipeline_2_workers_fps"] / r["pipeline_1_worker_fps"]
    r["pipeline_vs_per_face_loop"] = r["pipeline_1_worker_fps"] / r["per_face_loop_fps"]
    r["watermark_cost"] = 1 - r["pipeline_1_worker_fps"] / r["pipeline_1_worker_no_watermark_fps"]
    for k, v in r.items():
        print(f"{k:40s} {v:.3f}" if isinstance(v, float) else f"{k:40s} {v}")
    print(json.dumps(r))
    ray.shutdown()
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
