"""Train: two face sets -> one shared encoder, two decoders, on Ray Train (DDP).

    face sets A, B -> [each worker: FaceStream A/B -> augment -> encoder -> decoder A / decoder B
                                    -> SSIM + L1 (optionally weighted to the face, eyes and mouth; both sides)
                                    -> all-reduce -> Adam (warm-up, then constant or cosine) -> (weight average)]
      rank 0 -> checkpoints/step_<N>/ (via ray.train.report), previews/, metrics.jsonl, tensorboard/
      end    -> model/model.pt (the weight average with --ema) + model/config.json

The run ends after --steps, or after --minutes of training (whichever comes first): with a time
budget the learning-rate schedule runs on the share of the budget spent, and rank 0 decides
when to stop for every rank.

Resume: rerunning the same command continues from the newest complete
checkpoint under ``<out>/checkpoints``: Ray Train V2 restores its own run
snapshot, and the driver also finds the newest checkpoint itself (it checks
the architecture before any worker starts), and the worker takes whichever is
newer. The step counter never restarts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

from faceswap.config import TrainConfig, normalized
from faceswap.errors import ConfigError, user_error
from faceswap.faceset import FaceSet
from faceswap.model.augment import AugmentConfig, augment
from faceswap.model.autoencoder import FaceSwapModel, ModelConfig, device_preset, preset
from faceswap.model.checkpoints import (CHECKPOINTS, CKPT_FILE, checkpoint_state, find_checkpoint, read_checkpoint,
                                        step_dir, write_checkpoint_dir)
from faceswap.model.dataset import FaceStream, decode_sample
from faceswap.model.export import init_weights, write_model
from faceswap.model.ema import WeightAverage
from faceswap.model.losses import pixel_weights, reconstruction_loss, visible_face
from faceswap.model.precision import Precision, training_precision
from faceswap.model.schedule import lr_at
from faceswap.raycluster import Cluster
from faceswap.render.reach import outlines_of
from faceswap.s3 import Secrets, arrow_filesystem, stage_env
from faceswap.storage import Store

log = logging.getLogger(__name__)

PREVIEW_FACES = 4


# -- settings ------------------------------------------------------------------------------

NO_STEP_LIMIT = 2 ** 62  # --minutes without --steps: only the clock ends the run


def resolve(cfg: TrainConfig) -> tuple[ModelConfig, int, int, float]:
    """The preset's ModelConfig and the effective steps, batch size and learning rate."""
    if cfg.workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {cfg.workers}")
    if not 0.0 <= cfg.flip <= 1.0:
        raise ConfigError(f"--flip is a probability between 0 and 1, not {cfg.flip}")
    if cfg.minutes < 0 or cfg.steps < 0:
        raise ConfigError("--minutes and --steps cannot be negative")
    if not 0.0 <= cfg.ema < 1.0:
        raise ConfigError(f"--ema is a decay in [0, 1), not {cfg.ema}")
    if cfg.gan_weight < 0 or not 0.0 <= cfg.gan_start < 1.0:
        raise ConfigError(f"--gan-weight cannot be negative and --gan-start is a share of the run in [0, 1) "
                          f"(got {cfg.gan_weight:g} and {cfg.gan_start:g})")
    if not 0.0 <= cfg.background_weight <= 1.0 or cfg.eye_mouth_weight < 0:
        raise ConfigError("--background-weight is in [0, 1] and --eye-mouth-weight is not negative")
    if not 0.0 <= cfg.warp_until <= 1.0:
        raise ConfigError(f"--warp-until is a share of the run in [0, 1], not {cfg.warp_until:g}")
    if not 0.0 <= cfg.pose_balance <= 1.0:
        raise ConfigError(f"--pose-balance is in [0, 1], not {cfg.pose_balance:g}")
    if cfg.code_critic < 0:
        raise ConfigError(f"--code-critic cannot be negative, not {cfg.code_critic:g}")
    mcfg = preset(device_preset(cfg.preset, cfg.gpu))
    steps = cfg.steps or (NO_STEP_LIMIT if cfg.minutes else mcfg.steps)
    return mcfg, steps, cfg.batch_size or mcfg.batch_size, cfg.lr or mcfg.lr


