"""Paired statistics between architectures on the same test images.

Every comparison is paired: within one test condition of one model group
(study, dataset, patch, condition) each architecture is scored on the same test images, so the
unit is the image (test_dataset, image_id) and its Dice is averaged over seeds first. Only images
that every compared architecture has are used (complete cases).

* pairwise Wilcoxon signed-rank tests (scipy.stats.wilcoxon) with Holm's step-down correction
  over the pairs of one condition;
* a Friedman test per study (scipy.stats.friedmanchisquare) with average ranks and the Nemenyi
  critical difference (Demsar, "Statistical comparisons of classifiers over multiple data sets",
  JMLR 7, 2006). Blocks are the study's conditions (dataset x patch x condition, each the mean
  Dice over its images and seeds), not individual images: the perturbed copies of one image are
  not independent blocks, and thousands of near-duplicate image blocks would make any small
  difference "significant". Conditions are the analogue of Demsar's data sets;
* percentile bootstrap 95% CIs (numpy, seeded) of each architecture's mean Dice and of each
  pairwise mean difference, resampling images jointly for all architectures;
* a ranking per condition and its bootstrap stability.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

CONDITION_KEYS = ["study", "dataset", "patch", "condition"]
UNIT_KEYS = ["test_dataset", "image_id"]

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
    "mean_dice",
    "rank",
    "rank_stability",
    "p_first",
    "n_bootstrap",
]


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries stay NaN and are not counted in the family.

    Implemented here (a few lines) because statsmodels, which has it, is not a dependency.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[index]))
        adjusted[index] = running
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
    """Seed-averaged Dice per image (rows) and architecture (columns), complete cases only."""
    wide = rows.pivot_table(index=UNIT_KEYS, columns="arch", values="dice", aggfunc="mean")
    return wide.dropna(axis=0, how="any").sort_index(axis=1)


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
                    statistic=statistic,
                    p_value=p,
                    p_holm=p_adj,
                    significant=bool(p_adj < significance),
                )
            )
    return pd.DataFrame(rows, columns=WILCOXON_COLUMNS)


def condition_blocks(per_image: pd.DataFrame, study: str) -> pd.DataFrame:
    """Mean Dice per condition block (rows) and architecture (columns), complete blocks only."""
    rows = per_image[(per_image["split"] == "test") & (per_image["study"] == study)]
    per_seed = rows.groupby([*CONDITION_KEYS, "arch", "seed"], dropna=False)["dice"].mean()
    means = per_seed.groupby(level=[*CONDITION_KEYS, "arch"], dropna=False).mean()
    return means.unstack("arch").dropna(axis=0, how="any").sort_index(axis=1)


def friedman(per_image: pd.DataFrame, significance: float = 0.05) -> pd.DataFrame:
    """Friedman test, average ranks and Nemenyi CD per study (one row per architecture).

    With fewer than 3 architectures or 2 complete blocks the test is undefined: the statistic
    and p-value are NaN, the average ranks are still reported.
    """
    out = []
    for study in sorted(per_image.loc[per_image["split"] == "test", "study"].unique()):
        blocks = condition_blocks(per_image, study)
        k, n = blocks.shape[1], blocks.shape[0]
        if n == 0:
            continue
        statistic = p_value = np.nan
        if k >= 3 and n >= 2:
            result = stats.friedmanchisquare(*(blocks[c].to_numpy() for c in blocks.columns))
            statistic, p_value = float(result.statistic), float(result.pvalue)
        q = nemenyi_q(k, significance) if k >= 2 else np.nan
        cd = critical_difference(k, n, significance) if k >= 2 else np.nan
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


def rank_descending(means: np.ndarray) -> np.ndarray:
    """Competition ranks along the last axis, 1 = highest mean (ties share the better rank)."""
    return stats.rankdata(-means, axis=-1, method="min").astype(int)


def rankings(per_image: pd.DataFrame, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Rank of each arch per condition and its stability over image bootstrap resamples.

    ``rank_stability``: fraction of resamples in which the arch has the same rank as observed;
    ``p_first``: fraction in which it is ranked first.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for key, matrix in iter_conditions(per_image):
        if matrix.empty:
            continue
        observed = rank_descending(matrix.mean(axis=0).to_numpy())
        boot_ranks = rank_descending(_resampled_means(matrix, n_bootstrap, rng))
        for i, arch in enumerate(matrix.columns):
            rows.append(
                dict(
                    key,
                    arch=arch,
                    n_images=len(matrix),
                    mean_dice=float(matrix[arch].mean()),
                    rank=int(observed[i]),
                    rank_stability=float(np.mean(boot_ranks[:, i] == observed[i])),
                    p_first=float(np.mean(boot_ranks[:, i] == 1)),
                    n_bootstrap=n_bootstrap,
                )
            )
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)
