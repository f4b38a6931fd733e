"""The two papers' findings, re-tested on whatever rows a run produced (``findings.csv``).

Each finding is a directional claim about a paired difference over independent units
(``segrobust.analysis.units``: texture image index, or test image), stated with its expected
direction, the measured effect, a 95% CI, n, a p-value and a verdict ``reproduced``:

* ``yes``: the effect is in the expected direction and significant at ``significance``;
* ``no``: the effect is significantly in the opposite direction;
* ``inconclusive``: anything else (including n too small for any p below the level);
* ``not run``: the rows the finding needs are absent (the note says which).

Findings (a) to (c) and (d) are paired per unit: the effect is the median of the per-unit
differences, with a percentile bootstrap CI (units resampled, seeded) and a two-sided Wilcoxon
signed-rank p (the direction is the median's sign); the CI needs ``min_cases`` units
(``analysis.min_cases``), the note says when there are fewer or when n cannot reach the level.
Finding (e) compares two groups of images
(inside vs outside the training FBR range): the effect is a difference of means with a
bootstrap CI resampling each group, and the p-value a two-sided permutation test of that same
difference (scipy.stats.permutation_test), so effect and test answer one question.

"Does not lower" claims ((c) Easier / Easiest, (d)) are non-inferiority claims with margin
``margin`` (``analysis.noninferiority_margin``): ``yes`` when the difference is significantly
positive, or not significant with its 95% CI lower bound >= -margin (any decrease is smaller
than the margin with 95% confidence); ``no`` when significantly negative; ``inconclusive``
when not significant and the CI reaches below -margin (too imprecise to tell).

(a) texture: skip connections help in-domain on easy textures: unet - noskip_unet and
    vnet - noskip_vnet, in-domain Dice at the lowest third of the alphas, > 0.
(b) texture: no-skip variants lose less on harder test alphas: per unit, the skip variant's
    degradation (in-domain Dice - Dice at a harder test alpha, averaged over every harder test
    alpha) minus the no-skip variant's, > 0.
(c) perturbation: Dice(level) - Dice(clean), per image averaged over architectures and seeds:
    < 0 for Hardest / Harder (speckle), >= 0 (non-inferior) for Easier / Easiest (background
    blur).
(d) context: U-Net Dice at the largest patch size - at the smallest, >= 0 (non-inferior).
(e) context: per (dataset, patch, attention model in attention_unet / unetr): the model's
    out-of-range Dice drop minus U-Net's, > 0. With d = Dice_unet - Dice_model per image, this
    is mean_outside(d) - mean_inside(d).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from segrobust.analysis.context import label_out_of_range
from segrobust.analysis.stats import median_ci, min_attainable_p, percentile_ci, wilcoxon_p
from segrobust.analysis.units import independent_unit, unit_matrix
from segrobust.contract import in_domain

YES, NO, INCONCLUSIVE, NOT_RUN = "yes", "no", "inconclusive", "not run"
FINDINGS_COLUMNS = [
    "finding",
    "study",
    "comparison",
    "expected_direction",
    "measured_effect",
    "ci_low",
    "ci_high",
    "n",
    "p_value",
    "reproduced",
    "statistic",
    "note",
]
SKIP_PAIRS = [("unet", "noskip_unet"), ("vnet", "noskip_vnet")]
ATTENTION_ARCHS = ["attention_unet", "unetr"]
#: The context study's U-Net: the skip-connection study's ``unet``, or MONAI's residual UNet
#: (``monai_unet``, the context paper's network) when a config runs that one instead.
CONTEXT_UNETS = ("unet", "monai_unet")


def context_unet(per_image: pd.DataFrame) -> str:
    """The U-Net the context findings compare against: the first of ``CONTEXT_UNETS`` that the
    context study ran (``unet`` when it ran none, so the finding says what is missing)."""
    ran = set(per_image.loc[per_image["study"] == "context", "arch"])
    return next((name for name in CONTEXT_UNETS if name in ran), CONTEXT_UNETS[0])


#: Finding (a)'s "easy textures": the alphas in the lowest third of the study's alphas.
EASY_ALPHA_QUANTILE = 1 / 3
#: The papers' levels for finding (c), with the expected sign of Dice(level) - Dice(clean).
LEVEL_EXPECTATIONS = {"Hardest": -1, "Harder": -1, "Easier": 0, "Easiest": 0}
PAIRED_TEST = "two-sided Wilcoxon signed-rank p; percentile bootstrap 95% CI of the median"


def directional_verdict(effect: float, p_value: float, significance: float, sign: int) -> str:
    """yes / no / inconclusive for a claim that the effect has sign ``sign`` (+1 or -1)."""
    if np.isnan(p_value) or np.isnan(effect) or p_value >= significance or effect == 0:
        return INCONCLUSIVE
    return YES if np.sign(effect) == sign else NO


def noninferior_verdict(
    effect: float, ci_low: float, p_value: float, significance: float, margin: float
) -> str:
    """yes / no / inconclusive for a "does not lower" (difference >= 0) claim; module docstring."""
    if np.isnan(effect) or np.isnan(p_value):
        return INCONCLUSIVE
    if p_value < significance and effect != 0:
        return YES if effect > 0 else NO
    return YES if not np.isnan(ci_low) and ci_low >= -margin else INCONCLUSIVE


def paired_effect(differences, n_bootstrap: int, rng, min_cases: int = 1) -> dict:
    """Median, bootstrap CI (NaN below ``min_cases`` units), n and two-sided Wilcoxon p of
    per-unit paired differences."""
    d = np.asarray(differences, dtype=float)
    low, high = median_ci(d, n_bootstrap, rng, min_cases=min_cases)
    p = wilcoxon_p(d, np.zeros_like(d))[1] if len(d) else np.nan
    return dict(
        measured_effect=float(np.median(d)) if len(d) else np.nan,
        ci_low=low,
        ci_high=high,
        n=len(d),
        p_value=p,
    )


def group_effect(outside, inside, n_bootstrap: int, rng) -> dict:
    """mean(outside) - mean(inside), bootstrap CI per group, permutation-test p (two-sided)."""
    outside, inside = np.asarray(outside, float), np.asarray(inside, float)
    i = inside[rng.integers(0, len(inside), (n_bootstrap, len(inside)))].mean(axis=1)
    o = outside[rng.integers(0, len(outside), (n_bootstrap, len(outside)))].mean(axis=1)
    low, high = percentile_ci(o - i)
    test = stats.permutation_test(
        (outside, inside),
        lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        permutation_type="independent",
        vectorized=True,
        n_resamples=max(n_bootstrap, 999),
        alternative="two-sided",
        rng=rng,
    )
    return dict(
        measured_effect=float(outside.mean() - inside.mean()),
        ci_low=float(low),
        ci_high=float(high),
        n=len(outside) + len(inside),
        p_value=float(test.pvalue),
    )


def _row(finding, study, comparison, expected, statistic, **values) -> dict:
    row = dict.fromkeys(FINDINGS_COLUMNS, np.nan)
    row.update(finding=finding, study=study, comparison=comparison, expected_direction=expected)
    row.update(statistic=statistic, note="")
    row.update(values)
    return row


def _not_run(finding, study, comparison, expected, statistic, missing: str) -> dict:
    return _row(
        finding,
        study,
        comparison,
        expected,
        statistic,
        n=0,
        reproduced=NOT_RUN,
        note=missing,
    )


def _small_n_note(n: int, significance: float, min_cases: int) -> str:
    notes = []
    floor = min_attainable_p(n)
    if floor >= significance:
        notes.append(f"n = {n}: the smallest attainable p is {floor:.3g} (>= {significance:g})")
    if n < min_cases:
        notes.append(f"no CI: n = {n} < {min_cases} (analysis.min_cases)")
    return "; ".join(notes)


def _paired_row(finding, study, comparison, expected, statistic, differences, settings) -> dict:
    significance, margin = settings["significance"], settings["margin"]
    values = paired_effect(
        differences, settings["n_bootstrap"], settings["rng"], settings["min_cases"]
    )
    if expected.startswith(">= 0"):
        verdict = noninferior_verdict(
            values["measured_effect"], values["ci_low"], values["p_value"], significance, margin
        )
    else:
        sign = 1 if expected.startswith("> 0") else -1
        verdict = directional_verdict(
            values["measured_effect"], values["p_value"], significance, sign
        )
    note = _small_n_note(values["n"], significance, settings["min_cases"])
    return _row(
        finding, study, comparison, expected, statistic, reproduced=verdict, note=note, **values
    )


def _texture_test(per_image: pd.DataFrame) -> pd.DataFrame:
    rows = per_image[(per_image["study"] == "texture") & (per_image["split"] == "test")]
    return rows.assign(
        _train=pd.to_numeric(rows["train_alpha"], errors="coerce"),
        _test=pd.to_numeric(rows["test_alpha"], errors="coerce"),
    )


def finding_a(per_image: pd.DataFrame, settings: dict) -> list[dict]:
    """(a) skip connections help in-domain on easy textures."""
    finding = "(a) skip connections help in-domain on easy textures"
    texture = _texture_test(per_image)
    texture = texture[texture["_train"] == texture["_test"]]
    alphas = np.sort(texture["_test"].dropna().unique())
    easy = alphas[alphas <= np.quantile(alphas, EASY_ALPHA_QUANTILE)] if len(alphas) else alphas
    out = []
    for skip, noskip in SKIP_PAIRS:
        comparison = f"{skip} - {noskip}"
        statistic = (
            f"median over image indices of the paired in-domain Dice difference {comparison} "
            f"at alpha {', '.join(f'{a:g}' for a in easy) or '(none)'} (both directions, "
            f"seeds averaged); {PAIRED_TEST}"
        )
        rows = texture[texture["_test"].isin(easy) & texture["arch"].isin([skip, noskip])]
        missing = f"no in-domain texture rows of both {skip} and {noskip}"
        row = (finding, "texture", comparison, "> 0", statistic)
        out.append(_pair_difference(*row, rows, "dice", (skip, noskip), missing, settings))
    return out


def _pair_difference(
    finding, study, comparison, expected, statistic, rows, value, pair, missing, settings
) -> dict:
    """The paired row of ``value`` of ``pair[0]`` minus ``pair[1]`` per independent unit, or a
    "not run" row saying what is ``missing`` when the two were not both evaluated."""
    first, second = pair
    matrix = unit_matrix(rows, "arch", value)
    if {first, second} - set(matrix.columns) or matrix.empty:
        return _not_run(finding, study, comparison, expected, statistic, missing)
    diff = matrix[first] - matrix[second]
    return _paired_row(finding, study, comparison, expected, statistic, diff, settings)


def shifted_degradation(texture: pd.DataFrame) -> pd.DataFrame:
    """Texture rows tested at a harder alpha than trained, with ``degradation`` = the same
    model's in-domain Dice on the same image index minus this Dice."""
    run_image = ["dataset", "arch", "seed", "patch", "image_id"]
    own = texture[texture["_train"] == texture["_test"]]
    own = own.groupby(run_image, dropna=False)["dice"].mean().rename("in_domain_dice")
    harder = texture[texture["_test"] > texture["_train"]]
    harder = harder.merge(own.reset_index(), on=run_image, how="inner")
    return harder.assign(degradation=harder["in_domain_dice"] - harder["dice"])


