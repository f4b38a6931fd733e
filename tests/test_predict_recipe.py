"""predict follows the recipe: the regime ranges the analysis records, how a new image is
mapped to a regime (validated on real perturbed copies), and which model the regime's decision
picks. The end-to-end batch with trained models is in test_predict.py."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from segrobust.analysis.recipe import RECIPE_COLUMNS
from segrobust.analysis.regime_ranges import REGIME_RANGE_COLUMNS, regime_ranges
from segrobust.analysis.regimes import perturbation_regimes
from segrobust.contract import PER_IMAGE_COLUMNS
from segrobust.data.textures import blend_textures, texture_case
from segrobust.evaluation.label_free import noise_sigma
from segrobust.evaluation.noise_level import noise_brightness_ratio
from segrobust.perturb.catalog import PERTURBATIONS
from segrobust.predict.model_choice import (
    BY_EQUIVALENCE,
    BY_LEADER,
    BY_RECOMMENDATION,
    FALLBACK,
    ONLY_MODEL,
    Candidate,
    choose_model,
)
from segrobust.predict.recipe_lookup import RANGES_FILE, Measured, StudyRecipe


def _per_image(rows: list[dict]) -> pd.DataFrame:
    base = dict(split="test", seed=1, patch="full", group="", dice=0.8, level="")
    return pd.DataFrame([{**base, **r} for r in rows]).reindex(columns=list(PER_IMAGE_COLUMNS))


# --- mapping a new image to a regime ---------------------------------------------------------


def _write(tmp_path, recipe_rows: list[dict], ranges: pd.DataFrame):
    base = dict(
        regime_kind="perturbation",
        equivalent="",
        leader="unet",
        mean_dice=0.8,
        reason="",
        sentence="",
    )
    recipe = pd.DataFrame([{**base, **r} for r in recipe_rows]).reindex(columns=RECIPE_COLUMNS)
    recipe.to_csv(tmp_path / "recipe.csv", index=False)
    ranges.to_csv(tmp_path / RANGES_FILE, index=False)
    return tmp_path / "recipe.csv"


def _measured(noise=0.1, ratio=1.0, complexity=0.5, fg=0.1):
    return Measured(complexity, noise, ratio, fg, mask="the predicted mask")


def _observed(regime, dataset="demo", **stats):
    """regime_ranges rows of a perturbation regime: statistic -> (low, high, mean, sd)."""
    return [
        dict(
            study="perturbation",
            regime_kind="perturbation",
            regime=regime,
            dataset=dataset,
            patch="",
            statistic=name,
            rule="observed",
            low=lo,
            high=hi,
            mean=mean,
            sd=sd,
            n_images=30,
        )
        for name, (lo, hi, mean, sd) in stats.items()
    ]


def test_a_perturbation_image_maps_inside_the_observed_ranges_nearest_when_several(tmp_path):
    ranges = pd.DataFrame(
        _observed("speckle severity 2", noise_sigma=(0.08, 0.14, 0.11, 0.01))
        + _observed("speckle severity 3", noise_sigma=(0.12, 0.19, 0.15, 0.015))
        + _observed("speckle severity 3", dataset="other", noise_sigma=(0.5, 0.6, 0.55, 0.01))
    )
    path = _write(
        tmp_path,
        [
            dict(
                study="perturbation",
                regime="speckle severity 2",
                decision="recommended",
                recommended="unet",
            ),
            dict(
                study="perturbation",
                regime="speckle severity 3",
                decision="recommended",
                recommended="noskip_unet",
            ),
            dict(
                study="texture",
                regime_kind="complexity",
                regime="complexity 0-9 bits",
                decision="recommended",
                recommended="unetpp",
            ),
        ],
        ranges,
    )
    recipe = StudyRecipe.read(path, "perturbation", "demo")
    only = recipe.answer(_measured(noise=0.09))
    assert only.regime.label == "speckle severity 2"
    assert only.rule == "noise 0.09 within 0.08 to 0.14"
    both = recipe.answer(_measured(noise=0.135))  # inside both: nearer severity 3 (z 1 vs 2.5)
    assert both.regime.label == "speckle severity 3" and both.recommended_arch == "noskip_unet"
    assert both.rule.endswith("(nearest by standardised distance of 2 regimes holding it)")
    none = recipe.answer(_measured(noise=0.3))
    assert none.regime is None
    assert none.rule == "noise 0.3: outside every regime's observed range on demo: no regime"
    # a value on a bound is inside; one just beside it is printed with the digits that show it
    assert recipe.answer(_measured(noise=0.08)).regime.label == "speckle severity 2"
    below = recipe.answer(_measured(noise=0.08 - 1e-9))
    assert below.regime is None and below.rule.startswith("noise 0.079999999: outside")
    # the texture study's regime is never quoted for a perturbation model
    assert "unetpp" not in {d.recommended for d in recipe.decisions.values()}
    assert StudyRecipe.read(path, "perturbation", "absent").answer(_measured()).rule == (
        "the recipe has no perturbation regime measured on dataset absent: no regime"
    )


def test_complexity_bins_say_the_mask_and_context_uses_the_models_patch(tmp_path):
    ranges = pd.DataFrame(
        [
            dict(
                study="texture",
                regime_kind="complexity",
                regime="complexity 0.10-0.50 bits",
                dataset="",
                patch="",
                statistic="complexity",
                rule="bin",
                low=0.1,
                high=0.5,
            ),
            dict(
                study="texture",
                regime_kind="complexity",
                regime="complexity 0.50-1.00 bits",
                dataset="",
                patch="",
                statistic="complexity",
                rule="bin",
                low=0.5,
                high=1.0,
            ),
            dict(
                study="context",
                regime_kind="context",
                regime="in16",
                dataset="spheres",
                patch="16",
                statistic="fg_ratio",
                rule="inside",
                low=0.05,
                high=0.12,
            ),
            dict(
                study="context",
                regime_kind="context",
                regime="out16",
                dataset="spheres",
                patch="16",
                statistic="fg_ratio",
                rule="outside",
                low=0.05,
                high=0.12,
            ),
        ]
    ).reindex(columns=REGIME_RANGE_COLUMNS)
    rows = [
        dict(
            study="texture",
            regime_kind="complexity",
            regime=r,
            decision="recommended",
            recommended="unet",
        )
        for r in ranges.regime[:2]
    ]
    rows += [
        dict(study="context", regime_kind="context", regime=r, decision="inconclusive")
        for r in ("in16", "out16")
    ]
    path = _write(tmp_path, rows, ranges)
    texture = StudyRecipe.read(path, "texture", "tex-0.5")
    first = texture.answer(_measured(complexity=0.1))  # the first bin includes its lower edge
    assert first.regime.label == "complexity 0.10-0.50 bits"
    assert first.rule == "complexity 0.1 bits within 0.1 to 0.5 bits under the predicted mask"
    assert texture.answer(_measured(complexity=0.5)).regime.label.startswith("complexity 0.10")
    outside = texture.answer(_measured(complexity=1.2)).rule
    assert (
        outside
        == "complexity 1.2 bits outside the bins' 0.1 to 1 bits under the predicted mask: no regime"
    )
    assert "undefined" in texture.answer(_measured(complexity=math.nan)).rule
    context = StudyRecipe.read(path, "context", "spheres")
    assert context.answer(_measured(fg=0.2), patch="16").regime.label == "out16"
    assert context.answer(_measured(fg=0.1), patch="16").regime.label == "in16"
    assert (
        "no context regime of dataset spheres at patch 32"
        in context.answer(_measured(), patch="32").rule
    )


def _texture_image(index: int):
    mask, fg, bg = texture_case(
        index,
        image_size=64,
        foreground="brick",
        background="grass",
        irregularity=0.3,
        radius=0.25,
        seed=0,
    )
    return blend_textures(fg, bg, mask, alpha=0.5, direction="background"), mask


PERTURBED = ("speckle", "gaussian_noise", "background_blur", "blur")


def _copies(indices):
    """(perturbation, severity, image, label) of each image, clean and at every severity of
    each perturbation, as perturb_test_split writes them."""
    for i in indices:
        image, label = _texture_image(i)
        yield "none", 0, image, label
        for name in PERTURBED:
            for severity in range(1, 6):
                rng = np.random.default_rng([i, severity, PERTURBED.index(name)])
                yield (
                    name,
                    severity,
                    PERTURBATIONS.get(name).apply(image, label, severity, rng),
                    label,
                )


def test_perturbed_copies_land_in_a_regime_with_the_same_recommendation(tmp_path):
    """The mapping, validated on real perturbed copies of the default study's images (64 px
    brick on grass, alpha 0.5): the regime ranges are measured on 30 test images at every
    severity of four perturbations, as the evaluation measures them; 30 other images are
    perturbed the same way and placed as predict places a new image. The recipe recommends the
    No-skip U-Net from speckle and Gaussian noise severity 3 on and the U-Net elsewhere, so a
    copy mapped to a neighbouring severity across that boundary, or to the other noise at the
    same level, is counted wrong.

    Measured: 98.9% of the copies that fall in a regime land in one with their own
    recommendation (speckle severity 3 is the weakest, 87%: its noise overlaps severities 2 and
    4); 10% fall in none (two statistics must each lie inside the range of 30 images: an image
    of the same distribution is outside one with probability about 2 x 2/31 = 13%) and get
    the best calibrated model."""
    rows = []
    for i, (name, severity, image, _) in enumerate(_copies(range(30))):
        rows.append(
            dict(
                study="perturbation",
                dataset="demo",
                test_dataset="demo",
                arch="unet",
                condition=f"{name}-{severity}",
                perturbation=name,
                severity=severity,
                image_id=f"i{i // 21}",
                noise_sigma=noise_sigma(image),
                noise_brightness_ratio=noise_brightness_ratio(image),
            )
        )
    regimes = perturbation_regimes(_per_image(rows))

    def recommended(name, severity):
        return "noskip_unet" if name in ("speckle", "gaussian_noise") and severity >= 3 else "unet"

    decisions = [
        dict(
            study="perturbation",
            regime=r.label,
            decision="recommended",
            recommended=recommended(r.rows.perturbation.iloc[0], r.rows.severity.iloc[0]),
        )
        for r in regimes
    ]
    recipe = StudyRecipe.read(
        _write(tmp_path, decisions, regime_ranges(regimes)), "perturbation", "demo"
    )
    outcome = []
    for name, severity, image, _ in _copies(range(100, 130)):
        # complexity and foreground ratio need a predicted mask; perturbation regimes use neither
        measured = Measured(
            math.nan, noise_sigma(image), noise_brightness_ratio(image), math.nan, "no mask"
        )
        answer = recipe.answer(measured)
        outcome.append(
            dict(
                name=name,
                severity=severity,
                mapped=answer.regime is not None,
                same=answer.recommended_arch == recommended(name, severity),
            )
        )
    outcome = pd.DataFrame(outcome)
    mapped = outcome[outcome.mapped]
    assert mapped.same.mean() >= 0.97, mapped.groupby(["name", "severity"]).same.mean()
    assert 1 - outcome.mapped.mean() <= 0.2
    strongest = mapped[(mapped.name == "speckle") & (mapped.severity == 5)]
    assert len(strongest) >= 20 and strongest.same.all()


# --- choosing the model ----------------------------------------------------------------------

MODELS = [
    Candidate("unet", "full", 0.90),
    Candidate("noskip_unet", "full", 0.80),
    Candidate("vnet", "full", 0.85),
]


@pytest.fixture
def speckle_recipe(tmp_path):
    ranges = pd.DataFrame(
        _observed("speckle severity 5", noise_sigma=(0.18, 0.27, 0.22, 0.02))
        + _observed("blur severity 1", noise_sigma=(0.004, 0.008, 0.006, 0.001))
        + _observed("gamma severity 1", noise_sigma=(0.03, 0.05, 0.04, 0.005))
        + _observed("gamma severity 2", noise_sigma=(0.06, 0.07, 0.065, 0.003))
    )
    return StudyRecipe.read(
        _write(
            tmp_path,
            [
                dict(
                    study="perturbation",
                    regime="speckle severity 5",
                    decision="recommended",
                    recommended="noskip_unet",
                ),
                dict(
                    study="perturbation",
                    regime="blur severity 1",
                    decision="equivalent",
                    equivalent="noskip_unet, vnet",
                ),
                dict(
                    study="perturbation",
                    regime="gamma severity 1",
                    decision="inconclusive",
                    reason="the runs disagree",
                ),
                dict(
                    study="perturbation",
                    regime="gamma severity 2",
                    decision="recommended",
                    recommended="attention_unet",
                ),
            ],
            ranges,
        ),
        "perturbation",
        "demo",
    )


def test_the_recommended_architecture_segments_and_the_reason_says_which_rule(speckle_recipe):
    choice = choose_model(MODELS, speckle_recipe, lambda: _measured(noise=0.21))
    assert (choice.index, choice.how) == (1, BY_RECOMMENDATION)
    assert choice.reason == (
        "speckle noise severity 5 regime: noise 0.21 within 0.18 to 0.27 -> No-skip U-Net, "
        "recommended there"
    )


def test_an_equivalent_set_uses_its_best_calibrated_member(speckle_recipe):
    choice = choose_model(MODELS, speckle_recipe, lambda: _measured(noise=0.006))
    assert (choice.index, choice.how) == (2, BY_EQUIVALENCE)  # V-Net 0.85 over No-skip 0.80
    assert choice.reason.endswith(
        "-> V-Net, the best calibrated (calibration Dice 0.850) of No-skip U-Net, V-Net, "
        "equivalent there"
    )


def test_an_inconclusive_regime_uses_its_leader_and_says_it_is_no_recommendation(
    speckle_recipe,
):
    """The regime's own measurement beats the in-domain calibration Dice: its leader (here
    U-Net, the fixture's) segments, although the study recommends nothing there."""
    choice = choose_model(MODELS[1:], speckle_recipe, lambda: _measured(noise=0.04))
    assert (choice.index, choice.how) == (1, FALLBACK)  # U-Net, the leader, not given: V-Net
    assert "inconclusive there, its leader U-Net not given" in choice.reason
    leaderless = copy.copy(speckle_recipe)
    leaderless.decisions = {
        k: dataclasses.replace(v, leader="") for k, v in speckle_recipe.decisions.items()
    }
    choice = choose_model(MODELS, leaderless, lambda: _measured(noise=0.04))
    assert choice.how == FALLBACK and choice.reason.split(" -> ")[0].endswith("inconclusive there")
    choice = choose_model(MODELS[::-1], speckle_recipe, lambda: _measured(noise=0.04))
    assert (choice.index, choice.how) == (2, BY_LEADER)
    assert choice.reason == (
        "gamma severity 1 regime: noise 0.04 within 0.03 to 0.05; inconclusive there -> U-Net, "
        "the highest mean Dice there (0.80), not a recommendation"
    )


@pytest.mark.parametrize(
    ("noise", "why"),
    [
        (0.065, "recommends Attention U-Net, not among the models given"),
        (0.5, "noise 0.5: outside every regime's observed range on demo: no regime"),
    ],
)
def test_otherwise_the_best_calibrated_model_with_the_reason(speckle_recipe, noise, why):
    choice = choose_model(MODELS, speckle_recipe, lambda: _measured(noise=noise))
    assert (choice.index, choice.how) == (0, FALLBACK)
    assert why in choice.reason
    assert choice.reason.endswith(
        "-> U-Net, the best calibrated model given (calibration Dice 0.900)"
    )


def test_one_model_is_used_and_the_recipe_still_says_where_the_image_falls(speckle_recipe):
    choice = choose_model(MODELS[:1], speckle_recipe, lambda: _measured(noise=0.21))
    assert (choice.index, choice.how) == (0, ONLY_MODEL)
    assert choice.answer.recommended_arch == "noskip_unet"
    untouched = choose_model(MODELS[:1], None, lambda: pytest.fail("measured without a recipe"))
    assert untouched.answer is None
