"""Extract stage on the sample clips: recall, identity filter, landmark accuracy, resume, s3, bad inputs."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pyarrow as pa
import pytest

from faceswap.config import ExtractConfig
from faceswap.errors import InputError
from faceswap.faces import align
from faceswap.faces.backend import make_backend
from faceswap.faceset import FaceSet, alignment_schema
from faceswap.stages.extract import ExtractShard, run_extract
from faceswap.stages.extract_plan import ExtractShardSpec
from faceswap.storage import Store, check_key


def _cfg(inputs, out, **kw) -> ExtractConfig:
    kw.setdefault("shard_frames", 50)  # two shards per 100-frame sample clip
    kw.setdefault("workers", 2)
    return ExtractConfig(inputs=[str(i) for i in inputs], out=str(out), **kw)


def _records(store: Store) -> list[dict]:
    keys = store.list("alignments", ".parquet")
    tables = [store.read_parquet(k) for k in keys]
    for t in tables:
        assert t.schema.metadata[b"faceswap.schema"] == b"1"
        assert t.schema.remove_metadata().equals(alignment_schema().remove_metadata())
    rows = pa.concat_tables(tables).to_pylist() if tables else []
    return sorted(rows, key=lambda r: (r["shard"], r["frame"], r["face"]))


def _faces_per_frame(rows, frames):
    counts = np.zeros(frames, int)
    for r in rows:
        counts[r["frame"]] += 1
    return counts


@pytest.fixture(scope="module")
def clip(samples_dir):
    return {name: os.path.join(samples_dir, name) for name in
            ("a_small.mp4", "a_bystander_small.mp4", "b_small.mp4", "refs/a.png", "refs/b.png")}


@pytest.fixture(scope="module")
def target_run(ray_local, clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("faceset_a")
    summary = run_extract(_cfg([clip["a_small.mp4"]], out), progress=False)
    return out, summary


def test_target_found_in_every_frame_with_crops_and_manifest(target_run, clip):
    out, summary = target_run
    store = Store(str(out))
    rows = _records(store)
    assert summary["frames"] == 100 and summary["shards"] == 2 and summary["failed_frames"] == 0
    assert summary["faces"] == len(rows)
    counts = _faces_per_frame(rows, 100)
    assert (counts >= 1).mean() >= 0.99, counts
    assert (counts <= 1).all(), "one person in the clip, one face per frame"
    for r in rows[::17]:
        check_key(r["crop"])
        assert r["crop"].endswith(".jpg") and r["size"] == 256  # the default crop format
        crop = cv2.imdecode(np.frombuffer(store.read_bytes(r["crop"]), np.uint8), cv2.IMREAD_COLOR)
        assert crop.shape == (256, 256, 3)
        assert r["identity_distance"] is None
    src = rows[0]["source"]
    manifest = store.read_json("manifest.json")
    assert {r["shard"] for r in rows} == {s["id"] for s in manifest["shards"]}
    assert [s["id"][:-9] for s in manifest["shards"]] == [f"{src}-00000", f"{src}-00001"]  # + a settings hash
    assert manifest["version"] == 1 and manifest["kind"] == "faceset"
    assert [(s["start"], s["stop"]) for s in manifest["shards"]] == [(0, 50), (50, 100)]
    assert sum(s["faces"] for s in manifest["shards"]) == len(rows)
    assert manifest["inputs"][0]["uri"] == clip["a_small.mp4"] and manifest["inputs"][0]["frames"] == 100
    assert manifest["settings"]["detect_every"] == 16 and manifest["counts"]["faces"] == len(rows)


def test_tracked_landmarks_match_full_detection_on_every_frame(target_run, clip):
    from faceswap.video.decode import iter_frames

    out, _ = target_run
    by_frame = {r["frame"]: np.asarray(r["landmarks"], np.float32).reshape(68, 2) for r in _records(Store(str(out)))}
    backend = make_backend("dlib")
    errors = []
    for index, _, rgb in iter_frames(clip["a_small.mp4"], 0, 100):
        boxes = backend.detect(rgb)
        if not boxes or index not in by_frame:
            continue
        ref = backend.landmarks(rgb, boxes[:1])[0][0]
        errors.append(np.linalg.norm(by_frame[index] - ref, axis=1).mean() / align.inter_ocular(ref))
    assert len(errors) >= 95
    assert max(errors) < 0.03, f"max {max(errors):.4f}, mean {np.mean(errors):.4f} of the inter-ocular distance"


def test_identity_filter_keeps_the_target_and_drops_the_bystander(ray_local, clip, tmp_path):
    with_id = _records_of(_cfg([clip["a_bystander_small.mp4"]], tmp_path / "with", identity=[clip["refs/a.png"]]))
    without = _records_of(_cfg([clip["a_bystander_small.mp4"]], tmp_path / "without"))
    counts_with, counts_without = _faces_per_frame(with_id, 100), _faces_per_frame(without, 100)
    assert (counts_with == 1).mean() >= 0.99, counts_with
    assert (counts_without == 2).mean() >= 0.99, counts_without
    assert all(r["identity_distance"] < 0.6 for r in with_id)
    # The kept face is the target: it sits where the target sits in the run without the filter.
    centres = {(r["frame"], round(r["bbox"][0] / 20)) for r in without}
    assert all((r["frame"], round(r["bbox"][0] / 20)) in centres for r in with_id)


def _records_of(cfg):
    run_extract(cfg, progress=False)
    return _records(Store(cfg.out))


def test_rerun_skips_finished_shards_with_identical_records(ray_local, target_run, clip):
    out, _ = target_run
    store = Store(str(out))
    before = _records(store)
    again = run_extract(_cfg([clip["a_small.mp4"]], out), progress=False)
    assert again["shards_skipped"] == 2 and again["faces"] == len(before)
    victim = store.list("alignments", ".parquet")[1]
    store.delete(victim)  # as if the run had died during the second shard
    resumed = run_extract(_cfg([clip["a_small.mp4"]], out), progress=False)
    assert resumed["shards_skipped"] == 1
    assert _records(store) == before


def test_a_rerun_with_other_settings_redoes_the_shards_instead_of_reusing_them(ray_local, clip, tmp_path):
    out, video = tmp_path / "set", clip["a_small.mp4"]  # only the target, who is not b
    with pytest.raises(InputError, match="no faces found matching --identity"):  # the wrong person's photo
        run_extract(_cfg([video], out, identity=[clip["refs/b.png"]]), progress=False)
    with pytest.raises(InputError, match="unfinished extract"):  # nothing published: train refuses it
        FaceSet(str(out))
    fixed = run_extract(_cfg([video], out, identity=[clip["refs/a.png"]]), progress=False)
    assert fixed["shards_skipped"] == 0 and fixed["faces"] >= 99
    smaller = run_extract(_cfg([video], out, identity=[clip["refs/a.png"]], size=128), progress=False)
    assert smaller["shards_skipped"] == 0 and smaller["faces"] == fixed["faces"]
    records, info = FaceSet(str(out)).training_records()  # the manifest's shards only, not the earlier runs' files
    assert info.crop_size == 128 and len(records) == fixed["faces"]
    assert run_extract(_cfg([video], out, identity=[clip["refs/a.png"]], size=128), progress=False)["shards_skipped"] == 2


def test_a_shard_gives_the_same_records_and_crops_with_and_without_worker_threads(ray_local, clip, tmp_path):
    from faceswap.raycluster import usable_cores

    if usable_cores() < 2:
        pytest.skip("the decode-ahead and crop-writer threads need a second core")
    spec = ExtractShardSpec(id="a-0", kind="video", source="a", uri=clip["a_small.mp4"], start=10, stop=60)
    stores = {}
    for overlap in (True, False):  # threads where a core is free; inline on one core
        cfg = _cfg([clip["a_small.mp4"]], tmp_path / f"overlap_{overlap}")
        worker = ExtractShard(cfg, overlap=overlap)
        assert worker.overlap is overlap
        assert worker.process(spec)["status"] == "ok"
        stores[overlap] = Store(cfg.out)
    threaded, inline = (_records(stores[k]) for k in (True, False))
    assert [r["frame"] for r in threaded] == list(range(10, 60)) and threaded == inline
    for r in threaded[::10]:
        assert stores[True].read_bytes(r["crop"]) == stores[False].read_bytes(r["crop"])


class _Misfitting:
    """A real tracker whose landmark fit goes wrong on some frames, as dlib's does now and then: 1.3x the
    face on ``too_large``, nothing at all on ``missed``."""

    def __init__(self, tracker, too_large: set[int], missed: set[int]):
        self.tracker, self.too_large, self.missed = tracker, too_large, missed

    def __getattr__(self, name):
        return getattr(self.tracker, name)

    def update(self, rgb, tag=None):
        from faceswap.faces.types import Face

        faces = self.tracker.update(rgb, tag)
        if tag[0] in self.missed:
            return []
        if tag[0] in self.too_large:
            centre = faces[0].landmarks.mean(0)
            return [Face(faces[0].bbox, (faces[0].landmarks - centre) * 1.3 + centre, faces[0].score, faces[0].track)]
        return faces


def test_a_wrong_fit_is_replaced_and_a_missed_frame_filled_each_with_its_own_crop_cut_once(ray_local, clip, tmp_path,
                                                                                         monkeypatch):
    from faceswap.faces.crop_writer import CropWriter

    spec = ExtractShardSpec(id="a-0", kind="video", source="a", uri=clip["a_small.mp4"], start=0, stop=50)
    runs, submitted, submit = {}, [], CropWriter.submit
    monkeypatch.setattr(CropWriter, "submit", lambda self, key, *a: submitted.append(key) or submit(self, key, *a))
    for name, clean, wrong in (("clean", True, False), ("repaired", True, True), ("raw", False, True)):
        cfg = _cfg([clip["a_small.mp4"]], tmp_path / name, clean_tracks=clean)
        worker = ExtractShard(cfg, overlap=False)
        if wrong:
            made = worker._tracker
            worker._tracker = lambda: _Misfitting(made(), too_large={20, 21}, missed={35})
        submitted.clear()
        assert worker.process(spec)["status"] == "ok"
        store = Store(cfg.out)
        runs[name] = store, {r["frame"]: r for r in _records(store)}
        assert sorted(submitted) == sorted(r["crop"] for r in runs[name][1].values())  # each crop written once
    clean_store, clean = runs["clean"]
    eye = align.inter_ocular(np.asarray(clean[20]["landmarks"]).reshape(68, 2))

    def error(rows, frame):
        return np.linalg.norm(np.subtract(rows[frame]["landmarks"], clean[frame]["landmarks"]).reshape(68, 2),
                              axis=1).mean() / eye

    def crop(store, row):
        return cv2.imdecode(np.frombuffer(store.read_bytes(row["crop"]), np.uint8), cv2.IMREAD_COLOR).astype(float)

    raw_store, raw = runs["raw"]
    assert 35 not in raw and error(raw, 20) > 0.2  # --no-clean-tracks keeps what the landmark model gave
    store, repaired = runs["repaired"]
    assert sorted(repaired) == list(range(50)) == sorted(clean)
    for frame in (20, 21, 35):
        assert error(repaired, frame) < 0.05, frame
        # the crop is cut again at the repaired alignment: it matches the clean run's, not the wrong fit's
        assert np.abs(crop(store, repaired[frame]) - crop(clean_store, clean[frame])).mean() < 4, frame
    assert np.abs(crop(raw_store, raw[20]) - crop(clean_store, clean[20])).mean() > 15
    filled = repaired[35]
    assert filled["crop"] == f"faces/a-0/00000035_{filled['face']:02d}.jpg" and filled["frame"] == 35
    assert filled["timestamp_s"] == pytest.approx(clean[35]["timestamp_s"])
    # its box: a neighbour's, moved with the face (the tracker's boxes come from re-checks or predictions)
    assert min(np.abs(np.subtract(filled["bbox"], repaired[f]["bbox"])).max() for f in (34, 36)) < 0.1 * eye
    for frame in set(range(50)) - {20, 21, 35}:  # every other fit: the tracker's, steadied
        assert error(repaired, frame) < 0.05 and error(raw, frame) < 0.05, frame


def test_s3_store_gives_the_same_records_as_a_local_one(ray_local, target_run, clip, s3_store):
    out, _ = target_run
    run_extract(_cfg([clip["a_small.mp4"]], s3_store.uri), progress=False)
    assert _records(s3_store) == _records(Store(str(out)))
    assert s3_store.read_json("manifest.json")["counts"] == Store(str(out)).read_json("manifest.json")["counts"]


def test_photos_are_extracted_in_shards(ray_local, clip, tmp_path):
    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    for name, where in (("a.png", photos), ("b.png", photos / "more")):  # subfolders are read too
        (where / name).write_bytes(open(clip[f"refs/{name}"], "rb").read())
    summary = run_extract(_cfg([photos, photos / "a.png"], tmp_path / "out"), progress=False)  # a.png twice
    rows = _records(Store(str(tmp_path / "out")))
    assert summary["frames"] == 2 and [(r["frame"], r["face"]) for r in rows] == [(0, 0), (1, 0)]
    assert Store(str(tmp_path / "out")).read_json("manifest.json")["inputs"][0]["uri"] == str(photos)


def test_bad_inputs_fail_fast_naming_the_file(clip, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=f"{tmp_path}/missing.mp4: no such file"):
        run_extract(_cfg([clip["a_small.mp4"], tmp_path / "missing.mp4"], out), progress=False)
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(InputError, match=str(fake)):
        run_extract(_cfg([fake], out), progress=False)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(InputError, match=f"{broken}: not a readable image"):
        run_extract(_cfg([broken], out), progress=False)
    assert not out.exists(), "nothing is written before the inputs are checked"
    with pytest.raises(InputError, match="not a readable image"):
        run_extract(_cfg([clip["a_small.mp4"]], out, identity=[str(broken)]), progress=False)


def test_keep_going_lists_bad_inputs_and_faceless_sources(ray_local, clip, tmp_path):
    from faceswap.video.encode import SegmentWriter

    empty = tmp_path / "empty.mp4"
    with SegmentWriter(empty, 160, 120, 25) as writer:
        for i in range(30):
            writer.write(np.full((120, 160, 3), 40 + i, np.uint8))
    with pytest.raises(InputError, match=f"{empty}: no faces found"):
        run_extract(_cfg([empty], tmp_path / "o1"), progress=False)
    blank = tmp_path / "blank"
    blank.mkdir()
    import cv2

    cv2.imwrite(str(blank / "wall.png"), np.full((100, 100, 3), 200, np.uint8))
    with pytest.raises(InputError, match=f"{blank}: no usable face"):
        run_extract(_cfg([blank], tmp_path / "o2"), progress=False)
    summary = run_extract(_cfg([clip["b_small.mp4"], tmp_path / "missing.mp4", empty], tmp_path / "o3",
                               keep_going=True), progress=False)
    errors = " | ".join(b["error"] for b in summary["bad_inputs"])
    assert "missing.mp4: no such file" in errors and f"{empty}: no faces found" in errors
    assert summary["faces"] >= 99
    listed = Store(str(tmp_path / "o3")).read_json("manifest.json")["bad_inputs"]
    assert len(listed) == 2


def test_a_failed_shard_fails_the_run_unless_keep_going(ray_local, clip, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # A file where the crops' folder must go: every crop write fails inside the actors.
    (out / "faces").write_text("in the way")
    with pytest.raises(InputError, match=rf"{clip['b_small.mp4']}: shard .* failed: .*; 2 of 2 shards failed"):
        run_extract(_cfg([clip["b_small.mp4"]], out), progress=False)
    summary = run_extract(_cfg([clip["b_small.mp4"]], out, keep_going=True), progress=False)
    assert len(summary["shards_failed"]) == 2 and summary["faces"] == 0
    assert not (out / "manifest.json").exists() and not list((out / "alignments").glob("*.parquet"))
