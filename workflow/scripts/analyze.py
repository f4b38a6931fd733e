"""Rule analyze: robustness, statistics, conformal bounds and the recipe over every study."""

from pathlib import Path

import pandas as pd

from segrobust.analysis.run import run_analysis
from segrobust.jobs import job


def main(snakemake):
    with job(snakemake) as log:
        tables = {
            name: pd.concat([pd.read_csv(p) for p in snakemake.input[name]], ignore_index=True)
            for name in ("per_image", "fnr", "patches")
        }
        written = run_analysis(
            tables["per_image"],
            tables["fnr"],
            tables["patches"],
            snakemake.params.settings,
            Path(snakemake.output.notes).parent,
        )
        log(f"wrote {len(written)} analysis outputs")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
