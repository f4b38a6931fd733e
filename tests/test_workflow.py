"""The tiny config end to end through every rule, then the rerun semantics (by dry run)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import zipfile
from html import unescape

import pandas as pd
import pytest
import yaml
from workflow_helpers import copy_workflow, planned_jobs, planned_wildcards, snakemake

from segrobust.contract import ANALYSIS_FIGURES, ANALYSIS_TABLES, FIGURE_TABLES, FIGURES
from segrobust.report.screenshot import find_browser, first_screen
from segrobust.spec import code_deps

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A copy of the workflow on which the tiny config has run to completion."""
    workdir = copy_workflow(tmp_path_factory.mktemp("wf"))
    proc = snakemake(workdir)
    (workdir.parent / f"{workdir.name}-console.txt").write_text(proc.stdout + proc.stderr)
    return workdir


def test_every_rule_ran_and_report_is_complete(finished):
    html = unescape((finished / "results/report/index.html").read_text())
    figures = sorted((finished / "results/figures").glob("*.png"))
    assert len(figures) == 3 * 3 + len(ANALYSIS_FIGURES)  # three per study + the analysis ones
    assert html.count("data:image/png;base64") == len(figures)
    # figures are shown at their physical size (1 figure inch = 96 CSS px), within the page
    widths = [int(w) for w in re.findall(r'<img alt="[^"]*" width="(\d+)"', html)]
    assert len(widths) == len(figures) and max(widths) <= 1100
    for word in ("Wilcoxon", "Holm", "Friedman", "critical difference", "conformal", "coverage",
                 "Degradation"):  # fmt: skip
        assert word.lower() in html.lower(), word
    # the answer leads; raw tables are folded at the end, each copied beside the page
    assert html.index('id="answer"') < html.index('id="texture"') < html.index('id="tables"')
    assert "Which architecture to use" in html and "The papers' findings" in html
    copies = {p.stem for p in (finished / "results/report/tables").iterdir()}
    assert set(ANALYSIS_TABLES) <= copies
    findings = pd.read_csv(finished / "results/report/findings.csv")
    assert set(findings["reproduced"]) <= {"yes", "no", "inconclusive", "not run"}
    per_image = pd.read_csv(finished / "results/texture/per_image.csv")
    assert set(per_image["arch"]) == {"unet", "noskip_unet"}
    assert set(per_image["split"]) == {"test", "calibration"}
    assert per_image["dice"].between(0, 1).all()
    log = pd.read_csv(
        finished / "results/texture/models/texture-background-0.2/unet/pfull/seed1/train_log.csv"
    )
    assert list(log["epoch"]) == [1]


