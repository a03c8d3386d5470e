"""The whole pipeline in one call, and the demo on the bundled samples.

    RunConfig -> extract A (source footage, identity filter) -> extract B (target material)
              -> train (shared encoder, decoders A and B) -> convert + assemble each source video
              -> evaluate (report.json, report.png next to the output)

Every stage resumes: finished shards, checkpoints and segments in the work store
are reused, so rerunning the same command after a fault finishes the job.
"""

from __future__ import annotations

import os
import time

from faceswap.config import (DEMO_STEPS, DEMO_TRAIN_MINUTES, ConvertConfig, EvaluateConfig, ExtractConfig, RunConfig,
                             TrainConfig)
from faceswap.errors import InputError
from faceswap.faceset import FaceSet
from faceswap.inputs import is_video, videos_in
from faceswap.raycluster import Cluster
from faceswap.storage import Store, is_remote
from faceswap.video.shards import source_id

DEMO_LABEL = "AI-GENERATED"


def _output_for(cfg: RunConfig, video: str, videos: list[str]) -> str:
    if len(videos) == 1 and os.path.splitext(cfg.output)[1]:
        return cfg.output
    stem = os.path.splitext(os.path.basename(video))[0]
    return f"{cfg.output.rstrip('/')}/{stem}_swapped.mp4"


def _report_base(out: str) -> str:
    return os.path.splitext(out)[0]


def _target_references(cfg: RunConfig, faces_b: str, tmp_dir: str, count: int = 5) -> list[str]:
    """References of the new face for evaluation: given ones, else a few crops of face set B."""
    if cfg.target_identity:
        return cfg.target_identity
    photos = [t for t in cfg.target if not is_video(t)]
    if photos:
        return photos
    faceset = FaceSet(faces_b)
    crops = sorted(row["crop"] for row in faceset.records())
    if not crops:
        raise InputError(f"{faces_b}: face set B has no crops to use as evaluation references")
    picks = [crops[int(i * (len(crops) - 1) / max(1, count - 1))] for i in range(min(count, len(crops)))]
    paths = []
    for i, key in enumerate(dict.fromkeys(picks)):
        paths.append(faceset.store.get_file(key, os.path.join(tmp_dir, f"target_ref_{i}{os.path.splitext(key)[1]}")))
    return paths


def run_pipeline(cfg: RunConfig, progress: bool = True, cluster: Cluster | None = None) -> dict:
    """Run every stage of ``cfg`` on ``cluster``; returns {stage: summary} plus the outputs."""
    import tempfile

    from faceswap.stages.convert import run_convert
    from faceswap.stages.extract import run_extract
    from faceswap.stages.train import run_train

    t0 = time.monotonic()
    # The footage as extract reads it (folders included): its videos are what convert renders.
    videos = videos_in(cfg.footage)
    if not videos:
        raise InputError(f"{', '.join(cfg.footage)}: no video in the footage (convert renders video "
                         f"files; photos of the person only help training, as --target or --identity)")
    outputs = [_output_for(cfg, video, videos) for video in videos]
    clash = next((o for o in outputs if outputs.count(o) > 1), None)
    if clash:
        raise InputError(f"{clash}: two footage videos share a file name; give them different names")
    work = Store(cfg.work)
    work.check_writable()
    cluster = cluster or Cluster()
    faces_a, faces_b, model = work.url("faces/a"), work.url("faces/b"), work.url("model")
    results: dict = {"work": work.uri, "outputs": []}

    def stage(name: str):
        if progress:
            print(f"\n== {name} ({time.monotonic() - t0:.0f} s) ==", flush=True)

    stage("extract A: the face to replace")
    results["extract_a"] = run_extract(ExtractConfig(inputs=cfg.footage, out=faces_a, identity=cfg.identity,
                                                     **cfg.extract), progress=progress, cluster=cluster)
    stage("extract B: the new face")
    results["extract_b"] = run_extract(ExtractConfig(inputs=cfg.target, out=faces_b, identity=cfg.target_identity,
                                                     **cfg.extract), progress=progress, cluster=cluster)
    stage("train")
    results["train"] = run_train(TrainConfig(a=faces_a, b=faces_b, out=model, **cfg.train), progress=progress,
                                 cluster=cluster)
    results["convert"], results["evaluate"] = [], []
    with tempfile.TemporaryDirectory(prefix="faceswap-run-") as tmp:
        for video, out in zip(videos, outputs):
            stage(f"convert {os.path.basename(video)}")
            conv = ConvertConfig(video=video, faces=faces_a, model=model, out=out,
                                 work=work.url(f"convert/{source_id(video)}"), **cfg.convert)
            results["convert"].append(run_convert(conv, progress=progress, cluster=cluster))
            results["outputs"].append(out)
            if cfg.evaluate:
                stage(f"evaluate {os.path.basename(out)}")
                from faceswap.stages.evaluate import print_report, run_evaluate

                base = _report_base(out)
                ev = EvaluateConfig(original=video, swapped=out, target=_target_references(cfg, faces_b, tmp),
                                    replaced=cfg.identity, json=f"{base}.report.json", plot=f"{base}.report.png")
                report = run_evaluate(ev, cluster=cluster)
                if progress:
                    print_report(report)
                results["evaluate"].append({"json": ev.json, "plot": ev.plot,
                                            **{k: v for k, v in report.items() if k != "per_frame"}})
    results["seconds"] = round(time.monotonic() - t0, 1)
    return results


def run_demo(out_dir: str, steps: int = 0, cluster: Cluster | None = None) -> dict:
    """Samples -> the whole pipeline on local Ray, with a local folder as the store."""
    from faceswap.samples import write_samples

    if is_remote(out_dir):
        raise InputError(f"{out_dir}: the demo writes to a local folder")
    out_dir = os.path.abspath(out_dir)
    t0 = time.monotonic()
    print(f"writing sample clips to {out_dir}/samples", flush=True)
    samples = write_samples(os.path.join(out_dir, "samples"), sizes=("small",))
    cfg = RunConfig(
        footage=[samples["a_bystander_small.mp4"]],
        target=[samples["b_small.mp4"], samples["refs/b.png"]],
        identity=[samples["refs/a.png"]],
        target_identity=[samples["refs/b.png"]],
        work=os.path.join(out_dir, "store"),
        output=os.path.join(out_dir, "swapped.mp4"),
        # No mirrored samples: each sample identity is one photo in one pose, and with flips the decoders
        # learn both mirror images, so A's head turn could map to B's mirrored one (pose error 6.2 -> 3.5 deg).
        train={"preset": "lite", "steps": steps or DEMO_STEPS, "minutes": 0.0 if steps else DEMO_TRAIN_MINUTES,
               "flip": 0.0},
        # Lossless, so the evaluation can show that nothing outside the faces changed.
        convert={"lossless": True, "label": DEMO_LABEL},
    )
    results = run_pipeline(cfg, cluster=cluster)
    from faceswap.provenance.verify import format_report, verify

    print("\n== verify ==")
    print(format_report(verify(cfg.output)))
    preview = os.path.join(cfg.work, "model", "previews", "latest.png")
    ev = results["evaluate"][0] if results["evaluate"] else {}
    print(f"\ndemo finished in {time.monotonic() - t0:.0f} s")
    print(f"  output video:      {cfg.output}")
    print(f"  training preview:  {preview}")
    if ev:
        print(f"  evaluation report: {ev['json']}")
        print(f"  evaluation plot:   {ev['plot']}")
    return results

