"""Faces: detection, landmarks, tracking, alignment, identity and masks.

    frame -> FaceTracker(backend) -> Face(bbox, landmarks, score, track)
          -> align.alignment_matrix -> warp_to_crop -> crop
          -> identity.FaceEncoder.embed -> min_distance to the references

Backends (dlib, fan) share one protocol (`backend.LandmarkBackend`); every
other module works on 68 iBUG points in source-frame pixels.
"""
