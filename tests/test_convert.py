"""Convert and assemble: frame-exact films, untouched pixels outside the faces, sound in sync, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from faceswap.config import ConvertConfig, ExtractConfig, TrainConfig
from faceswap.samples import read_barcode


def decode_all(path: str) -> list[np.ndarray]:
    import av

    with av.open(path) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def trained(ray_local, samples_dir, tmp_path_factory):
    """A face set of the bystander clip (A only, by identity) and a tiny lite model."""
    from faceswap.stages.extract import run_extract
    from faceswap.stages.train import run_train

    root = tmp_path_factory.mktemp("convert")
    video = os.path.join(samples_dir, "a_bystander_small.mp4")
    faces_a, faces_b, model = (str(root / n) for n in ("faces_a", "faces_b", "model"))
    run_extract(ExtractConfig(inputs=[video], out=faces_a, identity=[os.path.join(samples_dir, "refs/a.png")]),
                progress=False)
    run_extract(ExtractConfig(inputs=[os.path.join(samples_dir, "b_small.mp4")], out=faces_b), progress=False)
    run_train(TrainConfig(a=faces_a, b=faces_b, out=model, steps=4, batch_size=4, checkpoint_every=4,
                          preview_every=4), progress=False)
    return {"video": video, "faces": faces_a, "model": model, "root": root}


def face_free_mask(faces_uri: str, frames: int, shape_hw) -> np.ndarray:
    """Per frame, True where no kept face's hull (plus a margin) lies: pixels that must not change."""
    from faceswap.faces.masks import erode, hull_mask
    from faceswap.storage import Store

    store = Store(faces_uri)
    keep = np.ones((frames, *shape_hw), bool)
    for key in store.list("alignments", suffix=".parquet"):
        for row in store.read_parquet(key).to_pylist():
            hull = hull_mask(np.asarray(row["landmarks"]).reshape(68, 2), shape_hw)
            keep[row["frame"]] &= erode(hull, -4) == 0
    return keep


def test_lossless_film_is_frame_exact_with_sound(trained, tmp_path):
    from faceswap.stages.convert import run_convert
    from faceswap.video.probe import probe

    out = str(tmp_path / "swapped.mp4")
    summary = run_convert(ConvertConfig(video=trained["video"], faces=trained["faces"], model=trained["model"],
                                        out=out, lossless=True, shard_frames=30), progress=False)
    src, dst = probe(trained["video"]), probe(out)
    assert dst.frames == src.frames == 100
    assert summary["segments"] >= 3 and summary["swapped_frames"] >= 99
    assert abs(dst.audio_duration_s - src.audio_duration_s) <= 1 / src.fps
    assert abs(dst.duration_s - src.duration_s) <= 1 / src.fps

    original, swapped = decode_all(trained["video"]), decode_all(out)
    assert [read_barcode(f) for f in swapped] == list(range(100))
    untouched = face_free_mask(trained["faces"], 100, original[0].shape[:2])
    for i in range(100):
        same = (original[i] == swapped[i]).all(axis=2)
        assert same[untouched[i]].all(), f"frame {i}: pixels outside the swapped face changed"
        assert not same.all(), f"frame {i}: the face was not swapped"


