# One evaluation job per model run: every test condition -> per-image metrics (contract 4),
# and the run's calibration.json (conformal guarantees for predict), from the same predictions.


rule evaluate_model:
    """Score one trained model on every test condition it is evaluated on (per-image
    metrics, FNR curves) and write its conformal calibration file."""
    input:
        model="results/{study}/models/{dataset}/{arch}/p{patch}/seed{seed}/model.pt",
        conditions=get_condition_inputs,
    output:
        per_image="results/{study}/metrics/{dataset}/{arch}/p{patch}/seed{seed}/per_image.csv",
        fnr="results/{study}/metrics/{dataset}/{arch}/p{patch}/seed{seed}/fnr.csv",
        # every image's shift kind, role and applicability p-value (per-shift coverage)
        applicability="results/{study}/metrics/{dataset}/{arch}/p{patch}/seed{seed}/applicability.csv",
        # the conformal guarantees travel with the model: predict reads it beside model.pt
        calibration="results/{study}/models/{dataset}/{arch}/p{patch}/seed{seed}/calibration.json",
        # empty unless the study's inference.save_predictions is set
        predictions=directory(
            "results/{study}/metrics/{dataset}/{arch}/p{patch}/seed{seed}/predictions"
        ),
    log:
        "logs/{study}/evaluate/{dataset}/{arch}/p{patch}/seed{seed}.log",
    benchmark:
        "results/{study}/benchmarks/evaluate/{dataset}/{arch}/p{patch}/seed{seed}.tsv"
    conda:
        "../envs/segrobust.yaml"
    threads: config["threads"]["evaluate"]
    resources:
        # one whole GPU per job, which the job claims (segrobust.execution.gpu_slots)
        gpu=1,
        runtime=runtime_of("evaluate_model"),
        mem_mb=mem_mb_of("evaluate_model"),
    params:
        # the evaluation library and the run's architecture's record and builder
        code=lambda w: code_version("evaluate_model.py", archs=(w.arch,)),
        conditions=get_conditions,
        window=lambda w: window_settings(config, w.study),
        save_predictions=lambda w: (
            w.study == "context"
            and config["studies"]["context"]["inference"]["save_predictions"]
        ),
        evaluation=config["evaluation"],
        device=config["device"],
    script:
        "../scripts/evaluate_model.py"
