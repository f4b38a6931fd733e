"""Paired statistics between architectures on the same test images, per condition.

Every comparison is paired and counts independent units (``segrobust.analysis.units``): the
seed-averaged Dice of one test image (in the texture study one image index), never repeated rows.
The per-image tests and intervals here describe the trained networks on these images; the
architecture claims (the recipe, the findings) are ``segrobust.analysis.replicates``' contrasts
across training runs and images.

* pairwise Wilcoxon signed-rank tests (scipy.stats.wilcoxon) per condition, Holm-corrected over
  the pairs of that condition (statsmodels ``multipletests``);
* a Friedman test per study (scipy.stats.friedmanchisquare) with average ranks and the Nemenyi
  critical difference (Demsar, "Statistical comparisons of classifiers over multiple data sets",
  JMLR 7, 2006), on one block per independent test set, and only where the blocks are scored
  by independent training runs (``blocks_share_models``): one network's luck repeats in every
  block that network scores, so such blocks are not independent and the test is "not
  applicable" (``cd_applicable`` is False: the report draws no critical-difference diagram);
* percentile bootstrap 95% CIs (numpy, seeded) of each architecture's mean Dice and of each
  pairwise mean difference, resampling images jointly for all architectures;
* a ranking per condition and its stability under a two-level bootstrap (training runs within
  each architecture, then units; ``replicates.ranking_stability``).
"""

from __future__ import annotations

import gc
import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from segrobust.analysis.replicates import ranking_stability
from segrobust.analysis.units import independent_unit, run_unit_matrix, runs_by_unit, unit_matrix
from segrobust.contract import in_domain

CONDITION_KEYS = ["study", "dataset", "patch", "condition"]

# Demsar (2006), Table 5(a): critical values q_alpha of the two-tailed Nemenyi test, k = 2..10
# (studentized range statistic divided by sqrt(2)).
NEMENYI_Q = {
    0.05: [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164],
    0.10: [1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920],
}

WILCOXON_COLUMNS = [
    *CONDITION_KEYS,
    "arch_a",
    "arch_b",
    "n_images",
    "mean_diff",
    "median_diff",
    "statistic",
    "p_value",
    "p_holm",
    "significant",
]
FRIEDMAN_COLUMNS = [
    "study",
    "arch",
    "average_rank",
    "k",
    "n_blocks",
    "statistic",
    "p_value",
    "q_alpha",
    "critical_difference",
    "significance",
    "status",
    "cd_applicable",
    "friedman_note",
]
BOOTSTRAP_COLUMNS = [
    *CONDITION_KEYS,
    "quantity",
    "arch",
    "other_arch",
    "estimate",
    "ci_low",
    "ci_high",
    "n_images",
    "n_bootstrap",
]
RANKING_COLUMNS = [
    *CONDITION_KEYS,
    "arch",
    "n_images",
    "n_runs",
    "mean_dice",
    "rank",
    "rank_stability",
    "p_first",
    "n_bootstrap",
]


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels); NaN entries stay NaN, outside the family.

    statsmodels' Holm branch calls ``gc.collect()`` on every call, which walks every live
    object: with a large per-image table in memory that costs up to seconds per family, and the
    analysis corrects thousands of small families. The current heap is frozen around the call
    (``gc.freeze``) so that collection only sees the few objects the call itself creates.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = ~np.isnan(p)
    if valid.any():
        gc.freeze()
        try:
            adjusted[valid] = multipletests(p[valid], method="holm")[1]
        finally:
            gc.unfreeze()
    return adjusted


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Two-tailed Nemenyi critical value q_alpha for k classifiers.

    Demsar's table for alpha 0.05 / 0.10 and k <= 10; otherwise the studentized range quantile
    with infinite degrees of freedom over sqrt(2), from which the table was computed.
    """
    if k < 2:
        raise ValueError(f"the Nemenyi test needs k >= 2 architectures, got {k}")
    if alpha in NEMENYI_Q and k <= 10:
        return NEMENYI_Q[alpha][k - 2]
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks: q_alpha * sqrt(k (k + 1) / (6 N))."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n_blocks))


def average_ranks(scores: pd.DataFrame) -> pd.Series:
    """Mean rank of each column over the rows (blocks); rank 1 = highest score, ties averaged."""
    ranks = stats.rankdata(-scores.to_numpy(dtype=float), axis=1)
    return pd.Series(ranks.mean(axis=0), index=scores.columns, name="average_rank")


def image_matrix(rows: pd.DataFrame) -> pd.DataFrame:
    """Seed-averaged Dice per independent unit (rows) and architecture (columns), complete
    cases only (``segrobust.analysis.units.unit_matrix``)."""
    return unit_matrix(rows, "arch", "dice")


def iter_conditions(per_image: pd.DataFrame):
    """Yield (condition key dict, image matrix) for each condition of the test split."""
    test = per_image[per_image["split"] == "test"]
    for key, rows in test.groupby(CONDITION_KEYS, dropna=False, sort=True):
        yield dict(zip(CONDITION_KEYS, key, strict=True)), image_matrix(rows)


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank (statistic, p); p = 1 when every pair is tied."""
    if len(a) == 0:
        return np.nan, np.nan
    if np.all(a == b):
        return 0.0, 1.0
    result = stats.wilcoxon(a, b)
    return float(result.statistic), float(result.pvalue)


