"""The report links only to the pages beside it that exist."""

from __future__ import annotations

import pytest
from kedro.io import DatasetError

from localsoc.datasets.linked_pages import LinkedPagesDataset


def test_only_the_pages_that_exist_are_loaded(tmp_path):
    pages = {"data_docs/index.html": "Data Docs", "pipeline/index.html": "the pipeline"}
    dataset = LinkedPagesDataset(directory=str(tmp_path), pages=pages)
    assert dataset.load() == {}
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline/index.html").write_text("<html></html>")
    assert dataset.load() == {"pipeline/index.html": "the pipeline"}
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save({})


def test_the_catalog_names_the_two_pages():
    from kedro.config import OmegaConfigLoader

    from tests.conftest import PROJECT_ROOT

    catalog = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base",
                                default_run_env="base")["catalog"]
    assert set(catalog["reporting_pages"]["pages"]) == {"data_docs/index.html",
                                                        "pipeline/index.html"}