def _words(text: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", text)).split())


def test_snakemake_report_carries_the_answer_the_tables_and_every_figure(finished):
    """`snakemake --report report.zip` holds the report page as its entry's index (with the CSV
    tables it links to beside it), every analysis table as an entry, every figure, and each
    with the caption of its .rst file."""
    snakemake(finished, "--report", "report.zip")
    with zipfile.ZipFile(finished / "report.zip") as packed:
        names = packed.namelist()
        index = [n for n in names if n.endswith("/index.html")]
        assert len(index) == 1, names
        page = unescape(packed.read(index[0]).decode("utf-8"))
        folder = index[0].rsplit("/", 1)[0]
        linked = {
            name: packed.read(f"{folder}/tables/{name}.csv").decode("utf-8")
            for name in ("recipe", "findings")
        }
        text = " ".join(
            packed.read(n).decode("utf-8", "replace") for n in names if n.endswith(".html")
        )
    assert 'id="answer"' in page and "Which architecture to use" in page
    assert "The papers' findings" in page and 'href="tables/recipe.csv"' in page
    analysis = finished / "results" / "analysis"
    for name, csv in linked.items():
        assert csv == (analysis / f"{name}.csv").read_text()
    assert f"{folder}/findings.csv" in names
    words = _words(text)
    for table in ANALYSIS_TABLES:  # an entry of its own, outside the page's folder
        assert any(n.endswith(f"/{table}.csv") and not n.startswith(folder) for n in names), table
        caption = (finished / "workflow/report/tables" / f"{table}.rst").read_text().split()
        assert " ".join(caption[:6]) in words, table
    for figure in [*[n for names_ in FIGURES.values() for n in names_], *ANALYSIS_FIGURES]:
        assert any(n.endswith(f"{figure}.png") for n in names), figure
        caption = (finished / "workflow/report/captions" / f"{figure}.rst").read_text().split()
        assert " ".join(caption[:6]) in words, figure
    assert "which segmentation architecture to trust" in text


def test_the_run_printed_the_preflight_table_once(finished):
    console = (finished.parent / f"{finished.name}-console.txt").read_text()
    assert console.count("segrobust pre-flight: what each study's statistics can reach") == 1
    assert "pre-flight: no architecture claim in texture complexity: 3 bins" in console


def test_report_leads_with_the_answer_on_the_first_screen(finished, tmp_path):
    """Issue 20: every study's verdict lines (computed from the tables) lie wholly on the first
    1280 x 900 screen in Chromium, and the page's text before the first figure stays short (the
    issue measured ~2,300 words and ~340 decimal numbers there)."""
    page = finished / "results/report/index.html"
    html = page.read_text()
    for study in ("texture", "perturbation", "context"):
        box = re.search(rf"<div class='verdict' id='verdict-{study}'>(.*?)</div>", html)
        assert box is not None and 1 <= box.group(1).count("<li>") <= 5, study
    assert "no architecture claim: 1 training run per architecture (set seeds: [1, 2, 3])" in (
        unescape(html)
    )
    assert "noskip_unet" not in _words(html.split('<section id="texture">')[0])
    if find_browser() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium (apt-get install chromium): .ci/run does")
        pytest.skip("no Chromium here (apt-get install chromium); CI runs this check")
    screen = first_screen(page, width=1280, height=900, screenshot=tmp_path / "s.png")
    assert screen.answer_visible, screen
    assert screen.verdicts_visible and screen.verdict_lines >= 3, screen
    assert screen.words_before_figures < 1000 and screen.decimals_before_figures < 100, screen
    assert screen.scaled_figures == ()  # every figure shown at its full intended size
    assert (tmp_path / "s.png").stat().st_size > 0


def test_second_run_executes_nothing(finished):
    assert planned_jobs(finished) == {}
    start = time.monotonic()
    proc = snakemake(finished)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert time.monotonic() - start < 30  # the <= 10 s budget is measured in benchmarks/


def _with_config(workdir, mutate):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    mutate(config)
    (workdir / "changed.yaml").write_text(yaml.safe_dump(config))
    return ("--configfile", "changed.yaml")


def test_one_architecture_width_retrains_only_that_architecture(finished):
    args = _with_config(
        finished,
        lambda c: c.setdefault("models", {}).update({"noskip_unet": {"channels": [4, 8, 16, 32]}}),
    )
    trained = planned_wildcards(finished, "train_model", *args)
    assert trained and all("arch=noskip_unet" in w for w in trained)
    assert all("study=texture" in w for w in trained)  # the only study using noskip_unet
    jobs = planned_jobs(finished, *args)
    assert jobs["train_model"] == 2 and jobs["evaluate_model"] == 2
    assert "generate_texture_dataset" not in jobs


def test_added_alpha_generates_one_dataset_and_its_runs(finished):
    args = _with_config(finished, lambda c: c["studies"]["texture"].update(alphas=[0.2, 0.8, 0.5]))
    jobs = planned_jobs(finished, *args)
    assert jobs["generate_texture_dataset"] == 1
    assert jobs["train_model"] == 2  # one per architecture at the new alpha
    # every texture model is now also tested on the new alpha
    assert jobs["evaluate_model"] == 6
    assert "perturb_test_split" not in jobs


def test_copied_project_reruns_nothing(finished, tmp_path):
    # a move or copy keeps every input path: they are relative to the working directory
    copy = tmp_path / "moved"
    shutil.copytree(finished, copy, symlinks=True)
    assert planned_jobs(copy) == {}


def _downstream(workdir) -> dict[str, set[str]]:
    """Rule -> the rules that depend on it, transitively (from ``--rulegraph``)."""
    dot = snakemake(workdir, "--rulegraph", "--forceall").stdout
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, flags=re.M))
    edges = [(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M)]
    closure = {}
    for rule in names.values():
        reached, frontier = set(), [rule]
        while frontier:
            current = frontier.pop()
            for source, target in edges:
                if source == current and target not in reached:
                    reached.add(target)
                    frontier.append(target)
        closure[rule] = reached
    return closure


@contextlib.contextmanager
def _edited(workdir, paths):
    """Each file of ``paths`` (relative to ``workdir``) with a comment appended, restored after."""
    originals = {path: (workdir / path).read_bytes() for path in paths}
    try:
        for path, original in originals.items():
            (workdir / path).write_bytes(original + b"\n# an edit\n")
        yield
    finally:
        for path, original in originals.items():
            (workdir / path).write_bytes(original)


def _module_name(path) -> str:
    return ".".join(path.relative_to("src").with_suffix("").parts).removesuffix(".__init__")


def test_editing_plumbing_reruns_nothing(finished):
    """The job runner, preload server, GPU slots, logging and console progress decide how a
    job runs, never what it writes (segrobust.spec.code_deps.PLUMBING)."""
    modules = [p.relative_to(finished) for p in (finished / "src").rglob("*.py")]
    plumbing = [p for p in modules if code_deps.is_plumbing(_module_name(p))]
    assert len(plumbing) >= 3, plumbing
    with _edited(finished, plumbing):
        assert planned_jobs(finished) == {}


