"""Importers: bring soil spectral libraries in other layouts and units to the canonical table.

Every ``import_*`` function returns ``(table, report)``: the canonical table (see
``localsoc.data.schema``) on the requested grid, and an ``ImportReport`` saying what was detected
and converted. ``import_wide`` does the work in steps: check the declarations
(``WideOptions.check``), detect the columns and units (``detect_layout``), convert the spectra to
reflectance fractions on their own wavelengths (``convert_spectra``), resample them to the grid
(``resample_spectra``: band averaging by default, ``localsoc.spectra.resample``), then add the
metadata. ``import_ossl``, ``import_asd`` and the library wrappers bring their sources to a wide
table and call it.

Row content (NaN bands, reflectance above 1, negative or missing SOC, duplicate ids) is not
checked here: that is the validation stage's job, which quarantines rows with a reason. What only
the source shows is marked here for validation to quarantine: a row whose spectrum is in other
units than the file's (``localsoc.spectra.units.rows_in_other_units``) gets its reason in the
table's ``import_problem`` column (``localsoc.data.schema``). The importers raise only for
problems of a whole column or of the declaration (unknown column names, wrong units, a grid the
source does not cover, a few cells in other units than most rows), and every error names the
column, row or cell and the fix.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from localsoc.data import schema
from localsoc.data.schema import Grid
from localsoc.spectra import units as units_rules
from localsoc.spectra.resample import (
    METHODS,
    coverage_message,
    covered_target_mask,
    resampling_matrix,
)

SPECTRA_UNITS = ("reflectance", "percent_reflectance", "absorbance", "auto")
CARBON_UNITS = ("percent", "g_per_kg", "organic_matter_percent", "organic_matter_g_per_kg")
VAN_BEMMELEN_FACTOR = 1.724
MAX_CARBON_PERCENT = 100.0
WAVELENGTH_RANGE_NM = (200.0, 3000.0)

#: Columns taken as sample ids when ``id_column`` is not given, in this order of preference
#: (matched ignoring case): the canonical name, a plain id, OSSL's layer ids.
ID_COLUMNS = ("sample_id", "id", "id.layer_uuid_txt", "id.layer_uuid_c", "id.layer_local_c")

#: OSSL's organic carbon columns (weight %, i.e. % SOC), in order of preference, found by
#: ``carbon_column="auto"`` when there is no ``soc`` column: v1.2 ``oc_usda.c729_w.pct`` (KSSL
#: "estimated OC", total C minus inorganic C), v1.2 ``oc_usda.c1059_w.pct`` and
#: ``oc_iso.10694_w.pct`` (dry combustion), v1.0 ``oc_usda.calc_wpct`` (as c729) and
#: ``oc_usda.4h2_wpct``. Each names its own method; the report names the one used.
OSSL_CARBON_COLUMNS = ("oc_usda.c729_w.pct", "oc_usda.c1059_w.pct", "oc_iso.10694_w.pct",
                       "oc_usda.calc_wpct", "oc_usda.4h2_wpct", "oc_iso.10694.1995_wpct")
CARBON_AUTO = "auto"

_NUMBER = r"(\d+(?:\.\d+)?)"
# (convention shown to users, pattern); the bare number comes last.
SPECTRAL_CONVENTIONS: tuple[tuple[str, re.Pattern], ...] = (
    ("nm_<wavelength>", re.compile(rf"^nm_{_NUMBER}$", re.IGNORECASE)),
    ("wl_<wavelength>", re.compile(rf"^wl_{_NUMBER}$", re.IGNORECASE)),
    ("r<wavelength>", re.compile(rf"^r{_NUMBER}$", re.IGNORECASE)),
    ("scan_visnir.<wavelength>_ref", re.compile(rf"^scan_visnir\.{_NUMBER}_ref$", re.IGNORECASE)),
    ("scan_visnir.<wavelength>_pcnt",
     re.compile(rf"^scan_visnir\.{_NUMBER}_pcnt$", re.IGNORECASE)),
    ("<wavelength>", re.compile(rf"^{_NUMBER}$")),
)
#: OSSL's mid-infrared columns (wavenumbers in cm-1, absorbance): refused with their own error.
_MIR_PATTERN = re.compile(rf"^scan_mir\.{_NUMBER}_abs$", re.IGNORECASE)
_ACCEPTED = (
    "'350', 'nm_350', 'wl_350', 'r350', 'scan_visnir.350_ref' or 'scan_visnir.350_pcnt' "
    "(one convention per file; decimals such as '350.5' are allowed)"
)


@dataclass(frozen=True)
class ImportReport:
    """What an importer read, detected and converted (``to_dict()`` gives plain JSON types).

    ``interpolated_nm`` lists the grid bands that band averaging had to interpolate (windows
    without a source band); it is empty for ``resample_method="interpolate"``. ``om_factor`` is
    set only when carbon was converted from organic matter.
    """

    library: str
    source: str
    rows: int
    labelled_rows: int
    spectral_convention: str
    spectral_columns: int
    source_range_nm: tuple[float, float]
    spectra_declared: str
    spectra_units: str
    carbon_column: str | None
    carbon_units: str | None
    grid: dict
    resample_method: str
    id_column: str | None = None
    conversions: tuple[str, ...] = ()
    interpolated_nm: tuple[float, ...] = ()
    ignored_columns: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    om_factor: float | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data


@dataclass
class _Spectra:
    convention: str
    columns: list[str]
    wavelengths_nm: np.ndarray = field(repr=False)


def _preview(names, count: int = 6) -> str:
    names = [str(name) for name in names]
    shown = ", ".join(repr(name) for name in names[:count])
    return shown + (f", ... ({len(names)} in all)" if len(names) > count else "")


def _as_grid(grid) -> Grid:
    if isinstance(grid, Grid):
        return grid
    if isinstance(grid, Mapping):
        try:
            return Grid.from_params(grid)
        except KeyError as error:
            raise ValueError(
                f"grid parameters need start_nm, stop_nm and step_nm; missing {error}"
            ) from error
    raise ValueError(
        f"grid must be a schema.Grid or a mapping with start_nm/stop_nm/step_nm; got {grid!r}"
    )


def _read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no file at {path}")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".parquet":
        return pd.read_parquet(path)
    if ".csv" in suffixes[-2:]:
        return _read_csv(path, compressed=suffixes[-1] == ".gz")
    raise ValueError(
        f"{path}: unknown file type {''.join(path.suffixes)!r}; use .parquet, .csv or .csv.gz"
    )


#: Bytes of CSV text parsed at a time (whole records): a large file is read in chunks of about
#: this size, so that memory holds the parsed columns and one chunk of text, not the whole text
#: and the parser's buffers for it.
CSV_CHUNK_BYTES = 1 << 26
_EXPORT = "save it as comma-separated UTF-8 text (a spreadsheet's 'CSV UTF-8') or as Parquet"


def _read_csv(path: Path, compressed: bool) -> pd.DataFrame:
    """A CSV table (gzip-compressed when ``compressed``), read in chunks of about
    ``CSV_CHUNK_BYTES`` (:func:`_csv_chunks`, :func:`_join_chunks`) and typed as
    ``pandas.read_csv`` types the whole file; a file that cannot be read as comma-separated
    UTF-8 text, or a row with more or fewer fields than the header, raises ``ValueError``
    saying where, why and what to do."""
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(1 << 16)
        if b"\x00" in head:
            raise ValueError(f"{path}: a binary file (a spreadsheet or another format?), not CSV "
                             f"text; {_EXPORT}")
        with opener(path, "rb") as handle:
            frame, mixed = _join_chunks(_csv_chunks(handle, path))
        if mixed:  # typed per chunk differently: read them again as text, as one read would
            with opener(path, "rb") as handle:
                frame, _ = _join_chunks(_csv_chunks(handle, path, text_columns=mixed))
    except (EOFError, OSError, zlib.error) as error:
        what = "the compressed file is incomplete or damaged" if compressed else "cannot be read"
        raise ValueError(f"{path}: {what} ({error}); download or write it again") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{path}: not a comma-separated table ({error}); {_EXPORT}") from None
    return frame


def _csv_records(handle, size: int):
    """The records of a CSV file as lists of ``(line number, record)`` of about ``size``
    bytes: a record is a line, or several when a quoted field holds a line break (an odd
    number of '"' so far)."""
    pending, line_number, start = b"", 0, 0
    while lines := handle.readlines(size):
        batch = []
        for line in lines:
            line_number += 1
            if not pending:
                start = line_number
            record = pending + line
            last = record.rfind(b'"')
            if last >= 0 and record.count(b'"', 0, last + 1) % 2:
                pending = record
                continue
            pending = b""
            batch.append((start, record))
        yield batch
    if pending:
        yield [(start, pending)]  # an unclosed quote: the parser says so


def _field_count(record: bytes) -> int:
    """Fields in a CSV record: its commas outside quotes, plus one (quoted fields, such as
    text ids, usually come first: only the part up to the last '"' is split)."""
    last = record.rfind(b'"')
    if last < 0:
        return record.count(b",") + 1
    quoted = record[:last + 1].split(b'"')
    return sum(part.count(b",") for part in quoted[::2]) + record.count(b",", last + 1) + 1


def _check_fields(path: Path, records: list, fields: int, first_row: int) -> list[bytes]:
    """The records that are not blank (the parser skips blank lines); ``ValueError`` naming
    the first with another number of fields than the header's ``fields``."""
    kept = []
    for line_number, record in records:
        if not record.strip():
            continue
        count = _field_count(record)
        if count != fields:
            what = "fewer" if count < fields else "more"
            raise ValueError(
                f"{path}: row {first_row + len(kept)} (counting from 0; line {line_number} of "
                f"the file, starting {record[:30].decode(errors='replace').rstrip()!r}) has {count} "
                f"fields, {what} than the {fields} columns of the header: a value or a ',' was "
                "lost or added there. Give every row one field per column (an empty cell keeps "
                "its commas: '1.2,,3.4'), or remove the row")
        kept.append(record)
    return kept


