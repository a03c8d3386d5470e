"""S3 access from the standard AWS environment, built in one place for every consumer.

    AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION
      -> options() -> filesystem() (s3fs: the Store) and arrow_filesystem() (pyarrow: Ray Train's checkpoints)
      -> stage_env(): the non-secret settings, as a stage's Ray runtime env
      -> Secrets.from_env(): the secret key and session token, handed to a stage's workers as an argument
         (Cluster.run_shards, train_loop), which apply() them before they touch the store

AWS, MinIO, SeaweedFS and Ceph all work; temporary credentials (an assumed role,
SSO) work because the session token goes wherever the key goes. Secrets never
appear in a repr, an error message or a Ray runtime env (Ray's runtime-env agent
logs runtime envs in full): they travel as a worker's constructor or loop argument.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from faceswap.errors import chain

# What configures S3 access; FACESWAP_CACHE (where downloads are cached) travels with them.
STORE_ENV_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                  "AWS_SESSION_TOKEN", "AWS_REGION", "FACESWAP_CACHE")
SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_FS_CACHE: dict[tuple, Any] = {}


def options() -> dict[str, str | None]:
    """endpoint, region, key, secret, token from the environment."""
    env = os.environ.get
    return {"endpoint": env("AWS_ENDPOINT_URL") or env("AWS_ENDPOINT_URL_S3"), "region": env("AWS_REGION"),
            "key": env("AWS_ACCESS_KEY_ID"), "secret": env("AWS_SECRET_ACCESS_KEY"),
            "token": env("AWS_SESSION_TOKEN")}


def filesystem():
    """The s3fs client of this process for the current environment (one per settings)."""
    import s3fs

    o = options()
    cache_key = (*o.values(), os.getpid())
    fs = _FS_CACHE.get(cache_key)
    if fs is None:
        client_kwargs = {"endpoint_url": o["endpoint"]} if o["endpoint"] else {}
        if o["region"]:
            client_kwargs["region_name"] = o["region"]
        # Without a key, botocore's own chain (profile, instance role) finds the credentials.
        creds = {"key": o["key"], "secret": o["secret"], "token": o["token"]} if o["key"] else {}
        fs = s3fs.S3FileSystem(
            **creds,
            client_kwargs=client_kwargs,
            config_kwargs={"connect_timeout": 5, "read_timeout": 120,
                           "retries": {"max_attempts": 2, "mode": "standard"}},
            use_listings_cache=False,
            skip_instance_cache=True,
        )
        fs.retries = 2  # s3fs's own retry loop, on top of botocore's
        _FS_CACHE[cache_key] = fs
    return fs


def arrow_filesystem(uri: str):
    """(path, pyarrow filesystem) for a local or s3:// URI: Ray Train's storage_path and
    storage_filesystem (None for a local path)."""
    from faceswap.storage import normalize_uri

    uri = normalize_uri(uri)
    if not uri.startswith("s3://"):
        return uri, None
    import pyarrow.fs as pafs

    o = options()
    kwargs: dict[str, Any] = {"region": o["region"] or "us-east-1"}
    if o["endpoint"]:
        parsed = urlparse(o["endpoint"])
        kwargs.update(endpoint_override=parsed.netloc or parsed.path, scheme=parsed.scheme or "https")
    if o["key"]:
        kwargs.update(access_key=o["key"], secret_key=o["secret"] or "", session_token=o["token"] or "")
    return uri[len("s3://"):], pafs.S3FileSystem(**kwargs)


# -- errors ------------------------------------------------------------------------------------

_CONNECTION_ERRORS = {"EndpointConnectionError", "ConnectionRefusedError", "ClientConnectorError",
                      "ConnectTimeoutError", "ReadTimeoutError", "ServerDisconnectedError",
                      "ConnectionClosedError", "ConnectionResetError", "ClientOSError"}


def is_connection_error(exc: BaseException) -> bool:
    return bool({type(e).__name__ for e in chain(exc)} & _CONNECTION_ERRORS)


def describe(exc: BaseException) -> str:
    """What an S3 client error means to the user, without echoing credentials."""
    text = " ".join(str(e) for e in chain(exc))
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return "bucket does not exist"
    if any(s in text for s in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403")):
        return "access denied (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    if isinstance(exc, PermissionError):
        return "access denied (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    if "NoCredentialsError" in {type(e).__name__ for e in chain(exc)} or "Unable to locate credentials" in text:
        return "no credentials (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    return type(exc).__name__ + (f": {str(exc).splitlines()[0]}" if str(exc) else "")


# -- the same settings on a stage's Ray workers ----------------------------------------------------

@dataclass(frozen=True)
class Secrets:
    """The driver's S3 secret key and session token, for a stage's workers.

    A worker started before they were set (a cluster joined with --ray-address, a test, a notebook), or
    on another machine, lacks them; the stage hands this object to each worker, which apply()s it before
    it opens the store. Never shown: no repr, and never in a runtime env.
    """

    values: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_env(cls) -> "Secrets":
        return cls(tuple((k, os.environ[k]) for k in SECRET_VARS if k in os.environ))

    def apply(self) -> None:
        """This process uses the driver's secrets (they win over its own environment's)."""
        os.environ.update(dict(self.values))


def stage_env() -> dict | None:
    """The driver's non-secret S3 settings (endpoint, key id, region) and cache folder as a stage's
    runtime env: they may have been set after Ray started, and then the workers would not inherit them.
    The secrets travel as Secrets."""
    env = {k: os.environ[k] for k in STORE_ENV_VARS if k in os.environ and k not in SECRET_VARS}
    return {"env_vars": env} if env else None
