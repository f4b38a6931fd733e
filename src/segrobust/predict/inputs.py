"""A new image: read and checked, brought to the model's input, and the prediction brought back.

The preprocessing repeats what the training dataset's preparation did (recorded in the run's
calibration file, ``segrobust.evaluation.preprocessing.dataset_preprocessing``):

1. intensities normalised as the source was (none for generated data, the CT window, the
   per-image percentiles, or 8-bit photo scaling: ``segrobust.data.prepare``'s functions);
2. the array reoriented to the closest canonical (RAS+) orientation of its affine, as every
   stored dataset is (an exact axis permutation and flips, no interpolation);
3. 2D: resized to the model's training size (``resize_pair``, linear, anti-aliased); 3D:
   resampled to the training spacing (``resample_volume``, SimpleITK linear).

Normalising before reorienting gives the same values as the preparation's order (reorient,
normalise): every normalisation is per voxel or uses whole-image percentiles, which do not
depend on the axis order. For an MSD 2D model the preparation's percentiles were those of the
whole volume; a single 2D slice given here is scaled by its own percentiles.

Back to the input: the probabilities are interpolated **linearly** onto the input's grid, then
thresholded, then the orientation is undone and the array written with the input's own header
(affine, qform / sform). Linear interpolation of probabilities followed by a threshold places the
boundary between model voxels where the probability crosses the threshold, so a mask upsampled to
a finer input grid is smooth at the input's resolution; nearest-neighbour resampling of the mask
(or of the probabilities) would copy the model grid's staircase onto it, and nnU-Net resamples
its softmax outputs, not its segmentations, for the same reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.affines import voxel_sizes
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform
from skimage.transform import resize

from segrobust import atomic
from segrobust.data import image_header
from segrobust.data.dataset import DataError, check_finite, count_nonfinite
from segrobust.data.prepare import (
    MAX_RESAMPLED_EDGE,
    percentile_intensity,
    resample_volume,
    resampled_shape,
    resize_pair,
    to_gray,
    window_intensity,
)

#: File endings read as NIfTI images.
NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")

#: Orientation of an array already in the canonical (RAS+) layout.
_CANONICAL = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


def nifti_name(path: str | os.PathLike) -> str | None:
    """The image name of a NIfTI file (file name without ``.nii`` / ``.nii.gz``), else None."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


@dataclass
class InputImage:
    """One input image, its model-space version and what is needed to go back.

    Attributes:
        path, name: the file and its image name.
        nifti: the loaded NIfTI image (its header and affine are written back).
        orientation: nibabel orientation of the (3D-embedded) array relative to canonical.
        squeezed_axis: for a 2D model, the axis of the 3D-embedded canonical array that the 2D
            image does not span (removed); None for 3D.
        canonical: normalised intensities, canonical orientation, input resolution.
        spacing: voxel sizes (mm) of ``canonical``.
        model_image: ``canonical`` on the model's grid (what the network sees).
        model_spacing: voxel sizes (mm) of ``model_image`` for a 3D model; None for 2D (resized
            to a size, not a spacing).
    """

    path: Path
    name: str
    nifti: Any
    orientation: np.ndarray
    squeezed_axis: int | None
    canonical: np.ndarray
    spacing: tuple[float, ...]
    model_image: np.ndarray
    model_spacing: tuple[float, ...] | None


def load_nifti(path: Path) -> tuple[Any, np.ndarray]:
    """The NIfTI image and its voxels as stored (the dtype a photo scaling needs).

    Raises:
        DataError: naming ``path``: not a NIfTI file by name, declaring more than
            ``max_image_gb`` (checked from the header before reading,
            :mod:`segrobust.data.image_header`), or unreadable (with the reason).
    """
    if nifti_name(path) is None:
        raise DataError(f"{path}: not a NIfTI file; expected a name ending in .nii or .nii.gz")
    image = image_header.load_nifti(path)
    try:
        raw = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        reason = image_header.exception_reason(exc)
        raise DataError(f"{path}: not a readable NIfTI image ({reason})") from exc
    return image, raw


