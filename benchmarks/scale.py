"""Long films at scale: flat memory, shard planning time, every frame out, in order.

    python benchmarks/scale.py [--minutes 180] [--out DIR] [--workers 2] [--detect-every 16]
                               [--stages extract,convert]

    write_long_clip (320x180, 25 fps, moving face A, frame barcode)   [kept in --out between runs]
      -> planning: probe + keyframes + plan_video_shards, timed (goal < 10 s for 3 hours)
      -> lite model: extract the small samples A and B, train a few steps (speed does not depend on quality)
      -> extract the film into a fresh face set (Ray Data actor pool) -> convert + assemble the film
         (--stages extract: only the first; --stages convert: only the second, from the face set left)
      -> barcodes of >= 1,000 frames spread over the output read back in order; frame count == input
    while a sampler thread records the RSS of the driver and of every process below it
    (raylet, gcs, Ray Data actors, ffmpeg encoders) every --interval-s seconds.

Writes to --out: memory_<tag>.csv (t_s, phase, pid, role, rss_mb; appended while it runs),
memory_<tag>.png and scale_<tag>.json (rewritten after each stage).
Memory goal, per stage: the peak after the first 10% of the stage is at most 10% above
the peak of that first 10% (growth = peak(rest) / peak(first 10%) - 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import threading
import time

import numpy as np

MB = 1024 * 1024


# -- memory sampling ---------------------------------------------------------------------------------

def process_role(proc, driver_pid: int) -> str:
    """A short name for one process of the tree: driver, a Ray worker's title, or the executable."""
    if proc.pid == driver_pid:
        return "driver"
    cmd = proc.cmdline()
    title = cmd[0] if cmd else proc.name()
    if title.startswith("ray::"):
        # e.g. ray::MapWorker(MapBatches(ExtractShard)), ray::IDLE; the method being run is dropped
        return re.sub(r"\.[A-Za-z_]\w*$", "", title.split(" ")[0])[:60]
    return os.path.basename(title.split(" ")[0]) or proc.name()


class MemorySampler:
    """RSS of this process and all its descendants, every `interval_s`, in a daemon thread.

    Rows are (t_s since start, phase, pid, role, rss_bytes). A plain list grows by a few
    dozen rows per sample: ~1 MB an hour, small beside what it measures.
    """

    def __init__(self, interval_s: float = 2.0, csv_path: str | None = None):
        import psutil  # ray puts its bundled psutil on sys.path; import ray first when it is not installed

        self.psutil = psutil
        self.root = psutil.Process()
        self.interval_s = interval_s
        self.phase = "setup"
        self.rows: list[tuple[float, str, int, str, int]] = []
        self.marks: list[tuple[str, float, float]] = []  # phase, start, stop
        self._t0 = time.monotonic()
        self._phase_t0 = 0.0
        self._stop = threading.Event()
        self._roles: dict[int, str] = {}
        self._lock = threading.Lock()  # set_phase samples from the main thread too
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        # Rows also go to a CSV as they are taken, so a run stopped early still has its curve.
        self._csv = open(csv_path, "w", newline="", buffering=1) if csv_path else None
        if self._csv:
            self._csv.write("t_s,phase,pid,role,rss_mb\n")

    @classmethod
    def from_csv(cls, path: str) -> MemorySampler:
        """The rows and phases of a CSV written by a run (finished or stopped early), for reporting."""
        self = cls.__new__(cls)
        self.rows, self.marks = [], []
        with open(path) as f:
            next(f)
            for line in f:
                parts = line.rstrip("\n").split(",")
                if len(parts) != 5:
                    continue  # a line cut short by a stopped run
                t, phase, pid, role, rss_mb = parts
                self.rows.append((float(t), phase, int(pid), re.sub(r"\.[A-Za-z_]\w*$", "", role),
                                  int(float(rss_mb) * MB)))
        for t, phase, *_ in self.rows:
            if not self.marks or self.marks[-1][0] != phase:
                self.marks.append((phase, t, t))
            else:
                self.marks[-1] = (phase, self.marks[-1][1], t)
        return self

    def now(self) -> float:
        return time.monotonic() - self._t0

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        if self._csv:
            self._csv.close()

    def set_phase(self, phase: str) -> None:
        self.sample()
        t = self.now()
        self.marks.append((self.phase, self._phase_t0, t))
        self.phase, self._phase_t0 = phase, t
        self.sample()

    def sample(self) -> None:
        with self._lock:
            self._sample()

    def _sample(self) -> None:
        t, phase = self.now(), self.phase
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except self.psutil.NoSuchProcess:
            return
        for p in procs:
            try:
                rss = p.memory_info().rss
                # A Ray worker renames itself when it becomes an actor: read the title again until it does.
                role = self._roles.get(p.pid)
                if role is None or role in ("ray::IDLE", "python", "python3", "default_worker.py"):
                    role = self._roles[p.pid] = process_role(p, self.root.pid)
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied, self.psutil.ZombieProcess):
                continue
            self.rows.append((round(t, 3), phase, p.pid, role, rss))
            if self._csv:
                self._csv.write(f"{t:.3f},{phase},{p.pid},{role.replace(',', ';')},{rss / MB:.2f}\n")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    # -- views

    def totals(self) -> dict[float, dict]:
        """Per sample time: driver rss, tree rss, largest Ray worker rss, phase."""
        out: dict[float, dict] = {}
        for t, phase, _pid, role, rss in self.rows:
            o = out.setdefault(t, {"phase": phase, "driver": 0, "tree": 0, "worker_max": 0})
            o["tree"] += rss
            if role == "driver":
                o["driver"] = rss
            elif role.startswith("ray::"):
                o["worker_max"] = max(o["worker_max"], rss)
        return dict(sorted(out.items()))


