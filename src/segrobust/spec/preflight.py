"""Pre-flight: what each study's statistics can reach, known from the config and the dataset
sizes before any job runs.

A study that cannot produce a single claim should not train for twenty minutes to say so (the
issue's bring-your-own dataset of 12 volumes: one test volume, eight calibration slices). For
every enabled study this module works out, per kind of regime of the recipe
(`segrobust.analysis.recipe`):

* the independent test units per regime (`segrobust.analysis.units`: a texture image index, a
  test volume or patient elsewhere) and the training runs per architecture (seeds). An
  architecture claim needs at least two architectures, `MIN_RUNS` runs of each (with one run
  per architecture the statistics cannot tell an architecture from one network's luck: they
  answer "inconclusive") and `MIN_UNITS` test units (one unit has no spread to test against);
* whether the per-image conformal Dice bound is finite at ``analysis.conformal_alpha`` and the
  FNR control can certify a threshold at ``analysis.fnr_level``: each needs a minimum number of
  calibration images (`segrobust.analysis.conformal`);
* for the context study, the test units inside and outside the training patches' foreground-ratio
  range, where that is known before training (whole-volume patches of a generated dataset); for
  smaller patches the range comes from the sampled training patches and is known only after
  training, which the table says.

Sizes come from the config for synthetic datasets, from ``datalist.json`` for a dataset already
prepared with the current settings (its ``provenance.json`` says which), and for an unprepared
``msd_import`` from its ``dataset.json`` and the split the preparation will draw (the same
`segrobust.data.dataset.split_ids`); the 2D slices a volume gives are counted from its label when
the labels to read are small (`LABEL_READ_BUDGET`), else bounded by the NIfTI header's axial
extent. A downloadable source not yet prepared has unknown sizes until it is.

`preflight` returns the table (`Preflight.table`) and the warnings; `check` raises
`PreflightError` when a study can produce no claim at all, naming the keys to change, unless the
config's ``preflight`` is ``warn``. Nothing here imports torch; the sizes of synthetic datasets
cost nothing, so the paper grid's parse stays fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segrobust.contract import FBR_RANGE_QUANTILES, dataset_dir
from segrobust.spec.config import ConfigError, dataset_entry, with_context_min_shape
from segrobust.spec.runs import enabled_studies

MIN_RUNS = 2
"""Training runs per architecture an architecture claim needs (3 recommended)."""
RECOMMENDED_RUNS = 3
MIN_UNITS = 2
"""Independent test units a regime needs for any comparison."""
AFTER_TRAINING = "after training: the range comes from the sampled training patches"
LABEL_READ_BUDGET = 64 * 2**20
"""Label voxels (bytes, from the headers) an unprepared 2D ``msd_import`` may have read at parse
time to count its slices exactly; larger datasets get the header's bound."""


class PreflightError(ConfigError):
    """A study can produce no claim with this config and these datasets; the message names what
    blocks each claim and the keys to change."""


@dataclass(frozen=True)
class Count:
    """A number known exactly (``low == high``), within bounds, or unknown (``high`` None)."""

    low: int
    high: int | None

    @classmethod
    def exact(cls, n: int) -> Count:
        return cls(n, n)

    @classmethod
    def unknown(cls) -> Count:
        return cls(0, None)

    @property
    def known(self) -> bool:
        return self.high is not None

    def at_least(self, n: int) -> bool | None:
        """True when surely >= ``n``, False when surely below it, None when it depends."""
        if self.low >= n:
            return True
        if self.high is not None and self.high < n:
            return False
        return None

    def text(self) -> str:
        if self.high is None:
            return "?" if self.low == 0 else f">= {self.low}"
        if self.low == self.high:
            return str(self.low)
        return f"<= {self.high}" if self.low == 0 else f"{self.low}-{self.high}"


