"""Is a new image like the calibration images? A joint check, and where its threshold comes from.

A split-conformal Dice bound (``segrobust.guarantees.kernel``) holds for images exchangeable
with the calibration images. A range check per statistic lets through images whose statistics
are each within the calibrated range but whose combination was never calibrated on (a shape of
another kind at the usual size and texture); this check looks at the features jointly.

**Feature space.** Per image: the label-free statistics ``FEATURE_STATISTICS`` (complexity under
the predicted mask, predicted foreground ratio, noise estimate, the model's own quality
estimate; ``segrobust.evaluation.label_free.label_free_statistics``) and the model's pooled
bottleneck embedding (``segrobust.evaluation.embeddings``). The statistics are standardised to
mean 0 and standard deviation 1; the embedding is reduced to its first ``N_COMPONENTS``
principal components, which keep their relative variances (whitening them would give the
least informative directions as much weight as the strongest), scaled together to unit mean
squared norm. Each block is divided by the square root of its dimension, so the statistics and
the embedding weigh alike whatever the embedding's size (:func:`feature_points`).

**Score and p-value (full conformal).** For a new image, the space is fitted on the calibration
images *and* the new image together; each of these n + 1 images scores its mean Euclidean
distance to its ``N_NEIGHBOURS`` nearest others, and the p-value is the share of the n + 1
scores at least the new image's (Bates, Candes, Lei, Romano, Sesia, "Testing for outliers with
conformal p-values", Ann. Statist. 2023; Vovk, Gammerman, Shafer, "Algorithmic learning in a
random world", 2005, for full conformal prediction). The scores are a symmetric function of the
n + 1 images, so for an image exchangeable with the calibration images the p-value is
super-uniform, P(p <= t) <= t, exactly and at any n. (Fitting the standardisation and the
principal components on the calibration images alone and scoring the new image against them is
*not* valid: the calibration images then sit closer to their own fit than a new image does; a
simulation flagged 9% at a 5% level with 40 calibration images.) The check flags an image when
``p <= level``; on exchangeable data it flags at most a ``level`` share, whatever the features.
Refitting per image costs an eigendecomposition of the (n + 1) x (n + 1) Gram matrix of the
embeddings and the pairwise distances: about a millisecond at n = 100.

**Level (the threshold), chosen on held-out data.** No threshold can be read off exchangeable
data alone: how far is too far depends on how the Dice bound degrades away from the
calibration images. So the level is chosen on labelled held-out images of the shift kinds the
pipeline can make for the run (other blend alphas, each perturbation and severity, the second
texture generator; ``segrobust.spec.shifts``): their *tuning* half (alternate images; the other
half, *report*, is what ``segrobust.analysis.shift_coverage`` reports on). The level is the
smallest one at which, in every shifted kind, the Dice bound covers at least
``1 - alpha - tolerance`` of the tuning images that pass (kinds where none passes are
satisfied), and never below ``1 / (n + 1)``: an image farther from the calibration images than
every one of them is from the others is never rated. The in-domain kind is exempt: its images
are exchangeable with the calibration images, so its coverage is the conformal guarantee, and
its sampling noise must not drive the level. The rule is computed at the level a reader asks
for from the stored tuning p-values, qualities and Dice (:func:`choose_flag_level`), so the
calibration file stores no confidence level. A shift of a kind the tuning set does not contain
is not validated; ``shift_coverage`` reports per kind where the rating held.

Library. ``mapie``, ``crepes``, ``puncc`` and ``torchcp`` calibrate predictions (intervals,
sets, predictive systems), Mondrian categories and weighted conformal prediction; none computes
full-conformal outlier p-values from a reference sample, nor chooses a flag level against
labelled shifted data; the p-value is the one line above, the principal components numpy's
``eigh`` of the Gram matrix and the distances scipy's ``pdist`` (scikit-learn's ``PCA`` and
``NearestNeighbors`` do the same with hundreds of times the overhead per call, which a fit per
image pays).

Torch-free, beside the conformal kernel it extends: evaluation fits the check
(``segrobust.evaluation.applicability_recorder``), the calibration file stores it and gives the
rule at a level (``segrobust.guarantees.calibration_file``), the analysis reports it per shift
kind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist, squareform
from threadpoolctl import threadpool_limits

from segrobust.digits import apart
from segrobust.guarantees.kernel import conformal_quantile, dice_lower_bound

#: Label-free statistics of an image in the feature space, in this order.
FEATURE_STATISTICS: tuple[str, ...] = ("complexity", "predicted_fg_ratio", "noise_sigma", "quality")
#: Principal components of the embedding kept (fewer when there are fewer calibration images).
N_COMPONENTS = 8
#: Neighbours the score averages over (fewer when there are fewer calibration images).
N_NEIGHBOURS = 5
#: How far below the target coverage the passing tuning images of a kind may fall.
COVERAGE_TOLERANCE = 0.05
#: Smallest scale of a standardised feature (a statistic constant on the calibration images).
_MIN_SCALE = 1e-9

#: Columns of a tuning table (:func:`choose_flag_level`).
TUNING_COLUMNS: tuple[str, ...] = ("kind", "in_domain", "p_value", "quality", "dice")


class ApplicabilityError(ValueError):
    """A feature table or stored check that cannot be used; the message says which and why."""


def _matrix(values: Any, width: int | None, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or (width is not None and array.shape[1] != width):
        raise ApplicabilityError(
            f"{what}: expected a 2D array with {width if width is not None else 'some'} "
            f"columns, got shape {array.shape}"
        )
    return array


def stored_floats(values: Any) -> list:
    """Values rounded to ``STORED_DIGITS`` significant digits, as nested lists for JSON."""
    array = np.asarray(values, dtype=np.float64)
    return np.vectorize(lambda v: float(f"{v:.{STORED_DIGITS}g}"), otypes=[float])(array).tolist()


def feature_points(statistics: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """A set of images as points of the feature space (module docstring), fitted on the set.

    The statistics are z-scores; the embedding's principal component scores (from the
    eigenvectors of the centred Gram matrix, which for n + 1 images of a few hundred channels
    is the small side of the problem) keep their relative variances, the block scaled to unit
    mean squared norm. Each block is divided by sqrt(its dimension) as well, so the statistics'
    and the embedding's distances weigh alike.
    """
    n = len(statistics)
    z = (statistics - statistics.mean(axis=0)) / np.maximum(
        statistics.std(axis=0, ddof=1), _MIN_SCALE
    )
    centred = embeddings - embeddings.mean(axis=0)
    eigenvalues, vectors = np.linalg.eigh(centred @ centred.T)
    m = max(1, min(N_COMPONENTS, n - 1, embeddings.shape[1]))
    top = np.argsort(eigenvalues)[::-1][:m]
    variance = np.clip(eigenvalues[top], 0.0, None)
    scores = vectors[:, top] * np.sqrt(variance)  # principal component scores
    total = max(math.sqrt(variance.sum() / max(n - 1, 1)), _MIN_SCALE)
    return np.hstack([z / math.sqrt(z.shape[1]), scores / total / math.sqrt(m)])


def finite_rows(statistics: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Rows whose every statistic and embedding value is finite."""
    return np.isfinite(statistics).all(axis=1) & np.isfinite(embeddings).all(axis=1)


