"""Synthetic texture images for the skip-connection / task-complexity study.

Each image holds one random shape (``segrobust.data.shapes``) filled with a foreground texture on
a background texture. The two are alpha-blended so that they grow alike as alpha rises: alpha near
0 is an easy task, alpha near 1 a hard one. Task complexity per image is the LBP KL divergence of
``segrobust.data.complexity``.

Texture sources (``TEXTURES``) are functions ``(size, rng) -> (size, size)`` float64 image in
[0, 1]: random crops of texture photographs shipped with scikit-image (offline, no download) and a
few procedural textures.

Study design: image ``i``'s shape and texture crops depend only on ``(seed, i)`` -- never on alpha
or direction -- so the datasets of one grid differ only in the blend.

Split sizes are explicit counts (``n_train``, ``n_validation``, ``n_calibration``, ``n_test``), not
fractions: held-out images cost only inference, training images cost training, so the held-out
sets are sized for the statistics independently of the training set. Images are assigned to splits
by index ranges in the fixed order ``SPLIT_ORDER`` (training first), so changing only the
held-out counts leaves every training and validation image as it was.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping

import numpy as np
from scipy import ndimage
from skimage import color, data, transform

from segrobust.data.complexity import lbp_complexity
from segrobust.data.dataset import DatasetWriter, generated_provenance
from segrobust.data.shapes import (
    Irregularity,
    Radius,
    check_shape_arguments,
    random_shape_mask,
    value_bounds,
)
from segrobust.registry import Registry, UnknownNameError

TextureSource = Callable[[int, np.random.Generator], np.ndarray]

TEXTURES: Registry[TextureSource] = Registry("texture")

#: Blend directions: which region the other texture bleeds into.
DIRECTIONS = ("background", "foreground")

#: Random zoom range of photo crops (the crop window is ``size / zoom`` photo pixels wide), so
#: crops of one photo vary in scale as well as in position.
PHOTO_ZOOM = (0.8, 1.25)

#: Smallest image edge: LBP (radius 3) and the shape margin need some room.
MIN_IMAGE_SIZE = 16


def rescale01(image: np.ndarray) -> np.ndarray:
    """Min-max rescale to [0, 1] (a constant image becomes zeros).

    Every source ends with this so that foreground and background differ in texture, not in
    overall brightness or contrast.
    """
    image = np.asarray(image, dtype=np.float64)
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return np.zeros_like(image)
    return (image - lo) / (hi - lo)


# --- photographs ---------------------------------------------------------------------------------


@functools.cache
def _photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as a read-only float64 grayscale array in [0, 1]."""
    loaders = {
        "brick": data.brick,
        "grass": data.grass,
        "gravel": data.gravel,
        "histology": lambda: color.rgb2gray(data.immunohistochemistry()),
    }
    image = rescale01(loaders[name]())
    image.setflags(write=False)
    return image


def random_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of ``photo`` at a random zoom in ``PHOTO_ZOOM``, resized to ``size``.

    The crop window is ``size / zoom`` photo pixels wide, capped at the photo's shorter side (a
    request larger than the photo is then upsampled to ``size``).
    """
    zoom = rng.uniform(*PHOTO_ZOOM)
    window = min(int(round(size / zoom)), min(photo.shape))
    top = rng.integers(0, photo.shape[0] - window + 1)
    left = rng.integers(0, photo.shape[1] - window + 1)
    crop = photo[top : top + window, left : left + window]
    if window != size:
        crop = transform.resize(crop, (size, size), order=1, anti_aliasing=window > size)
    return rescale01(crop)


def _register_photo(name: str, description: str) -> None:
    def source(size: int, rng: np.random.Generator) -> np.ndarray:
        return random_crop(_photo(name), size, rng)

    source.__name__ = f"{name}_texture"
    source.__doc__ = f"Random crop of {description} (scikit-image sample data)."
    TEXTURES.register(name)(source)


_register_photo("brick", "a brick wall photograph")
_register_photo("grass", "a grass photograph")
_register_photo("gravel", "a gravel photograph")
_register_photo("histology", "an IHC-stained colon tissue section (grayscale)")


# --- procedural ----------------------------------------------------------------------------------


@TEXTURES.register("noise")
def noise_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise smoothed by a Gaussian of random width (sigma 1-3 px): fine grain."""
    sigma = rng.uniform(1.0, 3.0)
    return rescale01(ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma))