@dataclass(frozen=True)
class DatasetSize:
    """Test units and calibration images of one dataset (one alpha of the texture grid), how
    they are known, and the keys that set them."""

    test_units: Count
    calibration: Count
    source: str
    test_keys: tuple[str, ...]
    calibration_keys: tuple[str, ...]


@dataclass
class Row:
    """One line of the table: a kind of regime of one study and what it can reach."""

    study: str
    regimes: str
    units: Count
    runs: int
    archs: int
    calibration: Count | None = None
    claim: bool | None = None
    why: str = ""
    keys: tuple[str, ...] = ()
    short: str = ""


@dataclass
class StudyReach:
    """Everything one study can reach: its rows and whether each kind of claim is possible."""

    study: str
    rows: list[Row] = field(default_factory=list)
    bound: bool | None = None
    bound_why: str = ""
    bound_keys: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def architecture(self) -> bool | None:
        claims = [row.claim for row in self.rows]
        if any(c is True for c in claims):
            return True
        return None if any(c is None for c in claims) else False

    @property
    def any_claim(self) -> bool | None:
        """True when some claim is possible, False when none can be, None when it depends on
        sizes known only later."""
        if self.architecture is True or self.bound is True:
            return True
        if self.architecture is False and self.bound is False:
            return False
        return None


@dataclass
class Preflight:
    """The pre-flight of a whole config."""

    studies: list[StudyReach]
    needed_bound: int
    needed_fnr: int
    alpha: float
    fnr_level: float

    def blocked(self) -> list[StudyReach]:
        return [s for s in self.studies if s.any_claim is False]

    def table(self) -> str:
        """The compact table printed once per invocation."""
        header = ("study", "regimes", "units/regime", "runs/arch", "archs", "architecture claim",
                  "calibration")  # fmt: skip
        lines = [
            (r.study, r.regimes, r.units.text(), str(r.runs), str(r.archs),
             "possible" if r.claim else f"{'depends' if r.claim is None else 'no'}: {r.short}",
             r.calibration.text() if r.calibration else "")
            for s in self.studies for r in s.rows
        ]  # fmt: skip
        widths = [max(len(x) for x in column) for column in zip(header, *lines, strict=True)]
        out = [
            "segrobust pre-flight: what each study's statistics can reach (from the config and "
            "the dataset sizes, before any job)",
            *("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
              for line in [header, *lines]),
        ]  # fmt: skip
        out.append(
            f"Dice bound at conformal_alpha {self.alpha:g} needs >= {self.needed_bound} "
            f"calibration images; FNR control at fnr_level {self.fnr_level:g} needs >= "
            f"{self.needed_fnr}."
        )
        for study in self.studies:
            out += [f"{study.study}: {note}" for note in study.notes]
        return "\n".join(out)

    def warnings(self) -> list[str]:
        """One line per reason a claim cannot (or may not) be reached, naming where it applies,
        with the figures and the keys to change."""
        reasons: dict[tuple, list[str]] = {}
        for study in self.studies:
            for row in study.rows:
                if row.claim is not True:
                    key = (row.claim is None, row.why, row.keys)
                    reasons.setdefault(key, []).append(f"{study.study} {row.regimes}")
        out = []
        for (maybe, why, keys), where in reasons.items():
            what = (
                "architecture claims depend on counts known later"
                if maybe
                else ("no architecture claim")
            )
            out.append(f"{what} in {'; '.join(where)}: {why} (change: {', '.join(keys)})")
        for study in self.studies:
            if study.bound is not True:
                state = "no" if study.bound is False else "maybe no"
                out.append(
                    f"{study.study}: {state} conformal Dice bound: {study.bound_why} "
                    f"(change: {', '.join(study.bound_keys)})"
                )
        return out


# --- dataset sizes ----------------------------------------------------------------------------