def neighbour_scores(points: np.ndarray, k: int) -> np.ndarray:
    """Each point's mean distance to its ``k`` nearest other points."""
    distances = squareform(pdist(points))
    np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)[:, :k].mean(axis=1)


#: Significant digits the calibration file keeps of each feature (a p-value moves by far less
#: than its 1 / (n + 1) resolution).
STORED_DIGITS = 7


@dataclass(frozen=True)
class ApplicabilityCheck:
    """The calibration images' features; computes full-conformal outlier p-values."""

    statistics: np.ndarray  # (n, len(FEATURE_STATISTICS)), every value finite
    embeddings: np.ndarray  # (n, embedding size)
    n_neighbours: int

    @classmethod
    def fit(cls, statistics: Any, embeddings: Any) -> ApplicabilityCheck:
        """The check of the calibration images' statistics (``FEATURE_STATISTICS`` columns)
        and embeddings; rows with a non-finite feature are left out (an empty or full predicted
        mask has no complexity).

        Raises:
            ApplicabilityError: fewer than two usable calibration images.
        """
        statistics = _matrix(statistics, len(FEATURE_STATISTICS), "calibration statistics")
        embeddings = _matrix(embeddings, None, "calibration embeddings")
        usable = finite_rows(statistics, embeddings)
        if usable.sum() < 2:
            raise ApplicabilityError(
                f"{int(usable.sum())} calibration images with every feature defined; the "
                "applicability check needs at least 2"
            )
        k = min(N_NEIGHBOURS, int(usable.sum()))
        # kept as the calibration file stores them, so evaluation and predict agree exactly
        stored = [np.asarray(stored_floats(a[usable])) for a in (statistics, embeddings)]
        return cls(*stored, k)

    @property
    def n(self) -> int:
        return len(self.statistics)

    def p_value(self, statistics: np.ndarray, embedding: np.ndarray) -> float:
        """The full-conformal outlier p-value of one image (module docstring)."""
        points = feature_points(
            np.vstack([self.statistics, statistics]), np.vstack([self.embeddings, embedding])
        )
        scores = neighbour_scores(points, self.n_neighbours)
        return float(np.mean(scores >= scores[-1]))

    def p_values(self, statistics: Any, embeddings: Any) -> np.ndarray:
        """:meth:`p_value` of each row; NaN where a feature is not finite."""
        statistics = _matrix(statistics, len(FEATURE_STATISTICS), "image statistics")
        embeddings = _matrix(embeddings, self.embeddings.shape[1], "image embeddings")
        usable = finite_rows(statistics, embeddings)
        # one small eigenproblem per image: threaded BLAS only adds its start-up cost
        with threadpool_limits(limits=1):
            return np.array(
                [
                    self.p_value(statistics[i], embeddings[i]) if usable[i] else np.nan
                    for i in range(len(statistics))
                ]
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [*FEATURE_STATISTICS, "embedding"],
            "n_neighbours": int(self.n_neighbours),
            "statistics": stored_floats(self.statistics),
            "embeddings": stored_floats(self.embeddings),
        }

    @classmethod
    def from_dict(cls, block: Mapping[str, Any]) -> ApplicabilityCheck:
        """The check a calibration file stores (``to_dict``)."""
        if list(block.get("features", [])) != [*FEATURE_STATISTICS, "embedding"]:
            raise ApplicabilityError(
                f"stored check uses features {block.get('features')!r}; this segrobust uses "
                f"{[*FEATURE_STATISTICS, 'embedding']!r}: re-run rule evaluate_model"
            )
        return cls(
            statistics=_matrix(block["statistics"], len(FEATURE_STATISTICS), "stored statistics"),
            embeddings=_matrix(block["embeddings"], None, "stored embeddings"),
            n_neighbours=int(block["n_neighbours"]),
        )


