"""Real anatomy that needs no download: a brain template shipped inside a PyPI package, written in
the Medical Segmentation Decathlon layout for ``source: msd_import``.

The perturbation study needs real images with a labelled anatomical structure on a machine that
reaches nothing but the package registries. The best such data found in a package is the MNI
ICBM152 2009a nonlinear symmetric template that nilearn ships in ``nilearn/datasets/data/``
(identical files in nilearn 0.12.1, 0.13.1 and 0.14.1): a skull-stripped T1-weighted volume of
197 x 233 x 189 voxels of 1 mm with the template's grey- and white-matter probability maps
(uint8, 255 = probability 1). The label is one tissue, a voxel being foreground where its
probability is at least ``threshold``: white matter at 0.5 is a real tissue segmentation with
folded, thin boundaries, not the trivial brain mask of a skull-stripped image.

What this dataset is not: many patients. The template is one (average) brain, so its slices are
views of one subject, and neighbouring slices are nearly the same image. The volume is therefore
cut into axial slabs of ``slab`` slices, separated by ``gap`` slices that are left out, and every
slab is written as its own volume: the MSD import splits by volume, so a slab lies wholly in one
split and no test slice has a training slice closer than ``gap + 1`` mm. That keeps near-copies
out of the test set; it does not make the test slices independent of each other (they are slices
of one brain, several per slab). Claims on this dataset are about slices of this template.
Rejected: templateflow and brainweb (download at run time), dipy and nibabel (bundled brain
images without labels), antspyx and pyradiomics (their sample data are downloaded, not shipped).

The package is located with :func:`importlib.util.find_spec`, which does not import it: only its
files are used, so nilearn's own dependencies (scikit-learn, ...) need not import. Every file is
checked against its SHA-256 before use, so another nilearn release that changed the template
would stop the import, naming the file, instead of silently changing the study.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from segrobust import atomic
from segrobust.data.bundles import BUNDLES, VERIFIED_RELEASES, Bundle, BundledFile
from segrobust.data.dataset import DataError

_LOG = logging.getLogger(__name__)


def get_bundle(name: str) -> Bundle:
    """The registered bundle ``name``; an unknown name is refused with the allowed ones."""
    if name not in BUNDLES:
        raise DataError(f"unknown bundled dataset {name!r}; allowed: {', '.join(sorted(BUNDLES))}")
    return BUNDLES[name]


def package_dir(package: str) -> Path:
    """The installed directory of ``package``, found without importing it.

    Raises:
        DataError: the package is not installed (with the install command).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the Python package {package!r} is not installed; its wheel ships the bundled "
            f"dataset's files: pip install {package}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def package_version(package: str) -> str:
    """The installed distribution version of ``package`` ("unknown" when it has no metadata)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_file(root: Path, file: BundledFile, package: str) -> Path:
    """``root / file.relative``, refused when missing or when its SHA-256 differs.

    Raises:
        DataError: naming the file, the package version and both digests.
    """
    path = root / file.relative
    if not path.is_file():
        raise DataError(
            f"{path}: not found in the installed {package} {package_version(package)}; the "
            f"bundled dataset was verified with the files of {VERIFIED_RELEASES}"
        )
    found = sha256_of(path)
    if found != file.sha256:
        raise DataError(
            f"{path}: SHA-256 {found} differs from the verified {file.sha256} (installed "
            f"{package} {package_version(package)}); the template changed, so the study would "
            f"change silently: install a release that ships the verified file "
            f"({VERIFIED_RELEASES})"
        )
    return path


def tissue_label(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Binary label of a uint8 probability map (255 = probability 1): ``p >= threshold``."""
    if probability.dtype != np.uint8:
        raise DataError(f"tissue map: expected uint8 probabilities, got {probability.dtype}")
    if not 0 < threshold <= 1:
        raise DataError(f"threshold: got {threshold!r}; allowed: a probability in (0, 1]")
    return (probability.astype(np.float64) / 255.0 >= threshold).astype(np.uint8)


def slab_starts(n_slices: int, slab: int, gap: int) -> list[int]:
    """First slice of every whole slab of ``slab`` slices, ``gap`` slices apart, from slice 0."""
    if slab < 1 or gap < 0:
        raise DataError(f"slab {slab!r} / gap {gap!r}: allowed slab >= 1, gap >= 0")
    return list(range(0, n_slices - slab + 1, slab + gap))


