"""The change in a field's mean SOC (and stock) between a baseline and a later campaign of
scans, with an interval that includes the model's error, its minimum detectable change, and
the spectral checks that keep a drifted campaign from being differenced silently.

MRV credits a change, not a level. Each campaign's mean is ``localsoc.field``'s difference
estimator; what the two campaigns share decides the variance of their difference:

- one served model for both: its mean error over the field (the bias the calibration residuals
  estimate) is the same in both means and cancels; the errors of the individual samples do not
  (they are in the spread of each campaign's estimates, or, for ``target="samples"``, in the
  samples' own errors);
- two models (the site was recalibrated between the campaigns): each mean carries its own
  model's bias correction, estimated from its own residuals, and the uncertainty of both
  corrections stays in the difference;
- paired designs (the later campaign revisits the baseline's locations, matched by sample id or
  coordinates: ``pair_locations``): the difference of the two estimates at each location, whose
  spread is smaller than either campaign's when locations keep their rank (Student's paired t);
  independent designs: the two campaigns' spreads add (Welch).

The estimator (``METHOD``; ``change_interval`` for one group, ``change_summary`` for a field
and its strata). With, for campaign c in {b (baseline), l (later)}, ``yhat_c`` its N_c
estimates, ``w_c`` the weight of each sample (1 for SOC %; bulk density g/cm3 x layer depth cm
for a stock in t C/ha, as in ``localsoc.field``), ``e_c`` the n_c signed residuals
(observed - estimated) of the model that made ``yhat_c`` (``interval.calibration_residuals`` of
its bundle: the site's random validation samples), s^2 sample variances (ddof 1) and f = 0 for
a field larger than its samples (``target="field"``) or 1 when the samples are the population
(``target="samples"``):

    T_c = mean(w_c yhat_c) + mean(w_c) mean(e_c)       (each campaign's difference estimator)
    D   = T_l - T_b                                   (the change)

    sampling, independent:  A = (1 - f) [s^2(w_b yhat_b) / N_b + s^2(w_l yhat_l) / N_l]
                             components with N_b - 1 and N_l - 1 degrees of freedom
    sampling, paired:       A = (1 - f) s^2(w_l yhat_l - w_b yhat_b) / N,   N - 1 df
                             (N matched locations, both campaigns cut to them)
    model, one model:       B = s_e^2 [(mean(w_l) - mean(w_b))^2 / n
                                       + f (mean(w_b^2) / N_b + mean(w_l^2) / N_l)],   n - 1 df
                             (e_b = e_l = e: mean(e) cancels for SOC %, and for a stock up to
                             the difference of the mean weights)
    model, two models:      B = sum over c of s_{e_c}^2 (mean(w_c)^2 / n_c + f mean(w_c^2) / N_c),
                             components with n_c - 1 df

    D -/+ t_{(1 + level) / 2, nu} sqrt(A + B),   nu = (sum V_k)^2 / sum (V_k^2 / nu_k)

over the variance components V_k above (Welch-Satterthwaite: Satterthwaite 1946, Biometrics
Bulletin 2(6):110-114; Welch 1947, Biometrika 34:28-35). It is the difference of two difference
estimators of model-assisted survey sampling (Särndal, Swensson & Wretman 1992, *Model Assisted
Survey Sampling*, Springer, section 6.3; the mean form of prediction-powered inference,
Angelopoulos et al. 2023, Science 382(6671):669-674), for repeated sampling of one population
(Cochran 1977, *Sampling Techniques*, 3rd ed., Wiley, chapter 12: paired samples on two
occasions) as soil-carbon audits use it (de Gruijter et al. 2016, Geoderma 265:120-130). The
interval is not clipped: a change may be negative.

The minimum detectable change (``detectable_change``): the smallest true change delta that a
one-sided level-``alpha`` t test of "no change" (D / sqrt(A + B) > t_{1 - alpha, nu}) detects
with probability ``power``, with the t statistic noncentral (noncentrality delta / sqrt(A + B),
nu degrees of freedom; Cohen 1988, *Statistical Power Analysis for the Behavioral Sciences*,
2nd ed., chapter 2): 1 - F_{t'}(t_{1 - alpha, nu}; nu, delta / sqrt(A + B)) = power, solved for
delta. ``later_campaign_size`` finds the smallest later campaign whose detectable change is at
most a target, before the later campaign exists (its spread taken as the baseline's).

Across time the spectra must be measured alike: an instrument change, a wavelength shift or a
detector's gain moves the later campaign's estimates without any change in the soil. Every
spectrum keeps the served model's applicability-domain check (``in_domain``, Hotelling T2 and Q
of ``localsoc.uncertainty.ApplicabilityDomain``, as ``/predict`` and ``localsoc predict`` give
it); a campaign with more than half of its spectra outside (``MAX_OUT_OF_DOMAIN_SHARE``) gets no
change (``OutOfDomainError``), a stratum mostly outside in either campaign gets no interval, and
``spectral_drift`` tests whether the later campaign's Q residuals (the part of a spectrum the
domain's principal components do not describe: what a shift or a band-dependent gain adds, and a
change of SOC does not) are larger than the baseline's: one-sided Wilcoxon signed-rank on the
locations' differences (paired) or Mann-Whitney U (independent), flagged at p < ``DRIFT_ALPHA``
with a median Q at least ``DRIFT_MIN_RATIO`` times the baseline's.
A flagged change keeps its interval, marked with the flag ``spectral_drift`` and a note.

Assumptions: with one model, its mean error over the field is the same at both campaigns; an
attenuated model (errors that grow with the SOC level, not only in spread: one that regresses
to the calibration mean) sees a fraction of the change; the residuals do not reveal it (the
bundle does not store the validation estimates). Residual sets of two models are of different
samples (independent). With ``target="samples"`` and a paired design the errors of one
location at the two campaigns are taken as independent (conservative when they are positively
correlated). Bulk density and depth are taken as measured without error. ``tests/test_change.py``
simulates field pairs with a shared bias and errors growing with SOC and measures coverage and
power.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import optimize, stats

from localsoc.field import (
    ALL,
    MAX_OUT_OF_DOMAIN_SHARE,
    TARGETS,
    out_of_domain_flags,
)

#: How the change's interval is computed (shown by ``localsoc change`` and ``POST /change``).
METHOD = (
    "difference of two difference estimators (Sarndal et al. 1992; Cochran 1977 ch. 12): change "
    "= (mean estimate + mean residual)_later - (...)_baseline; one model: its bias cancels, "
    "two models: both bias corrections and their variances s_e^2/n stay; sampling variance "
    "s_d^2/N of the paired differences (paired) or s_b^2/N_b + s_l^2/N_l (independent); t "
    "interval with Welch-Satterthwaite degrees of freedom; minimum detectable change from the "
    "noncentral t (one-sided test)")
DESIGNS = ("paired", "independent")
CAMPAIGNS = ("baseline", "later")
PAIR_BY = ("id", "coordinates")
LEVEL = 0.9
ALPHA = 0.05
POWER = 0.8
#: p-value below which the later campaign's Q residuals are taken as drifted from the baseline's,
#: when their median is also at least ``DRIFT_MIN_RATIO`` times the baseline's (with a hundred
#: paired spectra the test alone flags a few per cent: rescan noise, or a real change's own
#: signal outside the domain's components).
DRIFT_ALPHA = 0.01
DRIFT_MIN_RATIO = 1.05
#: Two samples at most this far apart (m) are one location (``pair_locations`` by coordinates).
PAIR_TOLERANCE_M = 10.0
EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class Component:
    """One variance component of the change and its degrees of freedom."""

    name: str
    variance: float
    df: float


@dataclass(frozen=True)
class ChangeInterval:
    """The change of one group (SOC % or t C/ha) and its parts (module notes)."""

    estimate: float  # D
    lower: float
    upper: float
    baseline: float  # T_b
    later: float  # T_l
    mean_change: float  # mean(w_l yhat_l) - mean(w_b yhat_b): before the bias corrections
    bias_correction: float  # mean(w_l) mean(e_l) - mean(w_b) mean(e_b)
    sampling_se: float  # sqrt(A)
    model_se: float  # sqrt(B)
    df: float  # nu
    detectable_change: float  # at ``alpha`` and ``power``


@dataclass(frozen=True)
class Drift:
    """``spectral_drift``'s test of the later campaign's Q residuals against the baseline's."""

    test: str
    p_value: float
    median_q_ratio: float  # median Q later / median Q baseline
    flagged: bool


