"""Issue 11, case 6: size keys have upper bounds. ``image_size: 100000`` used to pass
validation and die allocating 149 GiB with a numpy message naming no key; every size key is now
refused at parse time naming the key, the value and the maximum, before any job runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from archives import blob_volume, write_msd_cases
from sandbox import make_sandbox
from snakemake.utils import validate

from segrobust.data.dataset import DataError
from segrobust.data.prepare import parse_entry, prepare_dataset
from segrobust.spec.config import ConfigError, check_against_schema, check_consistency

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())


def _parse_like_the_snakefile(config):
    check_against_schema(config, SCHEMA)
    validate(config, str(SCHEMA_PATH))
    check_consistency(config)


@pytest.mark.parametrize(
    "config, key, maximum",
    [
        ({"studies": {"texture": {"image_size": 100000}}}, "studies.texture.image_size", 2048),
        ({"studies": {"texture": {"n_test": 100000}}}, "studies.texture.n_test", 5000),
        ({"datasets": {"t": {"source": "synthetic_texture", "image_size": 100000}}},
         "datasets.t.image_size", 2048),
        ({"datasets": {"t": {"source": "synthetic_texture", "n_train": 100000}}},
         "datasets.t.n_train", 5000),
        ({"datasets": {"b": {"source": "busi", "image_size": 100000}}}, "datasets.b.image_size",
         2048),
        ({"datasets": {"b": {"source": "glas", "image_size": [64, 100000]}}},
         "datasets.b.image_size[1]", 2048),
        ({"datasets": {"s": {"source": "synthetic_spheres", "volume_size": 100000}}},
         "datasets.s.volume_size", 512),
        ({"datasets": {"s": {"source": "synthetic_spheres", "n_calibration": 100000}}},
         "datasets.s.n_calibration", 2000),
        ({"studies": {"context": {"patch_sizes": [100000]}}}, "studies.context.patch_sizes[0]",
         512),
        ({"studies": {"perturbation": {"train": {"epochs": 100000}}}},
         "studies.perturbation.train.epochs", 10000),
        ({"studies": {"texture": {"train": {"batch_size": 100000}}}},
         "studies.texture.train.batch_size", 1024),
        ({"studies": {"context": {"train": {"samples_per_volume": 100000}}}},
         "studies.context.train.samples_per_volume", 1024),
        ({"studies": {"context": {"train": {"val_interval": 100000}}}},
         "studies.context.train.val_interval", 10000),
        ({"studies": {"context": {"inference": {"sw_batch_size": 100000}}}},
         "studies.context.inference.sw_batch_size", 1024),
        ({"analysis": {"n_bootstrap": 10**8}}, "analysis.n_bootstrap", 100000),
        ({"analysis": {"complexity_bins": 100000}}, "analysis.complexity_bins", 100),
    ],
)  # fmt: skip
def test_size_key_over_its_maximum_is_named_at_parse_time(config, key, maximum):
    with pytest.raises(ConfigError) as err:
        _parse_like_the_snakefile(config)
    message = str(err.value)
    assert message.startswith(f"config key {key}: ") and f"<= {maximum}" in message


def test_direct_callers_of_the_preparation_get_the_same_bound():
    with pytest.raises(DataError, match=r"datasets.b.image_size: got \[100000, 100000\]"):
        parse_entry("b", {"source": "busi", "image_size": 100000})


def test_a_resampling_spacing_typo_is_refused_before_allocating(tmp_path):
    sandbox = make_sandbox(tmp_path)
    cases = {f"v{i}.nii.gz": blob_volume(seed=i) for i in range(3)}
    root = write_msd_cases(sandbox.root / "mine", cases)
    entry = {"source": "msd_import", "path": str(root), "variant": "3d"}
    entry.update(spacing=[0.001, 1.0, 1.0], split={"train": 0.4, "validation": 0.3, "test": 0.3})
    entry["calibration_fraction"] = 0
    before = sandbox.snapshot()
    with pytest.raises(DataError) as err:
        prepare_dataset("mine", entry, root, sandbox.target)
    message = str(err.value)
    assert "datasets.mine.spacing = [0.001, 1.0, 1.0]" in message
    assert "[24000, 24, 8] voxels" in message and "over 1024" in message
    sandbox.assert_untouched(before)
