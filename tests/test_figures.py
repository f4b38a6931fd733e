"""Report figures: every figure draws from contract-4-shaped tables, rich and degenerate, and
reads at 100% zoom as the report shows it.

The tables are synthetic but in the exact shape the evaluation writes (contract 4 of
docs/ARCHITECTURE.md), including calibration rows the figures must ignore. Figures are drawn at
a low resolution to keep the tests fast (legibility is judged in inches, as the report shows a
figure, so the resolution does not change it); a figure whose text is clipped, overlapping or
too small fails its test through the legibility warning (`segrobust.report.legibility`).
"""

from __future__ import annotations

import itertools
import warnings

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from segrobust.analysis import conformal, stats
from segrobust.analysis import context as analysis_context
from segrobust.contract import ANALYSIS_FIGURES, FIGURE_TABLES, PER_IMAGE_COLUMNS, study_of_figure
from segrobust.contract import FIGURES as CONTRACT_FIGURES
from segrobust.report.analysis_figures import plot_critical_difference
from segrobust.report.context_figures import plot_metric_vs_test_fbr
from segrobust.report.display import CSS_PX_PER_INCH, MAX_FIGURE_HEIGHT_PX, MAX_FIGURE_WIDTH_IN
from segrobust.report.figures import FIGURES, draw_figure
from segrobust.report.legibility import FigureLegibilityWarning
from segrobust.report.plotting import Layout, arch_palette, save_figure
from segrobust.report.texture_figures import plot_texture_heatmap, plot_texture_in_domain

#: Low resolution for speed: the PNG is smaller, its text geometry in inches the same.
TEST_DPI = 40


def _row(**values):
    row = dict.fromkeys(PER_IMAGE_COLUMNS, np.nan)
    row.update(values)
    return row


def _metrics(rng, dice):
    dice = float(np.clip(dice + rng.normal(0, 0.05), 0, 1))
    return {
        "dice": dice,
        "hd95": 20 * (1 - dice) + rng.uniform(0, 1),
        "nsd": dice,
        "assd": 5 * (1 - dice),
        "volume_diff": rng.normal(0, 0.1),
        "quality": dice,
    }


def texture_table(archs, alphas, directions, seeds=(1,), n_images=3):
    rng = np.random.default_rng(0)
    rows = []
    for arch, direction, train, test, seed, split in itertools.product(
        archs, directions, alphas, alphas, seeds, ("test", "calibration")
    ):
        for i in range(n_images):
            rows.append(
                _row(
                    study="texture",
                    dataset=f"texture-{direction}-{train:g}",
                    condition=f"texture-{direction}-{test:g}",
                    test_dataset=f"texture-{direction}-{test:g}",
                    split=split,
                    perturbation="none",
                    severity=0,
                    direction=direction,
                    train_alpha=train,
                    test_alpha=test,
                    arch=arch,
                    seed=seed,
                    patch="full",
                    image_id=f"img{i:03d}",
                    group=f"img{i:03d}",
                    fg_ratio=rng.uniform(0.1, 0.4),
                    complexity=3 * (1 - test) + rng.uniform(0, 0.3),
                    **_metrics(rng, 0.95 - 0.5 * test - 0.3 * abs(train - test)),
                )
            )
    return pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS)


# perturbation -> level of each severity (None: no named level)
LEVELS = {
    "speckle": {1: "Harder", 2: "Hardest"},
    "background_blur": {1: "Easier", 2: "Easiest"},
    "gamma": {1: None, 2: None},
}


def perturbation_table(archs, datasets, perturbations, severities, seeds=(1,), n_images=3):
    rng = np.random.default_rng(1)
    conditions = [("none", 0)] + [(p, s) for p in perturbations for s in severities]
    rows = []
    for arch, dataset, seed, (pert, sev) in itertools.product(archs, datasets, seeds, conditions):
        for i in range(n_images):
            rows.append(
                _row(
                    study="perturbation",
                    dataset=dataset,
                    condition="clean" if sev == 0 else f"{pert}-s{sev}",
                    test_dataset=dataset,
                    split="test",
                    perturbation=pert,
                    severity=sev,
                    level=None if sev == 0 else LEVELS[pert][sev],
                    arch=arch,
                    seed=seed,
                    patch="full",
                    image_id=f"{dataset}-{i}",
                    group=f"{dataset}-{i}",
                    fg_ratio=rng.uniform(0.05, 0.3),
                    complexity=1.0
                    + (0.5 * sev if pert == "background_blur" else -0.3 * sev)
                    + rng.uniform(0, 0.2),
                    **_metrics(rng, 0.85 - 0.1 * sev),
                )
            )
    return pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS)


