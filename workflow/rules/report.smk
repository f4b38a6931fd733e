# The analysis stage, every report figure, and the self-contained HTML report.


rule analyze:
    input:
        per_image=[f"results/{s}/per_image.csv" for s in STUDIES],
        fnr=[f"results/{s}/fnr.csv" for s in STUDIES],
        patches=[f"results/{s}/patches.csv" for s in STUDIES],
        applicability=[f"results/{s}/applicability.csv" for s in STUDIES],
        code=code_of("analyze.py"),
    output:
        tables=[f"results/analysis/{name}.csv" for name in ANALYSIS_TABLES],
        texts=[f"results/analysis/{name}" for name in ANALYSIS_TEXTS],
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


rule plot_figure:
    input:
        unpack(figure_inputs),
    output:
        report(
            "results/report/figures/{figure}.png",
            caption="../report/figure.rst",
            category=lambda w: figure_category(w.figure),
        ),
    log:
        "logs/report/{figure}.log",
    wildcard_constraints:
        figure=regex_of(ALL_FIGURES),
    conda:
        "../../envs/segrobust.yaml"
    resources:
        runtime=runtime_of("plot_figure"),
        mem_mb=mem_mb_of("plot_figure"),
    params:
        # the caption's text (workflow/report/captions/<figure>.rst): shown by --report through
        # the figure.rst template, and its edits re-draw nothing but this rule's report entry
        caption=lambda w: caption_text(w.figure),
    script:
        "../scripts/plot_figure.py"


rule build_report:
    input:
        figures=[f"results/report/figures/{n}.png" for n in report_figure_names()],
        captions=[caption_file(n) for n in report_figure_names()],
        summaries=[f"results/{s}/summary.csv" for s in STUDIES],
        per_image=[f"results/{s}/per_image.csv" for s in STUDIES],
        train_logs=[f"results/{s}/train_logs.csv" for s in STUDIES],
        analysis=rules.analyze.output.tables,
        texts=rules.analyze.output.texts,
        findings="results/analysis/findings.csv",
        code=code_of("build_report.py"),
    output:
        html="results/report/index.html",
        findings="results/report/findings.csv",
        tables=directory("results/report/tables"),
    log:
        "logs/report/build_report.log",
    conda:
        "../../envs/segrobust.yaml"
    resources:
        runtime=runtime_of("build_report"),
        mem_mb=mem_mb_of("build_report"),
    params:
        config={key: value for key, value in config.items() if key != "resources"},
        studies=STUDIES,
        repo=os.path.relpath(REPO),
        started_file=RUN_STARTED,
    script:
        "../scripts/build_report.py"
