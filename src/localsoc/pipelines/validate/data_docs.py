"""Great Expectations Data Docs of the validated tables, as files that open offline and that
the same data and code write byte for byte again.

Each table's page is GX's own validation-results page (``ValidationResultsPageRenderer`` and
``DefaultJinjaPageView``), rendered from the table's entry in the validation report: its suite
(``localsoc.expectations``) and, per expectation, GX's outcome and summary counts
(``RESULT_SUMMARY_KEYS``). Two things are fixed rather than taken from the moment of the run:
the run is named by a digest of that entry, and its run time is the Unix epoch, so the pages are
a function of what was checked. GX's pages load Bootstrap, jQuery, Font Awesome, Vega and its
logo from CDNs and web hosts; those tags and every script (all of which need jQuery) are removed
and a small stylesheet of our own (``STYLE``) lays the page out and draws the pass/fail marks.
"""

from __future__ import annotations

import hashlib
import html
import json
import re

#: Fixed run time of every page (see the module notes).
RUN_TIME = "1970-01-01T00:00:00Z"
INDEX = "index.html"

#: Layout and marks in place of Bootstrap and Font Awesome (the class names GX's pages use); the
#: "Actions" card (a pass/fail filter that needs jQuery) hidden.
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;font-size:15px;
 line-height:1.45;color:#212529;margin:0;background:#fff}
