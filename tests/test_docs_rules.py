"""The rules as users meet them: every rule name the profiles, docs and README mention exists,
the GPU partition reaches exactly the GPU rules, downloads stay on the submitting machine, every
cluster job derives its runtime and memory, and every rule names the documented environment.

The rules are read from the real Snakefile through Snakemake's API, in a subprocess on a copy
of the workflow (parsing changes the working directory and writes .snakemake/).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from workflow_helpers import REPO, copy_workflow

#: Prints {rule: {"local", "gpu", "resources", "conda"}} for the Snakefile in the working
#: directory. `_localrules` is the Workflow's own record of `localrules:` (no public accessor;
#: `is_local` answers for the executor in use, which is the local one here).
_RULES_SCRIPT = """
import json
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.enums import Quietness
from snakemake.settings.types import OutputSettings, ResourceSettings

# quiet is a set of Quietness (a bool breaks Snakemake's log filter once the Snakefile logs)
with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(),
        snakefile=Path("workflow/Snakefile"),
        workdir=Path.cwd(),
    )._workflow
    rules = {
        rule.name: {
            "local": rule.name in workflow._localrules,
            "gpu": "gpu" in rule.resources.keys(),
            "resources": sorted(rule.resources.keys()),
            "conda": None if rule.conda_env is None else str(rule.conda_env),
            "docstring": rule.docstring,
        }
        for rule in workflow.rules
    }
print("RULES=" + json.dumps(rules))
"""

DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PROFILE_FILES = sorted((REPO / "profiles").rglob("*.yaml"))
NAME = r"[a-z][a-z0-9_]*"


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> dict[str, dict]:
    workdir = copy_workflow(tmp_path_factory.mktemp("rules"))
    done = subprocess.run(
        [sys.executable, "-c", _RULES_SCRIPT],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(workdir / "src")},
        timeout=300,
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("RULES=")]
    assert done.returncode == 0 and line, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(line[0].removeprefix("RULES="))


def mentioned_rule_names(text: str) -> set[str]:
    """Rule names a profile or document refers to: `rule:resource=value` overrides (profile
    lists, `--set-resources`), `--set-threads rule=N` and set-threads list entries,
    `localrules:` lists, and backticked names right after "rule" or "rules" (documents write
    "rule `train_model`"; "the `drop` rule" in prose is not a Snakemake rule)."""
    names = set(re.findall(rf"(?<![\w./:-])({NAME}):[a-z_]+=", text))
    names |= set(re.findall(rf"--set-threads[= ]({NAME})=", text))
    for block in re.findall(r"set-threads:\n((?:[ \t]*#?[ \t]*-[^\n]*\n)+)", text):
        names |= set(re.findall(rf"-\s*({NAME})=\d", block))
    for block in re.findall(r"localrules:\s*\n((?:[ \t]+[^\n]+\n)+)", text):
        names |= set(re.findall(rf"({NAME}),", block))
    for run in re.findall(rf"\brules?\s+((?:`{NAME}`(?:,\s*|\s+and\s+|\s+or\s+)?)+)", text):
        names |= set(re.findall(rf"`({NAME})`", run))
    return names


def test_the_checker_finds_the_examples_that_misled_a_user():
    # profiles/slurm once suggested `train:runtime=720`, a rule that never existed
    assert mentioned_rule_names("#   - train:runtime=720\n") == {"train"}
    text = (
        "--set-threads train_model=8 and rules `a_b`, `c` and `d`; rule `e`, the `drop` rule.\n"
        "set-threads:\n  - f=8\n  # - g=2\nlocalrules:\n    h,\n"
    )
    assert mentioned_rule_names(text) == {"train_model", "a_b", "c", "d", "e", "f", "g", "h"}
    # not rule names: YAML keys, URLs, resource assignments without a rule
    assert not mentioned_rule_names('keep-going: true\nhttps://x.org/a:b=c\nslurm_partition="x"')


@pytest.mark.parametrize(
    "path", PROFILE_FILES + DOC_FILES, ids=lambda p: str(Path(p).relative_to(REPO))
)
def test_every_rule_name_mentioned_exists(rules, path):
    unknown = sorted(mentioned_rule_names(path.read_text()) - set(rules))
    assert not unknown, f"{path.relative_to(REPO)} names rules that do not exist: {unknown}"


def test_profiles_and_docs_mention_the_rules_users_override(rules):
    mentioned = set().union(*(mentioned_rule_names(p.read_text()) for p in PROFILE_FILES))
    assert {"train_model", "evaluate_model"} <= mentioned


def test_gpu_partition_goes_to_exactly_the_gpu_rules(rules):
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    partitioned = {
        entry.split(":", 1)[0]
        for entry in profile.get("set-resources", [])
        if entry.split(":", 1)[1].startswith("slurm_partition=")
    }
    gpu_rules = {name for name, rule in rules.items() if rule["gpu"]}
    assert gpu_rules == {"train_model", "evaluate_model", "predict_images"}
    assert partitioned == gpu_rules


def test_workstation_profile_sets_no_partition():
    text = (REPO / "profiles" / "local" / "config.yaml").read_text()
    assert "slurm_partition" not in text and "set-resources" not in yaml.safe_load(text)


def test_downloads_run_locally_and_nothing_else_does(rules):
    local = {name for name, rule in rules.items() if rule["local"]}
    assert local == {"download_source"}


def test_every_cluster_rule_derives_runtime_and_memory(rules):
    missing = {
        name: sorted({"runtime", "mem_mb"} - set(rule["resources"]))
        for name, rule in rules.items()
        if not rule["local"]
        and name != "all"
        and not {"runtime", "mem_mb"} <= set(rule["resources"])
    }
    assert not missing, f"rules without derived runtime / mem_mb: {missing}"


def test_every_rule_explains_itself_in_list_rules(rules):
    """`snakemake --list-rules` prints each rule's docstring under its name."""
    missing = sorted(name for name, rule in rules.items() if not (rule["docstring"] or "").strip())
    assert not missing, f"rules without a docstring: {missing}"


