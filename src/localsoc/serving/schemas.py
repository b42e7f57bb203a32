"""Request and response bodies of the prediction service (pydantic; they make its OpenAPI schema)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The shape of a request, cut to three bands (a real one covers the model's whole range).
EXAMPLE_REQUEST = {
    "site": "china_site",
    "wavelengths_nm": [400.0, 410.0, 420.0],
    "reflectance": [[0.081, 0.083, 0.086]],
}


#: A spectrum's values; validation stops at the first value that is not a number (one error per
#: array, not one per value: a large body of strings must not make a large error).
Spectrum = Annotated[list[float], Field(fail_fast=True)]


class PredictRequest(BaseModel):
    """Spectra of one site: reflectance fractions (or absorbance) on the given wavelengths."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": EXAMPLE_REQUEST})

    site: str = Field(description="served site id (GET /sites lists them)")
    wavelengths_nm: list[float] = Field(
        fail_fast=True,
        description="wavelength of each value of a spectrum, in nm, strictly increasing; spectra "
        "on another grid than the model's are resampled when they cover its range and are "
        "sampled at least as finely as its grid (GET /sites gives its step)"
    )
    reflectance: list[Spectrum] | None = Field(
        default=None,
        fail_fast=True,
        description="one spectrum per row, reflectance as a fraction in (0, 1] (not percent)",
    )
    absorbance: list[Spectrum] | None = Field(
        default=None,
        fail_fast=True,
        description="instead of reflectance: one spectrum per row, absorbance log10(1/R)",
    )


class Interval(BaseModel):
    lower: float | None = Field(description="lower bound, SOC %; null when unbounded")
    upper: float | None = Field(description="upper bound, SOC %; null when unbounded")
    level: float = Field(description="nominal coverage, e.g. 0.9")
    method: str = Field(
        default="plain",
        description="validation (split conformal on the site's random validation samples), "
        "cv_plus (CV+ from the outer-fold models), normalised (width follows a "
        "difficulty of the spectrum) or plain (one half-width); GET /sites describes the "
        "site's interval")


class SpectrumPrediction(BaseModel):
    soc_percent: float = Field(description="estimated soil organic carbon, % by mass")
    spread: float = Field(description="standard deviation of the fold models' estimates")
    interval: Interval
    in_domain: bool = Field(
        description="true when the spectrum is like the model's training spectra "
        "(t2 <= t2_limit and q <= q_limit)"
    )
    t2: float = Field(description="Hotelling's T2 in the domain's principal components")
    q: float = Field(description="Q residual (squared reconstruction error)")
    flags: list[str] = Field(
        default_factory=list,
        description="warnings about this estimate; negative_estimate: soc_percent is below 0 % "
        "(not physical; reported unclipped, the interval's lower bound is clipped at 0): the "
        "spectrum is probably unlike the model's training spectra, whatever in_domain says",
    )


#: The bundle holds what is the same for the same code, data and seed (so the same tag); when a
#: model was trained and packaged is the run's, kept in the BentoML store's metadata
#: (``localsoc.datasets.bento_bundle``) and the run logs.
TRAINED_AT = ("when the site's model was trained (ISO 8601, UTC); empty or null when the bundle "
              "does not say: it is in the BentoML store's metadata of the bundle (`bentoml models "
              "get TAG`: trained_at) and the run log data/06_models/<collection>.run.json")
PACKAGED_AT = ("when the bundle was packaged (ISO 8601, UTC); empty or null when the bundle does "
               "not say: it is in the BentoML store's metadata of the bundle (`bentoml models get "
               "TAG`: packaged_at)")
CODE_VERSION = ("the localsoc version that built the bundle (its git commit: the store's "
                "metadata, code_commit)")