def texture_size(config: Mapping[str, Any]) -> DatasetSize:
    """Every texture-grid dataset has the study's declared counts (one unit per image index)."""
    study = config["studies"]["texture"]
    return DatasetSize(
        Count.exact(study["n_test"]),
        Count.exact(study["n_calibration"]),
        "declared",
        ("studies.texture.n_test",),
        ("studies.texture.n_calibration",),
    )


def _datalist(name: str) -> tuple[dict, dict] | None:
    """(datalist, provenance) of a dataset already on disk, or None."""
    root = Path(dataset_dir(name))
    try:
        datalist = json.loads((root / "datalist.json").read_text())
        provenance = json.loads((root / "provenance.json").read_text())
    except (OSError, ValueError):
        return None
    return datalist, provenance


def _units(entries: Iterable[Mapping[str, Any]]) -> int:
    return len({str(e.get("group", e.get("id"))) for e in entries})


def _prepared_counts(datalist: Mapping[str, Any]) -> tuple[Count, Count]:
    return (
        Count.exact(_units(datalist.get("test", []))),
        Count.exact(len(datalist.get("calibration", []))),
    )


#: Settings of a real dataset's entry that decide which cases land in which split: a prepared
#: dataset's counts hold while these equal what its provenance.json records.
SPLIT_SETTINGS = ("source", "variant", "split", "calibration_fraction", "seed", "max_cases",
                  "label_value", "min_fg_pixels", "min_fg_fraction", "classes")  # fmt: skip


def prepared_with(entry: Mapping[str, Any], provenance: Mapping[str, Any]) -> bool:
    """Whether a dataset on disk was prepared with ``entry``'s split settings: each setting the
    entry gives equals the recorded one (a setting the entry leaves out is the source's default,
    which the record holds)."""
    recorded = {**provenance.get("preparation", {}), "source": provenance.get("source")}
    return all(
        json.loads(json.dumps(entry[key])) == recorded.get(key)
        for key in SPLIT_SETTINGS
        if key in entry
    )


def real_dataset_size(config: Mapping[str, Any], name: str) -> DatasetSize:
    """Sizes of a real dataset: prepared with the current settings, or from an ``msd_import``
    folder, else unknown until prepared. Only an unprepared ``msd_import`` imports the
    preparation code (SimpleITK, scikit-image: about two seconds)."""
    keys = (f"datasets.{name}.split", f"datasets.{name}.calibration_fraction")
    keys = (keys, keys)  # both counts follow from the split of the volumes / patients
    entry = with_context_min_shape(dataset_entry(config, name), config, name)
    on_disk = _datalist(name)
    if on_disk is not None and prepared_with(entry, on_disk[1]):
        return DatasetSize(*_prepared_counts(on_disk[0]), "prepared", *keys)
    if entry["source"] != "msd_import":
        return DatasetSize(
            Count.unknown(), Count.unknown(), f"unknown until {entry['source']} is prepared", *keys
        )
    from segrobust.data.prepare import parse_entry

    try:
        _, opts = parse_entry(name, entry)
    except Exception as exc:  # prepare_dataset names the problem in full
        return DatasetSize(Count.unknown(), Count.unknown(), f"unknown ({exc})", *keys)
    return msd_import_size(name, entry["path"], opts, keys)


