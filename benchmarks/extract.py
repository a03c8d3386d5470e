"""Extract throughput on the 1280x720 sample clip.

    python benchmarks/extract.py [--copies 4] [--naive-frames 40]

Prints, from one run:
  decode-only      decord, one thread, every frame (the ceiling for one worker)
  naive loop       dlib HOG on the full-resolution frame, every frame, + 68 landmarks
                   (upsample 0; and upsample 1, face_recognition's default, for reference)
  pipeline         run_extract (Ray Data actor pool, crops + Parquet written) with 1 and 2 workers:
                   wall time of the whole run, and steady state (frames / seconds inside the actors)
  recall           frames where the pipeline has a face / frames where the naive loop found one
Goals: pipeline >= 40x naive on 1 worker, >= 25% of decode-only, 2 workers >= 1.8x 1 worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np


def _decode_fps(path: str, frames: int) -> float:
    from faceswap.video.decode import iter_frames

    t = time.perf_counter()
    n = sum(1 for _ in iter_frames(path, 0, frames))
    return n / (time.perf_counter() - t)


def _naive(path: str, count: int, upsample: int) -> tuple[float, set[int]]:
    """Full detection at full resolution on every frame, then landmarks: the loop we replace."""
    from faceswap.faces.backend import make_backend
    from faceswap.video.decode import iter_frames

    backend = make_backend("dlib")
    found, t = set(), time.perf_counter()
    for index, _, rgb in iter_frames(path, 0, count):
        boxes = backend.detect(rgb, upsample=upsample)
        backend.landmarks(rgb, boxes)
        if boxes:
            found.add(index)
    return count / (time.perf_counter() - t), found


def _pipeline(inputs: list[str], out: str, workers: int, settings: dict) -> dict:
    from faceswap.config import ExtractConfig
    from faceswap.stages.extract import run_extract

    shutil.rmtree(out, ignore_errors=True)
    cfg = ExtractConfig(inputs=inputs, out=out, workers=workers, **settings)
    return run_extract(cfg, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=4, help="the 200-frame clip is extracted this many times")
    ap.add_argument("--naive-frames", type=int, default=40, help="frames timed for the naive loop")
    ap.add_argument("--min-face-px", type=int, default=160)
    ap.add_argument("--detect-every", type=int, default=8)
    ap.add_argument("--check-every", type=int, default=2)
    ap.add_argument("--image-format", default="png", choices=["png", "jpg"])
    args = ap.parse_args()

    import ray

    from faceswap.samples import write_samples
    from faceswap.storage import Store
    from faceswap.video.probe import probe

    work = tempfile.mkdtemp(prefix="faceswap-bench-extract-")
    try:
        clip = write_samples(os.path.join(work, "samples"), sizes=("720p",))["a_720p.mp4"]
        info = probe(clip)
        inputs = []
        for i in range(args.copies):  # separate names: separate sources and shards
            link = os.path.join(work, f"a_720p_{i}.mp4")
            os.symlink(clip, link)
            inputs.append(link)

        decode = _decode_fps(clip, info.frames)
        naive0, naive_found = _naive(clip, args.naive_frames, upsample=0)
        naive1, _ = _naive(clip, min(args.naive_frames, 10), upsample=1)

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        settings = {"min_face_px": args.min_face_px, "detect_every": args.detect_every,
                    "check_every": args.check_every, "image_format": args.image_format,
                    "shard_frames": 100}
        results = {}
        for workers in (1, 2):
            out = os.path.join(work, f"out{workers}")
            t = time.perf_counter()
            summary = _pipeline(inputs, out, workers, settings)
            wall = time.perf_counter() - t
            results[workers] = (summary["frames"] / wall, summary, out)
        ray.shutdown()

        # Recall on the first copy, over the frames the naive loop timed.
        rows = Store(results[1][2]).read_parquet(
            Store(results[1][2]).list("alignments", ".parquet")[0]).to_pylist()
        pipeline_frames = {r["frame"] for r in rows}
        recall = len(naive_found & pipeline_frames) / max(1, len(naive_found))

        one, two = results[1][0], results[2][0]
        frames = results[1][1]["frames"]
        print(f"clip {info.width}x{info.height}, {info.frames} frames x {args.copies} copies = {frames} frames; "
              f"settings {settings}; {os.cpu_count()} CPUs")
        print(f"{'decode-only (1 thread)':<42} {decode:8.1f} frames/s")
        print(f"{'naive HOG full-res upsample=0 + landmarks':<42} {naive0:8.2f} frames/s  ({args.naive_frames} frames)")
        print(f"{'naive HOG full-res upsample=1 + landmarks':<42} {naive1:8.2f} frames/s  (10 frames)")
        for w in (1, 2):
            fps, summary, _ = results[w]
            print(f"{f'pipeline, {w} worker(s), wall incl. startup':<42} {fps:8.1f} frames/s  "
                  f"({summary['faces']} faces, {summary['seconds']:.1f} s; inside one actor: "
                  f"{summary['frames'] / max(summary['busy_s'], 1e-9):.1f} frames/s)")
        print(f"{'recall vs naive loop':<42} {recall:8.3f}  ({len(naive_found)} naive frames with a face)")
        print(f"pipeline(1) / naive(upsample 0)  = {one / naive0:6.1f}x   (goal >= 40x)")
        print(f"pipeline(1) / naive(upsample 1)  = {one / naive1:6.1f}x")
        print(f"pipeline(1) / decode-only        = {one / decode:6.1%}   (goal >= 25%)")
        print(f"pipeline(2) / pipeline(1)        = {two / one:6.2f}x   (goal >= 1.8x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
