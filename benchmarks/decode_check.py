"""Cost of refusing made-up pixels: decode time per image before and after the truncation check.

    python -m benchmarks.decode_check [--rounds 15]

Files (in memory): camera photos from Debian's opencv-doc when installed (else a synthetic photo),
re-encoded as baseline and progressive JPEG at 0.5, 2 and 12 megapixels, and as PNG at 0.25 and 2
megapixels. Per file, the median over rounds that alternate the methods:

  pillow        what ``load_rgb`` did before: Pillow decode + RGB array (no check)
  pillow+check  the same plus the check alone (``jpeg_data_loss``: libjpeg-turbo, strict, 1/8 scale)
  load_rgb      ``load_rgb`` now: JPEG decoded strict by libjpeg-turbo (simplejpeg), the check is the
                decode itself; PNG decoded by Pillow plus the look at its last row
  header        the device path's worker before: the header only
  device        the device path's worker now: ``read_device_jpeg`` (header + the check)
"""

from __future__ import annotations

import argparse
import glob
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from ssp_detect.data.decode import jpeg_data_loss, load_rgb, read_device_jpeg, to_rgb_array


def _photo() -> Image.Image:
    files = sorted(glob.glob("/usr/share/doc/opencv-doc/examples/data/aloeL.jpg"))
    if files:
        return Image.open(files[0]).convert("RGB")
    rng = np.random.default_rng(0)
    base = np.linspace(30, 220, 640)[None, :, None] + rng.normal(0, 12, (480, 640, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _files() -> dict[str, bytes]:
    photo, out = _photo(), {}
    for mp, size in ((0.5, (816, 612)), (2, (1632, 1224)), (12, (4000, 3000))):
        img = photo.resize(size, Image.BICUBIC)
        for kind, kw in (("baseline", {"quality": 92}), ("progressive", {"quality": 92, "progressive": True})):
            buf = io.BytesIO()
            img.save(buf, "JPEG", **kw)
            out[f"JPEG {kind} {mp} MP"] = buf.getvalue()
    for mp, size in ((0.25, (512, 512)), (2, (1632, 1224))):
        buf = io.BytesIO()
        photo.resize(size, Image.BICUBIC).save(buf, "PNG")
        out[f"PNG {mp} MP"] = buf.getvalue()
    return out


def _pillow(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img.load()
    return to_rgb_array(img)


def _header(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    methods: dict[str, Callable[[bytes], object]] = {
        "pillow": _pillow,
        "pillow+check": lambda d: (_pillow(d), jpeg_data_loss(d) if d[:2] == b"\xff\xd8" else None),
        "load_rgb": load_rgb,
        "header": _header,
        "device": lambda d: read_device_jpeg(d) if d[:2] == b"\xff\xd8" else None,
    }
    print(f"{'file':<28}" + "".join(f"{m:>14}" for m in methods) + "   load_rgb/pillow  (ms, median)")
    for name, data in _files().items():
        assert np.array_equal(load_rgb(data), _pillow(data)), name  # the same pixels
        times: dict[str, list[float]] = {m: [] for m in methods}
        for fn in methods.values():
            fn(data)  # warm-up
        for _ in range(args.rounds):
            for m, fn in methods.items():
                start = time.perf_counter()
                fn(data)
                times[m].append(time.perf_counter() - start)
        med = {m: statistics.median(t) * 1000 for m, t in times.items()}
        ratio = med["load_rgb"] / med["pillow"]
        print(f"{name:<28}" + "".join(f"{med[m]:>14.2f}" for m in methods) + f"   {ratio:.2f}x")


if __name__ == "__main__":
    main()
