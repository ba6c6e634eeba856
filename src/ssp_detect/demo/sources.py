"""The real photographs of the demo benchmark: which files, from which package, under which licence.

Every photo ships inside a package that installs offline: scikit-image, scikit-learn and
matplotlib (Python dependencies of this project) and, when installed, the Debian packages
``opencv-doc`` (under ``/usr/share/doc/opencv-doc/examples``), ``lomiri-wallpapers-16.04`` (under
``/usr/share/backgrounds``) and ``mate-backgrounds`` (under ``/usr/share/backgrounds/mate``);
``scripts/install.sh`` installs them where it runs as root. Only real camera photographs are used,
each one looked at before it was listed. Every photo records its package (``PhotoSource.package``,
and so ``package`` in the benchmark manifest), so that an evaluation can hold out whole packages
(leave-one-source-out).

From ``lomiri-wallpapers-16.04`` the 13 camera photos are used (CC-BY-4.0, CC-BY-SA-4.0 and one
CC0-1.0, per file in the package's copyright file); left out are ``umang_by_Abhishek_Mudgal``, a
computer-made colour gradient, and ``analogpattern_by_Peter_Nerlich``, a close-up texture tinted
with a colour gradient. From ``mate-backgrounds`` the 12 photos under ``nature/`` are used
(GPL-2+; four carry Canon or Konica Minolta EXIF); left out are ``abstract/`` and ``desktop/``
(drawn or rendered art) and the ``Elephants`` images in ``abstract/`` (a photo, but filed and
processed as abstract art, in three resized copies of one scene).

From ``opencv-doc`` these kinds of files are left out, and why:

- drawings, logos, clip art and renders (``HappyFish``, ``LinuxLogo``, ``WindowsLogo``,
  ``opencv-logo*``, ``ml``, ``Blender_Suzanne*``, ``fuzzy/input``): not photographs, so they
  would teach "drawn versus photographed" instead of "generated versus real";
- diagrams, text pages, masks, maps, screenshots and synthetic shapes (``pic1``-``pic6``,
  ``cards``, ``detect_blob``, ``gradient``, ``notes``, ``imageText*``, ``tmpl``, ``mask``,
  ``shape_sample/*``, ``ximgproc/*``, ``alphamat`` trimaps and mattes): computer-made pixels;
- calibration boards and grey-level pictures (``chessboard``, ``left01``-``right14``,
  ``basketball*``, ``box*``, ``blox``): synthetic patterns, or one channel where every other
  photo has three;
- a spliced forgery (``ela_modified``; its untouched ``ela_original`` is kept), a painting
  (``starry_night``), a screenshot of a photo (``smarties``, resampled by the screen) and a
  test image with a drawn border line (``reg/home``): pixels not straight from a camera;
- deblurring-tutorial inputs (``licenseplate_motion``, ``text_defocus``, ``text_motion``): the
  blur may be synthetic, and a nearly textureless patch says little;
- a super-resolution test image (``dnn_superres/butterfly``): likely resampled already;
- tiny crops (``scenetext_char*``, ``scenetext_word*``, ``reg/LR_*``): smaller than any crop;
- the video ``vtest.avi``: one static surveillance scene, heavily compressed, not a photograph.

Photos that show the same scene (stereo pairs, two views of one wall) share a ``group``; the
benchmark splits train and validation by group, so no scene appears in both.

Compression history (measured with :func:`ssp_detect.data.jpeg_quality.estimate_jpeg_quality`):
the scikit-image PNGs carry no JPEG tables (``rocket`` is a JPEG, IJG-equivalent quality 96);
scikit-learn's ``china`` and ``flower`` are JPEG q96; ``grace_hopper`` is JPEG q80; the
``opencv-doc`` JPEGs range from q29 (``scenetext04``) to q100 (``leuvenA``, ``plant``), most at
q75-q95; its PNGs (``graf*``, ``rubberwhale*``, ``sudoku``, ``chicky_512``) have no JPEG tables.
The ``lomiri-wallpapers-16.04`` photos (1365-5312 px wide) are JPEGs of q70 (``Wine``) to q99
(``Picture_1A``), mostly q85-q95 with 4:2:2 chroma; the ``mate-backgrounds`` photos (1280-2560 px
wide) are JPEGs of q75 (``FreshFlower``) to q100, mostly q85 with 4:2:0 chroma.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ssp_detect.data.jpeg_quality import estimate_jpeg_quality, jpeg_subsampling

logger = logging.getLogger(__name__)

OPENCV_DOC_DIR = Path("/usr/share/doc/opencv-doc")
# Where each Debian package installs its photos; a Debian photo's ``file`` is relative to this folder.
DEBIAN_ROOTS: dict[str, Path] = {
    "opencv-doc": OPENCV_DOC_DIR,
    "lomiri-wallpapers-16.04": Path("/usr/share/backgrounds"),
    "mate-backgrounds": Path("/usr/share/backgrounds/mate"),
}

_OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause (Debian opencv-doc copyright, Files: *)"
_SKLEARN_LICENCE = "CC-BY-2.0 (Flickr photographer; see sklearn/datasets/images/README.txt)"


@dataclass(frozen=True)
class PhotoSource:
    """One real photograph: where it lives and why it is used.

    Attributes:
        photo_id: Unique, path-like id, e.g. ``"skimage/astronaut"``.
        package: The distribution that ships the file (``"scikit-image"``, ``"opencv-doc"``, ...):
            the unit a leave-one-source-out split holds out.
        module: Top-level Python package that ships the file (found without importing it), or
            None for a Debian package.
        file: Path of the file relative to the folder that holds that package (site-packages),
            e.g. ``skimage/data/astronaut.png``; for a Debian package relative to its folder in
            :data:`DEBIAN_ROOTS`, e.g. ``nature/Dune.jpg`` for ``mate-backgrounds``.
        licence: Licence of the photo as the package states it.
        reason: One line on why this photo is in the benchmark.
        group: Photos of the same scene share a group; the split keeps a group together.
    """

    photo_id: str
    package: str
    module: str | None
    file: str
    licence: str
    reason: str
    group: str

    def path(self) -> Path | None:
        """The file's absolute path, or None when its package (or the file) is not installed."""
        if self.module is None:
            base = DEBIAN_ROOTS[self.package]
        else:
            spec = importlib.util.find_spec(self.module)
            if spec is None or not spec.submodule_search_locations:
                return None
            base = Path(next(iter(spec.submodule_search_locations))).parent
        path = base / self.file
        return path if path.is_file() else None


