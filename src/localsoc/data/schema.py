"""The canonical soil spectral library (SSL) table.

One row per sample. Metadata columns come first, then one float column per wavelength of the
project grid, named ``nm_<wavelength>`` (``nm_400``, ``nm_410``, ...). Spectra are reflectance in
(0, 1]; ``soc`` is soil organic carbon in % by mass (g/100 g), null for unlabelled spectra.

An importer that finds a row unusable in a way only the source shows (spectra in other units
than the rest of the file) keeps the row and says why in the optional column
``import_problem`` (``IMPORT_PROBLEM``; null for good rows); validation quarantines those rows
with that reason and drops the column from the rows it keeps.

Optional columns (``OPTIONAL_COLUMNS``): ``stratum``, ``bulk_density_g_cm3`` and ``depth_cm``,
carried by the importers when the source has columns of those names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

META_COLUMNS: tuple[str, ...] = ("sample_id", "library", "country", "site", "lat", "lon", "soc")
META_DTYPES: dict[str, str] = {
    "sample_id": "string",
    "library": "string",
    "country": "string",
    "site": "string",
    "lat": "float64",
    "lon": "float64",
    "soc": "float64",
}
IMPORT_PROBLEM = "import_problem"
#: Optional per-sample columns a site table may carry (kept after the metadata, before the
#: bands): the field stratum a sample belongs to, the soil's dry bulk density (g/cm3) and the
#: thickness of the sampled layer (cm). The field summary (``localsoc.field``) reads them: one
#: summary per stratum, and the SOC stock when bulk density and depth are given.
OPTIONAL_COLUMNS: dict[str, str] = {
    "stratum": "string",
    "bulk_density_g_cm3": "float64",
    "depth_cm": "float64",
}
#: The accepted range (low exclusive, high inclusive) of each numeric optional column: a dry
#: bulk density in g/cm3 (peat about 0.1, compacted mineral soil up to about 2.2), a layer
#: thickness in cm.
OPTIONAL_RANGES: dict[str, tuple[float, float]] = {
    "bulk_density_g_cm3": (0.01, 3.0),
    "depth_cm": (0.0, 1000.0),
}
BAND_PREFIX = "nm_"
_BAND_RE = re.compile(r"^nm_(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Grid:
    """A regular wavelength grid in nm, both ends included (default: 400-2500 nm every 10 nm)."""

    start_nm: float = 400.0
    stop_nm: float = 2500.0
    step_nm: float = 10.0

    def __post_init__(self) -> None:
        if not (self.step_nm > 0 and self.stop_nm > self.start_nm):
            raise ValueError(
                f"grid must have step_nm > 0 and stop_nm > start_nm; got {self.start_nm}-"
                f"{self.stop_nm} nm every {self.step_nm} nm"
            )

    @classmethod
    def from_params(cls, params: dict) -> Grid:
        return cls(float(params["start_nm"]), float(params["stop_nm"]), float(params["step_nm"]))

    @property
    def wavelengths_nm(self) -> np.ndarray:
        n = int(round((self.stop_nm - self.start_nm) / self.step_nm)) + 1
        return self.start_nm + self.step_nm * np.arange(n, dtype=np.float64)

    @property
    def columns(self) -> list[str]:
        return band_names(self.wavelengths_nm)

    def __len__(self) -> int:
        return len(self.wavelengths_nm)


def band_name(wavelength_nm: float) -> str:
    """Column name of one band: ``nm_400`` (integers without a decimal point)."""
    value = float(wavelength_nm)
    text = str(int(value)) if value.is_integer() else f"{value:g}"
    return f"{BAND_PREFIX}{text}"


def band_names(wavelengths_nm) -> list[str]:
    return [band_name(w) for w in wavelengths_nm]


def band_columns(frame: pd.DataFrame) -> list[str]:
    """The band columns of a canonical table, in increasing wavelength."""
    bands = [c for c in frame.columns if _BAND_RE.match(str(c))]
    return sorted(bands, key=band_wavelength)


def band_wavelength(column: str) -> float:
    match = _BAND_RE.match(str(column))
    if match is None:
        raise ValueError(f"{column!r} is not a band column (expected 'nm_<wavelength>')")
    return float(match.group(1))


def wavelengths_of(frame: pd.DataFrame) -> np.ndarray:
    return np.array([band_wavelength(c) for c in band_columns(frame)], dtype=np.float64)


def spectra_of(frame: pd.DataFrame) -> np.ndarray:
    """The spectra as a C-contiguous float64 array (rows x bands)."""
    return np.ascontiguousarray(frame[band_columns(frame)].to_numpy(dtype=np.float64))


def make_table(meta: pd.DataFrame, spectra: np.ndarray, wavelengths_nm) -> pd.DataFrame:
    """Assemble a canonical table from metadata (any subset of META_COLUMNS) and a spectra matrix."""
    spectra = np.asarray(spectra, dtype=np.float64)
    wavelengths_nm = np.asarray(wavelengths_nm, dtype=np.float64)
    if spectra.ndim != 2 or spectra.shape != (len(meta), len(wavelengths_nm)):
        raise ValueError(
            f"spectra must be {len(meta)} rows x {len(wavelengths_nm)} bands; got {spectra.shape}"
        )
    columns = {}
    for name in META_COLUMNS:
        if name in meta.columns:
            columns[name] = meta[name].to_numpy()
        else:
            columns[name] = pd.array([None] * len(meta), dtype=META_DTYPES[name])
    head = pd.DataFrame(columns, index=pd.RangeIndex(len(meta)))
    head = head.astype(META_DTYPES)
    bands = pd.DataFrame(spectra, columns=band_names(wavelengths_nm), index=head.index)
    return pd.concat([head, bands], axis=1)


def check_table(frame: pd.DataFrame, name: str = "table") -> None:
    """Structural check of a canonical table: required columns and at least one band.

    Row-level content (ranges, finiteness, duplicates) is the validation pipeline's job.
    """
    missing = [c for c in META_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {missing}; a canonical SSL table needs {list(META_COLUMNS)} "
            f"and one '{BAND_PREFIX}<wavelength>' column per band"
        )
    if not band_columns(frame):
        raise ValueError(f"{name}: no band columns named '{BAND_PREFIX}<wavelength>' were found")


def with_meta_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with metadata columns in their canonical dtypes."""
    present = {k: v for k, v in META_DTYPES.items() if k in frame.columns}
    return frame.astype(present)
