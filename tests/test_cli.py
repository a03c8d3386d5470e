"""The command line: every command listed, usage errors are one line with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from faceswap.cli import build_parser, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMANDS = ["extract", "train", "convert", "assemble", "run", "demo", "evaluate", "verify", "samples"]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command} " in out, command
    assert "--ray-address" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"usage: faceswap {command}" in capsys.readouterr().out


def test_contract_flags_exist():
    parser = build_parser()
    args = parser.parse_args(["extract", "v.mp4", "photos/", "--out", "s3://b/faces", "--identity", "r.png",
                              "--backend", "fan", "--size", "128", "--workers", "3"])
    assert args.inputs == ["v.mp4", "photos/"] and args.backend == "fan" and args.size == 128
    args = parser.parse_args(["train", "--a", "A", "--b", "B", "--out", "M", "--preset", "hd", "--steps", "5",
                              "--batch-size", "4", "--workers", "2", "--gpu"])
    assert args.preset == "hd" and args.gpu and args.batch_size == 4
    args = parser.parse_args(["convert", "v.mp4", "--faces", "F", "--model", "M", "--out", "o.mp4", "--workers", "2",
                              "--no-watermark", "--label", "AI"])
    assert args.watermark is False and args.label == "AI"
    args = parser.parse_args(["--ray-address", "auto", "evaluate", "--original", "a.mp4", "--swapped", "b.mp4",
                              "--target", "r.png", "--json", "r.json"])
    assert args.ray_address == "auto" and args.target == ["r.png"]
    args = parser.parse_args(["verify", "x.mp4", "--json"])
    assert args.json


@pytest.mark.parametrize("argv, fragment", [
    (["extract", "v.mp4"], "required: --out"),
    (["train", "--a", "A", "--b", "B", "--out", "M", "--preset", "huge"], "invalid choice: 'huge'"),
    (["nonsense"], "invalid choice: 'nonsense'"),
    (["convert", "v.mp4", "--faces", "F", "--model", "M", "--out", "o.mp4", "--crf", "high"], "invalid int value"),
])
def test_usage_errors_are_one_line_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and err.strip().count("\n") == 0


def test_missing_input_is_exit_2_with_the_file_named(run_cli, tmp_path):
    proc = run_cli("extract", tmp_path / "missing.mp4", "--out", tmp_path / "faces")
    assert proc.returncode == 2, proc.stderr
    assert "missing.mp4" in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "faces" / "manifest.json").exists()


def test_run_config_with_unknown_key_is_exit_2(run_cli, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("footage: [a.mp4]\ntarget: [b.mp4]\nwork: w\noutput: o.mp4\ntrian: {steps: 3}\n")
    proc = run_cli("run", "--config", cfg)
    assert proc.returncode == 2
    assert "unknown key trian" in proc.stderr and "bad.yaml" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_run_flags_override_only_what_is_given(tmp_path):
    from faceswap.cli import _run_config_from_args

    cfg = tmp_path / "p.yaml"
    cfg.write_text("footage: [a.mp4]\ntarget: [b.mp4]\nwork: w\noutput: o.mp4\n"
                   "convert: {lossless: true, crf: 20}\ntrain: {steps: 7}\n")
    args = build_parser().parse_args(["run", "--config", str(cfg), "--train-workers", "2", "--convert-no-watermark"])
    run = _run_config_from_args(args)
    assert run.convert == {"lossless": True, "crf": 20, "watermark": False}
    assert run.train == {"steps": 7, "workers": 2}
    assert run.extract == {}


def test_out_of_range_flip_is_refused_before_any_work(tmp_path, capsys):
    code = main(["train", "--a", str(tmp_path / "A"), "--b", str(tmp_path / "B"), "--out", str(tmp_path / "M"),
                 "--flip", "1.5"])
    err = capsys.readouterr().err
    assert code == 2 and "--flip is a probability between 0 and 1, not 1.5" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "M").exists()


def test_a_command_on_its_own_local_ray_shows_its_work_not_rays_notices(run_cli, samples_dir):
    a = os.path.join(samples_dir, "a_small.mp4")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray of its own
    proc = run_cli("evaluate", "--original", a, "--swapped", a, "--target", os.path.join(samples_dir, "refs", "b.png"),
                   "--max-frames", 2, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pose error" in proc.stdout
    assert "Token authentication" not in proc.stdout + proc.stderr
    assert "will not allow it to scale up" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    # Ray's core worker writes this E line to fd 2 for every Ray Data actor pool (native_logs).
    assert "has constructor arguments in the object store" not in proc.stderr, proc.stderr[-2000:]


def test_the_native_log_filter_drops_whole_noise_lines_and_passes_everything_else_at_once(tmp_path):
    """fd 2 writes as Ray's C++ logger and Python make them: a noise line split over writes, one forwarded
    from a Ray Data actor (its name nests parentheses), another native line, a progress bar redrawn with \r and no newline, and the
    command's one-line error."""
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent('''
        import os, sys, time
        from faceswap.native_logs import NativeLogFilter
        with NativeLogFilter() as f:
            os.write(2, b"[2026-11-30 10:21:33,683 E 9359 9359] core_worker.cc:2465: Actor with class name: "
                        b"'MapWorker(MapBatches(ExtractShard))' and ID: 'ab' has constructor ")
            time.sleep(0.2)
            os.write(2, b"arguments in the object store and max_restarts > 0. If the arguments ...\\n")
            os.write(2, b"\\x1b[36m(MapWorker(MapBatches(ExtractShard)) pid=12)\\x1b[0m [2026-11-30 10:21:33,700 E 12 12] "
                        b"core_worker.cc:2465: Actor with class name: 'X' and ID: 'cd' has constructor arguments in "
                        b"the object store and max_restarts > 0.\\n")
            os.write(2, b"[2026-11-30 10:21:34,000 E 9359 9359] raylet_client.cc:12: a real native error\\n")
            sys.stderr.write("progress 1/3\\rprogress 2/3\\r")
            sys.stderr.flush()
            time.sleep(0.3)
            with open(sys.argv[1], "wb") as seen:  # what the terminal shows before the line ends
                seen.write(open(sys.argv[2], "rb").read())
            sys.stderr.write("progress 3/3\\nfaceswap: error: clip.mp4: not a video file\\n")
        sys.stdout.write(str(f.dropped))
    '''))
    err_path, seen_path = tmp_path / "stderr.txt", tmp_path / "seen.txt"
    with open(err_path, "wb") as err:
        proc = subprocess.run([sys.executable, str(script), str(seen_path), str(err_path)], stderr=err,
                              stdout=subprocess.PIPE, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout == "2"
    text = err_path.read_bytes().decode()  # bytes: read_text would turn \r into \n
    assert text == ("[2026-11-30 10:21:34,000 E 9359 9359] raylet_client.cc:12: a real native error\n"
                    "progress 1/3\rprogress 2/3\rprogress 3/3\nfaceswap: error: clip.mp4: not a video file\n")
    assert seen_path.read_bytes().decode().endswith("progress 1/3\rprogress 2/3\r")  # partial lines are not held back


def test_ray_trains_per_checkpoint_report_line_is_dropped_and_real_warnings_kept():
    import logging

    import ray.train.v2._internal.execution.context as ray_train_context

    from faceswap.raycluster import quiet_worker_logs

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger, level = ray_train_context.logger, ray_train_context.logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        quiet_worker_logs()
        logger.info("Reporting training result 3: TrainingReport(checkpoint=Checkpoint(...)) from rank 0")
        logger.warning("a real warning")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert [r.getMessage() for r in records] == ["a real warning"]


def test_the_placement_group_cleaners_state_api_warning_is_dropped_on_a_local_ray():
    """Ray Train's cleaner polls the State API (the dashboard's) every second; a local Ray has none."""
    import logging

    import ray.train.v2._internal.execution.controller.placement_group_cleaner as cleaner

    from faceswap.raycluster import quiet_worker_logs

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    cleaner.logger.addHandler(handler)
    try:
        quiet_worker_logs()
        # Ray 2.60's own words (placement_group_cleaner.py)
        cleaner.logger.warning("Failed to query Ray Train Controller actor state. "
                               "State API may be temporarily unavailable. Continuing to monitor.")
        cleaner.logger.warning("a real warning")
    finally:
        cleaner.logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["a real warning"]
