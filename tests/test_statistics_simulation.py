"""The statistical procedures checked by simulation (seeded): false recommendations and power
of the recipe across training runs, coverage of the conformal Dice bound, and the findings'
"yes" rate under the null.

Each simulated regime draws every real source of variance of a trained-network comparison
(``draw_runs``): an image's difficulty ``Beta(8, 2)`` shared by every architecture and run, an
architecture x image interaction (sd 0.03: an architecture is better on some images than on
others), a per-training-run offset (sd ``run_sd``: retraining with another seed), and per run and
image noise (sd 0.03); Dice clipped to [0, 1]. The measured rates are printed (run with ``-s``)
and asserted with room for Monte Carlo error (200 regimes: the binomial standard error of a 5%
rate is 1.5 points). The power curve over the true difference and the number of seeds, and the
side-by-side calibration of the alternatives, are ``benchmarks/inference_calibration.py``'s
(docs/statistics.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segrobust.analysis import conformal, findings, recipe
from segrobust.analysis import replicates as rep

N_REGIMES = 200
SETTINGS = recipe.RecipeSettings(significance=0.05, min_effect=0.01, min_cases=10, n_bootstrap=20)


def draw_runs(
    rng, shifts: dict[str, float], run_sd: float, n_runs: int = 3, n: int = 100,
    interaction_sd: float = 0.03, noise_sd: float = 0.03,
) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Per architecture, a runs x units Dice matrix with every source of variance (module
    docstring); ``shifts`` are the architectures' true mean differences."""
    base = rng.beta(8, 2, n)
    units = [f"u{i}" for i in range(n)]
    arms = {}
    for arch, shift in shifts.items():
        interaction = rng.normal(0, interaction_sd, n)
        runs = rng.normal(0, run_sd, (n_runs, 1))
        dice = base + shift + interaction + runs + rng.normal(0, noise_sd, (n_runs, n))
        arms[arch] = pd.DataFrame(np.clip(dice, 0, 1), index=range(1, n_runs + 1), columns=units)
    return arms


def recommended(shifts: dict[str, float], run_sd: float, seed: int, n_runs: int = 3) -> pd.Series:
    """The recommended architecture ('' for none) of N_REGIMES simulated regimes."""
    rng = np.random.default_rng(seed)
    chosen = []
    for _ in range(N_REGIMES):
        arms = draw_runs(rng, shifts, run_sd, n_runs, n=int(rng.integers(60, 121)))
        chosen.append(recipe.decide(arms, SETTINGS, rng)[0]["recommended"])
    return pd.Series(chosen)


@pytest.mark.parametrize("run_sd", [0.01, 0.02, 0.04])
def test_equal_architectures_are_rarely_recommended_whatever_the_run_to_run_spread(run_sd):
    chosen = recommended({"a": 0.0, "b": 0.0}, run_sd, seed=int(run_sd * 1000))
    rate = float((chosen != "").mean())
    print(f"\nnull, run sd {run_sd}: recommended in {rate:.3f} of {N_REGIMES} regimes")
    assert rate <= 0.08


def test_four_equal_architectures_are_rarely_recommended():
    chosen = recommended(dict.fromkeys("abcd", 0.0), 0.02, seed=4)
    rate = float((chosen != "").mean())
    print(f"\nnull, 4 architectures, run sd 0.02: recommended in {rate:.3f}")
    assert rate <= 0.08


def test_a_real_difference_of_0_05_is_found_with_three_seeds():
    chosen = recommended({"a": 0.05, "b": 0.0}, 0.01, seed=5)
    power = float((chosen == "a").mean())
    print(f"\n+0.05 Dice, run sd 0.01, 3 seeds: right arch recommended in {power:.3f}")
    assert power >= 0.8
    assert not (chosen == "b").any()  # never the worse one


def test_a_difference_below_the_minimum_effect_is_rarely_recommended():
    chosen = recommended({"a": 0.008, "b": 0.0}, 0.01, seed=6)
    rate = float((chosen != "").mean())
    print(f"\n+0.008 Dice (< min_effect 0.01): recommended in {rate:.3f}")
    assert rate <= 0.08


def test_one_run_per_architecture_never_recommends():
    chosen = recommended({"a": 0.2, "b": 0.0}, 0.01, seed=7, n_runs=1)
    assert (chosen == "").all()


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


def _yes_rate(verdict, seed: int) -> float:
    rng = np.random.default_rng(seed)
    return float(np.mean([verdict(rng) == findings.YES for _ in range(N_REGIMES)]))


FINDING_SETTINGS = dict(level=0.95, margin=0.02, min_cases=10, min_effect=0.01)


def _pair(rng, shift: float, run_sd: float = 0.02) -> list[rep.Arm]:
    arms = draw_runs(rng, {"skip": shift, "noskip": 0.0}, run_sd, n=int(rng.integers(60, 121)))
    return [rep.Arm(arms["skip"], 1.0, "skip"), rep.Arm(arms["noskip"], -1.0, "noskip")]


@pytest.mark.parametrize("run_sd", [0.01, 0.04])
def test_superiority_findings_yes_rate_under_the_null(run_sd):
    def verdict(rng):
        contrast = rep.linear_contrast(_pair(rng, 0.0, run_sd))
        return findings.contrast_verdict(contrast, findings.SUPERIORITY, FINDING_SETTINGS)[0]

    rate = _yes_rate(verdict, seed=1)
    print(f"\nsuperiority finding under the null, run sd {run_sd}: 'yes' in {rate:.3f}")
    assert rate <= 0.05


def test_noninferiority_findings_yes_rate_at_the_margin():
    def verdict(rng):  # the true difference is exactly -margin: not non-inferior
        contrast = rep.linear_contrast(_pair(rng, -FINDING_SETTINGS["margin"]))
        return findings.contrast_verdict(contrast, findings.NONINFERIORITY, FINDING_SETTINGS)[0]

    rate = _yes_rate(verdict, seed=2)
    print(f"\nnon-inferiority finding at the margin: 'yes' in {rate:.3f} of {N_REGIMES}")
    assert rate <= 0.05


def test_out_of_range_finding_yes_rate_under_the_null():
    """Finding (e)'s two unit sets and shared run sets: the U-Net and the model lose the same
    outside the range, each network with its own offset in both sets."""

    def verdict(rng):
        n_in, n_out = int(rng.integers(20, 60)), int(rng.integers(10, 40))
        arms = draw_runs(rng, {"unet": 0.0, "model": 0.0}, 0.02, n=n_in + n_out)
        outside = np.arange(n_in + n_out) >= n_in
        parts = []
        for arch, sign in (("unet", 1.0), ("model", -1.0)):
            values = arms[arch] - 0.1 * outside  # the same drop for both
            parts.append(rep.Arm(values.loc[:, outside], sign, arch, "outside"))
            parts.append(rep.Arm(values.loc[:, ~outside], -sign, arch, "inside"))
        contrast = rep.linear_contrast(parts)
        return findings.contrast_verdict(contrast, findings.SUPERIORITY, FINDING_SETTINGS)[0]

    rate = _yes_rate(verdict, seed=3)
    print(f"\nout-of-range finding under the null: 'yes' in {rate:.3f} of {N_REGIMES}")
    assert rate <= 0.05