def test_every_rule_names_the_environment_file(rules):
    envs = {rule["conda"] for name, rule in rules.items() if name != "all"}
    assert len(envs) == 1 and envs.pop().endswith("envs/segrobust.yaml")


def test_environment_file_pins_what_pyproject_pins():
    env = yaml.safe_load((REPO / "workflow" / "envs" / "segrobust.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    python = next(d.split("=", 1)[1] for d in conda if d.startswith("python="))
    assert python + ".0" in SpecifierSet(project["requires-python"])
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # no local paths: Snakemake builds the environment from a copy of the file elsewhere
    assert not [line for line in pip if line.startswith(("-e", ".", "/"))]
    listed = {r.name.lower(): r for r in map(Requirement, pip)}
    wanted = {r.name.lower(): r for r in map(Requirement, project["dependencies"])}
    # and the layers check of `make lint`, from the test extra
    linter = Requirement(
        next(d for d in project["optional-dependencies"]["test"] if d.startswith("import-linter"))
    )
    wanted[linter.name] = linter
    assert set(listed) == set(wanted)
    for name, requirement in listed.items():
        if name != "torch":
            assert requirement.specifier == wanted[name].specifier, name
    # torch: the tested release (the Makefile's pin), inside pyproject's range
    makefile_pin = re.search(r'"torch==([^"]+)"', (REPO / "Makefile").read_text()).group(1)
    assert str(listed["torch"].specifier) == f"=={makefile_pin}"
    assert makefile_pin in wanted["torch"].specifier


def test_licence_file_is_the_licence_pyproject_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    text = (REPO / "LICENSE").read_text()
    assert project["license"] == {"text": "Apache-2.0"}
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it
