"""Evaluate: metric functions on synthetic landmarks and frames, and the stage end to end
on the sample clips (self-evaluation, a deliberately wrong swap, the bystander check, the CLI).

    sample clip -> edit frames (paste, recolour) -> SegmentWriter -> "swapped" video
      -> run_evaluate (local 2-CPU Ray, a few frames spread over the clip) -> report
"""

from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import pytest

from faceswap.config import EvaluateConfig
from faceswap.metrics import expression, fidelity, pose, temporal

FEW_FRAMES = 8  # frames per end-to-end run: enough to see every effect, cheap on 2 shared cores


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def backend():
    from faceswap.faces.backend import make_backend

    return make_backend("dlib")


def _faces(backend, rgb):
    """(box, landmarks) of each face, found as the evaluate stage finds them (1.25x upscale)."""
    small = cv2.resize(rgb, None, fx=1.25, fy=1.25, interpolation=cv2.INTER_LINEAR)
    boxes = [b / 1.25 for b in backend.detect(small)]
    return [(b, pts) for b, (pts, _) in zip(boxes, backend.landmarks(rgb, boxes))]


def _rewrite(src: str, dst: str, edit) -> str:
    """Decode every frame of ``src``, apply ``edit(index, rgb) -> rgb``, encode to ``dst`` (H.264 CRF 18)."""
    from faceswap.video.decode import iter_frames
    from faceswap.video.encode import SegmentWriter
    from faceswap.video.probe import probe

    info = probe(src)
    with SegmentWriter(dst, info.width, info.height, info.fps) as writer:
        for index, _, rgb in iter_frames(src, 0, info.frames):
            writer.write(np.ascontiguousarray(edit(index, rgb.copy())))
    return dst


def _evaluate(samples_dir, original, swapped, tmp_path, **kw):
    from faceswap.stages.evaluate import run_evaluate

    cfg = EvaluateConfig(original=original, swapped=swapped, target=[os.path.join(samples_dir, "refs", "b.png")],
                         max_frames=kw.pop("max_frames", FEW_FRAMES), json=str(tmp_path / "report.json"), **kw)
    return run_evaluate(cfg)


# ---------------------------------------------------------------- metric functions


def _a_landmarks(backend, samples_dir):
    from faceswap.video.decode import iter_frames

    _, _, rgb = next(iter_frames(os.path.join(samples_dir, "a_small.mp4"), 0, 1))
    (_, pts), = _faces(backend, rgb)
    return rgb, pts.astype(np.float64)


def test_pose_error_measures_in_plane_rotation(backend, samples_dir):
    rgb, pts = _a_landmarks(backend, samples_dir)
    centre = tuple(float(c) for c in pts.mean(axis=0))
    for angle in (10.0, -25.0):
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        turned = pts @ m[:, :2].T + m[:, 2]
        err = pose.pose_error(pts, turned, rgb.shape)
        assert err[2] == pytest.approx(abs(angle), abs=0.5)  # roll carries the turn
        assert err[0] < 2.0 and err[1] < 2.0
        # A similarity transform moves no eye or mouth relative to the face.
        assert expression.expression_error(pts, turned) < 1e-9
    assert np.all(pose.pose_error(pts, pts, rgb.shape) == 0)


def test_expression_error_sees_an_open_mouth(backend, samples_dir):
    _, pts = _a_landmarks(backend, samples_dir)
    opened = pts.copy()
    opened[57] += (0, 8.0)  # lower lip down
    opened[66] += (0, 8.0)
    err = expression.expression_error(pts, opened)
    assert 0.005 < err < 0.1


def test_psnr_flicker_and_changed_face():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    hull = np.zeros((64, 80), np.float32)
    hull[16:48, 20:60] = 1
    outside = fidelity.outside_mask([hull], a.shape, margin_px=4)
    assert not outside[14, 30] and not outside[30, 40] and outside[5, 5]  # the hull grown by 4 px is excluded
    assert fidelity.psnr_db(*fidelity.squared_error(a, a, outside)) == fidelity.PSNR_CAP_DB
    b = a.copy()
    b[hull > 0] = 255 - b[hull > 0]  # inside the face only
    assert fidelity.psnr_db(*fidelity.squared_error(a, b, outside)) == fidelity.PSNR_CAP_DB
    assert fidelity.face_difference(a, b, hull) > 50
    assert fidelity.face_difference(a, a, hull) == 0
    noisy = np.clip(a.astype(np.int16) + rng.integers(-2, 3, a.shape), 0, 255).astype(np.uint8)
    assert fidelity.face_difference(a, noisy, hull) < fidelity.CHANGED_THRESHOLD
    assert 40 < fidelity.psnr_db(*fidelity.squared_error(a, noisy, outside)) < 50
    assert fidelity.psnr_db(0.0, 0) is None
    region = hull > 0
    s, n = temporal.frame_change(a, b, region)
    assert temporal.flicker_ratio(s, s, n) == 1.0
    assert temporal.flicker_ratio(2 * s, s, n) == 2.0
    assert temporal.flicker_ratio(0.0, 0.0, 0) is None


