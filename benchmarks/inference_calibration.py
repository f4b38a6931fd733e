"""Calibration of the procedures that could decide "architecture A beats B", side by side.

Simulated regimes with every real source of variance of a trained-network comparison: an image's
difficulty Beta(8, 2) shared by all, an architecture x image interaction (sd 0.03 unless stated),
a per-training-run offset (sd ``run_sd``), and per run and image noise (sd 0.03); 100 test
units, Dice clipped to [0, 1]. Each procedure tests A = B two-sided at 5% (a "positive" is an
interval excluding 0, or p < 0.05); under the null (equal architectures) its positive rate is its
false-positive rate, which should be <= 5%.

Procedures:

* ``wilcoxon-1seed`` / ``wilcoxon-3seeds``: the recipe before issue 18, a paired Wilcoxon
  signed-rank test of seed-averaged per-image Dice (scipy), with 1 and 3 seeds;
* ``boot-2level``: a naive two-level bootstrap (runs resampled within each arm, then units),
  percentile 95% CI of the mean difference, 3 seeds;
* ``mixedlm``: statsmodels MixedLM, Dice ~ arch + unit (fixed, absorbed by centring each unit)
  with a random intercept per training run, Wald z-test of arch (REML), 3 seeds: crossed run and
  image random effects with an architecture x image interaction are what MixedLM expresses only
  through variance components, so this is the model a user fits;
* ``runs-boot``: rliable's stratified bootstrap (Agarwal et al. 2021) on one score per run (its
  mean Dice), percentile 95% CI, 3 seeds (the procedure re-implemented in numpy: rliable is not
  a dependency); ``runs-welch``: Welch's t-test on the run means (runs as the only unit, as
  deepsig's ASO takes them);
* ``contrast``: ``segrobust.analysis.replicates.linear_contrast`` (two-part SE, t df), 3 seeds;
  ``recommend``: the recipe's decision with min_effect 0.01 (the CI above +0.01).

Then the recipe's power: the share of regimes recommending the truly better architecture, over
the true difference and the number of seeds (run sd 0.01 and 0.02), and for min_effect 0, 0.01,
0.02 (``a_recommended``: the recipe's decision for two architectures, from the contrast alone).
docs/statistics.md quotes the output.

    python benchmarks/inference_calibration.py [--sims 400] [--mixedlm-sims 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from segrobust.analysis import recipe
from segrobust.analysis import replicates as rep

N_UNITS = 100


def draw(rng, shift: float, run_sd: float, n_runs: int, interaction_sd: float = 0.03,
         noise_sd: float = 0.03, n: int = N_UNITS) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(A, B) runs x units Dice of one regime; A is ``shift`` better in expectation."""
    base = rng.beta(8, 2, n)
    arms = []
    for s in (shift, 0.0):
        offsets = rng.normal(0, run_sd, (n_runs, 1))
        dice = base + s + rng.normal(0, interaction_sd, n) + offsets
        arms.append(np.clip(dice + rng.normal(0, noise_sd, (n_runs, n)), 0, 1))
    return arms[0], arms[1]


def _frame(values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, index=range(1, len(values) + 1))


def wilcoxon(a, b, rng) -> bool:
    return stats.wilcoxon(a.mean(axis=0), b.mean(axis=0)).pvalue < 0.05


def _resampled_mean(values: np.ndarray, unit_counts: np.ndarray, rng) -> np.ndarray:
    """Mean of each two-level resample: runs drawn with replacement, units by ``unit_counts``."""
    runs, n = values.shape
    run_counts = rng.multinomial(runs, np.full(runs, 1.0 / runs), size=len(unit_counts))
    per_run = values @ unit_counts.T / n  # runs x resamples
    return np.sum(run_counts.T * per_run, axis=0) / runs


def boot_2level(a, b, rng, n_boot: int = 1000) -> bool:
    n = a.shape[1]
    unit_counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # the same units for both
    diffs = _resampled_mean(a, unit_counts, rng) - _resampled_mean(b, unit_counts, rng)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return low > 0 or high < 0


def mixedlm(a, b, rng) -> bool:
    """Random intercept per run; the units' fixed effects absorbed by centring each unit (the
    within transformation: the same arch estimate as ``dice ~ arch + C(unit)``, 100x faster)."""
    import statsmodels.formula.api as smf

    rows = []
    for arch, values in (("a", a), ("b", b)):
        for r, run in enumerate(values):
            rows += [(arch, f"{arch}{r}", i, v) for i, v in enumerate(run)]
    data = pd.DataFrame(rows, columns=["arch", "run", "unit", "dice"])
    data["dice"] -= data.groupby("unit")["dice"].transform("mean")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("dice ~ arch", data, groups=data["run"]).fit(reml=True)
    return fit.pvalues["arch[T.b]"] < 0.05