def context_tables(archs, patch_sizes, seeds=(1,), n_cases=4):
    rng = np.random.default_rng(2)
    rows, patches = [], []
    for arch, patch, seed in itertools.product(archs, patch_sizes, seeds):
        for i in range(n_cases):
            fg = 0.002 + 0.01 * i
            rows.append(
                _row(
                    study="context",
                    dataset="spheres",
                    condition="clean",
                    test_dataset="spheres",
                    split="test",
                    perturbation="none",
                    severity=0,
                    arch=arch,
                    seed=seed,
                    patch=str(patch),
                    image_id=f"case{i}",
                    group=f"case{i}",
                    fg_ratio=fg,
                    complexity=1.0,
                    **_metrics(rng, 0.6 + 10 * fg),
                )
            )
        for epoch, index in itertools.product(range(3), range(8)):
            patches.append(
                {
                    "epoch": epoch,
                    "batch": index // 4,
                    "index": index % 4,
                    "fg_ratio": rng.beta(2, 2 + patch / 8),
                    "study": "context",
                    "dataset": "spheres",
                    "arch": arch,
                    "seed": seed,
                    "patch": str(patch),
                }
            )
    return pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS), pd.DataFrame(patches)


def _tables(texture, perturbation, context):
    """Every table a figure is drawn from, by name, the analysis ones computed as the analysis
    stage computes them."""
    per_image, patches = context
    everything = pd.concat([texture, perturbation, per_image], ignore_index=True)
    with_bounds, calibration = conformal.calibrate_dice_bounds(everything, 0.1)
    ranges = analysis_context.training_fbr_range(patches)
    return {
        "texture": {"per_image": texture},
        "perturbation": {"per_image": perturbation},
        "context": {
            "per_image": per_image,
            "patches": patches,
            "context_fbr_range": ranges,
            "context_fbr_bins": analysis_context.dice_by_fbr_bin(per_image, 3),
        },
        "analysis": {
            "friedman": stats.friedman(everything, 0.05),
            "coverage": conformal.coverage_table(with_bounds, calibration, 0.1, 0.05),
        },
    }


RICH = _tables(
    texture_table(["unet", "noskip_unet", "unetpp"], [0.1, 0.5, 0.9], ["fg", "bg"], seeds=(1, 2),
                  n_images=12),
    perturbation_table(["unet", "attention_unet"], ["busi", "glas"],
                       ["speckle", "background_blur", "gamma"], [1, 2]),
    context_tables(["unet", "unetr"], [16, 32, 64], seeds=(1, 2)),
)  # fmt: skip
TINY = _tables(
    texture_table(["unet"], [0.5], ["fg"], n_images=1),
    perturbation_table(["unet"], ["busi"], ["speckle"], [1], n_images=1),
    context_tables(["unet"], [32], n_cases=1),
)

PER_STUDY_FIGURES = sorted(n for names in CONTRACT_FIGURES.values() for n in names)
#: Larger grids than the default study's: 4 perturbations x 2 datasets, 6 architectures x 2
#: directions of 4 alphas, 5 patch sizes, three studies of coverage with 6 architectures.
LARGE = _tables(
    texture_table(["unet", "noskip_unet", "attention_unet", "unetpp", "vnet", "noskip_vnet"],
                  [0.1, 0.5, 0.8, 0.9], ["background", "foreground"], n_images=4),
    perturbation_table(["unet", "noskip_unet", "attention_unet"], ["busi", "heart2d"],
                       ["speckle", "background_blur", "gamma"], [1, 2]),
    context_tables(["monai_unet", "attention_unet", "unetr"], [32, 48, 64, 80, 96], n_cases=6),
)  # fmt: skip
SIZES = {"rich": RICH, "tiny": TINY, "large": LARGE}


