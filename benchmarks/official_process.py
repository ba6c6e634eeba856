"""The official-style evaluation as one whole process, for ``benchmarks/speed.py`` to time from outside.

    python -m benchmarks.official_process FOLDER --weights official.pth [--workers 4] [--device cpu]

What the official test code does with every image of a folder: import torch and torchvision, build the
model (``tests/reference/official.py``, torchvision's ResNet-50), load an official state dict, then per
image PIL decode, 64 PIL crops scored one by one in numpy, the simplest kept, ToTensor, Normalize, and
the fp32 forward. ``--workers 0`` runs the data path in this process with torch threads = CPU cores
(the stronger choice on a small CPU); ``--workers N`` in N DataLoader worker processes (the official
default is 4). Writes P(real) per image, one per line, to ``--output`` (default: nowhere).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="folder of images (*.png, *.jpg, *.jpeg), read in name order")
    ap.add_argument("--weights", required=True, help="official-format state dict (srm.kernel, disc.*)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers; 0: the data path in this process")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--output", help="write P(real) per image here")
    args = ap.parse_args(argv)

    import torch

    from tests.reference.official import OfficialDataset, OfficialSSP, official_select_patch, official_transform

    if args.workers == 0:
        torch.set_num_threads(os.cpu_count() or 1)
    device = torch.device(args.device)
    paths = sorted(str(p) for p in Path(args.folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    model = OfficialSSP()
    model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    model = model.to(device).eval()
    scores: list[float] = []
    with torch.no_grad():
        if args.workers == 0:
            from PIL import Image

            for start in range(0, len(paths), args.batch_size):
                chunk = paths[start : start + args.batch_size]
                x = torch.stack(
                    [official_transform(official_select_patch(Image.open(p).convert("RGB"))[0]) for p in chunk]
                )
                scores += torch.sigmoid(model(x.to(device))).squeeze(1).tolist()
        else:
            loader = torch.utils.data.DataLoader(
                OfficialDataset(paths, [0] * len(paths)),
                batch_size=args.batch_size,
                num_workers=args.workers,
                pin_memory=device.type == "cuda",
            )
            for x, _ in loader:
                scores += torch.sigmoid(model(x.to(device))).squeeze(1).tolist()
    if args.output:
        Path(args.output).write_text("".join(f"{s:.6f}\n" for s in scores))
    print(f"{len(scores)} images scored", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