@dataclass(frozen=True)
class Campaign:
    """One campaign's scans as the served model saw them: one value per spectrum (None: not
    given) and the signed residuals of the model that made the estimates; ``model`` names that
    model (the same name in both campaigns: one model, its bias cancels)."""

    estimates: np.ndarray
    residuals: np.ndarray
    model: str
    sample_ids: Sequence | None = None
    strata: Sequence | None = None
    bulk_density_g_cm3: Sequence | None = None
    depth_cm: Sequence | None = None
    in_domain: Sequence | None = None
    q: Sequence | None = None

    def take(self, rows) -> Campaign:
        """The campaign cut to ``rows`` (e.g. ``pair_locations``' matched rows, in order)."""
        rows = np.asarray(rows, dtype=np.int64)
        cut = {name: None if getattr(self, name) is None else np.asarray(
            list(getattr(self, name)), dtype=object if name in ("sample_ids", "strata")
            else None)[rows]
            for name in ("estimates", "sample_ids", "strata", "bulk_density_g_cm3", "depth_cm",
                         "in_domain", "q")}
        return replace(self, **cut)


@dataclass(frozen=True)
class ChangeSummary:
    """The change of one group (``stratum`` = ``ALL`` for the whole field)."""

    stratum: str
    design: str
    models: str  # one | two
    n_baseline: int
    n_later: int
    level: float
    target: str
    soc: ChangeInterval
    stock: ChangeInterval | None
    stock_note: str | None = None
    n_out_of_domain_baseline: int | None = None
    n_out_of_domain_later: int | None = None
    drift: Drift | None = None
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return asdict(self)

    def row(self) -> dict:
        """One flat table row (SOC % and t C/ha)."""
        row = {"stratum": self.stratum, "design": self.design, "models": self.models,
               "n_baseline": self.n_baseline, "n_later": self.n_later,
               "baseline_soc": self.soc.baseline, "later_soc": self.soc.later,
               "change_soc": self.soc.estimate, "lower": self.soc.lower,
               "upper": self.soc.upper, "level": self.level,
               "sampling_se": self.soc.sampling_se, "model_se": self.soc.model_se,
               "df": self.soc.df, "detectable_change": self.soc.detectable_change,
               "change_stock_t_ha": math.nan, "stock_lower": math.nan, "stock_upper": math.nan,
               "stock_detectable_change": math.nan}
        if self.stock is not None:
            row.update({"change_stock_t_ha": self.stock.estimate,
                        "stock_lower": self.stock.lower, "stock_upper": self.stock.upper,
                        "stock_detectable_change": self.stock.detectable_change})
        row["n_out_of_domain_baseline"] = self.n_out_of_domain_baseline
        row["n_out_of_domain_later"] = self.n_out_of_domain_later
        row["drift_p_value"] = None if self.drift is None else self.drift.p_value
        row["flags"] = ";".join(self.flags)
        row["notes"] = "; ".join(self.notes)
        return row


