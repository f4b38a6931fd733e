"""The pipeline's shared vocabulary: the one home of every name the layers must agree on.

Rules, evaluation, aggregation, analysis and the report all import their names from here: the
studies, the splits, the run keys that identify a model run and the columns (with their types)
of every table a job writes, the metric names, the papers' perturbation levels, the figure and
analysis output names, and how wildcard values are spelled in paths. The architectures have
their records in ``segrobust.spec.architectures``. Defaults of configurable values are not here:
each is stated once, in the config schema.

Nothing here imports torch or MONAI: the Snakefile imports this module at parse time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# --- what the pipeline runs ------------------------------------------------------------------

#: The studies, in pipeline order.
STUDIES: tuple[str, ...] = ("texture", "perturbation", "context")

#: Dataset splits (contract 1). Calibration images are never trained on nor used for selection.
SPLITS: tuple[str, ...] = ("training", "validation", "calibration", "test")

#: Quantiles of the training patches' foreground ratio that bound the context study's training
#: range (``analysis.context``), which the parse-time pre-flight reproduces where it can.
FBR_RANGE_QUANTILES: tuple[float, float] = (0.05, 0.95)

#: The papers' named perturbation levels, hardest first.
LEVEL_ORDER: tuple[str, ...] = ("Hardest", "Harder", "Unperturbed", "Easier", "Easiest")
CLEAN_LEVEL = "Unperturbed"

#: Condition metadata of an unperturbed test set.
CLEAN: Mapping[str, Any] = {"perturbation": "none", "severity": 0}

# --- tables (contracts 3 and 4) --------------------------------------------------------------

#: Columns identifying a model run; every per-run table carries them.
RUN_KEYS: tuple[str, ...] = ("study", "dataset", "arch", "seed", "patch")

#: Metadata columns of a test condition (contract 2); empty where they do not apply.
CONDITION_COLUMNS: tuple[str, ...] = (
    "test_dataset", "perturbation", "severity", "level", "direction", "train_alpha", "test_alpha",
)  # fmt: skip

#: Per-image metrics at threshold 0.5, in report order.
METRICS: tuple[str, ...] = ("dice", "hd", "hd95", "nsd", "assd", "volume_diff")

#: ``per_image.csv``: one row per (model run, test condition, image).
PER_IMAGE_COLUMNS: tuple[str, ...] = (
    "study", "dataset", "condition", "test_dataset", "split", "perturbation", "severity", "level",
    "direction", "train_alpha", "test_alpha", "arch", "seed", "patch", "image_id", "group",
    *METRICS, "fg_ratio", "complexity", "noise_sigma", "noise_brightness_ratio", "quality",
)  # fmt: skip

#: ``fnr.csv``: the false-negative rate of each image at each threshold (long form).
FNR_COLUMNS: tuple[str, ...] = (
    *RUN_KEYS, "condition", "split", "image_id", "threshold", "fnr",
)  # fmt: skip

#: ``applicability.csv``: one row per (model run, evaluated image) with its shift kind, its role
#: (``calibration``, ``tuning``: chooses the applicability check's level, ``report``: what the
#: per-shift coverage reports), the bound's ingredients and the image's applicability p-value
#: (``segrobust.evaluation.applicability_recorder``). Shift-only images (the second texture
#: generator) are here and not in ``per_image.csv``.
APPLICABILITY_COLUMNS: tuple[str, ...] = (
    *RUN_KEYS, "condition", "kind", "in_domain", "test_dataset", "split", "role", "image_id",
    "group", "dice", "quality", "fg_ratio", "mask_complexity", "predicted_fg_ratio",
    "noise_sigma", "p_value",
)  # fmt: skip

#: ``train_log.csv``: one row per epoch.
TRAIN_LOG_COLUMNS: tuple[str, ...] = (
    *RUN_KEYS, "epoch", "loss", "val_dice", "seconds", "fg_ratio_mean", "fg_ratio_min",
    "fg_ratio_max", "lr", "device", "amp",
)  # fmt: skip

#: ``patches.csv``: every sampled training patch (or whole image) and its foreground ratio.
PATCH_COLUMNS: tuple[str, ...] = (*RUN_KEYS, "epoch", "batch", "index", "fg_ratio")

#: Identifier columns, read as text so that e.g. patch ``full`` and ``32``, or an image id
#: ``001``, keep one type and their spelling in every table.
TEXT_COLUMNS: tuple[str, ...] = (
    "study", "dataset", "condition", "test_dataset", "split", "perturbation", "level",
    "direction", "arch", "patch", "image_id", "device", "amp", "kind", "role",
)  # fmt: skip


def read_table(path: str | os.PathLike) -> Any:
    """Read a pipeline CSV with its identifier columns as text (``TEXT_COLUMNS``).

    The one CSV reader of the pipeline: read without these types, a patch column holding only
    numbers comes back as floats (``"64.0"``) and an image id ``001`` as the number 1.

    Raises:
        FileNotFoundError: naming ``path``.
    """
    import pandas as pd  # parse-time callers of this module do not pay for pandas

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"table not found: {path}")
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={c: "str" for c in TEXT_COLUMNS if c in header})


def in_domain(rows: Any) -> Any:
    """Boolean mask of the rows tested on the model's own (clean) test distribution.

    By condition name, so that it works on every per-run table (``per_image.csv`` and
    ``fnr.csv``): the unperturbed test set of the perturbation and context studies is the
    condition ``clean``; in the texture grid a test set is named after its dataset, and the
    in-domain one is the training dataset itself (test alpha = training alpha).
    """
    return (rows["condition"] == "clean") | (rows["condition"] == rows["dataset"])


# --- figures and analysis outputs ------------------------------------------------------------

#: Report figures per study (``results/report/figures/<name>.png``, caption
#: ``workflow/report/<name>.rst``, drawn by ``segrobust.report.figures``).
FIGURES: Mapping[str, tuple[str, ...]] = {
    "texture": ("texture_in_domain", "texture_heatmap", "texture_complexity"),
    "perturbation": ("perturbation_dice", "perturbation_hd95", "perturbation_complexity_levels"),
    "context": ("context_patch_size", "context_test_fbr", "context_training_fbr"),
}

#: Report figures drawn from the analysis tables, across studies.
ANALYSIS_FIGURES: tuple[str, ...] = ("cd_diagram", "coverage")

#: Tables of the analysis stage (``results/analysis/<name>.csv``).
ANALYSIS_TABLES: tuple[str, ...] = (
    "recipe", "recipe_comparisons", "recipe_rankings", "regime_ranges", "conformal_summary",
    "findings", "robustness", "corruption_errors", "texture_trends", "pairwise_wilcoxon",
    "friedman", "rankings", "bootstrap_ci", "conformal_fnr", "coverage", "per_image_with_bounds",
    "context_fbr_range", "context_out_of_range", "context_fbr_bins", "shift_coverage",
    "flag_levels",
)  # fmt: skip

#: Text outputs of the analysis stage (``results/analysis/<name>``).
ANALYSIS_TEXTS: tuple[str, ...] = ("recipe.md", "notes.md")

#: The tables each report figure is drawn from: a study's own tables (``per_image``,
#: ``patches``) or analysis tables. The plotting function takes them as keyword arguments of the
#: same names.
FIGURE_TABLES: Mapping[str, tuple[str, ...]] = {
    "texture_in_domain": ("per_image",),
    "texture_heatmap": ("per_image",),
    "texture_complexity": ("per_image",),
    "perturbation_dice": ("per_image",),
    "perturbation_hd95": ("per_image",),
    "perturbation_complexity_levels": ("per_image",),
    "context_patch_size": ("per_image",),
    "context_test_fbr": ("context_fbr_range", "context_fbr_bins"),
    "context_training_fbr": ("patches", "context_fbr_range"),
    "cd_diagram": ("friedman",),
    "coverage": ("coverage",),
}


def figure_table_paths(figure: str) -> dict[str, str]:
    """Table name -> CSV path of every table ``figure`` is drawn from."""
    study = None if figure in ANALYSIS_FIGURES else study_of_figure(figure)
    return {
        table: f"results/analysis/{table}.csv"
        if table in ANALYSIS_TABLES
        else f"results/{study}/{table}.csv"
        for table in FIGURE_TABLES[figure]
    }


def study_of_figure(figure: str) -> str:
    """The study whose tables a report figure draws."""
    for study, names in FIGURES.items():
        if figure in names:
            return study
    allowed = ", ".join(n for names in FIGURES.values() for n in names)
    raise ValueError(f"unknown figure {figure!r}; allowed: {allowed}")


# --- names and paths -------------------------------------------------------------------------

DATASETS_DIR = "resources/datasets"


def format_alpha(alpha: float) -> str:
    """Alpha as it appears in dataset names and paths: shortest general form (0.1, 0.85)."""
    return f"{float(alpha):g}"


def texture_dataset_name(direction: str, alpha: float) -> str:
    """Name of the texture-study dataset for one blend direction and alpha."""
    return f"texture-{direction}-{format_alpha(alpha)}"


def condition_name(perturbation: str, severity: int) -> str:
    """Name of a perturbed test condition; severity 0 means the clean test split."""
    return "clean" if severity == 0 else f"{perturbation}-s{severity}"


def dataset_dir(name: str) -> str:
    """Where dataset ``name`` lives (contract 1)."""
    return f"{DATASETS_DIR}/{name}"


@dataclass(frozen=True)
class Run:
    """One model run: (study, training dataset, architecture, patch, seed), and its paths."""

    study: str
    dataset: str
    arch: str
    patch: str  # "full" (whole 2D images) or the cubic patch edge as a string
    seed: int

    @property
    def path(self) -> str:
        """The run's path below ``results/<study>/<stage>/``."""
        return f"{self.dataset}/{self.arch}/p{self.patch}/seed{self.seed}"

    @property
    def model_dir(self) -> str:
        return f"results/{self.study}/models/{self.path}"

    @property
    def metrics_dir(self) -> str:
        return f"results/{self.study}/metrics/{self.path}"

    @property
    def columns(self) -> dict[str, Any]:
        """The run columns (``RUN_KEYS``) every per-run table carries."""
        return {
            "study": self.study,
            "dataset": self.dataset,
            "arch": self.arch,
            "seed": int(self.seed),
            "patch": str(self.patch),
        }
