"""Where a swapped face's extra landmark motion comes from: the jitter split by the parts of the face.

    python benchmarks/jitter_parts.py ORIGINAL SWAPPED [SWAPPED ...]

For every pair of consecutive frames with a face, the 68 landmarks are fitted (dlib) on both frames of the
original with the box the detector found on the original's later frame, and on both frames of each swapped
video with that same box; the motion of each landmark between the two frames is summed per part (jaw, brows,
nose, eyes, mouth). Printed per swapped video: swapped / original motion overall and per part, and each part's
share of the excess motion. Unlike `faceswap evaluate`'s `jitter_ratio` (which fits the swapped frames with the
box redetected on the swapped face), one box serves both videos here, so the box's own change between the two
detections is not part of the figure: it shows where the face painted into the footage moves more than the
footage's face, not the headline number.
"""

from __future__ import annotations

import argparse

import numpy as np

PARTS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
         "mouth": range(48, 68)}


def part_motion(original: str, swapped: list[str]) -> tuple[dict, list[dict]]:
    """({part: original motion px}, [{part: swapped motion px}] per swapped video), summed over frame pairs."""
    from faceswap.faces.backend import make_backend
    from faceswap.video.decode import iter_frames
    from faceswap.video.probe import probe

    backend = make_backend("dlib")
    frames = probe(original).frames
    streams = [iter_frames(path, 0, frames) for path in [original, *swapped]]
    totals = [{p: 0.0 for p in PARTS} for _ in streams]
    previous = None
    for decoded in zip(*streams):
        images = [rgb for _, _, rgb in decoded]
        boxes = backend.detect(images[0])
        if len(boxes) and previous is not None:
            for total, before, now in zip(totals, previous, images):
                a, b = (np.asarray(backend.landmarks(x, [boxes[0]])[0][0], np.float64) for x in (before, now))
                motion = np.linalg.norm(b - a, axis=1)
                for part, points in PARTS.items():
                    total[part] += float(motion[list(points)].sum())
        previous = images if len(boxes) else None
    return totals[0], totals[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("original")
    parser.add_argument("swapped", nargs="+")
    args = parser.parse_args()
    original, swapped = part_motion(args.original, args.swapped)
    all_o = sum(original.values())
    for path, motion in zip(args.swapped, swapped):
        all_s = sum(motion.values())
        print(f"{path}: swapped / original landmark motion {all_s / all_o:.3f}")
        for part in PARTS:
            share = (motion[part] - original[part]) / (all_s - all_o) if all_s != all_o else 0.0
            print(f"  {part:6s} {motion[part] / original[part]:.3f}   share of the excess {share:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
