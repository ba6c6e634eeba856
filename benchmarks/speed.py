"""Speed of ssp-detect against the official SSP pipeline, on the same files, in the same run.

    python -m benchmarks.speed                       # CPU defaults, synthetic GenImage-like files
    python -m benchmarks.speed --images 1000 --device cuda --batch-size 256

Phases (each in a fresh process, so peak memory is its own):
  decode      PIL decode of every file (the data path's ceiling)
  select      simple-patch selection per image: official (64 PIL crops, one numpy score each)
              against ours (candidates scored in place by a compiled loop), on the same files:
              in a loop over decoded images, and each right after its own decode
  eval        end-to-end evaluation from files: official data path (PIL crops, ToTensor,
              Normalize, fp32, its 4 workers) + model, against ours (patches shipped as uint8,
              channels-last, inference mode, bf16 on CUDA), and ours with JPEGs decoded and
              patches chosen on the device (--decode device; nvJPEG on CUDA)
  train       training steps from files, the same two data paths, Adam, BCE
Prints a table of images/s and ratios, and which resource bounds each path.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def make_files(folder: Path, n: int, seed: int = 0) -> list[str]:
    """Half PNG 512x512, half JPEG 500x375 (q95), smooth content plus noise, like GenImage."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h, ext = (512, 512, "png") if i % 2 == 0 else (500, 375, "jpg")
        yy, xx = np.mgrid[0:h, 0:w]
        base = 128 + 60 * np.sin(xx / (30 + i % 7)) * np.cos(yy / (40 + i % 5))
        img = np.clip(base[..., None] + rng.normal(0, 4 + i % 9, (h, w, 3)), 0, 255).astype(np.uint8)
        p = folder / f"{i:05d}.{ext}"
        Image.fromarray(img).save(p, quality=95) if ext == "jpg" else Image.fromarray(img).save(p)
        paths.append(str(p))
    return paths


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024


def phase_decode(paths, args):
    from ssp_detect.data.decode import load_rgb

    t = time.perf_counter()
    for p in paths:
        load_rgb(p)
    dt = time.perf_counter() - t
    return {"ours": len(paths) / dt, "per_image_ms": 1e3 * dt / len(paths)}


def phase_select(paths, args):
    """Selection per image, timed two ways on the same files: in a loop over images decoded
    beforehand, and right after each image's own decode, as a data-path worker does it (there the
    code and data of the selection have left the CPU's caches, a fixed cost per image that weighs
    more on a short selection than on a long one)."""
    from PIL import Image

    from ssp_detect.data.decode import load_rgb
    from ssp_detect.data.patch import select_simplest_patch
    from tests.reference.official import official_select_patch

    def in_a_loop(decode, select, chosen):
        images = [decode(p) for p in chosen]
        t = time.perf_counter()
        for img in images:
            select(img)
        return 1e3 * (time.perf_counter() - t) / len(chosen)

    def after_decode(decode, select, chosen):
        total = 0.0
        for p in chosen:
            img = decode(p)
            t = time.perf_counter()
            select(img)
            total += time.perf_counter() - t
        return 1e3 * total / len(chosen)

    chosen = paths[: args.select_images]
    official_decode = lambda p: Image.open(p).convert("RGB")  # noqa: E731
    ours, exhaustive = (
        (lambda im: select_simplest_patch(im, 32, "seeded")),
        (lambda im: select_simplest_patch(im, 32, "exhaustive")),
    )
    official_select_patch(official_decode(chosen[0]))  # warm-up: first calls pay one-off library set-up
    ours(load_rgb(chosen[0]))
    # Rounds alternate the two paths, and each figure is the median of its rounds: this shared
    # machine's speed drifts by tens of percent from one second to the next.
    rounds = [
        (
            in_a_loop(official_decode, official_select_patch, chosen),
            in_a_loop(load_rgb, ours, chosen),
            after_decode(official_decode, official_select_patch, chosen),
            after_decode(load_rgb, ours, chosen),
        )
        for _ in range(args.select_rounds)
    ]
    medians = np.median(np.array(rounds), axis=0)
    return {
        "reference_ms": medians[0],
        "ours_ms": medians[1],
        "reference_after_decode_ms": medians[2],
        "ours_after_decode_ms": medians[3],
        "exhaustive_ms": in_a_loop(load_rgb, exhaustive, chosen[:20]),
    }


def _official_loader(paths, args, shuffle=False):
    import torch

    from tests.reference.official import OfficialDataset

    ds = OfficialDataset(paths, [i % 2 for i in range(len(paths))])
    return torch.utils.data.DataLoader(
        ds,
        batch_size=args.batch_size,
        shuffle=shuffle,
        num_workers=args.official_workers,
        pin_memory=args.device != "cpu",
    )


