"""Training throughput: the Ray Train loop (1 worker) against a bare PyTorch loop.

    python benchmarks/train.py [--preset lite] [--steps 150] [--a FACESET --b FACESET]

Both loops run the same model, batch size, augmentation and loss (``Stepper``).
The bare loop samples from crops already decoded in memory, so it is the
ceiling; the Ray loop streams from the face sets (decode threads, shuffle
buffer), and also renders previews and writes metrics as a real run does.
Prints samples/s of both, their ratio (goal >= 0.9) and the share of the Ray
loop's step time spent waiting for data (goal <= 5%). Also the bare loop with
the recipe options (--background-weight 0.1 --eye-mouth-weight 1 --ema 0.998),
as a ratio to the plain bare loop: what those options cost per step. And the bare loop in float32
(--precision fp32) against the default (bfloat16 on a CPU with AMX or AVX512-BF16). Without
--a/--b it builds two face sets from the sample photos (astronaut, Grace Hopper).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch


RECIPE = {"background_weight": 0.1, "eye_mouth_weight": 1.0, "ema": 0.998}  # train's recipe options


def bare_loop(a: str, b: str, preset_name: str, steps: int, batch: int, threads: int, recipe: bool = False,
              precision: str = "auto") -> float:
    """Faces/s of a plain single-process loop over pre-decoded crops (``recipe``: with RECIPE's weighted loss
    and a weight average updated after every step, as train_loop does; ``precision``: train's --precision)."""
    from faceswap.model.autoencoder import FaceSwapModel, preset
    from faceswap.faceset import FaceSet
    from faceswap.model.dataset import decode_sample
    from faceswap.model.ema import WeightAverage
    from faceswap.model.precision import training_precision
    from faceswap.stages.train import Stepper, make_optimizer
    from faceswap.storage import Store

    torch.set_num_threads(threads)
    mcfg = preset(preset_name)
    data = []
    for uri in (a, b):
        records, _ = FaceSet(uri).training_records()
        samples = [decode_sample(Store(uri), r, mcfg.size) for r in records]
        data.append((np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])))
    torch.manual_seed(0)
    how = training_precision(precision, torch.device("cpu"))
    model = FaceSwapModel(mcfg).to(memory_format=how.memory_format)
    stepper = Stepper(model, model, make_optimizer(model, mcfg.lr), torch.device("cpu"),
                      RECIPE["eye_mouth_weight"] if recipe else 0.0, seed=0,
                      background_weight=RECIPE["background_weight"] if recipe else 1.0, precision=how)
    ema = WeightAverage(model, RECIPE["ema"]) if recipe else None
    rng = np.random.default_rng(0)

    def draw(images, maps):
        idx = rng.integers(0, len(images), batch)
        return stepper.to_tensors(images[idx], maps[idx])

    warmup = max(5, steps // 10)
    for i in range(steps + warmup):
        if i == warmup:
            t0 = time.perf_counter()
        stepper.step(draw(*data[0]), draw(*data[1]), mcfg.lr)
        if ema is not None:
            ema.update(model)
    return 2 * batch * steps / (time.perf_counter() - t0)


def ray_loop(a: str, b: str, preset_name: str, steps: int, batch: int, out: str) -> tuple[float, float]:
    """(faces/s, data-wait share) of run_train with 1 worker, from its metrics after warm-up."""
    from faceswap.config import TrainConfig
    from faceswap.stages.train import run_train

    window = max(10, steps // 3)
    # Warped to the end, as the bare loop is: the default clean phase's unwarped steps cost less.
    cfg = TrainConfig(a=a, b=b, out=out, preset=preset_name, steps=window * 3, batch_size=batch, workers=1,
                      checkpoint_every=10 ** 9, preview_every=window, warp_until=1.0)
    run_train(cfg, progress=False)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        lines = [json.loads(s) for s in f if s.strip()][1:]          # drop the warm-up window
    return (float(np.mean([m["samples_per_s"] for m in lines])),
            float(np.mean([m["data_wait_share"] for m in lines])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lite")
    parser.add_argument("--steps", type=int, default=150, help="timed steps per loop")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the preset's default")
    parser.add_argument("--a", default="", help="face set A (default: built from the sample photo)")
    parser.add_argument("--b", default="", help="face set B")
    args = parser.parse_args()

    import ray

    from faceswap.model.autoencoder import preset
    from faceswap.raycluster import Cluster, cluster_cpus

    work = tempfile.mkdtemp(prefix="faceswap-bench-train-")
    a, b = args.a, args.b
    if not (a and b):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
        from test_model import build_faceset

        a = build_faceset(os.path.join(work, "a"), "a", n=48).uri
        b = build_faceset(os.path.join(work, "b"), "b", n=48).uri
    batch = args.batch_size or preset(args.preset).batch_size
    Cluster().connect()
    threads = cluster_cpus()          # what the single Ray Train worker gets too

    bare = bare_loop(a, b, args.preset, args.steps, batch, threads)
    bare_fp32 = bare_loop(a, b, args.preset, args.steps, batch, threads, precision="fp32")
    recipe = bare_loop(a, b, args.preset, args.steps, batch, threads, recipe=True)
    with_ray, wait_share = ray_loop(a, b, args.preset, args.steps, batch, os.path.join(work, "out"))
    ray.shutdown()
    ratio = with_ray / bare
    print(f"preset {args.preset}, batch {batch} per side, {threads} CPU threads, {os.cpu_count()} cores")
    from faceswap.model.precision import training_precision

    print(f"bare PyTorch loop   {bare:8.1f} faces/s   ({training_precision('auto', torch.device('cpu')).name}, "
          f"train's default here)")
    print(f"bare, --precision fp32 {bare_fp32:5.1f} faces/s   auto's speed-up {bare / bare_fp32:.2f}x")
    print(f"Ray Train loop      {with_ray:8.1f} faces/s   ratio {ratio:.2f} (goal >= 0.9)")
    print(f"data wait share     {100 * wait_share:8.1f} %      (goal <= 5%)")
    print(f"bare, recipe opts   {recipe:8.1f} faces/s   ratio to bare {recipe / bare:.2f} "
          f"({', '.join(f'{k} {v:g}' for k, v in RECIPE.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