def finding_b(per_image: pd.DataFrame, settings: dict) -> list[dict]:
    """(b) no-skip variants lose less when tested on harder alphas."""
    finding = "(b) no-skip variants lose less on harder test alphas than trained on"
    harder = shifted_degradation(_texture_test(per_image))
    out = []
    for skip, noskip in SKIP_PAIRS:
        comparison = f"degradation {skip} - degradation {noskip}"
        statistic = (
            "median over image indices of the paired difference of degradation (in-domain "
            f"Dice - Dice at a harder test alpha, averaged over every harder alpha), {skip} "
            f"minus {noskip}; {PAIRED_TEST}"
        )
        rows = harder[harder["arch"].isin([skip, noskip])]
        missing = f"no harder-alpha texture rows of both {skip} and {noskip}"
        row = (finding, "texture", comparison, "> 0", statistic)
        out.append(_pair_difference(*row, rows, "degradation", (skip, noskip), missing, settings))
    return out


def finding_c(per_image: pd.DataFrame, settings: dict) -> list[dict]:
    """(c) speckle lowers Dice, background blur does not (vs Unperturbed, paired per image)."""
    rows = per_image[(per_image["study"] == "perturbation") & (per_image["split"] == "test")]
    run_image = ["dataset", "arch", "seed", "patch", "test_dataset", "image_id"]
    clean = rows[(rows["perturbation"] == "none") & in_domain(rows)]
    clean = clean.groupby(run_image, dropna=False)["dice"].mean().rename("clean_dice")
    out = []
    for level, sign in LEVEL_EXPECTATIONS.items():
        finding = (
            f"(c) {'speckle' if sign < 0 else 'background blur'} ({level}) "
            f"{'lowers' if sign < 0 else 'does not lower'} Dice"
        )
        expected = "< 0" if sign < 0 else f">= 0 (non-inferior, margin {settings['margin']:g})"
        comparison = f"Dice({level}) - Dice(Unperturbed)"
        statistic = (
            f"median over test images of the paired Dice difference {comparison}, averaged "
            f"over architectures and seeds; {PAIRED_TEST}"
        )
        perturbed = rows[(rows["level"] == level) & (rows["perturbation"] != "none")]
        paired = perturbed.merge(clean.reset_index(), on=run_image, how="inner")
        paired = paired.assign(difference=paired["dice"] - paired["clean_dice"])
        matrix = unit_matrix(paired, "perturbation", "difference")
        if matrix.empty:
            out.append(
                _not_run(
                    finding,
                    "perturbation",
                    comparison,
                    expected,
                    statistic,
                    f"no {level} rows paired with clean rows",
                )
            )
            continue
        diff = matrix.mean(axis=1)
        out.append(
            _paired_row(finding, "perturbation", comparison, expected, statistic, diff, settings)
        )
    return out


