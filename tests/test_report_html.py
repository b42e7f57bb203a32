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


def test_the_glance_table_names_the_served_model_beside_local_plsr_and_flags_low_coverage():
    import pandas as pd

    from localsoc.pipelines.report.served import glance_section, local_plsr_method

    plsr = local_plsr_method().label
    metrics = pd.DataFrame({"site": ["s1", "s1", "s2", "s2"],
                            "method": ["DTL-Ig", plsr, "DTL-Ig", plsr],
                            "rmse": [0.2, 0.25, 0.3, 0.3], "winner": [True, False, True, False]})
    manifest = {"sites": {site: {
        "method": "DTL-Ig", "family": "cnn", "trained_on": "k+n:global",
        "interval": {"method": "validation", "level": 0.9},
        "test_metrics": {"rmse": rmse, "coverage": coverage, "mean_width": 0.8}}
        for site, rmse, coverage in (("s1", 0.2, 0.95), ("s2", 0.3, 0.7))}}
    lines = glance_section(manifest, metrics)
    rows = [line for line in "\n".join(lines).splitlines() if line.startswith(("| s1 ", "| s2 "))]
    assert rows[0].startswith("| s1 | **DTL-Ig** | cnn, k+n:global | 0.200 | 0.250 | +20 % |")
    assert "| validation, 90 % | 0.950 | 0.800 |" in rows[0]
    assert "| 0.300 | 0.300 | +0 % |" in rows[1]
    assert "Measured coverage below the 90 % level: s2 (0.70)." in lines[-1]
