"""Where a decoder with no mask of its own painted background inside the footage's face: told by colour.

    the generated crop + the footage's face (68 points in the model's crop) and its hull
      -> what the decoder paints around the face (outside the hull, grown by AROUND) and what it paints well
         inside it (the hull shrunk by WITHIN): a colour histogram of each (BINS per channel, smoothed)
      -> per pixel, background's share of the two likelihoods; at BACKGROUND_FROM it starts to count as
         background, from BACKGROUND_ALL it is background; and only if it is lighter than most of the face
      -> inside the hull only the band along its edge (no deeper than BAND of the crop), and never the eyes,
         the brows or the mouth: everything else is face
    -> (S, S) float32, 1 = painted face (``painted_face``)
    -> ``fill_background``: the background found there filled from the face well inside the hull (push-pull,
       render/paste.py), fading over FADE of the crop into the painted face around it; nothing else changes

Why: a decoder paints, around the face it learned, whatever surrounded that face in its training crops. The
new face is often narrower than the footage's hull around the same eyes, nose and mouth (another person's
cheeks, a jaw that does not drop with the footage's open mouth), and between the two it paints the new
identity's background: pasted, a bright arc down the cheek (the white door behind the man of the
real-footage benchmark, on the woman's frames 30, 288 and 408). A model that learns a mask says where that is;
a model that does not (``lite``) says it through its colours, because that band has the colours it paints
around the face and not those it paints in it. Where the background looks like the face (a skin-coloured
wall) the two histograms agree, nothing counts as background and nothing is filled: there is no arc to see.
A band darker than the face is left as painted: it reads as the face's shadow or hair, and hair painted over
the cheek is part of the new identity (filling it cost identity on the benchmark).
"""

from __future__ import annotations

import cv2
import numpy as np

BINS = 16              # histogram bins per RGB channel
AROUND = 1 / 16        # of the crop's side: the hull grown by this before the background is sampled
WITHIN = 1 / 12        # of the crop's side: the hull shrunk by this before the face is sampled
BAND = 1 / 8           # of the crop's side: deeper inside the hull than this, the painted face is always kept
BACKGROUND_FROM = 0.4  # background's share of the likelihood at which a pixel starts to count as background
BACKGROUND_ALL = 0.65  # ... and from which it is all background
LIGHTER_THAN = 75      # percentile of the face's lightness (L of CIELAB) a pixel must pass to count as background
LIGHTER_BY = 10.0      # ... over which (levels of 255) it comes to count fully
CLOSE = 1 / 48         # of the crop's side: gaps in the background found closed over this (a grey closing)
FADE = 1 / 24          # of the crop's side: the painted face next to the background found fades into the fill
MIN_SAMPLES = 64       # pixels each histogram needs; a crop with fewer (a face filling it) is left alone
EYES = (np.r_[36:42], np.r_[42:48])   # each eye's points: never background, nor AROUND of the crop around them
BROWS = (np.r_[17:22], np.r_[22:27])  # each brow's points: the same
MOUTH = np.r_[48:60]                  # the lips' outline: the same (teeth are as white as many walls)


def _smoothed(hist: np.ndarray) -> np.ndarray:
    """A (BINS, BINS, BINS) histogram blurred by [1, 2, 1] / 4 along each axis (a decoder's soft colours fall
    between the bins its training colours filled), normalised to sum 1."""
    for axis in range(3):
        h = np.moveaxis(hist, axis, 0)
        out = 2.0 * h
        out[1:] += h[:-1]
        out[:-1] += h[1:]
        hist = np.moveaxis(out / 4.0, 0, axis)
    return hist / max(float(hist.sum()), 1e-12)


