"""The compiled CPU loop that scores candidate patches in place, without cutting them out.

Numpy or torch need a dozen passes over short rows to score 64 candidates (about 0.4 ms on one
core); this loop reads each candidate's rows straight from the image and sums the four absolute
differences in per-column accumulators that LLVM turns into SIMD code (about 0.1 ms). It is
compiled by numba on first use and cached on disk, so only the first process pays the compile
(about 1.5 s). Imported lazily by :mod:`ssp_detect.data.patch`: numba loads only when a patch is
chosen on the CPU.

Two details carry most of the speed:

* The accumulators are uint16 when no column can exceed 65535 (patches up to 64 pixels:
  4 x 64 x 255 < 2^16), which doubles the SIMD width; int32 beyond that.
* A first pass reads one byte of every cache line of every candidate. Those reads do not depend on
  each other, so the memory system serves them together; an image that has left the cache then
  costs about half as much to score as when each row's miss waits for the previous one.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64


@njit(cache=True, nogil=True, boundscheck=False)
def _scores(flat, width_bytes, corners, patch_size, channels, acc):  # pragma: no cover - compiled
    n = corners.shape[0]
    height = flat.shape[0] // width_bytes
    width = width_bytes // channels
    row = uint64(patch_size * channels)
    step = uint64(channels)
    line = uint64(width_bytes)
    touched = 0
    for k in range(n):  # check every corner, and bring every candidate towards the cache
        y, x = corners[k, 0], corners[k, 1]
        if y < 0 or x < 0 or y > height - patch_size or x > width - patch_size:
            raise ValueError("A candidate patch lies outside the image.")
        top = uint64(y) * line + uint64(x) * step
        for i in range(patch_size):
            r0 = top + uint64(i) * line
            for t in range(0, row, 64):
                touched += flat[r0 + t]
            touched += flat[r0 + row - 1]
    out = np.empty(n, np.int64)
    for k in range(n):
        for t in range(row):
            acc[t] = 0
        top = uint64(corners[k, 0]) * line + uint64(corners[k, 1]) * step
        for i in range(patch_size):
            r0 = top + uint64(i) * line
            for t in range(row - step):  # horizontal
                u, v = flat[r0 + t], flat[r0 + t + step]
                acc[t] += max(u, v) - min(u, v)
            if i + 1 < patch_size:
                r1 = r0 + line
                for t in range(row):  # vertical
                    u, v = flat[r0 + t], flat[r1 + t]
                    acc[t] += max(u, v) - min(u, v)
                for t in range(row - step):  # diagonal and anti-diagonal
                    u, v = flat[r0 + t], flat[r1 + t + step]
                    acc[t] += max(u, v) - min(u, v)
                    u, v = flat[r1 + t], flat[r0 + t + step]
                    acc[t] += max(u, v) - min(u, v)
        total = 0
        for t in range(row):
            total += acc[t]
        out[k] = total
    return out, touched  # returning the touched sum keeps the compiler from dropping the first pass


def candidate_scores(img: np.ndarray, corners: np.ndarray, patch_size: int) -> np.ndarray:
    """Texture diversity of the patch_size crop at each (y, x) corner of an (H, W, C) uint8 image,
    int64 (N,). Raises ValueError when a crop would leave the image."""
    img = np.ascontiguousarray(img)
    h, w, c = img.shape
    acc = np.empty(patch_size * c, np.uint16 if 4 * patch_size * 255 < 2**16 else np.int32)
    scores, _ = _scores(img.reshape(-1), w * c, np.ascontiguousarray(corners, dtype=np.int64), patch_size, c, acc)
    return scores
