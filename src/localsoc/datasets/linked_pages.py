"""Which pages written beside the report exist, so that the report links only to those.

Catalog entry::

    reporting_pages:
      type: localsoc.datasets.linked_pages.LinkedPagesDataset
      directory: data/08_reporting
      pages:
        data_docs/index.html: Great Expectations Data Docs (every validated table's checks)
        pipeline/index.html: the pipeline (kedro-viz)

Loading gives ``{path relative to directory: title}`` of the pages that exist, in the order
given. Read-only: other commands write the pages.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class LinkedPagesDataset(AbstractDataset):
    def __init__(self, *, directory: str, pages: dict[str, str],
                 metadata: dict[str, Any] | None = None) -> None:
        self._directory = Path(directory)
        self._pages = dict(pages)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"directory": str(PurePosixPath(self._directory)), "pages": list(self._pages)}

    def _load(self) -> dict[str, str]:
        return {page: title for page, title in self._pages.items()
                if (self._directory / page).is_file()}

    def _save(self, data: Any) -> None:
        raise DatasetError("reporting_pages is read-only: other commands write those pages")
