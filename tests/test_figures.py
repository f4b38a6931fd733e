"""Report figures: every figure draws from contract-4-shaped tables, rich and degenerate.

The tables are synthetic but in the exact shape the evaluation writes (contract 4 of
docs/ARCHITECTURE.md), including calibration rows the figures must ignore. Figures are drawn at
a low resolution to keep the tests fast; their pixel size must follow the panel grid.
"""

from __future__ import annotations

import itertools

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from segrobust.contract import FIGURES as CONTRACT_FIGURES
from segrobust.contract import PER_IMAGE_COLUMNS, study_of_figure
from segrobust.report.context_figures import training_fbr_range
from segrobust.report.figures import FIGURES, draw_figure
from segrobust.report.plotting import LEGEND_WIDTH, arch_palette, save_figure

LAYOUT = {"panel_width": 2.0, "panel_height": 1.5, "dpi": 30}


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
                    "patch": patch,
                }
            )
    return pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS), pd.DataFrame(patches)


RICH = {
    "texture": texture_table(["unet", "noskip_unet", "unetpp"], [0.1, 0.5, 0.9], ["fg", "bg"],
                             seeds=(1, 2)),
    "perturbation": perturbation_table(["unet", "attention_unet"], ["busi", "glas"],
                                       ["speckle", "background_blur", "gamma"], [1, 2]),
    "context": context_tables(["unet", "unetr"], [16, 32, 64], seeds=(1, 2)),
}  # fmt: skip
TINY = {
    "texture": texture_table(["unet"], [0.5], ["fg"], n_images=1),
    "perturbation": perturbation_table(["unet"], ["busi"], ["speckle"], [1], n_images=1),
    "context": context_tables(["unet"], [32], n_cases=1),
}

# figure -> (rows, cols, legend) of its panel grid for the RICH and TINY tables
GRIDS = {
    "texture_in_domain": {"rich": (1, 2, True), "tiny": (1, 1, True)},
    "texture_heatmap": {"rich": (3, 2, False), "tiny": (1, 1, False)},
    "texture_complexity": {"rich": (1, 2, True), "tiny": (1, 1, True)},
    "perturbation_dice": {"rich": (2, 3, True), "tiny": (1, 1, True)},
    "perturbation_hd95": {"rich": (2, 3, True), "tiny": (1, 1, True)},
    "perturbation_complexity_levels": {"rich": (1, 2, False), "tiny": (1, 1, False)},
    "context_patch_size": {"rich": (1, 1, True), "tiny": (1, 1, True)},
    "context_test_fbr": {"rich": (1, 3, True), "tiny": (1, 1, True)},
    "context_training_fbr": {"rich": (1, 1, True), "tiny": (1, 1, True)},
}


def _draw(name, tables, path):
    spec = FIGURES.get(name)
    data = tables[study_of_figure(name)]
    if study_of_figure(name) == "context":
        per_image, patches = data
        table = patches if spec.table == "patches" else per_image
        draw_figure(name, table, path, patches=patches if spec.needs_patches else None, **LAYOUT)
    else:
        draw_figure(name, data, path, **LAYOUT)


def test_every_registered_figure_is_tested_and_named_in_the_contract():
    named = {n for names in CONTRACT_FIGURES.values() for n in names}
    assert set(FIGURES.names()) == set(GRIDS) == named


