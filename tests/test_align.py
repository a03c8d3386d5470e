"""Alignment: Umeyama, the mean face, alignment matrices and warps (round trips)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from faceswap.faces import align
from faceswap.faces.backend import make_backend


@pytest.fixture(scope="module")
def astronaut_landmarks():
    backend = make_backend("dlib")
    img = data.astronaut()
    return img, backend.landmarks(img, backend.detect(img)[:1])[0][0]


def _similarity(angle_rad, scale, tx, ty):
    c, s = np.cos(angle_rad) * scale, np.sin(angle_rad) * scale
    return np.array([[c, -s, tx], [s, c, ty], [0, 0, 1]])


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(51, 2)) * 30
    t = _similarity(0.4, 1.7, 12.0, -30.0)
    dst = src @ t[:2, :2].T + t[:2, 2]
    assert np.allclose(align.umeyama(src, dst), t, atol=1e-9)
    noisy = dst + rng.normal(scale=0.5, size=dst.shape)
    fit = align.umeyama(src, noisy)
    assert np.allclose(fit[:2, :2], t[:2, :2], atol=0.01) and np.allclose(fit[:2, 2], t[:2, 2], atol=0.3)
    # A mirrored target is fitted by a proper rotation, never a reflection.
    assert np.linalg.det(align.umeyama(src, dst * [-1, 1])[:2, :2]) > 0
    with pytest.raises(ValueError):
        align.umeyama(np.ones((5, 2)), np.ones((5, 2)))


def _umeyama_svd(src, dst):
    """Umeyama's own recipe (SVD of the covariance, reflection corrected), as a reference."""
    sm, dm = src.mean(axis=0), dst.mean(axis=0)
    cov = (dst - dm).T @ (src - sm) / len(src)
    u, sv, vt = np.linalg.svd(cov)
    d = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rot = u @ np.diag(d) @ vt
    scale = (sv @ d) / (src - sm).var(axis=0).sum()
    t = np.eye(3)
    t[:2, :2], t[:2, 2] = scale * rot, dm - scale * rot @ sm
    return t


def test_umeyama_closed_form_matches_the_svd_solution():
    rng = np.random.default_rng(7)
    for k in range(300):
        src = rng.normal(size=(51, 2)) * rng.uniform(1, 100)
        t = _similarity(rng.uniform(-np.pi, np.pi), rng.uniform(0.05, 5), *rng.normal(size=2) * 300)
        dst = src @ t[:2, :2].T + t[:2, 2] + rng.normal(scale=rng.uniform(0, 20), size=src.shape)
        if k % 3 == 0:
            dst = dst * [-1, 1]  # a mirrored target: the best proper rotation, as in the SVD recipe
        assert np.allclose(align.umeyama(src, dst), _umeyama_svd(src, dst), rtol=1e-9, atol=1e-7)


def test_mean_face_is_normalised_and_symmetric():
    m = align.MEAN_FACE_68
    assert m.shape == (68, 2) and m.min() >= 0 and m.max() <= 1
    assert np.isclose(m[:, 0].min(), 0) and np.isclose(m[:, 0].max(), 1)
    assert np.isclose(m[30, 0], 0.5, atol=1e-3) and np.isclose(m[8, 0], 0.5, atol=1e-3)  # nose tip, chin
    left, right = m[36:42].mean(axis=0), m[42:48].mean(axis=0)
    assert abs(left[1] - right[1]) < 1e-3 and left[0] < right[0]
    assert m[19, 1] < m[30, 1] < m[57, 1] < m[8, 1]  # brow above nose above lip above chin


