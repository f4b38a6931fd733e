"""The report leads with the answer: sentences and tables from the analysis, in the right order,
with the raw tables folded last and copied beside the page."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from schema_defaults import default_config  # noqa: E402
from test_analysis_run import synthetic_tables  # noqa: E402

from segrobust import contract  # noqa: E402
from segrobust.analysis import shift_coverage  # noqa: E402
from segrobust.analysis.run import run_analysis  # noqa: E402
from segrobust.report import answer  # noqa: E402
from segrobust.report.assemble import (  # noqa: E402
    ReportInputs,
    caption,
    git_version,
    pipeline_sections,
    run_lines,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]
TABLE_CAPTIONS = REPO / "workflow" / "report" / "tables"


def test_every_analysis_table_has_a_caption_and_nothing_else_does():
    """One caption file per table, read by the HTML report and by ``snakemake --report``."""
    assert {p.stem for p in TABLE_CAPTIONS.glob("*.rst")} == set(contract.ANALYSIS_TABLES)
    assert caption(TABLE_CAPTIONS, "recipe").startswith("Recommendation per regime")


def _recipe(**rows):
    columns = ["study", "regime", "decision", "sentence"]
    return pd.DataFrame(
        [(s, name, d, text) for name, (s, d, text) in rows.items()], columns=columns
    ).assign(
        regime_kind="complexity", recommended="", equivalent="", leader="unet", mean_dice=0.8,
        runner_up="vnet", effect=0.04, ci_low=0.02, ci_high=0.06, min_effect=0.01, n_runs=3,
        n_units=100, reason="",
    )  # fmt: skip


def test_each_study_gets_a_table_and_its_sentences_folded_with_display_names():
    recipe = _recipe(
        a=("texture", "inconclusive", "For regime A, inconclusive: too few units: n = 4."),
        b=("texture", "recommended", "For regime B, use noskip_unet: mean Dice +0.04."),
        d=("texture", "equivalent", "For regime D, use any of unet, vnet."),
        c=("context", "recommended", "For patch 32, use unet."),
    )
    recipe.loc[recipe.regime == "b", "recommended"] = "noskip_unet"
    recipe.loc[recipe.regime == "c", "recommended"] = "unet"
    recipe.loc[recipe.regime == "d", "equivalent"] = "unet, vnet"
    recipe.loc[recipe.regime == "a", "reason"] = "too few units: n = 4 < analysis.min_cases = 10"
    rankings = pd.DataFrame(
        [("texture", r, a, m) for r in "abd" for a, m in (("unet", 0.8), ("vnet", 0.79),
                                                         ("noskip_unet", 0.85))]
        + [("context", "c", "unet", 0.9)],
        columns=["study", "regime", "arch", "mean_dice"],
    )  # fmt: skip
    html = "".join(answer.recommendation_blocks(recipe, rankings, ["texture", "context"]))
    assert html.index("<h4>Texture study</h4>") < html.index("<h4>Context study</h4>")
    texture = html[: html.index("<h4>Context study</h4>")]
    assert texture.index("<table") < texture.index("<details>")  # the table, then the sentences
    assert "For regime B, use No-skip U-Net: mean Dice +0.04." in texture  # display names
    assert "noskip_unet" not in html
    assert "<th>No-skip U-Net</th>" in texture and "<th>V-Net</th>" in texture
    assert '<td class="win">\u2714 0.85</td>' in texture  # regime b: the recommended cell
    assert texture.count('<td class="eq">') == 2  # regime d: U-Net and V-Net equivalent
    assert "inconclusive: too few test units" in texture


SUMMARY = dict(
    study="texture", arch="noskip_unet", target=0.9, n_calibration=100, n_test=300,
    coverage=0.91, coverage_ci_low=0.873, coverage_ci_high=0.94, median_dice_lower_bound=0.8234,
    min_calibration=9, status="defined",
)  # fmt: skip


def test_conformal_table_states_bound_coverage_and_images_or_why_none():
    undefined = dict(SUMMARY, arch="unet", median_dice_lower_bound=np.nan, n_calibration=4,
                     coverage=np.nan, status="undefined: n = 4 < 9")  # fmt: skip
    shown = answer.conformal_table(pd.DataFrame([SUMMARY, undefined]))
    assert shown.to_dict("records") == [
        {"study": "texture", "architecture": "No-skip U-Net", "median Dice bound at 90%": "0.82",
         "measured coverage (95% CI)": "0.91 (0.87 to 0.94)",
         "calibration / test images": "100 / 300"},
        {"study": "texture", "architecture": "U-Net",
         "median Dice bound at 90%": "none: 9 calibration images needed",
         "measured coverage (95% CI)": "", "calibration / test images": "4 / 300"},
    ]  # fmt: skip


def _shift_row(kind, fraction_flagged, coverage, status):
    passing = round(50 * (1 - fraction_flagged))
    return dict(
        study="perturbation", arch="unet", kind=kind, n_runs=1, n_images=50, n_units=50,
        n_flagged=50 - passing, fraction_flagged=fraction_flagged, n_passing=passing,
        covered=round(coverage * passing) if passing else 0, coverage=coverage,
        coverage_ci_low=coverage - 0.1, coverage_ci_high=min(coverage + 0.05, 1.0),
        coverage_all=0.5, target=0.9, tolerance=0.05, status=status,
    )  # fmt: skip


def test_the_answer_says_where_the_rating_holds_and_names_rated_kinds_below_target():
    """Issue 21: no kind whose rated images are covered below 1 - alpha - tolerance without the
    Answer saying so; kinds where every image is flagged are named as withheld."""
    table = pd.DataFrame(
        [
            _shift_row("in-domain", 0.1, 0.92, shift_coverage.HOLDS),
            _shift_row("blur s1", 0.2, 0.6, shift_coverage.BELOW),
            _shift_row("speckle s5", 1.0, np.nan, shift_coverage.WITHHELD),
        ],
        columns=shift_coverage.SHIFT_COVERAGE_COLUMNS,
    )
    html = "".join(answer.shift_blocks(table))
    assert "Perturbation study, confidence rating holds for: in-domain (90% rated)" in html
    # display names, as everywhere a person reads the Answer
    assert "withheld (every image flagged) for: speckle noise s5" in html
    assert "BELOW 0.85 among rated images for: blur s1 (U-Net 0.60)" in html
    assert "Warning: in 1 (kind, architecture) rows images are rated" in html
    empty = pd.DataFrame(columns=shift_coverage.SHIFT_COVERAGE_COLUMNS)
    assert "No per-shift coverage was measured." in "".join(answer.shift_blocks(empty))


def test_decided_findings_are_a_table_and_the_others_folded_with_why():
    findings = pd.DataFrame(
        {
            "finding": ["(a) skips help", "(d) flat", "(c) speckle hurts skips"],
            "comparison": ["unet - noskip_unet", "unet", "speckle: unet - noskip_unet"],
            "expected_direction": ["> 0", ">= 0", "> 0"],
            "measured_effect": [0.031, np.nan, np.nan],
            "ci_low": [0.01, np.nan, np.nan],
            "ci_high": [0.05, np.nan, np.nan],
            "n_runs": [3, 1, 0],
            "n_units": [100, 3, 0],
            "p_value": [0.0012, np.nan, np.nan],
            "reproduced": ["yes", "inconclusive", "not run"],
            "note": ["", "one training run per architecture", "no speckle rows"],
        }
    )
    html = "".join(answer.findings_blocks(findings))
    shown, folded = html.split("<details>")
    assert '<td class="yes">yes</td>' in shown and "0.010 to 0.050" in shown
    assert "U-Net - No-skip U-Net" in shown and "(d) flat" not in shown
    assert "1 inconclusive, 1 not run: why" in folded
    assert "no speckle noise rows" in folded and "speckle noise: U-Net - No-skip U-Net" in folded


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The analysis of the synthetic studies, dummy figures, and the report's sections."""
    root = tmp_path_factory.mktemp("report")
    per_image, fnr, patches = synthetic_tables()
    run_analysis(per_image, fnr, patches, default_config()["analysis"], root / "analysis")
    figures, captions = root / "figures", root / "captions"
    figures.mkdir()
    captions.mkdir()
    names = [n for s in contract.STUDIES for n in contract.FIGURES[s]]
    for name in [*names, *contract.ANALYSIS_FIGURES]:
        fig = plt.figure(figsize=(1, 1))
        fig.savefig(figures / f"{name}.png")
        plt.close(fig)
        (captions / f"{name}.rst").write_text(f"Caption of\n{name}.\n")
    for study in contract.STUDIES:
        rows = per_image[per_image["study"] == study]
        (root / "results" / study).mkdir(parents=True)
        rows.assign(dice_mean=rows["dice"]).head(3).to_csv(
            root / "results" / study / "summary.csv", index=False
        )
        rows.to_csv(root / "results" / study / "per_image.csv", index=False)
    inputs = ReportInputs(
        results=root / "results",
        analysis=root / "analysis",
        figures=figures,
        captions=captions,
        table_captions=TABLE_CAPTIONS,
    )
    tables_out = root / "tables"
    return inputs, tables_out, pipeline_sections(list(contract.STUDIES), inputs, tables_out)


