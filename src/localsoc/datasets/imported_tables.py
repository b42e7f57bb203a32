"""Kedro dataset for the tables a user imported: one canonical Parquet file per name.

``localsoc import`` and ``localsoc site`` write ``<directory>/<name>.parquet`` (DVC-tracked) with
:func:`write_table`: the study grid the table was imported on, and the kind of carbon its
``soc`` column holds when the import declared it (``--carbon-kind organic|total``), travel in the
file's own metadata, and the file is written under a temporary name in the same directory, then
renamed over the old one (``os.replace``), so an interrupted import leaves the previous table and
its grid as they were (and a hidden leftover, removed by the next write once its writer has
ended: ``localsoc.datasets.atomic.remove_stale_staging``). The ingest pipeline loads the
directory as an :class:`ImportedTables` mapping ``{name: DataFrame}`` that reads a table only
when it is looked up: a run reads the tables it uses and no others. A table that cannot be read
is a :class:`DamagedTableError` naming the file and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from kedro.io import AbstractDataset, DatasetError

from localsoc.datasets.atomic import (
    remove_path,
    remove_stale_staging,
    replace_path,
    staging_path,
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Longest name: it becomes a file name (with a suffix and a temporary prefix) and a column value.
NAME_MAX_CHARS = 100
SUFFIX = ".parquet"
#: Key of the grid (JSON: start_nm, stop_nm, step_nm) in the Parquet file's metadata.
GRID_KEY = b"localsoc.grid"
#: Key of the declared carbon kind (``organic`` or ``total``) in the Parquet file's metadata.
CARBON_KIND_KEY = b"localsoc.carbon_kind"
CARBON_KINDS = ("organic", "total")
#: Where imports before the grid moved into the table kept it: ``<name>.grid.json``.
LEGACY_GRID_SUFFIX = ".grid.json"


class DamagedTableError(ValueError):
    """An imported table that cannot be read (for example an import that was interrupted)."""


def check_name(name: str, what: str = "name") -> str:
    text = str(name)
    if len(text) > NAME_MAX_CHARS:
        raise ValueError(
            f"{what} {text[:20]!r}... has {len(text)} characters; use at most {NAME_MAX_CHARS} "
            "characters (it becomes a file name)"
        )
    if not NAME_RE.match(text):
        raise ValueError(
            f"{what} {name!r} is not usable: use letters, digits, '_', '-' or '.', starting with "
            "a letter or digit (it becomes a file name and a column value)"
        )
    return text


def _damaged(path: Path, problem: str) -> DamagedTableError:
    name = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    return DamagedTableError(
        f"{path}: {problem}. The table is damaged (an import that was interrupted leaves this); "
        f"re-run the import that made it (`localsoc import FILE --library {name}` for a library, "
        f"`localsoc site FILE --site {name}` for a site) or delete the file"
    )


def write_table(path: str | Path, table: pd.DataFrame, grid: Mapping | None = None,
                carbon_kind: str | None = None) -> None:
    """Write ``table`` (and ``grid`` and ``carbon_kind`` in its metadata) to ``path``
    atomically: to a temporary file in the same directory, flushed to disk, then renamed over
    ``path``."""
    path = Path(path)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    metadata = dict(arrow.schema.metadata or {})
    if grid is not None:
        metadata[GRID_KEY] = json.dumps(dict(grid)).encode()
    if carbon_kind is not None:
        if carbon_kind not in CARBON_KINDS:
            raise ValueError(f"carbon kind {carbon_kind!r}: use one of {list(CARBON_KINDS)}")
        metadata[CARBON_KIND_KEY] = carbon_kind.encode()
    arrow = arrow.replace_schema_metadata(metadata)
    # staged under a hidden name that does not end in .parquet: a leftover is never a table
    remove_stale_staging(path.parent, path.name)  # of a killed import
    staged = staging_path(path)
    try:
        pq.write_table(arrow, staged)
        replace_path(staged, path)
    finally:
        remove_path(staged)
    path.with_name(path.name[: -len(SUFFIX)] + LEGACY_GRID_SUFFIX).unlink(missing_ok=True)


def read_table(path: str | Path) -> pd.DataFrame:
    """An imported table, or a :class:`DamagedTableError` naming the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: nothing was imported under that name "
                                "(`localsoc import` for a library, `localsoc site` for a site)")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as error:
        raise _damaged(path, f"cannot be read ({error})") from None


def read_grid(path: str | Path) -> dict:
    """The grid an imported table was imported on (from its metadata; older imports: from
    ``<name>.grid.json`` beside it)."""
    path = Path(path)
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError, pa.ArrowException) as error:
        raise _damaged(path, f"cannot be read ({error})") from None
    if GRID_KEY in metadata:
        return json.loads(metadata[GRID_KEY])
    legacy = path.with_name(path.name[: -len(SUFFIX)] + LEGACY_GRID_SUFFIX)
    if legacy.is_file():
        return json.loads(legacy.read_text())
    raise _damaged(path, "records no grid")


