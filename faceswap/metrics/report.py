"""Per-frame records -> one report: pooled metrics, counts, a table and a plot.

    per-frame records (stage output) + integrity (probe, barcodes)
      -> build_report -> dict (valid JSON: no NaN/inf) -> format_table / write_plot

Face metrics are averaged over the *changed* faces (the swaps); when no face
changed at all they are averaged over every face, which then compares each face
with itself (and `metrics_over` says so).
"""

from __future__ import annotations

import io
import math

import numpy as np

from faceswap.metrics.fidelity import psnr_db
from faceswap.metrics.pose import ANGLES
from faceswap.metrics.sharpness import sharpness_ratio
from faceswap.metrics.temporal import flicker_ratio, jitter_ratio


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


def clean(obj):
    """A copy of ``obj`` that JSON can hold: numpy scalars -> Python, NaN/inf -> None, tuples -> lists."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [clean(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def build_report(records: list[dict], integrity: dict, settings: dict) -> dict:
    """The report dict from per-frame records (any order) and the integrity checks."""
    records = sorted(records, key=lambda r: r["frame"])
    faces = [f for r in records for f in r["faces"]]
    changed = [f for f in faces if f["changed"]]
    subject = changed or faces
    region = "changed" if changed else "all"
    flick_s = sum(r[f"flicker_{region}"][0] for r in records)
    flick_o = sum(r[f"flicker_{region}"][1] for r in records)
    flick_n = sum(r[f"flicker_{region}"][2] for r in records)
    sse = sum(r["outside_sse"] for r in records)
    count = sum(r["outside_n"] for r in records)
    retrieved = [f["retrieved"] for f in subject if f.get("retrieved") is not None]
    report = {
        "frames": len(records),
        "swapped_frames": sum(1 for r in records if any(f["changed"] for f in r["faces"])),
        "frames_without_faces": sum(1 for r in records if not r["faces"]),
        "faces": len(faces),
        "changed_faces": len(changed),
        "unchanged_faces": len(faces) - len(changed),
        "metrics_over": "changed faces" if changed else "all faces (no face changed)",
        "identity_retrieval": float(np.mean(retrieved)) if retrieved else 0.0,
        "identity_distance_target": _mean(f.get("identity_distance_target") for f in subject),
        "identity_distance_replaced": _mean(f.get("identity_distance_replaced") for f in subject),
        "identity_replaced_from": settings.get("identity_replaced_from"),
        "pose_error_deg": _mean(f.get("pose_error_deg") for f in subject),
        **{f"pose_error_{a}_deg": _mean((f.get("pose_error_per_angle_deg") or [None] * 3)[i] for f in subject)
           for i, a in enumerate(ANGLES)},
        "expression_error": _mean(f.get("expression_error") for f in subject),
        "flicker_ratio": flicker_ratio(flick_s, flick_o, flick_n),
        "jitter_ratio": jitter_ratio(f.get("motion_px") for f in subject),
        "sharpness_ratio": sharpness_ratio([f["sharpness_energy"] for f in subject if f.get("sharpness_energy")]),
        "psnr_outside_db": psnr_db(sse, count),
        **integrity,
        "settings": settings,
        "per_frame": records,
    }
    return clean(report)


# (key, label, format, unit) rows of the printed table
_ROWS = [
    ("frames", "frames evaluated", "{}", ""),
    ("swapped_frames", "frames with a changed face", "{}", ""),
    ("changed_faces", "changed faces", "{}", ""),
    ("unchanged_faces", "unchanged faces (bystanders)", "{}", ""),
    ("identity_retrieval", "identity retrieval", "{:.1%}", "nearer the target than the replaced face, within 0.6"),
    ("identity_distance_target", "identity distance to target", "{:.3f}", "dlib embedding, same person < 0.6"),
    ("identity_distance_replaced", "identity distance to replaced", "{:.3f}", "dlib embedding, to the face replaced (A)"),
    ("pose_error_deg", "pose error", "{:.2f}", "deg, mean of |dyaw|, |dpitch|, |droll|"),
    ("pose_error_yaw_deg", "  yaw", "{:.2f}", "deg"),
    ("pose_error_pitch_deg", "  pitch", "{:.2f}", "deg"),
    ("pose_error_roll_deg", "  roll", "{:.2f}", "deg"),
    ("expression_error", "expression error", "{:.4f}", "eye/mouth landmarks, inter-ocular distances"),
    ("flicker_ratio", "flicker ratio", "{:.3f}", "frame-to-frame change in the face, swapped/original"),
    ("jitter_ratio", "jitter ratio", "{:.3f}", "frame-to-frame landmark motion, swapped/original"),
    ("sharpness_ratio", "sharpness ratio", "{:.3f}", "Laplacian energy in the face, swapped/original (1 = as sharp)"),
    ("psnr_outside_db", "PSNR outside the faces", "{:.2f}", "dB (100 = identical)"),
    ("frames_original", "frames in original", "{}", ""),
    ("frames_swapped", "frames in swapped", "{}", ""),
    ("frame_order_share", "frames in order (barcode)", "{:.1%}", ""),
    ("order_ok", "frame order ok", "{}", ""),
    ("audio_duration_original_s", "audio duration, original", "{:.3f}", "s"),
    ("audio_duration_swapped_s", "audio duration, swapped", "{:.3f}", "s"),
]


def format_table(report: dict) -> str:
    """The report as an aligned plain-text table (one metric a line)."""
    lines = [f"evaluation of {report.get('swapped', '?')} against {report.get('original', '?')}"]
    width = max(len(label) for _, label, _, _ in _ROWS)
    for key, label, fmt, unit in _ROWS:
        if key not in report:
            continue
        value = report[key]
        text = "n/a" if value is None else fmt.format(value)
        lines.append(f"  {label:<{width}}  {text:>10}  {unit}".rstrip())
    lines.append(f"  (face metrics over {report.get('metrics_over', '?')})")
    return "\n".join(lines)


def plot_png(report: dict) -> bytes:
    """PNG bytes: per-frame identity distances (top) and pose error (bottom) over the frame index."""
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, touches no global backend

    over_changed = report.get("changed_faces", 0) > 0
    frames, d_t, d_r, pose = [], [], [], []
    for rec in report["per_frame"]:
        faces = [f for f in rec["faces"] if f["changed"] or not over_changed]
        frames.append(rec["frame"])
        d_t.append(_mean(f.get("identity_distance_target") for f in faces))
        d_r.append(_mean(f.get("identity_distance_replaced") for f in faces))
        pose.append(_mean(f.get("pose_error_deg") for f in faces))
    nan = lambda xs: [np.nan if x is None else x for x in xs]  # noqa: E731 - gaps in the lines
    fig = Figure(figsize=(9, 5.5), dpi=100, layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.plot(frames, nan(d_t), ".-", label="to target")
    ax1.plot(frames, nan(d_r), ".-", label="to the replaced face")
    ax1.axhline(0.6, color="grey", linestyle="--", linewidth=1, label="same person (0.6)")
    ax1.set_ylabel("identity distance")
    ax1.legend(loc="upper right", fontsize="small")
    ax1.set_title(f"retrieval {report.get('identity_retrieval') or 0:.0%}, "
                  f"pose error {report.get('pose_error_deg') or 0:.1f} deg, "
                  f"PSNR outside {report.get('psnr_outside_db') or 0:.1f} dB", fontsize="medium")
    ax2.plot(frames, nan(pose), ".-", color="tab:red")
    ax2.set_ylabel("pose error (deg)")
    ax2.set_xlabel("frame")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
