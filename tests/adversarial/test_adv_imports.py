"""Issue 11, case 7: a user's MSD-layout import fails early and clearly: a missing ``path`` at
parse time, a volume smaller than the context patch at preparation (not inside MONAI at
training), a 4D label refused (not reduced to channel 0), and splits that would be empty
refused with the counts and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from archives import blob_volume, write_msd_cases
from sandbox import make_sandbox
from snakemake.utils import validate

from segrobust.data.dataset import DataError
from segrobust.data.prepare import prepare_dataset
from segrobust.spec.config import (
    ConfigError,
    check_against_schema,
    check_consistency,
    context_min_shape,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SMALL = {"split": {"train": 0.4, "validation": 0.3, "test": 0.3}, "calibration_fraction": 0.0}


def _parsed(config):
    """The config as the Snakefile leaves it (checked, defaults filled in)."""
    check_against_schema(config, yaml.safe_load(SCHEMA_PATH.read_text()))
    validate(config, str(SCHEMA_PATH))
    check_consistency(config)
    return config


def test_msd_import_without_path_is_named_at_parse_time():
    config = {
        "studies": {"context": {"datasets": ["mine"]}},
        "datasets": {"mine": {"source": "msd_import", "variant": "3d"}},
    }
    with pytest.raises(ConfigError) as err:
        _parsed(config)
    assert str(err.value).startswith("config key datasets.mine.path: missing or empty")


def test_patch_larger_than_an_imported_volume_fails_at_preparation(tmp_path):
    """The rule passes the context study's largest patch as ``min_shape``; a volume smaller
    than it is named before any training job starts."""
    sandbox = make_sandbox(tmp_path)
    cases = {f"v{i}.nii.gz": blob_volume(shape=(40, 40, 40 if i else 12), seed=i) for i in range(4)}
    root = write_msd_cases(sandbox.root / "mine", cases)
    config = _parsed(
        {
            "studies": {
                "context": {"datasets": ["mine"], "patch_sizes": [16, 32], "archs": ["unet"]},
                "perturbation": {"enabled": False},
            },
            "datasets": {"mine": {"source": "msd_import", "path": str(root), "variant": "3d"}},
        }
    )
    entry = {**config["datasets"]["mine"], "min_shape": context_min_shape(config, "mine")}
    entry.update(spacing=[1.0, 1.0, 1.0], **SMALL)
    before = sandbox.snapshot()
    with pytest.raises(DataError) as err:
        prepare_dataset("mine", entry, root, sandbox.target)
    message = str(err.value)
    assert str(root / "imagesTr" / "v0.nii.gz") in message and "[40, 40, 12] voxels" in message
    assert "largest patch [32, 32, 32]" in message
    sandbox.assert_untouched(before)


def test_a_4d_label_is_refused_not_reduced_to_channel_0(tmp_path):
    sandbox = make_sandbox(tmp_path)
    cases = {f"v{i}.nii.gz": blob_volume(seed=i) for i in range(3)}
    image, label = cases["v1.nii.gz"]
    second = np.roll(label, 6, axis=0)
    cases["v1.nii.gz"] = (image, np.stack([label, second], axis=-1))
    root = write_msd_cases(sandbox.root / "mine", cases)
    entry = {"source": "msd_import", "path": str(root), "image_size": 16, **SMALL}
    before = sandbox.snapshot()
    with pytest.raises(DataError) as err:
        prepare_dataset("mine", entry, root, sandbox.target)
    message = str(err.value)
    assert str(root / "labelsTr" / "v1.nii.gz") in message
    assert "a label must be a 3D volume, got shape (24, 24, 8, 2)" in message
    sandbox.assert_untouched(before)


def test_two_volumes_cannot_fill_the_splits(tmp_path):
    sandbox = make_sandbox(tmp_path)
    root = write_msd_cases(
        sandbox.root / "mine", {f"v{i}.nii.gz": blob_volume(seed=i) for i in range(2)}
    )
    before = sandbox.snapshot()
    with pytest.raises(DataError) as err:
        prepare_dataset("mine", {"source": "msd_import", "path": str(root)}, root, sandbox.target)
    message = str(err.value)
    assert "dataset mine: the validation and calibration splits would be empty" in message
    assert "2 volumes split into training 1, validation 0, calibration 0, test 1" in message
    assert "need at least 9" in message and "datasets.mine.split" in message
    assert "datasets.mine.calibration_fraction" in message
    sandbox.assert_untouched(before)


def test_a_volume_without_foreground_slices_empties_the_test_split(tmp_path):
    """Splits are assigned per volume; the test split's only volume yields no slice, so the
    split written would be empty: refused, with the counts."""
    from segrobust.data.prepare import assign_splits, parse_entry

    sandbox = make_sandbox(tmp_path)
    root = sandbox.root / "mine"
    entry = {"source": "msd_import", "path": str(root), "image_size": 16, **SMALL}
    _, opts = parse_entry("mine", entry)
    split_of = assign_splits(["v0", "v1", "v2"], opts, "mine")
    cases = {f"{v}.nii.gz": blob_volume(seed=i) for i, v in enumerate(split_of)}
    test_volume = next(v for v, s in split_of.items() if s == "test")
    image, label = cases[f"{test_volume}.nii.gz"]
    cases[f"{test_volume}.nii.gz"] = (image, np.zeros_like(label))
    write_msd_cases(root, cases)
    before = sandbox.snapshot()
    with pytest.raises(DataError) as err:
        prepare_dataset("mine", entry, root, sandbox.target)
    message = str(err.value)
    assert "the test split would be empty" in message
    assert "3 volumes, 1 without a slice kept split into" in message and "test 0" in message
    sandbox.assert_untouched(before)