@dataclass(frozen=True)
class Photo:
    """A decoded photo with what is known of its compression history.

    Attributes:
        source: Where it comes from.
        path: The file it was read from.
        pixels: RGB uint8 array of shape (H, W, 3), alpha dropped.
        file_format: Pillow's format name of the file (``"JPEG"``, ``"PNG"``).
        jpeg_quality: Estimated IJG quality for a JPEG file, else None.
        jpeg_subsampling: Chroma subsampling of a JPEG file (``"4:2:0"``, ...), else None.
    """

    source: PhotoSource
    path: Path
    pixels: np.ndarray
    file_format: str
    jpeg_quality: int | None
    jpeg_subsampling: str | None

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.pixels.shape[1])


def _python(
    photo_id: str, package: str, module: str, file: str, licence: str, reason: str, group: str | None = None
) -> PhotoSource:
    return PhotoSource(photo_id, package, module, file, licence, reason, group or photo_id)


def _opencv(example: str, reason: str, group: str | None = None) -> PhotoSource:
    """A photo under ``/usr/share/doc/opencv-doc/examples``; ``example`` is relative to that folder."""
    folder, stem = example.split("/", 1)[0], example.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    photo_id = f"opencv/{folder}/{stem}"
    return PhotoSource(photo_id, "opencv-doc", None, f"examples/{example}", _OPENCV_LICENCE, reason, group or photo_id)