def _disc(size: int, share: float) -> np.ndarray:
    r = max(1, int(round(share * size)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _painted_and_within(generated: np.ndarray, points: np.ndarray,
                        hull: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``painted_face``'s mask and the face it sampled (the hull shrunk by WITHIN, bool), or None."""
    size = generated.shape[0]
    inside = (hull > 0.5).astype(np.uint8)
    around = cv2.dilate(inside, _disc(size, AROUND)) == 0
    within = cv2.erode(inside, _disc(size, WITHIN)) > 0
    if around.sum() < MIN_SAMPLES or within.sum() < MIN_SAMPLES:
        return None
    q = generated.astype(np.int32) * BINS // 256
    bins = (q[..., 0] * BINS + q[..., 1]) * BINS + q[..., 2]
    shape = (BINS, BINS, BINS)
    background = _smoothed(np.bincount(bins[around], minlength=BINS ** 3).reshape(shape).astype(np.float64))
    face = _smoothed(np.bincount(bins[within], minlength=BINS ** 3).reshape(shape).astype(np.float64))
    share = (background / (background + face + 1e-6)).reshape(-1)[bins]
    # Only what is lighter than the face counts: a band darker than the face reads as its shadow or its hair,
    # and the new identity's hair is part of how that person looks (filled, it cost the woman's face in the
    # man's clip its identity and steadiness: benchmarks/RESULTS.md); a light one is a halo no light makes.
    lightness = cv2.cvtColor(generated, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    lit = np.percentile(lightness[within], LIGHTER_THAN)
    lighter = np.clip((lightness - lit) / LIGHTER_BY, 0.0, 1.0)
    background = lighter * np.clip((share - BACKGROUND_FROM) / (BACKGROUND_ALL - BACKGROUND_FROM), 0.0, 1.0)
    if not background.any():  # most crops: nothing lighter than the face in the wall's colours
        return np.ones((size, size), np.float32), within
    # One region, not speckles: a young decoder's band mixes the wall's colours with its own rim's, pixel by pixel.
    painted = 1.0 - cv2.morphologyEx(background.astype(np.float32), cv2.MORPH_CLOSE, _disc(size, CLOSE))
    # Only a band along the hull's edge may be background (the nose is deeper), and never the eyes or the brows,
    # which share their colours with the hair around the face, nor the mouth, whose teeth share a white wall's.
    pts = np.asarray(points, np.float64).reshape(68, 2)
    depth = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    features = np.zeros((size, size), np.uint8)
    for part in (*EYES, MOUTH):
        cv2.fillConvexPoly(features, cv2.convexHull(np.round(pts[part]).astype(np.int32)), 1)
    for brow in BROWS:
        cv2.polylines(features, [np.round(pts[brow]).astype(np.int32)], False, 1, thickness=max(1, size // 32))
    features = cv2.dilate(features, _disc(size, AROUND)) > 0
    band = (inside > 0) & (depth <= BAND * size) & ~features
    painted[~band] = 1.0
    return painted.astype(np.float32), within


def painted_face(generated: np.ndarray, points: np.ndarray, hull: np.ndarray) -> np.ndarray | None:
    """(S, S) float32 in [0, 1]: 0 where ``generated`` (uint8 SxSx3) shows, in the band along the hull's edge,
    the background its decoder learned around faces, 1 elsewhere (see the module's docstring);
    ``points``: the footage's face in the crop (pixels), ``hull``: its hull mask. None when the crop has too
    little of either to tell them apart."""
    found = _painted_and_within(generated, points, hull)
    return None if found is None else found[0]


def fill_background(generated: np.ndarray, points: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """``generated`` with the background ``painted_face`` finds filled from the face well inside the hull; the
    painted face next to it fades into the fill over FADE of the crop, and everything else is as painted."""
    from faceswap.render.paste import blend_fill, filled_from

    found = _painted_and_within(generated, points, hull)
    if found is None or found[0].min() >= 0.5:
        return generated
    painted, within = found
    source = within & (painted >= 0.5)
    if not source.any():
        return generated
    size = generated.shape[0]
    away = cv2.distanceTransform((painted >= 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    keep = np.minimum(painted, np.clip(away / max(1.0, FADE * size), 0.0, 1.0))
    return blend_fill(generated, keep, filled_from(generated, source))
