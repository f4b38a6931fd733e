# Synthetic datasets (texture grid, named synthetic datasets) and perturbed test splits.


rule generate_texture_dataset:
    input:
        code("data/textures.py", "data/shapes.py", "complexity.py", "io.py"),
    output:
        directory("resources/datasets/texture-{direction}-{alpha}"),
    log:
        "logs/data/texture-{direction}-{alpha}.log",
    conda:
        "../../envs/segrobust.yaml"
    threads: config["threads"]["data"]
    params:
        spec=lambda w: texture_dataset_spec(config, w.direction, float(w.alpha)),
        split=config["split"],
    script:
        "../scripts/generate_texture_dataset.py"


rule generate_synthetic_dataset:
    input:
        code(
            "data/textures.py",
            "data/shapes.py",
            "data/spheres.py",
            "data/synthetic.py",
            "complexity.py",
            "io.py",
        ),
    output:
        directory("resources/datasets/{name}"),
    log:
        "logs/data/{name}.log",
    wildcard_constraints:
        name=regex_of(synthetic_dataset_names(config)),
    conda:
        "../../envs/segrobust.yaml"
    threads: config["threads"]["data"]
    params:
        spec=lambda w: config["datasets"][w.name],
        split=config["split"],
    script:
        "../scripts/generate_synthetic_dataset.py"


rule perturb_test_split:
    input:
        dataset="resources/datasets/{dataset}",
        code=code(
            "perturb/__init__.py",
            "perturb/base.py",
            "perturb/catalog.py",
            "perturb/seeding.py",
            "perturb/testset.py",
            "perturb/speckle.py",
            "perturb/background_blur.py",
            "perturb/gaussian_noise.py",
            "perturb/rician_noise.py",
            "perturb/bias_field.py",
            "perturb/ghosting.py",
            "perturb/motion.py",
            "perturb/gamma.py",
            "perturb/blur.py",
            "perturb/resolution.py",
            "complexity.py",
            "io.py",
        ),
    output:
        directory("results/perturbation/conditions/{dataset}/{perturbation}"),
    log:
        "logs/perturbation/conditions/{dataset}/{perturbation}.log",
    conda:
        "../../envs/segrobust.yaml"
    threads: config["threads"]["data"]
    params:
        severities=config["studies"]["perturbation"]["severities"],
        seed=config["studies"]["perturbation"]["perturbation_seed"],
    script:
        "../scripts/perturb_test_split.py"
