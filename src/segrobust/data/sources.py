"""Registry of the real dataset sources: where each archive lives and how it is prepared.

Each :class:`Source` records what the download rule needs (URL, file name, checksum, size), what
a user must know (licence and citation), and the largest dataset it can give before it is
prepared (:class:`SourceBounds`, the cluster resources of a dry run: ``segrobust.spec.resources``).
The preparation function is named as ``"module:function"`` and imported only when called: this
module is imported when Snakemake parses the workflow, and the preparation code pulls in
SimpleITK and scikit-image (about a second of import time per job and per parse otherwise). The
preparation records how it normalised intensities in the dataset's ``provenance.json``
(``intensity``), which calibration and ``predict`` read from there.

Adding a source: one record below, a preparation function writing through
``segrobust.data.dataset.DatasetWriter`` (with ``intensity`` in its provenance), the name in the
config schema's ``definitions.source`` enum, and an archive in the real layout in
``tests/archives.py`` (docs/ARCHITECTURE.md, "Extension points").

Checksums: the MSD values are the md5 sums MONAI's ``DecathlonDataset`` verifies
(``monai/apps/datasets.py``). For BUSI the sha256 is the one recorded by the torch-em library
(``torch_em/data/datasets/medical/busi.py``); the dataset's authors publish none. For GlaS no
checksum is published anywhere authoritative, so it is ``None``: the download is then accepted
only once it reads in full as an archive (``segrobust.data.download``), and its sha256 is logged
and written to the provenance; set ``checksum`` in the dataset's config entry to pin it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from segrobust.registry import Registry, import_target

#: Checksum algorithms accepted in source entries and config overrides (hashlib names).
CHECKSUM_ALGORITHMS = ("md5", "sha256")


@dataclass(frozen=True)
class SourceBounds:
    """The largest dataset a source can give, known before its archive is unpacked.

    Attributes:
        cases: labelled cases, or per class where the config chooses classes (BUSI).
        raw_voxels: voxels of the largest raw scan or image.
        extent_mm: physical extent (x, y, z) of the largest scan (3D variants are resampled to
            the entry's spacing); None for 2D images.
        slices: most slices per scan (a 2D variant counts every slice; those without foreground
            are dropped later).
    """

    cases: int | Mapping[str, int]
    raw_voxels: int
    extent_mm: tuple[float, float, float] | None = None
    slices: int = 1


@dataclass(frozen=True)
class Source:
    """One dataset source.

    Attributes:
        name: registry name used in the config (``source: msd_spleen``).
        urls: download locations, first preferred (empty for a user-provided import).
        filename: the archive's file name under ``resources/downloads/<name>/``.
        checksum: expected hex digest of the archive, or ``None`` where none is published.
        algorithm: ``md5`` or ``sha256``.
        expected_size: exact size in bytes where known, else ``None`` (checked only if given).
        size_hint: human-readable approximate size, for messages.
        archive_format: ``tar``, ``tar.gz``, ``zip`` or ``directory`` (user import).
        licence: licence and citation note, copied into the provenance.
        prepare: ``"module:function"`` of the preparation function.
        variants: which of ``2d`` / ``3d`` the preparation supports (a source with ``3d``
            holds volumes, whose ``2d`` variant is their slices).
        defaults: preparation parameters used when the config leaves them out.
        bounds: the largest dataset it gives; None for a user's directory, whose own files
            are read instead (``segrobust.spec.resources``).
    """

    name: str
    urls: tuple[str, ...]
    filename: str | None
    checksum: str | None
    algorithm: str
    expected_size: int | None
    size_hint: str
    archive_format: str
    licence: str
    prepare: str
    variants: tuple[str, ...] = ("2d",)
    defaults: dict[str, Any] = field(default_factory=dict)
    bounds: SourceBounds | None = None

    @property
    def downloadable(self) -> bool:
        """Whether the pipeline downloads this source (else the user points at a directory)."""
        return bool(self.urls)

    @property
    def prepare_module(self) -> str:
        """The dotted module of ``prepare``."""
        return self.prepare.partition(":")[0]

    @property
    def holds_volumes(self) -> bool:
        """Whether its cases are 3D scans (its ``2d`` variant cuts them into slices)."""
        return "3d" in self.variants

    def preparer(self) -> Callable[..., Any]:
        """Import and return the preparation function (see the module docstring for why lazily)."""
        return import_target(self.prepare)


SOURCES: Registry[Source] = Registry("dataset source")

_MSD_LICENCE = (
    "Medical Segmentation Decathlon, CC-BY-SA 4.0. Cite: Antonelli M. et al., The Medical "
    "Segmentation Decathlon, Nature Communications 13, 4128 (2022); Simpson A.L. et al., "
    "arXiv:1902.09063 (2019). http://medicaldecathlon.com/"
)


def _register(source: Source) -> Source:
    return SOURCES.register(source.name)(source)


# One _register() per record: the records are data and alike in shape on purpose
# (`duplicates` pairs them); a table of tuples would lose the field names.
_register(
    Source(
        name="msd_spleen",
        urls=("https://msd-for-monai.s3-us-west-2.amazonaws.com/Task09_Spleen.tar",),
        filename="Task09_Spleen.tar",
        checksum="410d4a301da4e5b2f6f86ec3ddba524e",
        algorithm="md5",
        expected_size=None,
        size_hint="about 1.5 GB",
        archive_format="tar",
        licence=_MSD_LICENCE,
        prepare="segrobust.data.msd:prepare_msd_task",
        variants=("2d", "3d"),
        defaults={"normalize": "window"},
        # the challenge's labelled training cases; 512 x 512 CT with up to 168 slices, assumed
        # at most 500 mm along every axis
        bounds=SourceBounds(
            cases=41, raw_voxels=512 * 512 * 168, extent_mm=(500, 500, 500), slices=168
        ),
    )
)

_register(
    Source(
        name="msd_heart",
        urls=("https://msd-for-monai.s3-us-west-2.amazonaws.com/Task02_Heart.tar",),
        filename="Task02_Heart.tar",
        checksum="06ee59366e1e5124267b774dbd654057",
        algorithm="md5",
        expected_size=None,
        size_hint="about 435 MB",
        archive_format="tar",
        licence=_MSD_LICENCE,
        prepare="segrobust.data.msd:prepare_msd_task",
        variants=("2d", "3d"),
        defaults={"normalize": "percentile"},
        # MRI 320 x 320 x up to 130 at 1.25 x 1.25 x 1.37 mm
        bounds=SourceBounds(
            cases=20, raw_voxels=320 * 320 * 130, extent_mm=(400, 400, 180), slices=130
        ),
    )
)

_register(
    Source(
        name="busi",
        # The authors' page (https://scholar.cu.edu.eg/?q=afahmy/pages/dataset) links this zip;
        # the server's TLS certificate has been reported invalid, in which case the download
        # fails and the error says where to place a copy by hand (or set a mirror with `url`).
        urls=("https://scholar.cu.edu.eg/Dataset_BUSI.zip",),
        filename="Dataset_BUSI.zip",
        # Recorded by torch-em, not published by the dataset's authors.
        checksum="b2ce09f6063a31a73f628b6a6ee1245187cbaec225e93e563735691d68654de7",
        algorithm="sha256",
        expected_size=None,
        size_hint="about 200 MB",
        archive_format="zip",
        licence=(
            "Breast Ultrasound Images (BUSI), CC0 1.0. Cite: Al-Dhabyani W., Gomaa M., Khaled H., "
            "Fahmy A., Dataset of breast ultrasound images, Data in Brief 28, 104863 (2020), "
            "doi:10.1016/j.dib.2019.104863"
        ),
        prepare="segrobust.data.prepare:prepare_busi",
        defaults={"classes": ["benign", "malignant"]},
        # images up to about 600 x 600
        bounds=SourceBounds(
            cases={"benign": 437, "malignant": 210, "normal": 133}, raw_voxels=600 * 600
        ),
    )
)

_register(
    Source(
        name="glas",
        # The contest's download page; it has moved behind a university sign-in at times. A copy
        # of the same zip from a mirror can be configured with `url` (and pinned with `checksum`).
        urls=(
            "https://warwick.ac.uk/fac/sci/dcs/research/tia/glascontest/download/"
            "warwick_qu_dataset_released_2016_07_08.zip",
        ),
        filename="warwick_qu_dataset_released_2016_07_08.zip",
        # No checksum is published by the organisers; never guess one. Set `checksum` in the
        # config to pin the copy you trust.
        checksum=None,
        algorithm="sha256",
        expected_size=None,
        size_hint="about 170 MB",
        archive_format="zip",
        licence=(
            "Warwick-QU GlaS (MICCAI 2015 Gland Segmentation Challenge), for research use. Cite: "
            "Sirinukunwattana K. et al., Gland segmentation in colon histology images: The GlaS "
            "challenge contest, Medical Image Analysis 35, 489-502 (2017)"
        ),
        prepare="segrobust.data.prepare:prepare_glas",
        bounds=SourceBounds(cases=165, raw_voxels=775 * 522),
    )
)

_register(
    Source(
        name="msd_import",
        urls=(),
        filename=None,
        checksum=None,
        algorithm="sha256",
        expected_size=None,
        size_hint="",
        archive_format="directory",
        licence="user-provided data in the Medical Segmentation Decathlon layout",
        prepare="segrobust.data.msd:import_msd",
        variants=("2d", "3d"),
    )
)


def get_source(name: str) -> Source:
    """The source called ``name`` (an error lists the allowed names)."""
    return SOURCES.get(name)


def downloadable_sources() -> list[str]:
    """Names of the sources the pipeline downloads."""
    return [n for n in SOURCES.names() if SOURCES.get(n).downloadable]


#: Dataset-entry keys that override a source's download settings, and the setting each sets.
DOWNLOAD_OVERRIDES = {"url": "url", "checksum": "checksum", "checksum_algorithm": "algorithm"}

#: Dataset-entry keys raising the caps on what a source's archive may unpack to (members,
#: bytes, compression ratio): see segrobust.data.extract.ExtractLimits for the defaults.
EXTRACT_LIMIT_KEYS = ("extract_max_gb", "extract_max_members", "extract_max_ratio")


def download_settings(source_name: str, datasets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """URL, checksum, algorithm and size for downloading a source.

    The registry entry's values, overridden by ``url`` / ``checksum`` / ``checksum_algorithm`` of
    the ``datasets`` entries using this source. Those datasets share one download, so their
    overrides must agree; a conflict is an error naming both entries. A mirror's copy (``url``
    set) is checked by checksum only, since its size is not recorded.

    ``extract_limits`` is present only where such an entry raises an archive cap (the largest
    value of each ``EXTRACT_LIMIT_KEYS`` key, and the ``key_prefix`` of the first entry setting
    one): settings that do not change keep the download rule's params, and so its output, as
    they were.
    """
    source = get_source(source_name)
    settings: dict[str, Any] = {
        "url": source.urls[0] if source.urls else None,
        "checksum": source.checksum,
        "algorithm": source.algorithm,
        "expected_size": source.expected_size,
    }
    chosen: dict[str, tuple[str, Any]] = {}
    for name, entry in datasets.items():
        if not isinstance(entry, dict) or entry.get("source") != source_name:
            continue
        for key, setting in DOWNLOAD_OVERRIDES.items():
            if key not in entry:
                continue
            if setting in chosen and chosen[setting][1] != entry[key]:
                other, value = chosen[setting]
                raise ValueError(
                    f"datasets.{name}.{key} = {entry[key]!r} conflicts with "
                    f"datasets.{other}.{key} = {value!r}; datasets of source {source_name} "
                    "share one download"
                )
            chosen[setting] = (name, entry[key])
    settings.update({setting: value for setting, (_, value) in chosen.items()})
    if "url" in chosen:
        settings["expected_size"] = None
    limits = _largest_caps(source_name, datasets)
    if limits:
        settings["extract_limits"] = limits
    return settings


def _largest_caps(source_name: str, datasets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The largest archive cap of each key among the entries of ``source_name`` (empty: none)."""
    caps: dict[str, Any] = {}
    for name, entry in datasets.items():
        if not isinstance(entry, dict) or entry.get("source") != source_name:
            continue
        for key in EXTRACT_LIMIT_KEYS:
            if entry.get(key) is not None:
                caps.setdefault("key_prefix", f"datasets.{name}.")
                caps[key] = max(caps.get(key, entry[key]), entry[key])
    return caps