def test_sections_lead_with_the_answer_and_end_with_the_tables(built):
    _, _, sections = built
    assert [s.id for s in sections] == ["answer", *contract.STUDIES, "statistics", "tables"]
    answer_html = "".join(sections[0].blocks)
    for heading in ("Which architecture to use", "conformal Dice bounds", "findings"):
        assert heading in answer_html
    texture = "".join(sections[1].blocks)
    assert "Caption of texture_in_domain." in texture  # the .rst text, as one paragraph


def test_raw_tables_are_folded_and_copied_beside_the_report(built):
    _, tables_out, sections = built
    tables_html = "".join(sections[-1].blocks)
    copies = sorted(p.stem for p in tables_out.iterdir())
    expected = sorted(
        [*contract.ANALYSIS_TABLES, *(f"{s}_summary" for s in contract.STUDIES)]
        + ["perturbation_levels"]
    )
    assert copies == expected
    assert tables_html.count("<details>") == len(expected)
    for name in expected:
        assert f'href="tables/{name}.csv"' in tables_html


def test_the_report_is_one_folder_written_whole(built, tmp_path):
    """index.html, findings.csv and tables/ together (the --report entry's folder); a failure
    leaves the previous folder as it was."""
    inputs, _, _ = built
    out = tmp_path / "report"
    page = write_report(out, list(contract.STUDIES), inputs, meta=["m"], config={}, versions={})
    assert page == out / "index.html"
    assert sorted(p.name for p in out.iterdir()) == ["findings.csv", "index.html", "tables"]
    html = page.read_text()
    assert 'href="tables/recipe.csv"' in html and (out / "tables" / "recipe.csv").is_file()
    assert (out / "findings.csv").read_text() == (inputs.analysis / "findings.csv").read_text()
    broken = ReportInputs(**{**inputs.__dict__, "figures": tmp_path / "missing"})
    with pytest.raises(OSError, match="report figure not found"):
        write_report(out, list(contract.STUDIES), broken, meta=[], config={}, versions={})
    assert page.read_text() == html and sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_run_lines_name_the_code_devices_and_start(tmp_path):
    logs = pd.DataFrame(
        {
            "study": ["texture"] * 3, "dataset": ["d"] * 3, "arch": ["unet", "unet", "vnet"],
            "seed": [1, 1, 1], "patch": ["full"] * 3, "epoch": [1, 2, 1],
            "seconds": [30.0, 30.0, 60.0], "device": ["cpu", "cpu", "cuda:1"],
            "amp": ["off", "off", "bfloat16"],
        }
    )  # fmt: skip
    (tmp_path / "texture").mkdir()
    logs.to_csv(tmp_path / "texture" / "train_logs.csv", index=False)
    lines = run_lines(tmp_path, ["texture"], tmp_path, "2026-11-28 10:00:00 UTC")
    assert lines[0] == "Code: not a git checkout (no commit recorded)."
    assert "2 models trained: 1 on cpu (mixed precision off), 1 on cuda:1" in lines[1]
    assert "2.0 min of training epochs" in lines[1]
    assert lines[2] == "This invocation of the workflow started 2026-11-28 10:00:00 UTC."
    timed = run_lines(tmp_path, ["texture"], tmp_path, "2026-11-28 10:00:00 UTC", 522.0)
    assert timed[2] == (
        "This invocation of the workflow started 2026-11-28 10:00:00 UTC; the report was "
        "written 8.7 min later."
    )
    assert git_version(contract_repo()).startswith("commit ")


def contract_repo():
    from pathlib import Path

    return Path(contract.__file__).resolve().parents[2]
