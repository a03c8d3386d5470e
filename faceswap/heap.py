"""The worker's heap: give freed memory back between shards; keep a big model on huge pages.

A Ray Data actor decodes and renders hundreds of shards in one process. glibc keeps the
blocks a shard freed (decoded frames of a few MB, decoder and encoder buffers, torch
temporaries) in its arenas, fragmented, so resident memory creeps up shard after shard
although nothing is leaked. ``malloc_trim(0)`` returns those free pages. Measured in
``benchmarks/shard_memory.py``: a convert actor on the decord path grew by ~20 MB a shard
without it and stays flat with it. ``model_on_huge_pages`` (below) puts the range a model was
loaded into on 2 MB pages, and nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _malloc_trim():
    # Not glibc (macOS, musl): their allocators return memory on their own terms.
    return getattr(_libc(), "malloc_trim", None)


def release_freed_memory() -> bool:
    """Return free heap pages to the OS; False where the C library has no malloc_trim."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


# -- huge pages for a model loaded into the heap ------------------------------------------

_HUGE_PAGE = 2 << 20
_MADV_COLLAPSE = 25  # Linux 6.1 and later


def _heap_end() -> int | None:
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if line.rstrip().endswith("[heap]"):
                    return int(line.split()[0].split("-")[1], 16)
    except OSError:
        pass
    return None


@contextlib.contextmanager
def model_on_huge_pages():
    """Put what the block adds to the heap on 2 MB pages (Linux >= 6.1; elsewhere nothing happens).

    dlib's 68-point predictor is ~120,000 small blocks (~65 MB of tree leaves) of which a face reads
    ~7,500 at random: on 4 kB pages most of those reads also miss the TLB. Collapsing the range the
    model was loaded into (~0.15 s, once per worker) touches nothing else: glibc's heap policy for
    the rest of the process stays as it was, so memory stays as flat over a film as before.
    """
    before = _heap_end()
    yield
    after = _heap_end()
    libc = _libc()
    if before is None or after is None or libc is None or not hasattr(libc, "madvise"):
        return
    lo = (before + _HUGE_PAGE - 1) // _HUGE_PAGE * _HUGE_PAGE
    hi = after // _HUGE_PAGE * _HUGE_PAGE
    if hi - lo < _HUGE_PAGE:
        return
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    # A one-off collapse, not MADV_HUGEPAGE: khugepaged must not re-collapse the range later, which
    # would make the free holes a trim leaves in it resident again. EINVAL (older kernel): nothing.
    madvise(lo, hi - lo, _MADV_COLLAPSE)