def test_editing_a_network_builder_reruns_only_its_architectures(finished):
    """networks/monai_unet.py builds only monai_unet (the perturbation study's second
    architecture): its one run is trained and evaluated again, and what follows from it."""
    with _edited(finished, ["src/segrobust/networks/monai_unet.py"]):
        jobs = planned_jobs(finished)
        trained = planned_wildcards(finished, "train_model")
        evaluated = planned_wildcards(finished, "evaluate_model")
        aggregated = planned_wildcards(finished, "aggregate_study")
    assert jobs["train_model"] == jobs["evaluate_model"] == 1
    assert all("arch=monai_unet" in w for w in trained + evaluated), trained + evaluated
    assert aggregated == ["wildcards: study=perturbation"]
    assert set(jobs) - {"all"} == {
        "train_model", "evaluate_model", "aggregate_study", "analyze", "plot_figure",
        "build_report",
    }  # fmt: skip
    # no study of the tiny config builds a V-Net
    with _edited(finished, ["src/segrobust/networks/skip_vnet.py"]):
        assert planned_jobs(finished) == {}


def test_editing_the_recipe_reruns_only_the_analysis_and_what_reads_it(finished):
    with _edited(finished, ["src/segrobust/analysis/recipe.py"]):
        jobs = planned_jobs(finished)
        drawn = planned_wildcards(finished, "plot_figure")
    assert set(jobs) - {"all"} == {"analyze", "plot_figure", "build_report"}
    from_analysis = {
        figure
        for figure, tables in FIGURE_TABLES.items()
        if any(table in ANALYSIS_TABLES for table in tables)
    }
    assert sorted(drawn) == sorted(f"wildcards: figure={f}" for f in from_analysis)


def _study_archs(workdir) -> set[str]:
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    return {arch for study in config["studies"].values() for arch in study["archs"]}


def test_editing_any_library_module_reruns_exactly_the_rules_whose_code_it_is(finished):
    """Every module of the library is edited: the rules a dry run would re-run are exactly
    those whose code version includes it (segrobust.spec.code_deps: for training and
    evaluation, with the builder of an architecture of the tiny config) and the rules
    downstream of them.

    Modules in the code of the same rules are edited together, one dry run per such class:
    within a class every module changes the code version of exactly the same rules (whose
    closure test_code_deps.py checks against what each script really loads), so editing them
    one at a time would repeat the same check. (Snakemake reports only "updated by another
    job" for a job whose upstream re-runs too, so the check is on the planned rules, with the
    rule graph giving what follows from what.)
    """
    downstream = _downstream(finished)
    rules = set(downstream) - {"all"}
    scripts, src = finished / "workflow" / "scripts", finished / "src"
    archs = sorted(_study_archs(finished))
    code = {}
    for rule in rules:
        builds = rule in ("train_model", "evaluate_model")
        variants = [(arch,) for arch in archs] if builds else [()]
        code[rule] = {
            path
            for variant in variants
            for path in code_deps.code_files(scripts / f"{rule}.py", src, archs=variant)
        }
    modules = sorted(p.resolve() for p in src.joinpath("segrobust").rglob("*.py"))
    assert len(modules) > 40
    classes: dict[frozenset, list] = {}
    for module in modules:
        direct = frozenset(rule for rule, files in code.items() if module in files)
        classes.setdefault(direct, []).append(module.relative_to(finished.resolve()))
    assert len(classes) > 5, "the rules should not all depend on the same modules"
    for direct, members in classes.items():
        expected = set(direct).union(*(downstream[rule] for rule in direct)) - {"all"}
        with _edited(finished, members):
            planned = set(planned_jobs(finished)) - {"all"}
        assert planned == expected, f"editing {', '.join(map(str, members))}"


def test_console_shows_one_line_per_model_job_and_where_the_report_is(finished):
    """Issue 12.5: what a person sees of the run, without opening a log."""
    console = (finished.parent / f"{finished.name}-console.txt").read_text()
    jobs = planned_jobs(finished, "--forceall")
    trained = re.findall(
        r"^segrobust: trained (\w+) (\S+): best val Dice (\d\.\d{3}) \(epoch (\d+)/1\), "
        r"\d+ s on cpu$",
        console,
        re.MULTILINE,
    )
    assert len(trained) == jobs["train_model"]
    assert {study for study, *_ in trained} == {"texture", "perturbation", "context"}
    evaluated = re.findall(
        r"^segrobust: evaluated (\w+) (\S+): test Dice \d\.\d{3} \((\d+) images, (\d+) "
        r"conditions\), \d+ s on cpu$",
        console,
        re.MULTILINE,
    )
    assert len(evaluated) == jobs["evaluate_model"]
    assert sorted(run for _, run, *_ in evaluated) == sorted(run for _, run, *_ in trained)
    report = (finished / "results/report/index.html").resolve()
    assert f"segrobust: done; the report is {report} (open it in a browser)" in console
    assert f"{jobs['train_model']} of them trained in this run" in console
    # per-epoch lines stay in the logs
    log = finished / "logs/texture/train/texture-background-0.2/unet/pfull/seed1.log"
    assert "epoch 1/1 loss" in log.read_text() and "epoch 1/1 loss" not in console