def _draw(name, tables, path, **options):
    group = "analysis" if name in ANALYSIS_FIGURES else study_of_figure(name)
    needed = {t: tables[group][t] for t in FIGURE_TABLES[name]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FigureLegibilityWarning)  # illegible text fails the test
        draw_figure(name, needed, path, **options)


def _shown_size(path, dpi):
    """(width, height) in CSS px at which the report shows the PNG drawn at ``dpi``."""
    height, width = mpimg.imread(path).shape[:2]
    return width * CSS_PX_PER_INCH / dpi, height * CSS_PX_PER_INCH / dpi


def test_every_registered_figure_is_tested_and_named_in_the_contract():
    named = {n for names in CONTRACT_FIGURES.values() for n in names}
    assert set(FIGURES.names()) == named | set(ANALYSIS_FIGURES) == set(FIGURE_TABLES)


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("name", PER_STUDY_FIGURES)
def test_figure_is_legible_and_fits_one_screen(name, size, tmp_path):
    path = tmp_path / "fig" / f"{name}.png"
    _draw(name, SIZES[size], path, layout=Layout(dpi=TEST_DPI))
    width, height = _shown_size(path, TEST_DPI)
    assert width <= MAX_FIGURE_WIDTH_IN * CSS_PX_PER_INCH + 1
    assert height <= MAX_FIGURE_HEIGHT_PX + 1
    image = mpimg.imread(path)
    assert image[..., :3].std() > 0.01  # something was drawn, not a blank canvas
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("name", ANALYSIS_FIGURES)
def test_analysis_figure_is_drawn_or_says_why_not_legibly(name, size, tmp_path):
    path = tmp_path / f"{name}.png"
    _draw(name, SIZES[size], path, dpi=TEST_DPI)
    assert mpimg.imread(path)[..., :3].std() > 0.01
    width, height = _shown_size(path, TEST_DPI)
    assert width <= MAX_FIGURE_WIDTH_IN * CSS_PX_PER_INCH + 1
    assert height <= MAX_FIGURE_HEIGHT_PX + 1


def _friedman(study, status, k=3, p_value=0.01, cd=1.2):
    return pd.DataFrame(
        {
            "study": study, "arch": ["unet", "noskip_unet", "attention_unet"][:k],
            "average_rank": [1.2, 2.1, 2.7][:k], "k": k, "n_blocks": 6, "statistic": 8.0,
            "p_value": p_value, "q_alpha": 2.343, "critical_difference": cd,
            "significance": 0.05, "status": status, "cd_applicable": status == "computed",
            "friedman_note": "",
        }
    )  # fmt: skip


def test_cd_diagram_is_drawn_only_where_friedman_ran(tmp_path, monkeypatch):
    """A study whose Friedman test did not run gets a "not drawn" line, never a diagram."""
    drawn = []
    import segrobust.report.analysis_figures as module

    monkeypatch.setattr(module, "draw_cd", lambda ax, ranks, cd, title: drawn.append(title))
    table = pd.concat([
        _friedman("context", "computed"),
        _friedman("texture", "not computable: needs k >= 3 architectures, got 2", k=2),
        _friedman("perturbation", "not applicable: the blocks share trained models"),
    ])  # fmt: skip
    plot_critical_difference(tmp_path / "cd.png", friedman=table, dpi=TEST_DPI)
    assert len(drawn) == 1 and drawn[0].startswith("context: Friedman p = 0.01")


def test_cd_diagram_placeholder_names_why_when_friedman_ran_nowhere(tmp_path, monkeypatch):
    import segrobust.report.analysis_figures as module

    texts = []
    monkeypatch.setattr(module, "draw_cd", lambda *a: pytest.fail("a diagram was drawn"))
    original = module._message_figure
    monkeypatch.setattr(
        module, "_message_figure", lambda p, m, d: (texts.append(m), original(p, m, d))
    )
    why = "not computable: needs N >= 2 independent blocks, got 1"
    plot_critical_difference(tmp_path / "cd.png", friedman=_friedman("texture", why), dpi=30)
    assert texts == [
        "Critical-difference diagram not drawn: texture: needs N >= 2 independent blocks, got 1."
    ]


