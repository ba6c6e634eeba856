"""Start-up time of the ``ssp`` command line, against ``import torch`` on the same machine, in the same run.

    python -m benchmarks.startup                # median of 5 rounds
    python -m benchmarks.startup --rounds 9

Each command runs as a fresh process (``python -m ssp_detect``, which is what the ``ssp`` script runs),
rounds alternating the commands so that a drift in the machine's load touches them alike:

  python -c "import torch"      the floor any command that scores an image pays
  ssp --help                    target: under 0.5 s
  ssp predict --help
  ssp predict one.jpg           with an ``ssp-cooc`` checkpoint (ours, small) and with the paper's ``ssp``
                                in the official format (a 94 MB state dict); target: within 1 s of import torch

Then one run of each under ``python -X importtime``: the seconds spent importing and the largest
top-level imports. Checkpoints hold random weights; the image is a 500x375 JPEG. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import ssp_detect

SRC = str(Path(ssp_detect.__file__).resolve().parents[1])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}


def make_inputs(folder: Path) -> dict[str, Path]:
    """A JPEG, an ``ssp-cooc`` checkpoint and an official-format ``ssp`` state dict, random weights."""
    import numpy as np
    import torch
    from PIL import Image

    from ssp_detect.models.checkpoint import save_checkpoint
    from ssp_detect.models.registry import create_model, get_spec

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    base = 128 + 60 * np.sin(xx / 30) * np.cos(yy / 40)
    img = np.clip(base[..., None] + rng.normal(0, 6, (375, 500, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(folder / "one.jpg", quality=95)
    torch.manual_seed(0)
    cooc = create_model("ssp-cooc")
    save_checkpoint(
        folder / "cooc.pt",
        {"model": "ssp-cooc", "state_dict": cooc.state_dict(), "preprocess": get_spec("ssp-cooc").feed.to_dict()},
    )
    torch.save(create_model("ssp").state_dict(), folder / "official.pth")
    return {"image": folder / "one.jpg", "cooc": folder / "cooc.pt", "official": folder / "official.pth"}


def commands(inputs: dict[str, Path]) -> dict[str, list[str]]:
    ssp = [sys.executable, "-m", "ssp_detect"]
    image = str(inputs["image"])
    return {
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        'python -c "pass"': [sys.executable, "-c", "pass"],
        "ssp --help": [*ssp, "--help"],
        "ssp predict --help": [*ssp, "predict", "--help"],
        "ssp predict one.jpg (ssp-cooc)": [*ssp, "predict", image, "--weights", str(inputs["cooc"])],
        "ssp predict one.jpg (ssp, official format)": [*ssp, "predict", image, "--weights", str(inputs["official"])],
    }


def wall_time(argv: list[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=_env())
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr[-2000:]}")
    return elapsed


def import_profile(argv: list[str], top: int) -> tuple[float, list[tuple[str, float]]]:
    """Seconds spent importing (sum of the top-level imports' cumulative times) and the ``top``
    largest top-level imports, from ``python -X importtime``."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, env=_env())
    roots: list[tuple[str, float]] = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m[2]) == 1:  # one space: imported by the script itself, not by another module
            roots.append((m[3], int(m[1]) / 1e6))
    return sum(s for _, s in roots), sorted(roots, key=lambda r: -r[1])[:top]


def loaded_modules(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` a command has imported when it ends (``python -m ssp_detect`` commands only)."""
    if argv[1:3] != ["-m", "ssp_detect"]:
        return []
    code = (
        "import sys\nfrom ssp_detect.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', *[m for m in {names!r} if m in sys.modules])"
    )
    done = subprocess.run([argv[0], "-c", code, *argv[3:]], capture_output=True, text=True, env=_env())
    line = next((x for x in done.stdout.splitlines() if x.startswith("LOADED")), "LOADED ?")
    return line.split()[1:]


HEAVY = ("torch", "torchvision", "torch._dynamo", "numba", "fastapi", "sklearn", "matplotlib", "cv2", "scipy.ndimage")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="timed runs of each command (default 5); the median is shown")
    ap.add_argument("--top", type=int, default=4, help="largest top-level imports listed per command (default 4)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(make_inputs(Path(tmp)))
        for argv_ in cmds.values():  # warm-up: file caches, numba's on-disk cache, .pyc files
            wall_time(argv_)
        load_before = os.getloadavg()[0]
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.rounds):
            for name, argv_ in cmds.items():
                times[name].append(wall_time(argv_))
        load_after = os.getloadavg()[0]
        profiles = {name: import_profile(argv_, args.top) for name, argv_ in cmds.items()}
        loaded = {name: loaded_modules(argv_, HEAVY) for name, argv_ in cmds.items()}

    torch_median = statistics.median(times['python -c "import torch"'])
    print(
        f"\nssp start-up, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPU cores, Python "
        f"{sys.version.split()[0]}, median of {args.rounds} runs (load average {load_before:.1f} before, "
        f"{load_after:.1f} after)\n"
    )
    print("| command | median s | min s | max s | minus import torch s | importing s | heavy modules loaded |")
    print("|---|---|---|---|---|---|---|")
    for name, ts in times.items():
        median = statistics.median(ts)
        heavy = "n/a" if cmds[name][1:3] != ["-m", "ssp_detect"] else ", ".join(loaded[name]) or "-"
        print(
            f"| {name} | {median:.2f} | {min(ts):.2f} | {max(ts):.2f} | {median - torch_median:+.2f} | "
            f"{profiles[name][0]:.2f} | {heavy} |"
        )
    print(f"\nlargest top-level imports (python -X importtime, cumulative s, one run; top {args.top}):\n")
    for name, (_, top) in profiles.items():
        print(f"- {name}: " + ", ".join(f"{module} {s:.2f}" for module, s in top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
