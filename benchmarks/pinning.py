"""Measure with each worker given its own cores, as on a cluster where a worker's CPUs are its own.

    parent:  run_pinned(script, args, cores=N) -> a fresh `python script --pinned N args...`
    child:   pin(N) first (Ray, its workers and ffmpeg inherit the affinity), measure, print one JSON line

On a 2-core machine one unpinned worker already spreads over both cores (a decode thread, an
x264 process), so 2-vs-1 worker scaling only shows when each run gets exactly its share.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys


def can_pin(cores: int) -> bool:
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= cores


def pin(cores: int) -> None:
    """Restrict this process (and everything it starts from now on) to its first ``cores`` CPUs."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))


@contextlib.contextmanager
def pinned_to(cores: int):
    """This thread (and the threads it starts meanwhile) on its first ``cores`` CPUs, for a block."""
    before = os.sched_getaffinity(0)
    pin(cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run_pinned(script: str, args: list[str], cores: int) -> dict:
    """Run ``script --pinned cores *args`` in a fresh process; its last stdout line is a JSON object."""
    cmd = [sys.executable, os.path.abspath(script), "--pinned", str(cores), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pinned run ({cores} cores) failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
