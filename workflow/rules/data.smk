# Synthetic datasets (texture grid, named synthetic datasets, the second texture generator's
# shifted test sets) and perturbed test splits.


rule generate_texture_dataset:
    """One dataset of the texture study's grid: synthetic images whose foreground and
    background textures are blended at one alpha in one direction (NIfTI + datalist.json).
    """
    output:
        directory("resources/datasets/texture-{direction}-{alpha}"),
    log:
        "logs/data/texture-{direction}-{alpha}.log",
    conda:
        "../envs/segrobust.yaml"
    threads: config["threads"]["data"]
    resources:
        runtime=runtime_of("generate_texture_dataset"),
        mem_mb=mem_mb_of("generate_texture_dataset"),
    params:
        code=code_version("generate_texture_dataset.py"),
        spec=lambda w: texture_dataset_spec(config, w.direction, float(w.alpha)),
    script:
        "../scripts/generate_texture_dataset.py"


rule generate_authors_dataset:
    """A test-only dataset of the second texture generator (the texture paper's way: PIL blend,
    Bezier shapes) like one 2D texture training dataset: a shift kind of its own for the
    applicability check and the per-shift coverage (segrobust.spec.shifts)."""
    output:
        directory("resources/datasets/authors-{dataset}"),
    log:
        "logs/data/authors-{dataset}.log",
    wildcard_constraints:
        dataset=regex_of(
            [n.removeprefix("authors-") for n in authors_dataset_names(config)]
        ),
    conda:
        "../envs/segrobust.yaml"
    threads: config["threads"]["data"]
    resources:
        runtime=runtime_of("generate_authors_dataset"),
        mem_mb=mem_mb_of("generate_authors_dataset"),
    params:
        code=code_version("generate_authors_dataset.py"),
        spec=lambda w: authors_dataset_spec(config, f"authors-{w.dataset}"),
    script:
        "../scripts/generate_authors_dataset.py"


rule generate_synthetic_dataset:
    """A named synthetic dataset of the config's datasets: section (texture images for the
    perturbation study, 3D spheres for the context study)."""
    output:
        directory("resources/datasets/{name}"),
    log:
        "logs/data/{name}.log",
    wildcard_constraints:
        name=regex_of(synthetic_dataset_names(config)),
    conda:
        "../envs/segrobust.yaml"
    threads: config["threads"]["data"]
    resources:
        runtime=runtime_of("generate_synthetic_dataset"),
        mem_mb=mem_mb_of("generate_synthetic_dataset"),
    params:
        code=code_version("generate_synthetic_dataset.py"),
        spec=lambda w: config["datasets"][w.name],
    script:
        "../scripts/generate_synthetic_dataset.py"


rule perturb_test_split:
    """The perturbed copies of a dataset's test split, one sub-dataset per severity of one
    perturbation, for the perturbation study."""
    input:
        dataset="resources/datasets/{dataset}",
    output:
        directory("results/perturbation/conditions/{dataset}/{perturbation}"),
    log:
        "logs/perturbation/conditions/{dataset}/{perturbation}.log",
    conda:
        "../envs/segrobust.yaml"
    threads: config["threads"]["data"]
    resources:
        runtime=runtime_of("perturb_test_split"),
        mem_mb=mem_mb_of("perturb_test_split"),
    params:
        code=code_version("perturb_test_split.py"),
        severities=config["studies"]["perturbation"]["severities"],
        options=lambda w: config["studies"]["perturbation"]["options"].get(
            w.perturbation, {}
        ),
        seed=config["studies"]["perturbation"]["perturbation_seed"],
    script:
        "../scripts/perturb_test_split.py"
