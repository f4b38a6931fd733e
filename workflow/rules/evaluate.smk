# One evaluation job per model run: every test condition -> per-image metrics (contract 4),
# and the run's calibration.json (conformal guarantees for predict), from the same predictions.


from segrobust.gpus import rule_resources


rule evaluate_model:
    input:
        model="results/{study}/models/{dataset}/{arch}/p{patch}/seed{seed}/model.pt",
        conditions=get_condition_inputs,
        code=code_of("evaluate_model.py"),
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
        "../../envs/segrobust.yaml"
    threads: config["threads"]["evaluate"]
    resources:
        # gpu, gpu_slots (and gres when jobs share a GPU): segrobust.gpus.rule_resources
        **rule_resources(config["execution"]["gpu_jobs_per_device"], "evaluate_model"),
        runtime=runtime_of("evaluate_model"),
        mem_mb=mem_mb_of("evaluate_model"),
    params:
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