def _our_samples(paths):
    from ssp_detect.data.layouts import Sample

    return [Sample(p, i % 2, "bench") for i, p in enumerate(paths)]


def _our_workers(args) -> int:
    from ssp_detect.engine.runtime import default_workers

    return default_workers() if args.workers is None else args.workers


def _our_loader(paths, args, mode):
    from ssp_detect.data.dataset import DetectionDataset, make_loader
    from ssp_detect.data.preprocess import Preprocessor

    ds = DetectionDataset(_our_samples(paths), Preprocessor(mode=mode))
    return make_loader(
        ds,
        batch_size=args.batch_size,
        workers=_our_workers(args),
        shuffle=mode == "random",
        pin_memory=args.device != "cpu",
    )


def _our_device_batches(paths, args, device):
    """Seeded-mode evaluation batches with JPEGs decoded and patches chosen on ``device``."""
    from ssp_detect.data.dataset import make_loader
    from ssp_detect.data.device_decode import DeviceDecodedBatches, EncodedImageDataset, collate_encoded
    from ssp_detect.data.preprocess import Preprocessor

    loader = make_loader(
        EncodedImageDataset(_our_samples(paths)),
        batch_size=args.batch_size,
        workers=_our_workers(args),
        pin_memory=args.device != "cpu",
        collate_fn=collate_encoded,
    )
    return DeviceDecodedBatches(loader, Preprocessor(mode="seeded"), device)


def phase_eval(paths, args):
    import torch

    from ssp_detect.engine.evaluate import predict_loader
    from ssp_detect.engine.runtime import place_model, resolve_precision
    from ssp_detect.models.checkpoint import official_to_ours
    from ssp_detect.models.registry import create_model, get_spec
    from tests.reference.official import OfficialSSP

    device = torch.device(args.device)
    torch.manual_seed(0)
    ref = OfficialSSP().to(device).eval()
    out = {}
    if args.which in ("both", "reference"):
        loader = _official_loader(paths, args)
        t = time.perf_counter()
        n = 0
        with torch.no_grad():
            for x, _ in loader:
                torch.sigmoid(ref(x.to(device))).cpu()
                n += len(x)
        out["reference"] = n / (time.perf_counter() - t)
    if args.which in ("both", "ours"):
        model = create_model("ssp")
        model.load_state_dict(official_to_ours(ref.state_dict()))
        model = place_model(model, device).eval()
        spec = get_spec("ssp")
        for key, batches in (
            ("ours", _our_loader(paths, args, "seeded")),
            ("ours_device_decode", _our_device_batches(paths, args, device)),
        ):
            t = time.perf_counter()
            preds = predict_loader(
                model,
                batches,
                device=device,
                mean=spec.mean,
                std=spec.std,
                precision=resolve_precision("auto", device),
                progress=False,
            )
            out[key] = len(preds.index) / (time.perf_counter() - t)
    # Model alone (no data path), for the bound analysis.
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    m = place_model(create_model("ssp"), device).eval()
    with torch.inference_mode():
        m(x.contiguous(memory_format=torch.channels_last))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.model_reps):
            m(x.contiguous(memory_format=torch.channels_last))
        if device.type == "cuda":
            torch.cuda.synchronize()
    out["model_alone"] = args.model_reps * args.batch_size / (time.perf_counter() - t)
    return out


