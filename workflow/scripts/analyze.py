"""Rule analyze: robustness, statistics, conformal bounds and the recipe over every study."""

from pathlib import Path

from segrobust.analysis.aggregate import concat_tables
from segrobust.analysis.run import run_analysis
from segrobust.execution.job import job


def main(snakemake):
    with job(snakemake) as log:
        tables = {
            name: concat_tables(snakemake.input[name])
            for name in ("per_image", "fnr", "patches", "applicability")
        }
        written = run_analysis(
            tables["per_image"],
            tables["fnr"],
            tables["patches"],
            snakemake.params.settings,
            Path(snakemake.output.texts[0]).parent,
            applicability=tables["applicability"],
        )
        log(f"wrote {len(written)} analysis outputs")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
