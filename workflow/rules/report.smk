# The analysis stage, every report figure, and the self-contained HTML report.


rule analyze:
    """The statistics: recipe per regime, the papers' findings, paired tests, Friedman
    ranks, robustness metrics, conformal bounds and their coverage, the context study's
    foreground-ratio analysis."""
    input:
        per_image=[f"results/{s}/per_image.csv" for s in STUDIES],
        fnr=[f"results/{s}/fnr.csv" for s in STUDIES],
        patches=[f"results/{s}/patches.csv" for s in STUDIES],
        applicability=[f"results/{s}/applicability.csv" for s in STUDIES],
    output:
        # each table is also an entry of `snakemake --report`, captioned by the same
        # workflow/report/tables/<table>.rst the HTML report shows above it
        tables=[
            report(
                f"results/analysis/{name}.csv",
                caption=f"../report/tables/{name}.rst",
                category="tables",
            )
            for name in ANALYSIS_TABLES
        ],
        texts=[f"results/analysis/{name}" for name in ANALYSIS_TEXTS],
    log:
        "logs/analysis/analyze.log",
    conda:
        "../envs/segrobust.yaml"
    resources:
        runtime=runtime_of("analyze"),
        mem_mb=mem_mb_of("analyze"),
    params:
        code=code_version("analyze.py"),
        settings=config["analysis"],
    script:
        "../scripts/analyze.py"


rule plot_figure:
    """Draw one report figure from the tables it is drawn from
    (results/figures/<figure>.png, checked for legible text)."""
    input:
        unpack(figure_inputs),
    output:
        report(
            "results/figures/{figure}.png",
            caption="../report/figure.rst",
            category=lambda w: figure_category(w.figure),
        ),
    log:
        "logs/report/{figure}.log",
    wildcard_constraints:
        figure=regex_of(ALL_FIGURES),
    conda:
        "../envs/segrobust.yaml"
    resources:
        runtime=runtime_of("plot_figure"),
        mem_mb=mem_mb_of("plot_figure"),
    params:
        code=code_version("plot_figure.py"),
        # the caption's text (workflow/report/captions/<figure>.rst): shown by --report through
        # the figure.rst template, and its edits re-draw nothing but this rule's report entry
        caption=lambda w: caption_text(w.figure),
    script:
        "../scripts/plot_figure.py"


rule build_report:
    """The HTML report folder: the answer first, then the figures, the statistics and every
    table as CSV (results/report/index.html)."""
    input:
        figures=[f"results/figures/{n}.png" for n in report_figure_names()],
        captions=[caption_file(n) for n in report_figure_names()],
        table_captions=[table_caption_file(n) for n in ANALYSIS_TABLES],
        summaries=[f"results/{s}/summary.csv" for s in STUDIES],
        per_image=[f"results/{s}/per_image.csv" for s in STUDIES],
        train_logs=[f"results/{s}/train_logs.csv" for s in STUDIES],
        analysis=rules.analyze.output.tables,
        texts=rules.analyze.output.texts,
        findings="results/analysis/findings.csv",
    output:
        # the page is the index of its folder's entry in `snakemake --report`: the zip opens on
        # it, with the CSV copies it links to beside it
        report(
            directory("results/report"),
            htmlindex="index.html",
            caption="../report/report_page.rst",
            category="answer",
        ),
    log:
        "logs/report/build_report.log",
    conda:
        "../envs/segrobust.yaml"
    resources:
        runtime=runtime_of("build_report"),
        mem_mb=mem_mb_of("build_report"),
    params:
        code=code_version("build_report.py"),
        config={key: value for key, value in config.items() if key != "resources"},
        studies=STUDIES,
        repo=os.path.relpath(REPO),
        started_file=RUN_STARTED,
    script:
        "../scripts/build_report.py"
