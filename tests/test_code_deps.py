"""A job's code version hashes its script's import closure: exact on a constructed package,
a superset of what importing each real workflow script loads (execution plumbing left out),
per architecture for the jobs that build one, by content and not by path or mtime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segrobust.spec import code_deps
from segrobust.spec.code_deps import code_files, code_version, is_plumbing

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_closure_of_a_constructed_package(tmp_path):
    src = tmp_path / "src"
    _write(
        src,
        {
            "segrobust/__init__.py": "",
            "segrobust/a/__init__.py": "",
            "segrobust/a/direct.py": "from . import relative\nimport os\n",
            "segrobust/a/relative.py": "from ..b.deep import thing\n",
            "segrobust/a/unused.py": "",
            "segrobust/b/__init__.py": "",
            "segrobust/b/deep.py": "thing = 1\n",
            "segrobust/c/__init__.py": "",
            "segrobust/c/lazy.py": "",
            "segrobust/c/named.py": "",
            "segrobust/d.py": "from segrobust.c import named\n",
            "segrobust/b/hidden.py": "",
            "segrobust/execution/__init__.py": "",
            # plumbing: neither counted nor followed
            "segrobust/execution/runner.py": "from segrobust.b import hidden\n",
        },
    )
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import segrobust.a.direct
            from segrobust import d
            from segrobust.execution import runner

            def main():
                from segrobust.c.lazy import something  # lazy: still a dependency

            REGISTERED = "segrobust.a.unused:thing"  # a record's target: its job declares it
            """
        )
    )
    expected = [
        "segrobust/__init__.py",
        "segrobust/a/__init__.py",
        "segrobust/a/direct.py",
        "segrobust/a/relative.py",
        "segrobust/b/__init__.py",
        "segrobust/b/deep.py",
        "segrobust/c/__init__.py",
        "segrobust/c/lazy.py",
        "segrobust/c/named.py",
        "segrobust/d.py",
    ]
    assert code_files(script, src) == sorted([script, *(src / p for p in expected)])
    declared = code_files(script, src, modules=["segrobust.a.unused"])
    assert src / "segrobust/a/unused.py" in declared


def test_plumbing_is_the_execution_package():
    assert is_plumbing("segrobust.execution") and is_plumbing("segrobust.execution.job")
    for module in ("segrobust.atomic", "segrobust.training.device", "segrobust.executions"):
        assert not is_plumbing(module)


_LOADED = """
import json, runpy, sys
runpy.run_path(sys.argv[1], run_name="imported")  # top-level imports only, main() not called
print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()
                        if n.split(".")[0] == "segrobust" and getattr(m, "__file__", None)
                        and not n.startswith(tuple(sys.argv[2:])))))
"""


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_closure_covers_every_module_the_script_loads(script):
    """Every non-plumbing module the script loads is in its code (the training and
    evaluation scripts load their networks only inside ``main``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-c", _LOADED, str(script), *code_deps.PLUMBING],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=REPO,
    ).stdout
    loaded = {Path(p).resolve() for p in json.loads(out)}
    declared = set(code_files(script, REPO / "src"))
    assert loaded, f"{script.name} loads no segrobust module"
    missing = sorted(map(str, loaded - declared))
    assert not missing, f"{script.name}: loaded but not in its code: {missing}"


def test_a_job_depends_on_its_own_architecture_only():
    train, src = REPO / "workflow/scripts/train_model.py", REPO / "src"
    networks = src / "segrobust" / "networks"
    generic = set(code_files(train, src))
    assert src / "segrobust/training/train.py" in generic
    assert src / "segrobust/analysis/run.py" not in generic
    assert not {networks / "skip_unet.py", networks / "monai_unet.py"} & generic
    unet = set(code_files(train, src, archs=["unet"]))
    assert {networks / "skip_unet.py", networks / "skip_merge.py"} <= unet
    assert networks / "monai_unet.py" not in unet
    # the record table is replaced by the job's own record
    assert src / "segrobust/spec/architectures.py" not in unet
    assert code_version(train, src, archs=["unet"]) != code_version(train, src, archs=["vnet"])
    # one builder, two records: the bound arguments tell them apart
    assert code_version(train, src, archs=["unet"]) != code_version(
        train, src, archs=["noskip_unet"]
    )


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(REPO / "src" / "segrobust", root / "src" / "segrobust")
    shutil.copytree(REPO / "workflow" / "scripts", root / "workflow" / "scripts")
    return root


def test_code_version_follows_contents_not_paths_or_times(tmp_path):
    root = _project(tmp_path)
    script, src = root / "workflow/scripts/train_model.py", root / "src"
    before = code_version(script, src, archs=["unet"])
    assert len(before) == code_deps.VERSION_DIGITS and int(before, 16) >= 0
    # a moved copy of the project has the same version
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    assert (
        code_version(moved / "workflow/scripts/train_model.py", moved / "src", archs=["unet"])
        == before
    )
    # touching a file (a checkout) keeps it; editing one of its files changes it
    builder = src / "segrobust/networks/skip_unet.py"
    os.utime(builder, (1, 1))
    assert code_version(script, src, archs=["unet"]) == before
    builder.write_text(builder.read_text() + "\n# an edit\n")
    assert code_version(script, src, archs=["unet"]) != before
    # editing a builder the job does not use, or plumbing, changes nothing
    assert code_version(script, src, archs=["monai_unet"]) == code_version(
        REPO / "workflow/scripts/train_model.py", REPO / "src", archs=["monai_unet"]
    )
    job = src / "segrobust/execution/job.py"
    unchanged = code_version(script, src, archs=["unet"])
    job.write_text(job.read_text() + "\n# an edit\n")
    assert code_version(script, src, archs=["unet"]) == unchanged


def test_an_unknown_module_is_named():
    with pytest.raises(ModuleNotFoundError, match="no_such_preparation"):
        code_files(
            REPO / "workflow/scripts/prepare_dataset.py",
            REPO / "src",
            modules=["segrobust.data.no_such_preparation"],
        )