@pytest.mark.parametrize("size", ["rich", "tiny"])
@pytest.mark.parametrize("name", sorted(GRIDS))
def test_figure_writes_readable_png_of_grid_size(name, size, tmp_path):
    path = tmp_path / "fig" / f"{name}.png"
    _draw(name, RICH if size == "rich" else TINY, path)
    image = mpimg.imread(path)
    nrows, ncols, legend = GRIDS[name][size]
    width = (ncols * LAYOUT["panel_width"] + (LEGEND_WIDTH if legend else 0)) * LAYOUT["dpi"]
    height = nrows * LAYOUT["panel_height"] * LAYOUT["dpi"]
    assert image.shape[:2] == (round(height), round(width))
    assert image[..., :3].std() > 0.01  # something was drawn, not a blank canvas
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_heatmap_default_panel_grows_with_alphas(tmp_path):
    table = texture_table(["unet"], [0.1 * i for i in range(1, 10)], ["fg"], n_images=1)
    path = tmp_path / "heat.png"
    FIGURES.get("texture_heatmap").plot(table, path, dpi=20)
    height, width = mpimg.imread(path).shape[:2]
    # matplotlib truncates a fractional pixel size
    assert width == int((0.42 * 9 + 1.2) * 20) and height == int((0.36 * 9 + 1.0) * 20)


def test_arch_colours_do_not_depend_on_the_other_archs():
    alone = arch_palette(["unet"])
    together = arch_palette(["unetr", "unet", "my_net", "other_net"])
    assert alone["unet"] == together["unet"]
    assert len(set(together.values())) == 4


def test_palette_missing_an_arch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="noskip_unet"):
        FIGURES.get("texture_in_domain").plot(
            RICH["texture"], tmp_path / "x.png", palette={"unet": "red", "unetpp": "blue"}
        )
    assert not (tmp_path / "x.png").exists()


def test_missing_column_is_named(tmp_path):
    table = RICH["texture"].drop(columns=["complexity"])
    with pytest.raises(ValueError, match="complexity"):
        FIGURES.get("texture_complexity").plot(table, tmp_path / "x.png")


def test_unknown_metric_lists_allowed(tmp_path):
    table = RICH["perturbation"].assign(iou=0.5)
    with pytest.raises(ValueError, match="allowed: .*hd95"):
        FIGURES.get("perturbation_dice").plot(table, tmp_path / "x.png", metric="iou", **LAYOUT)
    assert not (tmp_path / "x.png").exists()


def test_calibration_rows_are_not_plotted(tmp_path):
    table = RICH["texture"]
    with pytest.raises(ValueError, match="split 'test'"):
        FIGURES.get("texture_in_domain").plot(
            table[table["split"] == "calibration"], tmp_path / "x.png"
        )


def test_perturbation_figure_needs_perturbed_rows(tmp_path):
    table = RICH["perturbation"]
    with pytest.raises(ValueError, match="no perturbed"):
        FIGURES.get("perturbation_dice").plot(table[table["severity"] == 0], tmp_path / "x.png")


def test_test_fbr_figure_needs_training_patches_of_every_patch_size(tmp_path):
    per_image, patches = RICH["context"]
    with pytest.raises(ValueError, match=r"patch sizes \['64'\]"):
        draw_figure("context_test_fbr", per_image, tmp_path / "x.png",
                    patches=patches[patches["patch"] != 64])  # fmt: skip
    with pytest.raises(ValueError, match="needs the training-patch table"):
        draw_figure("context_test_fbr", per_image, tmp_path / "x.png")


def test_training_fbr_range_percentiles():
    patches = pd.DataFrame({"patch": [16] * 101 + ["32"] * 2, "fg_ratio": [*range(101), 5, 7]})
    ranges = training_fbr_range(patches).set_index("patch")
    assert ranges.loc["16"].tolist() == pytest.approx([5.0, 95.0])
    minmax = training_fbr_range(patches, (0, 100)).set_index("patch")
    assert minmax.loc["32"].tolist() == pytest.approx([5.0, 7.0])
    with pytest.raises(ValueError, match="percentiles"):
        training_fbr_range(patches, (90, 10))


def test_failed_save_leaves_nothing(tmp_path):
    import matplotlib.pyplot as plt

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fig = plt.figure()
    with pytest.raises(OSError):
        save_figure(fig, blocker / "x.png")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
    assert fig.number not in plt.get_fignums()  # closed even on failure