def labelled_slabs(label: np.ndarray, slab: int, gap: int, min_fraction: float) -> list[int]:
    """Starts of the slabs (along the last axis) with a slice whose foreground fraction is above
    ``min_fraction``: a slab without one would take a split's place and give it no image."""
    fraction = label.reshape(-1, label.shape[-1]).mean(axis=0)
    return [
        z
        for z in slab_starts(label.shape[-1], slab, gap)
        if (fraction[z : z + slab] > min_fraction).any()
    ]


def slab_affine(affine: np.ndarray, start: int) -> np.ndarray:
    """The affine of the sub-volume starting at slice ``start`` of the last axis."""
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, float(start)]) + affine[:3, 3]
    return shifted


def load_canonical(path: Path) -> nib.Nifti1Image:
    """A NIfTI volume reoriented to RAS, so that the last axis is axial (as the MSD import)."""
    return nib.as_closest_canonical(nib.load(str(path)))


def write_bundle(
    name: str,
    bundle: Bundle,
    data_root: Path,
    out_dir: str | Path,
    version: str,
    log: logging.Logger = _LOG,
) -> dict[str, Any]:
    """Write ``bundle`` (files under ``data_root``) as an MSD-layout directory, atomically.

    ``out_dir`` gets ``imagesTr/<name>_zNNN.nii.gz`` (NNN = the slab's first template slice),
    ``labelsTr/`` with the same names and ``dataset.json`` (labels 0 background, 1 the tissue,
    the training list, and the provenance: package, version, digests, threshold, slab, gap).

    Returns:
        dataset.json's content.
    """
    image_img = load_canonical(verified_file(data_root, bundle.image, bundle.package))
    tissue_img = load_canonical(verified_file(data_root, bundle.tissue, bundle.package))
    if image_img.shape != tissue_img.shape or not np.allclose(image_img.affine, tissue_img.affine):
        raise DataError(
            f"{bundle.tissue.relative}: shape {tissue_img.shape} / affine differ from the image "
            f"{bundle.image.relative} {image_img.shape}"
        )
    image = np.asarray(image_img.dataobj)
    label = tissue_label(np.asarray(tissue_img.dataobj), bundle.threshold)
    starts = labelled_slabs(label, bundle.slab, bundle.gap, bundle.min_fraction)
    if not starts:
        raise DataError(f"{bundle.tissue.relative}: no slab holds the tissue above the threshold")
    training = []
    with atomic.atomic_dir(out_dir) as tmp:
        for sub in ("imagesTr", "labelsTr"):
            (tmp / sub).mkdir()
        for start in starts:
            file = f"{name}_z{start:03d}.nii.gz"
            affine = slab_affine(image_img.affine, start)
            window = slice(start, start + bundle.slab)
            for sub, volume in (("imagesTr", image), ("labelsTr", label)):
                nib.save(nib.Nifti1Image(volume[..., window], affine), str(tmp / sub / file))
            training.append({"image": f"./imagesTr/{file}", "label": f"./labelsTr/{file}"})
        meta = dataset_json(name, bundle, version, training)
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info(
        "wrote %d slabs of %d slices (gap %d) of %s %s to %s",
        len(starts), bundle.slab, bundle.gap, bundle.package, version, out_dir,
    )  # fmt: skip
    return meta


def dataset_json(
    name: str, bundle: Bundle, version: str, training: list[Mapping[str, str]]
) -> dict[str, Any]:
    """The MSD ``dataset.json`` of a written bundle, with its provenance."""
    return {
        "name": name,
        "description": (
            f"{bundle.tissue_name} (probability >= {bundle.threshold:g}) of {bundle.reference}; "
            f"axial slabs of {bundle.slab} slices, {bundle.gap} left out between slabs"
        ),
        "reference": bundle.reference,
        "licence": bundle.licence,
        "modality": {"0": bundle.modality},
        "labels": {"0": "background", "1": bundle.tissue_name},
        "numTraining": len(training),
        "training": list(training),
        "provenance": {"package_version": version, **bundle.spec()},
    }


def write_bundled_dataset(name: str, out_dir: str | Path, log: logging.Logger = _LOG) -> dict:
    """The registered bundle ``name`` from its installed package into ``out_dir``."""
    bundle = get_bundle(name)
    root = package_dir(bundle.package)
    return write_bundle(name, bundle, root, out_dir, package_version(bundle.package), log)
