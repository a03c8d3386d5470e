"""Shared by the `ray job submit` entry points: run one `faceswap` command in this process.

    ray job submit --working-dir . -- python jobs/extract.py film.mp4 --out s3://bucket/faces_a

Each script takes exactly the arguments of the matching `faceswap` command and hands
them to `faceswap.cli.main`, so `--help`, validation, error lines and exit codes are the
CLI's own. Inside a Ray job, Ray sets RAY_ADDRESS for the driver and
`faceswap.raycluster.Cluster.connect` connects to it: the job uses the cluster it was
submitted to, never a private local Ray (the same as `--ray-address auto`).
"""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _use_shipped_code() -> None:
    """Import `faceswap` from the submitted working dir when it holds the package.

    `python jobs/x.py` puts jobs/ (not the repo root) on sys.path. Ray adds the working
    dir to the workers' PYTHONPATH, so the driver must import the same copy: otherwise a
    cluster image with an older installed faceswap would run old driver code against new
    worker code. Without a checkout next to this file the installed package is used.
    """
    if os.path.isfile(os.path.join(REPO_ROOT, "faceswap", "__init__.py")) and REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)


def run_command(command: str, argv: list[str] | None = None) -> int:
    """`faceswap <command> <argv>`; returns its exit code."""
    _use_shipped_code()
    try:
        from faceswap.cli import main
    except ImportError as exc:
        sys.stderr.write(f"faceswap: cannot import the faceswap package ({exc}); submit with --working-dir "
                         f"set to the repository root, or install it on the cluster (see cluster/README.md)\n")
        return 2
    from faceswap.native_logs import NativeLogFilter

    with NativeLogFilter():  # as the `faceswap` command: Ray's native chatter off the job's log
        return main([command, *(sys.argv[1:] if argv is None else argv)])