def finding_d(per_image: pd.DataFrame, settings: dict) -> list[dict]:
    """(d) U-Net Dice is flat to rising with patch size (largest - smallest >= 0)."""
    finding = "(d) U-Net Dice is flat to rising with patch size"
    expected = f">= 0 (non-inferior, margin {settings['margin']:g})"
    unet = context_unet(per_image)
    rows = per_image[
        (per_image["study"] == "context")
        & (per_image["split"] == "test")
        & (per_image["arch"] == unet)
    ]
    sizes = pd.to_numeric(rows["patch"], errors="coerce")
    rows = rows.assign(patch=sizes)[sizes.notna()]
    if rows["patch"].nunique() < 2:
        statistic = (
            f"median over test images of Dice(largest patch) - Dice(smallest); {PAIRED_TEST}"
        )
        return [
            _not_run(
                finding,
                "context",
                f"{unet}: largest - smallest patch",
                expected,
                statistic,
                "fewer than two U-Net patch sizes",
            )
        ]
    small, large = rows["patch"].min(), rows["patch"].max()
    comparison = f"{unet}: Dice(patch {large:g}) - Dice(patch {small:g})"
    statistic = (
        f"median over test images of the paired U-Net Dice difference patch {large:g} - patch "
        f"{small:g} (seeds averaged); {PAIRED_TEST}"
    )
    matrix = unit_matrix(rows[rows["patch"].isin([small, large])], "patch", "dice")
    if matrix.empty:
        return [
            _not_run(
                finding,
                "context",
                comparison,
                expected,
                statistic,
                "no test image with U-Net Dice at both patch sizes",
            )
        ]
    diff = matrix[large] - matrix[small]
    return [_paired_row(finding, "context", comparison, expected, statistic, diff, settings)]


