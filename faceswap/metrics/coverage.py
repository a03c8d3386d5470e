"""Face-set coverage: which poses and expressions of one face set the other lacks.

    records of face sets A and B (68 landmarks, frame, source name)
      -> per face: yaw, pitch (eye corners and nose only), eye openness, mouth openness
      -> an A face is covered in pose when B has at least MIN_NEIGHBOURS faces within POSE_RADIUS_DEG
      -> warnings: what A has and B lacks (and the reverse), with A's frames
      -> PNG: both pose distributions side by side, eye and mouth openness histograms

Why it matters: decoder B paints B's face in A's pose and expression, and it can only paint
what it has seen. A turn or closed eyes that face set B lacks come out smeared or open;
the user should add such photos of B before hours of training, not after.
Pose comes from the rigid points only (the four eye corners and the nose tip), never the mouth
or jaw: with solvePnP on the usual 6 points a wide smile lifts the mouth corners and reads as
a 10-20 degree nod. In the eye line's frame (roll removed, scaled by the eye-corner distance)
the nose tip, which stands ~0.45 eye distances in front of the eye corners on the generic
head (S. Mallick's 6-point model, as metrics.pose), moves sideways by 0.45 tan(yaw) and up or
down with pitch. Its height below the eyes is a matter of face shape as much as of pitch
(0.39 eye distances on the woman of the benchmark clips, 0.61 on the man, both facing the
camera), so pitch is measured from each face set's own median: a set's typical pose counts
as level. Yaw is absolute (a face is symmetric): positive when the nose points to the image's right.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from faceswap.metrics import expression

NOSE_DEPTH_IOD = 0.45   # nose tip in front of the eye corners, in eye-corner distances (generic head)
POSE_RADIUS_DEG = 8.0   # a B face within this yaw/pitch distance shows the same head pose
MIN_NEIGHBOURS = 3      # ... and this many of them make the pose covered
MIN_EXPRESSION = 3      # faces with an expression that count as having it
RARE_SHARE = 0.25       # ... unless their share of B is below this fraction of their share of A
MIN_REPORTED = 3        # uncovered faces fewer than this are not worth a warning


@dataclass
class FaceSetStates:
    """Per-face measures of one face set (arrays of equal length)."""

    name: str
    sources: list[str]          # display name of each face's input (file name)
    frames: np.ndarray          # (N,) int frame (videos) or image index (photo folders)
    yaw: np.ndarray             # (N,) degrees
    pitch: np.ndarray           # (N,) degrees
    eyes: np.ndarray            # (N,) eye aspect ratio
    mouth: np.ndarray           # (N,) inner-lip gap / mouth width
    uncovered: np.ndarray = field(default=None)  # (N,) bool, set by compare()

    @property
    def eyes_closed(self) -> np.ndarray:
        return self.eyes < expression.EYES_CLOSED_BELOW

    @property
    def mouth_open(self) -> np.ndarray:
        return self.mouth > expression.MOUTH_OPEN_ABOVE


def nose_offsets(landmarks: np.ndarray) -> tuple[float, float]:
    """(sideways, downward) offset of the nose tip from the eye corners' midpoint, in the eye line's
    frame, in eye-corner distances."""
    p = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    left, right = (p[36] + p[39]) / 2, (p[42] + p[45]) / 2
    axis = right - left
    dist = float(np.hypot(*axis))
    if dist <= 0:
        return float("nan"), float("nan")
    c, s = axis / dist
    nose = p[30] - (left + right) / 2
    return float((c * nose[0] + s * nose[1]) / dist), float((-s * nose[0] + c * nose[1]) / dist)


def head_turns(landmarks) -> tuple[np.ndarray, np.ndarray]:
    """(yaw, pitch) in degrees of each face; pitch relative to the set's median (see the module doc)."""
    offsets = np.array([nose_offsets(p) for p in np.asarray(landmarks, np.float64).reshape(-1, 68, 2)])
    yaw = np.degrees(np.arctan2(offsets[:, 0], NOSE_DEPTH_IOD))
    down = offsets[:, 1] - np.nanmedian(offsets[:, 1])
    # The nose tip drops by NOSE_DEPTH_IOD * sin(pitch) when the head nods down: up is positive.
    pitch = -np.degrees(np.arcsin(np.clip(down / NOSE_DEPTH_IOD, -1.0, 1.0)))
    return yaw, pitch