# --- the estimator ---------------------------------------------------------------------------


def _finite(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name}[{int(np.flatnonzero(bad.ravel())[0])}] is not a finite "
                         f"number; every {name} value must be")
    return array


def _variance(values: np.ndarray) -> np.ndarray:
    """Sample variances (ddof 1) along the last axis; 0 for one value."""
    if values.shape[-1] < 2:
        return np.zeros(values.shape[:-1])
    return np.var(values, axis=-1, ddof=1)


def _check_sizes(yb: np.ndarray, yl: np.ndarray, residuals: list[np.ndarray], design: str,
                 target: str) -> None:
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}; got {design!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {target!r}")
    for name, e in zip(("the baseline model", "the later model"), residuals, strict=False):
        if e.shape[-1] < 2:
            raise ValueError(f"the change needs >= 2 calibration residuals of {name}; it has "
                             f"{e.shape[-1]}")
    if design == "paired" and yb.shape[-1] != yl.shape[-1]:
        raise ValueError(f"a paired change needs one later estimate per baseline location; got "
                         f"{yb.shape[-1]} baseline and {yl.shape[-1]} later estimates")
    if target == "field" and min(yb.shape[-1], yl.shape[-1]) < 2:
        raise ValueError("each campaign needs at least 2 spectra for a sampling error (or "
                         "target 'samples' when they are the population)")


def change_parts(baseline, later, residuals, later_residuals=None, *,
                 design: str = "independent", target: str = "field", baseline_weights=None,
                 later_weights=None) -> tuple[np.ndarray, np.ndarray, list[Component]]:
    """(T_b, T_l, variance components) of the module notes, sampling components first.

    ``baseline`` (..., N_b) and ``later`` (..., N_l) estimates (paired: the same N locations in
    the same order); ``residuals`` (..., n) the signed residuals of the baseline's model;
    ``later_residuals`` those of the later campaign's model when it is another model (None:
    one model for both); ``*_weights`` (like the estimates) bulk density x depth for a stock.
    Leading axes are replicates (the simulation tests): every result has their shape."""
    yb, yl = _finite(baseline, "baseline estimates"), _finite(later, "later estimates")
    e_b = _finite(residuals, "calibration residuals")
    e_l = None if later_residuals is None else _finite(later_residuals, "later residuals")
    _check_sizes(yb, yl, [e_b] + ([] if e_l is None else [e_l]), design, target)
    f = 1.0 if target == "samples" else 0.0
    wb = np.ones_like(yb) if baseline_weights is None else _finite(baseline_weights,
                                                                   "baseline weights")
    wl = np.ones_like(yl) if later_weights is None else _finite(later_weights, "later weights")
    if wb.shape != yb.shape or wl.shape != yl.shape:
        raise ValueError("give one weight (bulk density x depth) per estimate")
    nb, nl = yb.shape[-1], yl.shape[-1]
    if design == "paired":
        sampling = [Component("paired differences",
                              (1 - f) * _variance(wl * yl - wb * yb) / nb, nb - 1)]
    else:
        sampling = [Component("baseline sampling", (1 - f) * _variance(wb * yb) / nb, nb - 1),
                    Component("later sampling", (1 - f) * _variance(wl * yl) / nl, nl - 1)]
    mean_b, mean_l = wb.mean(axis=-1), wl.mean(axis=-1)
    own_b, own_l = f * (wb ** 2).mean(axis=-1) / nb, f * (wl ** 2).mean(axis=-1) / nl
    if e_l is None:
        e_l = e_b
        n = e_b.shape[-1]
        model = [Component("model", _variance(e_b) * ((mean_l - mean_b) ** 2 / n + own_b + own_l),
                           n - 1)]
    else:
        model = [Component(f"{name} model", _variance(e) * (mean ** 2 / e.shape[-1] + own),
                           e.shape[-1] - 1)
                 for name, e, mean, own in (("baseline", e_b, mean_b, own_b),
                                            ("later", e_l, mean_l, own_l))]
    t_b = (wb * yb).mean(axis=-1) + mean_b * e_b.mean(axis=-1)
    t_l = (wl * yl).mean(axis=-1) + mean_l * e_l.mean(axis=-1)
    return t_b, t_l, sampling + model


def satterthwaite_df(components: Sequence[Component]):
    """nu = (sum V_k)^2 / sum(V_k^2 / nu_k) (inf where every V_k is 0)."""
    total = sum(np.asarray(c.variance, np.float64) for c in components)
    terms = sum(np.asarray(c.variance, np.float64) ** 2 / c.df for c in components)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(terms > 0, total ** 2 / np.where(terms > 0, terms, 1.0), np.inf)


def t_interval(estimate, components: Sequence[Component], level: float = LEVEL):
    """(lower, upper, df): estimate -/+ t_{(1 + level)/2, nu} sqrt(sum V_k), nu
    Welch-Satterthwaite (``satterthwaite_df``)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    df = satterthwaite_df(components)
    variance = sum(np.asarray(c.variance, np.float64) for c in components)
    half = stats.t.ppf((1 + level) / 2, df) * np.sqrt(variance)
    return estimate - half, estimate + half, df


def detectable_change(components: Sequence[Component], alpha: float = ALPHA,
                      power: float = POWER) -> float:
    """The minimum detectable change (module notes) of a change with these (scalar) variance
    components: noncentral t, one-sided level ``alpha``, probability ``power``."""
    if not (0 < alpha < 0.5 and alpha < power < 1):
        raise ValueError(f"need 0 < alpha < 0.5 and alpha < power < 1; got alpha {alpha}, "
                         f"power {power}")
    se = math.sqrt(float(sum(c.variance for c in components)))
    if se == 0:
        return 0.0
    df = float(satterthwaite_df(components))
    if not math.isfinite(df):
        return se * float(stats.norm.ppf(1 - alpha) + stats.norm.ppf(power))
    critical = float(stats.t.ppf(1 - alpha, df))

    def shortfall(ncp: float) -> float:
        return float(stats.nct.sf(critical, df, ncp)) - power

    return se * optimize.brentq(shortfall, 0.0, critical + float(stats.norm.ppf(power)) + 10.0,
                                xtol=1e-8)


def change_interval(baseline, later, residuals, later_residuals=None, *,
                    design: str = "independent", level: float = LEVEL, target: str = "field",
                    baseline_weights=None, later_weights=None, alpha: float = ALPHA,
                    power: float = POWER) -> ChangeInterval:
    """The change of one group, its interval and detectable change (module notes); arguments
    as ``change_parts`` (one-dimensional)."""
    t_b, t_l, components = change_parts(baseline, later, residuals, later_residuals,
                                        design=design, target=target,
                                        baseline_weights=baseline_weights,
                                        later_weights=later_weights)
    estimate = float(t_l - t_b)
    lower, upper, df = t_interval(estimate, components, level)
    wb = np.ones(np.shape(baseline)) if baseline_weights is None else baseline_weights
    wl = np.ones(np.shape(later)) if later_weights is None else later_weights
    mean_change = float(np.mean(np.multiply(wl, later)) - np.mean(np.multiply(wb, baseline)))
    sampling = sum(float(c.variance) for c in components if "model" not in c.name)
    model = sum(float(c.variance) for c in components if "model" in c.name)
    return ChangeInterval(estimate=estimate, lower=float(lower), upper=float(upper),
                          baseline=float(t_b), later=float(t_l), mean_change=mean_change,
                          bias_correction=estimate - mean_change,
                          sampling_se=math.sqrt(sampling), model_se=math.sqrt(model),
                          df=float(df),
                          detectable_change=detectable_change(components, alpha, power))


def later_campaign_size(baseline, residuals, target_change: float, *,
                        design: str = "independent", correlation: float = 0.0,
                        two_models: bool = False, alpha: float = ALPHA, power: float = POWER,
                        max_size: int = 10_000) -> tuple[int | None, pd.DataFrame]:
    """The smallest later campaign (N_l spectra) whose detectable change of the field's mean
    SOC is at most ``target_change``, before it is sampled, and the detectable change at a
    range of sizes (a table ``n_later, detectable_change``).

    The later campaign's spread of estimates is taken as the baseline's (s_b, from the
    ``baseline`` estimates); paired: it revisits N_l of the N_b baseline locations (N_l <= N_b)
    and the spread of the differences is s_b sqrt(2 (1 - ``correlation``)), the correlation of
    a location's estimates at the two campaigns (0: no gain from pairing; from a pilot
    otherwise); ``two_models``: the later model's residuals spread like ``residuals``. None
    when no size up to the limit (N_b for paired) reaches the target."""
    yb = _finite(baseline, "baseline estimates")
    e = _finite(residuals, "calibration residuals")
    if not target_change > 0:
        raise ValueError(f"the target change must be > 0; got {target_change}")
    if not -1 < correlation < 1:
        raise ValueError(f"the correlation must be in (-1, 1); got {correlation}")
    if yb.size < 2:
        raise ValueError("the baseline needs at least 2 spectra to estimate their spread")
    s2, s2_e = _variance(yb), _variance(e)
    model = ([Component("baseline model", s2_e / e.size, e.size - 1),
              Component("later model", s2_e / e.size, e.size - 1)] if two_models else [])
    limit = yb.size if design == "paired" else int(max_size)

    def mdc(n_later: int) -> float:
        if design == "paired":
            sampling = [Component("paired differences", 2 * s2 * (1 - correlation) / n_later,
                                  n_later - 1)]
        else:
            sampling = [Component("baseline sampling", s2 / yb.size, yb.size - 1),
                        Component("later sampling", s2 / n_later, n_later - 1)]
        return detectable_change(sampling + model, alpha, power)

    needed = next((n for n in range(2, limit + 1) if mdc(n) <= target_change), None)
    sizes = sorted({n for n in (5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, needed or 2)
                    if 2 <= n <= limit})
    table = pd.DataFrame({"n_later": sizes, "detectable_change": [mdc(n) for n in sizes]})
    return needed, table


# --- locations, strata, domain ---------------------------------------------------------------


def _distance_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle (haversine) distances in m between points in degrees."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (np.sin((p2 - p1) / 2) ** 2
         + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def _unique_ids(table: pd.DataFrame, campaign: str) -> pd.Series:
    if "sample_id" not in table:
        raise ValueError(f"the {campaign} campaign has no sample_id column; pair by id needs "
                         "one (--id-column), or pair by coordinates")
    ids = table["sample_id"].astype(str).reset_index(drop=True)
    repeated = ids.duplicated()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        raise ValueError(f"the {campaign} campaign's sample_id {ids[row]!r} (row {row}) appears "
                         "more than once; give each location one id, or pair by coordinates")
    return ids


def _coordinates(table: pd.DataFrame, campaign: str) -> tuple[np.ndarray, np.ndarray]:
    for column in ("lat", "lon"):
        if column not in table or table[column].isna().all():
            raise ValueError(f"the {campaign} campaign has no {column} values; pair by "
                             "coordinates needs lat and lon (--lat-column, --lon-column), or "
                             "pair by id")
    return table["lat"].to_numpy(np.float64), table["lon"].to_numpy(np.float64)


def pair_locations(baseline: pd.DataFrame, later: pd.DataFrame, by: str = "id",
                   tolerance_m: float = PAIR_TOLERANCE_M) -> tuple[np.ndarray, np.ndarray, str]:
    """The rows of the two campaigns that are one location, as two index arrays (baseline
    row, later row; in baseline order), and a note on what was not matched ('' when all were).

    ``by="id"``: the same ``sample_id``; ``by="coordinates"``: ``lat``/``lon`` at most
    ``tolerance_m`` apart, each row in one pair at most (closest pairs first)."""
    if by not in PAIR_BY:
        raise ValueError(f"pair by must be one of {PAIR_BY}; got {by!r}")
    if by == "id":
        ids_b, ids_l = _unique_ids(baseline, "baseline"), _unique_ids(later, "later")
        where = pd.Series(np.arange(ids_l.size), index=ids_l)
        rows_b = np.flatnonzero(ids_b.isin(ids_l).to_numpy())
        rows_l = where.loc[ids_b.iloc[rows_b]].to_numpy(np.int64)
    else:
        lat_b, lon_b = _coordinates(baseline, "baseline")
        lat_l, lon_l = _coordinates(later, "later")
        distance = _distance_m(lat_b[:, None], lon_b[:, None], lat_l[None, :], lon_l[None, :])
        distance[~np.isfinite(distance)] = np.inf
        pairs, used_b, used_l = [], set(), set()
        for flat in np.argsort(distance, axis=None, kind="stable"):
            i, j = divmod(int(flat), distance.shape[1])
            if distance[i, j] > tolerance_m:
                break
            if i not in used_b and j not in used_l:
                pairs.append((i, j))
                used_b.add(i)
                used_l.add(j)
        pairs.sort()
        rows_b = np.array([i for i, _ in pairs], dtype=np.int64)
        rows_l = np.array([j for _, j in pairs], dtype=np.int64)
    lost = [f"{size - rows.size} of {size} {name} spectra have no match in the other campaign"
            for name, size, rows in (("baseline", len(baseline), rows_b),
                                     ("later", len(later), rows_l)) if rows.size < size]
    if rows_b.size < 2:
        raise ValueError(f"only {rows_b.size} location(s) of the two campaigns match by {by}; a "
                         "paired change needs at least 2: check the ids or coordinates, or use "
                         "the independent design")
    note = "; ".join(lost) + (" (left out of the paired change)" if lost else "")
    return rows_b, rows_l, note


def spectral_drift(baseline_q, later_q, paired: bool, alpha: float = DRIFT_ALPHA) -> Drift:
    """Whether the later campaign's Q residuals are larger than the baseline's (module notes):
    one-sided Wilcoxon signed-rank on the paired differences, else Mann-Whitney U, p below
    ``alpha`` and the medians' ratio at least ``DRIFT_MIN_RATIO``."""
    qb, ql = _finite(baseline_q, "baseline q"), _finite(later_q, "later q")
    if paired:
        differences = ql - qb
        if not np.any(differences != 0):
            p_value = 1.0
        else:
            p_value = float(stats.wilcoxon(differences, alternative="greater").pvalue)
        test = "Wilcoxon signed-rank (paired), one-sided"
    else:
        p_value = float(stats.mannwhitneyu(ql, qb, alternative="greater").pvalue)
        test = "Mann-Whitney U, one-sided"
    median_b = float(np.median(qb))
    ratio = float(np.median(ql)) / median_b if median_b > 0 else math.inf
    return Drift(test=test, p_value=p_value, median_q_ratio=ratio,
                 flagged=p_value < alpha and ratio >= DRIFT_MIN_RATIO)


