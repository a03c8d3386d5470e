"""The S3 secret key never shows: not in the output, not in any object written, not in Ray's logs.

    clip in s3://bucket/in -> `faceswap extract s3://... --out s3://...` (joins the module's Ray, whose
      workers were started without the secrets) -> `faceswap train` on that face set into s3://.../model
      -> grep stdout, stderr, every object in the bucket and every file of the Ray session for the secret
"""

from __future__ import annotations

import os
import sys

from conftest import S3_SECRET_KEY
from faceswap.storage import Store

sys.path.insert(0, os.path.dirname(__file__))
from test_reliability_inputs import ffmpeg  # noqa: E402


def _ray_session_dir() -> str:
    import ray

    return ray._private.worker._global_node.get_session_dir_path()


def test_secret_key_appears_nowhere(ray_local, s3_env, s3_bucket, samples_dir, run_cli, tmp_path):
    assert s3_env["AWS_SECRET_ACCESS_KEY"] == S3_SECRET_KEY
    clip = str(tmp_path / "clip.mp4")
    ffmpeg("-i", os.path.join(samples_dir, "a_small.mp4"), "-frames:v", "8", "-c:v", "libx264", "-crf", "12",
           "-c:a", "aac", "-shortest", clip)
    bucket = Store(f"s3://{s3_bucket}")
    bucket.put_file(clip, "in/clip.mp4")
    env = {"RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}

    ok = run_cli("extract", bucket.url("in/clip.mp4"), "--out", bucket.url("faces"), env=env, timeout_s=600)
    assert ok.returncode == 0, ok.stderr[-3000:]
    failed = run_cli("extract", bucket.url("in/missing.mp4"), "--out", bucket.url("faces2"), env=env, timeout_s=300)
    assert failed.returncode == 2 and "missing.mp4" in failed.stderr
    trained = run_cli("train", "--a", bucket.url("faces"), "--b", bucket.url("faces"), "--out", bucket.url("model"),
                      "--steps", "2", "--batch-size", "2", "--checkpoint-every", "2", "--preview-every", "2",
                      env=env, timeout_s=600)
    assert trained.returncode == 0, trained.stderr[-3000:]

    secret = S3_SECRET_KEY.encode()
    for proc in (ok, failed, trained):
        assert S3_SECRET_KEY not in proc.stdout + proc.stderr
    keys = bucket.list()
    assert "faces/manifest.json" in keys and any(k.endswith(".parquet") for k in keys)
    assert "model/model/model.pt" in keys and any(k.startswith("model/checkpoints/") for k in keys)
    leaked = [k for k in keys if secret in bucket.read_bytes(k)]
    assert not leaked, f"secret in objects {leaked}"
    session = _ray_session_dir()
    leaked = []
    for root, _, files in os.walk(session):
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    if secret in f.read():
                        leaked.append(os.path.relpath(path, session))
            except OSError:
                continue  # sockets, files removed while walking
    assert not leaked, f"secret in Ray session files {leaked}"