def msd_import_size(name: str, path: str, opts: Any, keys: tuple[tuple, tuple]) -> DatasetSize:
    """Sizes of an unprepared ``msd_import`` from its folder: volumes per split as the
    preparation will split them; for the 2D variant the kept slices, counted from the labels
    when they are small, else bounded by the axial extent in the headers."""
    from segrobust.data.dataset import split_ids
    from segrobust.data.msd import keep_slice, load_volume, read_layout

    try:
        layout = read_layout(path)
    except Exception as exc:  # prepare_dataset names the problem in full
        return DatasetSize(Count.unknown(), Count.unknown(), f"unknown ({exc})", *keys)
    cases = layout.cases[: opts.max_cases] if opts.max_cases else layout.cases
    splits = split_ids([c.case_id for c in cases], opts.split, opts.calibration_fraction, opts.seed)
    by_id = {c.case_id: c for c in cases}
    test, calibration = splits["test"], splits["calibration"]
    what = f"{len(cases)} volumes in {path}: {len(test)} test, {len(calibration)} calibration"
    if opts.variant == "3d":
        return DatasetSize(Count.exact(len(test)), Count.exact(len(calibration)), what, *keys)
    import nibabel as nib

    headers = {i: nib.load(str(by_id[i].label)) for i in [*test, *calibration]}
    size = sum(math.prod(h.shape) * h.get_data_dtype().itemsize for h in headers.values())
    if size > LABEL_READ_BUDGET:
        depth = {i: h.shape[int(list(nib.io_orientation(h.affine)[:, 0]).index(2))]
                 for i, h in headers.items()}  # fmt: skip
        return DatasetSize(
            Count(0, len(test)),
            Count(0, sum(depth[i] for i in calibration)),
            f"{what} (slices bounded by the headers; exact once prepared)",
            *keys,
        )
    kept = {}
    for case_id in headers:
        label, _ = load_volume(by_id[case_id].label, channel=None)
        mask = (label.round() == opts.label_value).astype("uint8")
        kept[case_id] = sum(keep_slice(mask[..., k], opts) for k in range(mask.shape[2]))
    return DatasetSize(
        Count.exact(sum(kept[i] > 0 for i in test)),
        Count.exact(sum(kept[i] for i in calibration)),
        f"{what} ({sum(kept[i] for i in calibration)} calibration slices kept)",
        *keys,
    )


def dataset_size(config: Mapping[str, Any], name: str) -> DatasetSize:
    """Test units and calibration images of a named dataset of the config."""
    spec = config["datasets"][name]
    if spec["source"].startswith("synthetic_"):
        return DatasetSize(
            Count.exact(spec["n_test"]),
            Count.exact(spec["n_calibration"]),
            "declared",
            (f"datasets.{name}.n_test",),
            (f"datasets.{name}.n_calibration",),
        )
    return real_dataset_size(config, name)


# --- what the statistics can reach --------------------------------------------------------------


def seeds_key(config: Mapping[str, Any], study: str) -> str:
    return f"studies.{study}.seeds" if config["studies"][study]["seeds"] else "seeds"


def architecture_claim(
    config: Mapping[str, Any],
    study: str,
    units: Count,
    test_keys: tuple[str, ...],
    known: str = "once the data are prepared",
) -> tuple[bool | None, str, tuple[str, ...], str]:
    """Whether an architecture claim is reachable in a regime with ``units`` test units: (yes /
    no / depends, every reason it is not, the keys to change, the reasons in a few words for
    the table); ``known`` says when an uncertain count is known."""
    spec = config["studies"][study]
    archs, runs = len(spec["archs"]), len(spec["seeds"] or config["seeds"])
    blockers: list[tuple[str, tuple[str, ...], str]] = []
    if archs < 2:
        blockers.append(
            ("one architecture: nothing to compare", (f"studies.{study}.archs",), "1 arch")
        )
    if runs < MIN_RUNS:
        blockers.append((
            f"{runs} training run per architecture cannot support an architecture claim (the "
            f"statistics say inconclusive); run >= {MIN_RUNS} seeds ({RECOMMENDED_RUNS} "
            "recommended)",
            (seeds_key(config, study),),
            f"{runs} run/arch",
        ))  # fmt: skip
    reached = units.at_least(MIN_UNITS)
    if reached is False:
        blockers.append((
            f"{units.text()} independent test unit(s), >= {MIN_UNITS} needed",
            test_keys,
            f"{units.text()} test unit(s)",
        ))  # fmt: skip
    if blockers:
        keys = tuple(dict.fromkeys(k for _, ks, _ in blockers for k in ks))
        return (
            False,
            "; ".join(why for why, _, _ in blockers),
            keys,
            ", ".join(short for _, _, short in blockers),
        )
    if reached is None:
        return None, f"{units.text()} test units (known {known})", test_keys, known.split(":")[0]
    return True, "", (), ""