def _debian(package: str, prefix: str, file: str, licence: str, reason: str, group: str | None = None) -> PhotoSource:
    """A photo of a Debian package; ``file`` is relative to the package's folder in :data:`DEBIAN_ROOTS`."""
    photo_id = f"{prefix}/{file.rsplit('/', 1)[-1].rsplit('.', 1)[0]}"
    return PhotoSource(photo_id, package, None, file, licence, reason, group or photo_id)


def _lomiri(file: str, licence: str, author: str, reason: str) -> PhotoSource:
    licence = f"{licence} ({author}, 2018; Debian lomiri-wallpapers-16.04 copyright, Files: 16.04/{file})"
    return _debian("lomiri-wallpapers-16.04", "lomiri", file, licence, reason)


def _mate(file: str, author: str, reason: str) -> PhotoSource:
    licence = f"GPL-2+ ({author}; Debian mate-backgrounds copyright, Files: {file})"
    return _debian("mate-backgrounds", "mate", file, licence, reason)


_SKIMAGE = ("scikit-image", "skimage")
_SKLEARN = ("scikit-learn", "sklearn")
_MIDDLEBURY = "Middlebury 2014 stereo benchmark (Scharstein et al.), redistributed by scikit-image"

PHOTO_SOURCES: tuple[PhotoSource, ...] = (
    _python(
        "skimage/astronaut",
        *_SKIMAGE,
        "skimage/data/astronaut.png",
        "public domain (NASA)",
        "Portrait with skin, fabric and flags.",
    ),
    _python(
        "skimage/chelsea",
        *_SKIMAGE,
        "skimage/data/chelsea.png",
        "CC0 (Stefan van der Walt)",
        "Cat fur: fine natural texture.",
    ),
    _python(
        "skimage/coffee",
        *_SKIMAGE,
        "skimage/data/coffee.png",
        "CC0 (Rachel Michetti)",
        "Smooth porcelain next to coarse wood grain.",
    ),
    _python(
        "skimage/rocket",
        *_SKIMAGE,
        "skimage/data/rocket.jpg",
        "public domain (SpaceX)",
        "Outdoor launch scene with sky and smoke.",
    ),
    _python(
        "skimage/motorcycle_left",
        *_SKIMAGE,
        "skimage/data/motorcycle_left.png",
        _MIDDLEBURY,
        "Studio scene, metal and plastic (left view; downsampled x4 by scikit-image).",
        "skimage/motorcycle",
    ),
    _python(
        "skimage/motorcycle_right",
        *_SKIMAGE,
        "skimage/data/motorcycle_right.png",
        _MIDDLEBURY,
        "The same scene from the right camera, in the group of the left view.",
        "skimage/motorcycle",
    ),
    _python(
        "sklearn/china",
        *_SKLEARN,
        "sklearn/datasets/images/china.jpg",
        _SKLEARN_LICENCE,
        "Temple roofs and foliage, outdoor daylight.",
    ),
    _python(
        "sklearn/flower",
        *_SKLEARN,
        "sklearn/datasets/images/flower.jpg",
        _SKLEARN_LICENCE,
        "Close-up flower with shallow depth of field.",
    ),
    _python(
        "matplotlib/grace_hopper",
        "matplotlib",
        "matplotlib",
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "public domain (U.S. Navy photograph)",
        "Scanned film portrait: grain and uniform fabric.",
    ),
    _opencv("alphamat/input_images/plant.jpg", "Potted plant indoors, many leaves."),
    _opencv("data/aero1.jpg", "Aerial photo of a town.", "opencv/aero"),
    _opencv("data/aero3.jpg", "Aerial photo of the same town.", "opencv/aero"),
    _opencv("data/aloeL.jpg", "Aloe plant, Middlebury stereo (left).", "opencv/aloe"),
    _opencv("data/aloeR.jpg", "Aloe plant, Middlebury stereo (right).", "opencv/aloe"),
    _opencv("data/apple.jpg", "Scanned photograph of an apple."),
    _opencv("data/orange.jpg", "Scanned photograph of an orange."),
    _opencv("data/baboon.jpg", "Classic mandrill photo: dense fur texture."),
    _opencv("data/board.jpg", "Close-up of a circuit board (a real photo, not a chart)."),
    _opencv("data/building.jpg", "Building facade with regular structure."),
    _opencv("data/butterfly.jpg", "Butterfly on a leaf."),
    _opencv("data/chicky_512.png", "Dog close-up, stored as PNG (alpha dropped)."),
    _opencv("data/ela_original.jpg", "Notebook close-up, the untouched original."),
    _opencv("data/fruits.jpg", "Cut fruit close-up."),
    _opencv("data/graf1.png", "Graffiti wall, Oxford affine set (view 1).", "opencv/graf"),
    _opencv("data/graf3.png", "Graffiti wall, Oxford affine set (view 3).", "opencv/graf"),
    _opencv("data/home.jpg", "Building against blue sky with birds."),
    _opencv("data/left.jpg", "Low-light phone photo of books (left).", "opencv/books"),
    _opencv("data/right.jpg", "Low-light phone photo of books (right).", "opencv/books"),
    _opencv("data/leuvenA.jpg", "Street of brick houses (exposure A).", "opencv/leuven"),
    _opencv("data/leuvenB.jpg", "Street of brick houses (exposure B).", "opencv/leuven"),
    _opencv("data/messi5.jpg", "Sports photo with crowd."),
    _opencv("data/pca_test1.jpg", "Objects on a light box: flat areas and sensor noise."),
    _opencv("data/rubberwhale1.png", "Toys, Middlebury flow (frame 1).", "opencv/rubberwhale"),
    _opencv("data/rubberwhale2.png", "Toys, Middlebury flow (frame 2).", "opencv/rubberwhale"),
    _opencv("data/squirrel_cls.jpg", "Squirrel on a branch, blurred background."),
    _opencv("data/stuff.jpg", "Small objects on a table."),
    _opencv("data/sudoku.png", "Photo of a printed newspaper page."),
    _opencv("hfs/data/000.jpg", "Bird on a post (shorter side 254 px: only for crops up to 254)."),
    _opencv("hfs/data/001.jpg", "Lake and forest (shorter side 254 px)."),
    _opencv("hfs/data/002.jpg", "Tree on a meadow (shorter side 254 px)."),
    *(_opencv(f"text/scenetext0{i}.jpg", "Street scene with a sign.") for i in range(1, 7)),
    *(_opencv(f"text/scenetext_segmented_word0{i}.jpg", "Close-up of a shop sign.") for i in range(1, 6)),
    _lomiri(
        "aitzgorri_by_Aitzol_Berasategi.jpg",
        "CC-BY-4.0",
        "Aitzol Berasategi",
        "Limestone ridge above autumn larches and a meadow.",
    ),
    _lomiri(
        "Bridge_by_Sander_Klootwijk.jpg",
        "CC-BY-SA-4.0",
        "Sander Klootwijk",
        "Bridge cables against a blue sky over tidal flats: smooth sky, thin edges.",
    ),
    _lomiri("Dragonfly_by_Bolly.jpg", "CC-BY-SA-4.0", '"Bolly"', "Dragonfly on a twig before sunlit leaves."),
    _lomiri(
        "free_by_Peter_Nerlich.jpg",
        "CC-BY-SA-4.0",
        "Peter Nerlich",
        "Carved bird under lamp globes: large smooth gradients with sensor noise.",
    ),
    _lomiri(
        "friends_by_Aitzol_Berasategi.jpg",
        "CC-BY-4.0",
        "Aitzol Berasategi",
        "Two spaniels at the window of a wooden house: fur and planks.",
    ),
    _lomiri(
        "greentock_by_Peter_Nerlich.jpg",
        "CC-BY-SA-4.0",
        "Peter Nerlich",
        "Backlit wall clock on a textured wall, indoor light.",
    ),
    _lomiri(
        "life_by_Aitzol_Berasategi.jpg",
        "CC-BY-4.0",
        "Aitzol Berasategi",
        "Forest stream among mossy limestone rocks.",
    ),
    _lomiri(
        "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "CC-BY-4.0",
        "Aitzol Berasategi",
        "Mountain path below limestone peaks with snow.",
    ),
    _lomiri(
        "Picture_0B_by_freespace.jpg",
        "CC-BY-4.0",
        'Trevor "Freespace"',
        "Half a fig in a red bowl on weathered concrete, hard sunlight.",
    ),
    _lomiri(
        "Picture_1A_by_freespace.jpg",
        "CC-BY-4.0",
        'Trevor "Freespace"',
        "Paint brushes close up, strongly saturated colours.",
    ),
    _lomiri(
        "seeding_by_Clements_Engelhardt.jpg",
        "CC0-1.0",
        "Clemens Engelhardt",
        "Dandelion clocks against the low sun, shallow depth of field.",
    ),
    _lomiri(
        "sunset_by_Aitzol_Berasategi.jpg",
        "CC-BY-4.0",
        "Aitzol Berasategi",
        "Sunset over hills with lens flare and a stone table.",
    ),
    _lomiri(
        "Wine_by_Jakkub_Mede.jpg",
        "CC-BY-4.0",
        "Jakub Mede",
        "Interior: wine bottle, djembe and pallet table, warm light.",
    ),
    _mate("nature/Aqua.jpg", "2008, Charles Barbin", "Water drop splash, macro."),
    _mate(
        "nature/Blinds.jpg",
        "2008, Lennart Poettering, Andrea Cimitan",
        "Backlit leaf veins (Canon EOS 350D).",
    ),
    _mate(
        "nature/Dune.jpg",
        "2007, Marco Cogoni; 2008, Hylke Bons",
        "Dune grass before the sea (Canon EOS Digital Rebel).",
    ),
    _mate("nature/FreshFlower.jpg", "2005, Jens Ansorg", "Orange flower close up (JPEG q75)."),
    _mate("nature/Garden.jpg", "2008, Charles Barbin", "Marigold before a blurred garden."),
    _mate(
        "nature/GreenMeadow.jpg",
        "2005, Timothy Schellhase; 2008, Lapo Calamandrei",
        "Young grass blades close up.",
    ),
    _mate("nature/LadyBird.jpg", "2008, Charles Barbin", "Ladybird on a grass stalk among forget-me-nots."),
    _mate("nature/RainDrops.jpg", '2008, "blackcombwhistler07"', "Raindrops on leaves."),
    _mate(
        "nature/Storm.jpg",
        "2008, Sergey Nazarov",
        "Storm clouds over fields, road blurred by motion (Canon EOS 400D).",
    ),
    _mate(
        "nature/TwoWings.jpg",
        "2008, Charles Barbin, Hylke Bons",
        "Two dandelion seeds before orange bokeh.",
    ),
    _mate(
        "nature/Wood.jpg",
        "2008, Jean-François Fortin Tam",
        "Painted wood planks, shallow depth of field (Konica Minolta DiMAGE Z5).",
    ),
    _mate("nature/YellowFlower.jpg", "2008, Charles Barbin", "Yellow flower close up against a dark background."),
)


def load_photo(source: PhotoSource) -> Photo | None:
    """Decode one photo and measure its compression history.

    Args:
        source: The photo to load.

    Returns:
        The photo, or None when its package is not installed (logged at INFO).

    Raises:
        ValueError: the file exists but cannot be decoded (a broken installation).
    """
    path = source.path()
    if path is None:
        logger.info("Skipping %s: %s is not installed here.", source.photo_id, source.package)
        return None
    try:
        with Image.open(path) as image:
            file_format = str(image.format)
            quality = estimate_jpeg_quality(image)
            subsampling = jpeg_subsampling(image)
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except OSError:
        raise ValueError(f"Photo {path} from {source.package} cannot be decoded; reinstall {source.package}.") from None
    return Photo(source, path, pixels, file_format, quality, subsampling)


def available_photos(sources: tuple[PhotoSource, ...] = PHOTO_SOURCES) -> list[Photo]:
    """Load every photo whose package is installed, in the order of ``sources``."""
    photos = [photo for photo in map(load_photo, sources) if photo is not None]
    logger.info("Loaded %d of %d real photos.", len(photos), len(sources))
    return photos