def test_select_frames_spreads_a_subset():
    from faceswap.stages.evaluate import select_frames

    assert select_frames(10, 0) == list(range(10))
    assert select_frames(100, 5) == [0, 25, 50, 74, 99]
    assert select_frames(3, 8) == [0, 1, 2]


def test_sharpness_ratio_falls_for_a_blurred_face(backend, samples_dir):
    from faceswap.metrics import sharpness

    ref = cv2.cvtColor(cv2.imread(os.path.join(samples_dir, "refs", "a.png")), cv2.COLOR_BGR2RGB)
    (_, pts), = _faces(backend, ref)
    same = sharpness.sharpness_ratio([sharpness.face_energies(ref, ref, pts)])
    blurred = sharpness.sharpness_ratio([sharpness.face_energies(ref, cv2.GaussianBlur(ref, (0, 0), 2), pts)])
    sharpened = sharpness.sharpness_ratio([sharpness.face_energies(
        ref, cv2.addWeighted(ref, 2.0, cv2.GaussianBlur(ref, (0, 0), 1.5), -1.0, 0), pts)])
    assert same == 1.0
    assert blurred < 0.5 < 1.0 < sharpened
    # A blur outside the eroded hull (and the Laplacian's 1 px reach) does not count: the seam is left out.
    from faceswap.faces.masks import erode

    outside = ref.copy()
    reach = erode(sharpness.region(pts, ref.shape[:2]).astype(np.float32), -2) > 0.5
    outside[~reach] = cv2.GaussianBlur(ref, (0, 0), 2)[~reach]
    assert sharpness.sharpness_ratio([sharpness.face_energies(ref, outside, pts)]) == pytest.approx(1.0, abs=1e-6)
    assert sharpness.sharpness_ratio([]) is None


# ---------------------------------------------------------------- the stage on the sample clips


def test_a_video_against_itself_is_perfect(ray_local, samples_dir, tmp_path):
    a = os.path.join(samples_dir, "a_small.mp4")
    report = _evaluate(samples_dir, a, a, tmp_path)
    assert report["frames"] == FEW_FRAMES and report["frames_without_faces"] == 0
    assert report["swapped_frames"] == 0 and report["changed_faces"] == 0
    assert report["unchanged_faces"] == FEW_FRAMES
    assert report["pose_error_deg"] == 0.0 and report["expression_error"] < 1e-9
    assert report["flicker_ratio"] == 1.0 and report["jitter_ratio"] == 1.0
    assert report["sharpness_ratio"] == pytest.approx(1.0, abs=0.02)
    assert report["psnr_outside_db"] == fidelity.PSNR_CAP_DB
    # The faces show A, the target references B: nothing is retrieved as B.
    assert report["identity_retrieval"] == 0.0
    assert report["identity_distance_replaced"] == pytest.approx(0.0, abs=1e-6)
    assert report["identity_distance_target"] > 0.6
    assert report["frames_original"] == report["frames_swapped"] == 100
    assert report["order_ok"] is True and report["frame_order_share"] == 1.0
    assert report["audio_ok"] is True and report["audio_duration_swapped_s"] == report["audio_duration_original_s"]
    # The JSON on disk is strict JSON (no NaN/Infinity) and holds the same report.
    text = (tmp_path / "report.json").read_text()
    on_disk = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in the report"))
    assert on_disk["psnr_outside_db"] == report["psnr_outside_db"] and len(on_disk["per_frame"]) == FEW_FRAMES


def test_a_wobbling_face_shows_in_the_jitter_ratio(ray_local, samples_dir, tmp_path):
    """Every other frame shifted 3 px: the face wobbles where the footage's did not."""
    a = os.path.join(samples_dir, "a_small.mp4")
    wobbly = _rewrite(a, str(tmp_path / "wobbly.mp4"), lambda i, rgb: np.roll(rgb, 3 * (i % 2), axis=1))
    steady = _rewrite(a, str(tmp_path / "steady.mp4"), lambda i, rgb: np.roll(rgb, 3, axis=1))
    jitter = {name: _evaluate(samples_dir, a, path, tmp_path)["jitter_ratio"]
              for name, path in (("wobbly", wobbly), ("steady", steady))}
    assert jitter["steady"] == pytest.approx(1.0, abs=0.15)
    assert jitter["wobbly"] > 1.5 * jitter["steady"]


