"""The field summary: a field's (and each stratum's) mean SOC with an interval that includes the
model's error, and the SOC stock when bulk density and depth are given.

The problem. A field's mean SOC is estimated from the model's estimates of its N scanned
samples. Their sampling noise averages out as 1/sqrt(N), but the model's error does not: a
bias of the model over this field (library samples unlike the field, a calibration that missed
part of it) is shared by every estimate. An interval from the estimates' spread alone misses it.

The method (``METHOD``; one place: ``field_summary``, called by ``localsoc predict``, the report
and the service's ``POST /field``). It is the difference estimator of model-assisted survey
sampling (Särndal, Swensson & Wretman 1992, *Model Assisted Survey Sampling*, Springer, section
6.3), the form that prediction-powered inference takes for a mean (Angelopoulos, Bates,
Fannjiang, Jordan & Zrnic 2023, Science 382(6671):669-674). With

- ``yhat_1..yhat_N`` the served model's estimates of the N samples of the field (or stratum),
- ``e_1..e_n`` the signed residuals (observed - estimated) the site's served interval is
  calibrated on, as the bundle stores them (``interval.calibration_residuals``): the served
  model's residuals on the site's n random validation samples (``interval.method``
  ``validation``, the default: a probability sample of the field, which the estimator
  assumes), or else the nested out-of-fold residuals of its Kennard-Stone calibration samples
  (spectral extremes, not a probability sample: their mean need not be the field's bias),
- ``f`` the sampled fraction: 0 for ``target="field"`` (the N samples are a sample of a much
  larger field, whose mean is the target), 1 for ``target="samples"`` (the N samples are the
  population: the target is the mean of their true SOC),

the estimate, its variance and the interval are

    T = mean(yhat) + mean(e)                            (the mean estimate, bias-corrected)
    A = (1 - f) s_yhat^2 / N                            (sampling error of the field mean)
    B = s_e^2 (1 / n + f / N)                           (the model's mean error over the field)
    T -/+ t_{(1 + level) / 2, nu} sqrt(A + B),  lower bound clipped at 0,
    nu = (A + B)^2 / (A^2 / (N - 1) + B^2 / (n - 1))    (Welch-Satterthwaite)

with s^2 the sample variances (ddof 1). B holds the uncertainty of the estimated bias mean(e)
(s_e^2 / n) and, when the samples are the population, the part of their own errors that the
bias does not explain (s_e^2 / N). When f = 1, A = 0 and nu = n - 1.

SOC stock (t C / ha = SOC % x bulk density g/cm3 x layer depth cm), when every sample of the
group has ``bulk_density_g_cm3`` and ``depth_cm``: with w_j = bulk density x depth of sample j,
S = mean(w yhat) + mean(w) mean(e); A_S = (1 - f) s_{w yhat}^2 / N; B_S = s_e^2 (mean(w)^2 / n +
f mean(w^2) / N); the same t interval (Welch-Satterthwaite nu from A_S, B_S). Bulk density and
depth are taken as measured without error.

Spectra outside the model's domain (``in_domain``: the served model's flags, Hotelling T2 and
Q limits of its calibration spectra) make an estimate an extrapolation, and a field of them a
biased mean that the residuals above know nothing about. When more than half of the field's
spectra are outside (``MAX_OUT_OF_DOMAIN_SHARE``) there is no summary (``OutOfDomainError``,
with the count and the likely cause: units declared wrongly, e.g. reflectance given as
absorbance); a stratum with most of its spectra outside keeps its estimate, without an
interval, marked unusable.

Assumptions (what the interval rests on): the calibration samples' out-of-fold errors are
representative of the model's errors on the field's samples (true for calibration samples
drawn at random from the field; Kennard-Stone picks them from the spectra alone, which the
simulation test also checks); the errors of different samples are independent apart from
their shared mean (the bias); the bias is common to all strata (the bundle does not record the
calibration samples' strata, so every stratum uses all n residuals); the model's errors are
independent of bulk density and depth. The served model is the outer-fold ensemble (CV+) whose
fold models made the residuals, or a refit on all n that is usually a little better than its
fold models (then the interval is a little conservative). Estimates of the calibration samples
themselves, if they are among the N, come from a model that saw them (slightly optimistic for
those n samples). ``tests/test_field.py`` simulates fields with a real shared bias and
heteroscedastic errors and measures the coverage of the field mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: What the field summary's interval is (shown in reports, ``localsoc predict`` and /field).
METHOD = (
    "difference estimator (Sarndal et al. 1992; prediction-powered inference, Angelopoulos et "
    "al. 2023): field mean = mean of the model's estimates + mean signed residual of the n "
    "samples the served interval is calibrated on (the site's random validation samples, else "
    "its nested out-of-fold calibration residuals); variance = (1 - f) s_est^2 / N (sampling) "
    "+ s_res^2 (1/n + f/N) "
    "(the model's mean error, not averaging out), f = 0 for a field larger than its N samples, "
    "1 when the samples are the population; t interval with Welch-Satterthwaite degrees of "
    "freedom, lower bound clipped at 0; stock = SOC % x bulk density x depth (t C/ha) the same "
    "way")
TARGETS = ("field", "samples")
#: The stratum name of the summary over all samples.
ALL = "all"
#: More than this share of a group's spectra outside the model's domain ("most of them") makes
#: its mean an extrapolation: no field summary for the field, no interval for a stratum.
MAX_OUT_OF_DOMAIN_SHARE = 0.5


@dataclass(frozen=True)
class MeanInterval:
    """One difference-estimator mean (``field_summary``'s method) and its parts."""

    estimate: float  # T (clipped at 0 only in ``lower``)
    lower: float
    upper: float
    mean_estimate: float  # mean of the model's estimates (before the bias correction)
    bias_correction: float  # mean of the calibration residuals (mean(e), or mean(w) mean(e))
    sampling_se: float  # sqrt(A)
    model_se: float  # sqrt(B)
    df: float  # nu


@dataclass(frozen=True)
class FieldSummary:
    """The summary of one group of samples (``stratum`` = ``ALL`` for the whole field)."""

    stratum: str
    n_samples: int
    n_calibration: int
    level: float
    target: str
    soc: MeanInterval
    stock: MeanInterval | None  # t C / ha; None without bulk density and depth
    stock_note: str | None = None
    n_out_of_domain: int | None = None  # None: the domain flags were not given
    notes: tuple[str, ...] = ()  # what the reader must know (unlabelled samples, domain)

    def to_dict(self) -> dict:
        return asdict(self)

    def row(self) -> dict:
        """One flat table row (SOC % and t C / ha), with ``n_out_of_domain`` when the domain
        flags were given and ``notes`` when there are any."""
        row = {"stratum": self.stratum, "n_samples": self.n_samples,
               "soc_percent": self.soc.estimate, "lower": self.soc.lower,
               "upper": self.soc.upper, "level": self.level,
               "mean_estimate": self.soc.mean_estimate,
               "bias_correction": self.soc.bias_correction,
               "sampling_se": self.soc.sampling_se, "model_se": self.soc.model_se,
               "stock_t_ha": math.nan, "stock_lower": math.nan, "stock_upper": math.nan}
        if self.stock is not None:
            row.update({"stock_t_ha": self.stock.estimate, "stock_lower": self.stock.lower,
                        "stock_upper": self.stock.upper})
        if self.n_out_of_domain is not None:
            row["n_out_of_domain"] = self.n_out_of_domain
        if self.notes:
            row["notes"] = "; ".join(self.notes)
        return row


class OutOfDomainError(ValueError):
    """Most of the field's spectra are outside the model's domain: no field summary."""


def _as_finite(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name}[{int(np.flatnonzero(bad)[0])}] is not a finite number; "
                         f"every {name} value must be")
    return array


