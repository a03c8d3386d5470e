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
from faceswap.faceset import FaceSet, read_alignments
from faceswap.storage import split_uri


def faceset_states(uri: str, name: str) -> coverage.FaceSetStates:
    """Read a face set's records (the shards its manifest lists) and measure every face."""
    faces = FaceSet(uri)
    names = {e.get("source"): os.path.basename(str(e.get("uri", e.get("source")))) for e in faces.inputs()}
    sources, frames, lms = [], [], []
    for entry in faces.shards():
        for row in read_alignments(faces.store, entry["id"]):
            sources.append(names.get(entry.get("source"), entry.get("source")))
            frames.append(row["frame"])
            lms.append(np.asarray(row["landmarks"], np.float64).reshape(68, 2))
    if not lms:
        raise InputError(f"{faces.uri}: the face set has no faces")
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
