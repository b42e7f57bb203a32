"""Great Expectations Data Docs after the validate pipeline (ingest and validate on conf/test in
a scratch project): an index and a page per validated table, nothing in them fetched from the
network, and the same files again from the same data and code."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import make_scratch_project

pytestmark = pytest.mark.slow

DOCS = "data/08_reporting/data_docs"
#: Anything a browser would fetch by itself: src/href of tags other than <a>, CSS url()/@import.
FETCHED = re.compile(r"""<(?!a\b)[a-z]+\b[^>]*\b(?:src|href)\s*=\s*["']?((?:https?:)?//[^"'\s>]+)"""
                     r"""|url\(\s*["']?((?:https?:)?//[^)"']+)|@import\s+["']?((?:https?:)?//\S+)""",
                     re.IGNORECASE)


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    from localsoc.command_line import run_stages

    root = make_scratch_project(tmp_path_factory.mktemp("data_docs") / "project")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        run_stages(["ingest", "validate"], "test", project=root)
    return root


def test_every_validated_table_has_a_page_linked_from_the_index(validated):
    report = json.loads((validated / "data/08_reporting/validation_report.json").read_text())
    tables = [table["table"] for table in report["tables"]]
    assert tables == ["library", "sites"]
    docs = validated / DOCS
    assert sorted(p.name for p in docs.iterdir()) == sorted(["index.html",
                                                             *(f"{t}.html" for t in tables)])
    index = (docs / "index.html").read_text()
    for table in report["tables"]:
        page = (docs / f"{table['table']}.html").read_text()
        assert f'href="{table["table"]}.html"' in index
        assert f"{table['table']}_suite" in page and "Great Expectations Version" in page
        for expectation in table["suite"]:  # every expectation of the suite is on its page
            assert expectation["kwargs"]["column"] in page
        assert page.count("fa-check-circle") + page.count("fa-times") > len(table["suite"])


def test_nothing_in_the_docs_is_fetched_from_the_network(validated):
    for page in (validated / DOCS).iterdir():
        text = page.read_text()
        assert FETCHED.findall(text) == [], page.name
        assert "<script" not in text, page.name


def test_the_same_data_and_code_give_the_same_files(validated):
    from localsoc.pipelines.validate.nodes import write_data_docs

    report = json.loads((validated / "data/08_reporting/validation_report.json").read_text())
    again = write_data_docs(report)
    assert again == {p.name: p.read_text() for p in (validated / DOCS).iterdir()}
