"""Scale without a long film: planning a 3-hour probe result, the manifest of a 100,000-frame run,
and the memory sampler of benchmarks/scale.py (the full measurement is that benchmark)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faceswap.config import ExtractConfig
from faceswap.storage import Store
from faceswap.video.probe import VideoInfo
from faceswap.video.shards import plan_video_shards

ROOT = Path(__file__).resolve().parents[1]


def _info(frames: int) -> VideoInfo:
    return VideoInfo(path="film.mp4", frames=frames, fps=25.0, width=320, height=180, rotation=0,
                     duration_s=frames / 25.0, has_audio=True, audio_duration_s=frames / 25.0, vfr=False, codec="h264")


def _scale_module():
    import ray  # noqa: F401 - puts Ray's bundled psutil on sys.path

    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("workers", [1, 16, 256])
def test_three_hour_plan_is_fast_and_covers_every_frame_once(workers):
    frames = 3 * 3600 * 25
    keys = list(range(0, frames, 50))  # a keyframe every 2 s
    t = time.perf_counter()
    shards = plan_video_shards("film", "film.mp4", _info(frames), keys, workers=workers)
    assert time.perf_counter() - t < 1.0
    assert shards[0].start == 0 and shards[-1].stop == frames
    assert all(a.stop == b.start for a, b in zip(shards, shards[1:]))
    assert all(150 <= s.frames <= 450 for s in shards)  # DEFAULT_SHARD_FRAMES 300, bounded either way
    assert all(s.start % 50 == 0 for s in shards)  # snapped to keyframes: no decoding across shards
    assert 600 <= len(shards) <= 1800


def test_short_film_gives_every_worker_two_shards():
    shards = plan_video_shards("clip", "clip.mp4", _info(2000), list(range(0, 2000, 50)), workers=8)
    assert len(shards) >= 16


def test_manifest_of_a_100000_frame_run_stays_small(tmp_path):
    from faceswap.stages.extract import _write_manifest
    from faceswap.stages.extract_plan import plan_shards

    frames = 100_000
    uri = "s3://films/feature-with-a-long-name.mp4"
    source = {"kind": "video", "uri": uri, "source": "feature_with_a_long_name-0123abcd", "frames": frames,
              "fps": 25.0, "width": 1920, "height": 1080, "keyframes": list(range(0, frames, 48)),
              "info": _info(frames)}
    cfg = ExtractConfig(inputs=[uri], out=str(tmp_path))
    shards = plan_shards([source], cfg, workers=64)
    faces_of = {s.id: s.frames for s in shards}
    summary = {"frames": frames, "faces": frames, "failed_frames": 0, "shards": len(shards), "bad_inputs": []}
    _write_manifest(Store(str(tmp_path)), cfg, [source], shards, faces_of, summary)
    size = (tmp_path / "manifest.json").stat().st_size
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "keyframes" not in manifest["inputs"][0]  # the keyframe index stays with the planner
    assert len(manifest["shards"]) == len(shards) <= 700
    assert size < 150_000, size  # ~150 bytes a shard, no per-frame or per-face entry


def test_memory_sampler_sees_driver_and_children():
    scale = _scale_module()
    sampler = scale.MemorySampler(interval_s=0.05).start()
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(64 << 20); time.sleep(1.0)"])
    try:
        sampler.set_phase("work")
        time.sleep(0.6)
        sampler.set_phase("done")
    finally:
        child.wait()
        sampler.stop()
    pids = {row[2] for row in sampler.rows}
    roles = {row[3] for row in sampler.rows}
    assert child.pid in pids and "driver" in roles
    child_peak = max(row[4] for row in sampler.rows if row[2] == child.pid)
    assert child_peak > 60 << 20
    report = scale.memory_report(sampler)
    assert report["work"]["tree"]["samples"] >= 3
    assert report["work"]["driver"]["peak_first10_mb"] > 0


def test_growth_compares_the_first_tenth_with_the_rest():
    scale = _scale_module()
    mb = scale.MB
    flat = scale.growth(list(range(100)), [100 * mb] * 100)
    assert flat["growth"] == 0.0
    assert flat["peak_first10_mb"] == 100.0
    leak = scale.growth(list(range(100)), [(100 + t) * mb for t in range(100)])
    assert leak["growth"] == pytest.approx(199 / 109 - 1, abs=1e-3)