def to_model_dims(raw: np.ndarray, spatial_dims: int, path: Path) -> np.ndarray:
    """``raw`` with trailing length-1 axes dropped down to ``spatial_dims`` axes (a 2D slice
    is often stored as H x W x 1); an error naming ``path`` if it is not then that many-D."""
    array = raw
    while array.ndim > spatial_dims and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != spatial_dims:
        raise DataError(
            f"{path}: a {array.ndim}D image of shape {tuple(raw.shape)}, but the model segments "
            f"{spatial_dims}D images"
        )
    return array


def normalise(raw: np.ndarray, intensity: Mapping[str, Any]) -> np.ndarray:
    """Intensities mapped as the training dataset's preparation mapped them (float32)."""
    method = intensity["method"]
    if method == "none":
        return np.asarray(raw, dtype=np.float32)
    if method == "window":
        return window_intensity(np.asarray(raw, dtype=np.float32), intensity["window"])
    if method == "percentile":
        return percentile_intensity(np.asarray(raw, dtype=np.float32), intensity["percentiles"])
    if method == "gray":
        return to_gray(raw, intensity["mode"])
    raise ValueError(f"unknown intensity normalisation {method!r}")


def check_normalised(intensities: np.ndarray, path: Path) -> None:
    """Refuse intensities that stopped being finite on the way to float32: values beyond
    float32's range (about 3.4e38, e.g. float64 data or a huge ``scl_slope``) become infinite,
    and a percentile or photo scaling of them NaN; the network would then predict an empty mask
    that looks like an ordinary result."""
    bad = count_nonfinite(intensities)
    if bad:
        raise DataError(
            f"{path}: {bad} of {intensities.size} voxels are not finite once normalised as float32 "
            "(intensities beyond float32's range of about 3.4e38, e.g. from float64 data or a "
            "large scl_slope in the header); rescale the image"
        )


def _embedded(array: np.ndarray) -> np.ndarray:
    """A 2D array as 3D with a trailing length-1 axis (the NIfTI affine is always 3D)."""
    return array[..., None] if array.ndim == 2 else array


def canonical_orientation(affine: np.ndarray, path: Path) -> np.ndarray:
    """The orientation taking the array of ``affine`` to the closest canonical (RAS+) one."""
    orientation = io_orientation(np.asarray(affine, dtype=float))
    if np.isnan(orientation).any():
        raise DataError(f"{path}: the affine is degenerate (an axis maps to no direction)")
    return orientation


def to_canonical(array: np.ndarray, orientation: np.ndarray) -> tuple[np.ndarray, int | None]:
    """``array`` (2D or 3D) in canonical orientation, and for 2D the removed singleton axis."""
    canonical = apply_orientation(_embedded(array), orientation)
    if array.ndim == 3:
        return canonical, None
    axis = int(orientation[2, 0])  # where the 2D image's missing third axis went
    return np.take(canonical, 0, axis=axis), axis


def from_canonical(
    canonical: np.ndarray, orientation: np.ndarray, squeezed_axis: int | None
) -> np.ndarray:
    """The inverse of :func:`to_canonical`: back to the file's axis order and directions."""
    embedded = canonical if squeezed_axis is None else np.expand_dims(canonical, squeezed_axis)
    back = apply_orientation(embedded, ornt_transform(_CANONICAL, orientation))
    return back if squeezed_axis is None else back[..., 0]


def canonical_spacing(
    affine: np.ndarray, orientation: np.ndarray, squeezed_axis: int | None
) -> tuple[float, ...]:
    """Voxel sizes (mm) along the axes of the canonical array."""
    sizes = voxel_sizes(np.asarray(affine, dtype=float))[:3]
    spacing = [0.0, 0.0, 0.0]
    for axis, size in enumerate(sizes):
        spacing[int(orientation[axis, 0])] = float(size)
    if squeezed_axis is not None:
        del spacing[squeezed_axis]
    return tuple(spacing)


def to_model_grid(
    canonical: np.ndarray, spacing: Sequence[float], preprocessing: Mapping[str, Any], path: Path
) -> np.ndarray:
    """``canonical`` resized (2D) or resampled (3D) as the dataset's preparation did."""
    if canonical.ndim == 2:
        size = preprocessing["size"]
        return resize_pair(canonical, np.zeros(canonical.shape, np.uint8), size)[0]
    target = preprocessing["spacing"]
    shape = resampled_shape(canonical.shape, spacing, target)
    if max(shape) > MAX_RESAMPLED_EDGE:
        raise DataError(
            f"{path}: {list(canonical.shape)} voxels of {[round(s, 4) for s in spacing]} mm "
            f"resampled to the model's {list(target)} mm would be {shape} voxels, over "
            f"{MAX_RESAMPLED_EDGE} along an axis"
        )
    return resample_volume(canonical, spacing, target, is_label=False).astype(np.float32)