class Budget:
    """When to stop and how far the schedule is: by steps, or by minutes of training (rank 0's clock,
    broadcast to every rank each step, a few bytes, so all ranks stop at the same step). The clock
    runs from the first step (set-up is not training) and goes on from a checkpoint's ``elapsed_s``."""

    def __init__(self, total_steps: int, minutes: float, elapsed_s: float, world: int):
        self.total, self.budget_s = total_steps, 60.0 * minutes
        self.world = world
        self.t0 = time.perf_counter() - elapsed_s
        self.progress, self.stop, self.stopped_s = 0.0, False, None

    def elapsed_s(self) -> float:
        """Training time so far; once stopped, the time it stopped at (the last checkpoint and the model
        are written after the budget, not in it)."""
        return self.stopped_s if self.stopped_s is not None else time.perf_counter() - self.t0

    def update(self, step: int) -> None:
        """Refresh ``progress`` (0..1) and ``stop`` before ``step``."""
        by_steps = step / self.total if self.total < NO_STEP_LIMIT else 0.0
        if not self.budget_s:
            self.progress, self.stop = by_steps, step >= self.total
            return
        flags = torch.tensor([self.elapsed_s() / self.budget_s, float(step >= self.total)], dtype=torch.float64)
        if self.world > 1:
            torch.distributed.broadcast(flags, src=0)
        self.progress = max(by_steps, min(1.0, float(flags[0])))
        self.stop = float(flags[0]) >= 1.0 or bool(flags[1])
        if self.stop:
            self.stopped_s = self.elapsed_s()


# -- one training step, shared by the Ray loop and the benchmark's bare loop ------------------

class Stepper:
    """Augment, forward both sides in one pass, SSIM+L1 on both (+ the adversarial loss in the GAN phase),
    backward, optimiser step (then, in the GAN phase, the discriminators' step: model/gan.py)."""

    def __init__(self, model, raw: FaceSwapModel, opt, device, eye_mouth_weight: float, seed: int,
                 flip: float = AugmentConfig.flip, background_weight: float = 1.0, adversary=None,
                 precision: Precision | None = None, critic=None):
        self.critic = critic  # model/code_critic.CodeAdversary (--code-critic) or None
        self.last_critic = 0.0  # the critic's last loss
        self.model, self.raw, self.opt, self.device = model, raw, opt, device
        self.adversary = adversary
        self.last_gan = (0.0, 0.0)  # the last adversarial step's (generator, discriminator) losses
        self.eye_mouth_weight, self.background_weight = eye_mouth_weight, background_weight
        self.aug = AugmentConfig(flip=flip)
        self.gen = torch.Generator().manual_seed(seed)
        self.precision = precision or training_precision("auto", device)
        self.scaler = self.precision.scaler()

    def to_tensors(self, images: np.ndarray, maps: np.ndarray):
        x = torch.from_numpy(images).to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        m = torch.from_numpy(maps).to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        return x, m                                                    # (B, 3, S, S), (B, 3, S, S)

    def _loss(self, out, target, aux):
        weight = pixel_weights(aux, self.eye_mouth_weight, self.background_weight)
        mask_pred = out[:, 3:4] if out.shape[1] == 4 else None
        return reconstruction_loss(out[:, :3], target, weight, mask_pred, visible_face(aux))

    def step(self, a, b, lr: float, adversarial: bool = False, warp: bool = True) -> tuple[float, float]:
        """One step; ``adversarial``: in the GAN phase (needs an adversary); without ``warp``: in the clean
        phase (inputs not randomly warped). Returns both reconstruction losses."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        inp_a, tgt_a, aux_a = augment(*a, self.aug, self.gen, warp)
        inp_b, tgt_b, aux_b = augment(*b, self.aug, self.gen, warp)
        with self.precision.autocast(self.device):
            if self.critic is None:
                out_a, out_b = self.model(inp_a, inp_b)                # (B, 3|4, S, S) each
            else:
                out_a, out_b, code_a, code_b = self.model(inp_a, inp_b, codes=True)
        loss_a, loss_b = self._loss(out_a, tgt_a, aux_a), self._loss(out_b, tgt_b, aux_b)
        total = loss_a + loss_b
        if self.critic is not None:
            total = total + self.critic.encoder_loss(code_a, code_b)
        hull_a, hull_b = visible_face(aux_a), visible_face(aux_b)
        if adversarial:
            gan = self.adversary.generator_loss(out_a[:, :3], hull_a, out_b[:, :3], hull_b)
            total = total + gan
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.critic is not None:
            self.last_critic = self.critic.step(code_a, code_b, lr)
        if adversarial:
            loss_d = self.adversary.step(tgt_a, out_a[:, :3], hull_a, tgt_b, out_b[:, :3], hull_b, lr)
            self.last_gan = (gan.item(), loss_d)
        return loss_a.item(), loss_b.item()


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))


def _resumed_optimizer(raw: torch.nn.Module, lr: float, state: tuple | None) -> torch.optim.Optimizer:
    """``raw``'s optimiser; with a checkpoint's (weights, optimiser) ``state``, both loaded from it."""
    opt = make_optimizer(raw, lr)
    if state is not None:
        raw.load_state_dict(state[0])
        opt.load_state_dict(state[1])
    return opt


def make_adversary(size: int, lr: float, weight: float, device, precision: Precision, state: tuple | None = None):
    """The GAN phase's discriminators (DDP-wrapped when there are several workers) and their optimiser,
    from a checkpoint's (weights, optimiser) ``state`` when it holds them."""
    import ray.train.torch

    from faceswap.model.gan import Adversary, Discriminators

    raw = Discriminators(size).to(device, memory_format=precision.memory_format)
    opt = _resumed_optimizer(raw, lr, state)
    return Adversary(ray.train.torch.prepare_model(raw, move_to_device=False), raw, opt, weight, device, precision)


