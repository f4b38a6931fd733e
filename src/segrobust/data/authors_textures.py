"""Texture images made the way the texture paper's authors made theirs: a second generator.

The project's generator (``segrobust.data.textures``) blends in floating point and draws its
shapes from low harmonics at one mean radius. This one follows the authors' public code
(re-implemented, not copied): 8-bit texture crops, PIL's ``Image.blend`` and
``Image.composite`` for the blend, and their random Bezier-curve shapes
(``segrobust.data.bezier_shapes``) with their wide size distribution. The texture crops come
from the same sources as the project's (``segrobust.data.textures.TEXTURES``, other random
streams), so that a dataset of this generator at the training dataset's textures, direction and
alpha differs from it in the shapes, their sizes and the blend arithmetic, not in the texture
scale: "the same two textures at the same alpha, drawn by someone else". Its test sets are a
shift kind of their own (``segrobust.analysis.shift_coverage``): does a model's confidence
rating hold on images a second, independent generator makes?

The blend, as the authors compose it (alpha 0: the two textures side by side; alpha 1: one
texture everywhere):

* ``background``: the background is ``Image.blend(bg, fg, alpha)`` (the foreground texture
  bleeds into it), the shape keeps the foreground texture;
* ``foreground``: the shape is ``Image.blend(fg, bg, alpha)``, the background keeps the
  background texture.

Image ``i`` depends only on ``(seed, i)`` (its shape and crops) and the blend, like the project's
generator, so the datasets of one seed at several alphas are paired image by image. Every image
goes to the ``test`` split: these sets are only ever evaluated.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageChops

from segrobust.data.bezier_shapes import bezier_shape_mask
from segrobust.data.complexity import lbp_complexity
from segrobust.data.dataset import DatasetWriter, generated_provenance
from segrobust.data.textures import DIRECTIONS, MIN_IMAGE_SIZE, TEXTURES
from segrobust.registry import UnknownNameError

#: Mixed into every image's seed so that its random streams differ from the project
#: generator's at the same ``(seed, index)``.
STREAM_TAG = 0xA17
#: ``provenance.json``'s source of these datasets.
SOURCE = "synthetic-authors-texture"


def to_8bit(texture: np.ndarray) -> Image.Image:
    """A [0, 1] texture as an 8-bit grayscale PIL image (rounded, as the authors' PNGs are)."""
    values = np.clip(np.rint(np.asarray(texture, np.float64) * 255.0), 0, 255)
    return Image.fromarray(values.astype(np.uint8))  # 2D uint8: mode "L"


def check_authors_blend(alpha: float, direction: str) -> None:
    """Raise ValueError unless ``alpha`` is in [0, 1] and ``direction`` one of ``DIRECTIONS``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; allowed: {', '.join(DIRECTIONS)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")


def pil_blend(
    fg: Image.Image, bg: Image.Image, mask: np.ndarray, alpha: float, direction: str
) -> np.ndarray:
    """The authors' composition of two 8-bit textures and a shape (module docstring), as a
    float32 image in [0, 1]."""
    check_authors_blend(alpha, direction)
    if not fg.size == bg.size == mask.shape[::-1]:
        raise ValueError(f"sizes differ: fg {fg.size}, bg {bg.size}, mask {mask.shape[::-1]}")
    shape = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8))
    if direction == "background":
        image = Image.composite(Image.blend(bg, fg, alpha), fg, ImageChops.invert(shape))
    else:
        image = Image.composite(Image.blend(fg, bg, alpha), bg, shape)
    return (np.asarray(image, dtype=np.float32) / 255.0).astype(np.float32)


def _source(name: str, key: str):
    try:
        return TEXTURES.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{key}: {exc}") from None


def authors_texture_case(
    index: int, *, image_size: int, foreground: str, background: str, seed: int
) -> tuple[np.ndarray, Image.Image, Image.Image]:
    """Shape mask and the two 8-bit texture crops of image ``index``: ``(mask, fg, bg)``."""
    shape_ss, fg_ss, bg_ss = np.random.SeedSequence([seed, index, STREAM_TAG]).spawn(3)
    mask = bezier_shape_mask(image_size, np.random.default_rng(shape_ss))
    fg = _source(foreground, "foreground")(image_size, np.random.default_rng(fg_ss))
    bg = _source(background, "background")(image_size, np.random.default_rng(bg_ss))
    return mask, to_8bit(fg), to_8bit(bg)


def generate_authors_texture_dataset(
    out_dir: str | os.PathLike,
    *,
    image_size: int,
    n_test: int,
    foreground: str,
    background: str,
    direction: str,
    alpha: float,
    seed: int,
) -> None:
    """Write a test-only dataset of ``n_test`` authors'-style images in the dataset contract.

    Images are 2D float32 in [0, 1] (8-bit levels) with spacing (1, 1), labels the Bezier
    shapes; each entry carries ``complexity`` (LBP KL divergence, bits) and ``fg_ratio``. Written
    atomically: on any error ``out_dir`` is left untouched.

    Raises:
        ValueError / UnknownNameError: naming the argument (size, count, texture, blend).
    """
    if not isinstance(image_size, (int, np.integer)) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if not isinstance(n_test, (int, np.integer)) or isinstance(n_test, bool) or n_test < 1:
        raise ValueError(f"n_test must be an integer >= 1, got {n_test!r}")
    _source(foreground, "foreground")
    _source(background, "background")
    check_authors_blend(alpha, direction)
    provenance = generated_provenance(
        SOURCE,
        "segrobust.data.authors_textures.generate_authors_texture_dataset",
        {
            "image_size": int(image_size),
            "n_test": int(n_test),
            "foreground": foreground,
            "background": background,
            "direction": direction,
            "alpha": float(alpha),
            "seed": int(seed),
        },
    )
    with DatasetWriter(out_dir, provenance) as writer:
        for index in range(n_test):
            mask, fg, bg = authors_texture_case(
                index, image_size=image_size, foreground=foreground, background=background,
                seed=seed,
            )  # fmt: skip
            image = pil_blend(fg, bg, mask, alpha, direction)
            label = mask.astype(np.uint8)
            writer.add(
                f"authors_{index:04d}",
                image,
                label,
                split="test",
                spacing=(1.0, 1.0),
                complexity=lbp_complexity(image, label),
                fg_ratio=float(label.mean()),
            )
