"""Responsible-use marking of swapped videos.

metadata.py   container tags (synthetic_media, ai_generated, model fingerprint, date)
watermark.py  invisible face-aligned watermark in the swapped faces only
verify.py     `faceswap verify`: tags + watermark -> report (exit 0 marked, 3 not, 2 bad input)
label.py      optional visible "AI-GENERATED" label
"""
