"""Rule build_report: the self-contained HTML report of every enabled study."""

import time
from pathlib import Path

from segrobust import atomic
from segrobust.execution.job import job
from segrobust.report.assemble import ReportInputs, pipeline_sections, run_lines
from segrobust.report.html import build_html_report, package_versions


def main(snakemake):
    with job(snakemake) as log:
        params, output = snakemake.params, snakemake.output
        studies = params.studies
        started = Path(params.started_file)
        inputs = ReportInputs(
            results=Path("results"),
            analysis=Path(snakemake.input.findings).parent,
            figures=Path(snakemake.input.figures[0]).parent,
            captions=Path(snakemake.input.captions[0]).parent,
            tables_out=Path(output.tables),
        )
        atomic.write_text(output.findings, Path(snakemake.input.findings).read_text())
        build_html_report(
            output.html,
            title="segrobust report",
            meta=run_lines(
                inputs.results,
                studies,
                Path(params.repo),
                started.read_text().strip() if started.is_file() else None,
                # the file is written when the invocation starts (the Snakefile's onstart)
                time.time() - started.stat().st_mtime if started.is_file() else None,
            ),
            sections=pipeline_sections(studies, inputs),
            config=params.config,
            versions=package_versions(),
        )
        log(f"wrote {output.html}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