def difference_mean(estimates, residuals, level: float = 0.9, fraction: float = 0.0,
                    weights=None) -> MeanInterval:
    """The difference-estimator mean and interval of the module notes, for one group.

    ``estimates`` (N,), ``residuals`` (n,) signed (observed - estimated), ``fraction`` f in
    [0, 1], ``weights`` (N,) w_j for a stock (None: the SOC mean itself, w = 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if not 0 <= fraction <= 1:
        raise ValueError(f"the sampled fraction must be in [0, 1]; got {fraction}")
    yhat = _as_finite(estimates, "estimates")
    e = _as_finite(residuals, "calibration residuals")
    N, n = yhat.size, e.size
    if n < 2:
        raise ValueError(f"the field summary needs >= 2 calibration residuals; the bundle has {n}")
    if N < 1 or (N < 2 and fraction < 1):
        raise ValueError(f"the field mean of {N} sample(s) has no sampling error estimate; give "
                         "at least 2 spectra (or target 'samples' when they are the population)")
    w = np.ones(N) if weights is None else _as_finite(weights, "weights")
    if w.shape != yhat.shape:
        raise ValueError("give one weight (bulk density x depth) per estimate")
    values = w * yhat
    s2_e = float(np.var(e, ddof=1))
    sampling = (1 - fraction) * (float(np.var(values, ddof=1)) / N if N > 1 else 0.0)
    model = s2_e * (float(np.mean(w)) ** 2 / n + fraction * float(np.mean(w ** 2)) / N)
    variance = sampling + model
    terms = (sampling ** 2 / (N - 1) if N > 1 else 0.0) + model ** 2 / (n - 1)
    df = variance ** 2 / terms if terms > 0 else math.inf
    half = float(stats.t.ppf((1 + level) / 2, df)) * math.sqrt(variance)
    mean_estimate = float(np.mean(values))
    correction = float(np.mean(w)) * float(np.mean(e))
    estimate = mean_estimate + correction
    return MeanInterval(estimate=estimate, lower=max(estimate - half, 0.0),
                        upper=max(estimate + half, 0.0), mean_estimate=mean_estimate,
                        bias_correction=correction, sampling_se=math.sqrt(sampling),
                        model_se=math.sqrt(model), df=float(df))


def _no_interval(estimates: np.ndarray, residuals: np.ndarray) -> MeanInterval:
    """A stratum of one sample: its bias-corrected estimate, no sampling error, no interval."""
    mean_estimate = float(np.mean(estimates))
    correction = float(np.mean(residuals))
    return MeanInterval(estimate=mean_estimate + correction, lower=math.nan, upper=math.nan,
                        mean_estimate=mean_estimate, bias_correction=correction,
                        sampling_se=math.nan,
                        model_se=math.sqrt(float(np.var(residuals, ddof=1)) / residuals.size),
                        df=math.nan)


def _optional(values, size: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(pd.to_numeric(pd.Series(list(values)), errors="coerce"), np.float64)
    if array.size != size:
        raise ValueError(f"{name} has {array.size} values for {size} estimates; give one per "
                         "sample (blank where unknown)")
    return array


def _groups(strata, size: int) -> tuple[list[tuple[str, np.ndarray]], int]:
    """The groups of ``field_summary`` (the whole field, then each stratum by name) and how many
    samples have no stratum label (null or blank: they count in ``ALL`` only)."""
    groups: list[tuple[str, np.ndarray]] = [(ALL, np.ones(size, dtype=bool))]
    if strata is None:
        return groups, 0
    labels = pd.Series(list(strata), dtype="string")
    if labels.size != size:
        raise ValueError(f"strata has {labels.size} labels for {size} estimates; give one per "
                         "sample (blank where unknown)")
    labels = labels.str.strip().mask(labels.str.strip() == "")
    if (labels == ALL).any():
        first = int(np.flatnonzero((labels == ALL).fillna(False).to_numpy(bool))[0])
        raise ValueError(f"stratum[{first}] is {ALL!r}, the name of the whole field's summary; "
                         "rename that stratum (e.g. 'all_stratum')")
    for name in sorted(labels.dropna().unique()):
        groups.append((str(name), (labels == name).fillna(False).to_numpy(bool)))
    return groups, int(labels.isna().sum())


def _stock_note(density: np.ndarray | None, depth: np.ndarray | None,
                mask: np.ndarray) -> str | None:
    """Why a group has no SOC stock (None: it has one): the columns or values missing."""
    if density is None and depth is None:
        return "no bulk_density_g_cm3 and no depth_cm column"
    if density is None or depth is None:
        return (f"no {'bulk_density_g_cm3' if density is None else 'depth_cm'} column "
                f"({'depth_cm' if density is None else 'bulk_density_g_cm3'} is given)")
    lacking = [f"{int((~np.isfinite(values[mask])).sum())} of {int(mask.sum())} samples lack "
               f"{name}" for name, values in (("bulk_density_g_cm3", density),
                                              ("depth_cm", depth))
               if (~np.isfinite(values[mask])).any()]
    return "; ".join(lacking) or None


def out_of_domain_flags(
    in_domain, size: int, *, what: str = "",
    refusal: str = "a field mean of them would extrapolate, so there is no field summary",
    otherwise: str = ("otherwise the spectra are unlike the site's calibration samples (another "
                      "instrument, preparation or soil)"),
) -> np.ndarray | None:
    """Which of ``size`` spectra are outside the model's domain (None: not known); an
    ``OutOfDomainError`` saying ``refusal`` and the likely causes when more than
    ``MAX_OUT_OF_DOMAIN_SHARE`` of them are. ``what`` names the spectra in messages (e.g. a
    campaign). Shared by the field summary and the change between campaigns."""
    if in_domain is None:
        return None
    outside = ~np.asarray(in_domain, dtype=bool).ravel()
    named = f"{what} " if what else ""
    if outside.size != size:
        raise ValueError(f"the {named}in_domain flags are {outside.size} for {size} spectra")
    if outside.sum() > MAX_OUT_OF_DOMAIN_SHARE * size:
        raise OutOfDomainError(
            f"{int(outside.sum())} of {size} {named}spectra are outside the model's domain: "
            f"{refusal}. The likely cause: the spectra's units are declared wrongly "
            f"(reflectance given as absorbance, or absorbance as reflectance); {otherwise}")
    return outside


def field_summary(estimates, residuals, level: float = 0.9, *, strata=None,
                  bulk_density_g_cm3=None, depth_cm=None, target: str = "field",
                  in_domain=None) -> list[FieldSummary]:
    """The field summary (module notes): the whole field first (stratum ``ALL``), then each
    stratum (sorted by name) when ``strata`` (one label per estimate) has any label; samples
    without a label (null or blank) count in ``ALL`` only, which says how many. A stratum
    named ``ALL`` is refused. ``bulk_density_g_cm3`` and ``depth_cm`` (one per estimate, NaN
    where unknown) give the SOC stock of a group whose samples all have both.
    ``residuals``: the signed residuals of the served model the site's interval is calibrated
    on (validation samples, or nested out-of-fold calibration residuals). ``in_domain`` (one
    flag per estimate; None: unknown): more than ``MAX_OUT_OF_DOMAIN_SHARE`` outside refuses
    the summary (``OutOfDomainError``); a stratum with most outside gets no interval."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {target!r}")
    yhat = _as_finite(estimates, "estimates")
    e = _as_finite(residuals, "calibration residuals")
    fraction = 1.0 if target == "samples" else 0.0
    density = _optional(bulk_density_g_cm3, yhat.size, "bulk_density_g_cm3")
    depth = _optional(depth_cm, yhat.size, "depth_cm")
    groups, unlabelled = _groups(strata, yhat.size)
    outside = out_of_domain_flags(in_domain, yhat.size)
    summaries = []
    for name, mask in groups:
        size = int(mask.sum())
        n_out = None if outside is None else int(outside[mask].sum())
        notes = [f"{unlabelled} of {size} samples have no stratum label: they count in the "
                 "whole field only"] if name == ALL and unlabelled else []
        unusable = n_out is not None and n_out > MAX_OUT_OF_DOMAIN_SHARE * size
        if unusable:
            notes.append(f"unusable: {n_out} of {size} spectra outside the model's domain "
                         "(no interval)")
        if unusable or (name != ALL and size < 2 and fraction < 1):
            note = ("1 sample: no interval for this stratum" if size < 2 else
                    "most spectra outside the model's domain: no interval")
            summaries.append(FieldSummary(name, size, int(e.size), float(level), target,
                                          _no_interval(yhat[mask], e), None, note, n_out,
                                          tuple(notes)))
            continue
        stock_note = _stock_note(density, depth, mask)
        stock = None if stock_note else difference_mean(yhat[mask], e, level, fraction,
                                                        density[mask] * depth[mask])
        summaries.append(FieldSummary(name, size, int(e.size), float(level), target,
                                      difference_mean(yhat[mask], e, level, fraction), stock,
                                      stock_note, n_out, tuple(notes)))
    return summaries


