"""Rule plot_study: one registered report figure from its study's tables."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from segrobust.jobs import job  # noqa: E402
from segrobust.report.figures import FIGURES, draw_figure  # noqa: E402


def main(snakemake):
    with job(snakemake) as log:
        name = snakemake.wildcards.figure
        spec = FIGURES.get(name)
        patches = pd.read_csv(snakemake.input.patches)
        table = patches if spec.table == "patches" else pd.read_csv(snakemake.input.per_image)
        draw_figure(
            name, table, snakemake.output[0], patches=patches if spec.needs_patches else None
        )
        log(f"wrote {snakemake.output[0]}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
