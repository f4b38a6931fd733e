"""The linear contrast over arms of training runs: hand-computed values, run sets shared across
unit sets, the one-run case, the verdicts, run-to-run agreement and ranking stability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segrobust.analysis import replicates as rep


def _runs(values) -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    return pd.DataFrame(
        values,
        index=[f"s{r + 1}" for r in range(values.shape[0])],
        columns=[f"u{i}" for i in range(values.shape[1])],
    )


def test_difference_matches_the_hand_computed_two_part_standard_error():
    a = _runs([[0.80, 0.70, 0.90], [0.82, 0.74, 0.86]])
    b = _runs([[0.75, 0.70, 0.80], [0.79, 0.66, 0.81], [0.77, 0.68, 0.83]])
    c = rep.difference(a, b, names=("a", "b"))
    assert c.estimate == pytest.approx(a.to_numpy().mean() - b.to_numpy().mean())
    run_a = np.var(a.mean(axis=1), ddof=1) / 2
    run_b = np.var(b.mean(axis=1), ddof=1) / 3
    z = a.mean(axis=0) - b.mean(axis=0)
    image = np.var(z, ddof=1) / 3
    assert c.run_variance == pytest.approx(run_a + run_b)
    assert c.image_variance == pytest.approx(image)
    assert c.se == pytest.approx(np.sqrt(run_a + run_b + image))
    df = (run_a + run_b + image) ** 2 / (run_a**2 / 1 + run_b**2 / 2 + image**2 / 2)
    assert c.df == pytest.approx(df)
    half = stats.t.ppf(0.975, df) * c.se
    assert (c.ci_low, c.ci_high) == pytest.approx((c.estimate - half, c.estimate + half))
    assert c.p_value == pytest.approx(2 * stats.t.sf(abs(c.estimate) / c.se, df))
    assert c.n_runs == {"a": 2, "b": 3} and c.n_units == {"units": 3} and c.defined


def test_one_run_in_any_arm_gives_no_interval_and_says_why():
    c = rep.difference(_runs([[0.9, 0.8, 0.85]]), _runs([[0.5, 0.4, 0.5], [0.6, 0.5, 0.4]]))
    assert not c.defined and c.reason == rep.ONE_RUN
    assert np.isnan(c.ci_low) and np.isnan(c.p_value)
    assert c.estimate == pytest.approx(0.85 - 0.4833333, abs=1e-6)
    assert rep.superiority(c, 0.01) == rep.INCONCLUSIVE
    assert rep.noninferiority(c, 0.02) == rep.INCONCLUSIVE
    assert rep.comparison_class(c, 0.01) == rep.UNDECIDED
    assert "one training run per architecture" in rep.superiority_note(c, 0.01)


def test_units_are_aligned_to_the_complete_cases():
    a = _runs([[0.8, 0.7, 0.9], [0.8, 0.7, 0.9]])
    b = _runs([[0.7, 0.6], [0.7, 0.6]])  # no u2
    c = rep.difference(a, b)
    assert c.n_units == {"units": 2}
    assert c.estimate == pytest.approx(0.1)


def test_a_run_set_shared_by_two_unit_sets_keeps_its_correlation():
    """Finding (e): one network measured inside and outside; its offset cancels in its own
    inside-outside difference, so the run part sees only what varies between its runs' drops."""
    rng = np.random.default_rng(0)
    offsets = rng.normal(0, 0.05, (3, 1))
    unet = _runs(0.8 + offsets + np.zeros((3, 20)))
    inside, outside = unet.columns[:12], unet.columns[12:]
    arms = [rep.Arm(unet[outside], 1.0, "unet", "outside"),
            rep.Arm(unet[inside], -1.0, "unet", "inside")]  # fmt: skip
    c = rep.linear_contrast(arms)
    assert c.estimate == pytest.approx(0.0, abs=1e-12)
    assert c.run_variance == pytest.approx(0.0, abs=1e-20)  # offsets cancel within each run
    assert c.n_units == {"outside": 8, "inside": 12} and c.n_runs == {"unet": 3}
    independent = [rep.Arm(unet[outside], 1.0, "a", "outside"),
                   rep.Arm(unet[inside], -1.0, "b", "inside")]  # fmt: skip
    twice = 2 * np.var(offsets, ddof=1) / 3  # treated as two independent run sets
    assert rep.linear_contrast(independent).run_variance == pytest.approx(twice)


def test_constant_contrast_has_a_point_interval():
    a = _runs(np.full((3, 4), 0.75))
    c = rep.difference(a, a - 0.25)  # exact in binary: no rounding noise in the variances
    assert c.se == 0 and c.ci_low == c.estimate == c.ci_high == 0.25
    assert c.p_value == 0.0