def _paste_b_turned(backend, samples_dir, a_path, angle_deg):
    """An edit that pastes B's still face (refs/b.png), turned by ``angle_deg``, at one fixed place
    and scale over the box that A's face moves in."""
    from faceswap.video.decode import iter_frames

    boxes = np.array([_faces(backend, rgb)[0][0] for i, _, rgb in iter_frames(a_path, 0, 100) if i % 10 == 0])
    x0, y0 = boxes[:, :2].min(axis=0)
    x1, y1 = boxes[:, 2:].max(axis=0)
    ref = cv2.cvtColor(cv2.imread(os.path.join(samples_dir, "refs", "b.png")), cv2.COLOR_BGR2RGB)
    (bx0, by0, bx1, by1), _ = _faces(backend, ref)[0]
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    m = cv2.getRotationMatrix2D(((bx0 + bx1) / 2, (by0 + by1) / 2), angle_deg, (x1 - x0) / (bx1 - bx0))
    m[:, 2] += (centre[0] - (bx0 + bx1) / 2, centre[1] - (by0 + by1) / 2)

    def paste(index, rgb):
        h, w = rgb.shape[:2]
        face = cv2.warpAffine(ref, m, (w, h))
        mask = np.zeros((h, w), np.float32)
        cv2.ellipse(mask, (int(centre[0]), int(centre[1])), (int(0.6 * (x1 - x0)), int(0.7 * (y1 - y0))),
                    0, 0, 360, 1.0, -1)
        mask = (mask * cv2.warpAffine(np.ones(ref.shape[:2], np.float32), m, (w, h)))[..., None]
        return (rgb * (1 - mask) + face * mask).astype(np.uint8)

    return paste


def test_a_wrong_swap_shows_a_large_pose_error(ray_local, backend, samples_dir, tmp_path):
    a = os.path.join(samples_dir, "a_small.mp4")
    # A rolls +-10 deg through the clip; a still B turned by 25 deg never matches it.
    swapped = _rewrite(a, str(tmp_path / "wrong.mp4"), _paste_b_turned(backend, samples_dir, a, 25.0))
    report = _evaluate(samples_dir, a, swapped, tmp_path)
    assert report["swapped_frames"] > FEW_FRAMES // 2
    assert report["pose_error_deg"] > 8.0
    assert report["pose_error_roll_deg"] > 15.0
    # It is B (the refs' own still), so identity is retrieved; and a still face does not move.
    assert report["identity_retrieval"] > 0.5
    assert report["identity_distance_target"] < report["identity_distance_replaced"]
    assert report["flicker_ratio"] < 0.5
    assert report["frames_swapped"] == 100 and report["order_ok"] is True
    assert report["has_audio_swapped"] is False and report["audio_ok"] is False


def _recolour_faces(backend, which):
    """An edit that swaps red and blue inside the hull of each face that ``which(box, width)`` picks."""
    from faceswap.faces.masks import hull_mask

    def edit(index, rgb):
        for box, pts in _faces(backend, rgb):
            if which(box, rgb.shape[1]):
                inside = hull_mask(pts, rgb.shape[:2]) > 0
                rgb[inside] = rgb[inside][:, ::-1]
        return rgb

    return edit


def test_the_report_tells_which_faces_changed(ray_local, backend, samples_dir, tmp_path):
    src = os.path.join(samples_dir, "a_bystander_small.mp4")
    is_bystander = lambda box, width: (box[0] + box[2]) / 2 > width / 2  # noqa: E731 - A left, bystander right
    both = _rewrite(src, str(tmp_path / "both.mp4"), _recolour_faces(backend, lambda box, width: True))
    only_a = _rewrite(src, str(tmp_path / "only_a.mp4"),
                      _recolour_faces(backend, lambda box, width: not is_bystander(box, width)))
    counts = {}
    for name, swapped in (("both", both), ("only_a", only_a)):
        report = _evaluate(samples_dir, src, swapped, tmp_path)
        faces = [(f, rec["frame"]) for rec in report["per_frame"] for f in rec["faces"]]
        width = 384
        counts[name] = {
            "bystander_changed": sum(f["changed"] for f, _ in faces if is_bystander(f["bbox"], width)),
            "bystander_unchanged": sum(not f["changed"] for f, _ in faces if is_bystander(f["bbox"], width)),
            "a_changed": sum(f["changed"] for f, _ in faces if not is_bystander(f["bbox"], width)),
        }
        assert report["changed_faces"] + report["unchanged_faces"] == len(faces)
        assert report["psnr_outside_db"] > 35  # only the recoloured hulls (and codec noise) differ
    assert counts["both"]["bystander_changed"] >= FEW_FRAMES - 1 and counts["both"]["bystander_unchanged"] == 0
    assert counts["only_a"]["bystander_changed"] == 0 and counts["only_a"]["bystander_unchanged"] >= FEW_FRAMES - 1
    assert counts["both"]["a_changed"] >= FEW_FRAMES - 1 and counts["only_a"]["a_changed"] >= FEW_FRAMES - 1