a{color:#0b5cad}h1,h2,h3,h4,h5,h6{margin:.6rem 0 .4rem}
.container-fluid{padding:.75rem 1rem}.row{display:flex;flex-wrap:wrap}
.col-lg-2,.col-md-2{flex:0 0 17%;max-width:17%}.col-md-10,.col-lg-10{flex:0 0 83%;max-width:83%}
.col-12{flex:0 0 100%;max-width:100%}.col-6{flex:0 0 50%;max-width:50%}
.navbar{display:flex;align-items:center;padding:.5rem 1rem;background:#f8f9fa;
 border-bottom:1px solid #dee2e6;height:auto!important}
.sticky-top{position:sticky;top:0;z-index:10}.sticky{position:sticky;top:4rem}
.breadcrumb{display:flex;list-style:none;margin:0;padding:0}
.breadcrumb-item+.breadcrumb-item::before{content:"/";padding:0 .5rem;color:#6c757d}
.nav{list-style:none;padding:0;margin:0}.nav-link{display:block;padding:.15rem .4rem}
.card{border:1px solid #dee2e6;border-radius:4px;margin:0 0 1rem;background:#fff}
.card-header{background:#f3f4f6;border-bottom:1px solid #dee2e6;padding:.5rem .75rem}
.card-body{padding:.75rem}.collapse{display:block}
.table{width:100%;border-collapse:collapse;margin:0 0 1rem}
.table th,.table td,table.table-bordered td,table.table-bordered th{border-top:1px solid #dee2e6;
 padding:.4rem .5rem;vertical-align:top;text-align:left}
.table-bordered td,.table-bordered th{border:1px solid #dee2e6}
.table-responsive,.show-scrollbars{overflow-x:auto}
.badge{display:inline-block;padding:.05em .4em;font-size:88%;border-radius:3px;
 background:#6c757d;color:#fff}
.alert{padding:.35rem .6rem;border-radius:4px;background:#eceef0;margin:.35rem 0}
.text-success{color:#1e7e34}.text-danger{color:#c82333}
.fas{font-style:normal;font-weight:bold}.fa-check-circle::before{content:"\\2714"}
.fa-times::before{content:"\\2718"}
.btn-group,.btn-group-toggle,.ge-walkthrough-modal,.modal{display:none}
.sticky>.card.mb-3:first-child{display:none}
"""

#: Tags that would load something from another host; every script (GX's need jQuery).
REMOTE_TAG = re.compile(r"""<(?:link|img)\b[^>]*\b(?:src|href)\s*=\s*["'](?:https?:)?//[^>]*>\s*""",
                        re.IGNORECASE)
SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>\s*", re.IGNORECASE | re.DOTALL)
FAVICON = re.compile(r"""<link\b[^>]*rel=["']shortcut icon["'][^>]*>\s*""", re.IGNORECASE)
FOOTER = re.compile(r"<footer>.*?</footer>\s*", re.IGNORECASE | re.DOTALL)
REMOTE_URL_IN_CSS = re.compile(r"""url\(\s*["']?(?:https?:)?//[^)]*\)""", re.IGNORECASE)
#: GX names its collapsible blocks with a random UUID; they are numbered in page order instead
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: GX's links to its site's index and suite pages (this site has one folder, and no suite pages)
HOME_LINK = re.compile(r"""href=["'](?:\.\./)+index\.html["']""")
SUITE_LINK = re.compile(r"""href=["'](?:\.\./)+expectations/[^"']*["']""")


def run_name(table: dict) -> str:
    """The name of a table's validation run: a digest of its report entry (suite, data counts,
    outcomes), so that the same data and code name it the same."""
    text = json.dumps(table, sort_keys=True, separators=(",", ":"), default=str)
    return "validate-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def suite_result(table: dict):
    """GX's ``ExpectationSuiteValidationResult`` of one table, rebuilt from its report entry."""
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    results = [
        ExpectationValidationResult(
            success=outcome["success"], result=outcome["result"],
            expectation_config=ExpectationConfiguration(
                type=spec["type"], kwargs=spec["kwargs"], meta={"reason": spec["reason"]}))
        for spec, outcome in zip(table["suite"], table["expectations"], strict=True)]
    passed = sum(result.success for result in results)
    return ExpectationSuiteValidationResult(
        success=passed == len(results), results=results, suite_name=f"{table['table']}_suite",
        statistics={"evaluated_expectations": len(results), "successful_expectations": passed,
                    "unsuccessful_expectations": len(results) - passed,
                    "success_percent": 100.0 * passed / max(len(results), 1)},
        meta={"great_expectations_version": gx.__version__,
              "run_id": {"run_name": run_name(table), "run_time": RUN_TIME},
              "batch_spec": {"data_asset_name": table["table"],
                             "rows": table["rows_in"], "role": table["role"]}})


def offline(page: str) -> str:
    """A GX page with nothing loaded from the network, no scripts, links within this site,
    numbered blocks, and ``STYLE`` in place of the CDN stylesheets."""
    for pattern in (SCRIPT, REMOTE_TAG, FAVICON, FOOTER):
        page = pattern.sub("", page)
    page = REMOTE_URL_IN_CSS.sub("none", page)
    numbers: dict[str, str] = {}
    page = UUID.sub(lambda found: numbers.setdefault(found[0], f"block{len(numbers) + 1}"), page)
    page = HOME_LINK.sub(f'href="{INDEX}"', page)
    page = SUITE_LINK.sub('href="#section-1"', page)
    return page.replace("</head>", f"<style>{STYLE}</style>\n</head>", 1)


def table_page(table: dict) -> str:
    """The Data Docs page of one validated table (GX's validation-results page, offline)."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    document = ValidationResultsPageRenderer().render(suite_result(table))
    return offline(DefaultJinjaPageView().render(document))


def page_name(table: dict) -> str:
    return f"{table['table']}.html"


def index_page(tables: list[dict]) -> str:
    """The site's index: per table its role, rows in, kept and quarantined, expectations met,
    and a link to its page."""
    rows = []
    for table in tables:
        met = sum(outcome["success"] for outcome in table["expectations"])
        status = ('<span class="text-success">passed</span>' if table["great_expectations_success"]
                  else '<span class="text-danger">failed rows quarantined</span>')
        name = html.escape(table["table"])
        rows.append(
            f'<tr><td><a href="{html.escape(page_name(table))}">{name}</a></td>'
            f'<td>{html.escape(table["role"])}</td><td>{table["rows_in"]}</td>'
            f'<td>{table["rows_kept"]}</td><td>{table["rows_quarantined"]}</td>'
            f'<td>{met} of {len(table["expectations"])}</td><td>{status}</td>'
            f'<td><code>{run_name(table)}</code></td></tr>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="UTF-8">\n'
        "<title>LocalSOC: data checks (Great Expectations Data Docs)</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n"
        '<nav class="navbar"><strong>LocalSOC: data checks</strong></nav>\n'
        '<div class="container-fluid">\n'
        "<p>Every table the validate pipeline checked with Great Expectations, with the rows it "
        "kept and quarantined (the reasons: <code>data/02_intermediate/*_quarantine.csv</code>). "
        "Each page lists the table's expectations and what each found. A run is named by a "
        "digest of what was checked and dated at the Unix epoch, so that the same data and code "
        f"give the same pages.</p>\n"
        '<table class="table"><thead><tr><th>table</th><th>role</th><th>rows in</th>'
        "<th>kept</th><th>quarantined</th><th>expectations met</th><th>status</th>"
        "<th>run</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n"
        "</div>\n</body>\n</html>\n")


def data_docs_site(tables: list[dict]) -> dict[str, str]:
    """``{file name: HTML}``: the index and one page per validated table."""
    return {INDEX: index_page(tables), **{page_name(table): table_page(table)
                                          for table in tables}}