def beyond_baseline(baseline_q, later_q) -> np.ndarray:
    """Per later spectrum: its Q residual is above every baseline spectrum's (the per-spectrum
    side of ``spectral_drift``; by chance about 1 in N_b + 1 later spectra of an unchanged
    instrument)."""
    return np.asarray(later_q, np.float64) > float(np.max(np.asarray(baseline_q, np.float64)))


def _labels(strata, size: int, campaign: str) -> pd.Series | None:
    if strata is None:
        return None
    labels = pd.Series(list(strata), dtype="string")
    if labels.size != size:
        raise ValueError(f"the {campaign} strata have {labels.size} labels for {size} spectra; "
                         "give one per spectrum (blank where unknown)")
    labels = labels.str.strip().mask(labels.str.strip() == "")
    if (labels == ALL).any():
        row = int(np.flatnonzero((labels == ALL).fillna(False).to_numpy(bool))[0])
        raise ValueError(f"the {campaign} stratum[{row}] is {ALL!r}, the name of the whole "
                         "field's change; rename that stratum (e.g. 'all_stratum')")
    return labels


def _outside(in_domain, size: int, campaign: str) -> np.ndarray | None:
    """Which spectra of a campaign are outside the model's domain (``field``'s check)."""
    return out_of_domain_flags(
        in_domain, size, what=campaign, refusal="there is no change to give",
        otherwise=(f"otherwise the {campaign} campaign was measured differently (another "
                   "instrument, a wavelength shift, a detector's gain, another preparation)"))