def _csv_chunks(handle, path: Path, text_columns=()):
    """The table of an open CSV file as DataFrames of about ``CSV_CHUNK_BYTES`` of text each,
    typed by ``pandas.read_csv`` (``text_columns`` read as text); every row is checked to have
    as many fields as the header (:func:`_check_fields`)."""
    names, fields, rows, offset = None, 0, 0, 0
    for records in _csv_records(handle, CSV_CHUNK_BYTES):
        if names is None:
            records = [item for item in records if item[1].strip()]  # as _check_fields
            if not records:
                continue
            header = records.pop(0)[1]
            offset += len(header)
            names = _csv_names(path, header)
            fields = len(names)
            dtype = {name: "str" for name in names if name in set(text_columns)}
        kept = _check_fields(path, records, fields, rows)
        if not kept:
            continue
        text = b"".join(kept)
        try:
            chunk = pd.read_csv(io.BytesIO(text), header=None, names=names, dtype=dtype or None,
                                low_memory=False)
        except UnicodeDecodeError as error:
            raise _not_utf8(path, error, offset) from None
        offset += len(text)
        rows += len(chunk)
        yield chunk
    if names is None:
        raise ValueError(f"{path}: the file is empty")
    if rows == 0:
        yield pd.read_csv(io.BytesIO(header))  # the columns, no rows


def _csv_names(path: Path, header: bytes) -> list:
    """The column names of a CSV header line as ``pandas.read_csv`` gives them (repeated names
    get '.1', ...; empty ones 'Unnamed: <i>'); ``ValueError`` for a file that separates its
    columns with another character."""
    try:
        names = list(pd.read_csv(io.BytesIO(header)).columns)
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error, 0) from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty") from None
    if len(names) == 1:
        name = str(names[0])
        for separator in (";", "\t", "|"):
            if separator in name:
                raise ValueError(
                    f"{path}: one column only, named {name[:40]!r}...: the file seems to separate "
                    f"columns with {separator!r}; save it with ',' between columns and '.' as "
                    "the decimal mark (files with ';' often use ',' for decimals)"
                )
    return names


def _not_utf8(path: Path, error: UnicodeDecodeError, offset: int) -> ValueError:
    return ValueError(
        f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at position "
        f"{offset + error.start}; Latin-1 or another encoding?); {_EXPORT}")


#: Bytes of each part of the float matrix a CSV file's chunks are gathered in (``_RowParts``).
MATRIX_PART_BYTES = 1 << 26


class _RowParts:
    """A float64 matrix of ``columns`` columns built a block of rows at a time, in parts of
    about ``MATRIX_PART_BYTES``: the allocator gives such large blocks back to the system when
    they are freed, while the space of many chunk-sized ones would stay in the process. The
    parts hold a column's values together (pandas' own layout: no transposing copies)."""

    def __init__(self, columns: int):
        self.columns = columns
        self.part_rows = max(1, MATRIX_PART_BYTES // (8 * max(columns, 1)))
        self.parts: list[np.ndarray] = []
        self.filled = self.part_rows  # rows used in the last part

    def add(self, columns: list[np.ndarray]) -> None:
        """Append rows given column by column (``columns`` 1-D arrays of one length)."""
        rows, start = len(columns[0]) if columns else 0, 0
        while start < rows:
            if self.filled == self.part_rows:
                self.parts.append(np.empty((self.columns, self.part_rows)))
                self.filled = 0
            take = min(self.part_rows - self.filled, rows - start)
            part = self.parts[-1][:, self.filled:self.filled + take]
            for values, row in zip(columns, part, strict=True):
                row[:] = values[start:start + take]
            self.filled += take
            start += take

    def matrix(self) -> np.ndarray:
        """The rows added, as one (Fortran-ordered) matrix (the parts are released)."""
        if not self.parts:
            return np.empty((0, self.columns))
        parts, self.parts = self.parts, []
        parts[-1] = parts[-1][:, :self.filled]
        return (parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)).T


def _join_chunks(chunks) -> tuple[pd.DataFrame | None, list]:
    """The table of a CSV file's chunks (:func:`_csv_chunks`), and the columns some chunks read
    as numbers and others as text: ``pandas.read_csv`` of the whole file reads those as text
    (sample ids '0012' keep their zeros; a 'n.d.' among numbers is found by the importer's
    checks), so the caller reads them again as text (the table is None then).

    The columns the first chunk reads as float64 are copied into one float64 matrix a chunk at
    a time (:class:`_RowParts`), and each chunk is freed once copied: memory holds the table
    in one block, not the chunks' many small arrays as well."""
    first, floats, blocks, others, numeric = None, [], None, {}, []
    for chunk in chunks:
        if first is None:
            first = chunk
            floats = [name for name, dtype in chunk.dtypes.items() if dtype == np.float64]
            others = {name: [] for name in chunk.columns if chunk[name].dtype != np.float64}
            blocks = _RowParts(len(floats))
        numeric.append([dtype.kind in "iufc" for dtype in chunk.dtypes])
        if len(chunk) == 0 or blocks is None:
            continue
        try:
            blocks.add([chunk[name].to_numpy(dtype=np.float64) for name in floats])
        except (TypeError, ValueError):
            blocks = None  # text in a float column: a mixed column, read again
            continue
        for name, parts in others.items():
            parts.append(chunk[name])
        chunk = None  # freed before the next chunk is parsed
    kinds = pd.DataFrame(numeric, columns=first.columns)
    mixed = list(kinds.columns[kinds.nunique() > 1])
    if mixed or blocks is None:
        return None, mixed
    if len(numeric) == 1:
        return first, []
    frame = pd.DataFrame(blocks.matrix(), columns=floats, copy=False)
    for position, name in enumerate(first.columns):
        if name in others:
            frame.insert(position, name, pd.concat(others[name], ignore_index=True))
    return frame, []


def read_canonical(path: str | Path, *, grid: Grid | Mapping | None = None) -> pd.DataFrame:
    """Read a canonical SSL table from Parquet or CSV and check its structure.

    Metadata columns get their canonical dtypes (``sample_id`` as a string even when the file
    stores numbers); band columns come last, in increasing wavelength; any other columns are kept
    between the two. With ``grid`` the bands must be exactly that grid's.
    """
    frame = _read_table(path)
    schema.check_table(frame, name=str(path))
    frame = schema.with_meta_dtypes(frame)
    bands = schema.band_columns(frame)
    if grid is not None:
        expected = _as_grid(grid).columns
        if bands != expected:
            missing = [c for c in expected if c not in bands]
            extra = [c for c in bands if c not in expected]
            raise ValueError(
                f"{path}: band columns do not match the grid ({len(expected)} bands "
                f"{expected[0]}..{expected[-1]}); missing: {_preview(missing) or 'none'}; "
                f"not on the grid: {_preview(extra) or 'none'}. Re-import the source with "
                "import_wide(..., grid=...) to resample it"
            )
    extras = [c for c in frame.columns if c not in schema.META_COLUMNS and c not in bands]
    return frame[list(schema.META_COLUMNS) + extras + bands]


