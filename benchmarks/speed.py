"""Speed of ssp-detect against the official SSP pipeline, on the same files, in the same run.

    python -m benchmarks.speed                       # CPU defaults, synthetic GenImage-like files
    python -m benchmarks.speed --png --images 48 --phases eval process     # the README's table
    python -m benchmarks.speed --images 1000 --device cuda --batch-size 256 --official-workers 16

Two official-style references, and every ratio is taken against the stronger (the faster) of them:
  N workers   the official data path (PIL decode, 64 PIL crops scored one by one in numpy, the
              simplest kept, ToTensor, Normalize) in N DataLoader processes, fp32 model in the main
              process: N = each of ``--official-workers`` (default 4, the official default)
  1 process   the same data path and fp32 model in one process with torch threads = CPU cores:
              on a small CPU the stronger, as the worker processes compete with the model for cores
The official model is tests/reference/official.py (torchvision's ResNet-50) with an official-format
state dict of random weights; ours loads that state dict as a user would.

Phases (each in a fresh process, so peak memory is its own):
  decode      PIL decode of every file (the data path's ceiling)
  select      simple-patch selection per image: official (64 PIL crops, one numpy score each)
              against ours (candidates scored in place by a compiled loop), on the same files:
              in a loop over decoded images, and each right after its own decode
  eval        steady state (imports done, model loaded): evaluation from files, the two
              references against ours as ``ssp test`` runs it (patches shipped as uint8 from
              DataLoader workers, channels-last, inference mode, bf16 on CUDA), as ``ssp predict``
              runs it (the Detector: decoding threads, fp32 on the CPU), and with JPEGs decoded and
              patches chosen on the device (--decode device; nvJPEG on CUDA)
  train       training steps from files, the two reference data paths and ours, Adam, BCE
  process     the whole process, start-up included: ``ssp predict FOLDER`` as a command against
              the two references as commands (benchmarks/official_process.py), each after one
              warm-up run on two files (file caches, .pyc files, numba's on-disk cache; unless
              --no-process-warmup)
Prints a table of images/s (seconds for the process phase) and ratios, and which resource bounds
each path.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_files(folder: Path, n: int, seed: int = 0, *, png_only: bool = False) -> list[str]:
    """Half PNG 512x512, half JPEG 500x375 (q95), smooth content plus noise, like GenImage; with
    ``png_only``, every file a 512x512 PNG (GenImage's fakes)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h, ext = (512, 512, "png") if i % 2 == 0 or png_only else (500, 375, "jpg")
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


def _official_loader(paths, args, *, workers: int, shuffle=False):
    import torch

    from tests.reference.official import OfficialDataset

    ds = OfficialDataset(paths, [i % 2 for i in range(len(paths))])
    return torch.utils.data.DataLoader(
        ds, batch_size=args.batch_size, shuffle=shuffle, num_workers=workers, pin_memory=args.device != "cpu"
    )


class _all_cores:
    """torch threads = CPU cores inside the block (the single-process reference), as before after it."""

    def __enter__(self):
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(os.cpu_count() or 1)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.before)


def save_official_weights(path: Path, seed: int = 0) -> Path:
    """An official-format state dict (``srm.kernel``, ``disc.*``: the official model's own) of random weights."""
    import torch

    from tests.reference.official import OfficialSSP

    torch.manual_seed(seed)
    torch.save(OfficialSSP().state_dict(), path)
    return path


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
    # Each model is warmed up on one batch before it is timed (oneDNN primitives, cuDNN's choice of
    # algorithms): the phase measures the steady state, the process phase the whole process.
    with torch.no_grad():
        ref(torch.zeros(args.batch_size, 3, 32, 32, device=device))
    if args.which in ("both", "reference"):
        for workers in args.official_workers:
            loader = _official_loader(paths, args, workers=workers)
            t = time.perf_counter()
            n = 0
            with torch.no_grad():
                for x, _ in loader:
                    torch.sigmoid(ref(x.to(device))).cpu()
                    n += len(x)
            out[f"reference_w{workers}"] = n / (time.perf_counter() - t)
        out["reference_single"] = _reference_single(ref, paths, args, device)
    if args.which in ("both", "ours"):
        model = create_model("ssp")
        model.load_state_dict(official_to_ours(ref.state_dict()))
        model = place_model(model, device).eval()
        spec = get_spec("ssp")
        with torch.inference_mode():
            model(torch.zeros(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last))
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
        out["ours_predict"] = _ours_predict(ref, paths, args)
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