def runs_boot(a, b, rng, n_boot: int = 1000) -> bool:
    ma, mb = a.mean(axis=1), b.mean(axis=1)
    da = ma[rng.integers(0, len(ma), (n_boot, len(ma)))].mean(axis=1)
    db = mb[rng.integers(0, len(mb), (n_boot, len(mb)))].mean(axis=1)
    low, high = np.percentile(da - db, [2.5, 97.5])
    return low > 0 or high < 0


def runs_welch(a, b, rng) -> bool:
    return stats.ttest_ind(a.mean(axis=1), b.mean(axis=1), equal_var=False).pvalue < 0.05


def contrast(a, b, rng) -> bool:
    c = rep.difference(_frame(a), _frame(b))
    return c.ci_low > 0 or c.ci_high < 0


def recommend(a, b, rng, min_effect: float = 0.01) -> bool:
    """The recipe's decision (``recipe.decide``): A or B recommended."""
    settings = recipe.RecipeSettings(min_effect=min_effect, n_bootstrap=10)
    decision = recipe.decide({"a": _frame(a), "b": _frame(b)}, settings, rng)[0]
    return decision["decision"] == recipe.RECOMMENDED


def a_recommended(a, b, rng, min_effect: float = 0.01) -> bool:
    """Whether the recipe recommends A: for two architectures with >= 2 runs and >= 10 units,
    exactly when the CI of mean(A) - mean(B) lies above +min_effect (the decision without the
    descriptive columns, 30x faster than ``recipe.decide``)."""
    return rep.difference(_frame(a), _frame(b)).ci_low > min_effect


PROCEDURES = {  # name: (function, seeds)
    "wilcoxon-1seed": (wilcoxon, 1),
    "wilcoxon-3seeds": (wilcoxon, 3),
    "boot-2level": (boot_2level, 3),
    "mixedlm": (mixedlm, 3),
    "runs-boot": (runs_boot, 3),
    "runs-welch": (runs_welch, 3),
    "contrast": (contrast, 3),
    "recommend": (recommend, 3),
}


def rate(procedure, seeds: int, shift: float, run_sd: float, sims: int, seed: int,
         interaction_sd: float = 0.03) -> float:  # fmt: skip
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(sims):
        a, b = draw(rng, shift, run_sd, seeds, interaction_sd)
        hits += bool(procedure(a, b, rng))
    return hits / sims


def calibration_table(sims: int, mixedlm_sims: int, seed: int) -> pd.DataFrame:
    scenarios = [(sd, 0.03) for sd in (0.0, 0.01, 0.02, 0.04)] + [(0.0, 0.06)]
    rows = []
    for run_sd, interaction_sd in scenarios:
        row = {"run sd": run_sd, "arch x image sd": interaction_sd}
        for name, (procedure, seeds) in PROCEDURES.items():
            n = mixedlm_sims if name == "mixedlm" else sims
            row[name] = rate(procedure, seeds, 0.0, run_sd, n, seed, interaction_sd)
        rows.append(row)
    return pd.DataFrame(rows)


def power_table(sims: int, seed: int) -> pd.DataFrame:
    rows = []
    for run_sd in (0.01, 0.02):
        for seeds in (2, 3, 5):
            row = {"run sd": run_sd, "seeds": seeds}
            for shift in (0.02, 0.03, 0.05, 0.08):
                row[f"+{shift:g}"] = rate(a_recommended, seeds, shift, run_sd, sims, seed)
            rows.append(row)
    return pd.DataFrame(rows)


def min_effect_table(sims: int, seed: int) -> pd.DataFrame:
    rows = []
    for min_effect in (0.0, 0.01, 0.02):

        def procedure(a, b, rng, m=min_effect):
            return a_recommended(a, b, rng, m)

        rows.append({
            "min_effect": min_effect,
            "power +0.05 (3 seeds, run sd 0.01)": rate(procedure, 3, 0.05, 0.01, sims, seed),
            "recommended at +0.008": rate(procedure, 3, 0.008, 0.01, sims, seed),
            "false recommendations (null, run sd 0.02)": rate(procedure, 3, 0.0, 0.02, sims, seed),
        })  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--mixedlm-sims", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    pd.set_option("display.width", 200)
    print(f"False-positive rate at two-sided 5% under the null ({args.sims} regimes per cell, "
          f"MixedLM {args.mixedlm_sims}; {N_UNITS} units):")  # fmt: skip
    print(
        calibration_table(args.sims, args.mixedlm_sims, args.seed).round(3).to_string(index=False)
    )
    print(f"\nPower: right architecture recommended (min_effect 0.01; {args.sims} regimes):")
    print(power_table(args.sims, args.seed).round(3).to_string(index=False))
    print(f"\nThe minimum effect ({args.sims} regimes):")
    print(min_effect_table(args.sims, args.seed).round(3).to_string(index=False))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
