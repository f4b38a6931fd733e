"""The joint applicability check: valid on exchangeable data, and it catches (or the bound
survives) a shift that keeps every feature's range but changes their joint distribution."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from segrobust.analysis.conformal import clopper_pearson
from segrobust.digits import apart
from segrobust.guarantees import applicability as app

ALPHA = 0.1
EMBEDDING = 6


def _features(rng, n, shifted=False):
    """Statistics (complexity, predicted fg ratio, noise, quality), embeddings, quality and
    Dice of ``n`` simulated images.

    In distribution complexity and predicted foreground ratio move together (one latent t in
    [0.05, 0.95]); the shift keeps both within their calibrated ranges but pairs a high
    complexity (0.7-0.95) with a low foreground ratio (0.015-0.09), where the model's quality
    estimate overstates its Dice by 0.3 instead of 0.05. The embedding is noise either way: only
    the joint statistics can tell.
    """
    t = rng.uniform(0.05, 0.3 if shifted else 0.95, n)
    complexity = (1 - t if shifted else t) + rng.normal(0, 0.02, n)
    fg_ratio = t * 0.3 + rng.normal(0, 0.006, n)
    noise = rng.normal(0.1, 0.01, n)
    quality = rng.uniform(0.7, 0.95, n)
    statistics = np.column_stack([complexity, fg_ratio, noise, quality])
    embeddings = rng.normal(size=(n, EMBEDDING))
    residual = rng.normal(0.3 if shifted else 0.05, 0.03, n)
    dice = np.clip(quality - residual, 0, 1)
    return statistics, embeddings, quality, dice


def _check(rng, n=200):
    """A check fitted on ``n`` calibration images, their scores and statistics."""
    statistics, embeddings, quality, dice = _features(rng, n)
    return app.ApplicabilityCheck.fit(statistics, embeddings), quality - dice, statistics


def _tuning(check, rng, n, kind, shifted):
    statistics, embeddings, quality, dice = _features(rng, n, shifted)
    return pd.DataFrame(
        dict(kind=kind, in_domain=not shifted, p_value=check.p_values(statistics, embeddings),
             quality=quality, dice=dice)
    )  # fmt: skip


def test_false_flag_rate_on_exchangeable_data_is_at_most_the_level():
    """Conformal p-values are super-uniform: over 150 calibration sets of 40 images and 20
    exchangeable new images each, the share with p <= t stays below t (within 3 sd)."""
    rng = np.random.default_rng(11)
    p = []
    for _ in range(150):
        check, _, _ = _check(rng, n=40)
        statistics, embeddings, _, _ = _features(rng, 20)
        p.append(check.p_values(statistics, embeddings))
    p = np.concatenate(p)
    for level in (0.05, 0.1, 0.2, 0.5):
        flagged = (p <= level).mean()
        assert flagged <= level + 3 * math.sqrt(level * (1 - level) / p.size), level
    assert p.min() >= 1 / 41 - 1e-12 and p.max() <= 1.0


def test_a_joint_shift_within_every_range_is_flagged_or_covered():
    """The case of issue 21: a per-feature min-max check passes the shifted images; the bound
    would cover few of them; the joint check, with its level chosen on held-out tuning images,
    flags them or the ones it passes are covered."""
    rng = np.random.default_rng(3)
    check, scores, cal_statistics = _check(rng)
    statistics, embeddings, quality, dice = _features(rng, 300, shifted=True)
    inside = (
        (statistics >= cal_statistics.min(axis=0)) & (statistics <= cal_statistics.max(axis=0))
    ).all(axis=1)
    assert inside.mean() > 0.8  # the range check would rate most of them
    covered_all = app.covered(quality, dice, scores, ALPHA)
    assert covered_all.mean() < 0.3  # and the bound fails on them

    tuning = pd.concat(
        [_tuning(check, rng, 100, "in-domain", False), _tuning(check, rng, 100, "joint", True)]
    )
    level = app.choose_flag_level(tuning, scores, ALPHA, check.n)
    passed = check.p_values(statistics, embeddings) > level.level
    # the shift is flagged (95% or more), or the images that pass are covered
    assert passed.mean() <= 0.05 or (
        covered_all[passed].mean() >= 1 - ALPHA - app.COVERAGE_TOLERANCE
    )
    # wrongly rated (rated and not covered): the range check would have done it to most
    assert (passed & ~covered_all).mean() <= 0.02
    assert (inside & ~covered_all).mean() > 0.5
    # in distribution, the check still rates nearly everything
    fresh_stats, fresh_emb, fresh_q, fresh_d = _features(rng, 300)
    fresh_passed = check.p_values(fresh_stats, fresh_emb) > level.level
    assert fresh_passed.mean() > 0.8
    covered_fresh = app.covered(fresh_q, fresh_d, scores, ALPHA)[fresh_passed]
    low, high = clopper_pearson(covered_fresh.sum(), covered_fresh.size)
    assert low <= 1 - ALPHA <= high or covered_fresh.mean() > 1 - ALPHA


def _table(kind, in_domain, p, covered):
    quality = np.full(len(p), 0.9)
    return pd.DataFrame(
        dict(kind=kind, in_domain=in_domain, p_value=p, quality=quality,
             dice=np.where(covered, 0.95, 0.5))
    )  # fmt: skip


SCORES = np.zeros(99)  # q-hat 0: an image is covered when dice >= quality


def test_the_level_stays_at_its_floor_when_every_shifted_kind_is_covered():
    tuning = _table("shift", False, np.linspace(0.01, 1, 50), np.ones(50, bool))
    level = app.choose_flag_level(tuning, SCORES, ALPHA, n_reference=99)
    assert level.level == pytest.approx(0.01) and "floor" in level.reason


def test_the_level_rises_until_the_passing_images_of_every_shifted_kind_are_covered():
    p = np.linspace(0.02, 1, 50)
    tuning = _table("shift", False, p, p > 0.3)  # the uncovered ones are the most outlying
    level = app.choose_flag_level(tuning, SCORES, ALPHA, n_reference=99)
    passing = p > level.level
    assert passing.any() and (p[passing] > 0.3).mean() >= 1 - ALPHA - app.COVERAGE_TOLERANCE
    assert level.level < 0.3 and "raised" in level.reason and "shift" in level.reason


def test_the_in_domain_kind_never_drives_the_level():
    tuning = _table("in-domain", True, np.linspace(0.01, 1, 50), np.arange(50) % 3 > 0)
    assert app.choose_flag_level(tuning, SCORES, ALPHA, 99).level == pytest.approx(0.01)


def test_a_shift_the_check_cannot_separate_ends_with_every_image_flagged():
    tuning = _table("blind", False, np.linspace(0.02, 1, 50), np.zeros(50, bool))
    level = app.choose_flag_level(tuning, SCORES, ALPHA, 99)
    assert level.level == 1.0 and "every image flagged" in level.reason
    assert "blind (0.00 of 50)" in level.reason


def test_a_check_without_usable_calibration_images_flags_everything_and_says_why():
    tuning = _table("shift", False, np.full(5, np.nan), np.ones(5, bool))
    level = app.choose_flag_level(tuning, SCORES, ALPHA, 0)
    assert level.level == 1.0 and "no calibration image has every feature defined" in level.reason


def test_an_undefined_bound_flags_everything():
    tuning = _table("shift", False, np.linspace(0.02, 1, 5), np.ones(5, bool))
    level = app.choose_flag_level(tuning, np.zeros(5), ALPHA, 5)
    assert level.level == 1.0 and "undefined" in level.reason


def test_the_stored_check_gives_the_same_p_values_and_verdicts():
    rng = np.random.default_rng(4)
    check, scores, _ = _check(rng, n=60)
    tuning = pd.concat(
        [_tuning(check, rng, 40, "in-domain", False), _tuning(check, rng, 40, "joint", True)]
    )
    block = {
        "embedding_module": "model.bottleneck",
        "check": json.loads(json.dumps(check.to_dict())),
        "tuning": {c: tuning[c].tolist() for c in app.TUNING_COLUMNS},
    }
    rule = app.applicability_rule(block, scores.tolist(), ALPHA)
    statistics, embeddings, _, _ = _features(rng, 10)
    np.testing.assert_allclose(
        rule.check.p_values(statistics, embeddings), check.p_values(statistics, embeddings)
    )
    assert rule.level == app.choose_flag_level(tuning, scores, ALPHA, check.n)
    names = app.FEATURE_STATISTICS
    for row, emb, p in zip(statistics, embeddings, check.p_values(statistics, embeddings),
                           strict=True):  # fmt: skip
        verdict = rule.judge(dict(zip(names, row, strict=True)), emb)
        assert verdict.applicable == (p > rule.level.level)
        assert (
            verdict.reason == ""
            if verdict.applicable
            else "unlike the calibration" in (verdict.reason)
        )
    undefined = rule.judge(dict(zip(names, [math.nan, 0.1, 0.1, 0.9], strict=True)), embeddings[0])
    assert not undefined.applicable and "undefined" in undefined.reason


def test_a_flagged_p_value_prints_with_the_digits_that_show_it_against_the_level():
    """Compared unrounded, printed with the digits that tell them apart (``segrobust.digits``):
    a p-value a hair below the level must not read as equal to it."""
    rng = np.random.default_rng(4)
    check, _, _ = _check(rng, n=60)
    statistics, embeddings, _, _ = _features(rng, 1)
    p = float(check.p_values(statistics, embeddings)[0])
    level = p * (1 + 1e-7)
    rule = app.ApplicabilityRule(check, app.FlagLevel(level, "chosen on tuning images"), "")
    values = dict(zip(app.FEATURE_STATISTICS, statistics[0], strict=True))
    verdict = rule.judge(values, embeddings[0])
    shown_p, shown_level = apart(p, level)
    assert not verdict.applicable and shown_p != shown_level
    assert f"p = {shown_p} <= flag level {shown_level}; chosen on tuning images" in verdict.reason


def test_no_check_flags_every_image_with_the_reason():
    rule = app.applicability_rule(
        {"embedding_module": "m", "check": None, "reason": "no in-domain calibration images",
         "tuning": {c: [] for c in app.TUNING_COLUMNS}},
        [], ALPHA,
    )  # fmt: skip
    verdict = rule.judge(dict.fromkeys(app.FEATURE_STATISTICS, 0.5), np.zeros(3))
    assert not verdict.applicable and "no in-domain calibration images" in verdict.reason


def test_fitting_needs_two_calibration_images_with_every_feature():
    statistics = np.array([[0.5, 0.2, 0.1, 0.9], [math.nan, 0.2, 0.1, 0.9]])
    with pytest.raises(app.ApplicabilityError, match="1 calibration images"):
        app.ApplicabilityCheck.fit(statistics, np.zeros((2, 3)))
    with pytest.raises(app.ApplicabilityError, match="expected a 2D array with 4 columns"):
        app.ApplicabilityCheck.fit(np.zeros((5, 3)), np.zeros((5, 3)))


def test_a_check_stored_with_other_features_is_refused():
    rng = np.random.default_rng(0)
    block = _check(rng, n=20)[0].to_dict()
    block["features"] = ["complexity", "embedding"]
    with pytest.raises(app.ApplicabilityError, match="re-run rule evaluate_model"):
        app.ApplicabilityCheck.from_dict(block)