def _reference_single(ref, paths, args, device) -> float:
    """Images/s of the official data path and model in one process, torch threads = CPU cores."""
    import torch
    from PIL import Image

    from tests.reference.official import official_select_patch, official_transform

    with _all_cores(), torch.no_grad():
        t = time.perf_counter()
        for start in range(0, len(paths), args.batch_size):
            chunk = paths[start : start + args.batch_size]
            x = torch.stack([official_transform(official_select_patch(Image.open(p).convert("RGB"))[0]) for p in chunk])
            torch.sigmoid(ref(x.to(device))).cpu()
        return len(paths) / (time.perf_counter() - t)


def _ours_predict(ref, paths, args) -> float:
    """Images/s of ``ssp predict``'s path (the Detector: decoding threads, batches, default precision),
    the official weights loaded as a user loads them."""
    import torch

    from ssp_detect.detector import Detector

    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "official.pth"
        torch.save(ref.state_dict(), weights)
        detector = Detector.from_checkpoint(weights, device=args.device)
    for _ in detector.predict_iter(paths[: args.batch_size], batch_size=args.batch_size, workers=args.predict_threads):
        pass  # warm-up
    t = time.perf_counter()
    n = sum(1 for _ in detector.predict_iter(paths, batch_size=args.batch_size, workers=args.predict_threads))
    return n / (time.perf_counter() - t)


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
    for key, workers in [(f"reference_w{w}", w) for w in args.official_workers] + [("reference_single", 0)]:
        torch.manual_seed(0)
        ref = OfficialSSP().to(device).train()
        opt = torch.optim.Adam(ref.parameters(), lr=1e-4)
        loader = _official_loader(paths, args, shuffle=True, workers=workers)
        with _all_cores() if workers == 0 else contextlib.nullcontext():
            t, n = time.perf_counter(), 0
            for i, (x, y) in enumerate(loader):
                loss = F.binary_cross_entropy_with_logits(ref(x.to(device)).squeeze(1), y.float().to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                n += len(x)
                if i + 1 >= steps:
                    break
            out[key] = n / (time.perf_counter() - t)
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


def _timed_command(argv: list[str]) -> float:
    """Wall seconds of a command run to its end; its failure is an error with its stderr."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [src, str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
        ),
    }
    t = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return elapsed


def process_commands(folder: Path, weights: Path, args) -> dict[str, list[str]]:
    """The three whole-process commands over ``folder``: the references and ``ssp predict``."""
    official = [sys.executable, "-m", "benchmarks.official_process", str(folder), "--weights", str(weights)]
    official += ["--batch-size", str(args.batch_size), "--device", args.device]
    ssp = [sys.executable, "-m", "ssp_detect", "predict", str(folder), "--weights", str(weights), "--format", "jsonl"]
    ssp += ["--output", os.devnull, "--batch-size", str(args.batch_size), "--device", args.device]
    ssp += ["--threads", str(args.predict_threads)]
    commands = {f"reference_w{w}": [*official, "--workers", str(w)] for w in args.official_workers}
    return commands | {"reference_single": [*official, "--workers", "0"], "ours": ssp}


def phase_process(paths, args):
    """Seconds of each whole process over the files (median of ``--process-rounds``, rounds alternating
    the commands), after one warm-up run of each on two files."""
    with tempfile.TemporaryDirectory() as tmp:
        folder, warm = Path(tmp) / "files", Path(tmp) / "warm"
        for dest, chosen in ((folder, paths), (warm, paths[:2])):
            dest.mkdir()
            for k, p in enumerate(chosen):  # links in a folder of their own: the commands read a folder
                (dest / f"{k:05d}{Path(p).suffix}").symlink_to(Path(p).resolve())
        weights = save_official_weights(Path(tmp) / "official.pth")
        for argv in process_commands(warm, weights, args).values() if args.process_warmup else ():
            _timed_command(argv)
        commands = process_commands(folder, weights, args)
        times = {key: [] for key in commands}
        for _ in range(args.process_rounds):
            for key, argv in commands.items():
                times[key].append(_timed_command(argv))
    return {key: statistics.median(ts) for key, ts in times.items()}


PHASES = {
    "decode": phase_decode,
    "select": phase_select,
    "eval": phase_eval,
    "train": phase_train,
    "process": phase_process,
}


def _child(name, paths, args, queue):
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    result = PHASES[name](paths, args)
    result["peak_mb"] = _peak_mb()
    queue.put(result)


def run_phase(name, paths, args):
    if name == "process":  # it runs commands, each a process of its own
        return phase_process(paths, args)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(name, paths, args, q))
    p.start()
    result = q.get()
    p.join()
    return result


def _refs(r: dict) -> dict[str, float]:
    return {k: v for k, v in r.items() if k.startswith("reference")}


def _cells(r: dict, keys: list[str], fmt: str = "{:.1f}") -> list[str]:
    return [fmt.format(r[k]) if k in r else "" for k in keys]


class Table:
    """The results table: a label, one column per reference, ours, the ratio and the peak memory."""

    def __init__(self, ref_keys: list[str]) -> None:
        self.ref_keys = ref_keys
        self.lines: list[str] = []

    def row(self, label: str, refs: list[str] | None = None, ours: str = "", ratio: str = "", peak: str = "") -> None:
        refs = refs or [""] * len(self.ref_keys)
        cells = [f"{label:<52}", *(f"{c:>12}" for c in refs), f"{ours:>12}", f"{ratio:>9}", f"{peak:>8}"]
        self.lines.append("| " + " | ".join(cells) + " |")

    def rates(self, label: str, r: dict, ours_key: str = "ours", peak: bool = True) -> None:
        """A row of rates (higher is better): ours over the stronger (faster) reference."""
        self.row(
            label,
            _cells(r, self.ref_keys),
            f"{r[ours_key]:.1f}",
            f"{r[ours_key] / max(_refs(r).values()):.2f}x",
            f"{r['peak_mb']:.0f}" if peak and "peak_mb" in r else "",
        )

    def header(self) -> str:
        names = [_ref_title(k) for k in self.ref_keys]
        cells = [
            f"{'path':<52}",
            *(f"{n:>12}" for n in names),
            f"{'ssp-detect':>12}",
            f"{'vs best':>9}",
            f"{'peak MB':>8}",
        ]
        rule = "|" + "|".join("-" * (len(c) + 2) for c in cells) + "|"
        return "| " + " | ".join(cells) + " |\n" + rule


def _ref_title(key: str) -> str:
    return "official 1p" if key == "reference_single" else f"official {key.removeprefix('reference_w')}w"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--images", type=int, default=96, help="files to generate (default 96; half PNG 512x512, half JPEG 500x375)"
    )
    ap.add_argument("--png", action="store_true", help="generate 512x512 PNGs only (GenImage's fakes)")
    ap.add_argument("--data", help="use the images of this folder instead of generated ones")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, help="our DataLoader workers (default: cores - 1)")
    ap.add_argument("--predict-threads", type=int, default=2, help="ssp predict's decoding threads (its default, 2)")
    ap.add_argument(
        "--official-workers",
        type=int,
        nargs="+",
        default=[4],
        help="DataLoader workers of the official reference, one reference per number (default 4, the official "
        "default); a one-process reference (torch threads = cores) always runs beside them",
    )
    ap.add_argument("--select-images", type=int, default=60, help="images for the selection phase")
    ap.add_argument(
        "--select-rounds", type=int, default=5, help="timing rounds of the selection phase; the median is shown"
    )
    ap.add_argument("--train-steps", type=int, default=3, help="training steps per path")
    ap.add_argument("--model-reps", type=int, default=2, help="batches for the model-alone timing")
    ap.add_argument("--process-rounds", type=int, default=1, help="runs of each whole process; the median is shown")
    ap.add_argument(
        "--process-warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run each whole process once on two files first (default on)",
    )
    ap.add_argument("--threads", type=int, help="torch threads per process (default: torch's)")
    ap.add_argument(
        "--phases",
        nargs="+",
        default=["decode", "select", "eval", "train"],
        choices=list(PHASES),
        help="phases to run (default: decode select eval train; add process for whole-process times)",
    )
    ap.add_argument("--json", help="also write the results and the run's settings to this JSON file")
    ap.add_argument("--which", default="both", choices=["both", "ours", "reference"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            from ssp_detect.data.decode import is_image_file

            paths = sorted(str(p) for p in Path(args.data).rglob("*") if is_image_file(p))[: args.images]
        else:
            paths = make_files(Path(tmp) / "files", args.images, png_only=args.png)
        load_before = os.getloadavg()[0]
        res = {name: run_phase(name, paths, args) for name in args.phases}
        load_after = os.getloadavg()[0]

    ours_workers = args.workers if args.workers is not None else max(0, min(16, (os.cpu_count() or 1) - 1))
    kind = "512x512 PNG" if args.png and not args.data else "files"
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    print(
        f"\nssp-detect vs official pipeline: {len(paths)} {kind}, device {args.device}, batch {args.batch_size}, "
        f"{os.cpu_count()} CPU cores, official workers {' and '.join(map(str, args.official_workers))} and 1 "
        f"process, ours {ours_workers} workers, {when}, load average {load_before:.1f} before, {load_after:.1f} "
        "after\n"
    )
    ref_keys = [f"reference_w{w}" for w in args.official_workers] + ["reference_single"]
    table = Table(ref_keys)
    single = ref_keys.index("reference_single")
    if "decode" in res:
        d = res["decode"]
        table.row("decode alone (img/s, 1 process)", ours=f"{d['ours']:.1f}", peak=f"{d['peak_mb']:.0f}")
    if "select" in res:
        s = res["select"]

        def at_single(value: str) -> list[str]:
            return [value if k == single else "" for k in range(len(ref_keys))]

        table.row(
            "patch selection (ms per image)",
            at_single(f"{s['reference_ms']:.2f}"),
            f"{s['ours_ms']:.2f}",
            f"{s['reference_ms'] / s['ours_ms']:.1f}x",
            f"{s['peak_mb']:.0f}",
        )
        r, o = s["reference_after_decode_ms"], s["ours_after_decode_ms"]
        table.row("  each right after its decode (ms per image)", at_single(f"{r:.2f}"), f"{o:.2f}", f"{r / o:.1f}x")
        table.row("  exhaustive selection (ms per image)", ours=f"{s['exhaustive_ms']:.2f}")
    if "eval" in res:
        r = res["eval"]
        table.rates("evaluation, steady state, ssp test path (img/s)", r)
        table.rates("  ssp predict path: Detector, threads (img/s)", r, "ours_predict", peak=False)
        table.rates("  ssp test path, JPEGs decoded on the device (img/s)", r, "ours_device_decode", peak=False)
        table.row("  model forward alone, ours (img/s)", ours=f"{r['model_alone']:.1f}")
    if "train" in res:
        table.rates("training from files (img/s)", res["train"])
    if "process" in res:
        p, n = res["process"], len(paths)
        table.row(
            f"whole process, ssp predict over {n} files (s)",
            _cells(p, ref_keys),
            f"{p['ours']:.1f}",
            f"{min(_refs(p).values()) / p['ours']:.2f}x",
        )
        table.row("  the same in img/s", _cells({k: n / v for k, v in p.items()}, ref_keys), f"{n / p['ours']:.1f}")
    print(table.header())
    print("\n".join(table.lines))
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
    print(
        "\nvs best: ours over the stronger (faster) reference, in img/s, or the stronger reference's seconds over "
        "ours (whole process); 'official Nw': the official data path in N DataLoader workers; 'official 1p': in "
        "one process with torch threads = cores"
    )
    if args.json:
        meta = {
            "files": len(paths),
            "kind": kind,
            "device": args.device,
            "batch_size": args.batch_size,
            "cpus": os.cpu_count(),
            "official_workers": args.official_workers,
            "our_workers": ours_workers,
            "date": when,
            "load_average": [load_before, load_after],
        }
        Path(args.json).write_text(json.dumps({"meta": meta, "results": res}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