def detect_spectral_columns(columns, exclude=()) -> _Spectra:
    """Find the spectral columns and their wavelengths (nm) by name; one convention per file."""
    excluded = {str(c) for c in exclude if c is not None}
    found: dict[str, list[tuple[str, float]]] = {}
    for column in columns:
        name = str(column)
        if name in excluded:
            continue
        for convention, pattern in SPECTRAL_CONVENTIONS:
            match = pattern.match(name)
            if match:
                found.setdefault(convention, []).append((column, float(match.group(1))))
                break
    mir = [str(c) for c in columns if _MIR_PATTERN.match(str(c))]
    if mir and not found:
        raise ValueError(
            f"{len(mir)} OSSL mid-infrared column(s) ({_preview(mir, 3)}: absorbance at "
            "wavenumbers in cm-1) and no vis-NIR columns: LocalSOC handles vis-NIR spectra "
            "(wavelengths 350-2500 nm) only; import the OSSL vis-NIR table (scan_visnir.<nm>_ref "
            "columns) instead")
    if not found:
        raise ValueError(
            f"no spectral columns found among {len(list(columns))} columns "
            f"({_preview(list(columns))}); name one column per wavelength in nm as {_ACCEPTED}"
        )
    if len(found) > 1:
        parts = "; ".join(
            f"{convention}: {_preview([c for c, _ in members], 3)}"
            for convention, members in found.items()
        )
        raise ValueError(
            f"spectral columns follow more than one naming convention ({parts}). Rename or drop "
            f"columns so that one convention remains; accepted: {_ACCEPTED}"
        )
    convention, members = next(iter(found.items()))
    members.sort(key=lambda item: item[1])
    names = [c for c, _ in members]
    wavelengths = np.array([w for _, w in members], dtype=np.float64)
    duplicated = np.flatnonzero(np.diff(wavelengths) == 0)
    if duplicated.size:
        i = int(duplicated[0])
        raise ValueError(
            f"columns {names[i]!r} and {names[i + 1]!r} give the same wavelength "
            f"{wavelengths[i]:g} nm; keep one of them"
        )
    low, high = WAVELENGTH_RANGE_NM
    outside = [n for n, w in zip(names, wavelengths, strict=True) if not low <= w <= high]
    if outside:
        raise ValueError(
            f"spectral column(s) {_preview(outside, 4)} give wavelengths outside {low:g}-{high:g} nm; "
            "LocalSOC handles vis-NIR spectra with wavelengths in nm (not MIR wavenumbers). "
            "Drop or rename columns that are not wavelengths"
        )
    if len(names) < 2:
        raise ValueError(
            f"only one spectral column was found ({names[0]!r}); a spectrum needs several"
        )
    return _Spectra(convention, names, wavelengths)


