"""The independent unit of every statistical comparison, defined in one place.

A claim about architectures is only as strong as the number of *independent* test images behind
it. The per-image table (contract 4) repeats each test image many times: once per seed, once per
perturbed copy, once per training alpha of the texture grid, once per patch size of the context
study. Counting those rows as observations is pseudo-replication: the test would see n rows where
there are far fewer independent images, and a small difference would look significant.

The unit:

* **texture study**: the image index (``image_id``). The texture datasets are generated from the
  same shape and the same texture crops per image index (``tex_0012`` at every alpha and in both
  blend directions shares shape and crops; docs/ARCHITECTURE.md, "Texture datasets differ only in
  the blend"), so ``tex_0012`` at alpha 0.1 and at alpha 0.9 are two views of one image, not two
  images.
* **every other study**: the split group of the test image (``test_dataset``, ``group``). The
  group is the volume or patient an image was cut from (``group`` in the datalist; the image
  itself where none is named): the 2D slices of one MSD volume, or of one slab of the bundled
  template, share anatomy, scanner and noise, so they are one unit, not one unit per slice. The
  splits are drawn by group, so no group is in two splits. The perturbed copies of an image carry
  their source dataset as ``test_dataset`` and the same ``group``, so they map to the one unit of
  their source volume.

``unit_matrix`` turns rows into one value per unit and compared setting (architecture, patch
size, ...): seeds are averaged per test image first, a test image is kept only when every compared
setting has it (complete cases: paired comparisons need both members of every pair), and the
test images of one unit inside the selection (e.g. one image index at several alphas of a
complexity bin, or the slices of one volume) are then averaged into that unit's single value.

``run_unit_matrix`` does the same without averaging the seeds: one value per unit, compared
setting and training run (seed), complete cases over every (setting, seed), so that an
architecture claim can count the training runs as the replicates they are
(``segrobust.analysis.replicates``). A run here is one seed of a setting: where a selection pools
several trained models of one architecture (the in-domain models of every alpha in a complexity
bin, or of two datasets), the seed's models form one replicate, which is independent of the other
seeds' and enters the pooled estimate with the same weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TEXTURE_STUDY = "texture"
#: Columns that identify one evaluated test image of one model setting, seeds aside.
CELL_KEYS = ["study", "dataset", "arch", "patch", "condition", "test_dataset", "group", "image_id"]


def unit_noun(study: str) -> str:
    """What the independent units of ``study`` are, in words (plural), for sentences."""
    return "image indices" if study == TEXTURE_STUDY else "test images (volumes / split groups)"


def independent_unit(rows: pd.DataFrame) -> pd.Series:
    """The independent unit of each row (see the module docstring): text labels, same index.

    Texture-study rows map to their ``image_id``; every other row to ``test_dataset/group``.
    """
    image = rows["image_id"].astype(str)
    group_of_dataset = rows["test_dataset"].astype(str) + "/" + rows["group"].astype(str)
    labels = np.where(rows["study"].astype(str) == TEXTURE_STUDY, image, group_of_dataset)
    return pd.Series(labels, index=rows.index, name="unit", dtype=object)


def unit_matrix(rows: pd.DataFrame, columns: str = "arch", value: str = "dice") -> pd.DataFrame:
    """Mean ``value`` per independent unit (index ``unit``) and value of ``columns``.

    Args:
        rows: per-image rows (contract 4) of one selection, e.g. one recipe regime.
        columns: the compared setting, one column per distinct value (``arch``, ``patch``, ...).
        value: the measured column (``dice`` or a derived per-row quantity).

    Returns:
        Units (rows) x settings (columns, sorted), complete units only: a test image enters only
        where every setting has a value for it, so every column is measured on the same images.
    """
    rows = rows.dropna(subset=[value])
    if rows.empty:
        return pd.DataFrame(dtype=float)
    cell = [key for key in CELL_KEYS if key != columns]
    per_image = rows.groupby([*cell, columns], dropna=False, sort=True)[value].mean()
    wide = per_image.unstack(columns).dropna(axis=0, how="any")
    if wide.empty:
        return pd.DataFrame(columns=sorted(wide.columns), dtype=float)
    keys = wide.index.to_frame(index=False)
    units = independent_unit(keys).to_numpy()
    matrix = wide.groupby(units, sort=True).mean()
    matrix.index.name = "unit"
    matrix.columns.name = columns
    return matrix.sort_index(axis=1)


#: The column that tells the training runs of one setting apart.
REPLICATE = "seed"


def run_unit_matrix(rows: pd.DataFrame, columns: str = "arch", value: str = "dice") -> pd.DataFrame:
    """Mean ``value`` per independent unit (index ``unit``), setting and seed.

    Like ``unit_matrix``, without averaging the seeds: the columns are a MultiIndex
    (``columns`` value, seed), complete cases over every (setting, seed) present, so every run
    is measured on the same test images.
    """
    rows = rows.dropna(subset=[value])
    if rows.empty:
        return pd.DataFrame(dtype=float)
    cell = [key for key in CELL_KEYS if key != columns]
    per_image = rows.groupby([*cell, columns, REPLICATE], dropna=False, sort=True)[value].mean()
    wide = per_image.unstack([columns, REPLICATE]).dropna(axis=1, how="all")
    wide = wide.dropna(axis=0, how="any")
    if wide.empty:
        return pd.DataFrame(columns=wide.columns, dtype=float)
    units = independent_unit(wide.index.to_frame(index=False)).to_numpy()
    matrix = wide.groupby(units, sort=True).mean()
    matrix.index.name = "unit"
    return matrix.sort_index(axis=1)


def runs_by_unit(matrix: pd.DataFrame, setting) -> pd.DataFrame:
    """One setting's runs (rows: seeds) by units (columns) from a ``run_unit_matrix``."""
    return matrix[setting].T
