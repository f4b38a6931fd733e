"""Rule build_report: the report folder of every enabled study (results/report/index.html)."""

import time
from pathlib import Path

from segrobust.execution.job import job
from segrobust.report.assemble import ReportInputs, run_lines, write_report
from segrobust.report.html import package_versions


def main(snakemake):
    with job(snakemake) as log:
        params = snakemake.params
        studies = params.studies
        started = Path(params.started_file)
        inputs = ReportInputs(
            results=Path("results"),
            analysis=Path(snakemake.input.findings).parent,
            figures=Path(snakemake.input.figures[0]).parent,
            captions=Path(snakemake.input.captions[0]).parent,
            table_captions=Path(snakemake.input.table_captions[0]).parent,
        )
        page = write_report(
            snakemake.output[0],
            studies,
            inputs,
            meta=run_lines(
                inputs.results,
                studies,
                Path(params.repo),
                started.read_text().strip() if started.is_file() else None,
                # the file is written when the invocation starts (the Snakefile's onstart)
                time.time() - started.stat().st_mtime if started.is_file() else None,
            ),
            config=params.config,
            versions=package_versions(),
        )
        log(f"wrote {page}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