# --- the summary of a field and its strata ---------------------------------------------------


def _optional(values, size: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(pd.to_numeric(pd.Series(list(values)), errors="coerce"), np.float64)
    if array.size != size:
        raise ValueError(f"{name} has {array.size} values for {size} spectra; give one per "
                         "spectrum (blank where unknown)")
    return array


def _stock_weights(campaign: Campaign, size: int, name: str) -> np.ndarray | None:
    density = _optional(campaign.bulk_density_g_cm3, size, f"{name} bulk_density_g_cm3")
    depth = _optional(campaign.depth_cm, size, f"{name} depth_cm")
    if density is None or depth is None:
        return None
    return density * depth


def _groups(baseline: Campaign, later: Campaign, paired: bool
            ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, baseline mask, later mask) of the whole field and each stratum; paired: a
    location's stratum is its baseline label (the later labels are not read)."""
    nb, nl = len(baseline.estimates), len(later.estimates)
    groups = [(ALL, np.ones(nb, bool), np.ones(nl, bool))]
    labels_b = _labels(baseline.strata, nb, "baseline")
    labels_l = labels_b if paired else _labels(later.strata, nl, "later")
    names = set()
    for labels in (labels_b, labels_l):
        if labels is not None:
            names |= set(labels.dropna())
    for name in sorted(names):
        mask_b = (np.zeros(nb, bool) if labels_b is None
                  else (labels_b == name).fillna(False).to_numpy(bool))
        mask_l = (np.zeros(nl, bool) if labels_l is None
                  else (labels_l == name).fillna(False).to_numpy(bool))
        groups.append((str(name), mask_b, mask_l))
    return groups


def _group_change(baseline: Campaign, later: Campaign, masks, settings: dict,
                  weights) -> tuple[ChangeInterval | None, ChangeInterval | None, str | None]:
    """The SOC and stock change of one group, and why there is no stock (None: there is)."""
    mask_b, mask_l = masks
    two = later.model != baseline.model
    arguments = dict(residuals=baseline.residuals,
                     later_residuals=later.residuals if two else None, **settings)
    soc = change_interval(baseline.estimates[mask_b], later.estimates[mask_l], **arguments)
    wb, wl = weights
    if wb is None or wl is None:
        return soc, None, ("no bulk_density_g_cm3 and depth_cm in both campaigns")
    missing = [f"{int((~np.isfinite(w[m])).sum())} {name} spectra lack bulk density or depth"
               for name, w, m in (("baseline", wb, mask_b), ("later", wl, mask_l))
               if (~np.isfinite(w[m])).any()]
    if missing:
        return soc, None, "; ".join(missing)
    stock = change_interval(baseline.estimates[mask_b], later.estimates[mask_l],
                            baseline_weights=wb[mask_b], later_weights=wl[mask_l], **arguments)
    return soc, stock, None


def _no_interval(interval: ChangeInterval) -> ChangeInterval:
    return ChangeInterval(**{**asdict(interval), "lower": math.nan, "upper": math.nan})


def change_summary(baseline: Campaign, later: Campaign, *, design: str = "independent",
                   level: float = LEVEL, target: str = "field", alpha: float = ALPHA,
                   power: float = POWER, notes: Sequence[str] = ()) -> list[ChangeSummary]:
    """The change of the whole field (``ALL``) and of each stratum (module notes).

    Paired: the campaigns' rows are the same locations in the same order (``pair_locations``
    cuts them to the matched rows). Two models when ``later.model != baseline.model``.
    ``notes`` (e.g. ``pair_locations``' note) go on the whole field's summary."""
    baseline = replace(baseline, estimates=_finite(baseline.estimates, "baseline estimates"))
    later = replace(later, estimates=_finite(later.estimates, "later estimates"))
    nb, nl = baseline.estimates.size, later.estimates.size
    paired = design == "paired"
    outside_b = _outside(baseline.in_domain, nb, "baseline")
    outside_l = _outside(later.in_domain, nl, "later")
    weights = (_stock_weights(baseline, nb, "baseline"), _stock_weights(later, nl, "later"))
    settings = {"design": design, "level": level, "target": target, "alpha": alpha,
                "power": power}
    models = "two" if later.model != baseline.model else "one"
    summaries = []
    for name, mask_b, mask_l in _groups(baseline, later, paired):
        summaries.append(_group_summary(baseline, later, name, (mask_b, mask_l),
                                        (outside_b, outside_l), weights, settings, models,
                                        list(notes) if name == ALL else []))
    return summaries


def _group_summary(baseline: Campaign, later: Campaign, name: str, masks, outside, weights,
                   settings: dict, models: str, notes: list[str]) -> ChangeSummary:
    """One group's ``ChangeSummary``: its change, domain counts, drift test, flags, notes."""
    mask_b, mask_l = masks
    sizes = (int(mask_b.sum()), int(mask_l.sum()))
    counts = [None if out is None else int(out[mask].sum())
              for out, mask in zip(outside, masks, strict=True)]
    flags = []
    if min(sizes) < (1 if settings["target"] == "samples" else 2):
        notes.append(f"{sizes[0]} baseline and {sizes[1]} later spectra: too few for a change")
        nan = ChangeInterval(*([math.nan] * 11))
        return ChangeSummary(name, settings["design"], models, *sizes, settings["level"],
                             settings["target"], nan, None, None, *counts, None, ("too_few",),
                             tuple(notes))
    soc, stock, stock_note = _group_change(baseline, later, masks, settings, weights)
    drift = None
    if baseline.q is not None and later.q is not None:
        drift = spectral_drift(np.asarray(baseline.q, np.float64)[mask_b],
                               np.asarray(later.q, np.float64)[mask_l],
                               settings["design"] == "paired")
        if drift.flagged:
            flags.append("spectral_drift")
            notes.append(f"the later spectra drifted from the baseline's (Q residuals {drift.test}"
                         f" p = {drift.p_value:.2g}, median ratio {drift.median_q_ratio:.2f}): "
                         "an instrument, wavelength, gain or preparation change moves the "
                         "estimates without any change in the soil; the interval assumes none")
    for campaign, count, size in (("baseline", counts[0], sizes[0]),
                                  ("later", counts[1], sizes[1])):
        if count and count > MAX_OUT_OF_DOMAIN_SHARE * size:
            flags.append(f"{campaign}_out_of_domain")
            notes.append(f"unusable: {count} of {size} {campaign} spectra outside the model's "
                         "domain (no interval)")
        elif count:
            notes.append(f"{count} of {size} {campaign} spectra outside the model's domain "
                         "(kept; their estimates extrapolate)")
    if any(flag.endswith("_out_of_domain") for flag in flags):
        soc = _no_interval(soc)
        stock = None if stock is None else _no_interval(stock)
    return ChangeSummary(name, settings["design"], models, *sizes, settings["level"],
                         settings["target"], soc, stock, stock_note, *counts, drift,
                         tuple(flags), tuple(notes))


def summary_table(summaries: Sequence[ChangeSummary]) -> pd.DataFrame:
    """The summaries as one table (``ChangeSummary.row``)."""
    return pd.DataFrame([summary.row() for summary in summaries])


def markdown_section(table: pd.DataFrame, site: str, heading: str = "##") -> str:
    """A report's "Change" section from a ``summary_table`` (``localsoc change`` writes it to
    ``data/08_reporting/change_<site>.csv``): one row per group, then its flags and notes."""
    level = float(table["level"].iloc[0])
    lines = [f"{heading} Change: {site}", "",
             f"Change of the mean SOC between the baseline and the later campaign, "
             f"{level:.0%} interval ({table['design'].iloc[0]} design, "
             f"{table['models'].iloc[0]} model(s)); {METHOD}.", "",
             "| stratum | N baseline | N later | baseline SOC % | later SOC % | change | "
             "interval | detectable change | stock change t C/ha | flags |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples(index=False):
        stock = ("-" if not np.isfinite(row.change_stock_t_ha) else
                 f"{row.change_stock_t_ha:+.2f} ({row.stock_lower:+.2f} to "
                 f"{row.stock_upper:+.2f})")
        span = ("-" if not np.isfinite(row.lower) else
                f"{row.lower:+.3f} to {row.upper:+.3f}")
        flags = row.flags if isinstance(row.flags, str) and row.flags else ""
        lines.append(f"| {row.stratum} | {row.n_baseline} | {row.n_later} | "
                     f"{row.baseline_soc:.3f} | {row.later_soc:.3f} | {row.change_soc:+.3f} | "
                     f"{span} | {row.detectable_change:.3f} | {stock} | {flags} |")
    notes = [f"- {row.stratum}: {row.notes}" for row in table.itertuples(index=False)
             if isinstance(row.notes, str) and row.notes]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"
