"""Face-track smoothing for convert: noise averaged out, real motion followed without lag, short
holes filled, tracks kept apart, and the same result on both sides of a shard join.
"""

from __future__ import annotations

import numpy as np

from faceswap.faces import smoothing
from faceswap.faces.align import MEAN_FACE_68


def _face(x: float, y: float, scale: float = 100.0) -> np.ndarray:
    return MEAN_FACE_68 * scale + np.array([x, y])


def _track(xs, y=100.0, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return {f: [_face(x, y) + rng.normal(0, noise, (68, 2))] for f, x in enumerate(xs)}


def _smoothed_x(result, frames):
    return np.array([result[f][0][0][:, 0].mean() for f in frames])


def test_noise_is_averaged_out_and_steady_motion_passes_unchanged():
    truth = 100 + 3.0 * np.arange(60)                      # 3 px a frame
    noisy = smoothing.smooth_tracks(_track(truth, noise=1.5))
    clean = smoothing.smooth_tracks(_track(truth))
    frames = range(60)
    # Without noise, steady motion comes out exactly as it went in, ends included (no lag).
    assert np.allclose(_smoothed_x(clean, frames), truth - truth[0] + _track(truth)[0][0][:, 0].mean(), atol=1e-6)
    raw = np.array([_track(truth, noise=1.5)[f][0] for f in frames])
    err_raw = np.abs(raw - np.array([_face(x, 100) for x in truth])).mean()
    err_smooth = np.abs(np.array([noisy[f][0][0] for f in frames]) - np.array([_face(x, 100) for x in truth])).mean()
    assert err_smooth < 0.6 * err_raw


def test_a_fast_head_turn_is_followed_within_one_frame():
    frames = np.arange(40)
    truth = 100 + 60 / (1 + np.exp(-(frames - 20) / 1.2))  # 60 px in ~6 frames
    out = smoothing.smooth_tracks(_track(truth))
    got = _smoothed_x(out, frames) - _track(truth)[0][0][:, 0].mean() + truth[0]
    half = 100 + 30
    assert abs(np.argmax(got >= half) - np.argmax(truth >= half)) <= 1
    assert np.abs(got - truth).max() < 0.25 * 60 / 6    # within a quarter of a frame's motion


def test_short_holes_are_filled_and_long_ones_split_the_track():
    xs = 100 + 2.0 * np.arange(30)
    faces = _track(xs)
    for f in (10, 20, 21):
        del faces[f]
    out = smoothing.smooth_tracks(faces)
    assert sorted(out) == list(range(30))
    assert out[10][0][1] is None and out[20][0][1] is None and out[11][0][1] == 0
    assert abs(out[10][0][0][:, 0].mean() - _face(xs[10], 100)[:, 0].mean()) < 0.5
    for f in (5, 6, 7):  # three frames missing: the face is gone; no face is invented
        del faces[f]
    out = smoothing.smooth_tracks(faces)
    assert not {5, 6, 7} & set(out)


def test_two_faces_stay_two_tracks():
    faces = {f: [_face(100 + f, 100), _face(400 - f, 120, 80)] for f in range(20)}
    faces[7] = faces[7][::-1]  # the detector's order changes: the tracks do not
    out = smoothing.smooth_tracks(faces)
    assert all(len(out[f]) == 2 for f in range(20))
    left = [min(out[f], key=lambda face: face[0][:, 0].mean()) for f in range(20)]
    assert [face[1] for face in left] == [0] * 7 + [1] + [0] * 12
    assert np.allclose([face[0][:, 0].mean() for face in left], [_face(100 + f, 100)[:, 0].mean() for f in range(20)])


def _eye_distance(face: np.ndarray) -> float:
    return float(np.linalg.norm(face[36:42].mean(0) - face[42:48].mean(0)))


def test_wrong_fits_are_replaced_by_the_track_around_them():
    """dlib's second answer: a shape 1.4x the face for six frames, one shifted by a third of the eye
    distance for two. The track convert pastes by stays on the face through both."""
    xs = 100 + 2.0 * np.arange(60)
    faces = _track(xs, noise=0.3, seed=1)
    truth = {f: _face(x, 100) for f, x in enumerate(xs)}
    eye = _eye_distance(truth[0])
    for f in range(20, 26):
        centre = truth[f].mean(0)
        faces[f] = [(faces[f][0] - centre) * 1.4 + centre + [0, 0.2 * eye]]
    for f in (40, 41):
        faces[f] = [faces[f][0] + [0.33 * eye, 0.1 * eye]]
    assert all(np.linalg.norm(faces[f][0] - truth[f], axis=1).mean() > 0.3 * eye for f in (20, 25, 40, 41))
    flagged = smoothing.outlier_fits(np.stack([faces[f][0] for f in range(60)]))
    assert set(np.nonzero(flagged)[0]) == {20, 21, 22, 23, 24, 25, 40, 41}
    out = smoothing.smooth_tracks(faces)
    errors = [np.linalg.norm(out[f][0][0] - truth[f], axis=1).mean() / eye for f in range(60)]
    assert max(errors) < 0.05, f"frame {int(np.argmax(errors))} is {max(errors):.2f} eye distances off"


def test_zooms_cuts_and_speech_are_not_taken_for_wrong_fits():
    frames = np.arange(80)
    scale = np.where(frames < 40, 100 * 1.012 ** frames, 100 * 1.012 ** 40)  # a zoom: +1.2 % a frame
    x = np.where(frames < 60, 100.0, 160.0)                                    # a jump in one frame
    faces = {}
    for f in frames:
        face = _face(x[f], 100, scale[f])
        opening = 0.12 * scale[f] * (f % 4 in (1, 2))                          # the mouth and chin, 6 Hz
        face[6:11, 1] += opening
        face[48:68, 1] += opening * np.linspace(0.3, 1, 20)
        faces[int(f)] = [face]
    assert not smoothing.outlier_fits(np.stack([faces[f][0] for f in frames])).any()
    out = smoothing.smooth_tracks(faces)
    raw = np.array([faces[f][0][:, 0].mean() for f in frames])
    got = np.array([out[f][0][0][:, 0].mean() for f in frames])
    middle = (raw[59] + raw[60]) / 2
    assert np.argmax(got > middle) in (59, 60, 61)       # the jump is followed within a frame
    assert np.allclose(got[5:35], raw[5:35], atol=0.05)  # the zoom passes unchanged


def test_both_sides_of_a_shard_join_see_the_same_smoothing():
    xs = 100 + 40 * np.sin(np.arange(100) / 7.0)
    faces = _track(xs, noise=1.0, seed=3)
    del faces[48]  # a hole right at the join
    whole = smoothing.smooth_tracks(faces)
    join, halo = 50, smoothing.HALO
    first = smoothing.smooth_tracks({f: v for f, v in faces.items() if f < join + halo})
    second = smoothing.smooth_tracks({f: v for f, v in faces.items() if f >= join - halo})
    for f in range(join - 5, join):
        assert np.allclose(first[f][0][0], whole[f][0][0])
    for f in range(join, join + 5):
        assert np.allclose(second[f][0][0], whole[f][0][0])


# -- convert's records: matrices refitted, holes filled, shards independent ------------------------------

def _records(xs, centering="face", size=256, noise=0.0, seed=0):
    """Convert's records (landmarks, matrix, crop size, bbox) of one face moving along ``xs``."""
    from faceswap.faces.align import alignment_matrix

    out = {}
    for f, face in _track(xs, noise=noise, seed=seed).items():
        lm = face[0]
        box = np.concatenate([lm.min(0), lm.max(0)])
        out[f] = [(lm, alignment_matrix(lm, size, centering).reshape(6), size, box)]
    return out


def test_records_keep_their_framing_and_crop_size():
    from faceswap.faces.align import alignment_matrix

    xs = 100 + 2.5 * np.arange(30)
    for centering in ("face", "head"):
        records = _records(xs, centering)
        out = smoothing.smooth_records(records, 0, 30)
        assert sorted(out) == list(range(30))
        for f in range(30):
            (lm, matrix, size, bbox), = out[f]
            assert size == 256
            # Noise-free steady motion: the same matrix extract wrote, whichever centering it used.
            assert np.allclose(matrix, alignment_matrix(records[f][0][0], 256, centering).reshape(6), atol=1e-6)
            assert np.allclose(bbox, records[f][0][3])


def test_a_filled_hole_gets_a_matrix_and_a_box_between_its_neighbours():
    from faceswap.faces.align import alignment_matrix

    xs = 100 + 2.0 * np.arange(20)
    records = _records(xs)
    truth = records.pop(9)[0]
    out = smoothing.smooth_records(records, 0, 20)
    (lm, matrix, size, bbox), = out[9]
    assert size == truth[2]
    assert np.allclose(matrix, alignment_matrix(truth[0], 256).reshape(6), atol=1e-3)
    assert np.allclose(bbox, truth[3], atol=1e-6)


def test_a_shard_read_with_its_halo_renders_as_the_whole_clip_does():
    xs = 100 + 40 * np.sin(np.arange(90) / 6.0)
    records = _records(xs, noise=1.0, seed=5)
    del records[30], records[59]  # holes at both joins
    for f in (26, 27, 28, 29, 31, 32):  # and a run of wrong fits (1.4x the face) across the first join
        lm, matrix, size, box = records[f][0]
        records[f] = [((lm - lm.mean(0)) * 1.4 + lm.mean(0), matrix, size, box)]
    whole = smoothing.smooth_records(records, 0, 90)
    for start, stop in ((0, 30), (30, 60), (60, 90)):
        halo = {f: r for f, r in records.items() if start - smoothing.HALO <= f < stop + smoothing.HALO}
        shard = smoothing.smooth_records(halo, start, stop)
        assert sorted(shard) == list(range(start, stop))
        for f in range(start, stop):
            assert np.allclose(shard[f][0][1], whole[f][0][1], atol=1e-9), f"frame {f} differs at a join"


def test_extract_cleaning_replaces_wrong_fits_fills_holes_and_keeps_a_blink_and_speech():
    """Extract's records: the track's wrong fits replaced, its holes filled, the face smoothed, but each eye's
    and the mouth's own shape as fitted: a two-frame blink stays shut and the mouth keeps its 6 Hz opening
    (inspect, the pose balance and training's eye and mouth weights read them)."""
    xs = 100 + 2.0 * np.arange(40)
    faces = _track(xs, noise=0.3, seed=2)
    truth = {f: _face(x, 100) for f, x in enumerate(xs)}
    eye = _eye_distance(truth[0])
    centre = truth[15].mean(0)
    faces[15] = [(faces[15][0] - centre) * 1.3 + centre]  # a fit 1.3x the face
    del faces[30]                                            # a frame the tracker missed
    for f in (24, 25):                                        # a blink: both eyes shut
        for lids in ((37, 38, 41, 40), (43, 44, 47, 46)):
            faces[f][0][[lids[0], lids[1]], 1] = faces[f][0][[lids[2], lids[3]], 1]
    for f in range(40):                                       # speech: the lower lip drops every other frame
        if f in faces and f % 2:
            faces[f][0][55:60, 1] += 0.3 * eye
    out = smoothing.clean_tracks(faces)
    cleaned = smoothing.smooth_tracks(faces)                  # convert's smoothing, for comparison
    assert sorted(out) == list(range(40)) and all(len(out[f]) == 1 for f in out)
    assert out[30][0][1] is None and out[15][0][1] == 0
    for f in set(range(40)) - {15, 30}:
        pts = out[f][0][0]
        assert np.linalg.norm(pts - faces[f][0], axis=1).mean() < 0.05 * eye  # the detector's fit, steadied
        for group in smoothing.OWN_SHAPES:                    # eyes and mouth: their shapes exactly as fitted
            assert np.allclose(pts[group] - pts[group].mean(0), faces[f][0][group] - faces[f][0][group].mean(0))
    for f in (15, 30):
        assert np.linalg.norm(out[f][0][0] - truth[f], axis=1).mean() < 0.05 * eye
    opening = lambda pts: pts[41, 1] - pts[37, 1]  # noqa: E731 - the left eye's lids apart
    assert opening(out[24][0][0]) == opening(faces[24][0]) < 0.05 * eye
    assert opening(cleaned[24][0][0]) > 0.3 * opening(faces[20][0])  # where a plain smoothing opens the blink