def face_states(name: str, sources: list[str], frames, landmarks) -> FaceSetStates:
    """Measures of each face from its 68 landmarks (any pixel frame: the measures are ratios)."""
    lms = np.asarray(landmarks, dtype=np.float64).reshape(-1, 68, 2)
    yaw, pitch = head_turns(lms)
    return FaceSetStates(
        name=name, sources=list(sources), frames=np.asarray(frames, dtype=np.int64),
        yaw=yaw, pitch=pitch,
        eyes=np.array([expression.eye_openness(p) for p in lms]),
        mouth=np.array([expression.mouth_openness(p) for p in lms]),
    )


def uncovered_poses(a: FaceSetStates, b: FaceSetStates) -> np.ndarray:
    """(N_a,) bool: A faces with fewer than MIN_NEIGHBOURS B faces within POSE_RADIUS_DEG."""
    pa = np.stack([a.yaw, a.pitch], axis=1)
    pb = np.stack([b.yaw, b.pitch], axis=1)
    ok_a, ok_b = np.isfinite(pa).all(axis=1), np.isfinite(pb).all(axis=1)
    out = np.zeros(len(pa), dtype=bool)
    pb = pb[ok_b]
    for i in np.nonzero(ok_a)[0]:
        near = np.count_nonzero(np.hypot(*(pb - pa[i]).T) <= POSE_RADIUS_DEG) if len(pb) else 0
        out[i] = near < MIN_NEIGHBOURS
    return out


def frame_ranges(sources: list[str], frames: np.ndarray, limit: int = 12) -> str:
    """'clip.mp4 frames 20-75, 180; other.mp4 frame 3' (at most ``limit`` runs, then '...')."""
    by_source: dict[str, list[int]] = {}
    for s, f in zip(sources, frames):
        by_source.setdefault(s, []).append(int(f))
    parts, runs_shown = [], 0
    for s, fs in by_source.items():
        fs = sorted(set(fs))
        runs, start, prev = [], fs[0], fs[0]
        for f in fs[1:]:
            if f > prev + 2:  # a gap of one frame (a missed detection) does not split a run
                runs.append((start, prev))
                start = f
            prev = f
        runs.append((start, prev))
        shown = runs[:max(0, limit - runs_shown)]
        runs_shown += len(shown)
        text = ", ".join(f"{x}" if x == y else f"{x}-{y}" for x, y in shown)
        if len(shown) < len(runs):
            text += ", ..."
        word = "frame" if len(fs) == 1 else "frames"
        parts.append(f"{s} {word} {text}" if shown else f"{s} ...")
    return "; ".join(parts)


def _direction(a: FaceSetStates, i: int, b: FaceSetStates) -> str:
    """Which way A's face i lies beyond B's poses: the larger of its yaw and pitch offsets."""
    dy = a.yaw[i] - np.nanmedian(b.yaw) if np.isfinite(b.yaw).any() else a.yaw[i]
    dp = a.pitch[i] - np.nanmedian(b.pitch) if np.isfinite(b.pitch).any() else a.pitch[i]
    if abs(dy) >= abs(dp):
        return "turned to the image's right" if dy > 0 else "turned to the image's left"
    return "tilted up" if dp > 0 else "tilted down"


def compare(a: FaceSetStates, b: FaceSetStates) -> list[str]:
    """Warnings that name what ``a`` has and ``b`` lacks (sets ``a.uncovered``)."""
    warnings = []
    for label, has_a, has_b in (("eyes closed", a.eyes_closed, b.eyes_closed),
                                ("the mouth open", a.mouth_open, b.mouth_open)):
        n_a, n_b = int(has_a.sum()), int(has_b.sum())
        share_a, share_b = n_a / max(1, len(has_a)), n_b / max(1, len(has_b))
        if n_a >= MIN_REPORTED and (n_b < MIN_EXPRESSION or share_b < RARE_SHARE * share_a):
            some = "no face" if n_b == 0 else f"only {n_b} face{'s' if n_b > 1 else ''} ({share_b:.0%})"
            warnings.append(f"{b.name} has {some} with {label}; {a.name} has {n_a} ({share_a:.0%}) with {label} "
                            f"({frame_ranges([a.sources[i] for i in np.nonzero(has_a)[0]], a.frames[has_a])})")
    a.uncovered = uncovered_poses(a, b)
    groups: dict[str, list[int]] = {}
    for i in np.nonzero(a.uncovered)[0]:
        groups.setdefault(_direction(a, i, b), []).append(int(i))
    for where, idx in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        if len(idx) < MIN_REPORTED:
            continue
        idx = np.asarray(idx)
        warnings.append(
            f"{b.name} has no head pose near {len(idx)} faces of {a.name} {where} "
            f"(yaw {a.yaw[idx].min():+.0f}..{a.yaw[idx].max():+.0f} deg, pitch {a.pitch[idx].min():+.0f}.."
            f"{a.pitch[idx].max():+.0f} deg; {b.name} spans yaw {np.nanmin(b.yaw):+.0f}..{np.nanmax(b.yaw):+.0f}, "
            f"pitch {np.nanmin(b.pitch):+.0f}..{np.nanmax(b.pitch):+.0f}): "
            f"{frame_ranges([a.sources[i] for i in idx], a.frames[idx])}")
    return warnings