def growth(times: list[float], values: list[float], first_share: float = 0.1) -> dict:
    """Peak of the first `first_share` of a span vs the peak of the rest (and of the last 10%)."""
    if len(times) < 3:
        return {"samples": len(times)}
    t = np.asarray(times)
    v = np.asarray(values, np.float64)
    cut = t[0] + first_share * (t[-1] - t[0])
    early, rest = v[t <= cut], v[t > cut]
    last = v[t >= t[0] + 0.9 * (t[-1] - t[0])]
    return {"samples": len(t), "peak_first10_mb": round(early.max() / MB, 1),
            "peak_rest_mb": round(rest.max() / MB, 1) if rest.size else None,
            "peak_last10_mb": round(last.max() / MB, 1),
            "growth": round(rest.max() / early.max() - 1, 4) if rest.size and early.max() > 0 else None}


def memory_report(sampler: MemorySampler) -> dict:
    """Growth per phase for the driver alone, the whole process tree, and the largest Ray worker."""
    totals = sampler.totals()
    report = {}
    for phase, start, stop in sampler.marks:
        ts = [t for t, o in totals.items() if start <= t <= stop and o["phase"] == phase]
        if len(ts) < 3:
            continue
        report[phase] = {"seconds": round(stop - start, 1)}
        for key in ("driver", "tree", "worker_max"):
            report[phase][key] = growth(ts, [totals[t][key] for t in ts])
    return report


