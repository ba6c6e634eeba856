"""Peak memory of decoding an upload and choosing its patch, measured, against the service's estimate.

For each kind of image (format and pixel mode), a child process decodes one 8 MP image the way the
service does (``DetectionService.prepare_upload``) and reports its peak RSS growth per pixel (VmHWM
after resetting it through /proc/self/clear_refs; Linux only), next to
``ssp_detect.serve.service.decode_cost`` per pixel, the estimate the memory budget counts. The
estimate should not be below the measure.

    python -m benchmarks.serve_decode_cost
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = [
    "PNG RGB",
    "PNG L",
    "PNG 1",
    "PNG P",
    "PNG RGBA",
    "PNG LA",
    "PNG I;16",
    "TIFF F",
    "TIFF CMYK",
    "JPEG RGB",
    "JPEG L",
    "JPEG CMYK",
    "WEBP RGB",
    "HEIF RGB",
    "AVIF RGB",
    "GIF P",
    "BMP RGB",
]
SIZE = (4000, 2000)  # 8 MP


def make_image(case: str) -> bytes:
    import numpy as np
    from PIL import Image

    fmt, mode = case.split(" ")
    width, height = SIZE
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, width)[None, :, None] + rng.normal(0, 8, (height, width, 3))
    img = Image.fromarray(ramp.clip(0, 255).astype(np.uint8))
    if mode == "1":
        img = img.convert("L").point(lambda v: 255 * (v > 128)).convert("1")
    elif mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def status(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def child(case: str, stability: bool, weights: str) -> None:
    """Decode one image of ``case`` as the service does; print the measure and the estimate."""
    import numpy as np

    from ssp_detect.detector import Detector
    from ssp_detect.serve import ServeLimits
    from ssp_detect.serve.service import DetectionService, decode_cost

    service = DetectionService(Detector.from_checkpoint(weights, device="cpu"), ServeLimits(max_pixels=10**9))
    data = make_image(case)
    service.detector.prepare_inputs(np.zeros((64, 64, 3), np.uint8), stability=True)  # compile, warm caches
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = status("VmRSS")
    preps, outcome = service.prepare_upload(case, data, stability)
    assert preps is not None, outcome
    pixels = SIZE[0] * SIZE[1]
    measured = (status("VmHWM") - before) / pixels
    estimate = decode_cost(data, max_pixels=10**9, stability=stability) / pixels
    print(json.dumps({"case": case, "stability": stability, "measured": measured, "estimate": estimate}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stability", action="store_true", help="also measure with the stability check")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1] == "1", args.child[2])
        return 0
    from benchmarks.serve_load import make_random_checkpoint

    print("| image (8 MP) | stability | measured peak, bytes/pixel | estimate, bytes/pixel |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(make_random_checkpoint(Path(tmp) / "random.pt", "ssp-lite"))
        for stability in (False, True) if args.stability else (False,):
            for case in CASES:
                run = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.serve_decode_cost",
                        "--child",
                        case,
                        str(int(stability)),
                        weights,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(run.stdout.strip().splitlines()[-1])
                flag = " (under)" if row["estimate"] < row["measured"] else ""
                print(
                    f"| {case} | {'yes' if stability else 'no'} | {row['measured']:.1f} | {row['estimate']:.0f}{flag} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
