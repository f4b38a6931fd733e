"""The HTML report: one self-contained file that leads with the answer, refuses to silently drop
a figure, folds the raw tables and links their CSV copies."""

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from segrobust.report.html import (  # noqa: E402
    MAX_ROWS,
    Section,
    build_html_report,
    collapsed_table,
    figure,
    notes,
    package_versions,
    paragraph,
    table,
)


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "fig.png"
    fig = plt.figure(figsize=(1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def test_report_is_self_contained_and_escapes_text(tmp_path, png):
    frame = pd.DataFrame({"arch": ["unet", "noskip_unet"], "dice": [0.91234, 0.8]})
    out = tmp_path / "report" / "index.html"
    build_html_report(
        out,
        title="t",
        meta=["Code: commit abc <b>"],
        sections=[
            Section("Answer", "answer", [paragraph("use unet & trust it")]),
            Section("Texture study", "texture", [figure(png, "Dice vs alpha"), table(frame)]),
        ],
        config={"seeds": [1], "device": "cpu"},
        versions=package_versions(),
    )
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "Dice vs alpha" in page and "use unet &amp; trust it" in page
    assert "commit abc &lt;b&gt;" in page  # text is escaped, never markup
    assert "0.9123" in page and "noskip_unet" in page
    assert "device: cpu" in page and "monai" in page and "statsmodels" in page
    assert page.index('id="answer"') < page.index('id="texture"') < page.index('id="config"')
    assert not re.findall(r'(?:src|href)="(?!data:|#)', page)  # nothing loaded from elsewhere
    assert [p.name for p in out.parent.iterdir()] == ["index.html"]  # no temporary left


def test_missing_figure_is_named_and_nothing_written(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.png"):
        figure(tmp_path / "absent.png", "c")


def test_long_tables_are_cut_in_the_page_and_folded_with_their_csv_link():
    frame = pd.DataFrame({"x": range(MAX_ROWS + 5)})
    html = collapsed_table(frame, "every image", "tables/x.csv")
    assert html.startswith("<details>") and 'href="tables/x.csv"' in html
    assert f"First {MAX_ROWS} of {MAX_ROWS + 5} rows" in html
    assert html.count("<tr>") == MAX_ROWS + 1
    assert "(empty" in table(frame.iloc[:0])


def test_reproduced_cells_get_their_class():
    frame = pd.DataFrame({"finding": ["a", "b"], "reproduced": ["yes", "inconclusive"]})
    html = table(frame, classes={"reproduced": {"yes": "yes", "inconclusive": "inconclusive"}})
    assert '<td class="yes">yes</td>' in html and '<td class="inconclusive">' in html


def test_notes_render_headings_and_lists_not_markdown():
    html = notes("# Analysis notes\n\n## Findings\n\n- one *x*\n- two\n\n## Blocks\n\n- three\n")
    assert html == (
        "<h4>Findings</h4><ul><li>one *x*</li><li>two</li></ul>"
        "<h4>Blocks</h4><ul><li>three</li></ul>"
    )
