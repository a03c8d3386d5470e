"""Model, augmentation, losses, the face-set stream and the final model folder.

``build_faceset`` makes small real face sets (astronaut = A, Grace Hopper = B)
in the extract layout; test_train.py and benchmarks/train.py use it too.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import pickle

import cv2
import numpy as np
import pyarrow as pa
import pytest
import torch

from faceswap.errors import InputError
from faceswap.model.augment import AugmentConfig, augment
from faceswap.model.autoencoder import PRESETS, FaceSwapModel, preset
from faceswap.faceset import FaceSet
from faceswap.model.dataset import FaceStream
from faceswap.model.export import MODEL_KEY, load_swapper, write_model
from faceswap.model.losses import reconstruction_loss, ssim_map
from faceswap.storage import Store

SOURCES = {"a": "astronaut", "b": "grace_hopper"}


@functools.lru_cache(maxsize=2)
def _source(identity: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, (68, 2) dlib landmarks) of the sample face for identity 'a' or 'b'."""
    import dlib

    if identity == "a":
        import skimage.data

        rgb = skimage.data.astronaut()
    else:
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    models = os.path.join(os.path.dirname(importlib.util.find_spec("face_recognition_models").origin), "models")
    box = max(dlib.get_frontal_face_detector()(rgb, 1), key=lambda r: r.area())
    shape = dlib.shape_predictor(os.path.join(models, "shape_predictor_68_face_landmarks.dat"))(rgb, box)
    return rgb, np.array([[p.x, p.y] for p in shape.parts()], np.float64)