def make_critic(width: int, lr: float, weight: float, device, state: tuple | None = None):
    """--code-critic's critic (DDP-wrapped when there are several workers) and its optimiser, from a
    checkpoint's (weights, optimiser) ``state`` when it holds them."""
    import ray.train.torch

    from faceswap.model.code_critic import CodeAdversary, CodeCritic

    raw = CodeCritic(width).to(device)
    opt = _resumed_optimizer(raw, lr, state)
    return CodeAdversary(ray.train.torch.prepare_model(raw, move_to_device=False), raw, opt, weight)


# -- rank-0 outputs ----------------------------------------------------------------------------

class Outputs:
    """Previews, metrics.jsonl and TensorBoard events: written by rank 0 only."""

    def __init__(self, out: Store, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.out = out
        self.lines: list[dict] = []
        if start_step and out.exists("metrics.jsonl"):
            # Lines past the checkpoint came from the run that died; they are redone.
            old = [json.loads(s) for s in out.read_text("metrics.jsonl").splitlines() if s.strip()]
            self.lines = [m for m in old if m.get("step", 0) <= start_step]
        self.tb_dir = (os.path.join(out.uri, "tensorboard") if not out.remote
                       else tempfile.mkdtemp(prefix="faceswap-tb-"))
        self.tb = SummaryWriter(self.tb_dir, purge_step=start_step or None)

    def metrics(self, line: dict):
        self.lines.append(line)
        self.out.write_text("metrics.jsonl", "".join(json.dumps(m) + "\n" for m in self.lines))
        for k in ("loss_a", "loss_b", "samples_per_s", "data_wait_share", "lr"):
            self.tb.add_scalar(f"train/{k}", line[k], line["step"])
        self.tb.flush()
        if self.out.remote:
            for name in os.listdir(self.tb_dir):
                self.out.put_file(os.path.join(self.tb_dir, name), f"tensorboard/{name}")

    def preview(self, raw: FaceSwapModel, faces_a: torch.Tensor, faces_b: torch.Tensor, step: int):
        """Rows A, A->A, A->B, B, B->B, B->A; one column per preview face."""
        import cv2

        was_training = raw.training
        raw.eval()
        with torch.no_grad():
            rows = [faces_a, raw.swap(faces_a, "a2a")[:, :3], raw.swap(faces_a, "a2b")[:, :3],
                    faces_b, raw.swap(faces_b, "b2b")[:, :3], raw.swap(faces_b, "b2a")[:, :3]]
        raw.train(was_training)
        grid = torch.cat([torch.cat(list(r.float().cpu()), dim=2) for r in rows], dim=1)   # (3, 6S, kS)
        rgb = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.out.write_bytes(f"previews/step_{step:07d}.png", png.tobytes())
        self.out.write_bytes("previews/latest.png", png.tobytes())

    def close(self):
        self.tb.close()
        if self.out.remote:
            shutil.rmtree(self.tb_dir, ignore_errors=True)


def small_crop_warnings(mcfg: ModelConfig, *infos) -> list[str]:
    """A line for each face set whose crops are smaller than the faces the model paints: it would learn
    an upscaled blur, however long it trains."""
    return [f"train: warning: {info.uri} holds {info.crop_size} px crops and the '{mcfg.preset}' model paints "
            f"{mcfg.size} px: it cannot learn detail the crops lack (extract again with --size {mcfg.size})"
            for info in infos if info.crop_size < mcfg.size]


def _say(line: str) -> None:
    # Not print(): Ray Train V2 patches print on workers and the line would show twice.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _preview_faces(uri: str, size: int, device) -> torch.Tensor:
    records, _ = FaceSet(uri).training_records()
    records = sorted(records, key=lambda r: r.crop)
    # Always PREVIEW_FACES columns (repeating faces of a small set), so A's and B's rows line up.
    pick = [records[int(round(i))] for i in np.linspace(0, len(records) - 1, PREVIEW_FACES)]
    store = Store(uri)
    imgs = np.stack([decode_sample(store, r, size)[0] for r in pick])
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255).to(device)      # (k, 3, S, S)


