"""Storage: round-trips, atomic publish and clear errors, on a local folder and on SeaweedFS."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

from faceswap.errors import ServiceUnavailable, StoreError
from faceswap.storage import Store, check_key, local_input, split_uri


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    return request.getfixturevalue("s3_store")


def test_bytes_json_parquet_round_trip(store):
    store.write_bytes("a/b/blob.bin", b"\x00\x01binary")
    store.write_json("manifest.json", {"shards": [1, 2], "name": "x"})
    table = pa.table({"frame": pa.array([0, 1, 2], pa.int64()), "landmarks": [[1.0, 2.0]] * 3})
    store.write_parquet("alignments/s-00000.parquet", table)

    assert store.read_bytes("a/b/blob.bin") == b"\x00\x01binary"
    assert store.read_json("manifest.json") == {"shards": [1, 2], "name": "x"}
    assert store.read_parquet("alignments/s-00000.parquet").equals(table)
    assert store.list() == ["a/b/blob.bin", "alignments/s-00000.parquet", "manifest.json"]
    assert store.list("alignments", suffix=".parquet") == ["alignments/s-00000.parquet"]
    assert store.exists("manifest.json") and not store.exists("nope.json")


def test_file_round_trip_and_local_path(store, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(300_000))
    store.put_file(str(src), "videos/in.bin")
    with store.local_path("videos/in.bin") as path:
        assert open(path, "rb").read() == src.read_bytes()
    out = store.get_file("videos/in.bin", str(tmp_path / "back.bin"))
    assert open(out, "rb").read() == src.read_bytes()
    with local_input(store.url("videos/in.bin")) as path:
        assert os.path.getsize(path) == 300_000


def test_overwrite_replaces_whole_object(store):
    store.write_bytes("k", b"first version, longer")
    store.write_bytes("k", b"second")
    assert store.read_bytes("k") == b"second"


def test_delete(store):
    store.write_bytes("d/x", b"1")
    store.delete("d/x")
    assert not store.exists("d/x")
    assert store.list() == []


def test_missing_object_is_one_clear_error(store):
    with pytest.raises(StoreError, match=r"missing\.json.*no such"):
        store.read_json("missing.json")


def test_interrupted_write_leaves_nothing_under_final_key(store):
    """A writer that dies after the temp object is written but before publish."""
    real_publish = store._publish

    def dying_publish(key, write_tmp):
        def write_then_die(tmp):
            write_tmp(tmp)
            raise KeyboardInterrupt("killed before publish")
        return real_publish(key, write_then_die)

    object.__setattr__(store, "_publish", dying_publish)
    with pytest.raises(KeyboardInterrupt):
        store.write_bytes("final/key.bin", b"x" * 1000)
    object.__delattr__(store, "_publish")
    assert not store.exists("final/key.bin")
    assert store.list() == []  # temp objects are cleaned and never listed


@pytest.mark.parametrize("phase", ["mid-write", "before-publish"])
def test_killed_process_leaves_nothing_under_final_key(store, phase):
    """SIGKILL while the temp object is half written, or written but not yet published:
    the final key never appears. The writer process signals the moment it reaches the
    phase and then waits to be killed, so the kill lands there on any machine speed."""
    code = (
        "import sys, time\n"
        "from faceswap.storage import Store\n"
        f"s = Store({store.uri!r})\n"
        f"phase = {phase!r}\n"
        "data = b'x' * (4 * 1024 * 1024)\n"
        "def write_tmp(tmp):\n"
        "    part = data if phase == 'before-publish' else data[: len(data) // 2]\n"
        "    if s.remote:\n"
        "        s.fs.pipe_file(tmp, part)\n"
        "    else:\n"
        "        with open(tmp, 'wb') as f:\n"
        "            f.write(part)\n"
        "    print('reached', flush=True)\n"
        "    time.sleep(120)\n"
        "s._publish('big/object.bin', write_tmp)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=os.environ.copy())
    try:
        assert proc.stdout.readline().strip() == b"reached"
    finally:
        proc.kill()
        proc.wait()
    assert not store.exists("big/object.bin")
    assert "big/object.bin" not in store.list()


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", "a\\b", "", "./a"])
def test_unsafe_keys_are_refused(key):
    with pytest.raises(StoreError, match="invalid storage key"):
        check_key(key)


def test_split_uri():
    store, key = split_uri("s3://bucket/films/a.mp4")
    assert store.uri == "s3://bucket/films" and key == "a.mp4"
    with pytest.raises(StoreError, match="unsupported storage scheme"):
        Store("gs://bucket/x")


def test_store_pickles_without_credentials(s3_store):
    import pickle

    blob = pickle.dumps(s3_store)
    assert b"faceswap-test-secret" not in blob
    assert pickle.loads(blob).uri == s3_store.uri
    assert "secret" not in repr(s3_store)


def test_missing_bucket_is_clear(s3_env):
    with pytest.raises(StoreError, match=r"s3://no-such-bucket-xyz/run: bucket 'no-such-bucket-xyz' does not exist"):
        Store("s3://no-such-bucket-xyz/run").check_writable()


def test_wrong_credentials_are_clear(s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "definitely-wrong")
    with pytest.raises(StoreError, match="access denied") as info:
        Store(f"s3://{s3_bucket}/run").check_writable()
    assert "definitely-wrong" not in str(info.value)


def test_unreachable_endpoint_gives_bounded_retries(monkeypatch):
    from tests.conftest import _free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(ServiceUnavailable, match="did not answer after"):
        Store("s3://bucket/run").write_bytes("k", b"1")


def test_cli_exit_2_for_missing_bucket_and_bad_credentials(run_cli, s3_env, s3_bucket, samples_dir):
    clip = os.path.join(samples_dir, "a_small.mp4")
    proc = run_cli("extract", clip, "--out", "s3://no-such-bucket-cli/faces")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "bucket 'no-such-bucket-cli' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run_cli("extract", clip, "--out", f"s3://{s3_bucket}/faces", env={"AWS_SECRET_ACCESS_KEY": "wrong-secret"})
    assert proc.returncode == 2, proc.stderr
    assert "access denied" in proc.stderr and "wrong-secret" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_s3_client_is_built_from_the_same_credentials(monkeypatch):
    """Temporary credentials (an assumed role, SSO) carry a session token: Ray Train's checkpoint
    filesystem gets it, as the store's own client does."""
    from faceswap.s3 import arrow_filesystem, filesystem

    for key, value in {"AWS_ACCESS_KEY_ID": "ASIATEMP", "AWS_SECRET_ACCESS_KEY": "temp-secret",
                       "AWS_SESSION_TOKEN": "temp-token", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                       "AWS_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(key, value)
    path, fs = arrow_filesystem("s3://bucket/model/")
    arrow = fs.__reduce__()[1][0]
    assert path == "bucket/model"
    assert (arrow["access_key"], arrow["secret_key"], arrow["session_token"]) == ("ASIATEMP", "temp-secret",
                                                                                   "temp-token")
    assert (arrow["endpoint_override"], arrow["scheme"], arrow["region"]) == ("127.0.0.1:9", "http", "eu-west-1")
    s3 = filesystem()
    assert (s3.key, s3.secret, s3.token) == ("ASIATEMP", "temp-secret", "temp-token")
    assert arrow_filesystem("/local/model") == ("/local/model", None)
