"""docs/ARCHITECTURE.md stays true to the tree: every file it names exists, and every module of
the library and every rule file is named in it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "ARCHITECTURE.md").read_text()
SRC = REPO / "src" / "segrobust"


def _named_files() -> set[str]:
    """Every `x/y.py`, `x.smk`, `x.md` or `x.yaml` path the page names (in text or layout)."""
    return set(re.findall(r"(?<![\w/.-])([\w/-]+(?:\.[\w-]+)*\.(?:py|smk|md|yaml))\b", DOC))


def _resolve(name: str) -> list[Path]:
    candidates = [REPO / name, SRC / name, REPO / "workflow" / "rules" / name,
                  REPO / "workflow" / "scripts" / name, REPO / "tests" / name,
                  REPO / "docs" / name, REPO / "config" / name]  # fmt: skip
    return [c for c in candidates if c.is_file()]


#: Outputs the pipeline writes (not source files).
OUTPUTS = {"recipe.md", "notes.md"}


def test_every_named_file_exists():
    missing = sorted(n for n in _named_files() - OUTPUTS if not _resolve(n))
    assert not missing, f"docs/ARCHITECTURE.md names files that do not exist: {missing}"


def test_every_dotted_module_named_exists():
    modules = set(re.findall(r"`segrobust\.([\w.]+)", DOC))
    missing = []
    for module in modules:
        parts = module.split(".")
        # the longest prefix that is a module or package; the rest are attributes
        found = any(
            (SRC.joinpath(*parts[:i]).with_suffix(".py")).is_file()
            or (SRC.joinpath(*parts[:i]) / "__init__.py").is_file()
            for i in range(len(parts), 0, -1)
        )
        if not found:
            missing.append(module)
    assert not missing, f"docs/ARCHITECTURE.md names modules that do not exist: {missing}"


def test_every_library_module_rule_file_and_script_is_named():
    named = _named_files()
    packages = {p.parent.name for p in SRC.rglob("*.py")} - {"segrobust"}
    unnamed = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        relative = path.relative_to(SRC).as_posix()
        in_its_package_row = path.parent.name in packages and relative in named
        if relative not in named and path.name not in named and not in_its_package_row:
            unnamed.append(relative)
    for folder in ("rules", "scripts"):
        for path in sorted((REPO / "workflow" / folder).glob("*.*")):
            if path.name not in named:
                unnamed.append(f"workflow/{folder}/{path.name}")
    # the perturbation modules are covered by "one module per perturbation" (their registry)
    unnamed = [u for u in unnamed if not u.startswith("perturb/") or u == "perturb/catalog.py"]
    assert not unnamed, f"docs/ARCHITECTURE.md does not name: {unnamed}"


def test_config_readme_describes_every_key_group():
    """config/README.md (the catalog's usage page) names every top-level key of the schema."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    readme = (REPO / "config" / "README.md").read_text()
    missing = [key for key in schema["properties"] if f"**`{key}`**" not in readme]
    assert not missing, f"config/README.md does not describe {missing}"
    for config in ("config.yaml", "reproduce.yaml", "paper.yaml"):
        assert f"`{config}`" in readme and (REPO / "config" / config).is_file()


def test_the_catalog_layout():
    """The snakemake-workflows catalog's standardized usage: workflow/Snakefile, workflow/envs,
    config/README.md and the catalog's description file."""
    for path in ("workflow/Snakefile", "workflow/envs/segrobust.yaml", "config/README.md"):
        assert (REPO / path).is_file(), path
    assert not (REPO / "Snakefile").exists() and not (REPO / "envs").exists()
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    assert catalog["usage"]["software-stack-deployment"]["conda"] is True
    assert catalog["usage"]["report"] is True
