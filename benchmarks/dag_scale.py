"""DAG scale: how long Snakemake takes to build the paper grid's DAG, and a no-op re-run of the
finished default study.

    python benchmarks/dag_scale.py            # from the repository root, after `make run`

Both are wall-clock times of the real `snakemake` command (each includes Python start-up and the
Snakefile parse that every cluster job repeats). Budgets: paper DAG <= 30 s, no-op re-run <= 10 s.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=REPO, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout + proc.stderr


def main() -> None:
    seconds, out = timed("-n", "--configfile", "config/paper.yaml", "--quiet", "rules")
    total = re.search(r"^total\s+(\d+)", out, re.MULTILINE)
    train = re.search(r"^train_model\s+(\d+)", out, re.MULTILINE)
    print(
        f"paper DAG: {total.group(1) if total else '?'} jobs "
        f"({train.group(1) if train else '?'} training) built in {seconds:.1f} s "
        f"(budget 30 s, ratio {seconds / 30:.2f})"
    )
    if not (REPO / "results" / "report" / "index.html").exists():
        print("no-op re-run: skipped (run the default study first: make run)")
        return
    seconds, out = timed("--cores", "all", "--resources", "gpu=1")
    nothing = "Nothing to be done" in out
    print(
        f"no-op re-run of the default study: {seconds:.1f} s (budget 10 s, ratio "
        f"{seconds / 10:.2f}){'' if nothing else ' -- WARNING: jobs were run'}"
    )


if __name__ == "__main__":
    main()
