"""faceswap: face swapping for whole films, at cluster scale, on Ray.

Pipeline: extract (faces + alignment records) -> train (shared encoder, two
decoders) -> convert (swap, blend, encode segments) -> assemble (join, audio,
provenance marking).
"""

__version__ = "0.1.0"