def _group_row(finding, comparison, statistic, d: pd.Series, outside: pd.Series, settings):
    """Finding (e)'s row for one (dataset, patch, model): d per unit and its outside flag."""
    d_out, d_in = d[outside].to_numpy(), d[~outside].to_numpy()
    min_cases, significance = settings["min_cases"], settings["significance"]
    if min(len(d_out), len(d_in)) < min_cases:
        effect = d_out.mean() - d_in.mean() if len(d_out) and len(d_in) else np.nan
        return _row(
            finding,
            "context",
            comparison,
            "> 0",
            statistic,
            measured_effect=effect,
            n=len(d_out) + len(d_in),
            reproduced=INCONCLUSIVE,
            note=f"too few cases: {len(d_in)} inside and {len(d_out)} outside the "
            f"training range, a test needs >= {min_cases} per side",
        )
    values = group_effect(d_out, d_in, settings["n_bootstrap"], settings["rng"])
    verdict = directional_verdict(values["measured_effect"], values["p_value"], significance, 1)
    note = f"{len(d_in)} images inside, {len(d_out)} outside the training range"
    return _row(
        finding, "context", comparison, "> 0", statistic, reproduced=verdict, note=note, **values
    )


def finding_e(per_image: pd.DataFrame, fbr_ranges, settings: dict) -> list[dict]:
    """(e) attention models lose more than U-Net on out-of-range test cases."""
    finding = "(e) attention models lose more than U-Net outside the training FBR range"
    has_ranges = fbr_ranges is not None and not fbr_ranges.empty
    rows = label_out_of_range(per_image, fbr_ranges) if has_ranges else pd.DataFrame()
    unet = context_unet(per_image)
    out = []
    for model in ATTENTION_ARCHS:
        statistic = (
            f"(out-of-range drop of {model}) - (that of {unet}) = mean over outside images - "
            f"mean over inside images of d = Dice_{unet} - Dice_{model} (seeds averaged); "
            "two-sided permutation test p; bootstrap 95% CI resampling each side"
        )
        pair = rows[rows["arch"].isin([unet, model])] if len(rows) else rows
        if len(pair) == 0 or {unet, model} - set(pair["arch"]):
            missing = (
                "no training-patch FBR ranges"
                if not has_ranges
                else f"no context test rows of both {unet} and {model}"
            )
            out.append(
                _not_run(
                    finding, "context", f"drop {model} - drop {unet}", "> 0", statistic, missing
                )
            )
            continue
        for (dataset, patch), group in pair.groupby(["dataset", "patch"], sort=True):
            comparison = f"{dataset}, patch {patch}: drop {model} - drop {unet}"
            matrix = unit_matrix(group, "arch", "dice")
            if {unet, model} - set(matrix.columns) or matrix.empty:
                out.append(
                    _not_run(
                        finding,
                        "context",
                        comparison,
                        "> 0",
                        statistic,
                        f"no test image scored by both {unet} and {model}",
                    )
                )
                continue
            flags = group.assign(unit=independent_unit(group)).groupby("unit")["outside"].first()
            outside = flags.reindex(matrix.index).astype(bool)
            d = matrix[unet] - matrix[model]
            out.append(_group_row(finding, comparison, statistic, d, outside, settings))
    return out


