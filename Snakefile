# segrobust: which segmentation architecture to trust under which conditions.
#
#   snakemake --cores all --resources gpu=1                 # embedded default study
#   snakemake --profile profiles/slurm                      # the same DAG on a SLURM cluster
#   snakemake --configfile config/paper.yaml --cores all    # the published grids (GPU scale)

from snakemake.utils import min_version

min_version("9.0")

# Name the file and line of an empty or malformed config file (Snakemake's own message names
# neither); --configfile files are read by Snakemake before this line (see check_config_files).
from segrobust.spec.config import check_config_files

check_config_files("config/config.yaml", workflow.config_settings.configfiles)


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# A name that becomes a folder is one plain path component: letters, digits, underscores, dashes
# and dots, never a slash and never a leading dot, so never a parent folder (config names are
# checked at parse time too: segrobust.spec.config). Texture dataset names hold a dot (the alpha).
wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    name=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    perturbation="[a-z_]+",
    study="texture|perturbation|context",
    direction="background|foreground",
    alpha=r"[0-9.]+",
    arch="[a-z_]+",
    patch=r"full|\d+",
    seed=r"\d+",
    severity=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/bundled.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/predict.smk"


onstart:
    # a SLURM profile with its EDIT_ME placeholders still in submits nothing
    refuse_profile_placeholders()
    # when this invocation started, for the report's provenance line (not an input of any job)
    Path(RUN_STARTED).parent.mkdir(parents=True, exist_ok=True)
    Path(RUN_STARTED).write_text(time.strftime("%Y-%m-%d %H:%M:%S %Z") + "\n")


rule all:
    """The default target: the report folder (results/report/index.html), every model run's
    calibration file, and the predict folder when predict.images is set."""
    default_target: True
    input:
        "results/report",
        predict_targets(),


onsuccess:
    from segrobust.execution.console import workflow_summary

    print(workflow_summary(log))
