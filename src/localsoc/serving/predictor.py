"""What the prediction service does, without the web server: check a request, predict, explain.

``BundlePredictor`` holds a verified bundle's sites (one ``SitePredictor`` each) and answers a
request with a ``PredictResponse`` or raises ``RequestError`` with the HTTP status and a message
that says what to fix: 400 for a malformed request (empty or ragged arrays, reflectance and
absorbance both or neither given), 413 for too many spectra, 422 for values the model cannot take
(unknown site, NaN or infinite values, values out of range or in the wrong units, wavelengths
that are not increasing nm, do not cover the model's grid or are sampled coarser than it), and 500 for a model that gives a
non-finite estimate (never answered as a success). A negative estimate is answered as it is
(its interval's lower bound is clipped at 0) with the flag ``negative_estimate``. A site's model is checked when the bundle is
loaded: it must take the site's preprocessed spectra and give a finite estimate for the mean
calibration spectrum (the domain's mean), else the bundle is refused with a ``BundleError``.
``localsoc.serving.service`` puts it behind BentoML.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from localsoc.data.schema import OPTIONAL_RANGES
from localsoc.field import METHOD as FIELD_METHOD
from localsoc.field import site_field_summary
from localsoc.methods import family
from localsoc.serving.bundle import DEFAULT_SERVING, BundleError, ServingBundle, interval_rule
from localsoc.serving.card import card_markdown, site_card
from localsoc.serving.schemas import (
    CardResponse,
    DomainLimits,
    FieldGroup,
    FieldResponse,
    Interval,
    ModelIdentity,
    PredictResponse,
    SitesResponse,
    SpectrumPrediction,
)
from localsoc.spectra import units
from localsoc.spectra.resample import Resample, missing_ranges, widest_spacing
from localsoc.spectra.steps import apply_steps, check_fitted, describe_steps
from localsoc.uncertainty import ApplicabilityDomain, domain_difficulty

#: Grids a site keeps fitted resamplers for (clients usually send one or two grids).
RESAMPLER_CACHE_SIZE = 32
#: An error reply's message is at most this long, and names at most this many schema problems.
MAX_MESSAGE_CHARS = 2000
MAX_PROBLEMS = 3


class RequestError(Exception):
    """A request the service cannot answer, with the HTTP status and what to fix."""

    def __init__(self, status: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message

    def body(self) -> dict[str, Any]:
        """``{"error", "field"}``, bounded in size whatever the request held."""
        return {"error": _clip(self.message, MAX_MESSAGE_CHARS),
                "field": None if self.field is None else _clip(self.field, 100)}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def schema_error(error: ValidationError) -> RequestError:
    """The 400 for a body that does not fit ``PredictRequest``: its first few problems, each
    with its place (``reflectance[0][3]``) and pydantic's message; never the values sent."""
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    if problems and problems[0]["type"] == "json_invalid":
        detail = str(problems[0]["msg"]).removeprefix("Invalid JSON: ")
        return RequestError(400, None, f"the body is not valid JSON ({_clip(detail, 200)}); send "
                            "a JSON object like the example in /docs.json")
    places = []
    for problem in problems[:MAX_PROBLEMS]:
        place = ""
        for part in problem["loc"]:
            place += f"[{part}]" if isinstance(part, int) else f".{_clip(str(part), 40)}"
        places.append(f"{place.lstrip('.') or 'the body'}: {_clip(str(problem['msg']), 200)}")
    more = len(problems) - len(places)
    first = problems[0]["loc"] if problems else ()
    field = str(first[0]) if first and isinstance(first[0], str) else None
    return RequestError(400, field, "the body does not fit the request schema (/docs.json): "
                        + "; ".join(places) + (f"; and {more} more" if more > 0 else ""))


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise RequestError(400, _clip(key, 40), f"the body gives {_clip(key, 40)!r} more "
                               "than once; give each field once")
        seen.add(key)
    return dict(pairs)


def check_body(schema: type[BaseModel], body: bytes) -> RequestError | None:
    """The 400 for a JSON body that does not fit ``schema`` with strict JSON types (no number
    as a string, no ``true`` for a number) or that gives a field twice; None when it fits."""
    try:
        schema.model_validate_json(body, strict=True)
    except ValidationError as error:
        return schema_error(error)
    # after validation only the schema's keys remain; a duplicate needs one of them twice (or an
    # escape that spells it): the full parse runs only then
    names = [name.encode() for name in schema.model_fields]
    if b"\\" in body or any(body.count(b'"' + name + b'"') > 1 for name in names):
        try:
            json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
        except RequestError as problem:
            return problem
    return None


