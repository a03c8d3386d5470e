"""The watermark on real convert outputs, across the inputs a user brings.

One small model per module, trained just long enough (TRAIN_STEPS) that its faces are faces
to a detector: the 4-step model of test_convert renders a featureless blob, where no
detector finds a face, so neither can verify (measured: 0 faces in 100 frames; 150 steps: 79). Each case is an input cut from the
bundled sample a_small.mp4 (or, for the two-person shot, a_small beside a larger b_small),
re-encoded to another codec, pixel format, rate, size or audio layout, then extracted and
converted. Every output is verified as converted, after `-map_metadata -1 -c copy`, and
after that plus CRF 28 at half size; every input, unconverted, must stay unmarked.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from faceswap.config import ConvertConfig, ExtractConfig, TrainConfig
from faceswap.provenance import verify

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
FRAMES = 60  # >= 50 frames of a swapped face per case (the acceptance), short enough for CI
CHECK_FRAMES = 96  # verify reads every frame of these clips
TRAIN_STEPS = 150

# name -> (file suffix, ffmpeg output options); input 0 is a_small.mp4 (input 1 b_small.mp4 for two people).
# Axes are combined so that seven conversions cover them all.
CASES = {
    "h264_aac": (".mp4", ["-frames:v", FRAMES, "-c:v", "libx264", "-crf", "18", "-c:a", "aac"]),
    "hevc_10bit_two_audio_tracks": (".mp4", ["-frames:v", FRAMES, "-map", "0:v", "-map", "0:a", "-map", "0:a",
                                             "-c:v", "libx265", "-pix_fmt", "yuv420p10le",
                                             "-x265-params", "log-level=error", "-c:a", "aac"]),
    "yuv444_odd_size_audio_half_length": (".mp4", ["-frames:v", FRAMES, "-vf", "scale=385:289", "-c:v", "libx264",
                                                   "-pix_fmt", "yuv444p", "-af", "atrim=0:1.2", "-c:a", "aac"]),
    "vp9_opus_webm": (".webm", ["-frames:v", FRAMES, "-c:v", "libvpx-vp9", "-deadline", "realtime",
                                "-cpu-used", "8", "-b:v", "1M", "-c:a", "libopus"]),
    "prores_pcm_mov_30fps": (".mov", ["-frames:v", FRAMES, "-vf", "setpts=N/30/TB", "-r", "30", "-c:v", "prores_ks",
                                      "-profile:v", "0", "-c:a", "pcm_s16le"]),
    "first_20_frames_black_no_audio": (".mp4", ["-frames:v", FRAMES + 20, "-vf",
                                                "drawbox=enable='lt(n,20)':c=black:t=fill", "-c:v", "libx264",
                                                "-an"]),
    # host (b, untouched) scaled 1.3x beside the guest (a, swapped): the largest face is not the marked one.
    # (At 1.15x the two faces measured 162 px each: Grace Hopper's face is smaller in her frame than the
    # astronaut's, and which of the two measured larger turned on a fraction of a pixel.)
    "two_person_shot": (".mp4", ["-filter_complex", "[1:v]scale=500:376,crop=384:288[b];[0:v][b]hstack=inputs=2",
                                 "-frames:v", FRAMES, "-c:v", "libx264", "-map", "0:a", "-c:a", "aac"]),
}
pytestmark = pytest.mark.slow  # a 150-step model, 7 extract + convert runs, 29 verifies: minutes on 2 cores

STRIP = ["-map", "0", "-map_metadata", "-1", "-c", "copy"]
LAUNDER = ["-map_metadata", "-1", "-c:v", "libx264", "-crf", "28", "-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2", "-an"]


def _ffmpeg(*args) -> None:
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def matrix(ray_local, samples_dir, tmp_path_factory):
    """{case: {"input", "converted", "stripped", "laundered"}} and the model's fingerprint."""
    from faceswap.model.export import load_swapper
    from faceswap.stages.convert import run_convert
    from faceswap.stages.extract import run_extract
    from faceswap.stages.train import run_train

    root = tmp_path_factory.mktemp("provenance-matrix")
    a, b = os.path.join(samples_dir, "a_small.mp4"), os.path.join(samples_dir, "b_small.mp4")
    ref_a = os.path.join(samples_dir, "refs/a.png")
    faces_a, faces_b, model = (str(root / n) for n in ("faces_a", "faces_b", "model"))
    run_extract(ExtractConfig(inputs=[a], out=faces_a), progress=False)
    run_extract(ExtractConfig(inputs=[b], out=faces_b), progress=False)
    run_train(TrainConfig(a=faces_a, b=faces_b, out=model, steps=TRAIN_STEPS, batch_size=8,
                          checkpoint_every=TRAIN_STEPS, preview_every=TRAIN_STEPS), progress=False)
    cases = {}
    for name, (suffix, options) in CASES.items():
        paths = {k: str(root / f"{name}.{k}{suffix if k == 'input' else '.mp4'}")
                 for k in ("input", "converted", "stripped", "laundered")}
        _ffmpeg("-i", a, *(["-i", b] if name == "two_person_shot" else []), *options, paths["input"])
        faces = str(root / f"{name}.faces")
        # the two-person shot keeps only a's face: b is the untouched host
        run_extract(ExtractConfig(inputs=[paths["input"]], out=faces,
                                  identity=[ref_a] if name == "two_person_shot" else []), progress=False)
        run_convert(ConvertConfig(video=paths["input"], faces=faces, model=model, out=paths["converted"]),
                    progress=False)
        _ffmpeg("-i", paths["converted"], *STRIP, paths["stripped"])
        _ffmpeg("-i", paths["converted"], *LAUNDER, paths["laundered"])
        cases[name] = paths
    return {"cases": cases, "fingerprint": load_swapper(model).fingerprint}


