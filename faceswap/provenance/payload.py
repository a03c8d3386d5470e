"""The watermark's payload word: 8-bit tag + 24 bits of the model fingerprint + CRC-8.

    model fingerprint -> payload_for -> 3 bytes -> word_bits -> 40 signs (+-1) in the mark
    40 soft bit values z -> decode_soft (sign word, else Chase flips of the weakest bits) -> payload hex | None

The check is tag + CRC: 16 bits, so a word of random signs passes with probability
2^-16, and 7 * 2^-16 when one of the CHASE_BITS least reliable bits may be flipped.

Why at most one flip: the tag is checked on its own, and the CRC-8 (0x07) over the 32
data + CRC bits has Hamming distance 4 (no valid error pattern of weight 1-3, 284 of
weight 4). Flipping up to 6 weak bits (the former rule) turns 2 bit errors plus 2
flips into another valid word: a laundered convert output decoded f45329 or f47309 for
f4730b. One flip with at most 2 errors cannot reach another word (1 + 2 < 4), so a
payload is either the model's or not given; a mark whose bits are too damaged is
reported as present but unreadable.
"""

from __future__ import annotations

import hashlib

import numpy as np

TAG = 0xA5  # fixed first byte of every payload word
N_DATA_BITS = 24
N_BITS = 8 + N_DATA_BITS + 8  # tag + data + CRC-8
CHASE_BITS = 6  # soft decoding: one of the 6 least reliable bits may be flipped
MAX_FLIPS = 1  # see the module docstring: the code's distance (4) allows one flip without mis-decoding


def crc8(data: bytes) -> int:
    """CRC-8 (polynomial 0x07, init 0)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def payload_for(model_fingerprint: str) -> bytes:
    """The 3 payload bytes for a model: the first 24 bits of its hex fingerprint.

    A fingerprint that is not hex (or shorter than 6 digits) is hashed first.
    """
    fp = str(model_fingerprint).strip().lower()
    try:
        if len(fp) < 6:
            raise ValueError(fp)
        return bytes.fromhex(fp[:6])
    except ValueError:
        return hashlib.sha256(fp.encode()).digest()[:3]


def word_bits(payload: bytes) -> np.ndarray:
    """(N_BITS,) float32 in {-1, +1}: the signs the mark carries for `payload`."""
    word = bytes([TAG]) + payload + bytes([crc8(bytes([TAG]) + payload)])
    bits = np.unpackbits(np.frombuffer(word, np.uint8))
    return bits.astype(np.float32) * 2 - 1


def decode_word(signs: np.ndarray) -> str | None:
    """Payload hex from +-1 bit signs, or None when tag or CRC do not match."""
    word = np.packbits((np.asarray(signs) > 0).astype(np.uint8)).tobytes()
    if word[0] != TAG or crc8(word[:-1]) != word[-1]:
        return None
    return word[1:-1].hex()


def decode_soft(z: np.ndarray) -> tuple[str | None, np.ndarray]:
    """Chase decoding: the sign word, else the least reliable bit flipped (one of CHASE_BITS) such
    that tag and CRC pass. Returns (payload hex or None, the bit signs used).

    Run only once the presence score has passed its threshold; trying 7 words then raises the
    chance that noise passes tag + CRC from 2^-16 to 7 * 2^-16 = 1e-4, on top of the score's
    own bound (about 1e-6), so an unmarked video still decodes with odds below 1e-10.
    """
    signs = np.where(z >= 0, 1.0, -1.0)
    weak = np.argsort(np.abs(z))[:CHASE_BITS]
    # candidates in order of the total |z| they flip: the likeliest corrections first
    masks = sorted((m for m in range(1 << CHASE_BITS) if bin(m).count("1") <= MAX_FLIPS),
                   key=lambda m: sum(abs(z[weak[i]]) for i in range(CHASE_BITS) if m >> i & 1))
    for m in masks:
        trial = signs.copy()
        for i in range(CHASE_BITS):
            if m >> i & 1:
                trial[weak[i]] = -trial[weak[i]]
        payload = decode_word(trial)
        if payload is not None:
            return payload, trial
    return None, signs
