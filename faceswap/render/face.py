"""One swapped face into its frame: the per-face work of convert, also timed bare by the benchmark.

    generated crop (model size) + original crop + landmarks (+ the model's rebuild of the original)
      -> occlusion: what the rebuild misses is in front of the face, kept (render/occlusion.py), and so are
         the hands extract found there (faces/hands.py)
      -> where the footage's cheek reaches past what the new face's decoder learned to paint (a head
         turned further than any face of the new identity): the footage kept (render/reach.py)
      -> where the new face's decoder painted its own background (its mask says so, or with no mask its colours:
         render/painted.py): filled from its face
      -> colour match in the uncovered face hull within that reach (and where that mask says face)
      -> sharpen -> paste under the blend mask (the hull, minus what covers the face: hands drawn at the frame's
         resolution, so fingers keep sharp edges)
      -> watermark under that same mask (pixels outside never change)
"""

from __future__ import annotations

import numpy as np


def render_face(frame: np.ndarray, generated: np.ndarray, original: np.ndarray, landmarks: np.ndarray,
                matrix: np.ndarray, mask: np.ndarray | None, settings, index: int, bbox=None,
                watermarker=None, landmarker=None, rebuilt: np.ndarray | None = None,
                hands: list | None = None, outlines: np.ndarray | None = None) -> np.ndarray | None:
    """``frame`` (RGB, changed in place) with the face pasted and marked, or None where it could not be
    pasted. ``matrix``: frame -> model-size crop; ``settings``: a ConvertConfig; ``mask``: the model's
    own mask, if it learns one; ``landmarker``: finds the rendered face's landmarks for the watermark;
    ``rebuilt``: the original crop through its own identity's decoder, for the occlusion mask (None: off);
    ``hands``: (21, 2) points in frame pixels of the hands in front of this frame's faces (kept);
    ``outlines``: the new identity's face outlines (render/reach.py): the paste is no wider at the cheeks
    than its decoder learned to paint (None: the whole hull)."""
    from faceswap.faces.align import transform_points
    from faceswap.faces.hands import hand_mask
    from faceswap.faces.masks import hull_mask
    from faceswap.render.color import match_color
    from faceswap.render.occlusion import occlusion_keep
    from faceswap.render.painted import fill_background
    from faceswap.render.paste import fill_unpainted, paste_face, sharpen
    from faceswap.render.reach import reach_mask

    size = generated.shape[0]
    points = transform_points(landmarks, matrix)  # the footage's face in the model's crop
    hull = hull_mask(points, (size, size))
    # Colour statistics of the face in both crops: not of the hand in front of it, nor of the background
    # the model painted where it says (in its own mask) there is no face.
    model_mask, keep = mask, None  # the decoder's "I painted face here"; the footage's "nothing in front"
    region = hull if model_mask is None else hull * (model_mask > 0.5)
    if rebuilt is not None:
        keep = occlusion_keep(original, rebuilt, hull)
        region = region * (keep > 0.5)
    if hands:
        region = region * (hand_mask([transform_points(h, matrix) for h in hands], (size, size)) < 0.5)
    reach = None if outlines is None or not len(outlines) else reach_mask(points, size, outlines)
    if reach is not None:
        region = region * (reach > 0.5)
        keep = reach if keep is None else keep * reach
    if settings.fill:  # the new face reaches the footage's hull: no background of its own pasted
        generated = fill_unpainted(generated, model_mask) if model_mask is not None else \
            fill_background(generated, points, hull)
    face = sharpen(match_color(generated, original, region, settings.color), settings.sharpen)
    pasted = paste_face(frame, face, matrix, landmarks, keep, erode_px=settings.erode_px,
                        feather_px=settings.feather_px, seamless=settings.seamless, hands=hands)
    if pasted is None:
        return None
    if watermarker is None:
        return frame
    # Registered by the landmarks of the face as rendered (what verify will see), not of the face it
    # replaced: the new face's features sit elsewhere.
    (x0, y0, _, _), roi_mask = pasted
    rendered = landmarker.landmarks(frame, [bbox])[0][0]
    return watermarker.embed_frame(frame, rendered, roi_mask, index, mask_origin=(x0, y0), in_place=True)
