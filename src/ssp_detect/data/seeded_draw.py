"""The seeded mode's candidate corners, drawn by compiled code that reproduces numpy bit for bit.

Seeded mode defines its corners as numpy draws them::

    rng = np.random.default_rng([seed, digest, height, width])
    ys = rng.integers(0, height - P + 1, size=n)
    xs = rng.integers(0, width - P + 1, size=n)

Building a Generator for every image costs more than scoring its candidates (about 40 us in a
tight loop and 150-250 us in a data-path worker, where numpy's code has left the CPU's caches).
This module computes the same numbers in one compiled call: numpy's SeedSequence (entropy as
32-bit words, pool of four, its hash and mix constants), PCG64 seeded from four 64-bit words of
that sequence (128-bit state, XSL-RR output), the 32-bit halves of its outputs served low half
first, and Lemire's bounded integers with rejection, as numpy's ``random_bounded_uint64_fill``
does for ranges below 2^32. The tests compare it with numpy itself over many seeds and sizes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

_M32 = uint64(0xFFFFFFFF)
_INIT_A, _MULT_A = uint64(0x43B0D7E5), uint64(0x931E8875)
_INIT_B, _MULT_B = uint64(0x8B51F9DD), uint64(0x58F38DED)
_MIX_L, _MIX_R = uint64(0xCA01F9DD), uint64(0x4973F715)
_PCG_MULT_HI, _PCG_MULT_LO = uint64(2549297995355413924), uint64(4865540595714422341)
_POOL = 4
_MAX_RANGE = 0xFFFFFFFF  # ranges up to 2^32 - 1 draw from 32-bit halves


@njit(cache=True, inline="always")
def _mul128(ah, al, bh, bl):  # pragma: no cover - compiled
    """(ah:al) * (bh:bl) mod 2^128, as (high, low) 64-bit words."""
    a0, a1, b0, b1 = al & _M32, al >> uint64(32), bl & _M32, bl >> uint64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> uint64(32)) + (p01 & _M32) + (p10 & _M32)
    low = (p00 & _M32) | (mid << uint64(32))
    high = p11 + (p01 >> uint64(32)) + (p10 >> uint64(32)) + (mid >> uint64(32)) + al * bh + ah * bl
    return high, low


@njit(cache=True, inline="always")
def _add128(ah, al, bh, bl):  # pragma: no cover - compiled
    low = al + bl
    carry = uint64(1) if low < al else uint64(0)
    return ah + bh + carry, low


@njit(cache=True, inline="always")
def _hashmix(value, hash_const, mult):  # pragma: no cover - compiled
    value = (value ^ hash_const) & _M32
    hash_const = (hash_const * mult) & _M32
    value = (value * hash_const) & _M32
    return value ^ (value >> uint64(16)), hash_const


@njit(cache=True, inline="always")
def _mix(x, y):  # pragma: no cover - compiled
    result = (_MIX_L * x - _MIX_R * y) & _M32
    return result ^ (result >> uint64(16))


@njit(cache=True, nogil=True)
def _draw(values, high_y, high_x, n):  # pragma: no cover - compiled
    # SeedSequence(values): each value as little-endian 32-bit words (0 as one word), then the pool.
    entropy = np.zeros(2 * len(values), np.uint64)
    count = 0
    for v in values:
        if v == 0:
            count += 1
        while v != 0:
            entropy[count] = v & _M32
            count += 1
            v = v >> uint64(32)
    pool = np.zeros(_POOL, np.uint64)
    h = _INIT_A
    for i in range(_POOL):
        pool[i], h = _hashmix(entropy[i] if i < count else uint64(0), h, _MULT_A)
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                hashed, h = _hashmix(pool[src], h, _MULT_A)
                pool[dst] = _mix(pool[dst], hashed)
    for src in range(_POOL, count):
        for dst in range(_POOL):
            hashed, h = _hashmix(entropy[src], h, _MULT_A)
            pool[dst] = _mix(pool[dst], hashed)
    # generate_state(4, uint64): eight 32-bit words, paired low word first.
    words = np.zeros(8, np.uint64)
    h = _INIT_B
    for i in range(8):
        words[i], h = _hashmix(pool[i % _POOL], h, _MULT_B)
    seed_hi, seed_lo = words[0] | (words[1] << uint64(32)), words[2] | (words[3] << uint64(32))
    seq_hi, seq_lo = words[4] | (words[5] << uint64(32)), words[6] | (words[7] << uint64(32))
    # PCG64 seeding: inc = seq << 1 | 1; state = ((0 * M + inc) + seed) * M + inc.
    inc_hi, inc_lo = (seq_hi << uint64(1)) | (seq_lo >> uint64(63)), (seq_lo << uint64(1)) | uint64(1)
    st_hi, st_lo = _add128(inc_hi, inc_lo, seed_hi, seed_lo)
    st_hi, st_lo = _mul128(st_hi, st_lo, _PCG_MULT_HI, _PCG_MULT_LO)
    st_hi, st_lo = _add128(st_hi, st_lo, inc_hi, inc_lo)
    # Two integers(0, high, size=n) calls sharing the generator (and its stored 32-bit half).
    out = np.empty((n, 2), np.int64)
    has_half, half = False, uint64(0)
    for column in range(2):
        excl = uint64(high_y if column == 0 else high_x)
        if excl == 1:
            for k in range(n):
                out[k, column] = 0
            continue
        # Lemire: keep r * excl unless its low word falls below 2^32 mod excl (numpy tests the
        # cheaper bound excl first; the outcome is the same, as the threshold is below excl).
        threshold = ((_M32 + uint64(1)) - excl) % excl
        for k in range(n):
            while True:
                if has_half:
                    r, has_half = half, False
                else:
                    st_hi, st_lo = _mul128(st_hi, st_lo, _PCG_MULT_HI, _PCG_MULT_LO)
                    st_hi, st_lo = _add128(st_hi, st_lo, inc_hi, inc_lo)
                    x, rot = st_hi ^ st_lo, st_hi >> uint64(58)
                    raw = (x >> rot) | (x << ((uint64(64) - rot) & uint64(63)))
                    r, half, has_half = raw & _M32, raw >> uint64(32), True
                m = r * excl
                if (m & _M32) >= threshold:
                    break
            out[k, column] = np.int64(m >> uint64(32))
    return out


def seeded_corners(seed: int, digest: int, height: int, width: int, patch_size: int, n: int) -> np.ndarray:
    """The (n, 2) int64 (y, x) corners that ``np.random.default_rng([seed, digest, height,
    width])`` draws with ``integers(0, height - P + 1, size=n)`` then the same for x."""
    high_y, high_x = height - patch_size + 1, width - patch_size + 1
    if min(seed, digest, height, width) < 0 or max(seed, digest) >= 2**64:
        raise ValueError(f"Seeds must be integers in [0, 2^64), got {seed}.")
    if not 1 <= high_y <= _MAX_RANGE or not 1 <= high_x <= _MAX_RANGE:
        raise ValueError(f"No {patch_size}x{patch_size} patch fits in a {width}x{height} image.")
    values = np.array([seed, digest, height, width], dtype=np.uint64)
    return _draw(values, high_y, high_x, n)