def summary(s: FaceSetStates) -> dict:
    """Counts and ranges of one face set, for the report."""
    fin = lambda x: x[np.isfinite(x)]  # noqa: E731
    return {
        "faces": len(s.frames),
        "yaw_deg": [float(fin(s.yaw).min()), float(fin(s.yaw).max())] if fin(s.yaw).size else None,
        "pitch_deg": [float(fin(s.pitch).min()), float(fin(s.pitch).max())] if fin(s.pitch).size else None,
        "eyes_closed": int(s.eyes_closed.sum()),
        "mouth_open": int(s.mouth_open.sum()),
        "poses_not_in_other": int(s.uncovered.sum()) if s.uncovered is not None else None,
    }


def plot_png(a: FaceSetStates, b: FaceSetStates) -> bytes:
    """Both pose distributions side by side (uncovered faces in red), eye and mouth openness below."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8), dpi=100, layout="constrained")
    axes = fig.subplots(2, 2)
    lim_y = max(30.0, float(np.nanmax(np.abs(np.concatenate([a.yaw, b.yaw])))) + 5)
    lim_p = max(30.0, float(np.nanmax(np.abs(np.concatenate([a.pitch, b.pitch])))) + 5)
    for ax, s, other in ((axes[0, 0], a, b), (axes[0, 1], b, a)):
        ax.scatter(other.yaw, other.pitch, s=8, color="0.8", label=f"{other.name} (for comparison)")
        bad = s.uncovered if s.uncovered is not None else np.zeros(len(s.yaw), bool)
        ax.scatter(s.yaw[~bad], s.pitch[~bad], s=10, color="tab:blue", label=f"{s.name}: covered by {other.name}")
        if bad.any():
            ax.scatter(s.yaw[bad], s.pitch[bad], s=14, color="tab:red",
                       label=f"{s.name}: no pose of {other.name} within {POSE_RADIUS_DEG:.0f} deg")
        ax.set_xlim(-lim_y, lim_y)
        ax.set_ylim(-lim_p, lim_p)
        ax.set_xlabel("yaw (deg, + = nose to the image's right)")
        ax.set_ylabel("pitch (deg from the set's median, + = up)")
        ax.set_title(f"{s.name}: {len(s.yaw)} faces, {int(bad.sum())} in poses {other.name} lacks", fontsize="medium")
        ax.legend(loc="lower left", fontsize="x-small")
        ax.grid(alpha=0.3)
    for ax, attr, thr, label in ((axes[1, 0], "eyes", expression.EYES_CLOSED_BELOW, "eye openness (aspect ratio)"),
                                 (axes[1, 1], "mouth", expression.MOUTH_OPEN_ABOVE, "mouth openness (gap / width)")):
        vals = [getattr(a, attr), getattr(b, attr)]
        hi = max(float(np.max(np.concatenate(vals))), thr * 1.5)
        bins = np.linspace(0, hi, 30)
        for v, s, color in ((vals[0], a, "tab:blue"), (vals[1], b, "tab:orange")):
            ax.hist(v, bins=bins, alpha=0.55, color=color, label=f"{s.name} ({len(v)} faces)",
                    weights=np.full(len(v), 100.0 / max(1, len(v))))
        ax.axvline(thr, color="k", linestyle="--", linewidth=1,
                   label="closed below" if attr == "eyes" else "open above")
        ax.set_xlabel(label)
        ax.set_ylabel("% of faces")
        ax.legend(fontsize="x-small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
