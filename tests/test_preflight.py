"""Pre-flight: what each study's statistics can reach is known, and a study that can reach
nothing is refused with the keys to change, before any job (issue 20: the bring-your-own
dataset of 12 volumes ran 22 minutes to say "n = 1 image" and "n_calibration = 8 < 9")."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from archives import blob_volume, write_msd_cases
from snakemake.utils import validate
from workflow_helpers import copy_workflow

from segrobust.analysis import conformal
from segrobust.data.prepare import prepare_dataset
from segrobust.data.synthetic import generate_named_dataset
from segrobust.spec import preflight
from segrobust.spec.config import check_against_schema, check_consistency, dataset_entry
from segrobust.spec.preflight import Count, PreflightError, check

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
TINY = REPO / "tests" / "configs" / "tiny.yaml"


def _parsed(config):
    """The config as the Snakefile leaves it (checked, defaults filled in)."""
    check_against_schema(config, yaml.safe_load(SCHEMA_PATH.read_text()))
    validate(config, str(SCHEMA_PATH))
    check_consistency(config)
    return config


def twelve_volumes(root: Path, n: int = 12) -> Path:
    """An MSD-layout folder of ``n`` small volumes, each with foreground on 4 of its 8 slices."""
    cases = {f"case{i:02d}.nii.gz": blob_volume(seed=i) for i in range(n)}
    return write_msd_cases(root, cases)


def mine(path: Path, **studies) -> dict:
    """A config whose perturbation study runs on the user's MSD folder ``path`` (2D slices), one
    training run per architecture (the issue's bring-your-own case)."""
    return {
        "seeds": [1],
        "studies": {
            "texture": {"enabled": False},
            "context": {"enabled": False},
            "perturbation": {"datasets": ["mine"], **studies},
        },
        "datasets": {"mine": {"source": "msd_import", "path": str(path), "image_size": 32}},
    }


def test_count_says_what_is_known():
    assert Count.exact(3).text() == "3" and Count.exact(3).at_least(2) is True
    assert Count(0, 16).text() == "<= 16" and Count(0, 16).at_least(9) is None
    assert Count(0, 8).at_least(9) is False
    assert Count(34, 100).text() == "34-100"
    assert Count.unknown().text() == "?" and Count.unknown().at_least(1) is None


def test_the_default_study_can_reach_bounds_but_no_architecture_claim_with_one_seed():
    config = _parsed({})
    result = check(config)  # not refused: the conformal bounds are reachable
    assert [s.study for s in result.studies] == ["texture", "perturbation", "context"]
    texture = result.studies[0]
    complexity, shift = texture.rows
    assert complexity.units == Count(34, 100) and shift.units == Count.exact(100)
    assert complexity.claim is False and "1 training run per architecture" in complexity.why
    assert complexity.keys == ("seeds",)
    assert texture.bound is True and result.needed_bound == conformal.min_calibration_for_bound(0.1)
    table = result.table()
    assert "complexity: 3 bins" in table and "34-100" in table and "shift: 12" in table
    assert "needs >= 9 calibration images" in table
    assert any(w.startswith("no architecture claim in texture complexity: 3 bins;") and
               w.endswith("(change: seeds)") for w in result.warnings())  # fmt: skip


def test_three_seeds_make_architecture_claims_reachable():
    config = _parsed({"seeds": [1, 2, 3]})
    result = check(config)
    assert all(row.claim is True for s in result.studies for row in s.rows if s.study != "context")
    assert not [w for w in result.warnings() if "texture" in w or "perturbation" in w]


def test_context_sides_are_unknown_until_training_and_say_so():
    result = check(_parsed({"seeds": [1, 2]}))
    context = result.studies[2]
    assert [r.regimes for r in context.rows] == [
        "spheres p16: in / out of range",
        "spheres p32: in / out of range",
    ]
    assert all(r.units == Count(0, 100) and r.claim is None for r in context.rows)
    assert any("known once the training patches exist (after training); 100 in all" in n
               for n in context.notes)  # fmt: skip


def test_the_tiny_smoke_config_reaches_nothing_and_is_refused_unless_it_says_warn():
    config = _parsed(yaml.safe_load(TINY.read_text()))
    assert config["preflight"] == "warn"
    result = check(config)  # warns only
    assert {s.study for s in result.blocked()} == {"texture", "perturbation", "context"}
    config["preflight"] = "refuse"
    with pytest.raises(PreflightError) as refused:
        check(config)
    message = str(refused.value)
    assert "study texture cannot produce any claim" in message
    assert "2 calibration images, >= 9 needed at conformal_alpha 0.1" in message
    assert "change: studies.texture.n_calibration, analysis.conformal_alpha" in message
    assert "- no architecture claim for complexity: 3 bins: 1 training run" in message
    assert "set `preflight: warn`" in message


def test_the_issues_twelve_volumes_are_refused_with_the_figures_and_keys(tmp_path):
    """12 volumes split 8 / 1 / 2 calibration / 1 test: one test unit, 8 calibration slices."""
    config = _parsed(mine(twelve_volumes(tmp_path / "mine"), seeds=[1, 2, 3]))
    started = time.monotonic()
    with pytest.raises(PreflightError) as refused:
        check(config)
    assert time.monotonic() - started < 60
    message = str(refused.value)
    assert "1 independent test unit(s), >= 2 needed" in message
    assert "1 training run" not in message  # three seeds: only the data block the claims
    assert "mine: 8 calibration images, >= 9 needed at conformal_alpha 0.1" in message
    for key in ("datasets.mine.split", "datasets.mine.calibration_fraction",
                "analysis.conformal_alpha"):  # fmt: skip
        assert key in message


def test_large_labels_are_bounded_by_their_headers_and_only_warned(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "LABEL_READ_BUDGET", 0)
    config = _parsed(mine(twelve_volumes(tmp_path / "mine"), seeds=[1, 2, 3]))
    result = check(config)  # 2 calibration volumes of 8 slices: <= 16, maybe enough
    study = result.studies[0]
    assert study.bound is None and study.rows[0].calibration == Count(0, 16)
    assert study.rows[0].units == Count(0, 1) and study.rows[0].claim is False
    assert any("maybe no conformal Dice bound: mine: <= 16 calibration images" in w
               for w in result.warnings())  # fmt: skip


def test_a_prepared_dataset_gives_exact_counts_while_its_settings_hold(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = twelve_volumes(tmp_path / "mine", n=20)  # 14 / 2 / 2 calibration / 2 test volumes
    config = _parsed(mine(raw, seeds=[1, 2]))
    prepare_dataset("mine", dataset_entry(config, "mine"), raw, "resources/datasets/mine")
    result = check(config)  # architecture claims reachable; the bound is not: warned only
    study = result.studies[0]
    assert study.rows[0].units == Count.exact(2) and study.rows[0].claim is True
    assert study.rows[0].calibration == Count.exact(8) and study.bound is False
    # another calibration fraction re-prepares the data: the prepared counts no longer hold
    config["datasets"]["mine"]["calibration_fraction"] = 0.75
    (tmp_path / "resources/datasets/mine/datalist.json").write_text(json.dumps({"test": []}))
    changed = check(config).studies[0]
    assert changed.rows[0].calibration == Count.exact(12)  # 3 volumes x 4 slices, from the folder


def test_whole_volume_patches_of_generated_spheres_give_both_sides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spheres = {"source": "synthetic_spheres", "volume_size": 16, "n_train": 6,
               "n_validation": 2, "n_test": 12, "n_calibration": 10, "train_radii": [4, 5],
               "test_radii": [2, 7]}  # fmt: skip
    config = _parsed({
        "seeds": [1, 2],
        "studies": {"texture": {"enabled": False}, "perturbation": {"enabled": False},
                    "context": {"datasets": ["balls"], "patch_sizes": [8, 16], "archs": ["unet",
                                "attention_unet"]}},
        "datasets": {"balls": spheres},
    })  # fmt: skip
    before = check(config).studies[0]
    assert [r.regimes for r in before.rows] == [
        "balls p8: in / out of range",
        "balls p16: in / out of range",
    ]
    generate_named_dataset("resources/datasets/balls", config["datasets"]["balls"])
    after = check(config).studies[0]
    inside, outside = (r for r in after.rows if r.regimes.startswith("balls p16"))
    assert inside.regimes == "balls p16: inside range"
    assert inside.units.known and inside.units.low + outside.units.low == 12
    assert after.rows[0].regimes == "balls p8: in / out of range"  # a patch of the volume


def test_snakemake_refuses_the_twelve_volumes_before_any_job(tmp_path):
    """The whole workflow parse, as a user runs it: refused in seconds, nothing run."""
    (tmp_path / "wf").mkdir()
    work = copy_workflow(tmp_path / "wf")
    raw = twelve_volumes(tmp_path / "mine")
    (work / "mine.yaml").write_text(yaml.safe_dump(mine(raw)))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "mine.yaml"],
        cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert elapsed < 60
    assert "study perturbation cannot produce any claim" in output
    assert "1 training run per architecture" in output and "8 calibration images" in output
    assert "1 independent test unit(s), >= 2 needed (change: seeds, datasets.mine.split" in output
    assert not (work / "resources" / "datasets").exists()  # nothing was prepared or trained
