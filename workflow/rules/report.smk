# Figures per study, the analysis stage, and the self-contained HTML report.

# the registered figures of segrobust.report.figures.FIGURES, per study (a test keeps them equal)
FIGURES = {
    "texture": ["texture_in_domain", "texture_heatmap", "texture_complexity"],
    "perturbation": [
        "perturbation_dice",
        "perturbation_hd95",
        "perturbation_complexity_levels",
    ],
    "context": ["context_patch_size", "context_test_fbr", "context_training_fbr"],
}
ANALYSIS_FIGURES = ["cd_diagram", "coverage"]
# written by segrobust.analysis.run.run_analysis (its OUTPUTS); a test keeps the two in step
ANALYSIS_TABLES = [
    "robustness",
    "corruption_errors",
    "texture_trends",
    "pairwise_wilcoxon",
    "friedman",
    "rankings",
    "bootstrap_ci",
    "conformal_fnr",
    "coverage",
    "per_image_with_bounds",
    "recipe",
    "context_out_of_range",
    "context_fbr_bins",
]


def report_figures():
    """Every figure the report shows, for the enabled studies."""
    figures = [f"results/report/figures/{n}.png" for s in STUDIES for n in FIGURES[s]]
    return figures + [f"results/analysis/{n}.png" for n in ANALYSIS_FIGURES]


def study_of(figure):
    return next(study for study, names in FIGURES.items() if figure in names)


rule plot_study:
    output:
        report(
            "results/report/figures/{figure}.png",
            caption="../report/{figure}.rst",
            category="figures",
        ),
    input:
        per_image=lambda w: f"results/{study_of(w.figure)}/per_image.csv",
        patches=lambda w: f"results/{study_of(w.figure)}/patches.csv",
        code=code(
            "report/figures.py",
            "report/plotting.py",
            "report/texture_figures.py",
            "report/perturbation_figures.py",
            "report/context_figures.py",
        ),
    wildcard_constraints:
        figure="|".join(n for names in FIGURES.values() for n in names),
    log:
        "logs/report/{figure}.log",
    conda:
        "../../envs/segrobust.yaml"
    script:
        "../scripts/plot_study.py"


rule analyze:
    output:
        tables=[f"results/analysis/{name}.csv" for name in ANALYSIS_TABLES],
        recipe_text="results/analysis/recipe.md",
        notes="results/analysis/notes.md",
        cd_diagram=report(
            "results/analysis/cd_diagram.png",
            caption="../report/cd_diagram.rst",
            category="analysis",
        ),
        coverage=report(
            "results/analysis/coverage.png",
            caption="../report/coverage.rst",
            category="analysis",
        ),
    input:
        per_image=[f"results/{s}/per_image.csv" for s in STUDIES],
        fnr=[f"results/{s}/fnr.csv" for s in STUDIES],
        patches=[f"results/{s}/patches.csv" for s in STUDIES],
        code=code(
            "analysis/run.py",
            "analysis/robustness.py",
            "analysis/stats.py",
            "analysis/conformal.py",
            "analysis/recipe.py",
            "analysis/context.py",
            "analysis/plots.py",
        ),
    params:
        settings=config["analysis"],
        out_dir="results/analysis",
    log:
        "logs/analysis/analyze.log",
    conda:
        "../../envs/segrobust.yaml"
    script:
        "../scripts/analyze.py"


rule build_report:
    output:
        "results/report/index.html",
    input:
        figures=report_figures(),
        summaries=[f"results/{s}/summary.csv" for s in STUDIES],
        analysis=rules.analyze.output.tables,
        recipe_text=rules.analyze.output.recipe_text,
        notes=rules.analyze.output.notes,
        code=code("report/html.py"),
    params:
        config=config,
        studies=STUDIES,
    log:
        "logs/report/build_report.log",
    conda:
        "../../envs/segrobust.yaml"
    script:
        "../scripts/build_report.py"