def read_carbon_kind(path: str | Path) -> str | None:
    """The carbon kind an import declared for its ``soc`` column (``organic`` or ``total``;
    None: not declared)."""
    path = Path(path)
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError, pa.ArrowException) as error:
        raise _damaged(path, f"cannot be read ({error})") from None
    value = metadata.get(CARBON_KIND_KEY)
    return value.decode() if value is not None else None


class ImportedTables(Mapping):
    """The imported tables of a directory by name; a table is read when it is looked up."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        found = self.directory.glob(f"*{SUFFIX}") if self.directory.is_dir() else ()
        self._names = sorted(p.name[: -len(SUFFIX)] for p in found)

    def path_of(self, name: str) -> Path:
        return self.directory / f"{check_name(name)}{SUFFIX}"

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._names:
            raise KeyError(name)
        return read_table(self.path_of(name))

    def carbon_kind(self, name: str) -> str | None:
        """The declared carbon kind of one table (:func:`read_carbon_kind`)."""
        if name not in self._names:
            raise KeyError(name)
        return read_carbon_kind(self.path_of(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"ImportedTables({str(self.directory)!r}: {self._names})"


class ImportedTablesDataset(AbstractDataset):
    def __init__(self, *, directory: str, metadata: dict[str, Any] | None = None) -> None:
        self._directory = Path(directory)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"directory": str(PurePosixPath(self._directory))}

    def _exists(self) -> bool:
        return self._directory.is_dir()

    def names(self) -> list[str]:
        return list(ImportedTables(self._directory))

    def _load(self) -> ImportedTables:
        return ImportedTables(self._directory)

    def _save(self, data: dict[str, pd.DataFrame]) -> None:
        if not isinstance(data, dict):
            raise DatasetError("save a dict {name: canonical table}")
        self._directory.mkdir(parents=True, exist_ok=True)
        for name, table in data.items():
            write_table(self.path_of(name), table)

    def path_of(self, name: str) -> Path:
        return self._directory / f"{check_name(name)}{SUFFIX}"


def carbon_kinds_of(tables: Mapping, names) -> dict[str, str | None]:
    """The declared carbon kind of each named table of an imported-tables mapping (None: not
    declared, or a mapping without kinds such as a plain dict of tables)."""
    reader = getattr(tables, "carbon_kind", None)
    return {str(name): (reader(name) if reader is not None and name in tables else None)
            for name in names}


def carbon_kind_warning(libraries: Mapping[str, str | None],
                        sites: Mapping[str, str | None]) -> str | None:
    """A warning when a site and a library declare different carbon kinds (total carbon
    includes carbonate carbon, so a model of one is biased for the other); None otherwise.
    Tables without a declared kind are not compared."""
    pairs = [(site, s_kind, library, l_kind) for site, s_kind in sorted(sites.items())
             for library, l_kind in sorted(libraries.items())
             if s_kind is not None and l_kind is not None and s_kind != l_kind]
    if not pairs:
        return None
    listed = "; ".join(f"site {s} is {sk} carbon, library {lib} is {lk} carbon"
                       for s, sk, lib, lk in pairs)
    return (f"carbon kinds differ ({listed}): total carbon includes carbonate carbon, so models "
            "learnt from one are biased for the other on calcareous soils. Use tables of the "
            "same kind, or read the library-based models' results with that in mind")


#: A site's lab plan (``localsoc plan``) lives beside the imported sites: ``plans/<site>.csv``.
PLAN_SUFFIX = ".csv"


def read_plan(path: str | Path) -> pd.DataFrame:
    """A stored lab plan (``localsoc.study.plan``), checked; a ValueError names the file."""
    from localsoc.study.plan import check_plan

    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"sample_id": str})
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: the lab plan cannot be read ({error}); make it again with "
                         "`localsoc plan`") from None
    return check_plan(frame, str(path))


def write_plan(path: str | Path, plan: pd.DataFrame) -> None:
    """Write a lab plan atomically (as :func:`write_table` does)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path.parent, path.name)
    staged = staging_path(path)
    try:
        plan.to_csv(staged, index=False)
        replace_path(staged, path)
    finally:
        remove_path(staged)


class ImportedPlansDataset(AbstractDataset):
    """The lab plans of a directory (``<site>.csv`` each) as one table: ``site`` then the plan
    columns. No directory or no plan: an empty table."""

    def __init__(self, *, directory: str, metadata: dict[str, Any] | None = None) -> None:
        self._directory = Path(directory)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"directory": str(PurePosixPath(self._directory))}

    def _exists(self) -> bool:
        return True  # no directory is no plan

    def _load(self) -> pd.DataFrame:
        from localsoc.study.plan import PLAN_COLUMNS

        frames = []
        if self._directory.is_dir():
            for path in sorted(self._directory.glob(f"*{PLAN_SUFFIX}")):
                plan = read_plan(path)
                plan.insert(0, "site", path.name[: -len(PLAN_SUFFIX)])
                frames.append(plan)
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c == "ks_rank" else "object")
                                 for c in ("site", *PLAN_COLUMNS)})
        return pd.concat(frames, ignore_index=True)

    def _save(self, data: pd.DataFrame) -> None:
        raise DatasetError("lab plans are written by `localsoc plan`, not by a pipeline")
