"""Running the real Snakefile on a copy of the workflow in a temporary directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"


def copy_workflow(dest: Path) -> Path:
    """Copy what the Snakefile reads (and the library, whose mtimes the code trigger watches)."""
    for item in ("workflow", "config", "src"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / item)
    shutil.copy2(TINY, dest / "tiny.yaml")
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` with the tiny config; output captured as text."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "tiny.yaml", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule -> number of jobs a dry run would execute."""
    proc = snakemake(workdir, "--dry-run", "--quiet", "rules", *args)
    counts = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        match = re.fullmatch(r"\s*([a-z_]+)\s+(\d+)\s*", line)
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def planned_wildcards(workdir: Path, rule: str, *args: str) -> list[str]:
    """The wildcards lines of the jobs of ``rule`` a dry run would execute."""
    proc = snakemake(workdir, "--dry-run", *args)
    out, lines = [], (proc.stdout + proc.stderr).splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"rule {rule}:":
            for follow in lines[i + 1 : i + 12]:
                if follow.strip().startswith("wildcards:"):
                    out.append(follow.strip())
                    break
    return out
