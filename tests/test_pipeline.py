"""The pipeline's own wiring: what it hands each stage (the stages themselves are stubbed)."""

from __future__ import annotations

import os
import shutil

import pytest

from faceswap.config import RunConfig
from faceswap.errors import InputError


@pytest.fixture
def recorded(monkeypatch):
    """Every stage replaced by a recorder of the config it was given."""
    import faceswap.stages.convert as convert
    import faceswap.stages.extract as extract
    import faceswap.stages.train as train

    calls: dict[str, list] = {"extract": [], "train": [], "convert": []}
    monkeypatch.setattr(extract, "run_extract", lambda cfg, **_: calls["extract"].append(cfg) or {})
    monkeypatch.setattr(train, "run_train", lambda cfg, **_: calls["train"].append(cfg) or {})
    monkeypatch.setattr(convert, "run_convert", lambda cfg, **_: calls["convert"].append(cfg) or {})
    return calls


def test_a_folder_of_footage_is_converted_video_by_video(recorded, samples_dir, tmp_path):
    """`faceswap run` takes the footage as extract does: a folder counts for the videos in it."""
    from faceswap.stages.pipeline import run_pipeline

    footage = tmp_path / "footage"
    (footage / "day2").mkdir(parents=True)
    shutil.copy(os.path.join(samples_dir, "a_small.mp4"), footage / "a.mp4")
    shutil.copy(os.path.join(samples_dir, "a_bystander_small.mp4"), footage / "day2" / "b.mp4")
    shutil.copy(os.path.join(samples_dir, "refs/a.png"), footage / "a.png")
    cfg = RunConfig(footage=[str(footage)], target=[os.path.join(samples_dir, "b_small.mp4")],
                    work=str(tmp_path / "work"), output=str(tmp_path / "out"), evaluate=False)
    result = run_pipeline(cfg, progress=False)
    assert recorded["extract"][0].inputs == [str(footage)]
    assert sorted(c.video for c in recorded["convert"]) == [str(footage / "a.mp4"), str(footage / "day2" / "b.mp4")]
    assert sorted(result["outputs"]) == [str(tmp_path / "out" / "a_swapped.mp4"), str(tmp_path / "out" / "b_swapped.mp4")]


def test_footage_without_a_video_is_refused_naming_what_is_needed(recorded, samples_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(os.path.join(samples_dir, "refs/a.png"), photos / "a.png")
    cfg = RunConfig(footage=[str(photos)], target=[os.path.join(samples_dir, "b_small.mp4")],
                    work=str(tmp_path / "work"), output=str(tmp_path / "out.mp4"))
    from faceswap.stages.pipeline import run_pipeline

    with pytest.raises(InputError, match=f"{photos}: no video in the footage"):
        run_pipeline(cfg, progress=False)
    assert not recorded["extract"]
