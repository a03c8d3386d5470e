"""Face-set coverage (`faceswap inspect`): the measures on real landmarks, the warnings, the CLI
on local and s3:// face sets, bad input, and the report on the real benchmark footage.

    face set (extract layout) -> edit some records (eyes shut) -> faceswap inspect A B
      -> warnings naming A's frames that B lacks, a PNG with both distributions
"""

from __future__ import annotations

import json
import os
import sys

import cv2
import numpy as np
import pyarrow as pa
import pytest

from faceswap.metrics import coverage, expression
from faceswap.storage import Store

sys.path.insert(0, os.path.dirname(__file__))
from test_model import _source, build_faceset  # noqa: E402


def _shut_eyes(pts: np.ndarray) -> np.ndarray:
    """The same face with both eyes shut: each upper lid point moved onto the lower lid below it."""
    out = np.array(pts, dtype=np.float64).reshape(68, 2)
    for top, bottom in ((37, 41), (38, 40), (43, 47), (44, 46)):
        mid = (out[top] + out[bottom]) / 2
        out[top], out[bottom] = mid + (0, -0.3), mid + (0, 0.3)
    return out


def _turned(pts: np.ndarray, degrees: float) -> np.ndarray:
    """The nose tip moved sideways as a head turned by ``degrees`` would move it (eyes kept)."""
    out = np.array(pts, dtype=np.float64).reshape(68, 2)
    left, right = (out[36] + out[39]) / 2, (out[42] + out[45]) / 2
    dist = np.linalg.norm(right - left)
    now = coverage.nose_offsets(out)[0]
    out[30, 0] += (coverage.NOSE_DEPTH_IOD * np.tan(np.radians(degrees)) - now) * dist
    return out


def test_openness_and_turn_on_a_real_face():
    _, pts = _source("a")  # the astronaut: eyes open, mouth closed, facing the camera
    assert expression.eye_openness(pts) > expression.EYES_CLOSED_BELOW
    assert expression.eye_openness(_shut_eyes(pts)) < expression.EYES_CLOSED_BELOW
    assert expression.mouth_openness(pts) < expression.MOUTH_OPEN_ABOVE
    open_mouth = np.array(pts, np.float64)
    open_mouth[65:68, 1] += 0.6 * np.linalg.norm(pts[60] - pts[64])
    open_mouth[56:59, 1] += 0.6 * np.linalg.norm(pts[60] - pts[64])
    assert expression.mouth_openness(open_mouth) > expression.MOUTH_OPEN_ABOVE
    yaw, _ = coverage.head_turns(np.stack([pts, _turned(pts, 25), _turned(pts, -25)]))
    assert abs(yaw[0]) < 8
    assert yaw[1] == pytest.approx(25, abs=0.5) and yaw[2] == pytest.approx(-25, abs=0.5)
    # Rolled and scaled, the same face gives the same measures: they are ratios in the eye line's frame.
    m = cv2.getRotationMatrix2D((100, 100), 30, 1.7)
    moved = pts @ m[:, :2].T + m[:, 2]
    assert coverage.nose_offsets(moved) == pytest.approx(coverage.nose_offsets(pts), abs=1e-9)
    assert expression.eye_openness(moved) == pytest.approx(expression.eye_openness(pts), abs=1e-9)


def _states(name, yaw, pitch, eyes, mouth, source="clip.mp4"):
    n = len(yaw)
    return coverage.FaceSetStates(name, [source] * n, np.arange(n), np.asarray(yaw, float),
                                  np.asarray(pitch, float), np.asarray(eyes, float), np.asarray(mouth, float))


def test_warnings_name_what_b_lacks_with_the_frames():
    rng = np.random.default_rng(0)
    n = 60
    yaw_a = rng.normal(0, 2, n)
    yaw_a[40:50] = 30 + rng.normal(0, 1, 10)  # A turns far to one side in frames 40-49
    eyes_a = np.full(n, 0.3)
    eyes_a[10:21] = 0.08  # A's eyes are shut in frames 10-20
    a = _states("A", yaw_a, rng.normal(0, 2, n), eyes_a, np.full(n, 0.1))
    b = _states("B", rng.normal(0, 2, 30), rng.normal(0, 2, 30), np.full(30, 0.3), np.full(30, 0.1), "b.mp4")
    warnings = coverage.compare(a, b)
    assert warnings[0] == ("B has no face with eyes closed; A has 11 (18%) with eyes closed "
                           "(clip.mp4 frames 10-20)")
    assert len(warnings) == 2 and "turned to the image's right" in warnings[1]
    assert warnings[1].endswith("clip.mp4 frames 40-49")
    assert a.uncovered[40:50].all() and not a.uncovered[:40].any()
    # B's poses all lie inside A's: nothing to say the other way.
    assert coverage.compare(b, a) == []
    # A few faces with an expression in B do not count when A has it far more often.
    b_rare = _states("B", np.zeros(100), np.zeros(100), np.r_[np.full(4, 0.08), np.full(96, 0.3)],
                     np.full(100, 0.1))
    assert coverage.compare(a, b_rare)[0].startswith("B has only 4 faces (4%) with eyes closed")
    assert coverage.frame_ranges(["x.mp4"] * 5 + ["y.png"], np.array([1, 2, 4, 9, 30, 0])) == \
        "x.mp4 frames 1-4, 9, 30; y.png frame 0"