# ---------------------------------------------------------------- CLI


def test_cli_writes_json_and_plot(run_cli, samples_dir, tmp_path):
    a = os.path.join(samples_dir, "a_small.mp4")
    out_json, out_png = tmp_path / "r" / "report.json", tmp_path / "r" / "report.png"
    proc = run_cli("evaluate", "--original", a, "--swapped", a, "--target", os.path.join(samples_dir, "refs", "b.png"),
                   "--replaced", os.path.join(samples_dir, "refs", "a.png"), "--max-frames", 4,
                   "--json", out_json, "--plot", out_png)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out_json.read_text())
    assert report["frames"] == 4 and report["identity_replaced_from"] == "--replaced references"
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "pose error" in proc.stdout and "PSNR outside the faces" in proc.stdout


def test_cli_missing_original_is_one_line_exit_2(run_cli, samples_dir, tmp_path):
    missing = tmp_path / "nope.mp4"
    proc = run_cli("evaluate", "--original", missing, "--swapped", os.path.join(samples_dir, "a_small.mp4"),
                   "--target", os.path.join(samples_dir, "refs", "b.png"))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("faceswap: error")]
    assert len(errors) == 1 and str(missing) in errors[0] and "Traceback" not in proc.stderr


def test_the_visible_label_is_left_out_of_psnr(ray_local, samples_dir, tmp_path):
    from faceswap.provenance.label import draw_label
    from faceswap.video.ffmpeg import run_ffmpeg

    a = os.path.join(samples_dir, "a_small.mp4")
    labelled = _rewrite(a, str(tmp_path / "labelled.mp4"), lambda index, rgb: draw_label(rgb, "AI-GENERATED"))
    tagged = str(tmp_path / "tagged.mp4")
    run_ffmpeg(["-i", labelled, "-c", "copy", "-metadata", "faceswap_label=AI-GENERATED",
                "-movflags", "+use_metadata_tags", tagged], what=tagged)  # as assemble stamps it
    plain = _evaluate(samples_dir, a, labelled, tmp_path, max_frames=3)
    marked = _evaluate(samples_dir, a, tagged, tmp_path, max_frames=3)
    assert plain["settings"]["excluded_boxes"] == []
    (x0, y0, x1, y1), = marked["settings"]["excluded_boxes"]
    assert 192 < x0 < x1 <= 384 and 144 < y0 < y1 <= 288  # convert's corner: bottom-right
    assert plain["psnr_outside_db"] < 35 < marked["psnr_outside_db"]


def test_sharpness_ratio_on_real_footage(ray_local, real_clips, tmp_path):
    """A real talking-head clip against itself scores 1, a Gaussian-blurred copy (sigma 2) below 0.5."""
    from faceswap.stages.evaluate import run_evaluate
    from faceswap.video.decode import iter_frames
    from faceswap.video.encode import SegmentWriter
    from faceswap.video.probe import probe

    src = real_clips["WolfgangLanger_Pexels.mp4"]
    info = probe(src)
    clip, blurred = str(tmp_path / "real.mp4"), str(tmp_path / "blurred.mp4")
    with SegmentWriter(clip, info.width, info.height, info.fps) as plain, \
            SegmentWriter(blurred, info.width, info.height, info.fps) as soft:
        for _, _, rgb in iter_frames(src, 200, 248):  # eyes open, the hand moving away from the face
            plain.write(rgb)
            soft.write(cv2.GaussianBlur(rgb, (0, 0), 2))
    frame = str(tmp_path / "ref.png")
    cv2.imwrite(frame, cv2.cvtColor(next(iter_frames(src, 0, 1))[2], cv2.COLOR_RGB2BGR))
    refs = [frame]
    same = run_evaluate(EvaluateConfig(original=clip, swapped=clip, target=refs, max_frames=6))
    soft = run_evaluate(EvaluateConfig(original=clip, swapped=blurred, target=refs, max_frames=6))
    assert same["faces"] >= 6 and soft["faces"] >= 6
    assert same["sharpness_ratio"] == pytest.approx(1.0, abs=0.02)
    assert soft["sharpness_ratio"] < 0.5
