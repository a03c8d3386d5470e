"""Inspect: does face set B cover the poses and expressions of face set A (and the reverse)?

    face sets A, B (manifest.json + alignments/*.parquet; local or s3://)
      -> per face: yaw, pitch, eye openness, mouth openness (metrics.coverage)
      -> warnings naming what one set has and the other lacks, with frames
      -> coverage PNG (both distributions side by side), optional JSON

Runs on the driver: a face set's records are small (a 2-hour film is ~170k rows of
landmarks), and no crop is read.
"""

from __future__ import annotations

import os

import numpy as np

from faceswap.config import InspectConfig
from faceswap.errors import InputError
from faceswap.metrics import coverage
from faceswap.storage import Store, split_uri


def faceset_states(uri: str, name: str) -> coverage.FaceSetStates:
    """Read a face set's records (the shards its manifest lists) and measure every face."""
    store = Store(uri)
    store.check_readable()
    if not store.exists("manifest.json"):
        raise InputError(f"{store.uri}: no manifest.json (not a face set, or an unfinished extract; "
                         f"run `faceswap extract` until it succeeds)")
    manifest = store.read_json("manifest.json")
    names = {i.get("source"): os.path.basename(str(i.get("uri", i.get("source")))) for i in manifest.get("inputs", [])}
    sources, frames, lms = [], [], []
    for shard in manifest.get("shards", []):
        key = f"alignments/{shard['id']}.parquet"
        table = store.read_parquet(key)
        missing = [c for c in ("source", "frame", "landmarks") if c not in table.column_names]
        if missing:
            raise InputError(f"{store.url(key)}: missing column(s) {', '.join(missing)}")
        cols = table.select(["source", "frame", "landmarks"]).to_pydict()
        for src, frame, lm in zip(cols["source"], cols["frame"], cols["landmarks"]):
            if lm is None or len(lm) != 136:
                raise InputError(f"{store.url(key)}: frame {frame} needs 136 landmark values")
            sources.append(names.get(src, src))
            frames.append(frame)
            lms.append(np.asarray(lm, np.float64).reshape(68, 2))
    if not lms:
        raise InputError(f"{store.uri}: the face set has no faces")
    return coverage.face_states(name, sources, frames, np.stack(lms))


def run_inspect(cfg: InspectConfig) -> dict:
    """Compare the coverage of two face sets; write the PNG (and JSON); return the report."""
    a = faceset_states(cfg.a, "A")
    b = faceset_states(cfg.b, "B")
    warnings = coverage.compare(a, b) + coverage.compare(b, a)
    report = {"a": cfg.a, "b": cfg.b, "summary": {"A": coverage.summary(a), "B": coverage.summary(b)},
              "warnings": warnings, "plot": cfg.plot or None}
    if cfg.plot:
        store, key = split_uri(cfg.plot)
        store.write_bytes(key, coverage.plot_png(a, b))
    if cfg.json:
        store, key = split_uri(cfg.json)
        store.write_json(key, report)
    return report


def format_report(report: dict) -> str:
    """The report as text: one line per face set, then the warnings."""
    lines = []
    for name in ("A", "B"):
        s = report["summary"][name]
        span = lambda r: "n/a" if r is None else f"{r[0]:+.0f}..{r[1]:+.0f}"  # noqa: E731
        lines.append(f"face set {name} ({report[name.lower()]}): {s['faces']} faces, yaw {span(s['yaw_deg'])} deg, "
                     f"pitch {span(s['pitch_deg'])} deg, {s['eyes_closed']} with eyes closed, "
                     f"{s['mouth_open']} with the mouth open, {s['poses_not_in_other']} in poses the other lacks")
    for w in report["warnings"]:
        lines.append(f"warning: {w}")
    if not report["warnings"]:
        lines.append("each face set covers the other's poses and expressions")
    if report.get("plot"):
        lines.append(f"coverage plot: {report['plot']}")
    return "\n".join(lines)