# -- the per-worker loop ---------------------------------------------------------------------------

def train_loop(config: dict) -> None:
    """Runs on every Ray Train worker. ``config``: train, model (dicts), threads, progress, and
    on_checkpoint: None, or a callable rank 0 calls as ``(phase, step, folder, out)`` when a checkpoint's
    files are written ("written", before Ray Train hears of it) and once report() returned ("reported");
    s3_secrets: the driver's (faceswap.s3.Secrets), applied before the store is opened."""
    import ray.train
    import ray.train.torch

    config["s3_secrets"].apply()
    cfg = TrainConfig(**config["train"])
    mcfg = ModelConfig.from_dict(config["model"])
    _, total, batch, base_lr = resolve(cfg)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    nodes = [ray.get_runtime_context().get_node_id()] * world  # where the workers run, for the summary
    if world > 1:
        torch.distributed.all_gather_object(nodes, nodes[0])
    torch.set_num_threads(config["threads"])
    device = ray.train.torch.get_device()
    out = Store(cfg.out)
    on_checkpoint = config.get("on_checkpoint")

    torch.manual_seed(cfg.seed)
    precision = training_precision(cfg.precision, device)
    raw = FaceSwapModel(mcfg).to(device, memory_format=precision.memory_format)
    opt = make_optimizer(raw, base_lr)

    # Resume from whichever is newer: Ray's own (a retry inside this run) or the newest complete one in
    # the store (also one a dead worker persisted before Ray Train registered it).
    start_step, source, elapsed_s, ema_state, gan_state, critic_state = 0, None, 0.0, None, None, None
    candidates = []
    ray_ckpt = ray.train.get_checkpoint()
    if ray_ckpt is not None:
        with ray_ckpt.as_directory() as d:
            path = os.path.join(d, CKPT_FILE)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    candidates.append((f.read(), os.path.join(ray_ckpt.path, CKPT_FILE)))
    stored = find_checkpoint(out)
    if stored is not None:
        candidates.append((stored[2], out.url(stored[0])))
    states = [(read_checkpoint(data, name, mcfg), name) for data, name in candidates]
    if not states and cfg.init_from:
        raw.load_state_dict(init_weights(cfg.init_from, mcfg, cfg.init_decoders), strict=False)
        source = cfg.init_from
    if states:
        state, source = max(states, key=lambda s: s[0]["step"])
        raw.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_step = int(state["step"])
        elapsed_s, ema_state = float(state.get("elapsed_s", 0.0)), state.get("ema")
        if "discriminator" in state:
            gan_state = (state["discriminator"], state["discriminator_optimizer"])
        if "code_critic" in state:
            critic_state = (state["code_critic"], state["code_critic_optimizer"])
        del states, state, candidates
    ema = None
    if cfg.ema > 0:
        ema = WeightAverage(raw, cfg.ema)
        if ema_state is not None:
            ema.load_state_dict(ema_state)
    # Previews and the exported model show the weight average: a copy of the model that holds it.
    shown = FaceSwapModel(mcfg).to(device, memory_format=precision.memory_format).eval() if ema is not None else raw

    def show() -> FaceSwapModel:
        if ema is not None:
            shown.load_state_dict(ema.weights(raw))
        return shown

    model = ray.train.torch.prepare_model(raw, move_to_device=False)  # DDP when world > 1 (raw is on device)
    critic = make_critic(mcfg.bottleneck, base_lr, cfg.code_critic, device, critic_state) if cfg.code_critic > 0 else None
    adversary = make_adversary(mcfg.size, base_lr, cfg.gan_weight, device, precision, gan_state) if cfg.gan_weight > 0 else None
    stepper = Stepper(model, raw, opt, device, cfg.eye_mouth_weight, seed=cfg.seed * 1009 + rank + start_step,
                      flip=cfg.flip, background_weight=cfg.background_weight, adversary=adversary,
                      precision=precision, critic=critic)
    shown_total = total if total < NO_STEP_LIMIT else f"? ({cfg.minutes:g} min)"
    seed = cfg.seed * 100003 + start_step                          # same on every rank: disjoint slices
    stream_a = FaceStream(cfg.a, mcfg.size, rank, world, seed, balance=cfg.pose_balance, hands=cfg.hand_mask)
    stream_b = FaceStream(cfg.b, mcfg.size, rank, world, seed + 1, balance=cfg.pose_balance, hands=cfg.hand_mask)
    outputs = preview_a = preview_b = None
    if rank == 0:
        outputs = Outputs(out, start_step)
        preview_a, preview_b = _preview_faces(cfg.a, mcfg.size, device), _preview_faces(cfg.b, mcfg.size, device)
        if config["progress"]:
            _say(f"train: {'resuming at' if start_step else 'starting at'} step {start_step}/{shown_total}"
                 + (f" from {source}" if source else "") + f" ({precision.name} on {device.type})")
            if cfg.pose_balance > 0:
                _say(f"train: rare poses and expressions drawn up to {stream_a.rarest_gain:.1f}x (A) and "
                     f"{stream_b.rarest_gain:.1f}x (B) as often as in a uniform draw")

    def save_checkpoint(step: int, metrics: dict):
        state = checkpoint_state(raw, opt, step, mcfg, cfg, ema, budget.elapsed_s(), adversary,
                                 critic) if rank == 0 else None
        tmp = write_checkpoint_dir(state, mcfg.preset) if rank == 0 else None
        if tmp and on_checkpoint:
            on_checkpoint("written", step, tmp, out)
        ckpt = ray.train.Checkpoint.from_directory(tmp) if tmp else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=step_dir(step))
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
            if on_checkpoint:
                on_checkpoint("reported", step, None, out)

    step = start_step
    t_window, wait_window, loss_window, t_start = time.perf_counter(), 0.0, [], time.perf_counter()
    gan_window: list[tuple[float, float]] = []
    critic_window: list[float] = []
    last: dict = {}
    samples_per_step = 2 * batch * world
    budget = Budget(total, cfg.minutes, elapsed_s, world)
    try:
        budget.update(step)
        while not budget.stop:
            lr = lr_at(step, base_lr, total, progress=budget.progress if cfg.minutes else None,
                       decay=cfg.lr_schedule == "cosine")
            if step > start_step and step % cfg.checkpoint_every == 0:
                save_checkpoint(step, last or {"step": step})
            if rank == 0 and step % cfg.preview_every == 0:
                outputs.preview(show(), preview_a, preview_b, step)

            t0 = time.perf_counter()
            a = stepper.to_tensors(*stream_a.next_batch(batch))
            b = stepper.to_tensors(*stream_b.next_batch(batch))
            wait_window += time.perf_counter() - t0
            adversarial = adversary is not None and budget.progress >= cfg.gan_start
            warping = budget.progress < cfg.warp_until
            loss_window.append(stepper.step(a, b, lr, adversarial, warp=warping))
            if adversarial:
                gan_window.append(stepper.last_gan)
            if critic is not None:
                critic_window.append(stepper.last_critic)
            if ema is not None:
                ema.update(raw)
            step += 1
            budget.update(step)

            # A line every preview_every steps and one for the last steps, wherever the budget ends.
            if step % cfg.preview_every == 0 or budget.stop:
                dt = time.perf_counter() - t_window
                la, lb = np.mean(loss_window, axis=0)
                last = {"step": step, "loss_a": round(float(la), 5), "loss_b": round(float(lb), 5),
                        "samples_per_s": round(samples_per_step * len(loss_window) / dt, 2),
                        "data_wait_share": round(wait_window / dt, 4), "lr": lr,
                        "elapsed_s": round(budget.elapsed_s(), 1), "warp": warping}
                if gan_window:  # the adversarial phase: the generator's and the discriminators' losses
                    gan_g, gan_d = np.mean(gan_window, axis=0)
                    last.update(gan_g=round(float(gan_g), 5), gan_d=round(float(gan_d), 5))
                if critic_window:  # --code-critic: the critic's loss (1.386: it cannot tell A's codes from B's)
                    last["code_critic_loss"] = round(float(np.mean(critic_window)), 4)
                if rank == 0:
                    outputs.metrics(last)
                    if config["progress"]:
                        _say(f"train: step {step}/{shown_total} loss A {la:.4f} B {lb:.4f} "
                             f"{last['samples_per_s']:.1f} faces/s, data wait {100 * last['data_wait_share']:.1f}%"
                             + (f", GAN G {last['gan_g']:.3f} D {last['gan_d']:.3f}" if "gan_g" in last else "")
                             + (f", code critic {last['code_critic_loss']:.3f}" if "code_critic_loss" in last else "")
                             + ("" if warping else ", clean phase (inputs not warped)"))
                t_window, wait_window, loss_window, gan_window, critic_window = time.perf_counter(), 0.0, [], [], []

        if step > start_step:
            save_checkpoint(step, last)
        if rank == 0:
            outputs.preview(show(), preview_a, preview_b, step)
            summary = {"preset": mcfg.preset, "steps": step, "start_step": start_step, "resumed_from": source,
                       "nodes": sorted(set(nodes)),
                       "batch_size": batch, "workers": world, "lr": base_lr,
                       "train_s": round(time.perf_counter() - t_start, 1), "minutes": cfg.minutes,
                       "training_elapsed_s": round(budget.elapsed_s(), 1), "ema": cfg.ema,
                       "gan_weight": cfg.gan_weight, "warp_until": cfg.warp_until, "pose_balance": cfg.pose_balance,
                       "precision": precision.name, "code_critic": cfg.code_critic, "hand_mask": cfg.hand_mask, "hand_faces_a": stream_a.hand_faces, "hand_faces_b": stream_b.hand_faces,
                       "rarest_gain_a": round(stream_a.rarest_gain, 2), "rarest_gain_b": round(stream_b.rarest_gain, 2),
                       "faces_a": stream_a.info.faces, "faces_b": stream_b.info.faces,
                       **{k: last[k] for k in ("loss_a", "loss_b", "samples_per_s", "data_wait_share") if k in last}}
            outlines = {k: outlines_of([r.landmarks for r in stream.records], stream.info.crop_size)
                        for k, stream in (("a", stream_a), ("b", stream_b))}
            write_model(out, show().state_dict(), mcfg, stream_a.info.crop_size, stream_a.info.centering, summary,
                        outlines)
    finally:
        stream_a.close()
        stream_b.close()
        if outputs:
            outputs.close()