@pytest.mark.parametrize("centering", ["face", "head"])
def test_matrix_maps_landmarks_onto_the_mean_face(astronaut_landmarks, centering):
    _, pts = astronaut_landmarks
    size = 256
    matrix = align.alignment_matrix(pts, size, centering)
    assert matrix.shape == (2, 3)
    mapped = align.transform_points(pts, matrix)
    target = align.mean_face_in_crop(size, centering)
    rms = np.sqrt(((mapped[align.INNER] - target[align.INNER]) ** 2).sum(axis=1).mean())
    assert rms < 0.03 * size, rms
    assert np.all((mapped > 0) & (mapped < size))
    # The mean face itself maps onto itself.
    assert np.allclose(align.alignment_matrix(target, size, centering), [[1, 0, 0], [0, 1, 0]], atol=1e-9)


def test_head_centering_has_more_margin(astronaut_landmarks):
    _, pts = astronaut_landmarks
    face = align.transform_points(pts, align.alignment_matrix(pts, 256, "face"))
    head = align.transform_points(pts, align.alignment_matrix(pts, 256, "head"))
    assert align.inter_ocular(head) < 0.75 * align.inter_ocular(face)
    assert head[:, 1].min() > face[:, 1].min() + 20  # more room above the brows
    with pytest.raises(ValueError):
        align.alignment_matrix(pts, 256, "body")


def test_alignment_undoes_rotation_and_scale(astronaut_landmarks):
    img, pts = astronaut_landmarks
    size = 128
    crop = align.warp_to_crop(img, align.alignment_matrix(pts, size), size)
    m = cv2.getRotationMatrix2D((256, 256), 25, 0.8)
    turned = cv2.warpAffine(img, m, (512, 512), flags=cv2.INTER_LINEAR)
    turned_pts = align.transform_points(pts, m)
    crop2 = align.warp_to_crop(turned, align.alignment_matrix(turned_pts, size), size)
    centre = slice(size // 4, 3 * size // 4)
    diff = np.abs(crop[centre, centre].astype(float) - crop2[centre, centre].astype(float)).mean()
    assert diff < 8, diff


def test_warp_round_trip(astronaut_landmarks):
    img, pts = astronaut_landmarks
    matrix = align.alignment_matrix(pts, 256)
    inv = align.invert(matrix)
    assert np.allclose(align.transform_points(align.transform_points(pts, matrix), inv), pts, atol=1e-6)
    crop = align.warp_to_crop(img, matrix, 256)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    back = align.warp_from_crop(crop, matrix, img.shape[:2])
    assert back.shape == img.shape
    # Inside the face the pixels come back (the crop enlarges the face: only interpolation error).
    x0, y0 = pts[align.INNER].min(axis=0).astype(int)
    x1, y1 = pts[align.INNER].max(axis=0).astype(int)
    err = np.abs(back[y0:y1, x0:x1].astype(float) - img[y0:y1, x0:x1].astype(float)).mean()
    assert err < 4, err
    # Outside the crop nothing is written.
    assert back[:10, :10].max() == 0


@pytest.mark.parametrize("background", [True, False], ids=["thread", "inline"])
def test_crop_writer_stores_the_aligned_crops_and_raises_a_failed_write(astronaut_landmarks, tmp_path, background):
    from faceswap.faces.crop_writer import CropWriter
    from faceswap.storage import Store

    img, landmarks = astronaut_landmarks
    matrix = align.alignment_matrix(landmarks, 128, "face")
    store = Store(str(tmp_path / "store"))
    with CropWriter(store, 128, "png", ahead=2, background=background) as writer:
        for i in range(5):
            writer.submit(f"faces/x/{i:08d}_00.png", img, matrix)
    expected = align.warp_to_crop(img, matrix, 128)
    for i in range(5):  # every crop is in the store when the block ends, pixel for pixel (PNG)
        png = np.frombuffer(store.read_bytes(f"faces/x/{i:08d}_00.png"), np.uint8)
        assert np.array_equal(cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), expected)

    (tmp_path / "store" / "faces" / "y").write_text("a file where a folder must go")
    with pytest.raises(FileExistsError):  # raised to the caller (at the latest when the block ends)
        with CropWriter(store, 128, "jpg", background=background) as writer:
            writer.submit("faces/y/00000000_00.jpg", img, matrix)