@pytest.mark.parametrize(
    ("arms", "message"),
    [([], "at least one arm"), ([rep.Arm(_runs([[0.1, np.nan]]), 1.0, "a")], "finite")],
)
def test_bad_contrasts_are_rejected(arms, message):
    with pytest.raises(ValueError, match=message):
        rep.linear_contrast(arms)
    with pytest.raises(ValueError, match="confidence level"):
        rep.linear_contrast([rep.Arm(_runs([[0.1]]), 1.0, "a")], level=95)


def _contrast(low: float, high: float) -> rep.Contrast:
    return rep.Contrast(estimate=(low + high) / 2, se=0.001, df=10, ci_low=low, ci_high=high,
                        p_value=0.01, run_variance=0, image_variance=0)  # fmt: skip


@pytest.mark.parametrize(
    ("low", "high", "verdict", "words"),
    [(0.02, 0.05, "yes", "above the minimum effect"),
     (0.005, 0.05, "inconclusive", "contains the minimum effect"),
     (0.001, 0.009, "no", "at most negligible"),
     (-0.05, -0.02, "no", "opposite")],
)  # fmt: skip
def test_superiority_verdict_needs_the_interval_above_the_minimum_effect(low, high, verdict, words):
    c = _contrast(low, high)
    assert rep.superiority(c, 0.01) == verdict
    assert words in rep.superiority_note(c, 0.01)


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [(-0.0066, -0.0029, "yes"),  # the case: a small loss, inside the 0.02 margin
     (-0.03, -0.01, "inconclusive"), (-0.06, -0.03, "no"), (0.01, 0.03, "yes")],
)  # fmt: skip
def test_noninferiority_verdict_is_against_minus_the_margin(low, high, verdict):
    assert rep.noninferiority(_contrast(low, high), 0.02) == verdict


def test_the_60_40_case_is_not_a_yes():
    """60 units +0.01, 40 units -0.20 (mean -0.074): better on most images, worse on average."""
    rng = np.random.default_rng(1)
    gap = np.r_[np.full(60, 0.01), np.full(40, -0.20)]
    base = rng.uniform(0.6, 0.9, 100)
    b = _runs(base + rng.normal(0, 0.005, (3, 100)))
    a = _runs(base + gap + rng.normal(0, 0.005, (3, 100)))
    c = rep.difference(a, b)
    assert c.estimate == pytest.approx(-0.074, abs=0.003)
    assert rep.superiority(c, 0.01) == rep.NO
    assert "opposite" in rep.superiority_note(c, 0.01)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0.02, 0.04, rep.AHEAD), (-0.005, 0.008, rep.EQUIVALENT), (-0.005, 0.02, rep.UNDECIDED),
     (-0.02, 0.005, rep.UNDECIDED)],
)  # fmt: skip
def test_comparison_class(low, high, expected):
    assert rep.comparison_class(_contrast(low, high), 0.01) == expected


def test_agreement_counts_run_pairs_and_units_and_names_a_disagreeing_seed():
    a = _runs([[0.9, 0.9, 0.6], [0.9, 0.9, 0.7], [0.5, 0.6, 0.5]])  # s3 is bad
    b = _runs([[0.7, 0.7, 0.7], [0.72, 0.7, 0.7], [0.7, 0.71, 0.7]])
    agree = rep.agreement(a, b)
    assert (agree.runs_ahead, agree.run_pairs) == (6, 9)
    assert agree.share_units_ahead == pytest.approx(2 / 3)
    assert agree.first_run_below == "s3" and agree.second_run_above == ""
    assert rep.agreement(b, a).second_run_above == "s2"  # the best seed of a, above all of b
    assert rep.agreement(b, a).first_run_below == ""


def test_ranking_stability_is_seeded_and_certain_for_a_clear_order():
    rng = np.random.default_rng(0)
    clear = {"a": _runs(0.9 + rng.normal(0, 0.01, (3, 30))),
             "b": _runs(0.5 + rng.normal(0, 0.01, (3, 30)))}  # fmt: skip
    table = rep.ranking_stability(clear, 200, np.random.default_rng(1)).set_index("arch")
    assert table.loc["a", "p_first"] == 1.0 and table.loc["b", "p_first"] == 0.0
    assert table.loc["a", "rank"] == 1 and (table["rank_stability"] == 1.0).all()
    close = {"a": _runs(0.7 + rng.normal(0, 0.05, (3, 30))),
             "b": _runs(0.7 + rng.normal(0, 0.05, (3, 30)))}  # fmt: skip
    first = rep.ranking_stability(close, 300, np.random.default_rng(2))
    assert first.equals(rep.ranking_stability(close, 300, np.random.default_rng(2)))
    assert 0.05 < first["p_first"].iloc[0] < 0.95
    assert first["p_first"].sum() == pytest.approx(1.0)
