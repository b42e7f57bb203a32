"""Deterministic simulator of a global soil spectral library (SSL) and three local sites.

The embedded default data of LocalSOC (``make run``). It reproduces the *problem* of Shen et
al. (2022): a model fitted on a large, diverse library is biased on a local site whose soils and
whose soil organic carbon (SOC) to spectrum relation differ from the library's average, while a
few dozen of the site's own samples give a small, unbiased model; library samples that resemble
the site (same mineralogy, same SOC relation) are what instance transfer can find. A tool for
demos and tests, **not** a claim about real soils: bands, coefficients and populations are
chosen to be physically sensible, not fitted to any measured spectrum or soil survey.

:func:`simulate_ssl` returns two canonical tables (:func:`localsoc.data.schema.make_table`):
``library``, the global SSL whose rows with ``country`` CN, SE and US are the three country SSLs
(sizes in the paper's proportions, :func:`country_sizes_for`), and ``sites``, the paper's three
local sites (:func:`default_sites`).

SOC follows a row of the paper's Table 1 per set (:data:`PAPER_SOC_STATISTICS`): a quantile
function piecewise linear in log SOC through the quartiles, with two upper-tail knots solved so
that the mean and s.d. match, sampled by stratified inversion (:func:`_stratified_draw`); the
library outside the countries is solved so that the whole library matches the global row.

Spectra are linear mixtures in absorbance ``A = log10(1 / R)`` of component spectra ``K_j``
(:func:`component_spectra`: Gaussian bands and visible edges of organic matter, clay minerals,
iron oxides, carbonates, gypsum, water, quartz). For sample i with SOC ``s_i`` (%), mineral
fractions ``x_ij``, water ``w_i``, humification ``h_i`` and char fraction ``chi_i``::

    g(s)     = s0 ln(1 + s / s0),  s0 = 10 %                    (darkening saturates)
    A_chem_i = g((1 - chi_i) s_i) [(1 - h_i) K_fresh + h_i K_humified] + 0.1 chi_i s_i K_char
               + sum_j x_ij K_j + w_i K_water + sum_k z_ik B_k
    A_i      = m_i A_chem_i + b_i + t_i (lambda - 1450 nm) / 1000 nm           (scatter)
    A_obs_i  = G A_i(lambda - delta) + O + T (lambda - 1450 nm) / 1000 nm
               + S1 [lambda >= 1000 nm] + S2 [lambda >= 1800 nm] + sigma(lambda) e_i  (instrument)
    R_i      = clip(10^(-A_obs_i), 1e-3, 1)

``B_k``: smooth background bumps with random weights (unresolved minor constituents); ``m_i,
b_i`` grow with coarseness, ``t_i`` a random tilt; each instrument (one per country portion of
the library, one per site) has its own gain, offset, slope, detector splice steps, wavelength
shift and noise (:class:`Instrument`). A sample's soil group (:data:`SOIL_GROUPS`) sets its
mineral composition (Dirichlet), water, organic matter and how they co-vary with SOC
(:func:`_compose`); each site is drawn from its own group, which also makes up part of its
country's library portion: the library samples that resemble the site.

Not modelled: radiative transfer (mixing is linear in absorbance), band shifts within a mineral,
spatial autocorrelation. Determinism: every random component draws from its own PCG64 stream
keyed by the seed and the component's name (:func:`_stream`), so the same arguments give
byte-identical tables, the sites do not change with the library size, and the library does not
change with the site configuration.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from localsoc.data.schema import Grid, make_table

__all__ = [
    "COMPONENTS",
    "COUNTRY_SIZES_PAPER",
    "DEFAULT_SEED",
    "GLOBAL_SIZE_PAPER",
    "MINERALS",
    "MIN_COUNTRY_SIZE",
    "PAPER_SOC_STATISTICS",
    "SOIL_GROUPS",
    "Instrument",
    "SiteConfig",
    "SocStatistics",
    "SoilGroup",
    "component_spectra",
    "country_sizes_for",
    "default_sites",
    "simulate_ssl",
    "summarise_soc",
]

DEFAULT_SEED = 42
GLOBAL_SIZE_PAPER = 50_422
COUNTRY_SIZES_PAPER: dict[str, int] = {"CN": 5183, "SE": 2319, "US": 4155}
MIN_COUNTRY_SIZE = 150
#: Fewest library rows outside the three country SSLs.
MIN_OTHER_SIZE = 100

SOC_SATURATION_PERCENT = 10.0
SOC_REFERENCE_PERCENT = 1.5
REFLECTANCE_FLOOR = 1e-3


# --------------------------------------------------------------------------------------------
# SOC statistics (the paper's Table 1) and distributions that follow them
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SocStatistics:
    """Summary of a SOC distribution (% by mass), as in the paper's Table 1."""

    count: int
    mean: float
    sd: float
    minimum: float
    q1: float
    median: float
    q3: float
    maximum: float

    def __post_init__(self) -> None:
        ordered = (self.minimum, self.q1, self.median, self.q3, self.maximum)
        if not (
            self.minimum > 0 and all(a < b for a, b in zip(ordered, ordered[1:], strict=False))
        ):
            raise ValueError(
                f"SocStatistics needs 0 < minimum < q1 < median < q3 < maximum; got {ordered}"
            )
        if not (self.minimum < self.mean < self.maximum and self.sd > 0 and self.count > 0):
            raise ValueError(
                f"SocStatistics needs minimum < mean < maximum, sd > 0 and count > 0; got mean="
                f"{self.mean}, sd={self.sd}, count={self.count}"
            )


def summarise_soc(values) -> SocStatistics:
    """The Table 1 statistics of SOC values (sample s.d., numpy's default linear quantiles)."""
    soc = np.asarray(values, dtype=np.float64)
    soc = soc[np.isfinite(soc)]
    if soc.size < 2:
        raise ValueError(f"summarise_soc needs at least two finite SOC values; got {soc.size}")
    q1, median, q3 = np.quantile(soc, [0.25, 0.5, 0.75])
    return SocStatistics(
        count=int(soc.size),
        mean=float(soc.mean()),
        sd=float(soc.std(ddof=1)),
        minimum=float(soc.min()),
        q1=float(q1),
        median=float(median),
        q3=float(q3),
        maximum=float(soc.max()),
    )