def _short(value: Any, limit: int = 80) -> str:
    return _clip(repr(value), limit)


def _first_position(mask: np.ndarray) -> tuple[int, int]:
    row, column = np.argwhere(mask)[0]
    return int(row), int(column)


class SitePredictor:
    """One site of the bundle, ready to predict: model, grid, preprocessing, interval, domain."""

    def __init__(self, entry: dict[str, Any], model: Any, tag: str, manifest: dict[str, Any]):
        self.entry = entry
        self.name = entry["site"]
        self.wavelengths_nm = np.asarray(entry["wavelengths_nm"], dtype=np.float64)
        try:  # exactly the model's chain, with its fitted state (MSC's reference)
            self.steps = check_fitted(entry["preprocessing"], self.wavelengths_nm.size)
        except ValueError as error:
            raise BundleError(f"bundle site {self.name!r}: {error}; re-run the package "
                              "stage") from None
        # the family's serving path (localsoc.methods): the same model, a fast forward pass
        self.predictor = family(entry["family"]).implementation().serving_predictor(model)
        self.domain = ApplicabilityDomain.from_dict(entry["domain"])
        self.interval = interval_rule(entry)
        if self.interval.fold_estimates:
            n_folds = getattr(model, "n_folds", None)
            if n_folds is None and getattr(model, "fold_coef", None) is not None:
                n_folds = int(model.fold_coef.shape[0])
            if n_folds is None or max(self.interval.folds) >= n_folds:
                raise BundleError(
                    f"bundle site {self.name!r}: the cv_plus interval names outer folds up to "
                    f"{max(self.interval.folds)} but the model has {n_folds} fold models")
        self._check_model()
        self.halfwidth = self.interval.halfwidth
        self.level = self.interval.level
        self.identity = ModelIdentity(
            site=self.name,
            method=entry["method"],
            model_key=entry["model_key"],
            family=entry["family"],
            trained_on=entry["trained_on"],
            version=tag,
            trained_at=entry.get("trained_at") or manifest.get("packaged_at", ""),
            trained_at_source=entry.get("trained_at_source", "packaging"),
            packaged_at=manifest.get("packaged_at", ""),
            data_version=manifest.get("data_version"),
            code_version=manifest.get("code_version"),
        )
        self.limits = DomainLimits(t2_limit=self.domain.t2_limit, q_limit=self.domain.q_limit)
        self._resamplers: OrderedDict[bytes, Resample] = OrderedDict()
        self._lock = threading.Lock()

    def _check_model(self) -> None:
        """The model takes the site's preprocessed spectra (those the domain was fitted on) and
        gives finite estimates for their mean; else a ``BundleError`` naming the site."""
        mean = self.domain.mean
        arrays = {"mean": mean, "components": self.domain.components,
                  "variances": self.domain.variances}
        for name, values in arrays.items():
            if not np.isfinite(values).all():
                raise BundleError(f"bundle site {self.name!r}: the domain's {name} is not "
                                  "finite; re-run the package stage")
        if self.domain.components.ndim != 2 or self.domain.components.shape[1] != mean.size:
            raise BundleError(f"bundle site {self.name!r}: the domain's components have shape "
                              f"{self.domain.components.shape} for {mean.size} bands")
        try:
            estimate, spread = self.predictor.predict(mean[None, :], return_std=True)
            outputs = {"estimate": estimate, "spread": spread}
            if self.interval.fold_estimates:
                outputs["fold estimates"] = self.predictor.predict_folds(mean[None, :])
        except ValueError as error:
            raise BundleError(
                f"bundle site {self.name!r}: its {self.entry['family']} model does not take the "
                f"site's spectra ({mean.size} preprocessed bands): {error}; re-run the package "
                "stage") from None
        for name, values in outputs.items():
            values = np.asarray(values, dtype=np.float64)
            if values.size == 0 or not np.isfinite(values).all():
                raise BundleError(
                    f"bundle site {self.name!r}: its {self.entry['family']} model gives a "
                    f"{name} that is not finite ({values.ravel()[:3].tolist()}) for the mean "
                    "calibration spectrum: its coefficients or weights are broken; re-run the "
                    "package stage")

    def describe(self) -> dict[str, Any]:
        entry = self.entry
        return {
            "site": self.name,
            "country": entry.get("country"),
            "method": entry["method"],
            "model_key": entry["model_key"],
            "family": entry["family"],
            "trained_on": entry["trained_on"],
            "trained_at": self.identity.trained_at,
            "grid": {
                **(entry.get("grid") or {}),
                "n_bands": int(self.wavelengths_nm.size),
                "first_nm": float(self.wavelengths_nm[0]),
                "last_nm": float(self.wavelengths_nm[-1]),
            },
            "preprocessing": describe_steps(self.steps),
            "interval": {"level": self.level, "method": self.interval.method,
                         "description": self.entry["interval"].get("description"),
                         "difficulty": self.entry["interval"].get("difficulty_description"),
                         "halfwidth": self.halfwidth if math.isfinite(self.halfwidth) else None},
            "domain_limits": {"t2_limit": self.domain.t2_limit, "q_limit": self.domain.q_limit},
            "cal_rmse": entry.get("cal_rmse"),
            "test_metrics": entry["test_metrics"],
        }

    def on_grid(self, wavelengths: np.ndarray, reflectance: np.ndarray) -> tuple[np.ndarray, bool]:
        """The reflectance on the model's grid, and whether it had to be resampled."""
        grid = self.wavelengths_nm
        if wavelengths.shape == grid.shape and float(np.abs(wavelengths - grid).max()) <= 1e-6:
            return reflectance, False
        gaps = missing_ranges(wavelengths, grid)
        if gaps:
            missing = " and ".join(f"{low:g}-{high:g} nm" for low, high in gaps)
            raise RequestError(
                422, "wavelengths_nm",
                f"the model of site {self.name!r} needs spectra over {grid[0]:g}-{grid[-1]:g} nm "
                f"({grid.size} bands); these cover {wavelengths[0]:g}-{wavelengths[-1]:g} nm: "
                f"missing {missing}. Send spectra that cover the model's range (they are "
                "resampled to its grid)")
        key = wavelengths.tobytes()
        with self._lock:
            resampler = self._resamplers.get(key)
            if resampler is not None:
                self._resamplers.move_to_end(key)
        if resampler is None:
            self._check_sampling(wavelengths)
            try:
                resampler = Resample(source_nm=wavelengths, target_nm=grid).fit(reflectance[:1])
            except ValueError as error:
                raise RequestError(422, "wavelengths_nm", f"cannot resample: {error}") from None
            with self._lock:
                self._resamplers[key] = resampler
                while len(self._resamplers) > RESAMPLER_CACHE_SIZE:
                    self._resamplers.popitem(last=False)
        return resampler.transform(reflectance), True

    def _check_sampling(self, wavelengths: np.ndarray) -> None:
        """A 422 for spectra sampled coarser than the model's grid over its range: resampling
        would invent the bands between their samples (by interpolation)."""
        grid = self.wavelengths_nm
        step = float(np.diff(grid).max())
        spacing, low, high = widest_spacing(wavelengths, grid)
        if spacing > step * (1 + 1e-6):
            raise RequestError(
                422, "wavelengths_nm",
                f"wavelengths_nm are {spacing:g} nm apart at {low:g}-{high:g} nm, coarser than "
                f"the model of site {self.name!r}, which has a band every {step:g} nm over "
                f"{grid[0]:g}-{grid[-1]:g} nm; the bands in between would be invented by "
                f"interpolation. Send spectra sampled at least every {step:g} nm over that range")

    def predict(self, wavelengths: np.ndarray, reflectance: np.ndarray) -> PredictResponse:
        values, resampled = self.on_grid(wavelengths, reflectance)
        try:
            # the request was validated (to_reflectance): the training functions, not re-checked
            spectra = apply_steps(values, self.steps, check=False)
        except ValueError as error:  # e.g. a flat spectrum has no SNV
            raise RequestError(422, "reflectance", f"preprocessing failed: {error}") from None
        estimate, spread = self.predictor.predict(spectra, return_std=True)
        broken = ~np.isfinite(estimate)
        if broken.any():
            raise RequestError(
                500, None,
                f"the model of site {self.name!r} gave a non-finite estimate for "
                f"{int(broken.sum())} spectrum(s) (first: {int(np.flatnonzero(broken)[0])}); "
                "the served bundle is faulty, not the request: re-run the package stage")
        t2, q = self.domain.statistics(spectra)
        inside = (t2 <= self.domain.t2_limit) & (q <= self.domain.q_limit)
        per_fold = (self.predictor.predict_folds(spectra) if self.interval.fold_estimates
                    else None)
        lower, upper = self.interval.bounds(estimate, per_fold,
                                            domain_difficulty(self.domain, spectra))
        predictions = [
            SpectrumPrediction(
                soc_percent=float(estimate[i]),
                spread=float(spread[i]),
                interval=Interval(
                    lower=float(lower[i]) if np.isfinite(lower[i]) else None,
                    upper=float(upper[i]) if np.isfinite(upper[i]) else None,
                    level=self.level,
                    method=self.interval.method,
                ),
                in_domain=bool(inside[i]),
                t2=float(t2[i]),
                q=float(q[i]),
                flags=["negative_estimate"] if estimate[i] < 0 else [],
            )
            for i in range(estimate.shape[0])
        ]
        return PredictResponse(model=self.identity, domain_limits=self.limits,
                               resampled=resampled, predictions=predictions)