def phase_train(paths, args):
    import torch
    import torch.nn.functional as F

    from ssp_detect.engine.runtime import autocast, model_input, place_model, resolve_precision
    from ssp_detect.models.registry import create_model, get_spec
    from tests.reference.official import OfficialSSP

    device = torch.device(args.device)
    steps = args.train_steps
    out = {}
    torch.manual_seed(0)
    ref = OfficialSSP().to(device).train()
    opt = torch.optim.Adam(ref.parameters(), lr=1e-4)
    loader = _official_loader(paths, args, shuffle=True)
    t, n = time.perf_counter(), 0
    for i, (x, y) in enumerate(loader):
        loss = F.binary_cross_entropy_with_logits(ref(x.to(device)).squeeze(1), y.float().to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(x)
        if i + 1 >= steps:
            break
    out["reference"] = n / (time.perf_counter() - t)
    model = place_model(create_model("ssp"), device).train()
    spec = get_spec("ssp")
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    precision = resolve_precision("auto", device)
    loader = _our_loader(paths, args, "random")
    t, n = time.perf_counter(), 0
    for i, batch in enumerate(loader):
        x = model_input(batch["pixels"], device, spec.mean, spec.std)
        with autocast(device, precision):
            logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch["label"].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(batch["label"])
        if i + 1 >= steps:
            break
    out["ours"] = n / (time.perf_counter() - t)
    return out


PHASES = {"decode": phase_decode, "select": phase_select, "eval": phase_eval, "train": phase_train}


def _child(name, paths, args, queue):
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    result = PHASES[name](paths, args)
    result["peak_mb"] = _peak_mb()
    queue.put(result)


def run_phase(name, paths, args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(name, paths, args, q))
    p.start()
    result = q.get()
    p.join()
    return result


def _row(label: str, official: str = "", ours: str = "", ratio: str = "", peak: str = "") -> str:
    """One row of the results table, the numbers already formatted."""
    return f"| {label:<44} | {official:>12} | {ours:>12} | {ratio:>7} | {peak:>8} |"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--images", type=int, default=96, help="files to generate (default 96; half PNG 512x512, half JPEG 500x375)"
    )
    ap.add_argument("--data", help="use the images of this folder instead of generated ones")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, help="our DataLoader workers (default: cores - 1)")
    ap.add_argument("--official-workers", type=int, default=4, help="the official default, 4")
    ap.add_argument("--select-images", type=int, default=60, help="images for the selection phase")
    ap.add_argument(
        "--select-rounds", type=int, default=5, help="timing rounds of the selection phase; the median is shown"
    )
    ap.add_argument("--train-steps", type=int, default=3, help="training steps per path")
    ap.add_argument("--model-reps", type=int, default=2, help="batches for the model-alone timing")
    ap.add_argument("--threads", type=int, help="torch threads per process (default: torch's)")
    ap.add_argument("--phases", nargs="+", default=list(PHASES), choices=list(PHASES))
    ap.add_argument("--which", default="both", choices=["both", "ours", "reference"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            from ssp_detect.data.decode import is_image_file

            paths = sorted(str(p) for p in Path(args.data).rglob("*") if is_image_file(p))[: args.images]
        else:
            paths = make_files(Path(tmp) / "files", args.images)
        res = {name: run_phase(name, paths, args) for name in args.phases}

    ours_workers = args.workers if args.workers is not None else "cores - 1"
    print(
        f"\nssp-detect vs official pipeline: {len(paths)} files, device {args.device}, batch {args.batch_size}, "
        f"{os.cpu_count()} CPU cores, official workers {args.official_workers}, ours {ours_workers}\n"
    )
    print(_row("path", "official", "ssp-detect", "ratio", "peak MB"))
    print(f"|{'-' * 46}|{'-' * 14}|{'-' * 14}|{'-' * 9}|{'-' * 10}|")
    if "decode" in res:
        d = res["decode"]
        print(_row("decode alone (img/s, 1 process)", ours=f"{d['ours']:.1f}", peak=f"{d['peak_mb']:.0f}"))
    if "select" in res:
        s = res["select"]
        print(
            _row(
                "patch selection (ms per image)",
                f"{s['reference_ms']:.2f}",
                f"{s['ours_ms']:.2f}",
                f"{s['reference_ms'] / s['ours_ms']:.1f}x",
                f"{s['peak_mb']:.0f}",
            )
        )
        r, o = s["reference_after_decode_ms"], s["ours_after_decode_ms"]
        print(_row("  each right after its decode (ms per image)", f"{r:.2f}", f"{o:.2f}", f"{r / o:.1f}x"))
        print(_row("  exhaustive selection (ms per image)", ours=f"{s['exhaustive_ms']:.2f}"))
    for name, label in (("eval", "evaluation from files (img/s)"), ("train", "training from files (img/s)")):
        if name in res:
            r = res[name]
            print(
                _row(
                    label,
                    f"{r['reference']:.1f}",
                    f"{r['ours']:.1f}",
                    f"{r['ours'] / r['reference']:.2f}x",
                    f"{r['peak_mb']:.0f}",
                )
            )
    if "eval" in res:
        r = res["eval"]
        print(
            _row(
                "  ours, JPEGs decoded on the device (img/s)",
                f"{r['reference']:.1f}",
                f"{r['ours_device_decode']:.1f}",
                f"{r['ours_device_decode'] / r['reference']:.2f}x",
            )
        )
        print(_row("  model forward alone, ours (img/s)", ours=f"{r['model_alone']:.1f}"))
    # What bounds our evaluation: compare per-image costs of the stages.
    if {"decode", "select", "eval"} <= set(res):
        workers = max(1, args.workers if args.workers is not None else (os.cpu_count() or 2) - 1)
        stages = {
            "decode": 1 / res["decode"]["ours"] / workers,
            "selection": res["select"]["ours_ms"] / 1e3 / workers,
            "model": 1 / res["eval"]["model_alone"],
        }
        bound = max(stages, key=stages.get)
        print(
            "\nper-image cost of each stage of our evaluation (s, data stages divided by workers): "
            + ", ".join(f"{k} {v:.4f}" for k, v in stages.items())
            + f" -> bound by {bound}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