def pairwise_wilcoxon(per_image: pd.DataFrame, significance: float = 0.05) -> pd.DataFrame:
    """Every pair of architectures per condition; Holm over the pairs of that condition."""
    rows = []
    for key, matrix in iter_conditions(per_image):
        pairs = list(itertools.combinations(matrix.columns, 2))
        tests = [wilcoxon_p(matrix[a].to_numpy(), matrix[b].to_numpy()) for a, b in pairs]
        adjusted = holm([p for _, p in tests])
        for (a, b), (statistic, p), p_adj in zip(pairs, tests, adjusted, strict=True):
            rows.append(
                dict(
                    key,
                    arch_a=a,
                    arch_b=b,
                    n_images=len(matrix),
                    mean_diff=float((matrix[a] - matrix[b]).mean()),
                    median_diff=float((matrix[a] - matrix[b]).median()),
                    statistic=statistic,
                    p_value=p,
                    p_holm=p_adj,
                    significant=bool(p_adj < significance),
                )
            )
    return pd.DataFrame(rows, columns=WILCOXON_COLUMNS)


BLOCK_KEYS = ["study", "test_dataset", "condition"]
BLOCK_NOTES = {
    "texture": (
        "one block per texture test set (blend direction x alpha), scored only by the models "
        "trained on that test set's alpha (in-domain): the cross-alpha tests of the grid are "
        "not extra blocks. The test sets share image indices (same shapes and texture crops), "
        "so the blocks are related, not fully independent."
    ),
    "perturbation": (
        "one block per (test dataset, test condition): the clean test set and each "
        "perturbation x severity. Perturbed copies of one dataset share its source images, so "
        "its blocks are related, not fully independent."
    ),
    "context": (
        "one block per (test dataset, test condition); the patch sizes share one test set, so "
        "an architecture's block score is its mean over its patch sizes."
    ),
}


def _block_rows(per_image: pd.DataFrame, study: str) -> pd.DataFrame:
    """The test rows that score the blocks of ``study`` (texture: in-domain models only)."""
    rows = per_image[(per_image["split"] == "test") & (per_image["study"] == study)]
    if study == "texture":
        rows = rows[in_domain(rows)]
    return rows


