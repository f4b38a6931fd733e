"""Tests of perturb_test_split: layout, entries, determinism, errors and all-or-nothing output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segrobust.data.complexity import lbp_complexity
from segrobust.data.dataset import DataError, DatasetWriter, load_split, read_datalist
from segrobust.perturb import perturb_test_split
from segrobust.registry import UnknownNameError


def make_source(root, shape=(64, 64), n_test=2):
    """A small contract dataset: n_test test cases, one training and one calibration case."""
    rng = np.random.default_rng(0)
    out = root / "source"
    spacing = (0.5,) * len(shape)
    with DatasetWriter(out, provenance={"source": "test"}) as ds:
        splits = ["test"] * n_test + ["training", "calibration"]
        for i, split in enumerate(splits):
            grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
            label = sum((g - n / 2) ** 2 for g, n in zip(grids, shape, strict=True)) < 100
            image = rng.random(shape) * 0.5 + 0.4 * label
            label = label.astype(np.uint8)
            ds.add(
                f"case_{i:03d}",
                image,
                label,
                split=split,
                spacing=spacing,
                complexity=lbp_complexity(image, label),
                fg_ratio=float(label.mean()),
                radius=10,
            )
    return out


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".tmp"))


def test_layout_and_entries(tmp_path):
    source = make_source(tmp_path)
    out = tmp_path / "conditions" / "source" / "speckle"
    perturb_test_split(source, "speckle", [2, 4], seed=1, out_dir=out)

    assert sorted(p.name for p in out.iterdir()) == ["s2", "s4"]
    assert leftovers(out.parent) == []
    clean = {c.case_id: c for c in load_split(source, "test")}
    clean_entries = {e["id"]: e for e in read_datalist(source)["test"]}
    for severity, var in ((2, 0.1), (4, 0.3)):
        condition = out / f"s{severity}"
        datalist = read_datalist(condition)
        assert {k: len(v) for k, v in datalist.items()} == {
            "training": 0,
            "validation": 0,
            "calibration": 0,
            "test": 2,
        }
        provenance = json.loads((condition / "provenance.json").read_text())
        assert provenance["perturbation"] == "speckle"
        assert provenance["severity"] == severity
        assert provenance["parameters"] == {"var": var}
        assert provenance["seed"] == 1
        cases = {c.case_id: c for c in load_split(condition, "test")}
        for entry in datalist["test"]:
            case, source_case = cases[entry["id"]], clean[entry["id"]]
            assert entry["perturbation"] == "speckle"
            assert entry["severity"] == severity
            assert entry["source_id"] == entry["id"]
            assert entry["radius"] == 10
            assert entry["fg_ratio"] == pytest.approx(source_case.label.mean())
            assert entry["source_complexity"] == clean_entries[entry["id"]]["complexity"]
            # The complexity is that of the perturbed image as stored.
            assert entry["complexity"] == pytest.approx(lbp_complexity(case.image, case.label))
            assert entry["complexity"] != pytest.approx(entry["source_complexity"])
            np.testing.assert_array_equal(case.label, source_case.label)
            assert not np.array_equal(case.image, source_case.image)
            assert case.spacing == source_case.spacing


def test_output_is_deterministic_given_the_seed(tmp_path):
    source = make_source(tmp_path)
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        perturb_test_split(source, "gaussian_noise", [1], seed=seed, out_dir=tmp_path / name)
    images = {name: load_split(tmp_path / name / "s1", "test")[0].image for name in ("a", "b", "c")}
    np.testing.assert_array_equal(images["a"], images["b"])
    assert not np.array_equal(images["a"], images["c"])


def test_three_dimensional_source(tmp_path):
    source = make_source(tmp_path, shape=(24, 24, 24), n_test=1)
    out = tmp_path / "bg"
    perturb_test_split(source, "background_blur", [2], seed=0, out_dir=out)
    (case,) = load_split(out / "s2", "test")
    (clean,) = load_split(source, "test")
    assert case.image.shape == (24, 24, 24)
    fg = clean.label == 1
    np.testing.assert_array_equal(case.image[fg], clean.image[fg])


def test_success_replaces_an_old_output(tmp_path):
    source = make_source(tmp_path, n_test=1)
    out = tmp_path / "out"
    (out / "s9").mkdir(parents=True)
    perturb_test_split(source, "blur", [1], seed=0, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["s1"]


@pytest.mark.parametrize(
    "perturbation,severities,error,match",
    [
        ("salt", [1], UnknownNameError, r"unknown perturbation 'salt'; allowed: .*speckle"),
        ("speckle", [0], ValueError, r"severity 0 invalid; allowed: 1, 2, 3, 4, 5"),
        ("speckle", [2, 6], ValueError, r"severity 6 invalid; allowed: 1, 2, 3, 4, 5"),
        ("speckle", [], ValueError, r"no severities"),
        ("speckle", [2, 2], ValueError, r"repeated severity"),
    ],
)
def test_bad_request_names_allowed_values_and_writes_nothing(
    tmp_path, perturbation, severities, error, match
):
    source = make_source(tmp_path, n_test=1)
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        perturb_test_split(source, perturbation, severities, seed=0, out_dir=out)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_corrupt_source_leaves_nothing_behind(tmp_path):
    source = make_source(tmp_path, n_test=3)
    last = read_datalist(source)["test"][-1]
    (source / last["image"]).write_bytes(b"not a nifti")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=last["image"].split("/")[-1]):
        perturb_test_split(source, "speckle", [1, 2], seed=0, out_dir=out)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_failure_keeps_an_existing_output(tmp_path):
    source = make_source(tmp_path, n_test=2)
    out = tmp_path / "out"
    perturb_test_split(source, "speckle", [1], seed=0, out_dir=out)
    before = (out / "s1" / "datalist.json").read_text()
    (source / read_datalist(source)["test"][1]["label"]).write_bytes(b"garbage")
    with pytest.raises(DataError):
        perturb_test_split(source, "speckle", [1, 3], seed=0, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["s1"]
    assert (out / "s1" / "datalist.json").read_text() == before
    assert leftovers(tmp_path) == []
