"""Configs: YAML loading rejects unknown keys and wrong types, with the file named."""

from __future__ import annotations

import pytest

from faceswap.config import ExtractConfig, RunConfig, from_dict, load_run_config
from faceswap.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return str(path)


def test_example_config_loads():
    import os

    here = os.path.dirname(__file__)
    cfg = load_run_config(os.path.join(here, "..", "examples", "pipeline.yaml"))
    assert isinstance(cfg, RunConfig) and cfg.footage and cfg.target
    assert cfg.train["preset"] in ("lite", "original", "hd")


def test_relative_paths_are_taken_from_the_config_folder(tmp_path):
    cfg = load_run_config(write(tmp_path, "footage: [clips/a.mp4]\ntarget: s3://bucket/b.mp4\nwork: w\noutput: o.mp4\n"))
    assert cfg.footage == [str(tmp_path / "clips" / "a.mp4")]
    assert cfg.target == ["s3://bucket/b.mp4"] and cfg.work == str(tmp_path / "w")


@pytest.mark.parametrize("text, fragment", [
    ("footage: [a]\ntarget: [b]\nwork: w\noutput: o\nbogus: 1\n", "unknown key bogus"),
    ("footage: [a]\ntarget: [b]\nwork: w\n", "missing required key output"),
    ("footage: [a]\ntarget: [b]\nwork: w\noutput: o\ntrain: {stepz: 3}\n", "train: unknown key stepz"),
    ("footage: [a]\ntarget: [b]\nwork: w\noutput: o\ntrain: {a: x}\n", "train: a is set by the pipeline"),
    ("footage: [a]\ntarget: [b]\nwork: w\noutput: o\nevaluate: maybe\n", "expected true or false"),
    ("footage: [a\n", "not valid YAML"),
    ("source: [a]\ntarget: [b]\nwork: w\noutput: o\n", "the key source is now called footage"),
])
def test_bad_configs_are_refused_with_the_file_named(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    assert fragment in str(info.value) and path in str(info.value)


def test_from_dict_coerces_and_checks_types():
    cfg = from_dict(ExtractConfig, {"inputs": "a.mp4", "out": "o", "size": 128}, "x")
    assert cfg.inputs == ["a.mp4"] and cfg.size == 128
    with pytest.raises(ConfigError, match="expected a whole number"):
        from_dict(ExtractConfig, {"inputs": ["a"], "out": "o", "size": 1.5}, "x")
