"""Memory of one worker over many shards: does an actor's RSS stay flat over a long film?

    python benchmarks/shard_memory.py [--minutes 3] [--decoder decord|pyav|auto] [--out DIR]

    write_long_clip (320x180, 25 fps) -> lite model (scale.py's helper)
    for heap trimming on, then off (faceswap.heap.release_freed_memory made a no-op):
        child process 1: ExtractShard.__call__ over every shard of the film, in order   -> RSS after each
        run_extract on the same store (every shard done: it only writes the manifest)
        child process 2: ConvertShard.__call__ over every shard of the film, in order   -> RSS after each
This is what one Ray Data actor does over a film, without the pool around it, so the curve is the
worker's own. `--decoder decord` forces the decord path (files whose frames carry no pts),
`pyav` the default path. Growth is measured as in
scale.py: peak RSS after the first 10% of shards over the peak of the first 10%, minus 1.
Writes <out>/shard_memory_<decoder>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale import lite_model  # noqa: E402

MB = 1024 * 1024


def growth(rss_mb: list[float]) -> float:
    head = max(1, len(rss_mb) // 10)
    return max(rss_mb[head:] or rss_mb) / max(rss_mb[:head]) - 1


def force_decoder(decoder: str) -> None:
    import faceswap.video.decode as decode

    if decoder != "auto":
        decode.choose_decoder = lambda path: decoder


def child(args) -> int:
    """One stage over every shard, in this process; prints the RSS curve as one JSON line."""
    import ray  # first: it puts its bundled psutil on sys.path where psutil is not installed

    import psutil  # noqa: I001

    import faceswap.heap

    if not args.trim:
        faceswap.heap.release_freed_memory = lambda: False
    force_decoder(args.decoder)
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    proc, curve, t0 = psutil.Process(), [], time.perf_counter()
    if args.child == "extract":
        from faceswap.stages.extract import ExtractShard
        from faceswap.stages.extract_plan import plan_shards, validate_inputs

        cfg = extract_config(args)
        shards = plan_shards(validate_inputs(cfg)[0], cfg, workers=1)
        worker = ExtractShard(cfg)
        for shard in shards:
            row = worker({"spec": [shard.to_json()]})
            if row["status"][0] != "ok":
                raise RuntimeError(row["error"][0])
            curve.append(round(proc.memory_info().rss / MB, 1))
    else:
        from faceswap.config import normalized
        from faceswap.stages.convert import ConvertShard, check_inputs, make_plan

        cfg = normalized(convert_config(args))
        plan = make_plan(cfg, check_inputs(cfg), workers=1)
        worker = ConvertShard(plan.to_json())
        for shard in plan.shards:
            row = worker({"id": [shard["id"]], "start": [shard["start"]], "stop": [shard["stop"]]})
            if row["status"][0] != "ok":
                raise RuntimeError(row["error"][0])
            curve.append(round(proc.memory_info().rss / MB, 1))
    ray.shutdown()
    print(json.dumps({"rss_mb": curve, "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


def extract_config(args):
    from faceswap.config import ExtractConfig

    return ExtractConfig(inputs=[args.film], out=os.path.join(args.out, f"faces_{args.tag}"), workers=1, size=64,
                         shard_frames=args.shard_frames, detect_every=16, check_every=8)


def convert_config(args):
    from faceswap.config import ConvertConfig

    return ConvertConfig(video=args.film, faces=os.path.join(args.out, f"faces_{args.tag}"), model=args.model,
                         out=os.path.join(args.out, f"swapped_{args.tag}.mp4"),
                         work=os.path.join(args.out, f"swapped_{args.tag}.work"), workers=1,
                         shard_frames=args.shard_frames)


def run_child(args, stage: str, trim: bool) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", stage, "--trim", str(int(trim)),
           "--film", args.film, "--model", args.model, "--out", args.out, "--tag", args.tag,
           "--decoder", args.decoder, "--shard-frames", str(args.shard_frames)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{stage} child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0, help="film length (320x180, 25 fps)")
    ap.add_argument("--decoder", default="auto", choices=["auto", "pyav", "decord"])
    ap.add_argument("--shard-frames", type=int, default=150)
    ap.add_argument("--out", default="/tmp/faceswap-shard-memory")
    # internal: one child measurement
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--trim", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--film", default="", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="", help=argparse.SUPPRESS)
    ap.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    import shutil

    import ray

    from faceswap.samples import write_long_clip
    from faceswap.stages.extract import run_extract

    os.makedirs(args.out, exist_ok=True)
    args.film = os.path.join(args.out, f"film_{args.minutes:g}m.mp4")
    if not os.path.exists(args.film):
        write_long_clip(args.film, args.minutes * 60)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    args.model = lite_model(args.out, 10)
    result = {"film": args.film, "decoder": args.decoder, "shard_frames": args.shard_frames, "runs": {}}
    for trim in (True, False):
        args.tag = f"{args.decoder}_{'trim' if trim else 'notrim'}"
        for name in (f"faces_{args.tag}", f"swapped_{args.tag}.work"):
            shutil.rmtree(os.path.join(args.out, name), ignore_errors=True)
        ext = run_child(args, "extract", trim)
        run_extract(extract_config(args), progress=False)  # every shard is done: writes the manifest
        conv = run_child(args, "convert", trim)
        for stage, r in (("extract", ext), ("convert", conv)):
            r["growth"] = round(growth(r["rss_mb"]), 4)
            result["runs"][f"{stage}_{'trim' if trim else 'no_trim'}"] = r
            curve = r["rss_mb"]
            print(f"{stage:8s} heap trim {'on ' if trim else 'off'}: {len(curve)} shards, RSS {curve[0]:.0f} -> "
                  f"{curve[-1]:.0f} MB (max {max(curve):.0f}), growth after the first 10% {r['growth']:+.1%}, "
                  f"{r['seconds']} s", flush=True)
    ray.shutdown()
    with open(os.path.join(args.out, f"shard_memory_{args.decoder}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
