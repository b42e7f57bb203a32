"""Kedro dataset for the tables a user imported: one canonical Parquet file per name.

``localsoc import`` and ``localsoc site`` write ``<directory>/<name>.parquet`` (DVC-tracked);
the ingest pipeline loads them as ``{name: DataFrame}`` (empty when nothing was imported).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(name: str, what: str = "name") -> str:
    if not NAME_RE.match(str(name)):
        raise ValueError(
            f"{what} {name!r} is not usable: use letters, digits, '_', '-' or '.', starting with "
            "a letter or digit (it becomes a file name and a column value)"
        )
    return str(name)


class ImportedTablesDataset(AbstractDataset):
    def __init__(self, *, directory: str, metadata: dict[str, Any] | None = None) -> None:
        self._directory = Path(directory)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"directory": str(PurePosixPath(self._directory))}

    def _exists(self) -> bool:
        return self._directory.is_dir()

    def names(self) -> list[str]:
        if not self._directory.is_dir():
            return []
        return sorted(p.stem for p in self._directory.glob("*.parquet"))

    def _load(self) -> dict[str, pd.DataFrame]:
        return {name: pd.read_parquet(self._directory / f"{name}.parquet")
                for name in self.names()}

    def _save(self, data: dict[str, pd.DataFrame]) -> None:
        if not isinstance(data, dict):
            raise DatasetError("save a dict {name: canonical table}")
        self._directory.mkdir(parents=True, exist_ok=True)
        for name, table in data.items():
            table.to_parquet(self._directory / f"{check_name(name)}.parquet", index=False)

    def path_of(self, name: str) -> Path:
        return self._directory / f"{check_name(name)}.parquet"
