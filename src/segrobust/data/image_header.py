"""An image's declared size, checked from its header before any voxel is read.

The image file itself can be a bomb that no archive cap sees: a 389 KB ``.nii.gz`` that
decompresses to 20000 x 20000 voxels, a 16 KB header declaring 32767 x 32767 float32 voxels, a
``vox_offset`` that makes nibabel read gigabytes of "header extensions" into memory before the
image is even opened. Every reader of images that come from outside the pipeline (predict, the
MSD tasks and ``msd_import``, BUSI and GlaS photos) and the dataset reader therefore call
:func:`check_nifti` / :func:`check_photo` first. They read only the fixed header (348 bytes for
NIfTI-1, 540 for NIfTI-2; a PNG or BMP header through imageio, which decodes nothing) and
refuse, naming the file, the size and the limit, an image whose header and extensions plus its
voxels *once read* exceed the limit. Once read means at the readers' working precision: 4 bytes
per voxel (float32) at least, 8 where the file stores float64 or its header scales intensities
(nibabel then returns float64), the stored size where that is larger (complex).

The limit (GB, 10^9 bytes) is the config key ``max_image_gb`` (``--max-image-gb`` of
``segrobust predict``). It is a process-wide setting carried in the environment
(``SEGROBUST_MAX_IMAGE_GB``, set by the Snakefile and by the command line, like the output
roots of :mod:`segrobust.atomic`), so the dataset reader deep inside training and evaluation
jobs applies the configured value without it being a rule parameter (changing it re-runs
nothing). Without it, ``DEFAULT_MAX_IMAGE_GB`` applies: the schema's default.

Nothing here imports nibabel or imageio at import time: the Snakefile imports this module.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segrobust.data.errors import DataError

#: The config key (and, with dashes, the ``segrobust predict`` option) that sets the limit.
LIMIT_KEY = "max_image_gb"
#: The limit where none is set: the schema's default of ``max_image_gb`` (a test checks).
DEFAULT_MAX_IMAGE_GB = 1.0
#: Environment variable carrying the limit (GB) to this process and the ones it starts.
MAX_IMAGE_GB_ENV = "SEGROBUST_MAX_IMAGE_GB"
#: Bytes per voxel the readers hold at least (float32).
_MIN_BYTES_PER_VOXEL = 4
#: NIfTI-1 and NIfTI-2 fixed header sizes (their ``sizeof_hdr`` field).
_NIFTI_HEADER_SIZES = (348, 540)


class ImageTooLarge(DataError):
    """An image whose header declares more than the limit; nothing of it was read."""


def set_max_image_gb(gb: float) -> None:
    """Set the limit for this process and the processes it starts."""
    os.environ[MAX_IMAGE_GB_ENV] = repr(float(gb))


@contextlib.contextmanager
def image_limit(gb: float) -> Iterator[None]:
    """The limit set to ``gb`` inside the block, as it was after it (a command run in-process)."""
    before = os.environ.get(MAX_IMAGE_GB_ENV)
    set_max_image_gb(gb)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MAX_IMAGE_GB_ENV, None)
        else:
            os.environ[MAX_IMAGE_GB_ENV] = before


def max_image_gb() -> float:
    """The limit in force (GB): the environment's, else ``DEFAULT_MAX_IMAGE_GB``.

    Raises:
        ValueError: the environment variable holds no positive finite number.
    """
    text = os.environ.get(MAX_IMAGE_GB_ENV)
    if not text:
        return DEFAULT_MAX_IMAGE_GB
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"environment variable {MAX_IMAGE_GB_ENV}={text!r}: allowed: a positive number of GB "
            f"(it is set from the config key {LIMIT_KEY})"
        )
    return value


def exception_reason(exc: BaseException) -> str:
    """Why reading failed, never empty: the exception's type and message (a ``MemoryError``
    carries no message; it says so)."""
    message = str(exc).strip()
    if isinstance(exc, MemoryError):
        return f"MemoryError: not enough memory to decode it{': ' + message if message else ''}"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass(frozen=True)
class DeclaredSize:
    """What a header says an image holds, and what reading it takes.

    Attributes:
        shape: the array's shape.
        dtype: the stored data type (text, e.g. ``uint8``).
        bytes_per_voxel: each voxel once read (see the module docstring).
        header_bytes: header and extensions read before the voxels (NIfTI ``vox_offset``).
        scaled: whether the header scales the stored values (``scl_slope`` / ``scl_inter``).
    """

    shape: tuple[int, ...]
    dtype: str
    bytes_per_voxel: int
    header_bytes: int = 0
    scaled: bool = False

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + math.prod(self.shape) * self.bytes_per_voxel

    def describe(self) -> str:
        """``20000 x 20000 voxels of uint8: 1.6 GB once read (4 bytes per voxel)``."""
        scaled = ", intensities scaled by the header" if self.scaled else ""
        extra = f" plus {self.header_bytes} bytes of header" if self.header_bytes > 1024 else ""
        dims = " x ".join(str(n) for n in self.shape)
        return (
            f"{dims} voxels of {self.dtype}{scaled}: {self.total_bytes / 1e9:.3g} GB once read "
            f"({self.bytes_per_voxel} bytes per voxel{extra})"
        )


def check_declared(path: str | os.PathLike, size: DeclaredSize, limit_gb: float | None) -> None:
    """Refuse ``size`` over ``limit_gb`` (None: :func:`max_image_gb`), naming the file."""
    limit = max_image_gb() if limit_gb is None else float(limit_gb)
    if size.total_bytes > limit * 1e9:
        raise ImageTooLarge(
            f"{path}: the header declares {size.describe()}, over the limit of {limit:g} GB "
            f"(config key {LIMIT_KEY}, or --max-image-gb of segrobust predict); refused before "
            "reading its voxels"
        )


def _bytes_per_voxel(itemsize: int, scaled: bool) -> int:
    return max(itemsize, 8 if scaled else _MIN_BYTES_PER_VOXEL)


def nifti_declared_size(path: str | os.PathLike) -> DeclaredSize:
    """The declared size of a NIfTI-1 or NIfTI-2 file (``.nii``, ``.nii.gz``), from its fixed
    header only: neither its extensions nor its voxels are read.

    Raises:
        DataError: naming the file, when the header cannot be read or makes no sense.
    """
    from nibabel.nifti1 import Nifti1Header
    from nibabel.nifti2 import Nifti2Header
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path), "rb") as stream:
            block = stream.read(max(_NIFTI_HEADER_SIZES))
        sizes = (
            {struct.unpack(f"{order}i", block[:4])[0] for order in "<>"}
            if len(block) >= 4
            else set()
        )
        length = next((n for n in _NIFTI_HEADER_SIZES if n in sizes), None)
        if length is None or len(block) < length:
            raise DataError(
                f"{path}: not a readable NIfTI image (no NIfTI header: sizeof_hdr is not 348 "
                f"or 540, or the file ends after {len(block)} bytes)"
            )
        klass = Nifti1Header if length == 348 else Nifti2Header
        header = klass(binaryblock=block[:length], check=False)
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = header.get_data_dtype()
        offset = int(header.get_data_offset())
        slope, inter = header.get_slope_inter()
    except DataError:
        raise
    except Exception as exc:  # nibabel and gzip raise many types for a corrupt header
        raise DataError(f"{path}: not a readable NIfTI image ({exception_reason(exc)})") from exc
    if any(n < 0 for n in shape) or offset < 0:
        raise DataError(
            f"{path}: not a readable NIfTI image (the header declares shape {list(shape)} "
            f"and voxel offset {offset})"
        )
    scaled = slope not in (None, 1.0) or inter not in (None, 0.0)
    return DeclaredSize(
        shape=shape,
        dtype=str(dtype),
        bytes_per_voxel=_bytes_per_voxel(dtype.itemsize, scaled),
        header_bytes=offset,
        scaled=scaled,
    )


def check_nifti(path: str | os.PathLike, limit_gb: float | None = None) -> DeclaredSize:
    """Refuse a NIfTI file whose header declares more than the limit (module docstring);
    returns its declared size.

    Raises:
        ImageTooLarge: naming the file, its declared size and the limit.
        DataError: naming the file, when its header cannot be read.
    """
    size = nifti_declared_size(path)
    check_declared(path, size, limit_gb)
    return size


def load_nifti(path: str | os.PathLike, limit_gb: float | None = None) -> Any:
    """``nibabel.load`` of a NIfTI file whose header passed :func:`check_nifti` (the image
    object; its voxels are read when its data is asked for).

    Raises:
        ImageTooLarge / DataError: as :func:`check_nifti`, and when nibabel cannot open it.
    """
    import nibabel as nib

    check_nifti(path, limit_gb)
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"{path}: not a readable NIfTI image ({exception_reason(exc)})") from exc


def check_photo(path: str | os.PathLike, limit_gb: float | None = None) -> DeclaredSize:
    """Refuse a PNG / BMP (any format imageio reads) whose header declares more than the limit;
    imageio reads the header only (``improps``). Pillow's own decompression-bomb check stays in
    force behind this one.

    Raises:
        ImageTooLarge / DataError: naming the file.
    """
    import imageio.v3 as iio
    import numpy as np

    try:
        props = iio.improps(Path(path))
        shape = tuple(int(n) for n in props.shape)
        dtype = np.dtype(props.dtype)
    except Exception as exc:  # imageio and its plugins raise several types for corrupt files
        raise DataError(f"{path}: not a readable image ({exception_reason(exc)})") from exc
    size = DeclaredSize(shape, str(dtype), _bytes_per_voxel(dtype.itemsize, scaled=False))
    check_declared(path, size, limit_gb)
    return size
