# One training rule for every study: (study, dataset, arch, patch, seed) -> model run (contract 3).


rule train_model:
    """Train one architecture on one dataset with one seed (and patch size): model.pt, the
    training log and the sampled patches' foreground ratios."""
    input:
        dataset="resources/datasets/{dataset}",
    output:
        model="results/{study}/models/{dataset}/{arch}/p{patch}/seed{seed}/model.pt",
        train_log="results/{study}/models/{dataset}/{arch}/p{patch}/seed{seed}/train_log.csv",
        patches="results/{study}/models/{dataset}/{arch}/p{patch}/seed{seed}/patches.csv",
    log:
        "logs/{study}/train/{dataset}/{arch}/p{patch}/seed{seed}.log",
    benchmark:
        "results/{study}/benchmarks/train/{dataset}/{arch}/p{patch}/seed{seed}.tsv"
    conda:
        "../envs/segrobust.yaml"
    threads: config["threads"]["train"]
    resources:
        # one whole GPU per job, which the job claims (segrobust.execution.gpu_slots)
        gpu=1,
        runtime=runtime_of("train_model"),
        mem_mb=mem_mb_of("train_model"),
    params:
        # the training library and the run's architecture's record and builder
        code=lambda w: code_version("train_model.py", archs=(w.arch,)),
        spec=get_train_spec,
        device=config["device"],
        # outside the outputs, so Snakemake's cleanup of a killed job keeps it for resuming
        checkpoint="results/.checkpoints/{study}/{dataset}/{arch}/p{patch}/seed{seed}/last.pt",
    script:
        "../scripts/train_model.py"