def read_input(
    path: str | os.PathLike, preprocessing: Mapping[str, Any], spatial_dims: int
) -> InputImage:
    """Read ``path`` and bring it to the model's input (see the module docstring).

    Raises:
        DataError: naming the file: not NIfTI, too large or unreadable, the wrong
            dimensionality, NaN or infinite intensities (as stored, scaled by the header, or
            once normalised in float32), a degenerate affine, or too large once resampled.
    """
    path = Path(path)
    nifti, raw = load_nifti(path)
    raw = to_model_dims(raw, spatial_dims, path)
    if raw.dtype.kind in "fc":  # integers are finite; a float64 copy would double the memory
        check_finite(raw, path)
    with np.errstate(over="ignore", invalid="ignore"):  # counted and named just below
        intensities = normalise(raw, preprocessing["intensity"])
    check_normalised(intensities, path)
    orientation = canonical_orientation(nifti.affine, path)
    canonical, squeezed = to_canonical(intensities, orientation)
    canonical = np.ascontiguousarray(canonical, dtype=np.float32)
    spacing = canonical_spacing(nifti.affine, orientation, squeezed)
    return InputImage(
        path=path,
        name=str(nifti_name(path)),
        nifti=nifti,
        orientation=orientation,
        squeezed_axis=squeezed,
        canonical=canonical,
        spacing=spacing,
        model_image=to_model_grid(canonical, spacing, preprocessing, path),
        model_spacing=None if spatial_dims == 2 else tuple(preprocessing["spacing"]),
    )


def _resample_to_grid(
    volume: np.ndarray, spacing: Sequence[float], shape: Sequence[int], new_spacing: Sequence[float]
) -> np.ndarray:
    """A 3D array (x, y, z) of ``spacing`` interpolated linearly onto the grid of ``shape``
    voxels of ``new_spacing`` sharing its origin (the inverse of ``resample_volume``'s grid
    change). Points past the last voxel centre take the nearest voxel's value instead of 0."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.transpose(2, 1, 0)))
    image.SetSpacing([float(s) for s in spacing])
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in shape])
    resampler.SetOutputSpacing([float(s) for s in new_spacing])
    resampler.SetOutputOrigin(image.GetOrigin())
    resampler.SetOutputDirection(image.GetDirection())
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetUseNearestNeighborExtrapolator(True)
    return sitk.GetArrayFromImage(resampler.Execute(image)).transpose(2, 1, 0)


def to_input_grid(prob: np.ndarray, image: InputImage) -> np.ndarray:
    """Model-grid probabilities interpolated linearly onto the canonical input grid."""
    shape = image.canonical.shape
    if prob.ndim == 2:
        back = resize(prob, shape, order=1, anti_aliasing=False, preserve_range=True)
    else:
        back = _resample_to_grid(prob, image.model_spacing, shape, image.spacing)
    return np.clip(back, 0.0, 1.0).astype(np.float32)


def to_file_layout(canonical_array: np.ndarray, image: InputImage) -> np.ndarray:
    """A canonical-grid array in the input file's axis order, directions and shape."""
    back = from_canonical(canonical_array, image.orientation, image.squeezed_axis)
    return back.reshape(image.nifti.shape)


def write_like_input(path: str | os.PathLike, array: np.ndarray, image: InputImage) -> None:
    """Write ``array`` (the input file's layout) as NIfTI with the input's header: same affine,
    qform and sform; the data type is the array's, without intensity scaling. Atomic."""
    header = image.nifti.header.copy()
    header.set_data_dtype(array.dtype)
    out = type(image.nifti)(array, image.nifti.affine, header)
    out.header.set_slope_inter(1.0, 0.0)
    with atomic.atomic_file(path, suffix=".nii.gz") as tmp:
        nib.save(out, tmp)
