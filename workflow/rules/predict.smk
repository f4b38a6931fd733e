# New, unlabelled images are segmented with a confidence rating (off unless predict.images is
# set), from the conformal guarantees that travel with each model (calibration.json beside
# model.pt, written by evaluate_model).


rule predict_images:
    """Segment the images of predict.images with the trained models, each with the
    architecture the study's recipe recommends for the regime it falls in, rating each mask
    with its conformal Dice bound (results/predict/summary.html)."""
    input:
        images=lambda w: required_predict_plan().images,
        models=lambda w: predict_run_files("model.pt"),
        calibrations=lambda w: predict_run_files("calibration.json"),
        recipe="results/analysis/recipe.csv",
        # read beside recipe.csv: how a new image is mapped to a regime of the recipe
        regime_ranges="results/analysis/regime_ranges.csv",
        shift_coverage="results/analysis/shift_coverage.csv",
    output:
        directory(PREDICT_DIR),
    log:
        "logs/predict/predict_images.log",
    conda:
        "../envs/segrobust.yaml"
    threads: config["threads"]["evaluate"]
    resources:
        gpu=1,
        runtime=runtime_of("predict_images"),
        mem_mb=mem_mb_of("predict_images"),
    params:
        code=lambda w: predict_code(),
        confidence=lambda w: required_predict_plan().confidence,
        fnr_level=lambda w: required_predict_plan().fnr_level,
        save_probabilities=lambda w: required_predict_plan().save_probabilities,
        device=config["device"],
    script:
        "../scripts/predict_images.py"
