"""Rule aggregate_study: every model run's tables -> the study's tidy tables and summary."""

from segrobust.analysis.aggregate import concat_tables, summarise
from segrobust.jobs import job
from segrobust.spec.runs import run_columns_from_path


def main(snakemake):
    with job(snakemake) as log:
        per_image = concat_tables(snakemake.input.per_image)
        per_image.to_csv(snakemake.output.per_image, index=False)
        summarise(per_image).to_csv(snakemake.output.summary, index=False)
        for name in ("fnr", "train_logs", "patches"):
            table = concat_tables(snakemake.input[name], run_columns_from_path)
            table.to_csv(snakemake.output[name], index=False)
        log(f"{len(per_image)} per-image rows from {len(snakemake.input.per_image)} runs")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