class ModelIdentity(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    site: str
    method: str = Field(description="study method of the site's winner, e.g. DTL-Ig")
    model_key: str
    family: str = Field(description="the model family (localsoc.methods.FAMILIES): cnn, plsr, "
                        "plsr_spiked, gpr or stack")
    trained_on: str
    version: str = Field(description="bundle tag in the BentoML store (name:version)")
    trained_at: str | None = Field(default=None, description=TRAINED_AT)
    trained_at_source: str | None = Field(
        default=None, description="where trained_at comes from (training, or packaging when "
        "training kept no time); empty when it is not known")
    packaged_at: str | None = Field(default=None, description=PACKAGED_AT)
    data_version: str | None
    code_version: str | None = Field(description=CODE_VERSION)


class DomainLimits(BaseModel):
    t2_limit: float
    q_limit: float


class PredictResponse(BaseModel):
    model: ModelIdentity
    domain_limits: DomainLimits
    resampled: bool = Field(
        description="true when the spectra were resampled from their grid to the model's"
    )
    predictions: list[SpectrumPrediction]


class ErrorResponse(BaseModel):
    error: str = Field(description="what is wrong and what to do about it")
    field: str | None = Field(default=None, description="the request field at fault")


class SiteGrid(BaseModel):
    n_bands: int
    first_nm: float
    last_nm: float
    step_nm: float | None = Field(default=None, description="band spacing of the model's grid")


class SiteInterval(BaseModel):
    level: float
    method: str
    description: str | None
    difficulty: str | None
    halfwidth: float | None = Field(description="null when the width varies per spectrum")


class SiteDescription(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    site: str
    country: str | None
    method: str
    model_key: str
    family: str
    trained_on: str
    trained_at: str | None = Field(default=None, description=TRAINED_AT)
    grid: SiteGrid
    preprocessing: list[str]
    interval: SiteInterval
    domain_limits: DomainLimits
    cal_rmse: float | None
    test_metrics: dict[str, float | None]


class ServingLimits(BaseModel):
    max_spectra_per_request: int
    max_body_bytes: int


class SitesResponse(BaseModel):
    """What GET /sites returns: the bundle, its limits, and each site's model and metrics."""

    bundle: str = Field(description="bundle tag in the BentoML store (name:version)")
    packaged_at: str | None = Field(default=None, description=PACKAGED_AT)
    data_version: str | None
    code_version: str | None = Field(description=CODE_VERSION)
    limits: ServingLimits
    sites: list[SiteDescription]


#: A field request, cut to three bands and two spectra.
EXAMPLE_FIELD_REQUEST = {
    "site": "china_site",
    "wavelengths_nm": [400.0, 410.0, 420.0],
    "reflectance": [[0.081, 0.083, 0.086], [0.079, 0.082, 0.084]],
    "stratum": ["north", "south"],
    "bulk_density_g_cm3": [1.31, 1.27],
    "depth_cm": [30.0, 30.0],
}


class FieldRequest(PredictRequest):
    """The scanned samples of one field: their spectra and, optionally, each sample's stratum,
    bulk density and layer depth (for the SOC stock)."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"example": EXAMPLE_FIELD_REQUEST})

    stratum: list[str | None] | None = Field(
        default=None, fail_fast=True,
        description="one stratum label per spectrum (null: in the whole-field summary only)")
    bulk_density_g_cm3: list[float | None] | None = Field(
        default=None, fail_fast=True,
        description="dry bulk density of each sample, g/cm3 (null where unknown)")
    depth_cm: list[float | None] | None = Field(
        default=None, fail_fast=True,
        description="thickness of each sample's layer, cm (null where unknown)")
    target: Literal["field", "samples"] = Field(
        default="field",
        description="field: the samples are a sample of a larger field, whose mean is wanted; "
        "samples: the samples are the population (the mean of their true SOC is wanted)")


class MeanEstimate(BaseModel):
    estimate: float = Field(description="the bias-corrected mean (mean estimate + bias "
                            "correction); SOC % or t C/ha")
    lower: float | None = Field(description="lower bound (clipped at 0; null: a stratum of one "
                                "sample has no interval)")
    upper: float | None = Field(description="upper bound (null: no interval, see lower)")
    mean_estimate: float = Field(description="mean of the model's estimates")
    bias_correction: float = Field(description="mean signed residual of the samples the "
                                   "interval is calibrated on (validation samples, else nested "
                                   "out-of-fold calibration residuals; times the mean bulk "
                                   "density x depth for a stock)")
    sampling_se: float | None = Field(description="standard error from the estimates' spread "
                                      "(null for a stratum of one sample)")
    model_se: float = Field(description="standard error of the model's mean error")
    df: float | None = Field(description="Welch-Satterthwaite degrees of freedom of the t "
                             "interval (null: unbounded, a normal quantile was used, or no "
                             "interval)")

    @field_validator("df", "lower", "upper", "sampling_se")
    @classmethod
    def _finite_or_null(cls, value: float | None) -> float | None:
        return value if value is None or math.isfinite(value) else None


class FieldGroup(BaseModel):
    stratum: str = Field(description="'all' for the whole field, else the stratum label")
    n_samples: int
    soc: MeanEstimate = Field(description="mean SOC %")
    stock: MeanEstimate | None = Field(
        description="mean SOC stock, t C/ha (SOC % x bulk density x depth); null without bulk "
        "density and depth for every sample of the group")
    stock_note: str | None = Field(default=None, description="why there is no stock")
    n_out_of_domain: int | None = Field(
        default=None, description="spectra of the group outside the model's domain (a group mostly "
        "outside gets no interval; a field mostly outside is refused with a 422)")
    notes: list[str] = Field(default_factory=list,
                             description="what the summary could not use, and why")


class FieldResponse(BaseModel):
    model: ModelIdentity
    method: str = Field(description="how the interval is computed")
    level: float
    target: str
    n_spectra: int
    n_calibration: int = Field(description="calibration residuals the model error comes from")
    out_of_domain: int = Field(description="spectra outside the model's applicability domain")
    resampled: bool
    summaries: list[FieldGroup]


class CardResponse(BaseModel):
    """What GET /sites/{site}/card returns: the site's model card as data and as markdown."""

    site: str
    markdown: str
    card: dict


#: A change request, cut to three bands and two spectra a campaign.
EXAMPLE_CHANGE_REQUEST = {
    "site": "china_site",
    "baseline": {"wavelengths_nm": [400.0, 410.0, 420.0],
                 "reflectance": [[0.081, 0.083, 0.086], [0.079, 0.082, 0.084]],
                 "sample_id": ["p1", "p2"]},
    "later": {"wavelengths_nm": [400.0, 410.0, 420.0],
              "reflectance": [[0.080, 0.082, 0.085], [0.077, 0.080, 0.083]],
              "sample_id": ["p1", "p2"]},
    "design": "paired",
}


class CampaignScans(BaseModel):
    """One campaign's scans: spectra as in /predict and, optionally, per spectrum its location
    (sample_id or lat/lon, to pair the campaigns), stratum, bulk density and layer depth."""

    model_config = ConfigDict(extra="forbid")

    wavelengths_nm: list[float] = Field(
        fail_fast=True, description="wavelength of each value of a spectrum, nm (as /predict)")
    reflectance: list[Spectrum] | None = Field(
        default=None, fail_fast=True, description="one spectrum per row, fractions in (0, 1]")
    absorbance: list[Spectrum] | None = Field(
        default=None, fail_fast=True, description="instead of reflectance: log10(1/R)")
    sample_id: list[str] | None = Field(
        default=None, fail_fast=True,
        description="one location id per spectrum (a paired design matches them)")
    lat: list[float | None] | None = Field(default=None, fail_fast=True,
                                           description="latitude of each spectrum, degrees")
    lon: list[float | None] | None = Field(default=None, fail_fast=True,
                                           description="longitude of each spectrum, degrees")
    stratum: list[str | None] | None = Field(
        default=None, fail_fast=True, description="one stratum label per spectrum (as /field)")
    bulk_density_g_cm3: list[float | None] | None = Field(
        default=None, fail_fast=True, description="dry bulk density per sample, g/cm3")
    depth_cm: list[float | None] | None = Field(
        default=None, fail_fast=True, description="layer thickness per sample, cm")


class ChangeRequest(BaseModel):
    """Two campaigns of scans of one field, the baseline and the later one."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"example": EXAMPLE_CHANGE_REQUEST})

    site: str = Field(description="served site id (GET /sites lists them)")
    baseline: CampaignScans
    later: CampaignScans
    design: Literal["independent", "paired"] = Field(
        default="independent",
        description="paired: the later campaign revisits the baseline's locations, matched by "
        "pair_by; independent: two separate random samples of the field")
    pair_by: Literal["id", "coordinates"] = Field(
        default="id", description="how a paired design matches locations: sample_id, or "
        "lat/lon within 10 m")
    target: Literal["field", "samples"] = Field(
        default="field", description="as /field: the scans sample a larger field, or they are "
        "the population")
    level: float = Field(default=0.9, gt=0, lt=1, description="interval level")
    alpha: float = Field(default=0.05, gt=0, lt=0.5,
                         description="one-sided test level of the detectable change")
    power: float = Field(default=0.8, gt=0, lt=1, description="power of the detectable change")


def _null_if_not_finite(values: dict) -> dict:
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in values.items()}


class ChangeEstimate(BaseModel):
    estimate: float | None = Field(description="later - baseline mean, SOC % or t C/ha (null: "
                                   "too few spectra)")
    lower: float | None = Field(description="lower bound (null: no interval, see notes)")
    upper: float | None = Field(description="upper bound (null: no interval)")
    baseline: float | None = Field(description="the baseline's bias-corrected mean")
    later: float | None = Field(description="the later campaign's bias-corrected mean")
    mean_change: float | None = Field(description="change of the mean estimates, before the "
                                      "bias corrections")
    bias_correction: float | None = Field(description="later - baseline bias correction (0 "
                                          "for SOC % with one model: its bias cancels)")
    sampling_se: float | None = Field(description="standard error from the campaigns' sampling")
    model_se: float | None = Field(description="standard error from the model's error")
    df: float | None = Field(description="Welch-Satterthwaite degrees of freedom")
    detectable_change: float | None = Field(
        description="minimum detectable change at these sizes (power, one-sided alpha)")

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, values):
        return _null_if_not_finite(values) if isinstance(values, dict) else values


class DriftTest(BaseModel):
    test: str
    p_value: float
    median_q_ratio: float | None = Field(description="median Q later / median Q baseline")
    flagged: bool = Field(description="the later spectra drifted from the baseline's")

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, values):
        return _null_if_not_finite(values) if isinstance(values, dict) else values


class ChangeGroup(BaseModel):
    stratum: str = Field(description="'all' for the whole field, else the stratum label")
    design: str
    models: str = Field(description="one (the same model for both campaigns) or two")
    n_baseline: int
    n_later: int
    level: float
    target: str
    soc: ChangeEstimate = Field(description="change of the mean SOC %")
    stock: ChangeEstimate | None = Field(description="change of the mean SOC stock, t C/ha")
    stock_note: str | None = None
    n_out_of_domain_baseline: int | None = None
    n_out_of_domain_later: int | None = None
    drift: DriftTest | None = Field(default=None, description="the later campaign's Q "
                                    "residuals against the baseline's")
    flags: list[str] = Field(default_factory=list, description="spectral_drift, "
                             "baseline_out_of_domain, later_out_of_domain, too_few")
    notes: list[str] = Field(default_factory=list)


class CampaignPredictions(BaseModel):
    n_spectra: int
    out_of_domain: int = Field(description="spectra outside the model's domain")
    resampled: bool
    predictions: list[SpectrumPrediction] = Field(
        description="per spectrum as /predict; a later spectrum whose Q residual is above "
        "every baseline spectrum's has the flag q_beyond_baseline")


class ChangeResponse(BaseModel):
    model: ModelIdentity
    method: str = Field(description="how the interval is computed")
    level: float
    design: str
    target: str
    n_pairs: int | None = Field(description="matched locations (paired design)")
    baseline: CampaignPredictions
    later: CampaignPredictions
    summaries: list[ChangeGroup]