def _bound(reach: StudyReach, sizes: Mapping[str, DatasetSize], needed: int, alpha: float) -> None:
    """Set the study's conformal verdict from its datasets' calibration sizes."""
    verdicts = {name: size.calibration.at_least(needed) for name, size in sizes.items()}
    if any(v is True for v in verdicts.values()):
        reach.bound = True
        return
    reach.bound = None if any(v is None for v in verdicts.values()) else False
    reach.bound_why = "; ".join(
        f"{name}: {size.calibration.text()} calibration images, >= {needed} needed at "
        f"conformal_alpha {alpha:g}"
        for name, size in sizes.items()
    )
    reach.bound_keys = (
        *dict.fromkeys(k for size in sizes.values() for k in size.calibration_keys),
        "analysis.conformal_alpha",
    )


def _row(config, study, regimes, units, size: DatasetSize, calibration=True, known=None) -> Row:
    spec = config["studies"][study]
    claim, why, keys, short = architecture_claim(
        config, study, units, size.test_keys, *([known] if known else [])
    )
    return Row(
        study, regimes, units, len(spec["seeds"] or config["seeds"]), len(spec["archs"]),
        size.calibration if calibration else None, claim, why, keys, short,
    )  # fmt: skip


def texture_reach(config: Mapping[str, Any], needed: int, alpha: float) -> StudyReach:
    study = config["studies"]["texture"]
    size = texture_size(config)
    n = size.test_units.low
    bins = config["analysis"]["complexity_bins"]
    reach = StudyReach("texture")
    # a complexity bin pools the in-domain images of every alpha and direction: it holds at
    # least n / bins distinct image indices (each index appears once per dataset) and at most n
    per_bin = Count(min(n, math.ceil(n / bins)), n)
    reach.rows.append(_row(config, "texture", f"complexity: {bins} bins", per_bin, size))
    n_shift = len(study["directions"]) * len(study["alphas"]) * (len(study["alphas"]) - 1)
    if n_shift:
        label = f"shift: {n_shift} (train alpha != test alpha)"
        reach.rows.append(_row(config, "texture", label, size.test_units, size, False))
    _bound(reach, {"texture grid": size}, needed, alpha)
    return reach


def perturbation_reach(config: Mapping[str, Any], needed: int, alpha: float) -> StudyReach:
    study = config["studies"]["perturbation"]
    reach = StudyReach("perturbation")
    sizes = {}
    for name in study["datasets"]:
        sizes[name] = size = dataset_size(config, name)
        conditions = f"clean + {len(study['perturbations'])} x {len(study['severities'])} perturbed"
        reach.rows.append(_row(config, "perturbation", f"{name}: {conditions}", size.test_units,
                               size))  # fmt: skip
        if size.source != "declared":
            reach.notes.append(f"{name}: {size.source}")
    _bound(reach, sizes, needed, alpha)
    return reach


def whole_volume_sides(
    config: Mapping[str, Any], name: str, patch: int
) -> tuple[Count, Count] | None:
    """(inside, outside) test units of the training foreground-ratio range, where known before
    training: a generated spheres dataset whose patch is the whole volume, so the training
    patches are the training volumes and the range is their 5th-95th percentile
    (`contract.FBR_RANGE_QUANTILES`, as `segrobust.analysis.context` computes it)."""
    import numpy as np

    spec = config["datasets"][name]
    if spec["source"] != "synthetic_spheres" or patch < spec["volume_size"]:
        return None
    on_disk = _datalist(name)
    if on_disk is None:
        return None
    datalist, provenance = on_disk
    parameters = provenance.get("parameters", {})
    compared = ("volume_size", "n_train", "n_validation", "n_test", "n_calibration",
                "train_radii", "test_radii", "radius_sampling", "seed")  # fmt: skip
    if any(parameters.get(k) != spec.get(k) for k in compared):
        return None  # generated with other settings: it will be generated again
    train = [e["fg_ratio"] for e in datalist.get("training", [])]
    test = [e["fg_ratio"] for e in datalist.get("test", [])]
    if not train:
        return None
    low, high = np.quantile(train, FBR_RANGE_QUANTILES)
    inside = sum(low <= f <= high for f in test)
    return Count.exact(inside), Count.exact(len(test) - inside)


