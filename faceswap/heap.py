"""Give the heap a worker freed back to the operating system, between shards.

A Ray Data actor decodes and renders hundreds of shards in one process. glibc keeps the
blocks a shard freed (decoded frames of a few MB, decoder and encoder buffers, torch
temporaries) in its arenas, fragmented, so resident memory creeps up shard after shard
although nothing is leaked. ``malloc_trim(0)`` returns those free pages. Measured in
``benchmarks/shard_memory.py``: a convert actor on the decord path grew by ~20 MB a shard
without it and stays flat with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (macOS, musl): their allocators return memory on their own terms


def release_freed_memory() -> bool:
    """Return free heap pages to the OS; False where the C library has no malloc_trim."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
