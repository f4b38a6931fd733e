"""Issue 22, cases 5 and 6: every config value is checked at parse time, naming its key.

A per-dataset ``split: {train: -1, validation: 2, test: "a"}`` gave a 46-line traceback from
``spec/resources.py`` in the dry run; ``extract_max_gb: .inf`` or ``1e300`` ended in a raw
``OverflowError``; seed 2^64, ``gpu_speedup: 1e-300`` and NaN in numeric keys were accepted;
``python -m segrobust.spec.config`` said "read without error" for schema-invalid configs; a config
nested 20000 deep gave a 2,991-line traceback. Now each is one message naming the key and what
is allowed, and nothing is written.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sandbox import make_sandbox
from workflow_helpers import copy_workflow

from segrobust.spec.config import MAX_DEPTH, ConfigError, main, validate_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SEED_MAX = 2**32 - 1
NAN, INF = float("nan"), float("inf")
REAL = {"source": "busi"}


def _refused(config) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA_PATH)
    return str(err.value)


@pytest.mark.parametrize(
    "split, key",
    [
        ({"train": -1, "validation": 2, "test": "a"}, "datasets.b.split."),
        ({"train": 0.5, "validation": 0.5}, "datasets.b.split: "),
        ({"train": 0.7, "validation": 0.1, "test": 0.2, "calibration": 0.1}, "datasets.b.split: "),
        ({"train": 0.8, "validation": 0.1, "test": 0.2}, "datasets.b.split: train + validation"),
        ([0.7, 0.1, 0.2], "datasets.b.split: "),
    ],
)
def test_a_per_dataset_split_is_checked_like_the_top_level_one(split, key):
    message = _refused({"datasets": {"b": {**REAL, "split": split}}})
    assert message.startswith(f"config key {key}")


@pytest.mark.parametrize(
    "config, key, allowed",
    [
        ({"datasets": {"b": {**REAL, "extract_max_gb": INF}}}, "datasets.b.extract_max_gb",
         "a finite number"),
        ({"datasets": {"b": {**REAL, "extract_max_gb": 1e300}}}, "datasets.b.extract_max_gb",
         "<= 10000"),
        ({"seeds": [1, 2**64]}, "seeds[1]", f"<= {SEED_MAX}"),
        ({"analysis": {"seed": 2**32}}, "analysis.seed", f"<= {SEED_MAX}"),
        ({"studies": {"texture": {"data_seed": -1}}}, "studies.texture.data_seed", ">= 0"),
        ({"datasets": {"t": {"source": "synthetic_texture", "seed": 2**40}}}, "datasets.t.seed",
         f"<= {SEED_MAX}"),
        ({"resources": {"gpu_speedup": 1e-300}}, "resources.gpu_speedup", ">= 0.1"),
        ({"analysis": {"fnr_level": NAN}}, "analysis.fnr_level", "a finite number"),
        ({"split": {"train": NAN}}, "split.train", "a finite number"),
        ({"studies": {"perturbation": {"train": {"lr": NAN}}}}, "studies.perturbation.train.lr",
         "a finite number"),
        ({"studies": {"texture": {"alphas": [0.1, -INF]}}}, "studies.texture.alphas[1]",
         "a finite number"),
        ({"datasets": {"s": {"source": "synthetic_spheres", "test_radii": [2, NAN]}}},
         "datasets.s.test_radii[1]", "a finite number"),
        ({"max_image_gb": INF}, "max_image_gb", "a finite number"),
        ({"max_image_gb": 0}, "max_image_gb", ">= 0.001"),
        ({"datasets": {"b": {**REAL, "url": "file:///etc/passwd"}}}, "datasets.b.url",
         "text matching"),
        ({"datasets": {"b": {**REAL, "checksum": "not-hex"}}}, "datasets.b.checksum",
         "text matching"),
        ({"studies": {"texture": {"alphas": [0.1, 0.100000001]}}}, "studies.texture.alphas[1]",
         "differ in their shortest printed form"),
        ({"studies": {"texture": {"alphas": [0.00001]}}}, "studies.texture.alphas[0]", ">= 0.0001"),
        ({"studies": {"context": {"train": {"pos_neg_ratio": [0, 0]}}}},
         "studies.context.train.pos_neg_ratio", "not both 0"),
        ({"datasets": {"Spleen": REAL, "spleen": REAL}}, "datasets", "differ in more than case"),
        ({"threads": {"train": 10**9}}, "threads.train", "<= 1024"),
    ],
)  # fmt: skip
def test_numeric_and_other_values_are_bounded_and_named(config, key, allowed):
    message = _refused(config)
    assert message.startswith(f"config key {key}: ") and allowed in message, message


def _deep(depth: int) -> dict:
    """``{"studies": {"a": {"a": ...}}}``, ``depth`` levels, built without recursion."""
    inner: dict = {}
    top = inner
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]
    return {"studies": top}


def test_a_config_nested_20000_deep_is_one_error():
    message = _refused(_deep(20000))
    assert message.startswith("config key studies.a.a.a.a.a ... a.a: nested more than ")
    assert f"allowed: at most {MAX_DEPTH} levels" in message


INVALID_FILES = {
    "split.yaml": ("datasets: {b: {source: busi, split: {train: -1, validation: 2, test: a}}}\n",
                   "config key datasets.b.split."),
    "seed.yaml": ("seeds: [18446744073709551616]\n", "config key seeds[0]: "),
    "nan.yaml": ("analysis: {fnr_level: .nan}\n", "config key analysis.fnr_level: nan"),
    "name.yaml": ("datasets: {'../../../victim_dir': {source: synthetic_texture}}\n",
                  "config key datasets: the name '../../../victim_dir'"),
    "unknown.yaml": ("studies: {texture: {alpahs: [0.5]}}\n",
                     "config key studies.texture: unknown"),
    "type.yaml": ("device: gpu\n", "config key device: 'gpu' is not allowed; allowed: one of"),
    "deep.yaml": ("studies: " + "{a: " * 20000 + "1" + "}" * 20000 + "\n",
                  "nested too deeply to read"),
    "flow.yaml": ("studies: " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply to read"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(INVALID_FILES))
def test_the_config_checker_validates_the_schema_in_one_line(tmp_path, name, capsys):
    sandbox = make_sandbox(tmp_path)
    text, expected = INVALID_FILES[name]
    path = sandbox.root / name
    path.write_text(text)
    before = sandbox.snapshot()
    assert main([str(path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err[:2000]
    assert expected in err, err
    sandbox.assert_untouched(before)


def test_the_config_checker_accepts_the_shipped_configs(capsys):
    files = [str(REPO / "config" / "config.yaml"), str(REPO / "config" / "paper.yaml")]
    assert main(files) == 0
    assert capsys.readouterr().out.startswith("2 config file(s) valid")


@pytest.mark.workflow
def test_a_dry_run_names_the_key_instead_of_a_traceback(tmp_path):
    """The issue's dry run, and a config/config.yaml nested 20000 deep, in a copy of the
    project: one clear error each, and no output folder is made."""
    sandbox = make_sandbox(tmp_path)
    (sandbox.root / "project").mkdir()
    project = copy_workflow(sandbox.root / "project")
    split = {"train": -1, "validation": 2, "test": "a"}
    (project / "bad.yaml").write_text(yaml.safe_dump({"datasets": {"b": {**REAL, "split": split}}}))
    output = _dry_run(project, "--configfile", "bad.yaml")
    assert "config key datasets.b.split." in output, output[-3000:]
    (project / "config" / "config.yaml").write_text(INVALID_FILES["deep.yaml"][0])
    output = _dry_run(project)
    assert "config/config.yaml: nested too deeply to read" in output, output[-3000:]
    assert not (project / "results").exists() and not (project / "resources").exists()


def _dry_run(project: Path, *args: str) -> str:
    """``snakemake -n`` in ``project``, which must fail with a short message and no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", *args],
        cwd=project, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output and "RecursionError" not in output, output[-3000:]
    assert len(output.splitlines()) < 40, output[-3000:]
    return output
