# Per study: every model run's tables -> one tidy table each, plus the summary.


rule aggregate_study:
    """Gather every run's per-image metrics, FNR curves, training logs and patches of one
    study into its tables and a summary."""
    input:
        per_image=lambda w: study_outputs(w.study, "per_image.csv"),
        fnr=lambda w: study_outputs(w.study, "fnr.csv"),
        train_logs=lambda w: study_outputs(w.study, "train_log.csv"),
        patches=lambda w: study_outputs(w.study, "patches.csv"),
        applicability=lambda w: study_outputs(w.study, "applicability.csv"),
    output:
        per_image="results/{study}/per_image.csv",
        fnr="results/{study}/fnr.csv",
        train_logs="results/{study}/train_logs.csv",
        patches="results/{study}/patches.csv",
        applicability="results/{study}/applicability.csv",
        summary="results/{study}/summary.csv",
    log:
        "logs/{study}/aggregate.log",
    wildcard_constraints:
        study="texture|perturbation|context",
    conda:
        "../envs/segrobust.yaml"
    resources:
        runtime=runtime_of("aggregate_study"),
        mem_mb=mem_mb_of("aggregate_study"),
    params:
        code=code_version("aggregate_study.py"),
    script:
        "../scripts/aggregate_study.py"
