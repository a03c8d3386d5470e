"""Bad input is refused, odd-but-valid input is handled: every case through the real CLI.

    bad file / store / model / config / face set -> `faceswap ...` subprocess
      -> exit 2, one line `faceswap: error: <input>: <problem>`, no traceback, nothing published
    rotated / variable-rate / silent video -> extract (+ convert) on the module's small local Ray

Commands that need Ray join the module's 2-CPU Ray (RAY_ADDRESS), so no subprocess starts its own.
Clips are cut to a few frames: 2 shared cores.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess

import cv2
import numpy as np
import pyarrow as pa
import pytest

from faceswap.storage import Store

FEW = 12  # frames per derived clip


def ffmpeg(*args: str) -> None:
    from faceswap.video.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True, capture_output=True)


def refused(proc, *fragments: str, after_ray: bool = False) -> str:
    """Exit 2, one line on stderr naming the problem, no traceback; returns the line.

    ``after_ray``: the problem shows only once the frames are read, so Ray Data's progress log
    comes first on stderr; the error is then the one ``faceswap: error:`` line, and the last.
    """
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    if after_ray:
        assert [line for line in lines if line.startswith("faceswap: ")] == lines[-1:], proc.stderr[-3000:]
        lines = lines[-1:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("faceswap: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def nothing_published(out) -> None:
    out = str(out)
    for name in ("manifest.json", "model/model.pt", "model/config.json"):
        assert not os.path.exists(os.path.join(out, name)), name
    assert not os.path.isfile(out), "no output file"


def random_model(uri: str, crop_size: int = 256) -> Store:
    """An untrained lite model in the model-folder layout: enough for convert to run."""
    import torch

    from faceswap.model.autoencoder import FaceSwapModel, preset
    from faceswap.model.export import write_model

    torch.manual_seed(0)
    mcfg = preset("lite")
    store = Store(uri)
    write_model(store, FaceSwapModel(mcfg).state_dict(), mcfg, crop_size, "face", {"steps": 0})
    return store


def _write_vfr(source: str, out: str, ticks: list[int]) -> None:
    """`out`: the first len(ticks) frames of `source`, frame n shown at ticks[n] / 25 s."""
    import fractions

    import av

    from faceswap.video.decode import iter_frames

    frames = [frame for _, _, frame in iter_frames(source, 0, len(ticks))]
    time_base = fractions.Fraction(1, 25)
    with av.open(out, "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "12"})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.time_base, stream.codec_context.time_base = "yuv420p", time_base, time_base
        for frame, tick in zip(frames, ticks):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = tick, time_base
            container.mux(stream.encode(picture))
        container.mux(stream.encode())


def ray_env(ray_local) -> dict:
    return {"RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}


@pytest.fixture(scope="module")
def clips(samples_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad_inputs")
    a = os.path.join(samples_dir, "a_small.mp4")
    p = {k: str(root / k) for k in ("zero.mp4", "text.mp4", "truncated.mp4", "plain.mp4", "side.mp4",
                                    "rotated.mp4", "vfr.mp4", "silent.mp4", "tiny.png", "zero.png")}
    open(p["zero.mp4"], "wb").close()
    open(p["zero.png"], "wb").close()
    with open(p["text.mp4"], "w") as f:
        f.write("this is a text file, not a video\n")
    data = open(a, "rb").read()
    with open(p["truncated.mp4"], "wb") as f:
        f.write(data[: len(data) // 2])
    from faceswap.video.encode import SegmentWriter

    with SegmentWriter(p["plain.mp4"], 160, 120, 25) as writer:
        for i in range(FEW):
            writer.write(np.full((120, 160, 3), 60 + 5 * i, np.uint8))
    # A phone-style clip: pixels stored turned clockwise, a display matrix turns them back upright.
    ffmpeg("-i", a, "-frames:v", str(FEW), "-vf", "transpose=1", "-c:v", "libx264", "-crf", "12", "-an", p["side.mp4"])
    ffmpeg("-display_rotation", "90", "-i", p["side.mp4"], "-c", "copy", p["rotated.mp4"])
    # Variable frame rate: the first 8 frames last twice as long as the rest. Written with PyAV, each
    # frame's time set here: ffmpeg's setpts left the last frame outside the mp4's edit list (23 shown).
    _write_vfr(a, p["vfr.mp4"], [2 * n if n < 8 else n + 8 for n in range(2 * FEW)])
    ffmpeg("-i", a, "-frames:v", str(FEW), "-c:v", "libx264", "-crf", "12", "-an", p["silent.mp4"])
    cv2.imwrite(p["tiny.png"], np.full((20, 20, 3), 128, np.uint8))
    p["a"] = a
    p["root"] = str(root)
    return p


# -- refused before any work ------------------------------------------------------------------

@pytest.mark.parametrize("name, problem", [
    ("missing.mp4", "no such file"),
    ("zero.mp4", "empty file (0 bytes)"),
    ("text.mp4", "not a video file"),
    ("truncated.mp4", "truncated"),
    ("tiny.png", "20x20"),
    ("zero.png", "empty file (0 bytes)"),
])
def test_bad_input_file_is_refused_in_one_line(clips, run_cli, tmp_path, name, problem):
    path = os.path.join(clips["root"], name)
    proc = run_cli("extract", path, "--out", tmp_path / "faces", timeout_s=300)
    refused(proc, path, problem)
    nothing_published(tmp_path / "faces")


def test_unknown_bucket_is_refused(s3_env, clips, run_cli, tmp_path):
    proc = run_cli("extract", clips["a"], "--out", "s3://no-such-bucket-faceswap/faces", timeout_s=300)
    refused(proc, "s3://no-such-bucket-faceswap/faces", "bucket 'no-such-bucket-faceswap' does not exist")
    proc = run_cli("extract", "s3://no-such-bucket-faceswap/a.mp4", "--out", tmp_path / "faces", timeout_s=300)
    refused(proc, "s3://no-such-bucket-faceswap/a.mp4", "does not exist")
    nothing_published(tmp_path / "faces")


def test_wrong_credentials_are_refused_without_showing_them(s3_env, s3_bucket, clips, run_cli):
    wrong = "wrong-secret-5d2e9a"
    proc = run_cli("extract", clips["a"], "--out", f"s3://{s3_bucket}/faces", env={"AWS_SECRET_ACCESS_KEY": wrong},
                   timeout_s=300)
    line = refused(proc, f"s3://{s3_bucket}/faces", "access denied")
    assert wrong not in proc.stderr + proc.stdout and s3_env["AWS_SECRET_ACCESS_KEY"] not in line
    assert Store(f"s3://{s3_bucket}").list() == []


def test_run_config_with_unknown_keys_is_refused(clips, run_cli, tmp_path):
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(f"footage: [{clips['a']}]\ntarget: [{clips['a']}]\nwork: {tmp_path / 'work'}\n"
                   f"output: {tmp_path / 'out.mp4'}\nextract: {{shard_frame: 10}}\n")
    refused(run_cli("run", "--config", cfg, timeout_s=300), str(cfg), "unknown key shard_frame")
    cfg.write_text(f"footage: [{clips['a']}]\ntarget: [{clips['a']}]\nwork: {tmp_path / 'work'}\n"
                   f"output: {tmp_path / 'out.mp4'}\nsteps: 10\n")
    refused(run_cli("run", "--config", cfg, timeout_s=300), str(cfg), "unknown key steps")
    assert not (tmp_path / "work").exists() and not (tmp_path / "out.mp4").exists()


def _faceset_for(video: str, root: str, shard_id: str | None = None) -> str:
    """A face-set manifest that names ``video`` (records are not read before the model is checked)."""
    from faceswap.video.shards import source_id

    store = Store(root)
    src = source_id(video)
    store.write_json("manifest.json", {
        "version": 1, "kind": "faceset", "settings": {"size": 256, "centering": "face"},
        "inputs": [{"kind": "video", "uri": video, "source": src, "frames": 100}],
        "shards": [{"id": shard_id or f"{src}-00000", "source": src, "uri": video, "start": 0, "stop": 100,
                    "faces": 1}]})
    return store.uri


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


@pytest.mark.parametrize("kind", ["garbage", "pickle-with-code"])
def test_bad_model_file_is_refused_by_convert(clips, run_cli, tmp_path, kind):
    from faceswap.model.export import CONFIG_KEY, MODEL_KEY, fingerprint

    model = random_model(str(tmp_path / "model"))
    _Evil.marker = str(tmp_path / "pwned")
    payload = os.urandom(4096) if kind == "garbage" else pickle.dumps({"encoder.weight": _Evil()})
    model.write_bytes(MODEL_KEY, payload)
    config = model.read_json(CONFIG_KEY)
    config["fingerprint"] = fingerprint(payload)  # the file matches its config: only the loader can refuse it
    model.write_json(CONFIG_KEY, config)
    faces = _faceset_for(clips["a"], str(tmp_path / "faces"))
    out = tmp_path / "out.mp4"
    proc = run_cli("convert", clips["a"], "--faces", faces, "--model", model.uri, "--out", out, timeout_s=300)
    refused(proc, model.url(MODEL_KEY), "not a valid faceswap weights file")
    assert not os.path.exists(_Evil.marker), "the pickle's code ran"
    assert not out.exists() and not (tmp_path / "out.mp4.work" / "segments").exists()


def test_path_traversal_in_alignment_records_is_refused(clips, run_cli, tmp_path):
    # Convert: a shard id that climbs out of the face set.
    model = random_model(str(tmp_path / "model"))
    faces = _faceset_for(clips["a"], str(tmp_path / "faces"), shard_id="../../escape")
    out = tmp_path / "out.mp4"
    proc = run_cli("convert", clips["a"], "--faces", faces, "--model", model.uri, "--out", out, timeout_s=300)
    refused(proc, "../../escape", "'..'")
    assert not out.exists()

    # Train: a crop key that climbs out of the face set (the file it names exists).
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from test_model import build_faceset

    a = build_faceset(str(tmp_path / "a"), "a", n=4)
    b = build_faceset(str(tmp_path / "b"), "b", n=4)
    (key,) = a.list("alignments", ".parquet")
    table = a.read_parquet(key)
    crops = table.column("crop").to_pylist()
    crops[1] = "../b/" + b.list("faces")[0]
    table = table.set_column(table.schema.get_field_index("crop"), "crop", pa.array(crops, pa.string()))
    a.write_parquet(key, table)
    proc = run_cli("train", "--a", a.uri, "--b", b.uri, "--out", tmp_path / "m", "--steps", "2", timeout_s=300)
    refused(proc, a.url(key), "unsafe crop key '../b/")
    nothing_published(tmp_path / "m")


# -- refused after looking at the frames ------------------------------------------------------

def test_video_without_faces_and_photos_without_a_usable_face(ray_local, clips, run_cli, tmp_path):
    proc = run_cli("extract", clips["plain.mp4"], "--out", tmp_path / "f1", env=ray_env(ray_local), timeout_s=600)
    refused(proc, clips["plain.mp4"], "no faces found", after_ray=True)
    nothing_published(tmp_path / "f1")
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "wall.png"), np.full((200, 200, 3), 200, np.uint8))
    cv2.imwrite(str(photos / "noise.jpg"), np.random.default_rng(0).integers(0, 255, (160, 200, 3), np.uint8))
    proc = run_cli("extract", photos, "--out", tmp_path / "f2", env=ray_env(ray_local), timeout_s=600)
    refused(proc, str(photos), "no usable face", after_ray=True)
    nothing_published(tmp_path / "f2")


# -- handled ------------------------------------------------------------------------------------

def _rows(out) -> list[dict]:
    store = Store(str(out))
    tables = [store.read_parquet(k) for k in store.list("alignments", ".parquet")]
    return sorted(pa.concat_tables(tables).to_pylist(), key=lambda r: (r["frame"], r["face"]))


def test_rotated_video_is_extracted_upright(ray_local, clips, run_cli, tmp_path):
    proc = run_cli("extract", clips["rotated.mp4"], clips["a"], "--out", tmp_path / "faces",
                   env=ray_env(ray_local), timeout_s=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = Store(str(tmp_path / "faces")).read_json("manifest.json")
    rotated = next(i for i in manifest["inputs"] if i["uri"] == clips["rotated.mp4"])
    upright = next(i for i in manifest["inputs"] if i["uri"] == clips["a"])
    assert (rotated["width"], rotated["height"], rotated["frames"]) == (384, 288, FEW)
    rows = _rows(tmp_path / "faces")
    got = {r["frame"]: np.reshape(r["landmarks"], (68, 2)) for r in rows if r["source"] == rotated["source"]}
    ref = {r["frame"]: np.reshape(r["landmarks"], (68, 2)) for r in rows if r["source"] == upright["source"]}
    assert sorted(got) == list(range(FEW)), "a face in every frame"
    for frame, pts in got.items():
        eyes, mouth = pts[36:48].mean(0), pts[48:68].mean(0)
        assert eyes[1] < mouth[1] - 20, "eyes above the mouth: the face is upright"
        assert np.all((pts >= 0) & (pts < [384, 288])), "landmarks inside the displayed frame"
        # Same place as in the unrotated original (a re-encode apart).
        assert np.abs(pts - ref[frame]).mean() < 3.0, np.abs(pts - ref[frame]).mean()


def test_variable_frame_rate_video_is_extracted(ray_local, clips, run_cli, tmp_path):
    proc = run_cli("extract", clips["vfr.mp4"], "--out", tmp_path / "faces", env=ray_env(ray_local), timeout_s=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = Store(str(tmp_path / "faces")).read_json("manifest.json")
    assert manifest["inputs"][0]["frames"] == 2 * FEW
    rows = _rows(tmp_path / "faces")
    assert [r["frame"] for r in rows] == list(range(2 * FEW)), "one face per frame, every frame"
    times = [r["timestamp_s"] for r in rows]
    steps = np.diff(times)
    assert np.all(steps > 0) and steps[:7].mean() == pytest.approx(2 * steps[8:].mean(), rel=0.1), steps


def test_video_without_audio_is_extracted_and_converted(ray_local, clips, run_cli, tmp_path):
    from faceswap.samples import read_barcode
    from faceswap.video.decode import iter_frames
    from faceswap.video.probe import probe

    env = ray_env(ray_local)
    proc = run_cli("extract", clips["silent.mp4"], "--out", tmp_path / "faces", env=env, timeout_s=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = random_model(str(tmp_path / "model"))
    out = tmp_path / "swapped.mp4"
    proc = run_cli("convert", clips["silent.mp4"], "--faces", tmp_path / "faces", "--model", model.uri,
                   "--out", out, "--lossless", env=env, timeout_s=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = probe(str(out))
    assert info.frames == FEW and not info.has_audio and (info.width, info.height) == (384, 288)
    assert [read_barcode(rgb) for _, _, rgb in iter_frames(str(out), 0, FEW)] == list(range(FEW))
    summary = json.loads(Store(str(tmp_path / "swapped.mp4.work")).read_text(
        Store(str(tmp_path / "swapped.mp4.work")).list("summaries")[0]))
    assert summary["swapped_frames"] == FEW
