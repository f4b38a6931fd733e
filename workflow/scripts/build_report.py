"""Rule build_report: the self-contained HTML report of every enabled study."""

from pathlib import Path

from segrobust.jobs import job
from segrobust.report.assemble import pipeline_sections
from segrobust.report.html import build_html_report, package_versions


def main(snakemake):
    with job(snakemake) as log:
        build_html_report(
            snakemake.output[0],
            title="segrobust report",
            sections=pipeline_sections(
                snakemake.params.studies,
                "results/report/figures",
                "results",
                "results/analysis",
                Path(snakemake.input.captions[0]).parent,
            ),
            config=snakemake.params.config,
            versions=package_versions(),
        )
        log(f"wrote {snakemake.output[0]}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