def summary_table(summaries: Sequence[FieldSummary]) -> pd.DataFrame:
    """The summaries as one table (``FieldSummary.row``)."""
    return pd.DataFrame([summary.row() for summary in summaries])


def site_residuals(entry: Mapping) -> np.ndarray:
    """The signed residuals a bundle site's interval is calibrated on (validation samples, or
    nested out-of-fold calibration residuals; see the module docstring)."""
    residuals = entry.get("interval", {}).get("calibration_residuals")
    if not residuals:
        raise ValueError(f"bundle site {entry.get('site')!r} stores no calibration residuals; "
                         "re-run the package stage")
    return np.asarray(residuals, dtype=np.float64)


def optional_columns(table: pd.DataFrame) -> dict:
    """The ``field_summary`` keyword arguments a canonical table's optional columns
    (``localsoc.data.schema.OPTIONAL_COLUMNS``) give; None for an absent column."""
    return {key: table[column].to_numpy() if column in table else None
            for key, column in (("strata", "stratum"),
                                ("bulk_density_g_cm3", "bulk_density_g_cm3"),
                                ("depth_cm", "depth_cm"))}


def site_field_summary(entry: Mapping, estimates, *, strata=None, bulk_density_g_cm3=None,
                       depth_cm=None, target: str = "field",
                       in_domain=None) -> list[FieldSummary]:
    """``field_summary`` of a served site (a bundle site entry): the signed residuals its
    interval is calibrated on and its interval level. What ``localsoc predict``, the report and
    ``POST /field`` call; ``in_domain``: the served model's domain flags of the estimates."""
    return field_summary(estimates, site_residuals(entry), float(entry["interval"]["level"]),
                         strata=strata, bulk_density_g_cm3=bulk_density_g_cm3,
                         depth_cm=depth_cm, target=target, in_domain=in_domain)


def predictions_summary(entry: Mapping, table: pd.DataFrame, predictions: pd.DataFrame,
                        target: str = "field") -> pd.DataFrame:
    """The field summary table (one ``FieldSummary.row`` per group) of a served site's
    predictions of a canonical table (rows in the same order; ``soc_percent`` and
    ``in_domain`` columns, as ``localsoc.workflow.predict_table`` writes them), with the
    table's optional stratum, bulk density and depth columns."""
    summaries = site_field_summary(entry, predictions["soc_percent"].to_numpy(np.float64),
                                   **optional_columns(table.reset_index(drop=True)),
                                   target=target,
                                   in_domain=predictions["in_domain"].to_numpy(bool))
    out = summary_table(summaries)
    out.insert(0, "site", entry["site"])
    if "notes" not in out:
        out["notes"] = ""
    out["target"] = target
    return out