def test_bystander_is_never_touched(trained, tmp_path):
    """The face set holds only A (identity filter): the bystander's pixels stay as decoded."""
    from faceswap.stages.convert import run_convert
    from faceswap.storage import Store

    out = str(tmp_path / "swapped.mp4")
    run_convert(ConvertConfig(video=trained["video"], faces=trained["faces"], model=trained["model"], out=out,
                              lossless=True), progress=False)
    boxes = [r["bbox"] for k in Store(trained["faces"]).list("alignments", suffix=".parquet")
             for r in Store(trained["faces"]).read_parquet(k).to_pylist()]
    centre_x = np.mean([(b[0] + b[2]) / 2 for b in boxes])
    original, swapped = decode_all(trained["video"]), decode_all(out)
    width = original[0].shape[1]
    # A is on the left, the bystander on the right half of the frame.
    assert centre_x < width / 2
    for a, b in zip(original, swapped):
        assert (a[:, width // 2 + 20:] == b[:, width // 2 + 20:]).all()


def test_rerun_reuses_segments_and_assemble_alone(trained, tmp_path):
    from faceswap.stages.assemble import run_assemble
    from faceswap.stages.convert import run_convert

    out = str(tmp_path / "film.mp4")
    cfg = ConvertConfig(video=trained["video"], faces=trained["faces"], model=trained["model"], out=out,
                        lossless=True, shard_frames=50)
    first = run_convert(cfg, progress=False)
    second = run_convert(cfg, progress=False)
    assert first["segments_reused"] == 0 and second["segments_reused"] == second["segments"]
    again = str(tmp_path / "again.mp4")
    run_assemble(out + ".work", again)
    assert all((a == b).all() for a, b in zip(decode_all(out), decode_all(again)))


def test_killed_run_resumes_to_the_same_film(trained, tmp_path):
    out = str(tmp_path / "killed.mp4")
    args = [sys.executable, "-m", "faceswap.cli", "convert", trained["video"], "--faces", trained["faces"],
            "--model", trained["model"], "--out", out, "--lossless", "--shard-frames", "20", "--workers", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    seg_dir = out + ".work"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        segs = [f for _, _, files in os.walk(seg_dir) for f in files if f.endswith(".mkv")]
        if segs or proc.poll() is not None:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(out), "a killed run must not leave a film behind"
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "segments reused" in rerun.stdout
    reused = int(rerun.stdout.split("segments reused")[1].split()[0])
    assert reused >= 1

    clean = str(tmp_path / "clean.mp4")
    subprocess.run([*args[:10], clean, *args[11:]], check=True, capture_output=True, timeout=900)
    got, want = decode_all(out), decode_all(clean)
    assert len(got) == len(want) == 100
    assert all((a == b).all() for a, b in zip(got, want))


def test_convert_on_s3(trained, s3_store, tmp_path):
    """Inputs, model and output all through s3:// on SeaweedFS."""
    from faceswap.stages.convert import run_convert
    from faceswap.storage import Store

    def upload(local_root: str, prefix: str) -> str:
        for dirpath, _, files in os.walk(local_root):
            for name in files:
                path = os.path.join(dirpath, name)
                s3_store.put_file(path, f"{prefix}/{os.path.relpath(path, local_root)}")
        return s3_store.url(prefix)

    s3_store.put_file(trained["video"], "in/a_bystander_small.mp4")
    video = s3_store.url("in/a_bystander_small.mp4")
    faces = upload(trained["faces"], "faces")
    upload(os.path.join(trained["model"], "model"), "model/model")
    assert Store(s3_store.uri).exists("model/model/outlines.json")
    out = s3_store.url("out/swapped.mp4")
    run_convert(ConvertConfig(video=video, faces=faces, model=s3_store.url("model"), out=out, lossless=True),
                progress=False)
    assert Store(s3_store.uri).exists("out/swapped.mp4")
    local = s3_store.get_file("out/swapped.mp4", str(tmp_path / "back.mp4"))
    frames = decode_all(local)
    assert [read_barcode(f) for f in frames] == list(range(100))
    reference = str(tmp_path / "local.mp4")
    run_convert(ConvertConfig(video=trained["video"], faces=trained["faces"], model=trained["model"], out=reference,
                              lossless=True), progress=False)
    assert all((a == b).all() for a, b in zip(frames, decode_all(reference)))


def test_output_carries_provenance_metadata_and_label(trained, tmp_path):
    from faceswap.provenance.metadata import is_marked_by_metadata, read_tags
    from faceswap.stages.convert import run_convert

    out = str(tmp_path / "labelled.mp4")
    frames_out = str(tmp_path / "frames")
    summary = run_convert(ConvertConfig(video=trained["video"], faces=trained["faces"], model=trained["model"],
                                        out=out, label="AI-GENERATED", frames_out=frames_out), progress=False)
    tags = read_tags(out)
    assert is_marked_by_metadata(tags) and tags.get("faceswap_model") == summary["model_fingerprint"]
    pngs = sorted(os.listdir(os.path.join(frames_out, "frames")))
    assert pngs[0] == "00000000.png" and len(pngs) == 100


def test_bad_model_is_exit_2(trained, run_cli, tmp_path):
    bad = tmp_path / "bad_model" / "model"
    bad.mkdir(parents=True)
    (bad / "config.json").write_text(open(os.path.join(trained["model"], "model", "config.json")).read())
    (bad / "model.pt").write_bytes(b"not a weights file")
    out = tmp_path / "o.mp4"
    proc = run_cli("convert", trained["video"], "--faces", trained["faces"], "--model", tmp_path / "bad_model",
                   "--out", out)
    assert proc.returncode == 2, proc.stderr
    assert "model.pt" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_outputs_that_cannot_hold_the_film_are_refused_before_any_work(trained, tmp_path):
    import hashlib
    import shutil

    from faceswap.errors import InputError
    from faceswap.stages.convert import run_convert

    def convert(video, out, faces=trained["faces"]):
        run_convert(ConvertConfig(video=str(video), faces=faces, model=trained["model"], out=str(out)), progress=False)

    (tmp_path / "folder.mp4").mkdir()
    for out, problem in (("film.avi", "unsupported output format '.avi'"),  # no place for the provenance tags
                         ("film.gif", "unsupported output format '.gif'"), ("film", "unsupported output format 'no extension'"),
                         ("folder.mp4", "is a folder")):
        with pytest.raises(InputError, match=f"{tmp_path / out}: {problem}"):
            convert(trained["video"], tmp_path / out)
    copy = tmp_path / "footage.mp4"
    shutil.copy(trained["video"], copy)
    before = hashlib.sha1(copy.read_bytes()).hexdigest()
    with pytest.raises(InputError, match="is the input video"):
        convert(copy, copy)
    assert hashlib.sha1(copy.read_bytes()).hexdigest() == before
    with pytest.raises(InputError, match="this face set has no records for"):  # B's face set for A's video
        convert(trained["video"], tmp_path / "film.mp4", faces=str(trained["root"] / "faces_b"))
    assert not list(tmp_path.glob("film*"))


def test_the_face_set_of_a_video_is_found_by_its_content_not_its_name(trained, tmp_path):
    import shutil

    from faceswap.errors import InputError
    from faceswap.faceset import FaceSet
    from faceswap.video.probe import signature

    faceset = FaceSet(trained["faces"])
    source = faceset.inputs("video")[0]["source"]
    moved = tmp_path / "renamed.mp4"
    shutil.copy(trained["video"], moved)
    assert faceset.find_source(str(moved), 100, signature(moved)) == source
    other = os.path.join(os.path.dirname(trained["video"]), "a_small.mp4")  # same length, another film
    with pytest.raises(InputError, match="no records for"):
        faceset.find_source(other, 100, signature(other))
    with pytest.raises(InputError, match="another version of"):  # the same path, its content changed
        faceset.find_source(trained["video"], 100, "0" * 16)


def test_resume_does_not_depend_on_how_the_paths_are_spelled(trained, tmp_path, monkeypatch):
    """The same command with relative paths reuses every segment of the run with absolute ones."""
    from faceswap.stages.convert import run_convert

    out = tmp_path / "spelled" / "film.mp4"
    absolute = ConvertConfig(video=trained["video"], faces=trained["faces"], model=trained["model"], out=str(out),
                             lossless=True, shard_frames=50)
    first = run_convert(absolute, progress=False)
    monkeypatch.chdir(tmp_path)
    relative = ConvertConfig(video=os.path.relpath(trained["video"]), faces=os.path.relpath(trained["faces"]),
                             model=os.path.relpath(trained["model"]), out="spelled/film.mp4", lossless=True,
                             shard_frames=50)
    second = run_convert(relative, progress=False)
    assert first["segments_reused"] == 0 and second["segments_reused"] == second["segments"] == first["segments"]
    assert len(os.listdir(str(out) + ".work/segments")) == 1, "a second plan folder: the segments were redone"


def test_segments_marked_by_another_watermark_version_are_redone(trained, tmp_path, monkeypatch):
    """An upgrade that changes the mark's definition must not resume onto segments marked by the old one:
    their mark would not verify with the new code (found by `make demo` rerun on an old demo-out). The
    segments' folder is named by the plan's hash, so the mark's version must be in it (and only when the
    run marks at all)."""
    import dataclasses

    from faceswap.provenance import watermark
    from faceswap.stages.convert import PLAN_KEY, ConvertPlan, run_convert
    from faceswap.storage import Store

    out = str(tmp_path / "film.mp4")
    run_convert(ConvertConfig(video=trained["video"], faces=trained["faces"], model=trained["model"], out=out,
                              lossless=True, shard_frames=50), progress=False)
    plan = ConvertPlan.from_json(Store(out + ".work").read_text(PLAN_KEY))
    assert os.listdir(out + ".work/segments") == [plan.hash]
    unmarked = dataclasses.replace(plan, settings={**plan.settings, "watermark": False})
    before = plan.hash, unmarked.hash
    monkeypatch.setattr(watermark, "KEY", b"faceswap-provenance-next")
    assert plan.hash != before[0] and unmarked.hash == before[1]


def test_many_small_segments_render_the_film_one_segment_does(trained, tmp_path):
    """Smoothing reads beyond each segment's ends, so segment joins leave no step: 5-frame segments
    give, pixel for pixel, the film a single 100-frame segment gives."""
    from faceswap.stages.convert import run_convert

    films = {}
    for shard_frames in (5, 100):
        out = str(tmp_path / f"shards{shard_frames}.mp4")
        summary = run_convert(ConvertConfig(video=trained["video"], faces=trained["faces"], model=trained["model"],
                                            out=out, lossless=True, shard_frames=shard_frames, watermark=False),
                              progress=False)
        assert summary["segments"] == 100 // shard_frames
        films[shard_frames] = decode_all(out)
    for i, (a, b) in enumerate(zip(films[5], films[100])):
        assert (a == b).all(), f"frame {i} differs between 5-frame and 100-frame segments"


def test_a_frame_whose_face_was_not_extracted_is_still_swapped(trained, tmp_path):
    """A one-frame hole in a face track is filled, so the original face does not flash back;
    with --no-smooth the frame is left as decoded."""
    import shutil

    import pyarrow as pa

    from faceswap.faces.masks import hull_mask
    from faceswap.stages.convert import run_convert
    from faceswap.storage import Store

    faces = str(tmp_path / "faces")
    shutil.copytree(trained["faces"], faces)
    store, hole = Store(faces), 41
    for key in store.list("alignments", suffix=".parquet"):
        table = store.read_parquet(key)
        rows = table.to_pylist()
        if any(r["frame"] == hole for r in rows):
            truth = next(r for r in rows if r["frame"] == hole)
            store.write_parquet(key, pa.Table.from_pylist([r for r in rows if r["frame"] != hole], schema=table.schema))
    original = decode_all(trained["video"])[hole]
    face = hull_mask(np.asarray(truth["landmarks"]).reshape(68, 2), original.shape[:2]) > 0.5
    for smooth in (True, False):
        out = str(tmp_path / f"smooth{smooth}.mp4")
        run_convert(ConvertConfig(video=trained["video"], faces=faces, model=trained["model"], out=out,
                                  lossless=True, smooth=smooth), progress=False)
        frame = decode_all(out)[hole]
        change = np.abs(frame.astype(int) - original.astype(int))[face].mean()
        if smooth:
            assert change > 8, f"the hole at frame {hole} was not filled (mean change {change:.1f})"
        else:
            assert (frame == original).all()


def test_a_still_face_is_swapped_still_and_a_change_comes_through_at_once(trained, samples_dir, tmp_path):
    """Footage of a face that stands still but for sensor noise, then is lit brighter at once at frame 12, and
    a decoder that answers each small change of its input with a change of +-10 levels of its output (as a
    young model does where it saw few faces like these): with the steady face (the default) the swapped face
    changes less from frame to frame over the still frames than with --steady 0, and frame 11 comes out as
    it does without it (nothing of the brighter frames it looks ahead to leaks back into it)."""
    import hashlib

    from faceswap.config import normalized
    from faceswap.faces.masks import erode, hull_mask
    from faceswap.stages.convert import ConvertShard, check_inputs, make_plan
    from faceswap.stages.extract import run_extract
    from faceswap.storage import Store
    from faceswap.video.decode import iter_frames
    from faceswap.video.encode import SegmentWriter

    _, _, still = next(iter_frames(os.path.join(samples_dir, "a_small.mp4"), 0, 1))
    rng = np.random.default_rng(0)
    clip, faces = str(tmp_path / "still.mkv"), str(tmp_path / "faces")
    with SegmentWriter(clip, still.shape[1], still.shape[0], 25.0, lossless=True) as writer:
        for i in range(24):
            frame = still.astype(float) + rng.normal(0, 3, still.shape) + (40 if i >= 12 else 0)
            writer.write(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
    run_extract(ExtractConfig(inputs=[clip], out=faces), progress=False)

    def shimmering(swap):
        def swap_and_rebuild(crops, direction="a2b", rebuild=True):
            generated, masks, rebuilt = swap(crops, direction, rebuild)
            for k, crop in enumerate(crops):  # the same input gives the same output, as from any decoder
                seed = int.from_bytes(hashlib.sha256(crop.tobytes()).digest()[:8], "little")
                shake = np.random.default_rng(seed).choice([-10, 10], generated[k].shape)
                generated[k] = np.clip(generated[k].astype(int) + shake, 0, 255).astype(np.uint8)
            return generated, masks, rebuilt
        return swap_and_rebuild

    films = {}
    for steady in (0, 4):
        cfg = normalized(ConvertConfig(video=clip, faces=faces, model=trained["model"], out=str(tmp_path / "o.mp4"),
                                       work=str(tmp_path / f"work{steady}"), lossless=True, watermark=False,
                                       steady=steady))
        plan = make_plan(cfg, check_inputs(cfg), 1)
        shard = ConvertShard(plan.to_json())  # in this process, so its decoder can be made to shimmer
        shard.swapper.swap_and_rebuild = shimmering(shard.swapper.swap_and_rebuild)
        assert [(sh["start"], sh["stop"]) for sh in plan.shards] == [(0, 24)]
        shard.convert("s", 0, 24)
        segment = tmp_path / f"seg{steady}.mkv"
        segment.write_bytes(Store(plan.work).read_bytes(plan.segment_key("s")))
        films[steady] = np.stack(decode_all(str(segment))).astype(int)
    rows = [r for k in Store(faces).list("alignments", suffix=".parquet") for r in Store(faces).read_parquet(k).to_pylist()]
    inner = erode(hull_mask(np.asarray(rows[0]["landmarks"]).reshape(68, 2), still.shape[:2]), 6) > 0.5
    shimmer = {k: np.mean([np.abs(f[t] - f[t - 1])[inner].mean() for t in range(1, 9)]) for k, f in films.items()}
    assert shimmer[4] < 0.7 * shimmer[0], shimmer
    assert np.abs(films[4][11] - films[0][11])[inner].mean() < 0.5
