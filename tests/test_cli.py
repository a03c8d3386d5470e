"""The command line: every command listed, usage errors are one line with exit 2."""

from __future__ import annotations

import pytest

from faceswap.cli import build_parser, main

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
    cfg.write_text("source: [a.mp4]\ntarget: [b.mp4]\nwork: w\noutput: o.mp4\ntrian: {steps: 3}\n")
    proc = run_cli("run", "--config", cfg)
    assert proc.returncode == 2
    assert "unknown key trian" in proc.stderr and "bad.yaml" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_run_flags_override_only_what_is_given(tmp_path):
    from faceswap.cli import _run_config_from_args

    cfg = tmp_path / "p.yaml"
    cfg.write_text("source: [a.mp4]\ntarget: [b.mp4]\nwork: w\noutput: o.mp4\n"
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