@TEXTURES.register("stripes")
def stripes_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Sinusoidal stripes of random orientation, period (4-12 px) and phase."""
    angle = rng.uniform(0.0, np.pi)
    period = rng.uniform(4.0, 12.0)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size]
    along = xx * np.cos(angle) + yy * np.sin(angle)
    return rescale01(np.sin(2.0 * np.pi * along / period + phase))


@TEXTURES.register("fractal")
def fractal_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise filtered in Fourier space to a power spectrum 1/f^beta.

    beta is drawn in [1.5, 2.5] (cloud-like, structure at every scale).
    """
    beta = rng.uniform(1.5, 2.5)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    freq = np.hypot(fy, fx)
    freq[0, 0] = np.inf  # drop the mean
    spectrum = np.fft.rfft2(rng.standard_normal((size, size))) * freq ** (-beta / 2.0)
    return rescale01(np.fft.irfft2(spectrum, s=(size, size)))


@TEXTURES.register("checker")
def checker_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A binary checkerboard of random orientation, square size (3-8 px) and offset."""
    angle = rng.uniform(0.0, np.pi / 2.0)
    square = rng.uniform(3.0, 8.0)
    offset = rng.uniform(0.0, 2.0 * square, size=2)
    yy, xx = np.mgrid[0:size, 0:size]
    u = xx * np.cos(angle) + yy * np.sin(angle) + offset[0]
    v = -xx * np.sin(angle) + yy * np.cos(angle) + offset[1]
    parity = (np.floor(u / square) + np.floor(v / square)) % 2
    return parity.astype(np.float64)


@TEXTURES.register("dots")
def dots_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blobs (sigma 1-2 px) at uniformly random positions, one per ~36-100 px^2."""
    sigma = rng.uniform(1.0, 2.0)
    spacing = rng.uniform(6.0, 10.0)
    n_dots = max(1, int(round(size * size / spacing**2)))
    impulses = np.zeros((size, size))
    ys, xs = rng.integers(0, size, size=(2, n_dots))
    np.add.at(impulses, (ys, xs), 1.0)
    return rescale01(ndimage.gaussian_filter(impulses, sigma, mode="wrap"))


# --- blending ------------------------------------------------------------------------------------


def check_blend(alpha: float, direction: str) -> None:
    """Raise ValueError unless ``alpha`` is in (0, 1) and ``direction`` one of ``DIRECTIONS``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; allowed: {', '.join(DIRECTIONS)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in the open interval (0, 1), got {alpha!r}")


def blend_textures(
    fg_tex: np.ndarray, bg_tex: np.ndarray, mask: np.ndarray, alpha: float, direction: str
) -> np.ndarray:
    """Compose one image from a foreground and a background texture.

    ``direction="background"``: the foreground texture bleeds into the background,
    ``image = mask * fg + (1 - mask) * ((1 - alpha) * bg + alpha * fg)``.

    ``direction="foreground"``: the background texture bleeds into the foreground,
    ``image = mask * ((1 - alpha) * fg + alpha * bg) + (1 - mask) * bg``.

    ``alpha`` in (0, 1); the higher, the more alike the two regions (the harder the task).
    """
    check_blend(alpha, direction)
    fg_tex, bg_tex = np.asarray(fg_tex, np.float64), np.asarray(bg_tex, np.float64)
    mask = np.asarray(mask).astype(bool)
    if not fg_tex.shape == bg_tex.shape == mask.shape:
        raise ValueError(
            f"shapes differ: fg_tex {fg_tex.shape}, bg_tex {bg_tex.shape}, mask {mask.shape}"
        )
    if direction == "background":
        return np.where(mask, fg_tex, (1.0 - alpha) * bg_tex + alpha * fg_tex)
    return np.where(mask, (1.0 - alpha) * fg_tex + alpha * bg_tex, bg_tex)


# --- dataset -------------------------------------------------------------------------------------


def _texture_source(name: str, key: str) -> TextureSource:
    """The registered texture ``name``, or an error naming the config key and allowed names."""
    try:
        return TEXTURES.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{key}: {exc}") from None


def texture_case(
    index: int,
    *,
    image_size: int,
    foreground: str,
    background: str,
    irregularity: Irregularity,
    radius: Radius,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shape mask and the two texture crops of image ``index``: ``(mask, fg_tex, bg_tex)``.

    They depend on ``(seed, index)`` alone, each drawn from its own child stream of
    ``SeedSequence([seed, index])``, so the mask does not change with the texture choice either.
    """
    shape_ss, fg_ss, bg_ss = np.random.SeedSequence([seed, index]).spawn(3)
    mask = random_shape_mask(image_size, irregularity, radius, np.random.default_rng(shape_ss))
    fg_tex = _texture_source(foreground, "foreground")(image_size, np.random.default_rng(fg_ss))
    bg_tex = _texture_source(background, "background")(image_size, np.random.default_rng(bg_ss))
    return mask, fg_tex, bg_tex