#: SOC (%) of the paper's data (Shen et al. 2022, Table 1), keyed by country code or site id.
PAPER_SOC_STATISTICS: dict[str, SocStatistics] = {
    "global": SocStatistics(50_422, 2.28, 3.56, 0.04, 0.55, 1.26, 2.50, 35.04),
    "CN": SocStatistics(5_183, 1.61, 1.85, 0.04, 0.78, 1.27, 1.94, 31.40),
    "SE": SocStatistics(2_319, 6.14, 6.99, 0.08, 2.08, 3.56, 6.49, 35.04),
    "US": SocStatistics(4_155, 1.20, 1.98, 0.04, 0.22, 0.52, 1.30, 24.16),
    "china_site": SocStatistics(135, 1.74, 0.58, 0.89, 1.41, 1.59, 2.05, 4.54),
    "sweden_site": SocStatistics(108, 2.25, 0.57, 1.31, 1.78, 2.23, 2.63, 4.47),
    "usa_site": SocStatistics(216, 1.62, 0.63, 0.78, 1.10, 1.43, 2.05, 3.74),
}

_TAIL_PROBABILITIES = (0.9, 0.99)
_KNOT_PROBABILITIES = np.array([0.0, 0.25, 0.5, 0.75, *_TAIL_PROBABILITIES, 1.0])


@dataclass(frozen=True)
class _LogLinearQuantile:
    """A quantile function that is piecewise linear in log value between knots."""

    probabilities: np.ndarray
    values: np.ndarray

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return np.exp(np.interp(u, self.probabilities, np.log(self.values)))

    def cdf(self, x: np.ndarray) -> np.ndarray:
        return np.interp(np.log(x), np.log(self.values), self.probabilities)

    def raw_moments(self) -> tuple[float, float]:
        """E[X] and E[X^2] (closed form: within a segment log X is uniform)."""
        dp = np.diff(self.probabilities)
        low, high = self.values[:-1], self.values[1:]
        log_ratio = np.log(high / low)
        flat = np.abs(log_ratio) < 1e-12
        safe = np.where(flat, 1.0, log_ratio)
        first = np.where(flat, low, (high - low) / safe)
        second = np.where(flat, low**2, (high**2 - low**2) / (2.0 * safe))
        return float(np.sum(dp * first)), float(np.sum(dp * second))


def _squash(theta: float) -> float:
    """A logistic kept inside [0.02, 0.98], so knots stay strictly increasing."""
    return 0.02 + 0.96 / (1.0 + np.exp(-theta))


def _fit_quantile(statistics: SocStatistics) -> _LogLinearQuantile:
    """The log-linear quantile function through the quartiles with the table's mean and s.d."""
    s = statistics

    def build(theta: np.ndarray) -> _LogLinearQuantile:
        upper_a = s.q3 + (s.maximum - s.q3) * _squash(theta[0])
        upper_b = upper_a + (s.maximum - upper_a) * _squash(theta[1])
        values = np.array([s.minimum, s.q1, s.median, s.q3, upper_a, upper_b, s.maximum])
        return _LogLinearQuantile(_KNOT_PROBABILITIES, values)

    def residuals(theta: np.ndarray) -> np.ndarray:
        first, second = build(theta).raw_moments()
        sd = np.sqrt(max(second - first**2, 0.0))
        return np.array([first / s.mean - 1.0, sd / s.sd - 1.0])

    solution = least_squares(residuals, x0=np.array([-2.0, -1.0]), method="lm")
    return build(solution.x)


def _fit_remainder_quantile(
    target: SocStatistics, parts: Sequence[tuple[float, _LogLinearQuantile]], weight: float
) -> _LogLinearQuantile:
    """Distribution of the rows outside ``parts`` so that the pooled rows follow ``target``.

    ``parts`` are (weight, quantile function) of the country SSLs; ``weight`` is the remainder's
    share. The remainder's Q1, median, Q3 and upper-tail knots are solved so that the pooled
    quartiles, mean and s.d. equal the target's (as closely as possible when the countries weigh
    too much for an exact match).
    """
    own = _fit_quantile(target)
    log_low, log_high = np.log(target.minimum), np.log(target.maximum)
    part_first = sum(w * q.raw_moments()[0] for w, q in parts)
    part_second = sum(w * q.raw_moments()[1] for w, q in parts)
    quartiles = np.array([target.q1, target.median, target.q3])

    def build(theta: np.ndarray) -> _LogLinearQuantile:
        gaps = np.exp(np.append(theta, 0.0))
        logs = log_low + (log_high - log_low) * np.cumsum(gaps / gaps.sum())
        values = np.exp(np.concatenate([[log_low], logs[:-1], [log_high]]))
        return _LogLinearQuantile(_KNOT_PROBABILITIES, values)

    def residuals(theta: np.ndarray) -> np.ndarray:
        remainder = build(theta)
        pooled_cdf = weight * remainder.cdf(quartiles) + sum(w * q.cdf(quartiles) for w, q in parts)
        first_r, second_r = remainder.raw_moments()
        first = weight * first_r + part_first
        second = weight * second_r + part_second
        sd = np.sqrt(max(second - first**2, 0.0))
        return np.concatenate(
            [
                (pooled_cdf - [0.25, 0.5, 0.75]) * 4.0,
                [first / target.mean - 1.0, sd / target.sd - 1.0],
            ]
        )

    start_logs = np.log(own.values)
    start_gaps = np.diff(start_logs)
    theta0 = np.log(start_gaps[:-1] / start_gaps[-1])
    solution = least_squares(residuals, x0=theta0, method="trf")
    return build(solution.x)