def friedman_blocks(per_image: pd.DataFrame, study: str) -> pd.DataFrame:
    """Block score per independent test set (rows: BLOCK_KEYS) and architecture (columns).

    Demsar (2006) uses data sets as blocks. Here a block is one (study, test dataset, test
    condition); its score for an architecture is the mean over the block's test images of the
    seed-averaged per-image Dice, averaged over patch sizes where several share the test set
    (context study). Blocks of the texture grid use only the models trained at the test set's
    own alpha, so each test set is one block however many models were tested on it. Only
    blocks that every architecture scored are kept.
    """
    rows = _block_rows(per_image, study)
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(unit=independent_unit(rows))
    keys = [*BLOCK_KEYS, "arch", "patch"]
    per_image_dice = rows.groupby([*keys, "unit"], dropna=False)["dice"].mean()
    per_patch = per_image_dice.groupby(level=keys, dropna=False).mean()
    per_arch = per_patch.groupby(level=[*BLOCK_KEYS, "arch"], dropna=False).mean()
    return per_arch.unstack("arch").dropna(axis=0, how="any").sort_index(axis=1)


def blocks_share_models(per_image: pd.DataFrame, study: str) -> bool:
    """Whether two blocks of ``study`` are scored by the same trained models.

    A trained model is identified by its training dataset and patch size (and architecture and
    seed, which every block has alike). The texture grid's in-domain blocks each have their own
    models (trained on that blend and alpha); the perturbation study's clean and perturbed test
    sets of one dataset are all scored by that dataset's models.
    """
    rows = _block_rows(per_image, study)
    if rows.empty:
        return False
    models = rows.groupby(BLOCK_KEYS, dropna=False)[["dataset", "patch"]].apply(
        lambda block: frozenset(map(tuple, block.drop_duplicates().to_numpy().tolist()))
    )
    seen: set = set()
    for owned in models:
        if seen & owned:
            return True
        seen |= owned
    return False


SHARED_BLOCKS = "the blocks share trained models"


def friedman_note(study: str, k: int, n_blocks: int, reason: str = "") -> str:
    """The block definition (and why the test was not computed) for the report's CD diagram."""
    text = f"{study}: Friedman / Nemenyi over N = {n_blocks} blocks, k = {k} architectures; "
    text += BLOCK_NOTES.get(study, "one block per (test dataset, test condition).")
    if reason == SHARED_BLOCKS:
        return (
            f"{text} Friedman not applicable: {reason} (one network's luck repeats in every "
            "block it scores); no critical-difference diagram."
        )
    return f"{text} Not computed: {reason}." if reason else text


def friedman_not_computable(k: int, n_blocks: int) -> str:
    """Why the Friedman test cannot be computed on k architectures and N blocks ('' if it can)."""
    if k < 3:
        return f"needs k >= 3 architectures, got {k}"
    if n_blocks < 2:
        return f"needs N >= 2 independent blocks, got {n_blocks}"
    return ""


