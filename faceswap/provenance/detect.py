"""Finding the mark: every face of every sampled frame, tracked, tested alone and pooled.

    (frame index, RGB) pairs -> FaceAligner (the project's landmark backend: boxes -> 68 points)
      -> every face: canonical grid -> gain-normalised projections p_k onto the patterns
      -> faces linked into tracks by position and size; a track the detector misses is followed (landmarks
         refitted in its last box, up to MAX_FOLLOW frames), a few missed frames read with interpolated ones
      -> per track: host cancelled (the mean, or a line, over runs of consecutive frames) -> residuals
      -> hypotheses: each track alone and all faces pooled, each with mean and line -> z_k (faces weighted
         down to the median residual energy), energy score, best codeword's correlation t
      -> t over its threshold and the word certain -> payload; else the score over its threshold ->
         present but unreadable; else absent (thresholds: union bound over the hypotheses)

Why per track: the host is cancelled by differencing one face in time, so each face needs
its own mean; a frame's chips are the same for all its faces, so residuals of several marked
faces add up. A track is linked from positions only and the pooled hypothesis from all
faces, never from the chips, so given the residuals each z_k stays a Rademacher sum and the
false-positive bound of `watermark` holds per hypothesis; with H hypotheses the threshold
uses u + ln H (union bound).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Iterable

import numpy as np

from faceswap.faces.tracker import place_box, relate_box
from faceswap.provenance import payload as word
from faceswap.provenance.watermark import (BLOCK_FRAMES, CANON_PX, N_BITS, RUN_FRAMES, chips, luma, patterns,
                                           to_canonical_matrix, warp_luma_to_canonical)

FP_LOG_BOUND = 13.8  # -ln P(score > threshold | no mark) per hypothesis family: e^-13.8 = 1e-6
MIN_TRACK_FACES = 8  # a track tested on its own needs ~3 chip blocks; shorter ones only join the pool
LINK_DISTANCE = 0.5  # a face continues a track when its centre moved less than this share of its size
LINK_SIZE_RATIO = 1.5  # ... and its size changed by less than this factor
MAX_FOLLOW = 8  # faces in a row a track is followed without the detector (refitted landmarks)
FOLLOW_MIN_CONFIDENCE = 0.5  # how face-like (`backend.shape_confidence`) a refitted shape must be
FILL_GAP_FRAMES = 4  # frames where the detector lost a tracked face are read with interpolated landmarks


def energy_threshold(log_bound: float = FP_LOG_BOUND, n_bits: int = N_BITS) -> float:
    """E such that P(sum z_k^2 >= E) <= exp(-log_bound) for independent 1-sub-Gaussian z_k
    (Hsu, Kakade & Zhang 2012): K + 2 sqrt(K u) + 2u."""
    return n_bits + 2 * math.sqrt(n_bits * log_bound) + 2 * log_bound


def score_threshold(hypotheses: int = 1) -> float:
    """Score a hypothesis must pass when `hypotheses` are tested: 8.34 for one, 40 bits, u = 13.8."""
    energy = energy_threshold(FP_LOG_BOUND + math.log(max(1, hypotheses)))
    return (energy - N_BITS) / math.sqrt(2 * N_BITS)


SCORE_MIN = score_threshold(1)


def score_of(z: np.ndarray) -> float:
    """Standardised chip energy (sum z_k^2 - K) / sqrt(2K): ~N(0, 1) without the mark."""
    return (float((z ** 2).sum()) - N_BITS) / math.sqrt(2 * N_BITS)


def face_projections(canon_luma: np.ndarray) -> np.ndarray:
    """(N_BITS,) projections of a gain-normalised canonical face onto the patterns."""
    u, window, _ = patterns()
    x = canon_luma.astype(np.float32)
    wsum = float(window.sum())
    mean = float((x * window).sum()) / wsum
    std = math.sqrt(max(float((window * (x - mean) ** 2).sum()) / wsum, 1e-6))
    return u.T @ (x.reshape(-1) / std)


def residuals(indices: np.ndarray, proj: np.ndarray, line: bool = True) -> np.ndarray:
    """One face's projections (T, N_BITS), sorted by frame index, minus their mean (or least-squares
    line) over each chunk of RUN_FRAMES consecutive frames: the static host (and its drift) cancel.

    Neither wins everywhere, so `detect` tries both (two more hypotheses): a real face turns and
    changes expression within a chunk, and the line removes that drift (the woman's clip marked as
    convert marks it: mean 23.7 with 2 bit errors, line 35.7 with none); a generated face barely
    drifts, and the line then only costs mark (a 150-step model's output: mean 44.8, line 35.3)."""
    resid = np.zeros_like(proj, dtype=np.float64)
    start = 0
    for end in range(1, len(indices) + 1):
        # chunk boundary: a gap in the frame indices, or RUN_FRAMES frames collected
        if end == len(indices) or indices[end] != indices[end - 1] + 1 or end - start >= RUN_FRAMES:
            chunk = proj[start:end].astype(np.float64)
            resid[start:end] = chunk - chunk.mean(0)
            if line and end - start >= 4:  # shorter chunks keep too little of the mark once a line is fitted
                t = np.arange(end - start) - (end - start - 1) / 2
                resid[start:end] -= np.outer(t, t @ resid[start:end] / (t @ t))
            start = end
    return resid


def chip_z(indices: np.ndarray, resid: np.ndarray) -> np.ndarray:
    """z_k = sum_b c_k(b) y_k(b) / sqrt(sum_b y_k(b)^2), y_k(b) the residuals of block b summed
    (over its frames and over every face given): given y, each z_k is a Rademacher sum.

    A face whose residual energy (over all bits) is above the median of the faces given is scaled
    down to it: a blink, a mouth opening or a face the codec smeared leaves a large residual that
    carries no more mark than the others (inverse-variance weighting above the median). The weights
    come from the residuals alone, never from the chips, so z_k stays a Rademacher sum. Measured on
    laundered outputs (stripped + CRF 28 + half size), the best codeword's correlation t: the woman's
    clip 8.2 -> 15.3, seven sample-based convert outputs +0 to +16 % each."""
    energy = (resid ** 2).mean(1, keepdims=True)
    resid = resid * np.minimum(1.0, np.median(energy) / np.maximum(energy, 1e-12))
    blocks = np.asarray(indices) // BLOCK_FRAMES
    uniq, inverse = np.unique(blocks, return_inverse=True)
    y = np.zeros((len(uniq), resid.shape[1]))
    np.add.at(y, inverse, resid)
    c = np.stack([chips(b) for b in uniq])  # (B, N_BITS)
    norm = np.sqrt((y ** 2).sum(0))
    return np.where(norm > 0, (c * y).sum(0) / np.maximum(norm, 1e-12), 0.0)


def chip_statistics(indices: np.ndarray, proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, residual) of one face over frames `indices` (T,) with projections (T, N_BITS)."""
    order = np.argsort(indices, kind="stable")
    resid = residuals(np.asarray(indices)[order], proj[order])
    z = chip_z(np.asarray(indices)[order], resid)
    return z, resid[np.argsort(order)]


class FaceAligner:
    """Faces of a frame on the canonical grid, through the project's landmark backend (dlib HOG)."""

    def __init__(self, backend=None):
        from faceswap.faces.backend import make_backend

        self.backend = backend or make_backend("dlib")

    def faces(self, rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(detector box, (68, 2) float64 landmarks) of every face found in an RGB frame."""
        rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
        # the detector's window is 80 px: upsample small frames so half-size faces are found
        upsample = 1 if min(rgb.shape[:2]) < 5 * self.backend.window_px else 0
        boxes = self.backend.detect(rgb, upsample)
        found = self.backend.landmarks(rgb, boxes) if boxes else []
        return [(np.asarray(box, np.float64), np.asarray(pts, np.float64)) for box, (pts, _) in zip(boxes, found)]

    def landmarks(self, rgb: np.ndarray) -> list[np.ndarray]:
        """(68, 2) float64 landmarks of every face found in an RGB frame."""
        return [pts for _, pts in self.faces(rgb)]

    def refit(self, rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float]:
        """Landmarks fitted in `box` without asking the detector, and how face-like they are (0-1)."""
        rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
        (pts, conf), = self.backend.landmarks(rgb, [np.asarray(box, np.float32)])
        return np.asarray(pts, np.float64), float(conf)


@dataclasses.dataclass
class _Track:
    id: int
    indices: list = dataclasses.field(default_factory=list)
    proj: list = dataclasses.field(default_factory=list)
    sizes: list = dataclasses.field(default_factory=list)
    centre: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    rel: np.ndarray | None = None  # the detector's box relative to the landmarks (`tracker.relate_box`)
    followed: int = 0  # faces in a row read by refitting the landmarks, without the detector


@dataclasses.dataclass(frozen=True)
class TrackEvidence:
    """What one face track says: its own score and payload, and its share of agreeing faces."""
    track: int
    faces: int
    first_frame: int
    last_frame: int
    size_px: float  # median face width in frame pixels
    score: float
    payload: str | None
    share_faces: float  # its faces whose residual correlates with the found word (0 when none found)


@dataclasses.dataclass(frozen=True)
class WatermarkResult:
    found: bool  # present with a readable payload
    payload: str | None  # 4 hex digits: the first 16 bits of the model fingerprint
    share_frames: float  # share of checked frames with a face whose residual correlates with the found word
    score: float  # best hypothesis' standardised chip energy
    frames_checked: int
    faces_checked: int = 0
    threshold: float = SCORE_MIN  # what the score had to pass with this many hypotheses
    present: bool = False  # found, or the score over its threshold: a mark is there, readable or not
    carrier: str = ""  # the hypothesis that scored best: "track N" or "all faces"
    tracks: tuple[TrackEvidence, ...] = ()
    payload_score: float = 0.0  # the best codeword's correlation / sqrt(K) (`payload.decode`)
    payload_threshold: float = 0.0  # what it had to pass with this many hypotheses

    @property
    def status(self) -> str:
        """absent | payload | unreadable."""
        return "payload" if self.found else "unreadable" if self.present else "absent"


def _link(tracks: list[_Track], index: int, faces: list[tuple], recent) -> None:
    """Append each face (centre, size px, projections, landmarks) of frame `index` to the nearest open
    track; `recent` holds (index, luma) of the last frames checked, for the track's gaps."""
    pairs = []
    for f, (centre, size, *_) in enumerate(faces):
        for t, track in enumerate(tracks):
            if track.indices[-1] >= index:
                continue
            dist = float(np.hypot(*(centre - track.centre)))
            ratio = max(size, track.sizes[-1]) / min(size, track.sizes[-1])
            if dist < LINK_DISTANCE * size and ratio < LINK_SIZE_RATIO:
                pairs.append((dist, f, t))
    used_f, used_t = set(), set()
    for _, f, t in sorted(pairs):
        if f in used_f or t in used_t:
            continue
        used_f.add(f)
        used_t.add(t)
        _fill_gap(tracks[t], index, faces[f][3], recent)
        _extend(tracks[t], index, faces[f])
    for f, face in enumerate(faces):
        if f not in used_f:
            tracks.append(_Track(len(tracks)))
            _extend(tracks[-1], index, face)


def _extend(track: _Track, index: int, face: tuple) -> None:
    centre, size, proj, landmarks, rel = face
    if rel is not None:  # found by the detector
        track.rel, track.followed = rel, 0
    track.indices.append(index)
    track.proj.append(proj)
    track.sizes.append(size)
    track.centre, track.landmarks = centre, landmarks


def _fill_gap(track: _Track, index: int, landmarks: np.ndarray, recent) -> None:
    """Read the frames between the track's last face and this one, where the detector missed it, with
    landmarks interpolated between the two: a missed frame would otherwise cut the run the host is
    cancelled over (half-size laundered outputs: faces found in 45 of 60 frames)."""
    last = track.indices[-1]
    between = [(k, lum) for k, lum in recent if last < k < index]
    if not between or len(between) != index - last - 1 or len(between) > FILL_GAP_FRAMES:
        return
    for k, lum in between:
        w = (k - last) / (index - last)
        _extend(track, k, _canonical_face(lum, (1 - w) * track.landmarks + w * landmarks))


def _canonical_face(lum: np.ndarray, landmarks: np.ndarray, box: np.ndarray | None = None) -> tuple:
    """(centre in frame px, face size px, projections, landmarks, box relative to the landmarks or None)
    of one face; `box`: the detector's, when it found the face."""
    m = to_canonical_matrix(landmarks)
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))  # canonical px per frame px
    centre = np.linalg.solve(m[:, :2], np.full(2, CANON_PX / 2) - m[:, 2])
    rel = None if box is None else relate_box(box, landmarks)
    return centre, CANON_PX / scale, face_projections(warp_luma_to_canonical(lum, m)), landmarks, rel


