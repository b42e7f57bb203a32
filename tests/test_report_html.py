"""The report's HTML page without a browser: contents whose links are the headings' ids, figures
inline, wide tables in a scrolling box, no reference that leaves the page (the browser's view of
the study's page: tests/test_report_page.py)."""

from __future__ import annotations

import re

from localsoc.pipelines.report.page import contents_lines, figure_uris, html_page

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
SECTIONS = [
    "## Each site at a glance", "", "| site | served model |", "|---|---|", "| s1 | **PLSR Local** |",
    "", "## Models on each site's test set (layout of the paper's Table 3)", "",
    "![dRMSE](figures/study/drmse_by_method.png)", "", "*Figure: what it shows.*", "",
    "## Instance transfer (RS-LOCAL)", "",
    "![a](figures/localise/s1_global_soc_density.png) ![b](figures/localise/s1_global_pca.png)",
    "", "![gone](figures/localise/missing.png)", "", "## Model cards", "",
    '<details markdown="1">', "<summary>SHA-256</summary>", "", "| file | sha256 |", "|---|---|",
    "| `m.keras` | `abc` |", "", "</details>"]


def test_the_page_links_every_section_embeds_its_figures_and_asks_for_nothing():
    contents = contents_lines(SECTIONS)
    text = "\n".join(["# Report", "", *SECTIONS[:5], "", *contents, "", *SECTIONS[5:]])
    uris = figure_uris({"figures/study": {"drmse_by_method.png": PNG},
                        "figures/localise": {"s1_global_soc_density.png": PNG,
                                             "s1_global_pca.png": PNG}})
    page = html_page(text, uris)

    links = re.findall(r'<a href="#([^"]+)"', page)
    ids = set(re.findall(r'<h2 id="([^"]+)"', page))
    assert len(links) == 4 and set(links) <= ids
    assert "models-on-each-sites-test-set-layout-of-the-papers-table-3" in links
    assert page.index("<nav>") < page.index('id="models-on-each-sites')
    assert page.count("<img ") == 3 and page.count('src="data:image/png;base64,') == 3
    assert '<p class="figures">' in page  # the RS-LOCAL pair side by side
    assert '<p class="caption">' in page
    assert "[figure not drawn: gone]" in page
    assert page.count('<div class="wide"><table>') == page.count("<table>") == 2
    assert "<details>" in page and "<code>abc</code>" in page  # Markdown inside the block
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert references and all(r.startswith(("data:", "#")) for r in references)
    assert "<link" not in page and "<script" not in page and "@import" not in page
