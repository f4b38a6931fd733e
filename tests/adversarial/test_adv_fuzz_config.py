"""Seeded, bounded fuzzing of the config (issue 22): random hostile names (``..``, ``/``,
absolute, NUL, unicode, very long, dots) and values (NaN, inf, huge, negative, wrong types,
deep nesting) through the parse-time checks and the path building, in a pipeline process
confined as the Snakefile confines it.

For every config: it is refused with a ``ConfigError`` whose message starts with the key it
names (``config key ...``), never another exception; or it is accepted, and then every path the
pipeline would write for it (datasets, model runs, metrics, checkpoints, perturbed test sets,
logs) lies below the project's ``results/``, ``resources/`` or ``logs/`` and is created and
removed there through ``segrobust.atomic``. Hostile names are also written through the writer
directly, bypassing the schema. Nothing outside the project changes (snapshot of the sandbox
around it).
"""

from __future__ import annotations

import copy
import functools
import math
import os
import random
from pathlib import Path

import pytest
from sandbox import make_sandbox, snapshot

from segrobust import atomic
from segrobust.contract import texture_dataset_name
from segrobust.spec.config import ConfigError, validate_config
from segrobust.spec.predict_targets import predict_plan
from segrobust.spec.runs import enabled_studies, study_runs

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SEED = 20250722
N_CONFIGS = 300
N_NAMES = 2000  # straight through the writer

NAMES = [
    "../../../victim", "..", ".", "", "/tmp/x", "a/b", "a/../../b", "x\x00y", "é", "数据", "a b",
    ".hidden", "-x", "x" * 65, "x" * 300, "a.b", "a\\b", "~", "$HOME", "a\nb", "C:", "ok/", "./ok",
]  # fmt: skip
#: Names the schema accepts (so that accepted configs are generated too).
PLAIN_NAMES = ["ok", "Ok_2", "t-1", "A", "x" * 64, "9lives", "spleen3d"]
VALUES = [
    math.nan, math.inf, -math.inf, 1e300, -1e300, 1e-300, -1, 0, 2**64, 2**31, "abc", "", None,
    [], {}, True, [math.nan], {"a": 1}, [[[[1]]]], 0.5, 3,
]  # fmt: skip
#: Numeric keys, each with a value it accepts.
NUMERIC_KEYS = {
    ("seeds", 0): 7, ("split", "calibration_fraction"): 0.25,
    ("studies", "texture", "alphas", 0): 0.3, ("studies", "texture", "image_size"): 32,
    ("studies", "texture", "data_seed"): 2**32 - 1, ("studies", "context", "patch_sizes", 0): 16,
    ("studies", "perturbation", "train", "lr"): 0.01,
    ("resources", "gpu_speedup"): 0.5, ("resources", "max_runtime"): 60,
    ("analysis", "n_bootstrap"): 200, ("analysis", "seed"): 3, ("analysis", "fnr_level"): 0.2,
    ("max_image_gb",): 2, ("evaluation", "nsd_tolerance"): 2, ("threads", "train"): 4,
}  # fmt: skip
#: Per source, keys of a dataset entry, each with a value it accepts.
DATASET_KEYS = {
    "synthetic_texture": {"seed": 5, "image_size": 32, "alpha": 0.3},
    "synthetic_spheres": {"seed": 5, "volume_size": 16},
    "busi": {"seed": 5, "image_size": 32, "extract_max_gb": 2.5, "max_cases": 10},
}


def _name(rng: random.Random) -> str:
    """A name: one the schema accepts, a hostile one, or random characters."""
    if rng.random() < 0.4:
        return rng.choice(PLAIN_NAMES)
    if rng.random() < 0.6:
        return rng.choice(NAMES)
    alphabet = "ab_-./\\ \x00é数~0"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def _deep(depth: int) -> dict:
    inner: dict = {}
    top = inner
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]
    return top


def _value(rng: random.Random, valid):
    """``valid`` half the time, else a hostile value (now and then one nested deeply)."""
    if rng.random() < 0.5:
        return valid
    if rng.random() < 0.05:
        return _deep(rng.choice((40, 2000)))
    return copy.deepcopy(rng.choice(VALUES))


def _put(config: dict, path: tuple, value) -> None:
    """Set ``config[path]``, creating mappings and lists on the way."""
    target = config
    for key, following in zip(path, path[1:], strict=False):
        if isinstance(key, int):
            while len(target) <= key:
                target.append(None)
            if not isinstance(target[key], (dict, list)):
                target[key] = [] if isinstance(following, int) else {}
        elif not isinstance(target.get(key), (dict, list)):
            target[key] = [] if isinstance(following, int) else {}
        target = target[key]
    last = path[-1]
    if isinstance(last, int):
        while len(target) <= last:
            target.append(0.5)
    target[last] = value