def test_draw_figure_names_the_tables_it_needs(tmp_path):
    with pytest.raises(ValueError, match=r"\['context_fbr_bins', 'context_fbr_range'\]"):
        draw_figure("context_test_fbr", {"per_image": RICH["context"]["per_image"]}, tmp_path)


def test_heatmap_of_the_paper_grid_fits_one_screen_without_annotations(tmp_path):
    """15 alphas x 2 directions x 6 architectures: cells too small for their values are colour
    only, tick labels thinned, and the figure still fits one screen legibly."""
    alphas = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.82, 0.85, 0.88, 0.9, 0.92, 0.95, 0.98]
    archs = ["unet", "noskip_unet", "attention_unet", "unetpp", "vnet", "noskip_vnet"]
    table = texture_table(archs, alphas, ["background", "foreground"], n_images=1)
    path = tmp_path / "heat.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FigureLegibilityWarning)
        plot_texture_heatmap(path, per_image=table, layout=Layout(dpi=TEST_DPI))
    width, height = _shown_size(path, TEST_DPI)
    assert width <= MAX_FIGURE_WIDTH_IN * CSS_PX_PER_INCH + 1
    assert height <= MAX_FIGURE_HEIGHT_PX + 1


def test_arch_colours_do_not_depend_on_the_other_archs():
    alone = arch_palette(["unet"])
    together = arch_palette(["unetr", "unet", "my_net", "other_net"])
    assert alone["unet"] == together["unet"]
    assert len(set(together.values())) == 4


def test_palette_missing_an_arch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="noskip_unet"):
        plot_texture_in_domain(
            tmp_path / "x.png",
            per_image=RICH["texture"]["per_image"],
            palette={"unet": "red", "unetpp": "blue"},
        )
    assert not (tmp_path / "x.png").exists()


def test_missing_column_is_named(tmp_path):
    table = RICH["texture"]["per_image"].drop(columns=["complexity"])
    with pytest.raises(ValueError, match="complexity"):
        draw_figure("texture_complexity", {"per_image": table}, tmp_path / "x.png")


def test_unknown_metric_lists_allowed(tmp_path):
    table = RICH["perturbation"]["per_image"].assign(iou=0.5)
    with pytest.raises(ValueError, match="allowed: .*hd95"):
        draw_figure("perturbation_dice", {"per_image": table}, tmp_path / "x.png", metric="iou")
    assert not (tmp_path / "x.png").exists()


def test_calibration_rows_are_not_plotted(tmp_path):
    table = RICH["texture"]["per_image"]
    with pytest.raises(ValueError, match="split 'test'"):
        plot_texture_in_domain(tmp_path / "x.png", per_image=table[table["split"] == "calibration"])


def test_perturbation_figure_needs_perturbed_rows(tmp_path):
    table = RICH["perturbation"]["per_image"]
    with pytest.raises(ValueError, match="no perturbed"):
        draw_figure("perturbation_dice", {"per_image": table[table["severity"] == 0]}, tmp_path)


def test_test_fbr_figure_needs_the_range_of_every_patch_size(tmp_path):
    tables = RICH["context"]
    ranges = tables["context_fbr_range"]
    with pytest.raises(ValueError, match=r"patch sizes \['64'\]"):
        plot_metric_vs_test_fbr(
            tmp_path / "x.png",
            context_fbr_range=ranges[ranges["patch"] != "64"],
            context_fbr_bins=tables["context_fbr_bins"],
        )


def test_failed_save_leaves_nothing(tmp_path):
    import matplotlib.pyplot as plt

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fig = plt.figure()
    with pytest.raises(OSError):
        save_figure(fig, blocker / "x.png")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
    assert fig.number not in plt.get_fignums()  # closed even on failure
