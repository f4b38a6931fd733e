"""The two papers' findings, re-tested on whatever rows a run produced (``findings.csv``).

Each finding is stated as the papers state it: a contrast between architectures, across their
training runs (seeds) and the independent test units (``segrobust.analysis.units``). Every row is
a linear contrast over arms of training runs (``segrobust.analysis.replicates``): its effect is
the contrast's mean, its interval the t interval of the same mean with run-to-run and image
variance (level ``1 - significance``), so the verdict and the effect estimate one quantity. A row
states its unit, the number of units and of runs per arm (the fewest), the effect, the CI, the
t df and p, and the verdict ``reproduced``:

* superiority claims ("> 0"): ``yes`` when the CI lies above ``+min_effect``
  (``analysis.min_effect``), ``no`` when it lies below it (the note says whether the effect is at
  most negligible or opposite), else ``inconclusive``;
* non-inferiority claims (">= -margin", ``analysis.noninferiority_margin``): ``yes`` when the
  CI's lower end is above ``-margin``, ``no`` when its upper end is below ``-margin``, else
  ``inconclusive``;
* ``inconclusive`` too when the interval is undefined (one training run in an arm: the run
  variance cannot be estimated) or there are fewer than ``analysis.min_cases`` units;
* ``not run``: the rows the finding needs are absent (the note says which).

(a) texture, the skip benefit's change with complexity (an interaction): (skip - noskip)
    in-domain Dice at the easiest alphas (the lowest third) minus at the hardest (the highest
    third), > 0, for U-Net / No-skip U-Net and V-Net / No-skip V-Net. Arms: (architecture,
    alphas) run sets, units the shared image indices.
(b) texture, no-skip variants lose less on harder test alphas: per run and image index the
    degradation (in-domain Dice - Dice at a harder test alpha, averaged over the harder alphas),
    skip arm minus no-skip arm, > 0.
(c) perturbation, skip networks degrade more than their no-skip twins (an interaction): per run
    and test image, Dice(Unperturbed) - Dice(level), skip minus no-skip, > 0, at each of the
    papers' levels (speckle: Hardest, Harder; background blur: Easier, Easiest). The main effect
    "speckle lowers Dice" (degradation averaged over the architectures, > 0) is a separate row,
    labelled as such.
(d) context, larger context wins: per architecture, Dice at the largest patch minus at the
    smallest, > 0 (arms: (architecture, patch) run sets); and for the U-Net the papers' weaker
    reading, non-inferiority (>= -margin).
(e) context, attention models lose more outside the training FBR range: per (dataset, patch,
    model in attention_unet / unetr), the model's out-of-range Dice drop minus the U-Net's, > 0.
    With d = Dice_unet - Dice_model per unit this is mean_outside(d) - mean_inside(d): two unit
    sets (images inside and outside the range), one run set per architecture shared by both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segrobust.analysis import replicates as rep
from segrobust.analysis.context import label_out_of_range
from segrobust.analysis.units import independent_unit, run_unit_matrix, runs_by_unit, unit_noun
from segrobust.contract import in_domain

YES, NO, INCONCLUSIVE, NOT_RUN = rep.YES, rep.NO, rep.INCONCLUSIVE, "not run"
FINDINGS_COLUMNS = [
    "finding", "study", "comparison", "expected_direction", "measured_effect", "ci_low",
    "ci_high", "df", "p_value", "n_units", "n_runs", "reproduced", "unit", "statistic", "note",
]  # fmt: skip
SKIP_PAIRS = [("unet", "noskip_unet"), ("vnet", "noskip_vnet")]
ATTENTION_ARCHS = ["attention_unet", "unetr"]
#: The context study's U-Net: the skip-connection study's ``unet``, or MONAI's residual UNet
#: (``monai_unet``, the context paper's network) when a config runs that one instead.
CONTEXT_UNETS = ("unet", "monai_unet")
#: Finding (a)'s easiest / hardest alphas: the lowest / highest third of the study's alphas.
ALPHA_THIRD = 1 / 3
#: The papers' levels for finding (c) and the perturbation that defines each.
LEVELS = {"Hardest": "speckle", "Harder": "speckle", "Easier": "background blur",
          "Easiest": "background blur"}  # fmt: skip
#: The levels whose main effect (the level lowers Dice) is reported as its own row.
MAIN_EFFECT_LEVELS = ("Hardest", "Harder")
SUPERIORITY, NONINFERIORITY = "superiority", "noninferiority"
METHOD = (
    "mean over training runs and units; t interval with run-to-run and image variance, "
    "Welch-Satterthwaite df (docs/statistics.md)"
)


def context_unet(per_image: pd.DataFrame) -> str:
    """The U-Net the context findings compare against: the first of ``CONTEXT_UNETS`` that the
    context study ran (``unet`` when it ran none, so the finding says what is missing)."""
    ran = set(per_image.loc[per_image["study"] == "context", "arch"])
    return next((name for name in CONTEXT_UNETS if name in ran), CONTEXT_UNETS[0])


def expected_text(claim: str, settings: dict) -> str:
    if claim == NONINFERIORITY:
        return f">= -{settings['margin']:g} (non-inferior, margin {settings['margin']:g})"
    return f"> 0 (by more than min_effect {settings['min_effect']:g})"


def _row(finding, study, comparison, claim, statistic, settings, **values) -> dict:
    row = dict.fromkeys(FINDINGS_COLUMNS, np.nan)
    row.update(finding=finding, study=study, comparison=comparison, statistic=statistic,
               expected_direction=expected_text(claim, settings), note="",
               unit=f"training runs (seeds) x {unit_noun(study)}")  # fmt: skip
    row.update(values)
    return row


def _not_run(finding, study, comparison, claim, statistic, settings, missing: str) -> dict:
    return _row(finding, study, comparison, claim, statistic, settings, n_units=0, n_runs=0,
                reproduced=NOT_RUN, note=missing)  # fmt: skip


def contrast_verdict(contrast: rep.Contrast, claim: str, settings: dict) -> tuple[str, str]:
    """(verdict, note) of a contrast for a superiority or non-inferiority claim (module
    docstring); fewer than ``min_cases`` units in a unit set make it inconclusive."""
    fewest = min(contrast.n_units.values()) if contrast.n_units else 0
    if contrast.defined and fewest < settings["min_cases"]:
        return INCONCLUSIVE, (
            f"too few units: {fewest} < analysis.min_cases = {settings['min_cases']}"
        )
    if claim == NONINFERIORITY:
        margin = settings["margin"]
        return rep.noninferiority(contrast, margin), rep.noninferiority_note(contrast, margin)
    effect = settings["min_effect"]
    return rep.superiority(contrast, effect), rep.superiority_note(contrast, effect)


def _contrast_row(finding, study, comparison, claim, statistic, arms, settings, note="") -> dict:
    contrast = rep.linear_contrast(arms, settings["level"])
    verdict, why = contrast_verdict(contrast, claim, settings)
    return _row(
        finding, study, comparison, claim, f"{statistic}; {METHOD}", settings,
        measured_effect=contrast.estimate, ci_low=contrast.ci_low, ci_high=contrast.ci_high,
        df=contrast.df, p_value=contrast.p_value, n_units=contrast.total_units,
        n_runs=contrast.fewest_runs, reproduced=verdict,
        note="; ".join(part for part in (why, note) if part),
    )  # fmt: skip


def _pair_arms(rows, value, first, second, label="") -> list[rep.Arm] | None:
    """Arms ``first`` (+1) and ``second`` (-1) of ``value`` per run and unit, paired per test
    image (complete cases), or None when the two were not both evaluated."""
    matrix = run_unit_matrix(rows, "arch", value)
    present = set(matrix.columns.get_level_values(0)) if not matrix.empty else set()
    if matrix.empty or {first, second} - present:
        return None
    return [
        rep.Arm(runs_by_unit(matrix, first), 1.0, f"{first}{label}"),
        rep.Arm(runs_by_unit(matrix, second), -1.0, f"{second}{label}"),
    ]


def _texture_test(per_image: pd.DataFrame) -> pd.DataFrame:
    rows = per_image[(per_image["study"] == "texture") & (per_image["split"] == "test")]
    return rows.assign(
        _train=pd.to_numeric(rows["train_alpha"], errors="coerce"),
        _test=pd.to_numeric(rows["test_alpha"], errors="coerce"),
    )


def _alphas(values) -> str:
    return ", ".join(f"{a:g}" for a in values) or "(none)"


def finding_a(per_image: pd.DataFrame, settings: dict) -> list[dict]:
    """(a) the skip benefit shrinks as the texture task gets harder (interaction)."""
    finding = "(a) the skip-connection benefit is larger on easy textures than on hard ones"
    texture = _texture_test(per_image)
    texture = texture[texture["_train"] == texture["_test"]]
    alphas = np.sort(texture["_test"].dropna().unique())
    easy = alphas[alphas <= np.quantile(alphas, ALPHA_THIRD)] if len(alphas) else alphas
    hard = alphas[alphas >= np.quantile(alphas, 1 - ALPHA_THIRD)] if len(alphas) else alphas
    out = []
    for skip, noskip in SKIP_PAIRS:
        comparison = (
            f"({skip} - {noskip}) at alpha {_alphas(easy)} - ({skip} - {noskip}) at alpha "
            f"{_alphas(hard)}"
        )
        statistic = (
            f"in-domain Dice, {skip} minus {noskip}, at the easiest alphas minus at the hardest "
            "(both directions pooled)"
        )
        head = (finding, "texture", comparison, SUPERIORITY, statistic, settings)
        pair = texture[texture["arch"].isin([skip, noskip])]
        easy_arms = _pair_arms(pair[pair["_test"].isin(easy)], "dice", skip, noskip, " easy")
        hard_arms = _pair_arms(pair[pair["_test"].isin(hard)], "dice", skip, noskip, " hard")
        if len(alphas) < 2 or easy_arms is None or hard_arms is None:
            missing = f"no in-domain texture rows of both {skip} and {noskip} at two alphas"
            out.append(_not_run(*head, missing))
            continue
        hard_arms = [rep.Arm(a.values, -a.weight, a.runs, a.units) for a in hard_arms]
        out.append(_contrast_row(*head[:5], easy_arms + hard_arms, settings))
    return out


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
            "per run and image index, in-domain Dice minus Dice at a harder test alpha "
            f"(averaged over the harder alphas), {skip} minus {noskip}"
        )
        head = (finding, "texture", comparison, SUPERIORITY, statistic, settings)
        arms = _pair_arms(harder[harder["arch"].isin([skip, noskip])], "degradation", skip, noskip)
        if arms is None:
            out.append(_not_run(*head, f"no harder-alpha texture rows of both {skip} and {noskip}"))
            continue
        out.append(_contrast_row(*head[:5], arms, settings))
    return out


def perturbation_degradation(per_image: pd.DataFrame) -> pd.DataFrame:
    """Perturbed test rows with ``degradation`` = the same run's Dice on the clean copy of the
    same image minus this Dice (a within-run contrast, per image)."""
    rows = per_image[(per_image["study"] == "perturbation") & (per_image["split"] == "test")]
    run_image = ["dataset", "arch", "seed", "patch", "test_dataset", "image_id"]
    clean = rows[(rows["perturbation"] == "none") & in_domain(rows)]
    clean = clean.groupby(run_image, dropna=False)["dice"].mean().rename("clean_dice")
    perturbed = rows[rows["perturbation"] != "none"]
    paired = perturbed.merge(clean.reset_index(), on=run_image, how="inner")
    return paired.assign(degradation=paired["clean_dice"] - paired["dice"])


def finding_c(per_image: pd.DataFrame, settings: dict) -> list[dict]:
    """(c) skip networks degrade more than their no-skip twins; the speckle main effect."""
    degradation = perturbation_degradation(per_image)
    out = []
    for level, perturbation in LEVELS.items():
        rows = degradation[degradation["level"] == level]
        finding = f"(c) skip networks degrade more than their no-skip twins under {perturbation}"
        for skip, noskip in SKIP_PAIRS:
            comparison = (
                f"{level}: [Dice(Unperturbed) - Dice({level})] {skip} - the same of {noskip}"
            )
            statistic = (
                f"per run and test image, Dice on the clean image minus Dice at {level}, "
                f"{skip} minus {noskip}"
            )
            head = (finding, "perturbation", comparison, SUPERIORITY, statistic, settings)
            arms = _pair_arms(rows[rows["arch"].isin([skip, noskip])], "degradation", skip, noskip)
            if arms is None:
                missing = f"no {level} rows of both {skip} and {noskip} paired with clean rows"
                out.append(_not_run(*head, missing))
                continue
            out.append(_contrast_row(*head[:5], arms, settings))
    for level in MAIN_EFFECT_LEVELS:
        out.append(_main_effect(degradation[degradation["level"] == level], level, settings))
    return out


def _main_effect(rows: pd.DataFrame, level: str, settings: dict) -> dict:
    """The level's main effect: degradation averaged over the architectures, each arch its own
    run set (equal weights), > 0."""
    finding = f"(c, main effect) {LEVELS[level]} ({level}) lowers Dice"
    comparison = f"Dice(Unperturbed) - Dice({level}), architectures averaged"
    statistic = (
        f"per run and test image, Dice on the clean image minus Dice at {level}, averaged over "
        "the architectures with equal weights (a main effect, not an architecture comparison)"
    )
    head = (finding, "perturbation", comparison, SUPERIORITY, statistic, settings)
    matrix = run_unit_matrix(rows, "arch", "degradation")
    if matrix.empty:
        return _not_run(*head, f"no {level} rows paired with clean rows")
    archs = list(matrix.columns.get_level_values(0).unique())
    arms = [rep.Arm(runs_by_unit(matrix, a), 1.0 / len(archs), a) for a in archs]
    return _contrast_row(*head[:5], arms, settings, note=f"architectures: {', '.join(archs)}")


def finding_d(per_image: pd.DataFrame, settings: dict) -> list[dict]:
    """(d) larger context wins: Dice at the largest patch minus at the smallest, per arch."""
    finding = "(d) larger context (patch size) gives higher Dice"
    rows = per_image[(per_image["study"] == "context") & (per_image["split"] == "test")]
    rows = rows[in_domain(rows)]
    sizes = pd.to_numeric(rows["patch"], errors="coerce")
    rows = rows.assign(patch=sizes)[sizes.notna()]
    unet = context_unet(per_image)
    archs = sorted(set(rows["arch"])) or [unet]
    out = []
    for arch in archs:
        own = rows[rows["arch"] == arch]
        claims = [SUPERIORITY] + ([NONINFERIORITY] if arch == unet else [])
        if own["patch"].nunique() < 2:
            for claim in claims:
                head = (finding, "context", f"{arch}: largest - smallest patch", claim)
                statistic = "Dice at the largest patch minus at the smallest"
                out.append(_not_run(*head, statistic, settings, f"fewer than two {arch} patches"))
            continue
        small, large = own["patch"].min(), own["patch"].max()
        comparison = f"{arch}: Dice(patch {large:g}) - Dice(patch {small:g})"
        statistic = f"{arch} Dice per run and test image, patch {large:g} minus patch {small:g}"
        matrix = run_unit_matrix(own[own["patch"].isin([small, large])], "patch", "dice")
        for claim in claims:
            head = (finding, "context", comparison, claim, statistic)
            if matrix.empty:
                missing = f"no test image with {arch} Dice at both patch sizes"
                out.append(_not_run(*head, settings, missing))
                continue
            arms = [
                rep.Arm(runs_by_unit(matrix, large), 1.0, f"{arch} patch {large:g}"),
                rep.Arm(runs_by_unit(matrix, small), -1.0, f"{arch} patch {small:g}"),
            ]
            out.append(_contrast_row(*head, arms, settings))
    return out


def _drop_arms(matrix: pd.DataFrame, outside: pd.Series, unet: str, model: str) -> list[rep.Arm]:
    """Finding (e)'s four arms: each architecture inside and outside the range (module
    docstring), one run set per architecture, one unit set per side."""
    out_units, in_units = outside.index[outside], outside.index[~outside]
    arms = []
    for arch, sign in ((unet, 1.0), (model, -1.0)):
        runs = runs_by_unit(matrix, arch)
        arms.append(rep.Arm(runs[out_units], sign, arch, "outside"))
        arms.append(rep.Arm(runs[in_units], -sign, arch, "inside"))
    return arms


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
            f"mean over inside images of d = Dice_{unet} - Dice_{model}, per run"
        )
        pair = rows[rows["arch"].isin([unet, model])] if len(rows) else rows
        if len(pair) == 0 or {unet, model} - set(pair["arch"]):
            missing = (
                "no training-patch FBR ranges"
                if not has_ranges
                else f"no context test rows of both {unet} and {model}"
            )
            head = (finding, "context", f"drop {model} - drop {unet}", SUPERIORITY, statistic)
            out.append(_not_run(*head, settings, missing))
            continue
        for (dataset, patch), group in pair.groupby(["dataset", "patch"], sort=True):
            comparison = f"{dataset}, patch {patch}: drop {model} - drop {unet}"
            head = (finding, "context", comparison, SUPERIORITY, statistic)
            matrix = run_unit_matrix(group, "arch", "dice")
            present = set(matrix.columns.get_level_values(0)) if not matrix.empty else set()
            if {unet, model} - present:
                missing = f"no test image scored by every run of both {unet} and {model}"
                out.append(_not_run(*head, settings, missing))
                continue
            flags = group.assign(unit=independent_unit(group)).groupby("unit")["outside"].first()
            outside = flags.reindex(matrix.index).astype(bool)
            n_out, n_in = int(outside.sum()), int((~outside).sum())
            sides = f"{n_in} images inside, {n_out} outside the training range"
            if min(n_out, n_in) < settings["min_cases"]:
                out.append(
                    _row(
                        *head,
                        settings,
                        n_units=n_in + n_out,
                        reproduced=INCONCLUSIVE,
                        n_runs=int(min(len(runs_by_unit(matrix, a)) for a in (unet, model))),
                        note=f"too few cases: {sides}; a contrast needs >= "
                        f"{settings['min_cases']} per side (analysis.min_cases)",
                    )  # fmt: skip
                )
                continue
            arms = _drop_arms(matrix, outside, unet, model)
            out.append(_contrast_row(*head, arms, settings, note=sides))
    return out


def findings(
    per_image: pd.DataFrame,
    fbr_ranges: pd.DataFrame | None,
    significance: float = 0.05,
    margin: float = 0.02,
    min_cases: int = 10,
    min_effect: float = 0.01,
) -> pd.DataFrame:
    """The findings table (module docstring), one row per finding x comparison.

    Args:
        per_image: contract-4 rows of every study present.
        fbr_ranges: ``context.training_fbr_range`` (None: finding (e) is not run).
        significance: 1 - the confidence level of the intervals (``analysis.significance``).
        margin: non-inferiority margin in Dice (``analysis.noninferiority_margin``).
        min_cases: fewest units in a unit set for a verdict (``analysis.min_cases``).
        min_effect: the smallest relevant Dice difference (``analysis.min_effect``).
    """
    settings = dict(level=1.0 - significance, margin=margin, min_cases=min_cases,
                    min_effect=min_effect)  # fmt: skip
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
        ci = f", CI {row.ci_low:+.3f} to {row.ci_high:+.3f}" if not np.isnan(row.ci_low) else ""
        p = f", t df {row.df:.1f}, p = {row.p_value:.2g}" if not np.isnan(row.p_value) else ""
        note = f"; {row.note}" if row.note else ""
        effect = (
            "not computable" if np.isnan(row.measured_effect) else f"{row.measured_effect:+.3f}"
        )
        lines.append(
            f"{head}: mean effect {effect} (expected {row.expected_direction}){ci}{p}; "
            f"{row.n_runs} runs per arm x {row.n_units} units ({row.unit}){note}."
        )
    return lines