def findings(
    per_image: pd.DataFrame,
    fbr_ranges: pd.DataFrame | None,
    significance: float = 0.05,
    margin: float = 0.02,
    min_cases: int = 10,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The findings table (module docstring), one row per finding x comparison.

    Args:
        per_image: contract-4 rows of every study present.
        fbr_ranges: ``context.training_fbr_range`` (None: finding (e) is not run).
        significance: level of the tests (``analysis.significance``).
        margin: non-inferiority margin in Dice (``analysis.noninferiority_margin``).
        min_cases: fewest images per side for finding (e) (``analysis.min_cases``).
        n_bootstrap, seed: bootstrap resamples and their seed.
    """
    settings = dict(
        significance=significance,
        margin=margin,
        min_cases=min_cases,
        n_bootstrap=n_bootstrap,
        rng=np.random.default_rng(seed),
    )
    rows = finding_a(per_image, settings) + finding_b(per_image, settings)
    rows += finding_c(per_image, settings) + finding_d(per_image, settings)
    rows += finding_e(per_image, fbr_ranges, settings)
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)


def findings_statements(table: pd.DataFrame) -> list[str]:
    """One plain sentence per findings row."""
    lines = []
    for row in table.itertuples():
        head = f"{row.finding} [{row.comparison}]: {row.reproduced}"
        if row.reproduced == NOT_RUN:
            lines.append(f"{head}: {row.note}.")
            continue
        ci = f", 95% CI {row.ci_low:+.3f} to {row.ci_high:+.3f}" if not np.isnan(row.ci_low) else ""
        p = f", p = {row.p_value:.3g}" if not np.isnan(row.p_value) else ""
        note = f"; {row.note}" if row.note else ""
        effect = (
            "not computable" if np.isnan(row.measured_effect) else f"{row.measured_effect:+.3f}"
        )
        lines.append(
            f"{head}: effect {effect} (expected {row.expected_direction}){ci}, "
            f"n = {row.n}{p}{note}."
        )
    return lines
