"""Per-core extract and convert rates at 480p, 720p and 1080p, and 1-vs-2-worker efficiency.

    python benchmarks/perf_by_resolution.py [--seconds 8] [--out DIR] [--sizes 480p,720p,1080p]

Per size, on a write_long_clip film (moving face A, 25 fps), with the stages' default settings:
  per-core     the stage's own callable in this process pinned to one core, no Ray Data:
               ExtractShard.process and ConvertShard.convert over the whole clip as one shard
               (model loaded beforehand)
  pipeline     run_extract / run_convert with N actors over 4 shards, in a fresh process with its
               own Ray pinned to N cores (N = 1, 2): wall frames/s (extract: the whole run;
               convert: convert_seconds, i.e. without assembly)
  efficiency   pipeline(2) / (2 x pipeline(1))
Pinning gives each worker exactly its core, as on a cluster; unpinned, one worker already uses
a second core of this 2-core machine (extract's decode thread, convert's x264 process).
The lite model comes from benchmarks/scale.py's helper (trained a few steps on the samples).
Writes <out>/resolution.json. `--predict <out>/resolution.json` prints RESULTS.md's scaling
model from it (the assumptions are flags, with their defaults stated in RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pinning import can_pin, pin, pinned_to, run_pinned  # noqa: E402
from scale import lite_model, load_average  # noqa: E402

SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


def per_core_extract(clip: str, out: str, frames: int) -> float:
    from faceswap.config import ExtractConfig
    from faceswap.stages.extract import ExtractShard
    from faceswap.stages.extract_plan import ExtractShardSpec

    shutil.rmtree(out, ignore_errors=True)
    worker = ExtractShard(ExtractConfig(inputs=[clip], out=out))
    shard = ExtractShardSpec(id="clip-00000", kind="video", source="clip", uri=clip, start=0, stop=frames)
    t = time.perf_counter()
    row = worker.process(shard)
    seconds = time.perf_counter() - t
    if row["status"] != "ok":
        raise RuntimeError(row["error"])
    return frames / seconds


def per_core_convert(clip: str, faces: str, model: str, out: str, frames: int) -> float:
    from faceswap.config import ConvertConfig, normalized
    from faceswap.stages.convert import ConvertShard, check_inputs, make_plan

    cfg = normalized(ConvertConfig(video=clip, faces=faces, model=model, out=os.path.join(out, "percore.mp4"),
                                   work=os.path.join(out, "percore.work"), workers=1, shard_frames=frames))
    plan = make_plan(cfg, check_inputs(cfg), workers=1)
    worker = ConvertShard(plan.to_json())
    t = time.perf_counter()
    worker.convert(plan.shards[0]["id"], 0, frames)
    return frames / (time.perf_counter() - t)


def pipeline_extract(clip: str, out: str, workers: int, shard_frames: int) -> dict:
    from faceswap.config import ExtractConfig
    from faceswap.stages.extract import run_extract

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    s = run_extract(ExtractConfig(inputs=[clip], out=out, workers=workers, shard_frames=shard_frames),
                    progress=False)
    wall = time.perf_counter() - t
    return {"frames_per_s": round(s["frames"] / wall, 2), "wall_s": round(wall, 2), "shards": s["shards"],
            "in_actor_frames_per_s": round(s["frames"] / max(s["busy_s"], 1e-9), 2)}


def pipeline_convert(clip: str, faces: str, model: str, out: str, workers: int, shard_frames: int) -> dict:
    from faceswap.config import ConvertConfig
    from faceswap.stages.convert import run_convert

    name = f"w{workers}"
    shutil.rmtree(os.path.join(out, f"{name}.work"), ignore_errors=True)
    s = run_convert(ConvertConfig(video=clip, faces=faces, model=model, out=os.path.join(out, f"{name}.mp4"),
                                  work=os.path.join(out, f"{name}.work"), workers=workers, shard_frames=shard_frames),
                    progress=False)
    return {"frames_per_s": s["frames_per_s"], "convert_s": s["convert_seconds"], "segments": s["segments"],
            "assemble_s": round(s["seconds"] - s["convert_seconds"], 2)}


def stage_time_s(frames: int, cores: int, rate_fps: float, efficiency: float, actor_cpus: float,
                 startup_s: float, shard_overhead_s: float) -> dict:
    """Wall time of one stage on `cores`, with the planner's own shard count and the actor pool's size.

    actors = default_workers(cores, actor_cpus); shards from target_shard_frames(frames, 0, actors);
    the shards run in waves of `actors`; an actor holds min(1, cores / actors) of a core at
    `rate_fps * efficiency` frames/s per core, and pays `shard_overhead_s` per shard.
    """
    from faceswap.video.shards import target_shard_frames

    actors = max(1, int((cores - 0.5) // actor_cpus))
    shard = target_shard_frames(frames, 0, actors)
    shards = max(1, round(frames / shard))
    waves = -(-shards // actors)
    actor_fps = rate_fps * efficiency * min(1.0, cores / actors)
    seconds = startup_s + waves * (shard / actor_fps + shard_overhead_s)
    return {"actors": actors, "shard_frames": shard, "shards": shards, "waves": waves, "seconds": round(seconds, 1)}


def predict(rates: dict, efficiency: dict, frames: int, cores: list[int], startup_s: float, shard_overhead_s: float,
            plan_s: float, transfer_s: float, assemble_s: float) -> list[dict]:
    """Predicted wall time of extract + convert (+ planning, film transfer, assembly) per cluster size."""
    from faceswap.stages.convert import ACTOR_CPUS as CONVERT_CPUS
    from faceswap.stages.extract import ACTOR_CPUS as EXTRACT_CPUS

    rows = []
    for n in cores:
        ext = stage_time_s(frames, n, rates["extract"], efficiency["extract"], EXTRACT_CPUS, startup_s,
                           shard_overhead_s)
        conv = stage_time_s(frames, n, rates["convert"], efficiency["convert"], CONVERT_CPUS, startup_s,
                            shard_overhead_s)
        fixed = 2 * (plan_s + transfer_s) + assemble_s  # each stage plans and fetches the film once
        rows.append({"cores": n, "extract": ext, "convert": conv,
                     "total_s": round(ext["seconds"] + conv["seconds"] + fixed, 1)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="clip length per size (25 fps)")
    ap.add_argument("--out", default="/tmp/faceswap-resolution")
    ap.add_argument("--model-dir", default="/tmp/faceswap-scale", help="where scale.py keeps (or makes) the lite model")
    ap.add_argument("--sizes", default="480p,720p,1080p")
    ap.add_argument("--predict", metavar="JSON", help="only print the scaling model from a resolution.json")
    ap.add_argument("--size", default="1080p", help="--predict: which size's per-core rates")
    ap.add_argument("--efficiency", default="", help="--predict: extract,convert parallel efficiency")
    ap.add_argument("--film-frames", type=int, default=172_800, help="--predict: 2 hours at 24 fps")
    ap.add_argument("--startup-s", type=float, default=15.0, help="--predict: actor pool start per stage")
    ap.add_argument("--shard-overhead-s", type=float, default=0.5, help="--predict: open, seek, write per shard")
    ap.add_argument("--plan-s", type=float, default=3.0, help="--predict: probe + keyframes + plan")
    ap.add_argument("--transfer-s", type=float, default=10.0, help="--predict: film to each node (parallel)")
    ap.add_argument("--assemble-s", type=float, default=30.0, help="--predict: concat + audio + upload")
    # internal: one pinned pipeline measurement (see pinning.run_pinned)
    ap.add_argument("--pinned", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--clip", default="", help=argparse.SUPPRESS)
    ap.add_argument("--work", default="", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="", help=argparse.SUPPRESS)
    ap.add_argument("--shard-frames", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.predict:
        with open(args.predict) as f:
            measured = json.load(f)["sizes"][args.size]
        rates = {"extract": measured["extract_per_core_fps"], "convert": measured["convert_per_core_fps"]}
        e = [float(x) for x in args.efficiency.split(",")] if args.efficiency else \
            [measured["extract_efficiency_2w"], measured["convert_efficiency_2w"]]
        rows = predict(rates, {"extract": e[0], "convert": e[1]}, args.film_frames, [16, 64, 256], args.startup_s,
                       args.shard_overhead_s, args.plan_s, args.transfer_s, args.assemble_s)
        print(json.dumps({"size": args.size, "rates": rates, "efficiency": e, "film_frames": args.film_frames,
                          "startup_s": args.startup_s, "shard_overhead_s": args.shard_overhead_s,
                          "plan_s": args.plan_s, "transfer_s": args.transfer_s, "assemble_s": args.assemble_s,
                          "rows": rows}, indent=1))
        return 0

    if args.pinned:
        return pinned_main(args)

    import ray

    from faceswap.samples import write_long_clip
    from faceswap.video.probe import probe

    if not can_pin(2):
        print("needs 2 CPUs to pin one and two workers", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    model = lite_model(args.model_dir, 10)
    result = {"cpus": os.cpu_count(), "seconds": args.seconds, "load_average_start": load_average(), "sizes": {}}
    path = os.path.join(args.out, "resolution.json")
    clips = {}
    for size in args.sizes.split(","):
        width, height = SIZES[size]
        work = os.path.join(args.out, size)
        os.makedirs(work, exist_ok=True)
        clip = os.path.join(work, f"clip_{size}.mp4")
        if not os.path.exists(clip):
            write_long_clip(clip, args.seconds, width=width, height=height)
        frames = probe(clip).frames
        clips[size] = (clip, work, frames)
        r = {"width": width, "height": height, "frames": frames, "load_average_before": load_average()}
        with pinned_to(1):
            r["extract_per_core_fps"] = round(per_core_extract(clip, os.path.join(work, "faces_percore"), frames), 2)
            r["convert_per_core_fps"] = round(per_core_convert(clip, os.path.join(work, "faces_percore"), model,
                                                               work, frames), 2)
        result["sizes"][size] = r
    ray.shutdown()  # the pinned runs start their own

    for size, (clip, work, frames) in clips.items():
        r = result["sizes"][size]
        common = ["--clip", clip, "--work", work, "--model", model, "--shard-frames", str(-(-frames // 4))]
        for n in (1, 2):
            child = run_pinned(__file__, common, n)
            r[f"extract_w{n}"], r[f"convert_w{n}"] = child["extract"], child["convert"]
        for stage in ("extract", "convert"):
            one, two = r[f"{stage}_w1"]["frames_per_s"], r[f"{stage}_w2"]["frames_per_s"]
            r[f"{stage}_efficiency_2w"] = round(two / (2 * one), 3) if one else None
        r["load_average_after"] = load_average()
        print(size, json.dumps(r), flush=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result))
    return 0


def pinned_main(args) -> int:
    """Child of ``run_pinned``: N cores, its own Ray, extract then convert with N workers."""
    import ray

    pin(args.pinned)
    n = args.pinned
    ray.init(address="local", num_cpus=n, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    faces = os.path.join(args.work, f"faces_w{n}")
    r = {"extract": pipeline_extract(args.clip, faces, n, args.shard_frames),
         "convert": pipeline_convert(args.clip, faces, args.model, args.work, n, args.shard_frames)}
    ray.shutdown()
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