def serving_limits(manifest: dict[str, Any]) -> dict[str, Any]:
    limits = {**DEFAULT_SERVING, **manifest.get("serving", {})}
    for key, variable in (("max_spectra_per_request", "LOCALSOC_MAX_SPECTRA"),
                          ("max_body_bytes", "LOCALSOC_MAX_BODY_BYTES")):
        if os.environ.get(variable):
            limits[key] = int(os.environ[variable])
    return limits


def check_wavelengths(values: list[float]) -> np.ndarray:
    wavelengths = np.asarray(values, dtype=np.float64)
    if wavelengths.size < 2:
        raise RequestError(400, "wavelengths_nm",
                           f"wavelengths_nm has {wavelengths.size} value(s); give the wavelength "
                           "in nm of every value of a spectrum (at least 2)")
    if not np.isfinite(wavelengths).all():
        where = int(np.flatnonzero(~np.isfinite(wavelengths))[0])
        raise RequestError(422, "wavelengths_nm",
                           f"wavelengths_nm[{where}] is {wavelengths[where]}; every wavelength "
                           "must be a finite number of nm")
    steps = np.diff(wavelengths)
    if np.any(steps <= 0):
        where = int(np.flatnonzero(steps <= 0)[0]) + 1
        hint = (" If these are wavenumbers (cm-1), convert them: nm = 1e7 / wavenumber, and "
                "reverse the order" if np.all(steps < 0) else " Sort the wavelengths (and the "
                "spectra's values with them) and drop duplicates")
        raise RequestError(422, "wavelengths_nm",
                           f"wavelengths_nm must be strictly increasing; position {where} holds "
                           f"{wavelengths[where]:g} after {wavelengths[where - 1]:g}.{hint}")
    if wavelengths[-1] <= 100:
        raise RequestError(422, "wavelengths_nm",
                           f"wavelengths_nm run from {wavelengths[0]:g} to {wavelengths[-1]:g}: "
                           "these look like micrometres; send nanometres (multiply by 1000)")
    if wavelengths[0] <= 0 or wavelengths[-1] > 100_000:
        raise RequestError(422, "wavelengths_nm",
                           f"wavelengths_nm run from {wavelengths[0]:g} to {wavelengths[-1]:g} "
                           "nm, outside any vis-NIR range (0, 100000]; send wavelengths in nm")
    return wavelengths