def friedman(per_image: pd.DataFrame, significance: float = 0.05) -> pd.DataFrame:
    """Friedman test, average ranks and Nemenyi CD per study (one row per architecture).

    N is the number of blocks (``friedman_blocks``), each scored by the seed- and unit-averaged
    Dice. Where the blocks share trained models (``blocks_share_models``) the test is not
    applicable; with fewer than 3 architectures or 2 blocks it is not computable. Either way
    statistic, p-value and CD are NaN, ``status`` says why and ``cd_applicable`` is False (the
    report draws no CD diagram); the average ranks are still reported. ``friedman_note`` states
    the block definition for the report.
    """
    out = []
    for study in sorted(per_image.loc[per_image["split"] == "test", "study"].unique()):
        blocks = friedman_blocks(per_image, study)
        k, n = blocks.shape[1], blocks.shape[0]
        if n == 0:
            continue
        shared = n >= 2 and blocks_share_models(per_image, study)
        reason = SHARED_BLOCKS if shared else friedman_not_computable(k, n)
        statistic = p_value = q = cd = np.nan
        if not reason:
            result = stats.friedmanchisquare(*(blocks[c].to_numpy() for c in blocks.columns))
            statistic, p_value = float(result.statistic), float(result.pvalue)
            q, cd = nemenyi_q(k, significance), critical_difference(k, n, significance)
        status = "computed"
        if reason:
            status = f"not applicable: {reason}" if shared else f"not computable: {reason}"
        for arch, rank in average_ranks(blocks).items():
            out.append(
                dict(
                    study=study,
                    arch=arch,
                    average_rank=rank,
                    k=k,
                    n_blocks=n,
                    statistic=statistic,
                    p_value=p_value,
                    q_alpha=q,
                    critical_difference=cd,
                    significance=significance,
                    status=status,
                    cd_applicable=not reason,
                    friedman_note=friedman_note(study, k, n, reason),
                )
            )
    return pd.DataFrame(out, columns=FRIEDMAN_COLUMNS)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval along axis 0."""
    tail = 100 * (1 - level) / 2
    return np.percentile(samples, tail, axis=0), np.percentile(samples, 100 - tail, axis=0)


def _resampled_means(matrix: pd.DataFrame, n_bootstrap: int, rng: np.random.Generator):
    """Column means of ``n_bootstrap`` row resamples, shape (n_bootstrap, k).

    A resample is drawn as multinomial counts of the rows (the same law as drawing row indices
    with replacement) so memory stays n_bootstrap x n instead of n_bootstrap x n x k.
    """
    values = matrix.to_numpy(dtype=float)
    n = len(values)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap)
    return counts @ values / n


def bootstrap_ci(per_image: pd.DataFrame, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """95% percentile CIs of mean Dice per arch and of every pairwise mean difference (a - b)."""
    rng = np.random.default_rng(seed)
    rows = []
    for key, matrix in iter_conditions(per_image):
        if matrix.empty:
            continue
        boot = _resampled_means(matrix, n_bootstrap, rng)
        archs = list(matrix.columns)
        means = matrix.mean(axis=0).to_numpy()
        low, high = percentile_ci(boot)
        common = dict(key, n_images=len(matrix), n_bootstrap=n_bootstrap)
        for i, arch in enumerate(archs):
            rows.append(
                dict(
                    common,
                    quantity="mean_dice",
                    arch=arch,
                    other_arch="",
                    estimate=means[i],
                    ci_low=low[i],
                    ci_high=high[i],
                )
            )
        for i, j in itertools.combinations(range(len(archs)), 2):
            d_low, d_high = percentile_ci(boot[:, i] - boot[:, j])
            rows.append(
                dict(
                    common,
                    quantity="mean_difference",
                    arch=archs[i],
                    other_arch=archs[j],
                    estimate=means[i] - means[j],
                    ci_low=float(d_low),
                    ci_high=float(d_high),
                )
            )
    return pd.DataFrame(rows, columns=BOOTSTRAP_COLUMNS)


def rankings(per_image: pd.DataFrame, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Rank of each arch per condition and its stability under a two-level bootstrap.

    Each resample draws every architecture's training runs (seeds) with replacement, then the
    units (``replicates.ranking_stability``). ``rank_stability``: fraction of resamples in which
    the arch has the same rank as observed; ``p_first``: fraction in which it is ranked first.
    Descriptive: how often the order would change, not a test.
    """
    rng = np.random.default_rng(seed)
    rows = []
    test = per_image[per_image["split"] == "test"]
    for key, group in test.groupby(CONDITION_KEYS, dropna=False, sort=True):
        matrix = run_unit_matrix(group, "arch", "dice")
        if matrix.empty:
            continue
        archs = list(matrix.columns.get_level_values(0).unique())
        arms = {arch: runs_by_unit(matrix, arch) for arch in archs}
        ranked = ranking_stability(arms, n_bootstrap, rng)
        for row in ranked.itertuples(index=False):
            rows.append(
                dict(
                    zip(CONDITION_KEYS, key, strict=True),
                    arch=row.arch,
                    n_images=row.n_units,
                    n_runs=row.n_runs,
                    mean_dice=float(row.mean_dice),
                    rank=int(row.rank),
                    rank_stability=float(row.rank_stability),
                    p_first=float(row.p_first),
                    n_bootstrap=n_bootstrap,
                )
            )
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)
