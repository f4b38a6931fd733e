"""The statistical procedures checked by simulation (seeded): type-I error and power of the
recipe, coverage of the conformal Dice bound, and the findings' "yes" rate under the null.

Each simulated regime draws realistic, paired, per-image-correlated Dice values: an image's
difficulty ``base ~ Beta(8, 2)`` (mean 0.8) is shared by every architecture, each architecture
adds its own image-level noise, and values are clipped to [0, 1]. The measured rates are printed
(run with ``-s`` to see them) and asserted with room for Monte Carlo error (200 regimes: the
binomial standard error of a 5% rate is 1.5 points).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segrobust.analysis import conformal, findings, recipe

N_REGIMES = 200
LEVEL = 0.05


def _regime(rng, n: int, shifts: dict[str, float], noise: float = 0.05) -> pd.DataFrame:
    base = rng.beta(8, 2, n)
    return pd.DataFrame(
        {
            arch: np.clip(base + shift + rng.normal(0, noise, n), 0, 1)
            for arch, shift in shifts.items()
        }
    )


def _recommendations(shifts: dict[str, float], seed: int) -> pd.Series:
    """The recommended architecture ('' for none) of N_REGIMES simulated regimes, n in 20..100."""
    rng = np.random.default_rng(seed)
    chosen = []
    for _ in range(N_REGIMES):
        matrix = _regime(rng, int(rng.integers(20, 101)), shifts)
        decision, _ = recipe.compare(matrix, LEVEL, 50, rng)
        chosen.append(decision["recommended"])
    return pd.Series(chosen)


@pytest.mark.parametrize("archs", [("a", "b"), ("a", "b", "c")])
def test_recipe_recommends_rarely_when_architectures_are_equal(archs):
    chosen = _recommendations(dict.fromkeys(archs, 0.0), seed=len(archs))
    rate = float((chosen != "").mean())
    print(f"\nnull, k = {len(archs)}: recommended in {rate:.3f} of {N_REGIMES} regimes")
    assert rate <= 0.08


@pytest.mark.parametrize("archs", [("a", "b"), ("a", "b", "c")])
def test_recipe_finds_a_real_difference(archs):
    # "a" is 0.03 Dice better per image; paired differences have sd 0.05 (0.035 per arch noise)
    shifts = {arch: (0.03 if arch == "a" else 0.0) for arch in archs}
    rng = np.random.default_rng(10 + len(archs))
    chosen = []
    for _ in range(N_REGIMES):
        matrix = _regime(rng, int(rng.integers(20, 101)), shifts, noise=0.05 / np.sqrt(2))
        chosen.append(recipe.compare(matrix, LEVEL, 50, rng)[0]["recommended"])
    chosen = pd.Series(chosen)
    power = float((chosen == "a").mean())
    print(f"\n+0.03 Dice, k = {len(archs)}: right arch recommended in {power:.3f} of {N_REGIMES}")
    assert power >= 0.8
    assert not chosen.isin([a for a in archs if a != "a"]).any()  # never the wrong one


@pytest.mark.parametrize("n_cal", [9, 19, 49])
def test_conformal_bound_covers_exchangeable_images(n_cal):
    """Marginal coverage >= 1 - alpha, even at the smallest n with a finite bound."""
    rng = np.random.default_rng(n_cal)
    alpha, n_test, trials = 0.1, 50, 1000
    covered = 0
    for _ in range(trials):
        dice = rng.beta(6, 2, n_cal + n_test)
        quality = np.clip(dice + rng.normal(0.03, 0.08, n_cal + n_test), 0, 1)
        q_hat = conformal.conformal_quantile(quality[:n_cal] - dice[:n_cal], alpha)
        bound = conformal.dice_lower_bound(quality[n_cal:], q_hat)
        covered += int(np.sum(dice[n_cal:] >= bound))
    coverage = covered / (trials * n_test)
    # conditional coverage is Beta(k, n + 1 - k): the Monte Carlo sd of the mean over trials
    k = conformal.conformal_rank(n_cal, alpha)
    sd = np.sqrt(k * (n_cal + 1 - k) / ((n_cal + 1) ** 2 * (n_cal + 2)) / trials)
    print(f"\nconformal bound, n_cal = {n_cal}: coverage {coverage:.4f} (target {1 - alpha})")
    assert coverage >= 1 - alpha - 3 * sd
    assert coverage <= k / (n_cal + 1) + 3 * sd + 1e-9  # and no more than the exact E[Beta]


def test_conformal_bound_below_the_minimum_n_is_undefined_not_covering():
    rng = np.random.default_rng(0)
    n_cal = conformal.min_calibration_for_bound(0.1) - 1
    dice = rng.beta(6, 2, n_cal)
    q_hat = conformal.conformal_quantile(dice - dice, 0.1)
    assert np.isnan(conformal.dice_lower_bound([0.5, 0.9], q_hat)).all()


def _yes_rate(draw, verdict, seed: int) -> float:
    rng = np.random.default_rng(seed)
    return float(np.mean([verdict(draw(rng), rng) == findings.YES for _ in range(N_REGIMES)]))


def test_directional_findings_yes_rate_under_the_null():
    def draw(rng):  # paired differences of equal architectures: symmetric about 0
        n = int(rng.integers(20, 101))
        return rng.normal(0, 0.05, n)

    def verdict(d, rng):
        values = findings.paired_effect(d, 50, rng)
        return findings.directional_verdict(values["measured_effect"], values["p_value"], LEVEL, 1)

    rate = _yes_rate(draw, verdict, seed=1)
    print(f"\npaired finding under the null: 'yes' in {rate:.3f} of {N_REGIMES}")
    assert rate <= 0.05


def test_noninferiority_findings_yes_rate_at_the_margin():
    margin = 0.02

    def draw(rng):  # the true median difference is exactly -margin: not non-inferior
        return rng.normal(-margin, 0.05, int(rng.integers(20, 101)))

    def verdict(d, rng):
        v = findings.paired_effect(d, 200, rng)
        return findings.noninferior_verdict(
            v["measured_effect"], v["ci_low"], v["p_value"], LEVEL, margin
        )

    rate = _yes_rate(draw, verdict, seed=2)
    print(f"\nnon-inferiority finding at the margin: 'yes' in {rate:.3f} of {N_REGIMES}")
    assert rate <= 0.08


def test_group_finding_yes_rate_under_the_null():
    def draw(rng):  # d = Dice_unet - Dice_model does not depend on inside / outside
        n_in, n_out = int(rng.integers(10, 60)), int(rng.integers(10, 40))
        return rng.normal(0.02, 0.05, n_out), rng.normal(0.02, 0.05, n_in)

    def verdict(sides, rng):
        values = findings.group_effect(*sides, 200, rng)
        return findings.directional_verdict(values["measured_effect"], values["p_value"], LEVEL, 1)

    rate = _yes_rate(draw, verdict, seed=3)
    print(f"\nout-of-range finding under the null: 'yes' in {rate:.3f} of {N_REGIMES}")
    assert rate <= 0.05