def _follow(tracks: list[_Track], index: int, rgb: np.ndarray, lum: np.ndarray, aligner: "FaceAligner") -> int:
    """Tracks seen in the previous frame that no detection continued here: landmarks refitted in the box
    the detector gave them last, accepted when face-like and not on a face found here. A laundered
    half-size output had its face detected in only 34-48 of 60 frames; each missed frame cut the run its
    host is cancelled over. At most MAX_FOLLOW faces in a row, so a track that left does not go on."""
    followed = 0
    for track in tracks:
        if track.indices[-1] != index - 1 or track.rel is None or track.followed >= MAX_FOLLOW:
            continue
        points, conf = aligner.refit(rgb, place_box(track.rel, track.landmarks))
        if conf < FOLLOW_MIN_CONFIDENCE:
            continue
        face = _canonical_face(lum, points)
        if any(other.indices[-1] == index and np.hypot(*(other.centre - face[0])) < LINK_DISTANCE * face[1]
               for other in tracks):
            continue  # on a face the detector found here: that one is another track's
        _extend(track, index, face)
        track.followed += 1
        followed += 1
    return followed


def detect(frames: Iterable[tuple[int, np.ndarray]], aligner: FaceAligner | None = None) -> WatermarkResult:
    """Look for the mark in (frame_index, RGB frame) pairs; indices must be the frames' true positions.

    Every face of every frame is used (see the module docstring)."""
    aligner = aligner or FaceAligner()
    tracks: list[_Track] = []
    recent = collections.deque(maxlen=FILL_GAP_FRAMES)  # (index, luma) of the last frames checked
    frames_checked = faces_checked = 0
    for index, frame in sorted(frames, key=lambda pair: pair[0]):
        frames_checked += 1
        found = aligner.faces(frame)
        lum = luma(frame[..., :3])
        if found:
            faces_checked += len(found)
            _link(tracks, int(index), [_canonical_face(lum, pts, box) for box, pts in found], recent)
        faces_checked += _follow(tracks, int(index), frame, lum, aligner)
        recent.append((int(index), lum))
    if not tracks:
        return WatermarkResult(False, None, 0.0, 0.0, frames_checked, 0)

    # per track and way of cancelling the host: sorted indices and residuals
    data = {}
    for track in tracks:
        order = np.argsort(track.indices, kind="stable")
        idx, proj = np.asarray(track.indices)[order], np.stack(track.proj)[order]
        for line in (False, True):
            data[track.id, line] = (idx, residuals(idx, proj, line))
    groups = {f"track {t.id}": [t.id] for t in tracks if len(t.indices) >= MIN_TRACK_FACES}
    if len(tracks) > 1 or not groups:
        groups["all faces"] = [t.id for t in tracks]
    hypotheses = {f"{name}, {'line' if line else 'mean'}": (ids, line) for name, ids in groups.items()
                  for line in (False, True)}
    threshold = score_threshold(len(hypotheses))
    t_threshold = word.correlation_threshold(len(hypotheses), FP_LOG_BOUND)
    z_of = {name: chip_z(np.concatenate([data[i, line][0] for i in ids]),
                         np.concatenate([data[i, line][1] for i in ids]))
            for name, (ids, line) in hypotheses.items()}
    score_of_h = {name: score_of(z) for name, z in z_of.items()}
    read_of = {name: word.read(z, t_threshold) for name, z in z_of.items()}
    readable = [name for name in hypotheses if read_of[name][0] is not None]
    # the carrier: the hypothesis whose word correlates best when one is readable, else the best energy
    best = (max(readable, key=lambda name: read_of[name][1]) if readable
            else max(hypotheses, key=lambda name: score_of_h[name]))
    payload, t_best, signs = read_of[best]
    if payload is None:
        signs = None

    agreeing_frames = set()
    evidence = []
    best_ids, best_line = hypotheses[best]
    for track in tracks:
        idx, resid = data[track.id, best_line]
        agree = np.zeros(len(idx), bool)
        if signs is not None:
            agree = np.array([(signs * chips(i // BLOCK_FRAMES) * r).sum() > 0 for i, r in zip(idx, resid)])
            if track.id in best_ids:
                agreeing_frames.update(idx[agree].tolist())
        own = z_of.get(f"track {track.id}, {'line' if best_line else 'mean'}")
        if own is None:
            own = chip_z(idx, resid)
        own_payload = word.read(own, t_threshold)[0]
        evidence.append(TrackEvidence(track.id, len(idx), int(idx[0]), int(idx[-1]), float(np.median(track.sizes)),
                                      round(score_of(own), 3), own_payload, round(float(agree.mean()), 4)))
    return WatermarkResult(
        found=payload is not None, payload=payload, share_frames=len(agreeing_frames) / frames_checked,
        score=score_of_h[best], frames_checked=frames_checked, faces_checked=faces_checked, threshold=threshold,
        present=payload is not None or score_of_h[best] > threshold, carrier=best, tracks=tuple(evidence),
        payload_score=t_best, payload_threshold=t_threshold)
