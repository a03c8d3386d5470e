"""The failure policy: status rows, the exit code of failed rows, the user's error behind Ray's wrappers."""

from __future__ import annotations

import subprocess

import pytest

from faceswap.errors import (InputError, ServiceUnavailable, StageFailed, raise_for_failed, shard_status,
                             user_error)


def _raise(exc):
    def work():
        raise exc
    return work


def test_every_failure_of_a_shard_becomes_a_status_row_of_its_kind():
    assert shard_status(lambda: {"faces": 3}) == {"status": "ok", "error": "", "error_kind": "", "faces": 3}
    rows = {kind: shard_status(_raise(exc)) for kind, exc in (
        ("input", InputError("film.mp4: not a video")), ("service", ServiceUnavailable("s3://b: did not answer")),
        ("input-os", NotADirectoryError("out/faces is a file")),
        ("crash", subprocess.CalledProcessError(1, ["ffmpeg"])))}
    assert {k: r["error_kind"] for k, r in rows.items()} == {"input": "input", "service": "service",
                                                             "input-os": "input", "crash": "crash"}
    assert all(r["status"] == "failed" for r in rows.values())
    assert rows["input"]["error"] == "InputError: film.mp4: not a video"
    assert rows["crash"]["error"].startswith("CalledProcessError: ")


@pytest.mark.parametrize("kinds, raised, code", [
    (("input",), InputError, 2), (("input", "crash"), StageFailed, 1), (("crash", "service", "input"), ServiceUnavailable, 1)])
def test_failed_rows_raise_the_most_urgent_kind_with_its_exit_code(kinds, raised, code):
    errors = {"input": InputError("bad frame"), "crash": RuntimeError("boom"), "service": ServiceUnavailable("down")}
    rows = [shard_status(_raise(errors[k])) | {"shard": f"s{i}"} for i, k in enumerate(kinds)] + [shard_status(dict)]
    with pytest.raises(raised) as info:
        raise_for_failed(rows, "shards", lambda r: f"film.mp4: shard {r['shard']}", "rerun")
    first = kinds.index({InputError: "input", StageFailed: "crash", ServiceUnavailable: "service"}[raised])
    assert str(info.value).startswith(f"film.mp4: shard s{first} failed: ")
    assert f"{len(kinds)} of {len(kinds) + 1} shards failed (rerun)" in str(info.value)
    assert info.value.exit_code == code
    raise_for_failed([shard_status(dict)], "shards", str, "rerun")  # nothing failed: nothing raised


def test_the_users_error_is_found_behind_ray_wrappers():
    class WorkerGroupError(Exception):  # the shape of Ray Train's: failures per worker, no cause
        def __init__(self, failures):
            super().__init__("training failed")
            self.worker_failures = failures

    class TaskError(Exception):  # the shape of a Ray task error: the original under .cause
        def __init__(self, cause):
            super().__init__("task failed")
            self.cause = cause

    bad = InputError("faces/a: no manifest.json")
    assert user_error(WorkerGroupError({0: RuntimeError("other"), 1: TaskError(bad)})) is bad
    try:
        try:
            raise ServiceUnavailable("s3://b: down")
        except ServiceUnavailable:
            raise RuntimeError("wrapped")  # noqa: B904 - the context chain is what is walked
    except RuntimeError as exc:
        assert isinstance(user_error(exc), ServiceUnavailable)
    assert user_error(RuntimeError("a bug")) is None