# --- the level ------------------------------------------------------------------------------


def covered(quality: Any, dice: Any, calibration_scores: Sequence[float], alpha: float):
    """Whether the Dice bound at ``alpha`` (from ``calibration_scores``) covers each image;
    all False when the bound is undefined (too few calibration images)."""
    q_hat = conformal_quantile(calibration_scores, alpha)
    bound = dice_lower_bound(quality, q_hat)
    return np.asarray(dice, dtype=np.float64) >= bound


@dataclass(frozen=True)
class FlagLevel:
    """The flag level at one confidence and why it is where it is."""

    level: float  # an image is flagged when its p-value <= level
    reason: str


def _kind_violations(tuning: pd.DataFrame, flagged: np.ndarray, target: float) -> list[str]:
    """Shifted kinds whose passing tuning images are covered less than ``target``."""
    passing = tuning[~flagged]
    shifted = passing[~passing["in_domain"].astype(bool)]
    rates = shifted.groupby("kind", sort=True)["covered"].agg(["mean", "size"])
    return [f"{kind} ({r['mean']:.2f} of {int(r['size'])})" for kind, r in rates.iterrows()
            if r["mean"] < target - 1e-12]  # fmt: skip


def choose_flag_level(
    tuning: pd.DataFrame,
    calibration_scores: Sequence[float],
    alpha: float,
    n_reference: int,
    tolerance: float = COVERAGE_TOLERANCE,
) -> FlagLevel:
    """The smallest level at which every shifted kind's passing tuning images keep coverage
    >= ``1 - alpha - tolerance``, at least ``1 / (n_reference + 1)`` (module docstring).

    Args:
        tuning: one row per held-out tuning image, columns ``TUNING_COLUMNS``.
        calibration_scores: the calibration scores ``quality - dice`` of the Dice bound.
        alpha: 1 - the confidence of the bound.
        n_reference: calibration images of the check.
        tolerance: how far below ``1 - alpha`` a kind's passing coverage may fall.
    """
    floor = 1.0 / (n_reference + 1)
    target = 1.0 - alpha - tolerance
    if not math.isfinite(conformal_quantile(calibration_scores, alpha)):
        return FlagLevel(1.0, "every image flagged: the Dice bound is undefined at this level")
    if n_reference == 0:
        return FlagLevel(
            1.0,
            "every image flagged: no calibration image has every feature defined (the model's "
            "masks are empty or cover the whole image)",
        )
    tuning = tuning.assign(
        covered=covered(tuning["quality"], tuning["dice"], calibration_scores, alpha)
    )
    p = tuning["p_value"].to_numpy(np.float64)
    undefined = ~np.isfinite(p)
    candidates = np.unique(np.concatenate([[floor], p[np.isfinite(p) & (p > floor)]]))
    first_violations: list[str] = []
    for level in candidates:
        violations = _kind_violations(tuning, undefined | (p <= level), target)
        if not violations:
            if level >= 1.0:
                break
            if level == floor and not first_violations:
                reason = (
                    f"the floor 1/(n+1) = {floor:.3g}: every shifted tuning kind keeps coverage "
                    f">= {target:.2f} among the images that pass"
                    if (~tuning["in_domain"].astype(bool)).any()
                    else f"the floor 1/(n+1) = {floor:.3g}: no shifted tuning images"
                )
            else:
                reason = (
                    f"raised to {level:.3g} so that every shifted tuning kind keeps coverage "
                    f">= {target:.2f} among the images that pass (at the floor: "
                    f"{'; '.join(first_violations)})"
                )
            return FlagLevel(float(level), reason)
        first_violations = first_violations or violations
    return FlagLevel(1.0, f"every image flagged: {'; '.join(first_violations)} at every level")