def context_reach(config: Mapping[str, Any], needed: int, alpha: float) -> StudyReach:
    study = config["studies"]["context"]
    reach = StudyReach("context")
    sizes = {}
    min_cases = config["analysis"]["min_cases"]
    for name in study["datasets"]:
        sizes[name] = size = dataset_size(config, name)
        total = size.test_units
        for patch in study["patch_sizes"]:
            sides = whole_volume_sides(config, name, patch)
            if sides is None:
                # the range comes from the sampled training patches: each side holds between 0
                # and all of the test units until training has run
                side = Count(0, total.high)
                reach.rows.append(_row(config, "context", f"{name} p{patch}: in / out of range",
                                       side, size, known=AFTER_TRAINING))  # fmt: skip
                reach.notes.append(
                    f"{name}, patch {patch}: test units inside / outside the training "
                    f"foreground-ratio range are known once the training patches exist (after "
                    f"training); {total.text()} in all"
                    + (
                        f", so at least one side has fewer than analysis.min_cases = {min_cases}"
                        if total.known and total.high < 2 * min_cases
                        else ""
                    )  # fmt: skip
                )
                continue
            for where, count in zip(("inside", "outside"), sides, strict=True):
                label = f"{name} p{patch}: {where} range"
                reach.rows.append(_row(config, "context", label, count, size))
        if size.source != "declared":
            reach.notes.append(f"{name}: {size.source}")
    _bound(reach, sizes, needed, alpha)
    return reach


def preflight(config: Mapping[str, Any]) -> Preflight:
    """What every enabled study of a checked config (defaults filled in) can reach."""
    from segrobust.spec.conformal_sizes import (
        min_calibration_for_bound,
        min_calibration_for_fnr,
    )

    alpha, level = config["analysis"]["conformal_alpha"], config["analysis"]["fnr_level"]
    needed = min_calibration_for_bound(alpha)
    builders = {"texture": texture_reach, "perturbation": perturbation_reach,
                "context": context_reach}  # fmt: skip
    studies = [builders[s](config, needed, alpha) for s in enabled_studies(config)]
    return Preflight(studies, needed, min_calibration_for_fnr(level), alpha, level)


def refusal(result: Preflight) -> str:
    """The message that stops a config whose studies cannot produce any claim: per study, what
    blocks each kind of claim, with the figures and the keys to change."""
    lines = ["pre-flight: a study can produce no claim with this config and these datasets:"]
    for study in result.blocked():
        lines.append(f"study {study.study} cannot produce any claim:")
        lines += [
            f"  - no architecture claim for {row.regimes}: {row.why} "
            f"(change: {', '.join(row.keys)})"
            for row in study.rows
        ]
        lines.append(
            f"  - no conformal Dice bound: {study.bound_why} "
            f"(change: {', '.join(study.bound_keys)})"
        )
    lines.append(
        "Change those keys, or set `preflight: warn` to run anyway (e.g. a smoke test of the "
        "rules)."
    )
    return "\n".join(lines)


def check(config: Mapping[str, Any]) -> Preflight:
    """`preflight` of ``config``; raises `PreflightError` (the keys to change) when a study can
    produce no claim and the config's ``preflight`` is ``refuse``."""
    result = preflight(config)
    if result.blocked() and config["preflight"] == "refuse":
        raise PreflightError(refusal(result))
    return result