#: Splits in the order their index ranges follow each other in a generated dataset. Training
#: comes first so that the held-out counts never move a training image; test comes before
#: calibration so that changing the calibration count keeps the test images too.
SPLIT_ORDER = ("training", "validation", "test", "calibration")

#: The argument / config key holding each split's image count.
SPLIT_COUNT_KEYS = {
    "training": "n_train",
    "validation": "n_validation",
    "test": "n_test",
    "calibration": "n_calibration",
}

#: Smallest count of each split: a model needs training and validation images and is always
#: tested; the calibration split may be empty (no conformal analysis then).
MIN_SPLIT_COUNT = {"training": 1, "validation": 1, "test": 1, "calibration": 0}


def split_by_index(counts: Mapping[str, int]) -> list[str]:
    """The split of each image index, from ``counts`` keyed by ``SPLIT_COUNT_KEYS`` values.

    Index ranges follow ``SPLIT_ORDER``: ``[0, n_train)`` is training, the next ``n_validation``
    indices validation, then ``n_test`` test, then ``n_calibration`` calibration.

    Raises:
        ValueError: a count that is missing, not an integer or below its minimum, naming its key.
    """
    splits: list[str] = []
    for split in SPLIT_ORDER:
        key, minimum = SPLIT_COUNT_KEYS[split], MIN_SPLIT_COUNT[split]
        count = counts.get(key)
        valid = isinstance(count, (int, np.integer)) and not isinstance(count, bool)
        if not valid or count < minimum:
            raise ValueError(f"{key} must be an integer >= {minimum}, got {count!r}")
        splits.extend([split] * int(count))
    return splits


def _plain_range(value: Radius, name: str) -> float | list[float]:
    """A shape value as the provenance records it: a number, or ``[low, high]``."""
    low, high = value_bounds(value, name)
    return low if low == high else [low, high]


def generate_texture_dataset(
    out_dir: str | os.PathLike,
    *,
    image_size: int,
    n_train: int,
    n_validation: int,
    n_calibration: int,
    n_test: int,
    foreground: str,
    background: str,
    direction: str,
    alpha: float,
    irregularity: Irregularity,
    radius: Radius,
    seed: int,
) -> None:
    """Write one texture dataset (one direction, one alpha) in the dataset contract.

    Images are 2D float32 in [0, 1] with spacing (1, 1); labels the shape masks. Each datalist
    entry carries ``complexity`` (LBP KL divergence, bits) and ``fg_ratio``. The provenance records
    every argument. The dataset is written atomically: on any error ``out_dir`` is left untouched.

    Args:
        image_size: image edge in pixels (>= 16).
        n_train, n_validation, n_calibration, n_test: images per split, assigned by index
            (``split_by_index``).
        foreground, background: names in ``TEXTURES``.
        direction, alpha: the blend (see ``blend_textures``).
        irregularity, radius: the shape (see ``random_shape_mask``): each one value or a
            range ``[low, high]`` each shape draws its own from.
        seed: with the image index, fixes every shape and crop (not alpha or direction).
    """
    if not isinstance(image_size, (int, np.integer)) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    counts = dict(
        n_train=n_train, n_validation=n_validation, n_calibration=n_calibration, n_test=n_test
    )
    splits = split_by_index(counts)
    _texture_source(foreground, "foreground")
    _texture_source(background, "background")
    check_blend(alpha, direction)
    check_shape_arguments(image_size, irregularity, radius)

    provenance = generated_provenance(
        "synthetic-texture",
        "segrobust.data.textures.generate_texture_dataset",
        {
            "image_size": int(image_size),
            **{key: int(value) for key, value in counts.items()},
            "foreground": foreground,
            "background": background,
            "direction": direction,
            "alpha": float(alpha),
            "irregularity": _plain_range(irregularity, "irregularity"),
            "radius": _plain_range(radius, "radius"),
            "seed": int(seed),
        },
    )
    with DatasetWriter(out_dir, provenance) as writer:
        for index, split in enumerate(splits):
            mask, fg_tex, bg_tex = texture_case(
                index,
                image_size=image_size,
                foreground=foreground,
                background=background,
                irregularity=irregularity,
                radius=radius,
                seed=seed,
            )
            image = blend_textures(fg_tex, bg_tex, mask, alpha, direction).astype(np.float32)
            label = mask.astype(np.uint8)
            writer.add(
                f"tex_{index:04d}",
                image,
                label,
                split=split,
                spacing=(1.0, 1.0),
                complexity=lbp_complexity(image, label),
                fg_ratio=float(label.mean()),
            )
