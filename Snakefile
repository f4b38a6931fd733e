# segrobust: which segmentation architecture to trust under which conditions.
#
#   snakemake --cores all --resources gpu=1                 # embedded default study
#   snakemake --profile profiles/slurm                      # the same DAG on a SLURM cluster
#   snakemake --configfile config/paper.yaml --cores all    # the published grids (GPU scale)

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/report/index.html",
    default_target: True
