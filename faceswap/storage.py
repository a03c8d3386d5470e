"""Object storage: local folders, ``file://`` and ``s3://`` behind one small interface.

    Store("s3://bucket/run1").write_json("manifest.json", {...})

* Keys are '/'-separated and relative to the store's root; ``..``, absolute
  keys and backslashes are refused (records read from storage name keys too).
* Every write is atomic: the bytes go to a temporary object under ``.tmp/``,
  then are moved to the final key, so a reader never sees half an object.
* S3 access (endpoint, credentials, the client) comes from ``faceswap.s3``,
  which builds it from the standard AWS variables for every consumer.
* A store is picklable (only the URI travels), so Ray workers get their own
  filesystem client. Credentials never appear in a repr or an error message.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

from faceswap.errors import ServiceUnavailable, StoreError, chain

TMP_PREFIX = ".tmp"
_CONNECT_TRIES = 4


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def normalize_uri(uri: str) -> str:
    """Local paths become absolute; ``file://`` is stripped; no trailing '/'."""
    uri = str(uri)
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    if "://" in uri:
        protocol, rest = uri.split("://", 1)
        if protocol != "s3":
            raise StoreError(f"{uri}: unsupported storage scheme '{protocol}://' (use a local path, file:// or s3://)")
        rest = rest.strip("/")
        if not rest:
            raise StoreError(f"{uri}: an s3:// URI needs a bucket name")
        return f"s3://{rest}"
    return os.path.abspath(os.path.expanduser(uri)).rstrip("/") or "/"


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise StoreError."""
    if not isinstance(key, str) or not key:
        raise StoreError(f"invalid storage key {key!r}: empty")
    parts = key.split("/")
    if key.startswith("/") or "\\" in key or any(p in ("..", ".") for p in parts) or "" in parts:
        raise StoreError(f"invalid storage key {key!r}: keys must be relative, without '..', '.' or empty parts")
    return key


def split_uri(uri: str) -> tuple["Store", str]:
    """``s3://b/films/a.mp4`` -> (Store('s3://b/films'), 'a.mp4')."""
    uri = normalize_uri(uri)
    parent, _, name = uri.rpartition("/")
    if uri.startswith("s3://") and parent in ("s3:/", "s3:"):
        raise StoreError(f"{uri}: expected s3://bucket/key, not a bare bucket")
    return Store(parent or "/"), name


