"""A rule's library inputs are its script's import closure: exact on a constructed package, and
a superset of what importing each real workflow script loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segrobust.spec.code_deps import library_files

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_closure_of_a_constructed_package(tmp_path, monkeypatch):
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
        },
    )
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import segrobust.a.direct
            from segrobust import d

            def main():
                from segrobust.c.lazy import something  # lazy: still a dependency

            REGISTERED = "segrobust.b.deep:thing"  # imported by name at run time
            """
        )
    )
    monkeypatch.chdir(tmp_path)
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
    assert library_files(script, src) == [os.path.join("src", p) for p in expected]


def test_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    files = library_files(REPO / "workflow/scripts/train_model.py", REPO / "src")
    assert files and all(not os.path.isabs(f) and f.startswith("src/segrobust/") for f in files)
    assert "src/segrobust/training/train.py" in files
    assert "src/segrobust/analysis/run.py" not in files


_LOADED = """
import json, runpy, sys
runpy.run_path(sys.argv[1], run_name="imported")  # top-level imports only, main() not called
print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()
                        if n.split(".")[0] == "segrobust" and getattr(m, "__file__", None))))
"""


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_closure_covers_every_module_the_script_loads(script, monkeypatch):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-c", _LOADED, str(script)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=REPO,
    ).stdout
    loaded = {os.path.relpath(p, REPO) for p in json.loads(out)}
    monkeypatch.chdir(REPO)
    declared = set(library_files(script, REPO / "src"))
    assert loaded, f"{script.name} loads no segrobust module"
    missing = sorted(loaded - declared)
    assert not missing, f"{script.name}: loaded but not declared: {missing}"
