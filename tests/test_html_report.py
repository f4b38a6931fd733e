"""The HTML report is one self-contained file and refuses to silently drop a figure."""

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from segrobust.report.html import Section, build_html_report, package_versions  # noqa: E402


@pytest.fixture
def figure(tmp_path):
    path = tmp_path / "fig.png"
    fig = plt.figure(figsize=(1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def test_report_is_self_contained(tmp_path, figure):
    table = pd.DataFrame({"arch": ["unet", "noskip_unet"], "dice": [0.91234, 0.8]})
    out = tmp_path / "report" / "index.html"
    build_html_report(
        out,
        title="t",
        sections=[
            Section(
                "Texture study",
                text=["Holm-corrected Wilcoxon"],
                figures=[(figure, "Dice vs alpha")],
                tables=[(table, "summary")],
            )
        ],
        config={"seeds": [1], "device": "cpu"},
        versions=package_versions(),
    )
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "Dice vs alpha" in page and "Holm-corrected Wilcoxon" in page
    assert "0.9123" in page and "noskip_unet" in page
    assert "device: cpu" in page and "monai" in page and "torch" in page
    # nothing is loaded from elsewhere
    assert not re.findall(r'(?:src|href)="(?!data:)', page)
    assert [p.name for p in out.parent.iterdir()] == ["index.html"]  # no temporary left


def test_missing_figure_is_named_and_nothing_written(tmp_path):
    out = tmp_path / "index.html"
    missing = tmp_path / "absent.png"
    with pytest.raises(FileNotFoundError, match="absent.png"):
        build_html_report(
            out,
            title="t",
            sections=[Section("s", figures=[(missing, "c")])],
            config={},
            versions={},
        )
    assert not out.exists()