def _check(path: str) -> dict:
    return verify.verify(path, max_frames=CHECK_FRAMES)


@pytest.mark.parametrize("case", list(CASES))
def test_output_carries_the_mark_as_converted_and_stripped(matrix, case):
    paths, payload = matrix["cases"][case], matrix["fingerprint"][:4]
    converted, stripped = _check(paths["converted"]), _check(paths["stripped"])
    assert converted["by"] == ["metadata", "watermark"], verify.format_report(converted)
    assert converted["watermark"] == "payload" and converted["payload"] == payload, verify.format_report(converted)
    assert stripped["tags"].get("synthetic_media") is None
    assert stripped["by"] == ["watermark"] and stripped["payload"] == payload, verify.format_report(stripped)
    if case == "two_person_shot":
        # both faces were read; the mark is carried by the smaller one, the host's track stays clean
        assert len(stripped["tracks"]) >= 2, verify.format_report(stripped)
        carrier = [t for t in stripped["tracks"] if t["payload"] == payload]
        clean = [t for t in stripped["tracks"] if t["payload"] is None]
        assert carrier and clean and max(t["size_px"] for t in clean) >= max(t["size_px"] for t in carrier)


@pytest.mark.parametrize("case", list(CASES))
def test_unconverted_input_stays_unmarked(matrix, case):
    report = _check(matrix["cases"][case]["input"])
    assert not report["marked"] and report["watermark"] == "absent" and report["payload"] is None, \
        verify.format_report(report)
    assert report["faces_checked"] > 0


@pytest.fixture(scope="module")
def laundered(matrix):
    return {case: _check(paths["laundered"]) for case, paths in matrix["cases"].items()}


def test_laundered_outputs_never_name_a_wrong_model(matrix, laundered):
    """Metadata stripped + CRF 28 + half size: a payload, when one is read, is the model's."""
    payload = matrix["fingerprint"][:4]
    assert all(r["payload"] in (payload, None) for r in laundered.values()), \
        {case: verify.format_report(r) for case, r in laundered.items()}


def test_laundered_outputs_keep_the_payload_in_nine_of_ten_cases(matrix, laundered):
    """The issue's acceptance: after stripping + CRF 28 + half size, the payload in >= 90% of the cases
    (with seven cases: all of them). Measured 2026-11-30: payload correlation 8.1-10.9 against 7.15-7.30."""
    payload = matrix["fingerprint"][:4]
    lost = {case: verify.format_report(r) for case, r in laundered.items() if r["payload"] != payload}
    assert len(lost) <= len(laundered) // 10, lost


def test_verify_reads_s3_uris(matrix, s3_store, run_cli):
    s3_store.put_file(matrix["cases"]["h264_aac"]["stripped"], "film.mp4")
    proc = run_cli("verify", s3_store.url("film.mp4"), "--max-frames", CHECK_FRAMES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"payload {matrix['fingerprint'][:4]}" in proc.stdout
    missing = run_cli("verify", s3_store.url("missing.mp4"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().count("\n") == 0 and "missing.mp4" in missing.stderr