def _config(rng: random.Random) -> dict:
    """A small study (so that accepted configs are quick to expand) with 1-3 changes."""
    config: dict = {
        "studies": {
            "texture": {"enabled": rng.random() < 0.3, "archs": ["unet"], "alphas": [0.5]},
            "perturbation": {"enabled": False},
            "context": {"enabled": False},
        },
    }
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        name = _name(rng)
        if roll < 0.35:
            source = rng.choice(sorted(DATASET_KEYS))
            entry = {"source": source}
            if rng.random() < 0.4:
                key = rng.choice(sorted(DATASET_KEYS[source]))
                entry[key] = _value(rng, DATASET_KEYS[source][key])
            config.setdefault("datasets", {})[name] = entry
            if rng.random() < 0.5:
                study = "context" if source == "synthetic_spheres" else "perturbation"
                config["studies"][study] = {"enabled": True, "datasets": [name], "archs": ["unet"]}
                if study == "perturbation":
                    config["studies"][study]["perturbations"] = ["blur"]
                else:
                    config["studies"][study]["patch_sizes"] = [16]
        elif roll < 0.8:
            key = rng.choice(list(NUMERIC_KEYS))
            _put(config, key, _value(rng, NUMERIC_KEYS[key]))
        elif roll < 0.9:
            config["predict"] = {"images": "new", "dataset": name}
        else:
            config["predict"] = {"images": "new", "model": f"perturbation/{name}/unet/pfull/seed1"}
    return config


def _shown(config: dict) -> str:
    """The config for a failure message (a deeply nested one has no repr)."""
    try:
        return repr(config)[:300]
    except RecursionError:
        return "(nested too deeply to show)"


def _output_paths(config: dict) -> list[str]:
    """Every path the pipeline writes for ``config`` (the rules' output and log patterns)."""
    paths = []
    for name in config["datasets"]:
        paths += [f"resources/datasets/{name}", f"logs/data/{name}.log"]
    for study in enabled_studies(config):
        for run in study_runs(config, study):
            paths += [
                f"{run.model_dir}/model.pt", f"{run.metrics_dir}/per_image.csv",
                f"results/.checkpoints/{run.study}/models/{run.path}/last.pt",
            ]  # fmt: skip
    texture = config["studies"]["texture"]
    if texture["enabled"]:
        for direction in texture["directions"]:
            for alpha in texture["alphas"]:
                paths.append(f"resources/datasets/{texture_dataset_name(direction, alpha)}")
    perturbation = config["studies"]["perturbation"]
    if perturbation["enabled"]:
        for dataset in perturbation["datasets"]:
            for name in perturbation["perturbations"]:
                paths.append(f"results/perturbation/conditions/{dataset}/{name}")
    return paths


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder inside a sandbox, as the working directory of a confined job."""
    sandbox = make_sandbox(tmp_path)
    project = sandbox.target.parent / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv(atomic.OUTPUT_ROOTS_ENV, "")  # so that the test's value is undone after it
    atomic.confine_outputs(["results", "resources", "logs"])
    return sandbox, project


def _changed_outside(before: dict, after: dict, project: Path, root: Path) -> list[str]:
    inside = str(project.relative_to(root))
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    return sorted(k for k in changed if k != inside and not k.startswith(inside + os.sep))


@pytest.fixture
def schema_read_once(monkeypatch):
    """Snakemake's ``validate`` parses the schema file (with a pure-Python YAML loader) on every
    call; the fuzzer validates hundreds of configs, so it parses it once."""
    import snakemake.utils

    load = functools.lru_cache(maxsize=4)(snakemake.utils._load_configfile)
    monkeypatch.setattr(
        snakemake.utils,
        "_load_configfile",
        lambda source, filetype: copy.deepcopy(load(source, filetype)),
    )


def test_fuzzed_configs_are_refused_naming_a_key_or_write_only_inside_the_project(
    project, schema_read_once
):
    sandbox, root = project
    rng = random.Random(SEED)
    outcomes = {"refused": 0, "accepted": 0}
    roots = [(root / folder).resolve() for folder in ("results", "resources", "logs")]
    before = snapshot(sandbox.root)
    for i in range(N_CONFIGS):
        config = _config(rng)
        try:
            validate_config(config, SCHEMA_PATH)
            runs = {s: study_runs(config, s) for s in enabled_studies(config)}
            predict_plan(config, runs)
        except ConfigError as exc:
            assert str(exc).startswith("config key "), (i, _shown(config), str(exc))
            outcomes["refused"] += 1
            continue
        outcomes["accepted"] += 1
        for path in _output_paths(config):
            atomic.check_output_path(path)
            where = Path(path).resolve()
            assert any(where.is_relative_to(r) and where != r for r in roots), (i, path)
            with atomic.atomic_dir(path) as staged:
                (staged / "x").write_text("x")
            atomic.remove(Path(path) / "x")
    assert _changed_outside(before, snapshot(sandbox.root), root, sandbox.root) == []
    # the generator exercises both outcomes in earnest
    assert outcomes["refused"] > N_CONFIGS // 3 and outcomes["accepted"] > N_CONFIGS // 10, outcomes


def test_fuzzed_names_written_straight_through_the_writer_stay_in_the_project(project):
    sandbox, root = project
    rng = random.Random(SEED + 1)
    before = snapshot(sandbox.root)
    written = refused = 0
    for _ in range(N_NAMES):
        name = _name(rng)
        base = rng.choice(["resources/datasets/", "results/perturbation/models/", "logs/data/"])
        try:
            with atomic.atomic_dir(base + name) as staged:
                (staged / "datalist.json").write_text("{}")
        except atomic.OutputPathError:
            refused += 1
            continue
        except atomic.OutputError as exc:  # a name the file system refuses (too long)
            assert "could not write" in str(exc)
            refused += 1
            continue
        written += 1
        target = Path(base + name).resolve()
        assert target.is_relative_to(root.resolve()) and (target / "datalist.json").is_file()
    assert _changed_outside(before, snapshot(sandbox.root), root, sandbox.root) == []
    assert written > N_NAMES // 10 and refused > N_NAMES // 10, (written, refused)
