"""What the user hands a stage as footage: files and folders, local or s3://, expanded to files.

    "films/" -> [films/a.mp4, films/day2/b.mov, films/still.png]   (sorted, hidden entries skipped)

One list of suffixes decides what is a video and what is a photo, so `extract` and
`run` accept the same inputs.
"""

from __future__ import annotations

import os

from faceswap.errors import InputError
from faceswap.faces.identity import IMAGE_SUFFIXES
from faceswap.storage import Store, is_remote, normalize_uri

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")
MEDIA_SUFFIXES = IMAGE_SUFFIXES + VIDEO_SUFFIXES


def is_image(uri: str) -> bool:
    return uri.lower().endswith(IMAGE_SUFFIXES)


def is_video(uri: str) -> bool:
    return uri.lower().endswith(VIDEO_SUFFIXES)


def expand(uri: str) -> list[str]:
    """A file URI as is; a folder (local or s3 prefix) as the images and videos in it and its
    subfolders (hidden ones skipped), sorted."""
    if is_remote(uri):
        if uri.lower().endswith(MEDIA_SUFFIXES):
            return [uri]
        store = Store(uri)
        keys = [k for k in store.list() if k.lower().endswith(MEDIA_SUFFIXES)]
        return [store.url(k) for k in keys] if keys else [uri]
    path = normalize_uri(uri)
    if os.path.isdir(path):
        found = []
        for folder, subfolders, names in os.walk(path):
            subfolders[:] = [d for d in subfolders if not d.startswith(".")]
            found += [os.path.join(folder, n) for n in names
                      if not n.startswith(".") and n.lower().endswith(MEDIA_SUFFIXES)]
        if not found:
            raise InputError(f"{uri}: folder holds no images or videos")
        return sorted(found)
    if not os.path.exists(path):
        raise InputError(f"{uri}: no such file or folder")
    return [path]


def videos_in(uris: list[str]) -> list[str]:
    """The video files among ``uris`` and inside the folders among them, each once."""
    return list(dict.fromkeys(f for uri in uris for f in expand(uri) if is_video(f)))