def _stratified_draw(
    quantile: _LogLinearQuantile, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``size`` values by stratified inversion: one uniform per probability stratum, shuffled."""
    u = (rng.permutation(size) + rng.random(size)) / size
    return quantile(u)


# --------------------------------------------------------------------------------------------
# Component spectra
# --------------------------------------------------------------------------------------------

#: Names of the absorbance components, in the order of :func:`component_spectra`'s rows.
COMPONENTS: tuple[str, ...] = (
    "organic_fresh",
    "organic_humified",
    "char",
    "kaolinite",
    "smectite",
    "illite",
    "chlorite",
    "gibbsite",
    "goethite",
    "hematite",
    "calcite",
    "gypsum",
    "quartz",
    "water",
)
#: Mineral components (mass fractions); quartz is the remainder and is not listed here.
MINERALS: tuple[str, ...] = (
    "kaolinite",
    "smectite",
    "illite",
    "chlorite",
    "gibbsite",
    "goethite",
    "hematite",
    "calcite",
    "gypsum",
)
_CLAY_MINERALS = ("kaolinite", "smectite", "illite", "chlorite")

# (centre nm, width nm (Gaussian s.d.), depth in absorbance per unit concentration)
_BANDS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "organic_fresh": (
        (675.0, 15.0, 0.008),
        (1450.0, 40.0, 0.006),
        (1730.0, 30.0, 0.020),
        (1760.0, 25.0, 0.010),
        (2100.0, 40.0, 0.012),
        (2270.0, 30.0, 0.018),
        (2310.0, 30.0, 0.020),
    ),
    "organic_humified": (
        (1730.0, 35.0, 0.008),
        (2270.0, 35.0, 0.006),
        (2310.0, 40.0, 0.010),
    ),
    "char": (),
    "kaolinite": (
        (1395.0, 9.0, 0.05),
        (1415.0, 9.0, 0.06),
        (1910.0, 25.0, 0.01),
        (2165.0, 11.0, 0.09),
        (2207.0, 11.0, 0.13),
        (2320.0, 20.0, 0.02),
        (2355.0, 20.0, 0.02),
    ),
    "smectite": (
        (1412.0, 16.0, 0.06),
        (1460.0, 30.0, 0.02),
        (1912.0, 25.0, 0.15),
        (2207.0, 18.0, 0.10),
    ),
    "illite": (
        (1410.0, 13.0, 0.04),
        (1915.0, 22.0, 0.04),
        (2205.0, 14.0, 0.08),
        (2345.0, 15.0, 0.04),
        (2445.0, 18.0, 0.03),
    ),
    "chlorite": (
        (1050.0, 150.0, 0.05),
        (2250.0, 15.0, 0.06),
        (2330.0, 15.0, 0.08),
    ),
    "gibbsite": (
        (1530.0, 20.0, 0.05),
        (2265.0, 15.0, 0.15),
    ),
    "goethite": (
        (430.0, 50.0, 1.2),
        (480.0, 30.0, 0.5),
        (650.0, 45.0, 0.35),
        (920.0, 90.0, 0.45),
    ),
    "hematite": (
        (450.0, 60.0, 0.9),
        (535.0, 40.0, 1.1),
        (870.0, 80.0, 0.5),
    ),
    "calcite": (
        (1875.0, 25.0, 0.04),
        (1995.0, 25.0, 0.05),
        (2160.0, 20.0, 0.03),
        (2340.0, 22.0, 0.25),
        (2530.0, 30.0, 0.30),
    ),
    "gypsum": (
        (1445.0, 15.0, 0.15),
        (1490.0, 15.0, 0.15),
        (1750.0, 12.0, 0.10),
        (1945.0, 20.0, 0.25),
        (2215.0, 20.0, 0.08),
        (2265.0, 20.0, 0.08),
    ),
    "quartz": (),
    "water": (
        (970.0, 40.0, 0.002),
        (1200.0, 45.0, 0.003),
        (1455.0, 45.0, 0.012),
        (1940.0, 48.0, 0.025),
        (2700.0, 200.0, 0.010),
    ),
}
# Broad continua: (amplitude, decay length nm) of a*exp(-(lambda - 400) / L), plus a flat level.
_CONTINUA: dict[str, tuple[tuple[float, float], ...]] = {
    "organic_fresh": ((0.10, 220.0), (0.02, 900.0)),
    "organic_humified": ((0.17, 420.0), (0.05, 1500.0)),
    "char": ((0.04, 1000.0),),
    "kaolinite": ((0.05, 100.0),),
    "smectite": ((0.04, 150.0),),
    "illite": ((0.05, 150.0),),
    "chlorite": ((0.05, 150.0),),
    "quartz": ((0.4, 150.0),),
}
_FLAT: dict[str, float] = {"char": 0.08, "quartz": 0.03}


def component_spectra(wavelengths_nm) -> np.ndarray:
    """Absorbance per unit concentration of every component (rows in :data:`COMPONENTS` order).

    Units of concentration: SOC-equivalent % for the organic end members (see the module
    docstring), mass fraction for minerals and quartz, % water for water.
    """
    wavelengths = np.asarray(wavelengths_nm, dtype=np.float64)
    out = np.zeros((len(COMPONENTS), wavelengths.size))
    for row, name in enumerate(COMPONENTS):
        spectrum = np.full(wavelengths.size, _FLAT.get(name, 0.0))
        for amplitude, decay in _CONTINUA.get(name, ()):
            spectrum += amplitude * np.exp(-(wavelengths - 400.0) / decay)
        for centre, width, depth in _BANDS[name]:
            spectrum += depth * np.exp(-0.5 * ((wavelengths - centre) / width) ** 2)
        out[row] = spectrum
    return out


# --------------------------------------------------------------------------------------------
# Soil groups, instruments, sites
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoilGroup:
    """Mineralogy and SOC-spectrum relation of one soil group (see the module docstring)."""

    name: str
    minerals: Mapping[str, float]
    mineral_precision: float = 40.0
    water_percent: float = 3.0
    water_per_soc: float = 0.4
    water_sd: float = 0.6
    humification: float = 0.6
    humification_sd: float = 0.12
    humification_per_log_soc: float = 0.1
    char_fraction: float = 0.05
    char_sd: float = 0.03
    clay_soc_elasticity: float = 0.3
    coarseness_sd: float = 0.08
    #: SOC range (%) outside which a library sample is never of this group (None: no limit).
    soc_window: tuple[float, float] | None = None
    #: Multiplies every within-group spread (composition, water, humification, scatter).
    spread: float = 1.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.minerals) - set(MINERALS))
        if unknown:
            raise ValueError(
                f"soil group {self.name!r}: unknown mineral(s) {unknown}; use {MINERALS}"
            )
        if sum(self.minerals.values()) >= 0.95:
            raise ValueError(
                f"soil group {self.name!r}: mineral fractions sum to {sum(self.minerals.values())};"
                " keep them below 0.95 (quartz is the remainder)"
            )


def _group(name: str, minerals: dict[str, float], **kwargs) -> SoilGroup:
    return SoilGroup(name=name, minerals=minerals, **kwargs)


#: The soil groups of the simulated world; the last three are the local sites' own groups.
SOIL_GROUPS: dict[str, SoilGroup] = {
    g.name: g
    for g in (
        _group(
            "ferralsol",
            {"kaolinite": 0.35, "gibbsite": 0.08, "hematite": 0.05, "goethite": 0.04},
            water_percent=2.0,
            humification=0.75,
            char_fraction=0.08,
        ),
        _group(
            "acrisol",
            {"kaolinite": 0.25, "illite": 0.05, "goethite": 0.04, "hematite": 0.015},
            water_percent=2.5,
            humification=0.7,
            char_fraction=0.06,
        ),
        _group(
            "luvisol",
            {"illite": 0.15, "smectite": 0.08, "kaolinite": 0.05, "goethite": 0.015},
            water_percent=3.0,
            humification=0.6,
        ),
        _group(
            "cambisol",
            {"illite": 0.12, "chlorite": 0.05, "kaolinite": 0.02, "goethite": 0.01},
            water_percent=3.5,
            humification=0.45,
            char_fraction=0.02,
        ),
        _group(
            "podzol",
            {"illite": 0.03, "kaolinite": 0.02, "goethite": 0.005},
            water_percent=2.5,
            water_per_soc=0.5,
            humification=0.35,
            char_fraction=0.02,
            clay_soc_elasticity=0.1,
        ),
        _group(
            "chernozem",
            {"smectite": 0.15, "illite": 0.10, "calcite": 0.04, "goethite": 0.01},
            water_percent=3.5,
            humification=0.85,
            char_fraction=0.1,
        ),
        _group(
            "vertisol",
            {"smectite": 0.35, "calcite": 0.03, "goethite": 0.01},
            water_percent=5.5,
            humification=0.75,
            char_fraction=0.06,
        ),
        _group(
            "calcisol",
            {"calcite": 0.2, "illite": 0.08, "smectite": 0.05, "gypsum": 0.02, "goethite": 0.008},
            water_percent=1.5,
            humification=0.5,
            clay_soc_elasticity=0.2,
        ),
        _group(
            "histosol",
            {"illite": 0.03, "kaolinite": 0.01, "goethite": 0.003},
            mineral_precision=15.0,
            water_percent=6.0,
            water_per_soc=0.25,
            water_sd=1.5,
            humification=0.35,
            humification_sd=0.2,
            char_fraction=0.02,
            clay_soc_elasticity=0.0,
        ),
        # The local sites' groups (also present in their country's library portion), 1.5 times
        # as variable as a typical group (spread=1.5). China: kaolinitic red clay rich
        # in iron oxides, little water, well humified organic matter a quarter of it char, SOC
        # slightly falling with clay. Sweden: illite / chlorite till, fresher organic matter
        # (steeper visible slope, stronger C-H features per unit SOC). USA: smectitic claypan,
        # much interlayer water, SOC falling clearly as clay rises.
        _group(
            "acrisol_red_clay",
            {
                "kaolinite": 0.32,
                "illite": 0.04,
                "gibbsite": 0.03,
                "goethite": 0.04,
                "hematite": 0.025,
            },
            water_percent=1.8,
            water_per_soc=0.1,
            water_sd=0.3,
            humification=0.9,
            humification_sd=0.05,
            humification_per_log_soc=0.0,
            char_fraction=0.25,
            char_sd=0.04,
            clay_soc_elasticity=-0.2,
            soc_window=(0.8, 5.0),
            spread=1.5,
        ),
        _group(
            "cambisol_till",
            {
                "illite": 0.16,
                "chlorite": 0.06,
                "smectite": 0.04,
                "kaolinite": 0.02,
                "goethite": 0.012,
            },
            water_percent=4.0,
            water_per_soc=0.6,
            water_sd=0.4,
            humification=0.45,
            humification_sd=0.06,
            humification_per_log_soc=0.0,
            char_fraction=0.0,
            char_sd=0.005,
            clay_soc_elasticity=0.1,
            soc_window=(1.2, 4.9),
            spread=1.5,
        ),
        _group(
            "planosol_claypan",
            {"smectite": 0.25, "illite": 0.07, "kaolinite": 0.03, "goethite": 0.015},
            water_percent=4.0,
            water_per_soc=0.2,
            water_sd=0.4,
            humification=0.6,
            humification_sd=0.06,
            humification_per_log_soc=0.0,
            char_fraction=0.05,
            char_sd=0.02,
            clay_soc_elasticity=-0.5,
            soc_window=(0.7, 4.1),
            spread=1.5,
        ),
    )
}


@dataclass(frozen=True)
class Instrument:
    """Per-instrument effects, applied in absorbance (see the module docstring)."""

    name: str
    gain: float = 1.0
    offset: float = 0.0
    slope_per_1000_nm: float = 0.0
    shift_nm: float = 0.0
    noise: float = 0.002
    splice_steps: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if not (self.gain > 0 and self.noise >= 0 and abs(self.shift_nm) < 50):
            raise ValueError(
                f"instrument {self.name!r} needs gain > 0, noise >= 0 and |shift_nm| < 50; got "
                f"gain={self.gain}, noise={self.noise}, shift_nm={self.shift_nm}"
            )


@dataclass(frozen=True)
class SiteConfig:
    """One local site: where it is, its soils, its SOC target and its instrument."""

    site_id: str
    country: str
    soc: SocStatistics
    group: SoilGroup
    instrument: Instrument
    latitude: float
    longitude: float
    extent_km: float
    #: Multiplies the group's spreads (composition, water, humification, scatter).
    spread: float = 1.0

    def __post_init__(self) -> None:
        if not (
            self.extent_km > 0
            and self.spread > 0
            and -90 <= self.latitude <= 90
            and -180 <= self.longitude <= 180
        ):
            raise ValueError(
                f"site {self.site_id!r} needs extent_km > 0, spread > 0 and coordinates in range; "
                f"got extent_km={self.extent_km}, spread={self.spread}, "
                f"lat/lon=({self.latitude}, {self.longitude})"
            )

    @property
    def size(self) -> int:
        return self.soc.count


def default_sites() -> tuple[SiteConfig, ...]:
    """The three local sites of the paper (sizes and SOC from its Table 1)."""
    return (
        SiteConfig(
            site_id="china_site",
            country="CN",
            soc=PAPER_SOC_STATISTICS["china_site"],
            group=SOIL_GROUPS["acrisol_red_clay"],
            instrument=Instrument(
                "china_site_lab",
                gain=0.97,
                offset=0.02,
                slope_per_1000_nm=0.01,
                shift_nm=1.0,
                noise=0.0025,
                splice_steps=(0.002, -0.002),
            ),
            latitude=28.2,
            longitude=116.9,
            extent_km=12.8,
        ),
        SiteConfig(
            site_id="sweden_site",
            country="SE",
            soc=PAPER_SOC_STATISTICS["sweden_site"],
            group=SOIL_GROUPS["cambisol_till"],
            instrument=Instrument(
                "sweden_site_lab",
                gain=1.04,
                offset=-0.015,
                slope_per_1000_nm=-0.01,
                shift_nm=-0.8,
                noise=0.002,
                splice_steps=(-0.002, 0.003),
            ),
            latitude=59.85,
            longitude=17.65,
            extent_km=0.9,
        ),
        SiteConfig(
            site_id="usa_site",
            country="US",
            soc=PAPER_SOC_STATISTICS["usa_site"],
            group=SOIL_GROUPS["planosol_claypan"],
            instrument=Instrument(
                "usa_site_lab",
                gain=1.02,
                offset=0.01,
                slope_per_1000_nm=0.015,
                shift_nm=0.6,
                noise=0.003,
                splice_steps=(0.003, 0.001),
            ),
            latitude=39.23,
            longitude=-92.12,
            extent_km=0.32,
        ),
    )


@dataclass(frozen=True)
class _Country:
    code: str
    latitude: float
    longitude: float
    climate: str
    group_weights: Mapping[str, float] = field(default_factory=dict)


_CLIMATE_GROUPS: dict[str, dict[str, float]] = {
    "tropical": {
        "ferralsol": 0.45,
        "acrisol": 0.3,
        "vertisol": 0.1,
        "luvisol": 0.05,
        "calcisol": 0.05,
        "podzol": 0.05,
    },
    "arid": {
        "calcisol": 0.5,
        "luvisol": 0.15,
        "vertisol": 0.1,
        "chernozem": 0.1,
        "cambisol": 0.05,
        "podzol": 0.05,
        "ferralsol": 0.05,
    },
    "subtropical": {
        "acrisol": 0.32,
        "luvisol": 0.2,
        "vertisol": 0.15,
        "ferralsol": 0.1,
        "calcisol": 0.1,
        "chernozem": 0.1,
        "acrisol_red_clay": 0.03,
    },
    "temperate": {
        "luvisol": 0.33,
        "cambisol": 0.2,
        "chernozem": 0.15,
        "podzol": 0.1,
        "acrisol": 0.1,
        "vertisol": 0.05,
        "calcisol": 0.05,
        "planosol_claypan": 0.02,
    },
    "boreal": {
        "cambisol": 0.38,
        "podzol": 0.35,
        "luvisol": 0.2,
        "chernozem": 0.05,
        "cambisol_till": 0.02,
    },
}

_STUDY_COUNTRIES: dict[str, _Country] = {
    "CN": _Country(
        "CN",
        33.0,
        110.0,
        "subtropical",
        {
            "acrisol": 0.2,
            "acrisol_red_clay": 0.3,
            "luvisol": 0.15,
            "calcisol": 0.15,
            "chernozem": 0.1,
            "cambisol": 0.1,
            "ferralsol": 0.05,
            "vertisol": 0.05,
        },
    ),
    "SE": _Country(
        "SE",
        61.0,
        15.5,
        "boreal",
        {"cambisol": 0.3, "cambisol_till": 0.35, "podzol": 0.3, "luvisol": 0.15},
    ),
    "US": _Country(
        "US",
        39.0,
        -97.0,
        "temperate",
        {
            "luvisol": 0.25,
            "planosol_claypan": 0.4,
            "chernozem": 0.15,
            "vertisol": 0.1,
            "calcisol": 0.1,
            "acrisol": 0.1,
            "podzol": 0.05,
            "cambisol": 0.05,
        },
    ),
}

# Other contributors to the global library: code, approximate centre, climate class.
_OTHER_COUNTRIES: tuple[tuple[str, float, float, str], ...] = (
    ("AU", -25.0, 134.0, "arid"),
    ("BR", -10.0, -52.0, "tropical"),
    ("KE", 0.5, 38.0, "tropical"),
    ("NG", 9.0, 8.0, "tropical"),
    ("ET", 9.0, 39.0, "tropical"),
    ("IN", 22.0, 79.0, "subtropical"),
    ("ID", -2.0, 118.0, "tropical"),
    ("DE", 51.0, 10.0, "temperate"),
    ("FR", 46.0, 2.0, "temperate"),
    ("ES", 40.0, -4.0, "arid"),
    ("IT", 42.8, 12.5, "temperate"),
    ("GB", 54.0, -2.0, "temperate"),
    ("PL", 52.0, 19.0, "temperate"),
    ("RU", 58.0, 50.0, "boreal"),
    ("CA", 53.0, -105.0, "boreal"),
    ("MX", 23.0, -102.0, "arid"),
    ("AR", -34.0, -64.0, "temperate"),
    ("CL", -33.0, -71.0, "arid"),
    ("ZA", -29.0, 25.0, "arid"),
    ("TZ", -6.0, 35.0, "tropical"),
    ("MA", 32.0, -6.0, "arid"),
    ("EG", 27.0, 30.0, "arid"),
    ("IR", 32.0, 53.0, "arid"),
    ("TR", 39.0, 35.0, "arid"),
    ("NZ", -41.0, 174.0, "temperate"),
    ("PH", 12.0, 122.0, "tropical"),
    ("VN", 16.0, 107.0, "subtropical"),
    ("TH", 15.0, 101.0, "tropical"),
    ("MY", 4.0, 102.0, "tropical"),
    ("PE", -9.0, -75.0, "tropical"),
    ("CO", 4.0, -73.0, "tropical"),
    ("UA", 49.0, 32.0, "temperate"),
    ("KZ", 48.0, 68.0, "arid"),
    ("MN", 46.0, 104.0, "arid"),
    ("BE", 50.6, 4.6, "temperate"),
    ("NL", 52.2, 5.5, "temperate"),
    ("DK", 56.0, 10.0, "temperate"),
    ("NO", 61.0, 9.0, "boreal"),
    ("FI", 63.0, 26.0, "boreal"),
    ("GH", 8.0, -1.0, "tropical"),
    ("ML", 17.0, -4.0, "arid"),
    ("MZ", -18.0, 35.0, "tropical"),
    ("MG", -19.0, 47.0, "tropical"),
    ("NP", 28.0, 84.0, "subtropical"),
    ("BD", 24.0, 90.0, "subtropical"),
    ("PK", 30.0, 70.0, "arid"),
    ("JP", 36.0, 138.0, "subtropical"),
    ("KR", 36.0, 128.0, "subtropical"),
    ("HU", 47.0, 19.0, "temperate"),
    ("CZ", 49.8, 15.5, "temperate"),
)
_UNKNOWN_ORIGIN_SHARE = 0.05
_ORGANIC_SOC_MIDPOINT = 12.0
_ORGANIC_SOC_WIDTH = 1.5


# --------------------------------------------------------------------------------------------
# Random streams
# --------------------------------------------------------------------------------------------


def _stream(seed: int, name: str) -> np.random.Generator:
    """An independent PCG64 generator for one named component of the simulation."""
    key = zlib.crc32(name.encode("utf-8"))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(key,))))


# --------------------------------------------------------------------------------------------
# Samples: composition, spectra
# --------------------------------------------------------------------------------------------


def _group_table(groups: Sequence[SoilGroup]) -> dict[str, np.ndarray]:
    """Group parameters as arrays, one row per group (for per-sample indexing)."""
    means = np.array([[g.minerals.get(m, 0.0) for m in MINERALS] for g in groups])
    return {
        "mineral_means": means,
        "quartz_means": 1.0 - means.sum(axis=1),
        **{
            name: np.array([getattr(g, name) for g in groups], dtype=np.float64)
            for name in (
                "mineral_precision",
                "water_percent",
                "water_per_soc",
                "water_sd",
                "humification",
                "humification_sd",
                "humification_per_log_soc",
                "char_fraction",
                "char_sd",
                "clay_soc_elasticity",
                "coarseness_sd",
                "spread",
            )
        },
    }


def _compose(
    soc: np.ndarray,
    group_index: np.ndarray,
    groups: Sequence[SoilGroup],
    spread_factor: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concentrations (samples x COMPONENTS), coarseness and spread of each sample."""
    table = _group_table(groups)
    n = soc.size
    spread = table["spread"][group_index] * spread_factor
    log_soc = np.log(soc / SOC_REFERENCE_PERCENT)

    # Minerals: Dirichlet (by normalised gammas) whose clay shares scale with SOC^beta.
    means = np.column_stack([table["mineral_means"], table["quartz_means"]])[group_index]
    precision = table["mineral_precision"][group_index] / spread**2
    clay_columns = [MINERALS.index(m) for m in _CLAY_MINERALS]
    scale = np.ones_like(means)
    scale[:, clay_columns] = np.exp(table["clay_soc_elasticity"][group_index] * log_soc)[:, None]
    shape = np.maximum(means * scale * precision[:, None], 1e-3)
    gammas = rng.standard_gamma(shape)
    fractions = gammas / gammas.sum(axis=1, keepdims=True)
    minerals, quartz = fractions[:, :-1], fractions[:, -1]

    smectite = minerals[:, MINERALS.index("smectite")]
    water = (
        table["water_percent"][group_index]
        + table["water_per_soc"][group_index] * soc
        + 6.0 * smectite
        + spread * table["water_sd"][group_index] * rng.standard_normal(n)
    )
    water = np.maximum(water, 0.2)
    humification = np.clip(
        table["humification"][group_index]
        - table["humification_per_log_soc"][group_index] * log_soc
        + spread * table["humification_sd"][group_index] * rng.standard_normal(n),
        0.0,
        1.0,
    )
    char = np.clip(
        table["char_fraction"][group_index]
        + spread * table["char_sd"][group_index] * rng.standard_normal(n),
        0.0,
        0.6,
    )
    coarseness = np.clip(
        quartz + spread * table["coarseness_sd"][group_index] * rng.standard_normal(n), 0.0, 1.2
    )

    organic = SOC_SATURATION_PERCENT * np.log1p((1.0 - char) * soc / SOC_SATURATION_PERCENT)
    concentrations = np.empty((n, len(COMPONENTS)))
    concentrations[:, COMPONENTS.index("organic_fresh")] = organic * (1.0 - humification)
    concentrations[:, COMPONENTS.index("organic_humified")] = organic * humification
    concentrations[:, COMPONENTS.index("char")] = 0.1 * char * soc
    for column, mineral in enumerate(MINERALS):
        concentrations[:, COMPONENTS.index(mineral)] = minerals[:, column]
    concentrations[:, COMPONENTS.index("quartz")] = quartz
    concentrations[:, COMPONENTS.index("water")] = water
    return concentrations, coarseness, spread


#: Centres of the smooth background bands (unresolved minor constituents, texture).
_BACKGROUND_CENTRES_NM = np.linspace(400.0, 2500.0, 43)
_BACKGROUND_WIDTH_NM = 35.0
BACKGROUND_ABSORBANCE = 0.002


def _background_basis(wavelengths: np.ndarray) -> np.ndarray:
    return np.exp(
        -0.5
        * ((wavelengths[None, :] - _BACKGROUND_CENTRES_NM[:, None]) / _BACKGROUND_WIDTH_NM) ** 2
    )


def _spectra(
    concentrations: np.ndarray,
    coarseness: np.ndarray,
    instrument_index: np.ndarray,
    instruments: Sequence[Instrument],
    wavelengths: np.ndarray,
    spread: np.ndarray,
    rng_scatter: np.random.Generator,
    rng_noise: np.random.Generator,
) -> np.ndarray:
    """Reflectance (samples x bands): mixture, scatter, instrument effects and noise."""
    n = concentrations.shape[0]
    gain = np.exp(0.3 * (coarseness - 0.6) + spread * 0.05 * rng_scatter.standard_normal(n))
    baseline = np.maximum(
        0.12 + 0.15 * coarseness + spread * 0.04 * rng_scatter.standard_normal(n), 0.03
    )
    tilt = spread * 0.03 * rng_scatter.standard_normal(n)
    background_weights = BACKGROUND_ABSORBANCE * rng_scatter.standard_normal(
        (n, _BACKGROUND_CENTRES_NM.size)
    )
    noise = rng_noise.standard_normal((n, wavelengths.size))

    absorbance = np.empty((n, wavelengths.size))
    for index, instrument in enumerate(instruments):
        rows = np.flatnonzero(instrument_index == index)
        if rows.size == 0:
            continue
        seen = wavelengths - instrument.shift_nm  # band lambda records the soil at lambda - delta
        centred = (seen - 1450.0) / 1000.0
        chemistry = concentrations[rows] @ component_spectra(seen)
        chemistry += background_weights[rows] @ _background_basis(seen)
        sample = gain[rows, None] * chemistry + baseline[rows, None] + tilt[rows, None] * centred
        sigma = instrument.noise * (
            1.0
            + 2.5 * np.exp(-(wavelengths - 400.0) / 40.0)
            + 1.5 * np.exp((wavelengths - 2500.0) / 80.0)
        )
        steps = instrument.splice_steps[0] * (wavelengths >= 1000.0) + instrument.splice_steps[
            1
        ] * (wavelengths >= 1800.0)
        absorbance[rows] = (
            instrument.gain * sample
            + instrument.offset
            + instrument.slope_per_1000_nm * (wavelengths - 1450.0) / 1000.0
            + steps
            + sigma * noise[rows]
        )
    # R = 10^-A, in place (the paper-sized library is 85 MB per copy).
    np.multiply(absorbance, -np.log(10.0), out=absorbance)
    np.exp(absorbance, out=absorbance)
    return np.clip(absorbance, REFLECTANCE_FLOOR, 1.0, out=absorbance)


# --------------------------------------------------------------------------------------------
# Library and sites
# --------------------------------------------------------------------------------------------


def country_sizes_for(global_size: int) -> dict[str, int]:
    """Country SSL sizes for a global size: the paper's proportions, at least MIN_COUNTRY_SIZE."""
    return {
        code: max(MIN_COUNTRY_SIZE, int(round(global_size * size / GLOBAL_SIZE_PAPER)))
        for code, size in COUNTRY_SIZES_PAPER.items()
    }


def _random_instrument(name: str, rng: np.random.Generator) -> Instrument:
    return Instrument(
        name=name,
        gain=float(1.0 + 0.03 * rng.standard_normal()),
        offset=float(0.02 * rng.standard_normal()),
        slope_per_1000_nm=float(0.01 * rng.standard_normal()),
        shift_nm=float(rng.uniform(-1.5, 1.5)),
        noise=float(np.exp(rng.uniform(np.log(0.0012), np.log(0.004)))),
        splice_steps=(float(0.002 * rng.standard_normal()), float(0.002 * rng.standard_normal())),
    )


def _library_groups() -> list[SoilGroup]:
    return list(SOIL_GROUPS.values())


def _simulate_library(
    global_size: int, seed: int, wavelengths: np.ndarray, sizes: Mapping[str, int]
) -> pd.DataFrame:
    """The global library: SOC, country, soil group, composition, spectrum and place of each
    row, every part from its own named stream; rows shuffled, ids in the final order."""
    groups = _library_groups()
    soc = _library_soc(global_size, seed, sizes)
    layout = _stream(seed, "library/layout")  # its draws: countries, groups, then row order
    countries = _library_countries(sizes, [g.name for g in groups])
    instrument_rng = _stream(seed, "library/instruments")
    instruments = [
        _random_instrument(f"library_{c.code or 'unknown'}", instrument_rng) for c in countries
    ]
    country_index = _library_country_index(sizes, global_size - sum(sizes.values()), layout)
    group_index = _library_group_index(soc, countries, country_index, groups, layout)
    concentrations, coarseness, spread = _compose(
        soc, group_index, groups, spread_factor=1.0, rng=_stream(seed, "library/composition")
    )
    reflectance = _spectra(
        concentrations,
        coarseness,
        country_index,
        instruments,
        wavelengths,
        spread=spread,
        rng_scatter=_stream(seed, "library/scatter"),
        rng_noise=_stream(seed, "library/noise"),
    )
    lat, lon = _library_coordinates(countries, country_index, seed)

    # Rows in a shuffled order, as in a compiled library; ids follow the final order.
    order = layout.permutation(global_size)
    codes = np.array([c.code for c in countries], dtype=object)[country_index]
    country = pd.array(np.where(codes == "", None, codes)[order], dtype="string")
    width = max(6, len(str(global_size)))
    meta = pd.DataFrame(
        {
            "sample_id": [f"global-{i:0{width}d}" for i in range(1, global_size + 1)],
            "library": pd.array(["global"] * global_size, dtype="string"),
            "country": country,
            "lat": lat[order],
            "lon": lon[order],
            "soc": soc[order],
        }
    )
    return make_table(meta, reflectance[order], wavelengths)


def _library_soc(global_size: int, seed: int, sizes: Mapping[str, int]) -> np.ndarray:
    """SOC of the library rows, country portions first (in ``sizes`` order), then the rest:
    the country rows follow their own Table 1 rows, the rest is solved so that the pooled
    library follows the global row."""
    other_size = global_size - sum(sizes.values())
    country_quantiles = {code: _fit_quantile(PAPER_SOC_STATISTICS[code]) for code in sizes}
    parts = [(sizes[code] / global_size, country_quantiles[code]) for code in sizes]
    other_quantile = _fit_remainder_quantile(
        PAPER_SOC_STATISTICS["global"], parts, other_size / global_size
    )
    soc_parts = [
        _stratified_draw(country_quantiles[code], sizes[code], _stream(seed, f"library/soc/{code}"))
        for code in sizes
    ]
    soc_parts.append(
        _stratified_draw(other_quantile, other_size, _stream(seed, "library/soc/other"))
    )
    return np.concatenate(soc_parts)


def _library_countries(sizes: Mapping[str, int], group_names: Sequence[str]) -> list[_Country]:
    """The study countries (``sizes`` order), the other countries, then unknown origin (code
    ``""``, no place, every mineral group)."""
    countries: list[_Country] = [_STUDY_COUNTRIES[code] for code in sizes]
    countries += [
        _Country(code, lat, lon, climate, _CLIMATE_GROUPS[climate])
        for code, lat, lon, climate in _OTHER_COUNTRIES
    ]
    countries.append(
        _Country(
            "",
            np.nan,
            np.nan,
            "temperate",
            {name: 1.0 for name in group_names if name != "histosol"},
        )
    )
    return countries


def _library_country_index(
    sizes: Mapping[str, int], other_size: int, layout: np.random.Generator
) -> np.ndarray:
    """Each row's country (index into ``_library_countries``): the study countries' rows in
    order, then the others drawn from Dirichlet weights (a share of unknown origin)."""
    other_weights = layout.dirichlet(np.full(len(_OTHER_COUNTRIES), 1.5))
    other_probabilities = np.append(
        other_weights * (1.0 - _UNKNOWN_ORIGIN_SHARE), _UNKNOWN_ORIGIN_SHARE
    )
    other_country = len(sizes) + layout.choice(
        len(other_probabilities), size=other_size, p=other_probabilities
    )
    return np.concatenate(
        [np.full(sizes[code], i) for i, code in enumerate(sizes)] + [other_country]
    )


def _library_group_index(
    soc: np.ndarray,
    countries: Sequence[_Country],
    country_index: np.ndarray,
    groups: Sequence[SoilGroup],
    layout: np.random.Generator,
) -> np.ndarray:
    """Each row's soil group: organic (histosol) with a probability rising with SOC, else one
    from its country's mixture (groups with a SOC window only inside it)."""
    group_names = [g.name for g in groups]
    weights = np.array(
        [[c.group_weights.get(name, 0.0) for name in group_names] for c in countries]
    )
    weights = weights[country_index]
    for column, group in enumerate(groups):
        if group.soc_window is not None:
            low, high = group.soc_window
            weights[:, column] *= (soc >= low) & (soc <= high)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    cumulative = np.cumsum(weights, axis=1)
    draw = layout.random(soc.size)
    mineral_group = np.minimum((draw[:, None] > cumulative).sum(axis=1), len(groups) - 1)
    organic_probability = 1.0 / (1.0 + np.exp(-(soc - _ORGANIC_SOC_MIDPOINT) / _ORGANIC_SOC_WIDTH))
    organic = layout.random(soc.size) < organic_probability
    return np.where(organic, group_names.index("histosol"), mineral_group)


def _library_coordinates(
    countries: Sequence[_Country], country_index: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) near each row's country centre; unknown origin has none (NaN)."""
    n = country_index.size
    centre_lat = np.array([c.latitude for c in countries])[country_index]
    centre_lon = np.array([c.longitude for c in countries])[country_index]
    coordinates = _stream(seed, "library/coordinates")
    lat = np.clip(centre_lat + 3.0 * coordinates.standard_normal(n), -89.0, 89.0)
    lon = (centre_lon + 4.0 * coordinates.standard_normal(n) + 180.0) % 360.0 - 180.0
    return lat, lon


def _simulate_site(site: SiteConfig, seed: int, wavelengths: np.ndarray) -> pd.DataFrame:
    n = site.size
    soc = _stratified_draw(_fit_quantile(site.soc), n, _stream(seed, f"site/{site.site_id}/soc"))
    concentrations, coarseness, spread = _compose(
        soc,
        np.zeros(n, dtype=np.intp),
        [site.group],
        spread_factor=site.spread,
        rng=_stream(seed, f"site/{site.site_id}/composition"),
    )
    reflectance = _spectra(
        concentrations,
        coarseness,
        np.zeros(n, dtype=np.intp),
        [site.instrument],
        wavelengths,
        spread=spread,
        rng_scatter=_stream(seed, f"site/{site.site_id}/scatter"),
        rng_noise=_stream(seed, f"site/{site.site_id}/noise"),
    )
    places = _stream(seed, f"site/{site.site_id}/coordinates")
    half_km = site.extent_km / 2.0
    north_km = places.uniform(-half_km, half_km, n)
    east_km = places.uniform(-half_km, half_km, n)
    lat = site.latitude + north_km / 111.32
    lon = site.longitude + east_km / (111.32 * np.cos(np.radians(site.latitude)))
    meta = pd.DataFrame(
        {
            "sample_id": [f"{site.site_id}-{i:04d}" for i in range(1, n + 1)],
            "country": pd.array([site.country] * n, dtype="string"),
            "site": pd.array([site.site_id] * n, dtype="string"),
            "lat": lat,
            "lon": lon,
            "soc": soc,
        }
    )
    return make_table(meta, reflectance, wavelengths)


def _checked_sizes(
    global_size: int, seed: int, country_sizes: Mapping[str, int] | None
) -> dict[str, int]:
    """Rows per country SSL (in the study's country order), after checking the seed and the
    sizes; ``ValueError`` naming the bad argument."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if isinstance(global_size, bool) or not isinstance(global_size, int | np.integer):
        raise ValueError(f"global_size must be an integer; got {global_size!r}")
    sizes = dict(country_sizes_for(int(global_size)) if country_sizes is None else country_sizes)
    unknown = sorted(set(sizes) - set(_STUDY_COUNTRIES))
    if unknown:
        raise ValueError(
            f"country_sizes: unknown country code(s) {unknown}; use keys among {sorted(_STUDY_COUNTRIES)}"
        )
    if any(int(v) < 2 for v in sizes.values()):
        raise ValueError(f"country_sizes must all be at least 2; got {sizes}")
    sizes = {code: int(sizes[code]) for code in _STUDY_COUNTRIES if code in sizes}
    if global_size < sum(sizes.values()) + MIN_OTHER_SIZE:
        raise ValueError(
            f"global_size={global_size} is too small for the country SSLs {sizes}: it needs at "
            f"least {sum(sizes.values()) + MIN_OTHER_SIZE} rows (the countries plus "
            f"{MIN_OTHER_SIZE} others); raise global_size or pass smaller country_sizes"
        )
    return sizes


def simulate_ssl(
    global_size: int = GLOBAL_SIZE_PAPER,
    seed: int = DEFAULT_SEED,
    grid: Grid | None = None,
    sites: Sequence[SiteConfig] | None = None,
    country_sizes: Mapping[str, int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate the global SSL (with its CN / SE / US subsets) and the local sites.

    Parameters
    ----------
    global_size
        Rows of the global library (the paper: 50,422). The country SSLs scale with it
        (:func:`country_sizes_for`) unless ``country_sizes`` is given.
    seed
        Non-negative integer; the same arguments give byte-identical tables.
    grid
        Wavelength grid (default 400-2500 nm every 10 nm).
    sites
        Local site configurations (default :func:`default_sites`: the paper's three sites).
    country_sizes
        Rows per country SSL, keys among CN, SE, US (default: scaled from the paper's).

    Returns
    -------
    (library, sites)
        Two canonical SSL tables (see the module docstring).
    """
    sizes = _checked_sizes(global_size, seed, country_sizes)
    grid = Grid() if grid is None else grid
    wavelengths = grid.wavelengths_nm
    site_configs = tuple(default_sites() if sites is None else sites)
    ids = [s.site_id for s in site_configs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"sites: site ids must be unique; got {ids}")

    library = _simulate_library(int(global_size), int(seed), wavelengths, sizes)
    site_tables = [_simulate_site(site, int(seed), wavelengths) for site in site_configs]
    if site_tables:
        site_table = pd.concat(site_tables, ignore_index=True)
    else:
        site_table = make_table(
            pd.DataFrame({"sample_id": []}), np.empty((0, wavelengths.size)), wavelengths
        )
    return library, site_table
