# Figures per study, the analysis stage, and the self-contained HTML report.


rule plot_study:
    input:
        per_image=lambda w: f"results/{study_of_figure(w.figure)}/per_image.csv",
        patches=lambda w: f"results/{study_of_figure(w.figure)}/patches.csv",
        code=code_of("plot_study.py"),
    output:
        report(
            "results/report/figures/{figure}.png",
            caption="../report/{figure}.rst",
            category="figures",
        ),
    log:
        "logs/report/{figure}.log",
    wildcard_constraints:
        figure="|".join(n for names in FIGURES.values() for n in names),
    conda:
        "../../envs/segrobust.yaml"
    resources:
        runtime=runtime_of("plot_study"),
        mem_mb=mem_mb_of("plot_study"),
    script:
        "../scripts/plot_study.py"


rule analyze:
    input:
        per_image=[f"results/{s}/per_image.csv" for s in STUDIES],
        fnr=[f"results/{s}/fnr.csv" for s in STUDIES],
        patches=[f"results/{s}/patches.csv" for s in STUDIES],
        code=code_of("analyze.py"),
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
    log:
        "logs/analysis/analyze.log",
    conda:
        "../../envs/segrobust.yaml"
    resources:
        runtime=runtime_of("analyze"),
        mem_mb=mem_mb_of("analyze"),
    params:
        settings=config["analysis"],
    script:
        "../scripts/analyze.py"


rule build_report:
    input:
        figures=report_figures(),
        summaries=[f"results/{s}/summary.csv" for s in STUDIES],
        per_image=[f"results/{s}/per_image.csv" for s in STUDIES],
        analysis=rules.analyze.output.tables,
        recipe_text=rules.analyze.output.recipe_text,
        notes=rules.analyze.output.notes,
        captions=report_captions(),
        code=code_of("build_report.py"),
    output:
        "results/report/index.html",
    log:
        "logs/report/build_report.log",
    conda:
        "../../envs/segrobust.yaml"
    resources:
        runtime=runtime_of("build_report"),
        mem_mb=mem_mb_of("build_report"),
    params:
        config=config,
        studies=STUDIES,
    script:
        "../scripts/build_report.py"