def plot_memory(sampler: MemorySampler, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = sampler.totals()
    t = np.asarray(list(totals)) / 60
    fig, ax = plt.subplots(figsize=(11, 5.5))
    per_pid: dict[int, tuple[str, list, list]] = {}
    for ts, _phase, pid, role, rss in sampler.rows:
        if role.startswith("ray::") and not role.startswith("ray::IDLE"):
            per_pid.setdefault(pid, (role, [], []))
            per_pid[pid][1].append(ts / 60)
            per_pid[pid][2].append(rss / MB)
    for pid, (role, xs, ys) in per_pid.items():
        ax.plot(xs, ys, lw=0.8, alpha=0.7, label=f"{role.replace('ray::', '')[:40]} pid {pid}")
    ax.plot(t, [o["driver"] / MB for o in totals.values()], lw=1.5, color="k", label="driver")
    ax.plot(t, [o["tree"] / MB for o in totals.values()], lw=1.5, color="r", label="driver + all children")
    colors = {"extract": "#dfe", "convert": "#eef", "train": "#fed", "verify": "#eee"}
    for phase, start, stop in sampler.marks:
        if phase in colors:
            ax.axvspan(start / 60, stop / 60, color=colors[phase], zorder=0)
            ax.text((start + stop) / 120, ax.get_ylim()[1] * 0.97, phase, ha="center", va="top", fontsize=8)
    ax.set_xlabel("minutes since start")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- pipeline pieces ---------------------------------------------------------------------------------

def time_planning(film: str, workers: int) -> dict:
    """probe + keyframes + plan_video_shards, as extract and convert do before the cluster works."""
    from faceswap.video.probe import keyframes, probe
    from faceswap.video.shards import plan_video_shards, source_id

    t0 = time.perf_counter()
    info = probe(film)
    t1 = time.perf_counter()
    keys = keyframes(film)
    t2 = time.perf_counter()
    shards = plan_video_shards(source_id(film), film, info, keys, workers=workers)
    t3 = time.perf_counter()
    entries = [{"id": s.id, "source": s.source, "uri": s.uri, "start": s.start, "stop": s.stop, "faces": 0}
               for s in shards]
    return {"frames": info.frames, "fps": info.fps, "width": info.width, "height": info.height,
            "keyframes": len(keys), "shards": len(shards), "probe_s": round(t1 - t0, 3),
            "keyframes_s": round(t2 - t1, 3), "plan_s": round(t3 - t2, 4), "total_s": round(t3 - t0, 3),
            "manifest_shards_bytes": len(json.dumps(entries))}


def lite_model(work: str, steps: int) -> str:
    """A lite model trained for `steps` on the small samples (A and B): enough to time convert."""
    from faceswap.config import ExtractConfig, TrainConfig
    from faceswap.samples import write_samples
    from faceswap.stages.extract import run_extract
    from faceswap.stages.train import run_train
    from faceswap.storage import Store

    model = os.path.join(work, "model")
    if Store(model).exists("model/config.json"):
        return model
    samples = write_samples(os.path.join(work, "samples"))
    for side in ("a", "b"):
        out = os.path.join(work, f"faces_{side}_small")
        if not Store(out).exists("manifest.json"):
            run_extract(ExtractConfig(inputs=[samples[f"{side}_small.mp4"]], out=out, workers=1), progress=False)
    run_train(TrainConfig(a=os.path.join(work, "faces_a_small"), b=os.path.join(work, "faces_b_small"), out=model,
                          preset="lite", steps=steps, checkpoint_every=steps, preview_every=steps), progress=False)
    return model


def check_barcodes(path: str, expected_frames: int, samples: int) -> dict:
    """Decode `samples` frames spread over `path` by index (PyAV seek, one open per frame) and read
    their barcodes: each must equal its index, so the frames are all there and in order."""
    from faceswap.samples import read_barcode
    from faceswap.video.decode import iter_frames
    from faceswap.video.probe import probe

    info = probe(path)
    indices = np.unique(np.linspace(0, info.frames - 1, samples).round().astype(int))
    t0 = time.perf_counter()
    bad, read = [], []
    for i in indices.tolist():
        (index, _, rgb), = list(iter_frames(path, i, i + 1, rotation=info.rotation))
        code = read_barcode(rgb)
        read.append(code)
        if index != i or code != i % (1 << 20):
            bad.append((i, index, code))
    in_order = all(a is not None and b is not None and a < b for a, b in zip(read, read[1:]))
    return {"frames_out": info.frames, "frames_in": expected_frames, "frame_count_ok": info.frames == expected_frames,
            "sampled": len(indices), "mismatches": len(bad), "first_mismatches": bad[:5], "in_order": in_order,
            "seconds": round(time.perf_counter() - t0, 1)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- main --------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=180.0, help="film length (25 fps, 320x180)")
    ap.add_argument("--out", default="/tmp/faceswap-scale", help="working folder; the film is kept and reused")
    ap.add_argument("--workers", type=int, default=2, help="actors for extract and for convert")
    ap.add_argument("--detect-every", type=int, default=16, help="extract: full detector every K frames")
    ap.add_argument("--check-every", type=int, default=8, help="extract: re-check tracked faces every K frames")
    ap.add_argument("--shard-frames", type=int, default=0, help="frames per shard (0: the planner's choice)")
    ap.add_argument("--crop-px", type=int, default=64, help="extract crop size (the lite model's input size)")
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--barcodes", type=int, default=1000, help="output frames checked by barcode")
    ap.add_argument("--interval-s", type=float, default=2.0, help="memory sampling period")
    ap.add_argument("--no-watermark", action="store_true")
    ap.add_argument("--stages", default="extract,convert",
                    help="which stages to run: extract (into a fresh face set), convert (from the face set "
                         "an earlier run left), or both")
    ap.add_argument("--report", metavar="CSV", help="only summarise and plot a memory CSV of an earlier run")
    args = ap.parse_args()

    if args.report:
        sampler = MemorySampler.from_csv(args.report)
        plot_memory(sampler, args.report.rsplit(".", 1)[0] + ".png", f"{args.report} ({len(sampler.rows)} rows)")
        print(json.dumps(memory_report(sampler), indent=1))
        return 0

    import ray

    from faceswap.config import ConvertConfig, ExtractConfig
    from faceswap.samples import write_long_clip
    from faceswap.stages.convert import run_convert
    from faceswap.stages.extract import run_extract

    os.makedirs(args.out, exist_ok=True)
    result: dict = {"args": vars(args), "cpus": os.cpu_count(), "load_average_start": load_average()}
    log = open(os.path.join(args.out, "progress.log"), "a", buffering=1)

    def say(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} load {load_average()} {msg}"
        print(line, flush=True)
        log.write(line + "\n")

    film = os.path.join(args.out, f"film_{args.minutes:g}m.mp4")
    if not os.path.exists(film):
        t = time.perf_counter()
        write_long_clip(film, args.minutes * 60)
        result["generate_s"] = round(time.perf_counter() - t, 1)
        say(f"generated {film} in {result['generate_s']} s")
    result["film_bytes"] = os.path.getsize(film)

    result["planning"] = time_planning(film, args.workers)
    say(f"planning {result['planning']}")

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    stages = [x for x in args.stages.split(",") if x]
    if not stages or set(stages) - {"extract", "convert"}:
        ap.error(f"--stages: choose from extract, convert (got {args.stages!r})")
    tag = f"{args.minutes:g}m_w{args.workers}"
    faces = os.path.join(args.out, f"faces_{tag}")  # both stages' face set, whatever ran
    swapped = os.path.join(args.out, f"swapped_{tag}.mp4")
    if stages != ["extract", "convert"]:
        tag += "_" + "_".join(stages)  # memory and result files of a partial run sit beside the full run's
    sampler = MemorySampler(args.interval_s, os.path.join(args.out, f"memory_{tag}.csv")).start()
    result_path = os.path.join(args.out, f"scale_{tag}.json")

    def save() -> None:
        result["memory"] = memory_report(sampler)
        with open(result_path, "w") as f:
            json.dump(result, f, indent=1, default=str)
    try:
        sampler.set_phase("train")
        model = lite_model(args.out, args.train_steps)
        say(f"model ready: {model}")
        save()

        if "extract" in stages:
            sampler.set_phase("extract")
            t = time.perf_counter()
            shutil.rmtree(faces, ignore_errors=True)  # a fresh face set: the whole film is extracted
            ext = run_extract(ExtractConfig(inputs=[film], out=faces, workers=args.workers, size=args.crop_px,
                                            image_format="jpg", detect_every=args.detect_every,
                                            check_every=args.check_every, shard_frames=args.shard_frames),
                              progress=False)
            result["extract"] = {k: ext[k] for k in ("frames", "faces", "shards", "shards_skipped", "seconds",
                                                     "frames_per_s", "workers", "busy_s")}
            result["extract"]["wall_s"] = round(time.perf_counter() - t, 1)
            result["extract"]["manifest_bytes"] = os.path.getsize(os.path.join(faces, "manifest.json"))
            result["load_average_after_extract"] = load_average()
            say(f"extract {result['extract']}")
            save()

        if "convert" in stages:
            sampler.set_phase("convert")
            t = time.perf_counter()
            conv = run_convert(ConvertConfig(video=film, faces=faces, model=model, out=swapped, workers=args.workers,
                                             shard_frames=args.shard_frames, watermark=not args.no_watermark),
                               progress=False)
            result["convert"] = {k: conv[k] for k in ("frames", "swapped_frames", "faces", "segments", "segments_reused",
                                                      "seconds", "convert_seconds", "frames_per_s")}
            result["convert"]["wall_s"] = round(time.perf_counter() - t, 1)
            result["convert"]["assemble_s"] = round(conv["seconds"] - conv["convert_seconds"], 1)  # incl. planning
            result["load_average_after_convert"] = load_average()
            say(f"convert {result['convert']}")
            save()

            sampler.set_phase("verify")
            result["barcodes"] = check_barcodes(swapped, result["planning"]["frames"], args.barcodes)
            say(f"barcodes {result['barcodes']}")
        sampler.set_phase("done")
    finally:
        sampler.stop()
        ray.shutdown()
        result["load_average_end"] = load_average()
        save()
        plot_memory(sampler, os.path.join(args.out, f"memory_{tag}.png"),
                    f"{args.minutes:g}-minute 320x180 film, {args.workers} workers, "
                    f"{result['planning']['shards']} shards, {os.cpu_count()} CPUs shared (load {load_average()})")
        say(f"memory {json.dumps(result['memory'])}")
    codes = result.get("barcodes")
    if codes:
        ok = codes["frame_count_ok"] and not codes["mismatches"] and codes["in_order"]
    else:  # extract only: every frame of the film has its face
        ok = result["extract"]["faces"] >= result["planning"]["frames"]
    print(json.dumps(result, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
