"""Training on Ray Train: 2 CPU workers on S3, kill-and-resume, refused checkpoints.

Small on purpose (lite preset, batch 4, a few steps): the CI machine has 2 cores.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from faceswap.config import TrainConfig
from faceswap.errors import ConfigError, InputError
from faceswap.model.export import MODEL_KEY, fingerprint, load_swapper
from faceswap.model.checkpoints import checkpoint_steps
from faceswap.model.precision import training_precision
from faceswap.stages.train import run_train
from faceswap.storage import Store

sys.path.insert(0, os.path.dirname(__file__))
from test_model import build_faceset  # noqa: E402


def _metrics(out: Store) -> list[dict]:
    return [json.loads(line) for line in out.read_text("metrics.jsonl").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def local_facesets(tmp_path_factory):
    root = tmp_path_factory.mktemp("facesets")
    return build_faceset(str(root / "a"), "a", n=8).uri, build_faceset(str(root / "b"), "b", n=8).uri


def test_two_workers_on_s3(ray_local, s3_store):
    a = build_faceset(s3_store.child("faces_a").uri, "a", n=8).uri
    b = build_faceset(s3_store.child("faces_b").uri, "b", n=8).uri
    out = s3_store.child("model_run")
    cfg = TrainConfig(a=a, b=b, out=out.uri, steps=6, batch_size=4, workers=2, checkpoint_every=3,
                      preview_every=3)
    summary = run_train(cfg, progress=False)

    assert summary["steps"] == 6 and summary["workers"] == 2 and summary["start_step"] == 0
    assert checkpoint_steps(out) == [3, 6]
    assert out.exists("checkpoints/step_0000006/checkpoint.pt")
    previews = out.list("previews", suffix=".png")
    assert previews == ["previews/latest.png", "previews/step_0000000.png", "previews/step_0000003.png",
                        "previews/step_0000006.png"]
    lines = _metrics(out)
    assert [m["step"] for m in lines] == [3, 6]
    assert {"step", "loss_a", "loss_b", "samples_per_s", "data_wait_share"} <= set(lines[0])
    assert all(m["samples_per_s"] > 0 and 0 <= m["data_wait_share"] <= 1 for m in lines)
    # By default the last quarter of the run is the clean phase: step 6 of 6 trained on unwarped inputs.
    assert summary["warp_until"] == 0.75 and [m["warp"] for m in lines] == [True, False]
    assert summary["hand_mask"] is True and summary["hand_faces_a"] == summary["hand_faces_b"] == 0  # no hands here
    # Mixed precision where the CPU does bfloat16 natively; the exported weights are plain float32 either way.
    assert summary["precision"] == training_precision("auto", torch.device("cpu")).name
    # The code critic trains by default, under DDP like the autoencoder.
    assert summary["code_critic"] == 0.01 and all(m["code_critic_loss"] > 0 for m in lines)
    weights = torch.load(io.BytesIO(out.read_bytes(MODEL_KEY)), weights_only=True)
    assert all(w.dtype == torch.float32 and w.is_contiguous() for w in weights.values() if w.is_floating_point())
    assert any("tfevents" in k for k in out.list("tensorboard"))
    config = out.read_json("model/config.json")
    assert config["fingerprint"] == fingerprint(out.read_bytes(MODEL_KEY)) == summary["fingerprint"]
    assert config["crop_size"] == 128 and config["centering"] == "face" and config["model"]["preset"] == "lite"
    swapper = load_swapper(out.uri)
    assert swapper.fingerprint == summary["fingerprint"] and swapper.size == 64
    # Each identity's face outlines travel with the model (convert's reach), in crop units.
    assert sorted(swapper.outlines) == ["a", "b"]
    assert all(o.shape == (8, 68, 2) and 0 < o.mean() < 1 for o in swapper.outlines.values())


@pytest.mark.parametrize("where, workers", [("local", 1), ("s3", 2)])
def test_kill_and_resume_continues_the_step_counter(ray_local, local_facesets, tmp_path, request, where, workers):
    """Kill the `faceswap train` driver after its first checkpoint, rerun: the step counter continues, and so
    do the adversarial phase's discriminators, the code critic and their optimisers, and the clean phase begins
    where it should. Also with two DDP workers and the model folder on SeaweedFS through s3://."""
    import torch

    out = Store(str(tmp_path / "model")) if where == "local" else request.getfixturevalue("s3_store").child("m")
    a, b = local_facesets
    args = ["train", "--a", a, "--b", b, "--out", out.uri, "--steps", "40", "--batch-size", "4",
            "--checkpoint-every", "10", "--preview-every", "5", "--workers", str(workers),
            "--gan-weight", "0.1", "--gan-start", "0", "--warp-until", "0.5", "--code-critic", "0.1"]
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    proc = subprocess.Popen([sys.executable, "-m", "faceswap.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not checkpoint_steps(out):
            assert proc.poll() is None, f"training exited with {proc.returncode} before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = max(checkpoint_steps(out))
    assert killed_at < 40 and not out.exists(MODEL_KEY)

    cfg = TrainConfig(a=a, b=b, out=out.uri, steps=40, batch_size=4, checkpoint_every=10, preview_every=5,
                      workers=workers, gan_weight=0.1, gan_start=0.0, warp_until=0.5, code_critic=0.1)
    summary = run_train(cfg, progress=False)
    assert summary["start_step"] >= killed_at >= 10 and summary["workers"] == workers, summary
    assert summary["resumed_from"].endswith("checkpoint.pt")
    lines = _metrics(out)
    steps = [m["step"] for m in lines]
    # Every metrics step once, in order: nothing restarted at 0, nothing from the killed run kept twice.
    assert steps == list(range(5, 41, 5)), steps
    assert all(m["gan_g"] > 0 and m["gan_d"] > 0 and m["code_critic_loss"] > 0 for m in lines)
    # Warped inputs for the first half of the 40 steps, the clean phase after it, on either side of the kill.
    assert [m["warp"] for m in lines] == [True] * 4 + [False] * 4
    assert max(checkpoint_steps(out)) == 40 and out.exists(MODEL_KEY)
    # The discriminators' optimiser counted every step from 0, across the kill: it was resumed, not restarted.
    state = _checkpoint(out, 40)
    adam_steps = {int(p["step"]) for p in state["discriminator_optimizer"]["state"].values()}
    assert adam_steps == {40}, adam_steps
    # So did the code critic's (--code-critic).
    adam_steps = {int(p["step"]) for p in state["code_critic_optimizer"]["state"].values()}
    assert adam_steps == {40} and summary["code_critic"] == 0.1, adam_steps
    # The exported model is the autoencoder alone: the discriminators and the critic stay in the checkpoints.
    exported = torch.load(io.BytesIO(out.read_bytes(MODEL_KEY)), weights_only=True)
    assert state["discriminator"] and state["code_critic"] and set(exported) == set(state["model"])

    # The same folder refuses another architecture, before any worker starts.
    other = TrainConfig(a=a, b=b, out=out.uri, preset="original", steps=50)
    with pytest.raises(ConfigError, match=r"step_0000040/checkpoint\.pt: checkpoint holds a 'lite' model, "
                                          r"this run asks for 'original'"):
        run_train(other, progress=False)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/faceswap-train-pwned",))


@pytest.mark.parametrize("payload", [pickle.dumps({"model": _Evil(), "step": 10}), b"\x89garbage\x00" * 64],
                         ids=["pickle-with-code", "garbage"])
def test_bad_checkpoint_is_refused(ray_local, local_facesets, tmp_path, payload, run_cli):
    out = Store(str(tmp_path / "model"))
    out.write_bytes("checkpoints/step_0000010/checkpoint.pt", payload)
    out.write_json("checkpoints/step_0000010/meta.json", {"step": 10, "bytes": len(payload), "preset": "lite"})
    cfg = TrainConfig(a=local_facesets[0], b=local_facesets[1], out=out.uri, steps=20)
    with pytest.raises(InputError, match=r"step_0000010/checkpoint\.pt is not a valid faceswap weights file"):
        run_train(cfg, progress=False)
    assert not os.path.exists("/tmp/faceswap-train-pwned")
    proc = run_cli("train", "--a", cfg.a, "--b", cfg.b, "--out", out.uri, "--steps", "20", timeout_s=300,
                   env={"RAY_ADDRESS": ray_local.get_runtime_context().gcs_address})
    assert proc.returncode == 2
    assert "checkpoint.pt is not a valid faceswap weights file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _checkpoint(out: Store, step: int) -> dict:
    import torch

    return torch.load(io.BytesIO(out.read_bytes(f"checkpoints/step_{step:07d}/checkpoint.pt")), weights_only=True)


def test_a_time_budget_stops_on_time_and_a_rerun_continues_the_same_budget(ray_local, local_facesets, tmp_path):
    out = Store(str(tmp_path / "model"))
    a, b = local_facesets
    minutes = 0.5  # 30 s: one step of this tiny model on a loaded 2-core machine is well inside 10%
    cfg = TrainConfig(a=a, b=b, out=out.uri, minutes=minutes, batch_size=4, checkpoint_every=10_000,
                      preview_every=10_000, lr_schedule="cosine", pose_balance=1.0)
    summary = run_train(cfg, progress=False)
    assert summary["pose_balance"] == 1.0 and summary["rarest_gain_a"] >= 1.0 and summary["rarest_gain_b"] >= 1.0
    # Stopped by the clock (no --steps), within 10% of the budget; the checkpoint and model come after.
    assert 60 * minutes <= summary["training_elapsed_s"] <= 1.1 * 60 * minutes, summary
    assert summary["steps"] > 0 and checkpoint_steps(out) == [summary["steps"]] and out.exists(MODEL_KEY)
    state = _checkpoint(out, summary["steps"])
    assert state["elapsed_s"] >= 60 * minutes
    # The learning rate decayed over the budget: the last line is near the floor of the schedule.
    from faceswap.model.schedule import FLOOR
    last_lr = _metrics(out)[-1]["lr"]
    assert last_lr < 0.2 * summary["lr"] and last_lr >= FLOOR * summary["lr"] * 0.999
    # The budget is spent: the same command adds no steps.
    again = run_train(cfg, progress=False)
    assert again["steps"] == summary["steps"] and again["start_step"] == summary["steps"]


def test_the_weight_average_and_schedule_resume_with_the_step_counter(ray_local, local_facesets, tmp_path):
    import torch

    from faceswap.model.schedule import lr_at

    out = Store(str(tmp_path / "model"))
    a, b = local_facesets
    recipe = {"ema": 0.998, "lr_schedule": "cosine", "background_weight": 0.1, "eye_mouth_weight": 1.0}
    first = TrainConfig(a=a, b=b, out=out.uri, steps=20, batch_size=4, checkpoint_every=10, preview_every=5, **recipe)
    run_train(first, progress=False)
    state = _checkpoint(out, 20)
    assert state["ema"]["updates"] == 20 and state["ema"]["decay"] == first.ema
    # The exported model is the weight average, not the last step's weights.
    exported = torch.load(io.BytesIO(out.read_bytes(MODEL_KEY)), weights_only=True)
    key = next(k for k in exported if k.endswith("weight"))
    assert torch.equal(exported[key], state["ema"]["weights"][key].to(exported[key].dtype))
    assert not torch.equal(exported[key], state["model"][key])
    # Resumed to 30 steps: the average goes on from 20 updates, the schedule from step 20 of 30.
    more = TrainConfig(a=a, b=b, out=out.uri, steps=30, batch_size=4, checkpoint_every=10, preview_every=5, **recipe)
    summary = run_train(more, progress=False)
    assert summary["start_step"] == 20
    assert _checkpoint(out, 30)["ema"]["updates"] == 30
    lines = {m["step"]: m["lr"] for m in _metrics(out)}
    assert lines[30] == pytest.approx(lr_at(29, summary["lr"], 30))


def test_init_from_starts_a_pair_from_a_trained_model(ray_local, local_facesets, tmp_path, run_cli):
    """--init-from carries the shared encoder (and the decoders with --init-decoders) into a new run;
    a model of another architecture is refused with one line and exit 2."""
    import torch

    from faceswap.model.export import read_model

    a, b = local_facesets
    base = str(tmp_path / "pretrained")
    run_train(TrainConfig(a=a, b=b, out=base, steps=6, batch_size=4, checkpoint_every=6, preview_every=6),
              progress=False)
    _, _, pretrained = read_model(base)
    before = pretrained.state_dict()

    def start(out: str, decoders: bool) -> dict:
        # A learning rate so small that the weights the run exports are the ones it started from.
        run_train(TrainConfig(a=a, b=b, out=out, steps=1, batch_size=4, lr=1e-30, checkpoint_every=1,
                              preview_every=1, init_from=base, init_decoders=decoders, seed=7), progress=False)
        return read_model(out)[2].state_dict()

    def same(state: dict, prefix: str) -> bool:
        return all(torch.allclose(v.float(), before[k].float(), atol=1e-6) for k, v in state.items()
                   if k.startswith(prefix) and v.is_floating_point())

    encoder_only = start(str(tmp_path / "encoder_only"), decoders=False)
    assert same(encoder_only, "encoder.")
    assert not same(encoder_only, "decoder_a.") and not same(encoder_only, "decoder_b.")
    everything = start(str(tmp_path / "everything"), decoders=True)
    assert same(everything, "encoder.") and same(everything, "decoder_a.") and same(everything, "decoder_b.")

    proc = run_cli("train", "--a", a, "--b", b, "--out", str(tmp_path / "other"), "--preset", "original",
                   "--steps", "2", "--init-from", base, timeout_s=300,
                   env={"RAY_ADDRESS": ray_local.get_runtime_context().gcs_address})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "--init-from holds a 'lite' model, this run trains 'original'" in proc.stderr
    assert not os.path.exists(tmp_path / "other" / "checkpoints")