# -- the driver -------------------------------------------------------------------------------------

def run_train(cfg: TrainConfig, progress: bool = True, on_checkpoint=None, cluster: Cluster | None = None) -> dict:
    """Train (or resume) a model into ``cfg.out``; returns the training summary. ``on_checkpoint``: see
    train_loop (fault-injection tests stop a worker at an exact point with it)."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from faceswap.raycluster import cluster_cpus, cpu_stage_resources, gpu_stage_resources

    # Workers run in another working directory: relative paths are the driver's.
    cfg = normalized(cfg)
    mcfg, total, batch, lr = resolve(cfg)
    out = Store(cfg.out)
    out.check_writable()
    # Fail fast, before the cluster works: both face sets readable and compatible ...
    _, info_a = FaceSet(cfg.a).training_records()
    _, info_b = FaceSet(cfg.b).training_records()
    if info_a.centering != info_b.centering:
        raise ConfigError(f"{info_a.uri} is centred on the {info_a.centering}, {info_b.uri} on the "
                          f"{info_b.centering}: extract both with the same --centering")
    for line in small_crop_warnings(mcfg, info_a, info_b):
        _say(line)
    # ... and the checkpoint to resume from is a real weights file of this architecture.
    found = find_checkpoint(out)
    resume_key = None
    if found:
        resume_key, ckpt_step, data = found
        read_checkpoint(data, out.url(resume_key), mcfg)
        del data
        if progress:
            _say(f"train: found checkpoint at step {ckpt_step}: {out.url(resume_key)}")
    elif cfg.init_from:  # ... or the model to start from is one of this architecture.
        init_weights(cfg.init_from, mcfg, cfg.init_decoders)
        if progress:
            _say(f"train: starting from {cfg.init_from}'s encoder" + (" and decoders" if cfg.init_decoders else ""))

    cluster = (cluster or Cluster()).connect()
    # A worker lives on one node: never ask for more CPUs than the largest node has.
    node_cpus = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=1)
    if cfg.gpu:
        cpus = float(max(1, min(4, node_cpus, cluster_cpus() // cfg.workers)))
        resources = {"CPU": cpus, "GPU": 1, **gpu_stage_resources()}
    else:
        # On CPU every core is a training thread; a worker takes its share of the machine.
        cpus = float(max(1, min(16, node_cpus, cluster_cpus() // cfg.workers)))
        resources = {"CPU": cpus, **cpu_stage_resources()}
    storage_path, storage_fs = arrow_filesystem(out.uri)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"train": dataclasses.asdict(cfg), "model": dataclasses.asdict(mcfg),
                           "threads": int(cpus), "progress": progress, "on_checkpoint": on_checkpoint,
                           "s3_secrets": Secrets.from_env()},
        torch_config=ray.train.torch.TorchConfig(backend="nccl" if cfg.gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=CHECKPOINTS, storage_path=storage_path, storage_filesystem=storage_fs,
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            # The store's endpoint reaches the workers even when Ray was started before it was set; the
            # secrets travel in train_loop_config (a runtime env is logged by Ray's agent).
            worker_runtime_env=stage_env() if out.remote else None),
    )
    t0 = time.perf_counter()
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as exc:
        err = user_error(exc)
        if err is not None:
            raise err from None
        raise
    model_cfg = out.read_json("model/config.json")
    summary = {**model_cfg["summary"], "out": out.uri, "model": out.url("model"),
               "fingerprint": model_cfg["fingerprint"], "wall_s": round(time.perf_counter() - t0, 1)}
    if progress:
        _say(f"train: model {summary['model']} (fingerprint {summary['fingerprint']}) after "
              f"{summary['steps']} steps")
    return summary
