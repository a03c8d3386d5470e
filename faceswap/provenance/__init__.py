"""Responsible-use marking of swapped videos.

metadata.py   container tags (synthetic_media, ai_generated, model fingerprint, date)
watermark.py  invisible face-aligned watermark in the swapped faces only: the method, embedding
payload.py    the watermark's payload word (16 bits of the model fingerprint, Reed-Muller coded) and its decoding
detect.py     finding the mark: every face, tracked, tested alone and pooled
verify.py     `faceswap verify`: tags + watermark -> report (exit 0 marked, 3 not, 2 bad input)
label.py      optional visible "AI-GENERATED" label
"""
