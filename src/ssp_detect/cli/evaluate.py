"""``ssp test`` (and its alias ``eval``), ``ssp cross-eval``, ``ssp robustness`` and ``ssp calibrate``:
commands that score labelled data with checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssp_detect.cli import options
from ssp_detect.constants import CROSS_EVAL_METRICS, INTERPOLATION_NAMES, JPEG_METHODS, SWEEP_TABLE

SWEEP_NAMES = [name for name, *_ in SWEEP_TABLE]


def add_test_parser(sub: argparse._SubParsersAction) -> None:
    for name in ("test", "eval"):
        summary = "Test a checkpoint: per-subset table, mean over subsets, pooled."
        p = sub.add_parser(
            name,
            help=summary if name == "test" else "Alias of test.",
            description="Score labelled images with a checkpoint and write results.md/.csv/.json: per subset real acc, "
            "fake acc, acc at the threshold, AP, ROC-AUC, EER, best-threshold acc; then the mean over subsets and the "
            "pooled figure over all images. Unreadable images are skipped and listed in the results. Exits 2 when "
            "no image could be read (or, with --strict, when any could not), and before scoring when --out cannot "
            "be written.",
        )
        options.add_weights_options(p)
        options.add_data_options(p)
        options.add_runtime_options(p, decode=True)
        options.add_patch_options(p)
        options.add_threshold_option(p)
        options.add_bootstrap_option(p, "each AUC's 95%% interval")
        p.add_argument(
            "--out", default="runs/test", help="Folder for results.md, results.csv, results.json (default runs/test)."
        )
        p.add_argument(
            "--strict", action="store_true", help="Fail when an image cannot be read (default: skip and report it)."
        )
        p.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace) -> int:
    from ssp_detect.engine.report import markdown_table
    from ssp_detect.engine.scoring import check_unreadable, run_test
    from ssp_detect.models.loading import load_model

    runtime = options.eval_runtime(args, join_process_group=True)
    loaded = load_model(args.weights, model_name=args.arch)
    run = run_test(
        loaded,
        options.load_data(args),
        runtime,
        weights=args.weights,
        out=args.out,
        threshold=args.threshold,
        bootstrap=args.bootstrap,
        data=options.data_source(args, split=True),
        uncertain_band=args.uncertain_band,
    )
    if run.paths:  # rank 0 wrote them
        if run.summary["n_unreadable"] < run.summary["n_images"]:
            print(markdown_table(run.summary) + "\n")
        print(f"written: {', '.join(map(str, run.paths))}")
    check_unreadable(run.summary, args.strict)
    return 0


def add_cross_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cross-eval",
        help="Train-subset x test-subset accuracy matrix from several checkpoints, with a heatmap.",
        description="Test each checkpoint on every subset and write cross_eval.md/.csv/.json and the heatmap "
        "cross_eval.png (rows: checkpoints, named by the subsets they were trained on; columns: test subsets, then "
        "the mean).",
    )
    options.add_weights_options(p, multiple=True)
    options.add_names_option(
        p, "Row names (default: the training subsets stored in each checkpoint, else the file name)"
    )
    p.add_argument(
        "--metric", default="acc", choices=CROSS_EVAL_METRICS, help="Metric in the matrix (default acc, as the paper)."
    )
    options.add_data_options(p)
    options.add_runtime_options(p)
    options.add_patch_options(p)
    p.add_argument("--out", default="runs/cross_eval", help="Output folder (default runs/cross_eval).")
    p.set_defaults(func=cmd_cross_eval)


def cmd_cross_eval(args: argparse.Namespace) -> int:
    from ssp_detect.engine.cross_eval import run_cross_eval
    from ssp_detect.engine.report import write_cross_eval
    from ssp_detect.outputs import writing

    result = run_cross_eval(
        args.weights,
        options.load_data(args),
        options.eval_runtime(args),
        out=args.out,
        names=args.names,
        metric=args.metric,
        model_name=args.arch,
    )
    with writing(args.out, "the results"):
        paths = write_cross_eval(result.matrix, result.names, result.tests, args.out, metric=result.metric)
    print(paths[0].read_text())
    print(f"written: {', '.join(map(str, paths))}")
    return 0


def add_robustness_parser(sub: argparse._SubParsersAction) -> None:
    sweeps = "; ".join(
        f"{name}: {title} {', '.join('none' if v is None else f'{v:g}' for v in values)}"
        for name, title, _, values in SWEEP_TABLE
    )
    p = sub.add_parser(
        "robustness",
        help="Accuracy, AP and AUC of checkpoints under JPEG, blur, rescaling and WebP, side by side.",
        description=f"Degrade every image (real and fake alike, before patch selection) and score it with each "
        f"checkpoint. Sweeps: {sweeps}. Writes per sweep <name>.md/.csv/.json and a line plot <name>.png, and "
        "robustness.md/.csv/.json with all of them; with several checkpoints, each later one is compared with the "
        "first on the same images, with paired bootstrap intervals.",
    )
    options.add_weights_options(p, multiple=True)
    options.add_names_option(p, "Model names in the tables (default: the registered model names)")
    p.add_argument(
        "--sweeps",
        nargs="+",
        default=SWEEP_NAMES,
        choices=SWEEP_NAMES,
        help=f"Sweeps to run (default: all of {', '.join(SWEEP_NAMES)}).",
    )
    p.add_argument(
        "--jpeg-method", default="pil", choices=JPEG_METHODS, help="JPEG library of the JPEG sweep (default pil)."
    )
    p.add_argument(
        "--interpolation",
        default="bilinear",
        choices=INTERPOLATION_NAMES,
        help="PIL filter of the scale sweep (default bilinear).",
    )
    options.add_bootstrap_option(
        p, "the paired 95%% intervals of each later checkpoint's accuracy and AUC minus the first's, per setting"
    )
    options.add_data_options(p)
    options.add_runtime_options(p)
    options.add_patch_options(p)
    p.add_argument("--out", default="runs/robustness", help="Output folder (default runs/robustness).")
    p.set_defaults(func=cmd_robustness)


def cmd_robustness(args: argparse.Namespace) -> int:
    from ssp_detect.engine.robustness import robustness_report

    paths = robustness_report(
        args.weights,
        options.load_data(args),
        options.eval_runtime(args),
        out=args.out,
        names=args.names,
        model_name=args.arch,
        sweeps=args.sweeps,
        jpeg_method=args.jpeg_method,
        interpolation=args.interpolation,
        bootstrap=args.bootstrap,
        data=options.data_source(args, split=True),
    )
    print(paths[-1].read_text())
    print(f"written: {args.out} ({len(paths)} files)")
    return 0


def add_calibrate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="Choose a decision threshold on labelled data and store it in a copy of the checkpoint.",
        description="Score labelled data, pick the threshold for a target false-positive rate (--target-fpr) or the "
        "best accuracy, and write a copy of the checkpoint that carries it (used by predict, test and serve).",
    )
    options.add_weights_options(p)
    options.add_data_options(p)
    options.add_runtime_options(p)
    options.add_patch_options(p)
    p.add_argument(
        "--target-fpr",
        type=float,
        help="Highest share of real images called fake (e.g. 0.05). Default: best accuracy. The temperature "
        "of our checkpoints is refitted on the same data first (official weights keep their raw output); a "
        "reliability diagram is written beside --output.",
    )
    p.add_argument("--output", required=True, help="Path of the calibrated checkpoint copy.")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ssp_detect.engine.calibrate import apply_temperature
    from ssp_detect.engine.report import plot_reliability
    from ssp_detect.engine.scoring import calibrate_threshold
    from ssp_detect.models.checkpoint import save_calibrated
    from ssp_detect.models.loading import load_model
    from ssp_detect.outputs import ensure_writable_file, writing

    ensure_writable_file(args.output, "--output")  # before the work
    runtime = options.eval_runtime(args)
    loaded = load_model(args.weights, model_name=args.arch)
    data = f"{options.data_source(args)} split {args.split}"
    cal, preds = calibrate_threshold(loaded, options.load_data(args), runtime, target_fpr=args.target_fpr, data=data)
    save_calibrated(
        args.output,
        args.weights,
        threshold=cal.choice.threshold,
        calibration=cal.to_dict(),
        model_name=args.arch,
        temperature=cal.temperature,
    )
    diagram = Path(args.output).with_suffix(".reliability.png")
    with writing(diagram, "the reliability diagram"):
        plot_reliability(
            preds.label, apply_temperature(preds.logit, cal.temperature), diagram, title="Reliability after calibration"
        )
    c = cal.choice
    print(
        f"threshold {c.threshold:.6f}, temperature {cal.temperature:.3f}: false-positive rate {c.fpr:.3f} "
        f"(95% interval {c.fpr_low:.3f}-{c.fpr_high:.3f}, {c.n_real} reals), fakes caught {c.tpr:.3f}; "
        f"ECE {cal.ece_before:.3f} -> {cal.ece_after:.3f}; written {args.output} and {diagram}"
    )
    return 0


PARSERS = (add_test_parser, add_cross_eval_parser, add_robustness_parser, add_calibrate_parser)