def check_count(rows: list[list[float]], field: str, max_spectra: int) -> None:
    if len(rows) == 0:
        raise RequestError(400, field, f"{field} is empty; give at least one spectrum")
    if len(rows) > max_spectra:
        raise RequestError(413, field,
                           f"{field} holds {len(rows)} spectra; the limit is {max_spectra} per "
                           "call: split them over several calls")


def check_spectra(rows: list[list[float]], field: str, n_wavelengths: int) -> np.ndarray:
    for index, row in enumerate(rows):
        if len(row) != n_wavelengths:
            raise RequestError(400, field,
                               f"{field}[{index}] has {len(row)} values but wavelengths_nm has "
                               f"{n_wavelengths}; give one value per wavelength in every spectrum")
    values = np.asarray(rows, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = _first_position(bad)
        raise RequestError(422, field,
                           f"{field}[{row}][{column}] is {values[row, column]} ({int(bad.sum())} "
                           "non-finite value(s) in all); every value must be a finite number: "
                           "re-measure or drop those spectra")
    return values


def to_reflectance(values: np.ndarray, field: str, limits: dict[str, Any]) -> np.ndarray:
    """Reflectance fractions from the given field, or a 422 naming the wrong value and units.

    The unit rules are ``localsoc.spectra.units``'; ``limits`` (the bundle's ``serving``
    settings) give the reflectance range and the thresholds ``percent_reflectance_above`` and
    ``absorbance_max``.
    """
    low = float(limits["reflectance_min_exclusive"])
    high = float(limits["reflectance_max"])
    if field == "absorbance":
        top = float(values.max())
        absorbance_max = float(limits["absorbance_max"])
        if units.absorbance_too_high(top, absorbance_max):
            row, column = _first_position(values == top)
            raise RequestError(422, field,
                               f"absorbance[{row}][{column}] is {top:g}; "
                               f"{units.absorbance_limit(absorbance_max)}. Percent reflectance? "
                               "Send it as reflectance / 100")
        if float(values.min()) < units.lowest_absorbance(high) - 1e-12:
            row, column = _first_position(values == values.min())
            raise RequestError(422, field,
                               f"absorbance[{row}][{column}] is {values[row, column]:g}, i.e. "
                               f"reflectance above {high:g}; absorbance must be log10(1/R) of a "
                               f"reflectance in ({low:g}, {high:g}]")
        return np.minimum(units.to_fractions(values, "absorbance"), high)
    top = float(values.max())
    if top > high:
        row, column = _first_position(values == top)
        if units.looks_like_percent(top, float(limits["percent_reflectance_above"])):
            raise RequestError(422, field,
                               f"reflectance[{row}][{column}] is {top:g}: these look like percent "
                               "reflectance (0-100); the service takes fractions in "
                               f"({low:g}, {high:g}]: divide by 100")
        raise RequestError(422, field,
                           f"reflectance[{row}][{column}] is {top:g}, above {high:g}; reflectance "
                           f"must be a fraction in ({low:g}, {high:g}]")
    bottom = float(values.min())
    if bottom <= low:
        row, column = _first_position(values == bottom)
        raise RequestError(422, field,
                           f"reflectance[{row}][{column}] is {bottom:g}; reflectance must be a "
                           f"fraction in ({low:g}, {high:g}]. Absorbance log10(1/R)? Send it as "
                           "absorbance")
    # one range for both fields: a reflectance is refused where its absorbance would be
    bounds = units.SpectralBounds.from_settings(limits)
    if bottom < bounds.reflectance_min:
        row, column = _first_position(values == bottom)
        raise RequestError(422, field,
                           f"reflectance[{row}][{column}] is {bottom:g} (absorbance "
                           f"{-math.log10(bottom):.3g}), darker than any soil; spectra must be "
                           f"{bounds.describe()}. Absorbance log10(1/R)? Send it as absorbance")
    return values


class BundlePredictor:
    """Every site of a loaded bundle, and the request checks shared by all of them."""

    def __init__(self, bundle: ServingBundle, tag: str) -> None:
        self.tag = tag
        self.manifest = bundle.manifest
        self.limits = serving_limits(bundle.manifest)
        self.sites = {
            site: SitePredictor(bundle.manifest["sites"][site], bundle.models[site], tag,
                                bundle.manifest)
            for site in bundle.sites
        }
        self._document = {
            "bundle": tag,
            "packaged_at": self.manifest.get("packaged_at"),
            "data_version": self.manifest.get("data_version"),
            "code_version": self.manifest.get("code_version"),
            "limits": {key: self.limits[key] for key in ("max_spectra_per_request",
                                                         "max_body_bytes")},
            "sites": [served.describe() for _, served in sorted(self.sites.items())],
        }
        try:
            SitesResponse.model_validate(self._document)  # what /docs.json promises
        except ValidationError as error:
            raise BundleError(f"the bundle's sites do not fit the /sites schema: {error}; "
                              "re-run the package stage") from None

    def sites_document(self) -> dict[str, Any]:
        """What GET /sites returns: the bundle, its limits, and each site's model and metrics."""
        return self._document

    def site(self, name: str) -> SitePredictor:
        served = self.sites.get(name)
        if served is None:
            raise RequestError(422, "site",
                               f"unknown site {_short(name)}; this service serves "
                               f"{sorted(self.sites)} (GET /sites describes them)")
        return served

    def answer(self, site: str, wavelengths_nm: list[float], reflectance: list | None = None,
               absorbance: list | None = None) -> PredictResponse:
        """The prediction for one request, or a ``RequestError`` saying what to fix."""
        served = self.site(site)
        if (reflectance is None) == (absorbance is None):
            raise RequestError(400, "reflectance",
                               "give the spectra as exactly one of 'reflectance' (fractions in "
                               "(0, 1]) or 'absorbance' (log10(1/R)); "
                               + ("both were given" if reflectance is not None else
                                  "neither was given"))
        field = "reflectance" if reflectance is not None else "absorbance"
        rows = reflectance if reflectance is not None else absorbance
        check_count(rows, field, int(self.limits["max_spectra_per_request"]))
        wavelengths = check_wavelengths(wavelengths_nm)
        values = check_spectra(rows, field, wavelengths.size)
        return served.predict(wavelengths, to_reflectance(values, field, self.limits))

    def field(self, site: str, wavelengths_nm: list[float], reflectance: list | None = None,
              absorbance: list | None = None, stratum: list | None = None,
              bulk_density_g_cm3: list | None = None, depth_cm: list | None = None,
              target: str = "field") -> FieldResponse:
        """The field summary (``localsoc.field.site_field_summary``) of one request's spectra,
        or a ``RequestError``: 400 for a per-sample list whose length is not one per spectrum,
        422 for a bulk density or depth out of range."""
        answer = self.answer(site, wavelengths_nm, reflectance, absorbance)
        count = len(answer.predictions)
        for name, values in (("stratum", stratum), ("bulk_density_g_cm3", bulk_density_g_cm3),
                             ("depth_cm", depth_cm)):
            if values is not None and len(values) != count:
                raise RequestError(400, name, f"{name} has {len(values)} values for {count} "
                                   "spectra; give one per spectrum (null where unknown)")
        for name, values in (("bulk_density_g_cm3", bulk_density_g_cm3),
                             ("depth_cm", depth_cm)):
            low, high = OPTIONAL_RANGES[name]
            for index, value in enumerate(values or []):
                if value is not None and not (math.isfinite(value) and low < value <= high):
                    raise RequestError(422, name, f"{name}[{index}] is {value:g}; give a value "
                                       f"in ({low:g}, {high:g}] or null")
        served = self.site(site)
        estimates = np.array([p.soc_percent for p in answer.predictions])
        try:
            summaries = site_field_summary(
                served.entry, estimates, strata=stratum,
                bulk_density_g_cm3=None if bulk_density_g_cm3 is None else
                [np.nan if v is None else v for v in bulk_density_g_cm3],
                depth_cm=None if depth_cm is None else
                [np.nan if v is None else v for v in depth_cm], target=target,
                in_domain=[p.in_domain for p in answer.predictions])
        except ValueError as error:
            raise RequestError(422, "reflectance" if reflectance is not None else "absorbance",
                               str(error)) from None
        return FieldResponse(
            model=answer.model, method=FIELD_METHOD, level=served.level, target=target,
            n_spectra=count, n_calibration=summaries[0].n_calibration,
            out_of_domain=sum(not p.in_domain for p in answer.predictions),
            resampled=answer.resampled,
            summaries=[FieldGroup.model_validate(s.to_dict()) for s in summaries])

    def card(self, site: str) -> CardResponse:
        """The model card of a served site (``localsoc.serving.card``), from the bundle."""
        if site not in self.sites:
            raise RequestError(404, "site", f"unknown site {_short(site)}; this service serves "
                               f"{sorted(self.sites)} (GET /sites describes them)")
        card = site_card(self.manifest, site, self.tag)
        return CardResponse(site=site, markdown=card_markdown(card, "#"), card=card)
