"""Rule plot_figure: one registered report figure from the tables it is drawn from."""

import matplotlib

matplotlib.use("Agg")

from segrobust.contract import FIGURE_TABLES, read_table  # noqa: E402
from segrobust.execution.job import job  # noqa: E402
from segrobust.report.figures import draw_figure  # noqa: E402


def main(snakemake):
    with job(snakemake) as log:
        figure = snakemake.wildcards.figure
        tables = {name: read_table(snakemake.input[name]) for name in FIGURE_TABLES[figure]}
        draw_figure(figure, tables, snakemake.output[0])
        log(f"wrote {snakemake.output[0]}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