def tuning_table(block: Mapping[str, Sequence]) -> pd.DataFrame:
    """The stored tuning records as a table (``TUNING_COLUMNS``)."""
    missing = [c for c in TUNING_COLUMNS if c not in block]
    if missing:
        raise ApplicabilityError(f"tuning records lack {', '.join(missing)}")
    table = pd.DataFrame({c: list(block[c]) for c in TUNING_COLUMNS})
    for column in ("p_value", "quality", "dice"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


# --- judging one image ----------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether the guarantees apply to one image, and why not."""

    applicable: bool
    p_value: float  # NaN when a feature is undefined or there is no check
    level: float
    reason: str  # empty when applicable


@dataclass(frozen=True)
class ApplicabilityRule:
    """The check with its flag level at one confidence, ready to judge images."""

    check: ApplicabilityCheck | None
    level: FlagLevel
    missing: str  # why there is no check (empty when there is one)

    def judge(self, statistics: Mapping[str, float], embedding: Any) -> Verdict:
        """The verdict on one image from its label-free statistics and embedding."""
        if self.check is None:
            return Verdict(False, math.nan, 1.0, f"no applicability check ({self.missing})")
        values = np.asarray([[float(statistics[name]) for name in FEATURE_STATISTICS]])
        p = float(self.check.p_values(values, np.asarray(embedding, np.float64)[None])[0])
        level = self.level.level
        if not math.isfinite(p):
            reason = (
                "a feature of the applicability check is undefined (the predicted mask is "
                "empty or covers the whole image)"
            )
        elif p <= level:
            # compared unrounded; printed with the digits that show the relation
            shown_p, shown_level = apart(p, level)
            reason = (
                f"unlike the calibration images (features jointly: p = {shown_p} <= flag level "
                f"{shown_level}; {self.level.reason})"
            )
        else:
            return Verdict(True, p, level, "")
        return Verdict(False, p, level, reason)


def applicability_rule(
    block: Mapping[str, Any], calibration_scores: Sequence[float], alpha: float
) -> ApplicabilityRule:
    """The rule a calibration file's ``applicability`` block gives at ``alpha``.

    Raises:
        ApplicabilityError: a block this segrobust cannot read (names what is wrong).
    """
    for key in ("check", "tuning", "embedding_module"):
        if key not in block:
            raise ApplicabilityError(
                f"applicability block lacks {key!r}; re-run rule evaluate_model"
            )
    if block["check"] is None:
        reason = block.get("reason") or "no calibration images"
        return ApplicabilityRule(None, FlagLevel(1.0, reason), reason)
    check = ApplicabilityCheck.from_dict(block["check"])
    level = choose_flag_level(tuning_table(block["tuning"]), calibration_scores, alpha, check.n)
    return ApplicabilityRule(check, level, "")
