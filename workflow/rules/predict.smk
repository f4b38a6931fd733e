# The conformal guarantees travel with the model (calibration.json beside model.pt), and new,
# unlabelled images are segmented with a confidence rating (off unless predict.images is set).


rule calibrate_model:
    input:
        model="results/{study}/models/{dataset}/{arch}/p{patch}/seed{seed}/model.pt",
        per_image="results/{study}/metrics/{dataset}/{arch}/p{patch}/seed{seed}/per_image.csv",
        fnr="results/{study}/metrics/{dataset}/{arch}/p{patch}/seed{seed}/fnr.csv",
        dataset="resources/datasets/{dataset}",
        code=code_of("calibrate_model.py"),
    output:
        "results/{study}/models/{dataset}/{arch}/p{patch}/seed{seed}/calibration.json",
    log:
        "logs/{study}/calibrate/{dataset}/{arch}/p{patch}/seed{seed}.log",
    conda:
        "../../envs/segrobust.yaml"
    threads: config["threads"]["evaluate"]
    resources:
        gpu=1,
        runtime=runtime_of("calibrate_model"),
        mem_mb=mem_mb_of("calibrate_model"),
    params:
        alpha=config["analysis"]["conformal_alpha"],
        fnr_level=config["analysis"]["fnr_level"],
        window=lambda w: window_settings(config, w.study),
        device=config["device"],
    script:
        "../scripts/calibrate_model.py"


rule predict_images:
    input:
        images=lambda w: required_predict_plan().images,
        models=lambda w: predict_run_files("model.pt"),
        calibrations=lambda w: predict_run_files("calibration.json"),
        recipe="results/analysis/recipe.csv",
        code=code_of("predict_images.py"),
    output:
        directory(PREDICT_DIR),
    log:
        "logs/predict/predict_images.log",
    conda:
        "../../envs/segrobust.yaml"
    threads: config["threads"]["evaluate"]
    resources:
        gpu=1,
        runtime=runtime_of("predict_images"),
        mem_mb=mem_mb_of("predict_images"),
    params:
        confidence=lambda w: required_predict_plan().confidence,
        fnr_level=lambda w: required_predict_plan().fnr_level,
        save_probabilities=lambda w: required_predict_plan().save_probabilities,
        device=config["device"],
    script:
        "../scripts/predict_images.py"
