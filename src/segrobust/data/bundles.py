"""The registry of real anatomy shipped inside PyPI packages: which files, their digests, and how
each volume is cut into MSD-layout volumes (``data/bundled_anatomy.py`` writes them).

Pure Python on purpose: the workflow imports this at parse time (the ``bundled_anatomy`` rule's
wildcard constraint, the cluster-resource estimate), which must not load numpy or nibabel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


# (A two-field frozen record: `duplicates` finds it alike in shape to spec.resources' Cost and
# SplitSize, with which it shares nothing but the form.)
@dataclass(frozen=True)
class BundledFile:
    """A file inside an installed package, with the SHA-256 it must have."""

    relative: str
    sha256: str


@dataclass(frozen=True)
class Bundle:
    """A labelled volume shipped in a package and how it is cut into MSD-layout volumes.

    Attributes:
        package: the importable package that ships the files.
        image: the intensity volume.
        tissue: the probability map whose thresholded voxels are the label.
        tissue_name: the label's name in dataset.json.
        modality: dataset.json ``modality`` (not CT: the MSD import then scales by percentiles
            unless the dataset entry sets a window).
        threshold: probability at or above which a voxel is foreground.
        slab: slices per written volume (axial slab).
        gap: slices left out between neighbouring slabs.
        min_fraction: a slab is written only when one of its slices has a foreground fraction
            above this (the MSD import keeps slices by the same rule).
        reference, licence: recorded in dataset.json.
    """

    package: str
    image: BundledFile
    tissue: BundledFile
    tissue_name: str
    modality: str
    threshold: float
    slab: int
    gap: int
    min_fraction: float
    reference: str
    licence: str

    def spec(self) -> dict[str, Any]:
        """Plain values (a rule's params: a change to the bundle re-runs its import)."""
        return {
            "package": self.package,
            "image": [self.image.relative, self.image.sha256],
            "tissue": [self.tissue.relative, self.tissue.sha256],
            "tissue_name": self.tissue_name,
            "threshold": self.threshold,
            "slab": self.slab,
            "gap": self.gap,
            "min_fraction": self.min_fraction,
        }


_NILEARN_DATA = "datasets/data"
_MNI_T1 = BundledFile(
    f"{_NILEARN_DATA}/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
)
_MNI_WM = BundledFile(
    f"{_NILEARN_DATA}/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
    "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db",
)
_MNI_GM = BundledFile(
    f"{_NILEARN_DATA}/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed",
)
_MNI_REFERENCE = (
    "MNI ICBM152 2009a nonlinear symmetric template (Fonov et al., NeuroImage 2011), as shipped "
    "by nilearn (nilearn/datasets/data, the '_converted' uint8 files)"
)
#: The template's voxel grid (RAS), fixed by the digests above; the cluster-resource estimate of
#: the ``bundled_anatomy`` rule reads it (``spec/resources.py``).
MNI152_SHAPE = (197, 233, 189)
#: The nilearn releases whose files were checked to have the digests below.
VERIFIED_RELEASES = "nilearn 0.12.1, 0.13.1, 0.14.1"
_MNI_LICENCE = (
    "ICBM 2009a template: copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, "
    "Montreal Neurological Institute, McGill University; use, copy, modify and distribute "
    "permitted with the copyright notice; nilearn: BSD-3-Clause"
)
#: Slabs of 4 slices (4 mm) with 1 slice left out between them: about 100 white-matter slices
#: in 25 volumes, enough volumes for a 40 / 10 / 50 % split by volume, and no test slice within
#: 1 mm of a training slice.
_SLAB, _GAP = 4, 1
#: The papers' code keeps a 2D slice with more than 0.5 % foreground (same rule as the import).
_MIN_FRACTION = 0.005


def _mni152(tissue_map: BundledFile, tissue: str) -> Bundle:
    """A tissue of the MNI152 template as nilearn ships it, cut into slabs."""
    return Bundle(
        "nilearn", _MNI_T1, tissue_map, tissue, "T1w MRI", 0.5, _SLAB, _GAP, _MIN_FRACTION,
        _MNI_REFERENCE, _MNI_LICENCE,
    )  # fmt: skip


#: Bundled datasets by name (the ``bundled_anatomy`` rule writes ``resources/bundled/<name>``).
BUNDLES: dict[str, Bundle] = {
    "mni152_wm": _mni152(_MNI_WM, "white matter"),
    "mni152_gm": _mni152(_MNI_GM, "grey matter"),
}