def _numeric_block(frame: pd.DataFrame, columns: list, what: str) -> np.ndarray:
    """Columns as a new float64 matrix (never a view of ``frame``); a non-numeric cell raises
    naming its row and column."""
    try:
        return frame[columns].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    except (TypeError, ValueError):
        pass
    converted = []
    for column in columns:
        values = frame[column]
        numeric = pd.to_numeric(values, errors="coerce")
        bad = numeric.isna().to_numpy() & values.notna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{what} column {column!r}, row {row} (counting from 0): {values.iloc[row]!r} "
                "is not a number; fix or blank the cell"
            )
        converted.append(numeric.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.column_stack(converted)


def _as_ids(values: pd.Series) -> pd.Series:
    """Sample ids as strings; whole numbers stored as floats (a column with gaps) lose the '.0';
    blank ids (empty or only spaces) become null, for validation to quarantine."""
    if pd.api.types.is_float_dtype(values.dtype):
        present = values.dropna()
        if (present == np.round(present)).all():
            values = values.astype("Int64")
    ids = values.astype("string")
    return ids.mask(ids.str.strip() == "")


def find_id_column(columns) -> str | None:
    """The first column named as one of ``ID_COLUMNS`` (ignoring case), or None."""
    by_name = {str(c).lower(): c for c in reversed(list(columns))}
    return next((by_name[name] for name in ID_COLUMNS if name in by_name), None)


def find_carbon_column(columns) -> str:
    """``soc`` if it is a column, else the first of ``OSSL_CARBON_COLUMNS`` that is (names
    matched exactly, as OSSL spells them); ``ValueError`` listing what was looked for."""
    names = [str(c) for c in columns]
    for name in ("soc", *OSSL_CARBON_COLUMNS):
        if name in names:
            return name
    raise ValueError(
        f"carbon_column='auto' found no carbon column: none of 'soc' or OSSL's "
        f"{list(OSSL_CARBON_COLUMNS)} among the columns ({_preview(names)}); name the column "
        "with carbon_column (--carbon-column), or pass None ('' on the command line) for "
        "unlabelled spectra")


#: Rows of a spectra matrix handled at a time by the unit checks, the conversion and the
#: resampling: their temporaries stay the size of a block, not of the matrix.
ROW_BLOCK = 4096


def _negative(cells: np.ndarray) -> np.ndarray:
    return np.isfinite(cells) & (cells < 0)


def _rows_where(values: np.ndarray, test) -> np.ndarray:
    """The rows (a boolean per row) with a cell where ``test(block)`` holds, ``ROW_BLOCK`` rows
    at a time."""
    found = np.zeros(len(values), dtype=bool)
    for start in range(0, len(values), ROW_BLOCK):
        found[start:start + ROW_BLOCK] = test(values[start:start + ROW_BLOCK]).any(axis=1)
    return found


def _first_where(values: np.ndarray, rows: np.ndarray, columns: list, test) -> str:
    """The first of the ``rows`` (a boolean per row) and its first cell where ``test`` holds."""
    row = int(np.flatnonzero(rows)[0])
    column = int(np.flatnonzero(test(values[row]))[0])
    return f"row {row}, column {columns[column]!r} holds {values[row, column]:g}"


def _detect_units(values: np.ndarray, columns: list, top: float, largest: str,
                  percent_reflectance_above: float) -> tuple[str, list[str]]:
    """``spectra="auto"``: percent reflectance or fractions from the largest value ``top``
    (``localsoc.spectra.units.detect_reflectance_units``), with the conversion note;
    ``ValueError`` for negative values, values above 100 and the absorbance-like range."""
    negative = _rows_where(values, _negative)
    if negative.any():
        where = _first_where(values, negative, columns, _negative)
        raise ValueError(
            f"spectra='auto' found negative values ({where}); "
            "reflectance cannot be negative. If these are absorbance log10(1/R) declare "
            "spectra='absorbance'; derivatives or other preprocessed spectra cannot be imported"
        )
    detected = units_rules.detect_reflectance_units(top, percent_reflectance_above)
    if top > units_rules.PERCENT_MAX:
        raise ValueError(
            f"spectra='auto': values reach {top:g} ({largest}), above "
            f"{units_rules.PERCENT_MAX:g}, so they are neither reflectance fractions nor "
            "percent; declare the units (spectra='reflectance', 'percent_reflectance' or "
            "'absorbance') after checking the source"
        )
    if detected == "percent_reflectance":
        return detected, [
            f"detected percent reflectance (maximum {top:g} > {percent_reflectance_above:g})"
        ]
    if detected is None:
        raise ValueError(
            f"spectra='auto': values reach {top:g} ({largest}): above "
            f"{units_rules.FRACTION_MAX:g} they are not reflectance fractions, and below "
            f"{percent_reflectance_above:g} they are not percent; they look like absorbance "
            "log10(1/R). Absorbance cannot be detected reliably (soil absorbance and reflectance "
            "fractions share the 0-1 range), so declare spectra='absorbance' (or "
            "'reflectance' if these really are fractions)"
        )
    return detected, [
        f"detected reflectance fractions (maximum {top:g} <= "
        f"{units_rules.FRACTION_MAX:g}); absorbance data would look the same, so "
        "absorbance must be declared"
    ]


def _check_units(units: str, top: float, largest: str, percent_reflectance_above: float,
                 absorbance_max: float) -> list[str]:
    """The conversion of spectra in ``units`` whose largest value is ``top``; ``ValueError``
    when ``top`` contradicts the units (``localsoc.spectra.units``)."""
    if units == "reflectance":
        if top > percent_reflectance_above:
            raise ValueError(
                f"spectra='reflectance' (fractions in (0, 1]) but values reach {top:g} ({largest}); "
                "these look like percent reflectance: declare spectra='percent_reflectance' (or "
                "'auto')"
            )
        return []
    if units == "percent_reflectance":
        if top <= percent_reflectance_above:
            raise ValueError(
                f"spectra='percent_reflectance' (0-100) but the largest value is {top:g} "
                f"({largest}); these look like reflectance fractions: declare "
                "spectra='reflectance' (or 'auto')"
            )
        return ["percent reflectance / 100 -> reflectance fraction"]
    if units_rules.absorbance_too_high(top, absorbance_max):
        raise ValueError(
            f"spectra='absorbance' but values reach {top:g} ({largest}); "
            f"{units_rules.absorbance_limit(absorbance_max)}. If these are percent "
            "reflectance declare spectra='percent_reflectance'"
        )
    return ["absorbance log10(1/R) -> reflectance R = 10**(-A)"]


def _to_reflectance(
    values: np.ndarray,
    declared: str,
    columns: list,
    largest_by_row: np.ndarray,
    percent_reflectance_above: float = units_rules.PERCENT_REFLECTANCE_ABOVE,
    absorbance_max: float = units_rules.ABSORBANCE_MAX,
) -> tuple[np.ndarray, str, list[str]]:
    """Reflectance fractions from the declared (or detected) units, the units, and what was
    done; ``largest_by_row`` is :func:`_largest_by_row` of ``values``. The unit rules and
    thresholds are those of ``localsoc.spectra.units``. ``values`` (a matrix of the caller's
    own) is converted in place, ``ROW_BLOCK`` rows at a time."""
    if not np.isfinite(largest_by_row).any():
        raise ValueError("the spectral columns hold no numbers (all empty or NaN)")
    top = float(largest_by_row.max())
    largest = _first_where(values, largest_by_row == top, columns, lambda cells: cells == top)
    units, conversions = declared, []
    if declared == "auto":
        units, conversions = _detect_units(values, columns, top, largest,
                                           percent_reflectance_above)
    conversions += _check_units(units, top, largest, percent_reflectance_above, absorbance_max)
    for start in range(0, len(values), ROW_BLOCK):
        block = values[start:start + ROW_BLOCK]
        block[...] = units_rules.to_fractions(block, units)
    return values, units, conversions


def _largest_by_row(values: np.ndarray) -> np.ndarray:
    """Each row's largest finite value (-inf for a row without one), ``ROW_BLOCK`` rows at a
    time."""
    largest = np.empty(len(values))
    for start in range(0, len(values), ROW_BLOCK):
        block = values[start:start + ROW_BLOCK]
        largest[start:start + ROW_BLOCK] = np.where(np.isfinite(block), block, -np.inf).max(
            axis=1, initial=-np.inf)
    return largest


def _cells_above(values: np.ndarray, columns: list, ids: pd.Series | None, threshold: float,
                 shown: int = 5) -> str:
    """The cells above ``threshold``, row by row (row counted from 0, sample id, column, value;
    the largest of a row's cells, with how many more the row has), for error messages."""
    rows = np.flatnonzero(_largest_by_row(values) > threshold)
    parts = []
    for row in rows[:shown]:
        cells = np.flatnonzero(values[row] > threshold)
        column = int(cells[np.argmax(values[row, cells])])
        sample = "" if ids is None or pd.isna(ids.iloc[row]) else f" (sample {ids.iloc[row]!r})"
        more = f" and {cells.size - 1} more cell(s) above {threshold:g}" if cells.size > 1 else ""
        parts.append(f"row {row}{sample}, column {columns[column]!r}: {values[row, column]:g}"
                     f"{more}")
    rest = f"; ... ({rows.size} rows in all)" if rows.size > shown else ""
    return "; ".join(parts) + rest


def _check_few_cells_above(values: np.ndarray, largest_by_row: np.ndarray, units: str,
                           columns: list, ids: pd.Series | None,
                           percent_reflectance_above: float) -> None:
    """The unit rule for a file of reflectance fractions with a few cells above
    ``percent_reflectance_above``: when most rows (with a number) stay at or below it, those
    rows are fractions and the rows above it are the exception, so the file is not read as
    percent reflectance (which would quarantine every fraction row) nor refused as a whole:
    ``ValueError`` naming the cells and the fixes. Absorbance has no such rule.
    ``largest_by_row`` is :func:`_largest_by_row` of ``values``."""
    if units == "absorbance":
        return
    top = largest_by_row
    above = int((top > percent_reflectance_above).sum())
    at_most = int((np.isfinite(top) & (top <= percent_reflectance_above)).sum())
    if above == 0 or at_most <= above:
        return
    raise ValueError(
        f"{at_most:,} of {at_most + above:,} rows look like reflectance fractions (largest value "
        f"<= {percent_reflectance_above:g}) but {above} row(s) hold values above "
        f"{percent_reflectance_above:g}: "
        f"{_cells_above(values, columns, ids, percent_reflectance_above)}. If the file holds "
        "fractions, correct those cells (a percent value among fractions: divide it by 100) or "
        "blank them (validation then quarantines the row), and import with "
        "spectra='reflectance' (or 'auto'); if those rows really are percent reflectance, "
        "import them from a separate file with spectra='percent_reflectance'")


def _rows_in_other_units(
    largest_by_row: np.ndarray, units: str, percent_reflectance_above: float
) -> pd.Series | None:
    """The ``import_problem`` of each row whose spectrum is in other units than the file's
    (null for the others), from each row's largest finite value (:func:`_largest_by_row`);
    None when every row agrees."""
    # the rule looks at each row's largest value only: one column of the row maxima is enough
    other = units_rules.rows_in_other_units(largest_by_row[:, None], units,
                                            percent_reflectance_above)
    if not other.any():
        return None
    top = float(largest_by_row.max())
    problems = pd.Series(pd.NA, index=pd.RangeIndex(len(largest_by_row)), dtype="string")
    for row in np.flatnonzero(other):
        largest = float(largest_by_row[row])
        problems[row] = (
            f"spectrum in other units than its file: its largest value {largest:g} is at most "
            f"{percent_reflectance_above:g}, so it looks like reflectance fractions, while the "
            f"file holds percent reflectance (largest value {top:g}); give every row in the "
            "same units (multiply this row by 100, or import it from a separate file)"
        )
    return problems


def _carbon_to_percent(
    frame: pd.DataFrame, column: str, units: str, om_factor: float
) -> tuple[np.ndarray, list[str]]:
    values = _numeric_block(frame, [column], "carbon")[:, 0]
    if units == "percent":
        soc, conversions = values, [f"{column!r} taken as SOC % (g/100 g) as is"]
    elif units == "g_per_kg":
        soc, conversions = values / 10.0, [f"{column!r} g/kg / 10 -> SOC %"]
    elif units == "organic_matter_percent":
        soc = values / om_factor
        conversions = [f"{column!r} organic matter % / {om_factor:g} -> SOC % (stated OM factor)"]
    else:
        soc = values / 10.0 / om_factor
        conversions = [
            f"{column!r} organic matter g/kg / 10 / {om_factor:g} -> SOC % (stated OM factor)"
        ]
    too_high = np.flatnonzero(soc > MAX_CARBON_PERCENT)
    if too_high.size:
        row = int(too_high[0])
        raise ValueError(
            f"carbon column {column!r} declared as {units!r} gives {soc[row]:g} % SOC at row {row} "
            f"(value {values[row]:g}; {too_high.size} row(s) above {MAX_CARBON_PERCENT:g} %), which "
            "is impossible; check carbon_units (g/kg values need carbon_units='g_per_kg')"
        )
    return soc, conversions


def _column(frame: pd.DataFrame, name: str, argument: str) -> pd.Series:
    if name not in frame.columns:
        hint = (
            " (carbon_column=None imports unlabelled spectra)"
            if argument == "carbon_column"
            else ""
        )
        raise ValueError(
            f"{argument}={name!r} is not a column of the source{hint}; columns seen: "
            f"{_preview(list(frame.columns))}"
        )
    return frame[name]


def optional_source_columns(columns) -> dict[str, object]:
    """The source columns of the canonical table's optional columns (``OPTIONAL_COLUMNS``):
    canonical name -> source column (in the canonical order), matched by name ignoring case and
    surrounding blanks."""
    found: dict[str, object] = {}
    for column in columns:
        key = str(column).strip().lower()
        if key in schema.OPTIONAL_COLUMNS and key not in found:
            found[key] = column
    return {name: found[name] for name in schema.OPTIONAL_COLUMNS if name in found}


def optional_values(frame: pd.DataFrame, columns: Mapping[str, object]) -> dict[str, pd.Series]:
    """The optional columns in their canonical dtypes; a ``ValueError`` names the first row
    whose bulk density or depth is not a number in range (blank cells stay null)."""
    values: dict[str, pd.Series] = {}
    for name, column in columns.items():
        raw = frame[column]
        if schema.OPTIONAL_COLUMNS[name] == "string":
            text = raw.astype("string").str.strip()
            values[name] = text.mask(text == "").reset_index(drop=True)
            continue
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = numbers.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
        low, high = schema.OPTIONAL_RANGES[name]
        bad |= numbers.notna() & ~((numbers > low) & (numbers <= high))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            unit = "g/cm3" if name == "bulk_density_g_cm3" else "cm (layer thickness)"
            raise ValueError(
                f"column {str(column)!r} row {row}: {str(raw.iloc[row])!r} is not a {name} in "
                f"({low:g}, {high:g}] {unit}; fix the value or leave the cell blank")
        values[name] = numbers.astype("float64").reset_index(drop=True)
    return values


@dataclass(frozen=True)
class WideOptions:
    """The declarations of a wide table's import (:func:`import_wide`'s keyword arguments).

    library : name of the collection; also the prefix of generated sample ids.
    spectra : units of the spectral columns, one of ``SPECTRA_UNITS``. ``"auto"`` tells percent
        (maximum above ``percent_reflectance_above`` and <= 100) from fractions (maximum <= 1);
        absorbance must be declared, because soil absorbance also lies mostly within 0-1 and
        cannot be told from reflectance by its values. Spectral columns whose names say their
        units (OSSL ``scan_visnir.<nm>_ref``: fractions, ``scan_visnir.<nm>_pcnt``: percent;
        ``localsoc.spectra.units.CONVENTION_UNITS``) are read in those units under ``"auto"``;
        declaring other units raises.
    carbon_column : column holding carbon; None imports unlabelled spectra (``soc`` null);
        ``"auto"`` takes ``soc`` if there is one, else the first of OSSL's organic carbon
        columns (``OSSL_CARBON_COLUMNS``) present, and names it in the report.
    carbon_units : one of ``CARBON_UNITS``; percent is g/100 g; organic matter is converted
        with ``om_factor``.
    om_factor : organic matter to organic carbon factor (van Bemmelen, 1.724); SOC = OM /
        om_factor. Only used (and only allowed to differ from the default) for organic matter.
    id_column : column with sample ids; None takes the first column named as one of
        ``ID_COLUMNS``, else generates ``<library>-<row>`` (row counted from 0). The report
        says which.
    country, site : one value for all rows; or per row from ``country_column`` /
        ``site_column``. lat_column, lon_column : coordinate columns (decimal degrees).
    narrow_grid_ok : when the source does not cover the grid, False raises ``ValueError``
        naming the missing range; True imports on the part of the grid the source covers (same
        step) and says so in the report. Declaring the narrower grid is the cleaner fix.
    resample_method : one of ``localsoc.spectra.resample.METHODS``.
    notes : extra lines for the report (used by the library wrappers).
    percent_reflectance_above, absorbance_max : the unit thresholds of
        ``localsoc.spectra.units`` (spectra whose largest value is above the first, and at most
        100, are percent reflectance; declared absorbance above the second is refused).
    keep_columns : source column -> table column, copied as they are into the table (between
        the metadata and the bands), e.g. OSSL's layer depths.
    """

    library: str
    spectra: str = "reflectance"
    carbon_column: str | None = "soc"
    carbon_units: str = "percent"
    om_factor: float = VAN_BEMMELEN_FACTOR
    id_column: str | None = None
    country: str | None = None
    site: str | None = None
    country_column: str | None = None
    site_column: str | None = None
    lat_column: str | None = None
    lon_column: str | None = None
    narrow_grid_ok: bool = False
    resample_method: str = "average"
    notes: tuple[str, ...] = ()
    percent_reflectance_above: float = units_rules.PERCENT_REFLECTANCE_ABOVE
    absorbance_max: float = units_rules.ABSORBANCE_MAX
    keep_columns: Mapping[str, str] | None = None

    @property
    def uses_om(self) -> bool:
        return self.carbon_units.startswith("organic_matter")

    def check(self) -> None:
        """``ValueError`` for declarations that are unusable whatever the source."""
        for name, value, allowed in (("spectra", self.spectra, SPECTRA_UNITS),
                                     ("carbon_units", self.carbon_units, CARBON_UNITS),
                                     ("resample_method", self.resample_method, METHODS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
        factor = self.om_factor
        if not (isinstance(factor, int | float) and np.isfinite(factor) and factor > 0):
            raise ValueError(f"om_factor must be a positive number; got {factor!r}")
        if not self.uses_om and factor != VAN_BEMMELEN_FACTOR:
            raise ValueError(
                f"om_factor={factor:g} was given but carbon_units={self.carbon_units!r}; the "
                "factor only applies to organic matter (carbon_units='organic_matter_percent' "
                "or 'organic_matter_g_per_kg')"
            )
        for constant, column, name in ((self.country, self.country_column, "country"),
                                       (self.site, self.site_column, "site")):
            if constant is not None and column is not None:
                raise ValueError(f"give {name} (one value) or {name}_column (per row), not both")
        if not self.library or not isinstance(self.library, str):
            raise ValueError(f"library must be a non-empty name; got {self.library!r}")


@dataclass
class WideLayout:
    """What :func:`detect_layout` found in a wide table: the declared (or found) columns by
    argument name, the kept and optional columns, the spectral columns, the units to read them
    in (declared, or named by the columns) and the report's notes so far."""

    named: dict[str, object]
    columns: dict[str, pd.Series]
    keep: dict[str, str]
    optional: dict[str, object]
    spectra: _Spectra
    units: str
    notes: list[str]

    @property
    def ids(self) -> pd.Series | None:
        column = self.columns.get("id_column")
        return None if column is None else _as_ids(column)


def _id_column(frame: pd.DataFrame, options: WideOptions, notes: list[str]):
    """The declared id column, else the one found by name (``find_id_column``), or None;
    the report's note says which."""
    id_column, how = options.id_column, "as declared"
    if id_column is None:
        id_column = find_id_column(frame.columns)
        how = "found by name; id_column chooses another"
    if id_column is None:
        notes.append(f"no id column (none of {list(ID_COLUMNS)}): sample ids generated "
                     f"as '{options.library}-<row>'")
    else:
        notes.append(f"sample ids from column {str(id_column)!r} ({how})")
    return id_column


def _carbon_column(frame: pd.DataFrame, options: WideOptions, notes: list[str]) -> str | None:
    """The declared carbon column, or for ``"auto"`` the one ``find_carbon_column`` finds."""
    if options.carbon_column != CARBON_AUTO:
        return options.carbon_column
    found = find_carbon_column(frame.columns)
    notes.append(
        f"carbon from column {found!r} (found by name"
        + ("" if found == "soc" else ": OSSL organic carbon, weight % = % SOC")
        + "; carbon_column chooses another)")
    return found


def _units_to_read(spectra: str, found: _Spectra) -> str:
    """The declared units, or those the column names say under ``"auto"``; ``ValueError``
    when the declaration contradicts the names."""
    named_units = units_rules.units_of_convention(found.convention)
    if named_units is None:
        return spectra
    if spectra not in ("auto", named_units):
        raise ValueError(
            f"spectra={spectra!r} but the spectral columns are named {found.convention} "
            f"({found.columns[0]!r}, ...), which holds {named_units.replace('_', ' ')}; "
            f"declare spectra={named_units!r} or 'auto'")
    return named_units


def detect_layout(frame: pd.DataFrame, options: WideOptions) -> WideLayout:
    """Detect step: the id and carbon columns, the declared columns (each must exist), the
    optional and kept columns, and the spectral columns (``detect_spectral_columns``) with the
    units to read them in."""
    notes = list(options.notes)
    id_column = _id_column(frame, options, notes)
    carbon_column = _carbon_column(frame, options, notes)
    keep = dict(options.keep_columns or {})
    for column in keep:
        _column(frame, column, "keep_columns")
    named = {"carbon_column": carbon_column, "id_column": id_column,
             "country_column": options.country_column, "site_column": options.site_column,
             "lat_column": options.lat_column, "lon_column": options.lon_column}
    columns = {argument: _column(frame, name, argument)
               for argument, name in named.items() if name is not None}
    optional = optional_source_columns(frame.columns)
    found = detect_spectral_columns(frame.columns, exclude=[*named.values(), *optional.values()])
    units = _units_to_read(options.spectra, found)
    return WideLayout(named, columns, keep, optional, found, units, notes)


@dataclass
class ConvertedSpectra:
    """What :func:`convert_spectra` gives: reflectance fractions on the source's wavelengths,
    the units they were read in, the conversions done, and each row's ``import_problem``
    (None when every row agrees with the file's units)."""

    reflectance: np.ndarray
    units: str
    conversions: list[str]
    problems: pd.Series | None


def convert_spectra(frame: pd.DataFrame, layout: WideLayout,
                    options: WideOptions) -> ConvertedSpectra:
    """Convert step: the spectral columns as numbers, checked by the unit rules
    (``localsoc.spectra.units``, ``_check_few_cells_above``) and converted to reflectance
    fractions; rows in other units than the file are marked, not converted."""
    threshold = options.percent_reflectance_above
    found = layout.spectra
    raw = _numeric_block(frame, found.columns, "spectral")
    largest = _largest_by_row(raw)
    _check_few_cells_above(raw, largest, layout.units, found.columns, layout.ids, threshold)
    reflectance, units, conversions = _to_reflectance(raw, layout.units, found.columns, largest,
                                                      threshold, options.absorbance_max)
    if layout.units != options.spectra:
        conversions.insert(0, f"units from the column names: {found.convention} holds "
                              f"{layout.units.replace('_', ' ')}")
    return ConvertedSpectra(reflectance, units, conversions,
                            _rows_in_other_units(largest, units, threshold))


@dataclass
class ResampledSpectra:
    """What :func:`resample_spectra` gives: the grid imported on (narrowed when allowed), the
    spectra on it, the grid bands band averaging interpolated, and the report's lines."""

    grid: Grid
    spectra: np.ndarray
    interpolated: np.ndarray
    conversion: str
    notes: list[str]


def _covered_grid(wavelengths_nm: np.ndarray, grid: Grid, options: WideOptions,
                  notes: list[str]) -> Grid:
    """``grid`` when the source covers it; else the covered part when ``narrow_grid_ok``
    (with a note), or ``ValueError`` naming the missing range (``coverage_message``)."""
    target = grid.wavelengths_nm
    message = coverage_message(wavelengths_nm, target)
    if message is None:
        return grid
    if not options.narrow_grid_ok:
        raise ValueError(f"{options.library}: {message} (narrow_grid_ok=True imports on the "
                         "covered part instead)")
    covered = target[covered_target_mask(wavelengths_nm, target)]
    if covered.size < 2:
        raise ValueError(f"{options.library}: {message}; the source covers fewer than 2 grid "
                         "bands")
    grid = Grid(float(covered[0]), float(covered[-1]), grid.step_nm)
    notes.append(f"grid narrowed to {grid.start_nm:g}-{grid.stop_nm:g} nm: {message}")
    return grid


def resample_spectra(reflectance: np.ndarray, found: _Spectra, grid: Grid,
                     options: WideOptions) -> ResampledSpectra:
    """Resample step: reflectance on the source's wavelengths to ``grid``
    (``localsoc.spectra.resample.resampling_matrix``: band averaging or interpolation),
    ``ROW_BLOCK`` rows at a time."""
    notes: list[str] = []
    grid = _covered_grid(found.wavelengths_nm, grid, options, notes)
    weights, interpolated = resampling_matrix(found.wavelengths_nm, grid.wavelengths_nm,
                                              options.resample_method)
    on_grid = np.empty((len(reflectance), len(grid)))
    for start in range(0, len(reflectance), ROW_BLOCK):  # the sparse product copies its input
        on_grid[start:start + ROW_BLOCK] = (weights.T @ reflectance[start:start + ROW_BLOCK].T).T
    conversion = (
        f"resampled {found.wavelengths_nm[0]:g}-{found.wavelengths_nm[-1]:g} nm "
        f"({len(found.columns)} bands) to {grid.start_nm:g}-{grid.stop_nm:g} nm every "
        f"{grid.step_nm:g} nm by {options.resample_method}"
    )
    return ResampledSpectra(grid, on_grid, interpolated, conversion, notes)


def _metadata(frame: pd.DataFrame, layout: WideLayout, options: WideOptions
              ) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The canonical metadata columns (ids, library, country, site, coordinates, SOC %), with
    the carbon conversions and notes."""
    columns, conversions, notes = layout.columns, [], []
    meta = pd.DataFrame(index=frame.index)
    if layout.named["id_column"] is not None:
        meta["sample_id"] = layout.ids
    else:
        meta["sample_id"] = [f"{options.library}-{i}" for i in range(len(frame))]
    meta["library"] = options.library
    meta["country"] = (columns["country_column"].astype("string") if options.country_column
                       else options.country)
    meta["site"] = columns["site_column"].astype("string") if options.site_column else options.site
    for argument, target_name in (("lat_column", "lat"), ("lon_column", "lon")):
        if argument in columns:
            meta[target_name] = _numeric_block(frame, [columns[argument].name], "coordinate")[:, 0]
    carbon_column = layout.named["carbon_column"]
    if carbon_column is not None:
        meta["soc"], conversions = _carbon_to_percent(frame, carbon_column, options.carbon_units,
                                                      options.om_factor)
    else:
        meta["soc"] = np.full(len(frame), np.nan)
        notes.append("no carbon column: all rows are unlabelled")
    return meta, conversions, notes


def _add_source_columns(table: pd.DataFrame, frame: pd.DataFrame, layout: WideLayout,
                        problems: pd.Series | None, threshold: float) -> list[str]:
    """Insert the optional, kept and ``import_problem`` columns after the metadata (in that
    order); the report's notes."""
    notes, position = [], len(schema.META_COLUMNS)
    for name, values in optional_values(frame, layout.optional).items():
        table.insert(position, name, values)
        position += 1
    if layout.optional:
        notes.append("optional column(s) kept: " + ", ".join(
            f"{name} (from {str(column)!r})" for name, column in layout.optional.items()))
    for column, name in layout.keep.items():
        table.insert(position, name, frame[column].to_numpy())
        position += 1
    if layout.keep:
        notes.append("kept as columns: " + ", ".join(
            f"{column!r} as {name!r}" for column, name in layout.keep.items()))
    if problems is not None:
        table.insert(len(schema.META_COLUMNS), schema.IMPORT_PROBLEM, problems)
        flagged = np.flatnonzero(problems.notna().to_numpy())
        rows = ", ".join(str(r) for r in flagged[:6]) + (", ..." if flagged.size > 6 else "")
        notes.append(
            f"{flagged.size} row(s) (rows {rows}) look like reflectance fractions (largest "
            f"value <= {threshold:g}) in a file of percent reflectance: marked in column "
            "'import_problem'; validation quarantines them"
        )
    return notes


def _wide_report(source: str, table: pd.DataFrame, frame: pd.DataFrame, layout: WideLayout,
                 options: WideOptions, resampled: ResampledSpectra, units: str,
                 conversions: list[str]) -> ImportReport:
    """The ``ImportReport`` of an imported wide table."""
    found, named, grid = layout.spectra, layout.named, resampled.grid
    carbon_column, id_column = named["carbon_column"], named["id_column"]
    used = (set(found.columns) | {c for c in named.values() if c is not None}
            | set(layout.keep) | set(layout.optional.values()))
    return ImportReport(
        library=options.library, source=source, rows=len(table),
        labelled_rows=int(table["soc"].notna().sum()),
        spectral_convention=found.convention, spectral_columns=len(found.columns),
        source_range_nm=(float(found.wavelengths_nm[0]), float(found.wavelengths_nm[-1])),
        spectra_declared=options.spectra, spectra_units=units, carbon_column=carbon_column,
        carbon_units=options.carbon_units if carbon_column is not None else None,
        id_column=None if id_column is None else str(id_column),
        om_factor=(float(options.om_factor) if options.uses_om and carbon_column is not None
                   else None),
        grid={"start_nm": float(grid.start_nm), "stop_nm": float(grid.stop_nm),
              "step_nm": float(grid.step_nm), "bands": len(grid)},
        resample_method=options.resample_method, conversions=tuple(conversions),
        interpolated_nm=(tuple(float(w) for w in resampled.interpolated)
                         if options.resample_method == "average" else ()),
        ignored_columns=tuple(str(c) for c in frame.columns if c not in used),
        notes=tuple(layout.notes),
    )


def _source_frame(frame_or_path: pd.DataFrame | str | Path) -> tuple[pd.DataFrame, str]:
    """The source table (read from its file when a path) and what to call it."""
    if isinstance(frame_or_path, pd.DataFrame):
        frame, source = frame_or_path, "DataFrame"
    else:
        frame, source = _read_table(frame_or_path), str(frame_or_path)
    if len(frame) == 0:
        raise ValueError(f"{source}: no rows to import")
    return frame.reset_index(drop=True), source


def import_wide(
    frame_or_path: pd.DataFrame | str | Path,
    *,
    grid: Grid | Mapping,
    options: WideOptions | None = None,
    **declarations,
) -> tuple[pd.DataFrame, ImportReport]:
    """Import a wide table (one column per wavelength; a DataFrame or a .csv / .csv.gz /
    .parquet file) to the canonical table on ``grid`` (a ``Grid`` or a mapping with start_nm,
    stop_nm, step_nm): ``(table, report)``, the canonical table and an ``ImportReport``.

    The declarations are a :class:`WideOptions` (``options``) or its fields as keywords
    (``library=...``, ``spectra=...``, ...; with ``options`` they replace its fields). The
    steps: check the declarations, :func:`detect_layout`, :func:`convert_spectra`,
    :func:`resample_spectra`, then the metadata and the source's extra columns.

    Missing carbon gives a null ``soc`` (an unlabelled row); no row is dropped. Source columns
    named ``stratum``, ``bulk_density_g_cm3`` or ``depth_cm`` (any case) are kept as the
    optional columns of ``schema.OPTIONAL_COLUMNS`` (``optional_values`` checks them).
    """
    options = (WideOptions(**declarations) if options is None
               else replace(options, **declarations))
    options.check()
    grid = _as_grid(grid)
    frame, source = _source_frame(frame_or_path)
    layout = detect_layout(frame, options)
    converted = convert_spectra(frame, layout, options)
    resampled = resample_spectra(converted.reflectance, layout.spectra, grid, options)
    layout.notes.extend(resampled.notes)
    meta, carbon_conversions, meta_notes = _metadata(frame, layout, options)
    layout.notes.extend(meta_notes)
    table = schema.make_table(meta, resampled.spectra, resampled.grid.wavelengths_nm)
    layout.notes.extend(_add_source_columns(table, frame, layout, converted.problems,
                                            options.percent_reflectance_above))
    conversions = [*converted.conversions, resampled.conversion, *carbon_conversions]
    report = _wide_report(source, table, frame, layout, options, resampled, converted.units,
                          conversions)
    return table, report


def import_geeves(
    path: str | Path, grid: Grid | Mapping | None = None, **options
) -> tuple[pd.DataFrame, ImportReport]:
    """Geeves et al. (1994) ``datsoilspc`` (Australia): reflectance 350-2500 nm, TotalCarbon %.

    TotalCarbon (g/100 g, dry combustion) is taken as SOC: the source documents the samples as
    containing no inorganic carbon. ``options`` go to ``import_wide``.
    """
    return import_wide(
        path,
        grid=Grid() if grid is None else grid,
        library="geeves",
        spectra="reflectance",
        carbon_column="TotalCarbon",
        carbon_units="percent",
        country="AU",
        notes=(
            "TotalCarbon (dry combustion) taken as SOC: documented as containing no inorganic "
            "carbon",
        ),
        **options,
    )


def import_nirsoil(
    path: str | Path, grid: Grid | Mapping | None = None, **options
) -> tuple[pd.DataFrame, ImportReport]:
    """NIRsoil, Chimiometrie 2006 (Belgium): absorbance 1100-2498 nm every 2 nm, Ciso %.

    The source has no visible range, so the default 400-2500 nm grid raises the missing-range
    error; declare a narrower grid (e.g. 1100-2450 nm every 10 nm). Ciso (g/100 g, 93 of 825
    missing, imported as unlabelled rows) is taken as SOC with a caveat: the source notes call
    it total carbon, determined by ISO 14235 (a sulfochromic oxidation method for organic
    carbon); any carbonate carbon it holds would be counted as SOC. ``options`` go to
    ``import_wide``.
    """
    return import_wide(
        path,
        grid=Grid() if grid is None else grid,
        library="nirsoil",
        spectra="absorbance",
        carbon_column="Ciso",
        carbon_units="percent",
        country="BE",
        notes=(
            "Ciso (ISO 14235; described by the source as total carbon) taken as SOC; carbonate "
            "carbon, if any was measured, would count as SOC",
        ),
        **options,
    )


#: OSSL's layer id (v1.2, v1.0): the key of its site, lab and spectra tables.
OSSL_LAYER_IDS = ("id.layer_uuid_txt", "id.layer_uuid_c")
#: OSSL site columns kept as table columns (source name -> table name).
OSSL_DEPTH_COLUMNS = {"layer.upper.depth_usda_cm": "depth_upper_cm",
                      "layer.lower.depth_usda_cm": "depth_lower_cm"}
#: OSSL coordinates (v1.2, v1.0): (latitude, longitude) in WGS84 decimal degrees.
OSSL_COORDINATES = (("latitude.point_wgs84_dd", "longitude.point_wgs84_dd"),
                    ("latitude_wgs84_dd", "longitude_wgs84_dd"))


def _ossl_table(source: pd.DataFrame | str | Path, what: str) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source, f"the {what} table"
    return _read_table(source), f"{what} table {source}"


def _layer_id(frame: pd.DataFrame, where: str) -> str:
    for name in OSSL_LAYER_IDS:
        if name in frame.columns:
            return name
    raise ValueError(f"{where} has no OSSL layer id column ({' or '.join(OSSL_LAYER_IDS)}); "
                     f"columns seen: {_preview(list(frame.columns))}")


def _one_row_per_layer(frame: pd.DataFrame, key: str, where: str) -> None:
    ids = frame[key]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise ValueError(f"{where}: row {row} has no {key}; every row needs its layer id")
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        first = ids[duplicated].iloc[0]
        rows = np.flatnonzero((ids == first).to_numpy())[:5].tolist()
        raise ValueError(f"{where}: layer id {first!r} appears in rows {rows} "
                         f"({int(ids[duplicated].nunique())} duplicated id(s)); the table must "
                         "hold one row per layer. Deduplicate it before the join")


def _join_lab(frame: pd.DataFrame, key: str, soillab, carbon_column: str | None,
              notes: list[str]) -> tuple[pd.DataFrame, str | None]:
    """The vis-NIR rows left-joined with the carbon column of OSSL's soil lab table (one row
    per layer); the carbon column used (``"auto"``: ``find_carbon_column``)."""
    lab, lab_where = _ossl_table(soillab, "soil lab")
    lab_key = _layer_id(lab, lab_where)
    _one_row_per_layer(lab, lab_key, lab_where)
    wanted = find_carbon_column(lab.columns) if carbon_column == CARBON_AUTO else carbon_column
    if wanted is None:
        return frame, carbon_column
    _column(lab, wanted, "carbon_column")
    lab = lab[[lab_key, wanted]].rename(columns={lab_key: key})
    frame = frame.drop(columns=[wanted], errors="ignore").merge(
        lab, on=key, how="left", validate="many_to_one")
    matched = int(frame[key].isin(lab[key]).sum())
    notes.append(f"joined {lab_where} on {key}: {matched} of {len(frame)} scans have a "
                 f"lab row; carbon from its column {wanted!r}")
    return frame, wanted


def _join_site(frame: pd.DataFrame, key: str, soilsite, notes: list[str]) -> pd.DataFrame:
    """The vis-NIR rows left-joined with the depths and coordinates of OSSL's soil site table
    (one row per layer)."""
    site_frame, site_where = _ossl_table(soilsite, "soil site")
    site_key = _layer_id(site_frame, site_where)
    _one_row_per_layer(site_frame, site_key, site_where)
    taken = [c for c in (*OSSL_DEPTH_COLUMNS, *(c for pair in OSSL_COORDINATES for c in pair))
             if c in site_frame.columns]
    site_frame = site_frame[[site_key, *taken]].rename(columns={site_key: key})
    frame = frame.drop(columns=taken, errors="ignore").merge(
        site_frame, on=key, how="left", validate="many_to_one")
    matched = int(frame[key].isin(site_frame[key]).sum())
    notes.append(f"joined {site_where} on {key}: {matched} of {len(frame)} scans have a site "
                 f"row; taken: {', '.join(taken) or 'nothing'}")
    return frame


def import_ossl(
    visnir: pd.DataFrame | str | Path,
    soillab: pd.DataFrame | str | Path | None = None,
    soilsite: pd.DataFrame | str | Path | None = None,
    *,
    grid: Grid | Mapping | None = None,
    library: str = "ossl",
    carbon_column: str | None = CARBON_AUTO,
    spectra: str = "auto",
    **options,
) -> tuple[pd.DataFrame, ImportReport]:
    """Import OSSL tables as published: the vis-NIR table (level 0 or 1, v1.2 ``_ref`` or v1.0
    ``_pcnt`` columns) joined with the soil lab and soil site tables on the layer id.

    The join is ``pandas.merge`` on ``id.layer_uuid_txt`` (v1.2; ``id.layer_uuid_c`` in v1.0):
    every vis-NIR row is kept (a left join; a scan whose layer has no lab row is an unlabelled
    row), and the lab and site tables must hold one row per layer (else ``ValueError`` naming
    the id). From the lab table only the carbon column is taken (``carbon_column``; ``"auto"``:
    the first of ``OSSL_CARBON_COLUMNS`` present, named in the report); from the site table the
    layer depths (kept as ``depth_upper_cm`` / ``depth_lower_cm``) and the WGS84 coordinates
    (as ``lat`` / ``lon``). Without ``soillab`` / ``soilsite`` the vis-NIR table is read alone
    (the level-1 ``ossl_all`` table already holds everything). ``options`` go to
    :func:`import_wide`.

    The maintained loader ``soilspecdata`` (0.2.3) was considered and is not used: it reads only
    the pre-joined whole-database CSV, which it downloads from the OSSL bucket itself, knows
    only ``_ref`` columns, and does not join the level-0 site, lab and spectra tables; the join
    here is two ``merge`` calls.
    """
    frame, where = _ossl_table(visnir, "vis-NIR")
    key = _layer_id(frame, where)
    notes = [f"OSSL: vis-NIR rows from {where}"]
    if soillab is not None:
        frame, carbon_column = _join_lab(frame, key, soillab, carbon_column, notes)
    if soilsite is not None:
        frame = _join_site(frame, key, soilsite, notes)
    keep = {c: name for c, name in OSSL_DEPTH_COLUMNS.items() if c in frame.columns}
    coordinates = next(((lat, lon) for lat, lon in OSSL_COORDINATES
                        if lat in frame.columns and lon in frame.columns), (None, None))
    for option, default in (("lat_column", coordinates[0]), ("lon_column", coordinates[1]),
                            ("id_column", key)):
        if options.get(option) is None:
            options[option] = default
    return import_wide(
        frame,
        grid=Grid() if grid is None else grid,
        library=library,
        spectra=spectra,
        carbon_column=carbon_column,
        keep_columns=keep,
        notes=tuple(notes) + tuple(options.pop("notes", ())),
        **options,
    )


def asd_files(source: str | Path | list) -> list[Path]:
    """The ``.asd`` files of ``source``: a file, a directory (its ``*.asd`` files, sorted by
    name) or a list of files; ``ValueError`` when there are none."""
    if isinstance(source, list | tuple):
        files = [Path(p) for p in source]
    else:
        source = Path(source)
        files = (sorted(p for p in source.iterdir() if p.suffix.lower() == ".asd")
                 if source.is_dir() else [source])
    if not files:
        raise ValueError(f"{source}: no .asd files in this directory")
    return files


def read_asd_files(files: list[Path]) -> tuple[pd.DataFrame, list[str]]:
    """The spectra of ``.asd`` files as a wide table (``sample_id`` = file name without
    ``.asd``, one ``nm_<wavelength>`` column per channel) and each file's kind: ``absorbance``,
    or the data type read as reflectance (``reflectance``, or ``raw`` divided by its white
    reference). ``ValueError`` for files of another wavelength scale or data type."""
    from localsoc.data.asd import read_asd

    rows, kinds = [], []
    first = None
    for path in files:
        spectrum = read_asd(path)
        if first is None:
            first = (path, spectrum.wavelengths_nm)
        elif not np.array_equal(spectrum.wavelengths_nm, first[1]):
            raise ValueError(
                f"{path}: its wavelengths ({spectrum.wavelengths_nm[0]:g}-"
                f"{spectrum.wavelengths_nm[-1]:g} nm, {spectrum.wavelengths_nm.size} channels) "
                f"differ from those of {first[0]}; import files of one instrument setup together")
        if spectrum.data_type == "absorbance":
            values, kind = spectrum.values, "absorbance"
        else:
            try:
                values, kind = spectrum.reflectance(), spectrum.data_type
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
        rows.append(values)
        kinds.append(kind)
    frame = pd.DataFrame(np.vstack(rows), columns=[f"nm_{w:g}" for w in first[1]])
    frame.insert(0, "sample_id", [path.stem for path in files])
    return frame, kinds


def _asd_units(kinds: list[str], spectra: str) -> str:
    """``absorbance`` or ``reflectance``: the one unit of all files, agreeing with ``spectra``
    (``"auto"`` or that unit)."""
    units = {"absorbance" if kind == "absorbance" else "reflectance" for kind in kinds}
    if len(units) > 1:
        raise ValueError("the .asd files mix absorbance and reflectance spectra; import them "
                         "separately")
    (units,) = units
    if spectra not in ("auto", units):
        raise ValueError(f"spectra={spectra!r} but the .asd files hold {units}; declare "
                         f"spectra={units!r} or 'auto'")
    return units


def _join_labels(frame: pd.DataFrame, labels, carbon_column: str | None,
                 notes: list[str]) -> tuple[pd.DataFrame, str | None]:
    """The ``.asd`` rows left-joined on ``sample_id`` with the carbon column of a labels table
    (one row per sample; ``"auto"``: ``find_carbon_column``); the carbon column used."""
    lab, where = _ossl_table(labels, "labels")
    if "sample_id" not in lab.columns:
        raise ValueError(f"{where} needs a 'sample_id' column (the .asd file names without "
                         f"'.asd'); columns seen: {_preview(list(lab.columns))}")
    _one_row_per_layer(lab.assign(sample_id=lab["sample_id"].astype(str)), "sample_id", where)
    wanted = find_carbon_column(lab.columns) if carbon_column == CARBON_AUTO else carbon_column
    if wanted is not None:
        lab = lab[["sample_id", wanted]].assign(sample_id=lab["sample_id"].astype(str))
        frame = frame.merge(lab, on="sample_id", how="left", validate="one_to_one")
        notes.append(f"carbon from {where}, column {wanted!r}: "
                     f"{int(frame['sample_id'].isin(lab['sample_id']).sum())} of "
                     f"{len(frame)} files labelled")
    return frame, wanted


def import_asd(
    source: str | Path | list,
    *,
    grid: Grid | Mapping | None = None,
    library: str,
    labels: pd.DataFrame | str | Path | None = None,
    carbon_column: str | None = CARBON_AUTO,
    spectra: str = "auto",
    **options,
) -> tuple[pd.DataFrame, ImportReport]:
    """Import ASD FieldSpec ``.asd`` files (``localsoc.data.asd``) to the canonical table: one
    row per file, its sample id the file name without ``.asd``.

    Reflectance files are read as they are, raw (DN) files divided by the white reference they
    hold, absorbance files as absorbance; other data types (radiance, ...) raise. All files must
    share one wavelength scale (:func:`read_asd_files`). ``labels`` (a table with ``sample_id``
    and the carbon column, ``carbon_column="auto"`` as in :func:`import_wide`) gives the carbon,
    joined on the sample id; without it every row is unlabelled. ``spectra`` must be ``"auto"``
    (the files say their units) or agree with the files. ``options`` go to :func:`import_wide`.
    """
    files = asd_files(source)
    frame, kinds = read_asd_files(files)
    units = _asd_units(kinds, spectra)
    notes = [f"ASD: {len(files)} .asd file(s), sample ids from the file names"]
    if labels is not None:
        frame, carbon_column = _join_labels(frame, labels, carbon_column, notes)
    elif carbon_column == CARBON_AUTO:
        carbon_column = None
    raw = kinds.count("raw")
    if raw:
        notes.append(f"{raw} raw (DN) .asd spectra divided by their white reference -> "
                     "reflectance")
    options["id_column"] = "sample_id"
    return import_wide(
        frame,
        grid=Grid() if grid is None else grid,
        library=library,
        spectra=units,
        carbon_column=carbon_column,
        notes=tuple(notes) + tuple(options.pop("notes", ())),
        **options,
    )