def _align(pts: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) source->crop similarity putting eyes and mouth at fixed places ("face" centering)."""
    src = np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[48:60].mean(0)])
    dst = np.array([[0.34, 0.40], [0.66, 0.40], [0.50, 0.76]]) * size
    m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32))
    return m


def build_faceset(uri: str, identity: str, n: int = 24, size: int = 128, seed: int = 0) -> Store:
    """Write a face set of ``n`` jittered crops of one sample face in the extract layout."""
    rgb, pts = _source(identity)
    source = SOURCES[identity]
    rng = np.random.default_rng(seed + (0 if identity == "a" else 1000))
    store = Store(uri)
    rows = {k: [] for k in ("source", "shard", "frame", "timestamp_s", "face", "bbox", "landmarks", "matrix",
                            "size", "identity_distance", "crop", "score")}
    h, w = rgb.shape[:2]
    for i in range(n):
        # A slightly different "frame": shift, rotation, zoom and brightness of the whole photo ...
        centre = pts.mean(0)
        jitter = cv2.getRotationMatrix2D(tuple(centre), rng.uniform(-6, 6), rng.uniform(0.95, 1.05))
        jitter[:, 2] += rng.uniform(-5, 5, 2)
        frame = cv2.warpAffine(rgb, jitter, (w, h), borderMode=cv2.BORDER_REFLECT)
        frame = np.clip(frame.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
        lms = pts @ jitter[:, :2].T + jitter[:, 2]
        # ... aligned from landmarks with a little detector noise, like real footage.
        matrix = _align(lms + rng.normal(0, 1.0, lms.shape), size)
        crop = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
        key = f"faces/{source}/{i:08d}_00.png"
        store.write_bytes(key, cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))[1].tobytes())
        for k, v in (("source", source), ("shard", f"{source}-00000"), ("frame", i), ("timestamp_s", i / 25),
                     ("face", 0), ("bbox", [float(x) for x in (*lms.min(0), *lms.max(0))]),
                     ("landmarks", lms.astype(np.float32).ravel().tolist()), ("matrix", matrix.ravel().tolist()),
                     ("size", size), ("identity_distance", None), ("crop", key), ("score", 1.0)):
            rows[k].append(v)
    schema = pa.schema([("source", pa.string()), ("shard", pa.string()), ("frame", pa.int64()),
                        ("timestamp_s", pa.float64()), ("face", pa.int16()), ("bbox", pa.list_(pa.float32(), 4)),
                        ("landmarks", pa.list_(pa.float32(), 136)), ("matrix", pa.list_(pa.float64(), 6)),
                        ("size", pa.int32()), ("identity_distance", pa.float32()), ("crop", pa.string()),
                        ("score", pa.float32())], metadata={"faceswap.schema": "1"})
    store.write_parquet(f"alignments/{source}-00000.parquet", pa.table(rows, schema=schema))
    store.write_json("manifest.json", {"version": 1, "kind": "faceset",
                                       "settings": {"size": size, "centering": "face"},
                                       "shards": [{"id": f"{source}-00000", "source": source, "faces": n}],
                                       "counts": {"faces": n}})
    return store


@pytest.fixture(scope="module")
def facesets(tmp_path_factory):
    root = tmp_path_factory.mktemp("facesets")
    return (build_faceset(str(root / "a"), "a", n=12).uri, build_faceset(str(root / "b"), "b", n=12).uri)


# -- model ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_shapes(name):
    cfg = preset(name)
    model = FaceSwapModel(cfg)
    x = torch.rand(2, 3, cfg.size, cfg.size)
    code = model.encoder(x)
    assert code.shape == (2, cfg.decoder_dims[0], 2 * cfg.dense_side, 2 * cfg.dense_side)
    out_a, out_b = model(x, x)
    channels = 4 if cfg.learn_mask else 3
    assert out_a.shape == out_b.shape == (2, channels, cfg.size, cfg.size)
    assert 0 <= out_a.min() and out_a.max() <= 1
    assert model.swap(x, "a2b").shape == (2, channels, cfg.size, cfg.size)


def test_without_a_preset_training_picks_the_one_for_its_device():
    from faceswap.config import TrainConfig
    from faceswap.stages.train import resolve

    assert TrainConfig(a="a", b="b", out="o").preset == "auto"
    assert resolve(TrainConfig(a="a", b="b", out="o"))[0].preset == "lite"
    assert resolve(TrainConfig(a="a", b="b", out="o", gpu=True))[0].preset == "hd"
    assert resolve(TrainConfig(a="a", b="b", out="o", gpu=True, preset="hd256"))[0].size == 256
    assert resolve(TrainConfig(a="a", b="b", out="o", preset="original"))[0].preset == "original"


def test_crops_smaller_than_the_model_are_warned_of():
    from faceswap.faceset import FaceSetInfo
    from faceswap.stages.train import small_crop_warnings

    small, large = FaceSetInfo("s3://b/faces_a", 128, "face", 10), FaceSetInfo("s3://b/faces_b", 256, "face", 10)
    assert small_crop_warnings(preset("hd"), small, large) == []
    (line,) = small_crop_warnings(preset("hd256"), small, large)
    assert line.startswith("train: warning: s3://b/faces_a holds 128 px crops") and "--size 256" in line


MASKS = {"none": dict(learn_mask=False, mask_head=False), "4th channel": dict(learn_mask=True, mask_head=False),
         "own head": dict(learn_mask=True, mask_head=True)}


def test_a_mask_with_its_own_head_learns_without_changing_the_face():
    """A mask from its own head: its loss trains only the head, so the face the decoder paints is what it would be without."""
    from faceswap.model.losses import reconstruction_loss

    torch.manual_seed(0)
    model = FaceSwapModel(dataclasses.replace(preset("lite"), **MASKS["own head"]))
    x, hull = torch.rand(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    out_a, _ = model(x, x)
    mask_only = reconstruction_loss(out_a[:, :3].detach(), x, mask_pred=out_a[:, 3:4], mask_target=hull)
    mask_only.backward()
    moved = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert moved and all(n.startswith("decoder_a.mask.") for n in moved), sorted(moved)
    with pytest.raises(ValueError, match="mask_head needs learn_mask"):
        dataclasses.replace(preset("lite"), mask_head=True)


def test_encoder_is_shared_and_decoders_are_not():
    model = FaceSwapModel(preset("lite"))
    names = [n for n, _ in model.named_children()]
    assert names == ["encoder", "decoder_a", "decoder_b"]
    assert model.decoder_a is not model.decoder_b
    # Both sides' gradients land in the one encoder.
    x = torch.rand(2, 3, 64, 64)
    out_a, _ = model(x, torch.zeros_like(x))
    out_a.mean().backward()
    assert model.encoder.bottleneck.weight.grad.abs().sum() > 0
    assert model.decoder_b.out.weight.grad is None or model.decoder_b.out.weight.grad.abs().sum() == 0
    a2b = model.swap(x, "a2b")
    assert torch.allclose(a2b, model.decoder_b(model.encoder(x)))


def test_augment_keeps_target_clean_and_aux_aligned():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    aux = x[:, :2].clone()  # aux equal to two image channels must move exactly like the image
    cfg = dataclasses.replace(AugmentConfig(), brightness=0, contrast=0, saturation=0)
    inp, target, aux_out = augment(x, aux, cfg, gen)
    assert inp.shape == target.shape == x.shape and aux_out.shape == aux.shape
    assert torch.allclose(aux_out, target[:, :2], atol=1e-5)
    assert (inp - target).abs().mean() > 1e-3    # the input is warped, the target is not
    inp, target, aux_out = augment(x, aux, cfg, gen, warp=False)  # the clean phase: moved alike, not warped
    assert torch.equal(inp, target) and (target - x).abs().mean() > 1e-3
    assert torch.allclose(aux_out, target[:, :2], atol=1e-5)
    cfg = dataclasses.replace(AugmentConfig(), rotation_deg=0, scale=0, shift=0, flip=0, warp=0,
                              brightness=0, contrast=0, saturation=0)
    inp, target, _ = augment(x, None, cfg, gen)
    assert torch.allclose(target, x, atol=1e-5) and torch.allclose(inp, x, atol=1e-5)
    inp, target, _ = augment(x, None, dataclasses.replace(cfg, flip=1.0), gen)   # --flip 1: every one mirrored
    assert torch.allclose(target, x.flip(-1), atol=1e-5)


def test_ssim_and_loss():
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ssim_map(x, x), torch.ones(2, 1, 32, 32), atol=1e-4)
    assert reconstruction_loss(x, x).item() < 1e-4
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    base = reconstruction_loss(noisy, x)
    assert base > 0.05
    # Weighting the noisy half only raises the loss.
    noisy_half = x.clone()
    noisy_half[..., :16] = noisy[..., :16]
    weight = torch.ones(2, 1, 32, 32)
    weight[..., :16] = 5
    assert reconstruction_loss(noisy_half, x, weight) > reconstruction_loss(noisy_half, x)
    mask = torch.ones(2, 1, 32, 32)
    assert reconstruction_loss(x, x, None, torch.zeros_like(mask), mask).item() == pytest.approx(0.5, abs=1e-4)


def _tiny_run(facesets, precision) -> tuple[list[float], FaceSwapModel]:
    """40 steps of lite on the sample face sets in ``precision``: (the summed losses, the model)."""
    from faceswap.stages.train import Stepper, make_optimizer

    torch.manual_seed(0)
    model = FaceSwapModel(preset("lite")).to(memory_format=precision.memory_format)
    stepper = Stepper(model, model, make_optimizer(model, 1e-3), torch.device("cpu"), 0.0, seed=0,
                      precision=precision)
    stream_a, stream_b = FaceStream(facesets[0], 64, buffer=12), FaceStream(facesets[1], 64, buffer=12)
    try:
        losses = [sum(stepper.step(stepper.to_tensors(*stream_a.next_batch(8)),
                                   stepper.to_tensors(*stream_b.next_batch(8)), 1e-3)) for _ in range(40)]
    finally:
        stream_a.close()
        stream_b.close()
    return losses, model


def test_loss_falls_on_a_tiny_run_in_float32_and_in_bfloat16(facesets):
    """What --precision auto does on a CPU with AMX (this project's machines): the forward pass in bfloat16,
    channels-last weights. It learns as float32 does, and the weights it leaves are float32."""
    from faceswap.model.precision import Precision, training_precision

    fp32, _ = _tiny_run(facesets, training_precision("fp32", torch.device("cpu")))
    bf16, model = _tiny_run(facesets, Precision(torch.bfloat16, False, torch.channels_last))
    for losses in (fp32, bf16):
        assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert np.mean(bf16[-5:]) < 1.1 * np.mean(fp32[-5:]), (bf16, fp32)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_precision_auto_is_bfloat16_only_where_the_hardware_does_it_natively(monkeypatch):
    """Train's and convert's --precision: a CPU without AMX/AVX512-BF16 would emulate bfloat16, slower than
    float32, so auto stays float32 there."""
    from faceswap.model import precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.training_precision("auto", cpu).name == "bf16"
    assert precision.training_precision("fp32", cpu).name == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.training_precision("auto", cpu).name == "fp32"
    assert {precision.training_precision(c, cpu).memory_format for c in precision.CHOICES} == {torch.channels_last}
    # A GPU without bfloat16 (before Ampere) gets float16 with a gradient scaler; fp32 turns autocast off.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    old_gpu = precision.training_precision("auto", torch.device("cuda"))
    assert old_gpu.name == "fp16" and old_gpu.scaled
    assert precision.training_precision("fp32", torch.device("cuda")).name == "fp32"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32"):
        precision.training_precision("fp8", cpu)
    # Convert: bfloat16 on such a CPU only (GPUs run float32 until measured).
    assert precision.inference_precision("auto", cpu).name == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.inference_precision("auto", cpu).name == "bf16"
    assert precision.inference_precision("fp32", cpu).name == "fp32"
    assert precision.inference_precision("auto", torch.device("cuda")).name == "fp32"


# -- data ------------------------------------------------------------------------------------------

def test_stream_yields_resized_samples_and_disjoint_shards(facesets):
    records, info = FaceSet(facesets[0]).training_records()
    assert info.crop_size == 128 and info.centering == "face" and len(records) == 12
    # Landmarks in crop space lie inside the crop.
    pts = np.concatenate([r.landmarks for r in records])
    assert pts.min() > 0 and pts.max() < 128
    streams = [FaceStream(facesets[0], 64, rank=r, world=2, seed=3, buffer=4) for r in range(2)]
    try:
        images, maps = streams[0].next_batch(5)
        assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8
        assert maps.shape == (5, 64, 64, 3) and maps[..., 0].mean() > 50   # face hull covers much of the crop
        orders = [set(s._order(0)) for s in streams]
        assert not orders[0] & orders[1] and len(orders[0] | orders[1]) == 12
    finally:
        for s in streams:
            s.close()


def test_a_balanced_stream_splits_one_weighted_epoch_between_workers(facesets):
    """With --pose-balance each epoch is as many weighted draws as faces (a face may come twice), the
    same on every rank, and the workers take disjoint slices of it."""
    full = FaceStream(facesets[0], 64, seed=3, buffer=4, balance=1.0)
    halves = [FaceStream(facesets[0], 64, rank=r, world=2, seed=3, buffer=4, balance=1.0) for r in range(2)]
    try:
        for epoch in (0, 1):
            drawn = full._order(epoch)
            assert len(drawn) == 12 and sorted(halves[0]._order(epoch) + halves[1]._order(epoch)) == sorted(drawn)
        assert full._order(1) != full._order(2) and full.rarest_gain >= 1.0
        images, maps = halves[1].next_batch(3)
        assert images.shape == (3, 64, 64, 3) and maps.shape == (3, 64, 64, 3)
    finally:
        for stream in [full, *halves]:
            stream.close()


@pytest.mark.parametrize("rank, world", [(0, 1), (1, 4)])
def test_stream_order_is_the_same_with_and_without_the_decoded_cache(facesets, rank, world):
    """A set that fits the cache is served from it directly once every face is in it; the samples and their
    order are exactly those of the decode-every-time stream (same seed), over many epochs, also for a worker
    of several, whose slice of the set changes from epoch to epoch."""
    kw = dict(rank=rank, world=world, seed=5, buffer=4)
    cached, uncached = FaceStream(facesets[0], 64, **kw), FaceStream(facesets[0], 64, cache_mb=0, **kw)
    try:
        for _ in range(24):                        # 120 samples: 10 to 40 epochs of this worker
            (ia, ma), (ib, mb) = cached.next_batch(5), uncached.next_batch(5)
            np.testing.assert_array_equal(ia, ib)
            np.testing.assert_array_equal(ma, mb)
        assert cached._direct_epoch is not None and uncached._direct_epoch is None
    finally:
        cached.close()
        uncached.close()


def test_crop_key_with_dotdot_is_refused(tmp_path):
    store = build_faceset(str(tmp_path / "bad"), "a", n=2)
    table = store.read_parquet("alignments/astronaut-00000.parquet")
    crops = table.column("crop").to_pylist()
    crops[1] = "../../etc/passwd"
    table = table.set_column(table.schema.get_field_index("crop"), "crop", pa.array(crops))
    store.write_parquet("alignments/astronaut-00000.parquet", table)
    with pytest.raises(InputError, match=r"astronaut-00000.parquet: unsafe crop key '\.\./\.\./etc/passwd'"):
        FaceSet(store.uri).training_records()


def test_not_a_faceset(tmp_path):
    with pytest.raises(InputError, match="no manifest.json .not a face set"):
        FaceSet(str(tmp_path)).training_records()


def test_only_the_shards_the_manifest_names_are_read(tmp_path):
    store = build_faceset(str(tmp_path / "set"), "a", n=3)
    stray = build_faceset(str(tmp_path / "other"), "b", n=5)  # e.g. a run with other settings, same folder
    key = f"alignments/{SOURCES['b']}-00000.parquet"
    store.write_bytes(key, stray.read_bytes(key))
    records, info = FaceSet(store.uri).training_records()
    assert info.faces == 3 and all(r.crop.startswith(f"faces/{SOURCES['a']}/") for r in records)
    store.delete("manifest.json")  # an extract that failed before publishing the set
    with pytest.raises(InputError, match="no manifest.json .an unfinished extract"):
        FaceSet(store.uri).training_records()


# -- final model folder ----------------------------------------------------------------------------------

def _write_lite_model(uri: str, mask: str = "none") -> tuple[FaceSwapModel, str]:
    cfg = dataclasses.replace(preset("lite"), **MASKS[mask])
    torch.manual_seed(1)
    model = FaceSwapModel(cfg)
    fp = write_model(Store(uri), model.state_dict(), cfg, 128, "face", {"steps": 0})
    return model, fp


@pytest.mark.parametrize("mask", sorted(MASKS))
def test_load_swapper_round_trip(tmp_path, mask):
    model, fp = _write_lite_model(str(tmp_path), mask)
    swapper = load_swapper(str(tmp_path), precision="fp32")
    assert (swapper.size, swapper.crop_size, swapper.centering, swapper.fingerprint) == (64, 128, "face", fp)
    assert swapper.outlines == {}  # a model folder from before outlines were saved still loads
    crops = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    faces, masks = swapper.swap(crops, "a2b")
    assert faces.shape == crops.shape and faces.dtype == np.uint8
    with torch.no_grad():
        expected = model.eval().swap(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255, "a2b")
    expected_u8 = (expected[:, :3] * 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.abs(faces.astype(int) - expected_u8).max() <= 1
    if mask != "none":
        assert masks.shape == (5, 64, 64) and masks.dtype == np.float32
    else:
        assert masks is None
    b2a, _ = swapper.swap(crops, "b2a")
    assert not np.array_equal(b2a, faces)
    with pytest.raises(ValueError, match="uint8 crops of shape"):
        swapper.swap(crops[:, :32], "a2b")


def test_a_swapper_in_bfloat16_paints_what_float32_paints(tmp_path, monkeypatch):
    """convert's --precision auto on a CPU with AMX (forced here, so that any CPU runs the bfloat16 path):
    the faces and rebuilds come out within 2 levels of 255 of float32's, and a face's result still does not
    depend on what else is in its batch (a film is the same however it is cut)."""
    from faceswap.model import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    _write_lite_model(str(tmp_path))
    fast, exact = load_swapper(str(tmp_path)), load_swapper(str(tmp_path), precision="fp32")
    assert (fast.precision.name, exact.precision.name) == ("bf16", "fp32")
    crops = np.random.default_rng(1).integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    got, want = fast.swap_and_rebuild(crops, "b2a"), exact.swap_and_rebuild(crops, "b2a")
    for a, b in ((got[0], want[0]), (got[2], want[2])):
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.5, (diff.max(), diff.mean())
    alone = fast.swap_and_rebuild(crops[35:36], "b2a")
    assert np.array_equal(alone[0][0], got[0][35]) and np.array_equal(alone[2][0], got[2][35])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/faceswap-pwned",))


def test_model_file_with_code_or_garbage_is_refused(tmp_path):
    _write_lite_model(str(tmp_path))
    store = Store(str(tmp_path))
    store.write_bytes(MODEL_KEY, b"\x00garbage" * 100)
    with pytest.raises(InputError, match=r"model\.pt is not a valid faceswap weights file"):
        load_swapper(str(tmp_path))
    # A pickle with code in it, with a matching fingerprint so torch.load itself must refuse it.
    evil = pickle.dumps({"encoder.x": _Evil()})
    store.write_bytes(MODEL_KEY, evil)
    cfg = store.read_json("model/config.json")
    from faceswap.model.export import fingerprint

    cfg["fingerprint"] = fingerprint(evil)
    store.write_json("model/config.json", cfg)
    with pytest.raises(InputError, match=r"model\.pt is not a valid faceswap weights file"):
        load_swapper(str(tmp_path))
    assert not os.path.exists("/tmp/faceswap-pwned")


def test_train_takes_paths_relative_to_where_it_is_run(run_cli, tmp_path):
    # Ray Train's workers run in another working directory: the driver must resolve the paths.
    build_faceset(str(tmp_path / "faces_a"), "a", n=6)
    build_faceset(str(tmp_path / "faces_b"), "b", n=6)
    proc = run_cli("train", "--a", "faces_a", "--b", "faces_b", "--out", "model", "--steps", "2", "--batch-size", "2",
                   "--checkpoint-every", "2", "--preview-every", "2", timeout_s=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "model" / "model" / "model.pt").is_file()
    # On its own local Ray the terminal shows faceswap's training lines, not how Ray Train starts its workers.
    shown = proc.stdout + proc.stderr
    assert "train: step 2/2" in shown and "train: model" in shown
    for chatter in ("core_worker.cc", "Requesting resources", "worker group", "Setting up process group",
                    "Moving model to device", "Checkpoint successfully created"):
        assert chatter not in shown, shown[-3000:]