@dataclass(frozen=True)
class Store:
    """A folder of objects at ``uri`` (local path, ``file://`` or ``s3://``)."""

    uri: str

    def __post_init__(self):
        object.__setattr__(self, "uri", normalize_uri(self.uri))

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    # -- addressing ---------------------------------------------------------
    @property
    def remote(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def fs(self):
        if self.remote:
            from faceswap import s3

            return s3.filesystem()
        import fsspec

        return fsspec.filesystem("file")

    def _path(self, key: str) -> str:
        check_key(key)
        return f"{self.uri[len('s3://'):] if self.remote else self.uri}/{key}"

    def url(self, key: str = "") -> str:
        return f"{self.uri}/{check_key(key)}" if key else self.uri

    def child(self, key: str) -> "Store":
        return Store(self.url(key))

    # -- retries and error mapping -------------------------------------------
    def _call(self, what: str, key: str, fn, *args, **kwargs):
        """Run one filesystem call with bounded retries on connection errors."""
        from faceswap.s3 import describe, is_connection_error

        delay = 0.5
        for attempt in range(1, _CONNECT_TRIES + 1):
            try:
                return fn(*args, **kwargs)
            except FileNotFoundError as exc:
                if self.remote and "NoSuchBucket" in " ".join(str(e) for e in chain(exc)):
                    raise StoreError(f"{self.url(key) if key else self.uri}: bucket does not exist") from None
                raise
            except (StoreError, ServiceUnavailable):
                raise
            except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
                if not self.remote:
                    raise
                if is_connection_error(exc):
                    if attempt == _CONNECT_TRIES:
                        raise ServiceUnavailable(
                            f"{self.url(key) if key else self.uri}: object store did not answer after "
                            f"{_CONNECT_TRIES} tries while trying to {what}") from None
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise StoreError(f"{self.url(key) if key else self.uri}: cannot {what}: {describe(exc)}") from None

    # -- reads ------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return bool(self._call("check for", key, self.fs.exists, self._path(key)))

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._call("read", key, self.fs.cat_file, self._path(key))
        except FileNotFoundError:
            raise StoreError(f"{self.url(key)}: no such object") from None

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def read_json(self, key: str) -> Any:
        data = self.read_bytes(key)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise StoreError(f"{self.url(key)}: not valid JSON ({exc})") from None

    def read_parquet(self, key: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(io.BytesIO(self.read_bytes(key)))
        except (pa.ArrowInvalid, OSError) as exc:
            raise StoreError(f"{self.url(key)}: not a valid Parquet file ({str(exc).splitlines()[0]})") from None

    def list(self, prefix: str = "", suffix: str = "") -> list[str]:
        """Keys under ``prefix`` (recursive, sorted), temporary objects and directory markers excluded."""
        base = self._path(prefix) if prefix else (self.uri[len("s3://"):] if self.remote else self.uri)
        try:
            found = self._call("list", prefix, self.fs.find, base)
        except FileNotFoundError:
            return []
        root = (self.uri[len("s3://"):] if self.remote else self.uri) + "/"
        keys = []
        for path in found:
            if not path.startswith(root):
                continue  # the root itself (an empty "directory" object on some servers)
            key = path[len(root):]
            if key.endswith("/"):
                continue  # a "directory" marker object (pyarrow's S3 filesystem, under Ray Train, writes them)
            if key.startswith(TMP_PREFIX + "/") or key.split("/")[-1].startswith(".tmp-"):
                continue
            if key.endswith(suffix):
                keys.append(key)
        return sorted(keys)

    def get_file(self, key: str, local_path: str) -> str:
        """Download ``key`` to ``local_path`` (atomically) and return the path."""
        tmp = f"{local_path}.tmp-{uuid.uuid4().hex}"
        try:
            self._call("download", key, self.fs.get_file, self._path(key), tmp)
            os.replace(tmp, local_path)
        except FileNotFoundError:
            raise StoreError(f"{self.url(key)}: no such object") from None
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return local_path

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[str]:
        """A local file with the object's bytes: the file itself for a local store."""
        if not self.remote:
            path = self._path(key)
            if not os.path.exists(path):
                raise StoreError(f"{path}: no such file")
            yield path
            return
        yield cached_download(self, key)

    # -- writes -------------------------------------------------------------------
    def _publish(self, key: str, write_tmp) -> None:
        """Write to a temporary object with ``write_tmp(tmp_path)``, then move it to ``key``."""
        final = self._path(key)
        tmp_key = f"{TMP_PREFIX}/{uuid.uuid4().hex}-{key.rsplit('/', 1)[-1]}"
        tmp = self._path(tmp_key)
        try:
            if not self.remote:
                os.makedirs(os.path.dirname(tmp), exist_ok=True)
                os.makedirs(os.path.dirname(final), exist_ok=True)
                write_tmp(tmp)
                os.replace(tmp, final)
            else:
                self._call("write", key, write_tmp, tmp)
                self._call("publish", key, self.fs.mv, tmp, final)
        except BaseException:
            with contextlib.suppress(Exception):
                if self.remote:
                    self.fs.rm(tmp)
                elif os.path.exists(tmp):
                    os.remove(tmp)
            raise

    def write_bytes(self, key: str, data: bytes) -> str:
        def write(tmp):
            if self.remote:
                self.fs.pipe_file(tmp, data)
            else:
                with open(tmp, "wb") as f:
                    f.write(data)

        self._publish(key, write)
        return self.url(key)

    def write_text(self, key: str, text: str) -> str:
        return self.write_bytes(key, text.encode("utf-8"))

    def write_json(self, key: str, obj: Any) -> str:
        return self.write_bytes(key, json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode())

    def write_parquet(self, key: str, table) -> str:
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return self.write_bytes(key, buf.getvalue())

    def put_file(self, local_path: str, key: str) -> str:
        """Upload a local file to ``key`` atomically."""
        def write(tmp):
            if self.remote:
                self.fs.put_file(local_path, tmp)
            else:
                import shutil

                shutil.copyfile(local_path, tmp)

        self._publish(key, write)
        return self.url(key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        if self.remote:
            with contextlib.suppress(FileNotFoundError):
                self._call("delete", key, self.fs.rm, path, recursive=True)
        elif os.path.isdir(path):
            import shutil

            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)

    # -- checks -------------------------------------------------------------------
    def check_writable(self) -> None:
        """Fail fast, before any work: the bucket exists and the credentials may write."""
        if not self.remote:
            try:
                os.makedirs(self.uri, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.uri}: cannot create output folder ({exc.strerror})") from None
            if not os.access(self.uri, os.W_OK):
                raise StoreError(f"{self.uri}: output folder is not writable")
            return
        # Some S3 servers create a missing bucket on write: check it exists first.
        self._check_bucket()
        probe = f"{TMP_PREFIX}/probe-{uuid.uuid4().hex}"
        try:
            self.write_bytes(probe, b"")
            self.delete(probe)
        except StoreError as exc:
            raise StoreError(f"{self.uri}: cannot write: {str(exc).rsplit(': ', 1)[-1]}") from None

    def check_readable(self) -> None:
        """Fail fast when the store cannot be listed (missing bucket, bad credentials)."""
        if not self.remote:
            if not os.path.isdir(self.uri):
                raise StoreError(f"{self.uri}: no such folder")
            return
        self._check_bucket()

    def _check_bucket(self) -> None:
        bucket = self.uri[len("s3://"):].split("/", 1)[0]
        try:
            self._call("list", "", self.fs.ls, bucket)
        except FileNotFoundError:
            raise StoreError(f"{self.uri}: bucket '{bucket}' does not exist") from None
        except StoreError as exc:
            reason = str(exc).rsplit(": ", 1)[-1]
            if reason == "bucket does not exist":
                reason = f"bucket '{bucket}' does not exist"
            raise StoreError(f"{self.uri}: {reason}") from None


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def cache_dir() -> str:
    path = os.environ.get("FACESWAP_CACHE") or os.path.join(tempfile.gettempdir(), "faceswap-cache")
    os.makedirs(path, exist_ok=True)
    return path


def cached_download(store: Store, key: str) -> str:
    """Download a remote object once per node; the cache is keyed by URI, size and ETag."""
    try:
        info = store._call("stat", key, store.fs.info, store._path(key))
    except FileNotFoundError:
        raise StoreError(f"{store.url(key)}: no such object") from None
    tag = f"{store.url(key)}|{info.get('size')}|{info.get('ETag') or info.get('LastModified')}"
    name = hashlib.sha1(tag.encode()).hexdigest()[:20] + "-" + key.rsplit("/", 1)[-1]
    path = os.path.join(cache_dir(), name)
    if not os.path.exists(path):
        store.get_file(key, path)
    return path


@contextlib.contextmanager
def local_input(uri: str) -> Iterator[str]:
    """A local path for an input file given as a local path or ``s3://`` URI."""
    if is_remote(uri):
        store, key = split_uri(uri)
        with store.local_path(key) as path:
            yield path
    else:
        yield normalize_uri(uri)
