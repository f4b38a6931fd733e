"""The independent unit: image index in the texture study, split group (volume) elsewhere."""

from __future__ import annotations

import pandas as pd

from segrobust.analysis.units import independent_unit, unit_matrix


def _row(study, test_dataset, image_id, group, arch="unet", condition="clean", dice=0.5):
    return dict(study=study, dataset="d", arch=arch, patch="full", condition=condition,
                test_dataset=test_dataset, image_id=image_id, group=group, dice=dice)  # fmt: skip


def test_texture_image_index_is_one_unit_across_test_sets():
    rows = pd.DataFrame(
        [_row("texture", f"texture-fg-{a}", "tex_0001", "tex_0001") for a in (0.1, 0.5, 0.9)]
    )
    assert independent_unit(rows).nunique() == 1


def test_slices_of_one_volume_are_one_unit_and_datasets_stay_apart():
    rows = pd.DataFrame(
        [
            _row("perturbation", "heart", "vol3_z010", "vol3"),
            _row("perturbation", "heart", "vol3_z011", "vol3"),
            _row("perturbation", "heart", "vol4_z005", "vol4"),
            _row("perturbation", "spleen", "vol3_z010", "vol3"),  # same names, other dataset
        ]
    )
    assert independent_unit(rows).tolist() == [
        "heart/vol3",
        "heart/vol3",
        "heart/vol4",
        "spleen/vol3",
    ]


def test_perturbed_copies_map_to_their_source_volume():
    rows = pd.DataFrame(
        [
            _row("perturbation", "heart", "vol3_z010", "vol3", condition="clean"),
            _row("perturbation", "heart", "vol3_z010", "vol3", condition="speckle-s3"),
        ]
    )
    assert independent_unit(rows).nunique() == 1


def test_unit_matrix_averages_the_slices_of_a_volume_into_one_paired_value():
    rows = []
    for arch, offset in (("unet", 0.0), ("noskip_unet", 0.1)):
        rows += [
            _row("perturbation", "heart", "a_z1", "a", arch, dice=0.2 + offset),
            _row("perturbation", "heart", "a_z2", "a", arch, dice=0.4 + offset),
            _row("perturbation", "heart", "b_z1", "b", arch, dice=0.9 + offset),
        ]
    matrix = unit_matrix(pd.DataFrame(rows))
    assert list(matrix.index) == ["heart/a", "heart/b"]  # n = 2 volumes, not 3 slices
    assert abs(matrix.loc["heart/a", "unet"] - 0.3) < 1e-12
    assert abs(matrix.loc["heart/b", "noskip_unet"] - 1.0) < 1e-12


def test_a_slice_missing_for_one_architecture_leaves_the_pair_out():
    rows = [
        _row("perturbation", "heart", "a_z1", "a", "unet"),
        _row("perturbation", "heart", "a_z2", "a", "unet", dice=0.9),
        _row("perturbation", "heart", "a_z1", "a", "noskip_unet"),
    ]
    matrix = unit_matrix(pd.DataFrame(rows))
    # a_z2 has no noskip_unet value: only a_z1 is compared, so both columns are 0.5.
    assert matrix.loc["heart/a"].tolist() == [0.5, 0.5]