def _eyes_shut_faceset(uri: str, shut: range) -> Store:
    """The astronaut's face set with the eyes of the faces in ``shut`` shut (records only)."""
    store = build_faceset(uri, "a", n=24, size=64)
    key = store.list("alignments", suffix=".parquet")[0]
    table = store.read_parquet(key)
    lms = table.column("landmarks").to_pylist()
    for i in shut:
        lms[i] = _shut_eyes(np.asarray(lms[i]).reshape(68, 2)).astype(np.float32).ravel().tolist()
    index = table.schema.get_field_index("landmarks")
    store.write_parquet(key, table.set_column(index, table.schema.field(index), pa.array(lms, table.schema.field(index).type)))
    return store


@pytest.mark.parametrize("where", ["local", "s3"])
def test_cli_reports_the_frames_b_lacks_and_draws_both_sets(where, run_cli, tmp_path, request):
    root = Store(str(tmp_path)) if where == "local" else request.getfixturevalue("s3_store")
    a = _eyes_shut_faceset(root.url("a"), range(5, 12))
    b = build_faceset(root.url("b"), "b", n=24, size=64)
    proc = run_cli("inspect", a.uri, b.uri, "--plot", root.url("out/coverage.png"), "--json", root.url("out/c.json"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"face set A ({a.uri}): 24 faces") and "7 with eyes closed" in lines[0]
    assert "warning: B has no face with eyes closed; A has 7 (29%) with eyes closed (astronaut frames 5-11)" in lines
    report = root.read_json("out/c.json")
    assert report["summary"]["A"]["eyes_closed"] == 7 and report["summary"]["B"]["eyes_closed"] == 0
    png = cv2.imdecode(np.frombuffer(root.read_bytes("out/coverage.png"), np.uint8), cv2.IMREAD_COLOR)
    assert png is not None and png.shape[1] > png.shape[0] > 400  # two panels side by side, two rows


def test_cli_bad_face_set_is_one_line_exit_2(run_cli, tmp_path):
    good = build_faceset(str(tmp_path / "b"), "b", n=4, size=64)
    (tmp_path / "empty").mkdir()
    for bad, says in ((tmp_path / "missing", "no such"), (tmp_path / "empty", "no manifest.json")):
        proc = run_cli("inspect", bad, good.uri, "--plot", tmp_path / "c.png")
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("faceswap: error: ")
        assert str(bad) in proc.stderr and says in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "c.png").exists()


def test_coverage_of_the_real_benchmark_footage(ray_local, real_clips, tmp_path):
    """The woman's closed eyes and her strongest head turns are named as lacking from the man's set."""
    from faceswap.config import ExtractConfig, InspectConfig
    from faceswap.stages.extract import run_extract
    from faceswap.stages.inspect import run_inspect

    woman, man = str(tmp_path / "woman"), str(tmp_path / "man")
    run_extract(ExtractConfig(inputs=[real_clips["WolfgangLanger_Pexels.mp4"]], out=woman), progress=False)
    run_extract(ExtractConfig(inputs=[real_clips["single_face.mp4"]], out=man), progress=False)
    report = run_inspect(InspectConfig(a=woman, b=man, plot=str(tmp_path / "coverage.png"), json=""))
    warnings = report["warnings"]
    eyes = [w for w in warnings if w.startswith("B has ") and "eyes closed" in w]
    assert len(eyes) == 1 and "WolfgangLanger_Pexels.mp4 frames 0-" in eyes[0]  # she cries with her eyes shut
    turns = [w for w in warnings if w.startswith("B has no head pose") and "turned" in w]
    assert {"turned to the image's left", "turned to the image's right"} <= {
        d for w in turns for d in ("turned to the image's left", "turned to the image's right") if d in w}
    yaw = report["summary"]["A"]["yaw_deg"]
    assert yaw[0] < -20 and yaw[1] > 20  # her strongest turns, both ways
    man_yaw = report["summary"]["B"]["yaw_deg"]
    assert man_yaw[1] - man_yaw[0] < 15  # he faces the camera throughout
    assert not [w for w in warnings if w.startswith("A has")]  # the man shows nothing the woman lacks
    assert os.path.getsize(tmp_path / "coverage.png") > 20_000
    json.dumps(report)  # the report is plain JSON
