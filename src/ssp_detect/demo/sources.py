"""The real photographs of the demo benchmark: which files, from which package, under which licence.

Every photo ships inside a package that installs offline: scikit-image, scikit-learn and
matplotlib (Python dependencies of this project) and, when installed, the Debian package
``opencv-doc`` (under ``/usr/share/doc/opencv-doc/examples``). Only real camera photographs are
used. From ``opencv-doc`` these kinds of files are left out, and why:

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

_OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause (Debian opencv-doc copyright, Files: *)"
_SKLEARN_LICENCE = "CC-BY-2.0 (Flickr photographer; see sklearn/datasets/images/README.txt)"


@dataclass(frozen=True)
class PhotoSource:
    """One real photograph: where it lives and why it is used.

    Attributes:
        photo_id: Unique, path-like id, e.g. ``"skimage/astronaut"``.
        package: The distribution that ships the file (``"scikit-image"``, ``"opencv-doc"``, ...).
        module: Top-level Python package that ships the file (found without importing it), or
            None for ``opencv-doc``.
        file: Path of the file relative to the folder that holds that package (site-packages),
            e.g. ``skimage/data/astronaut.png``; for ``opencv-doc`` relative to
            ``/usr/share/doc/opencv-doc``.
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
            base = OPENCV_DOC_DIR
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
