"""What ``POST /change`` does, without the web server: two campaigns' spectra through the served
model, then the change of the field's mean SOC (``localsoc.change``).

Each campaign is checked and predicted exactly as ``/predict`` does (``BundlePredictor.answer``);
its errors keep their status, with the campaign in the field name (``later.reflectance``). On
top: 400 for a per-spectrum list (sample_id, lat, lon, stratum, bulk density, depth) that is not
one per spectrum; 422 for a bulk density or depth out of range (as ``/field``), for a paired
design whose locations do not match (fewer than 2 pairs, ids given twice, no ids or
coordinates), and for a campaign with most of its spectra outside the model's domain.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from localsoc import change
from localsoc.data.schema import OPTIONAL_RANGES
from localsoc.field import MAX_OUT_OF_DOMAIN_SHARE, site_residuals
from localsoc.serving.predictor import BundlePredictor, RequestError
from localsoc.serving.schemas import (
    CampaignPredictions,
    CampaignScans,
    ChangeGroup,
    ChangeRequest,
    ChangeResponse,
    PredictResponse,
)

PER_SPECTRUM = ("sample_id", "lat", "lon", "stratum", "bulk_density_g_cm3", "depth_cm")


def _check_per_spectrum(scans: CampaignScans, count: int, name: str) -> None:
    """400 for a per-spectrum list of another length; 422 for a bulk density or depth out of
    range (``localsoc.data.schema.OPTIONAL_RANGES``)."""
    for key in PER_SPECTRUM:
        values = getattr(scans, key)
        if values is not None and len(values) != count:
            raise RequestError(400, f"{name}.{key}", f"{name}.{key} has {len(values)} values for "
                               f"{count} spectra; give one per spectrum (null where unknown)")
    for key in ("bulk_density_g_cm3", "depth_cm"):
        low, high = OPTIONAL_RANGES[key]
        for index, value in enumerate(getattr(scans, key) or []):
            if value is not None and not (math.isfinite(value) and low < value <= high):
                raise RequestError(422, f"{name}.{key}", f"{name}.{key}[{index}] is {value:g}; "
                                   f"give a value in ({low:g}, {high:g}] or null")


def _predict(predictor: BundlePredictor, site: str, scans: CampaignScans,
             name: str) -> PredictResponse:
    """``/predict``'s answer for one campaign, its errors named by the campaign."""
    try:
        answer = predictor.answer(site, scans.wavelengths_nm, scans.reflectance,
                                  scans.absorbance)
    except RequestError as error:
        field = name if error.field in (None, "site") else f"{name}.{error.field}"
        raise RequestError(error.status, "site" if error.field == "site" else field,
                           f"{name}: {error.message}") from None
    _check_per_spectrum(scans, len(answer.predictions), name)
    outside = sum(not p.in_domain for p in answer.predictions)
    if outside > MAX_OUT_OF_DOMAIN_SHARE * len(answer.predictions):
        field = "reflectance" if scans.reflectance is not None else "absorbance"
        raise RequestError(422, f"{name}.{field}", f"{outside} of {len(answer.predictions)} "
                           f"{name} spectra are outside the model's domain: there is no change "
                           "to give. The likely cause: the units are declared wrongly "
                           "(reflectance sent as absorbance, or the reverse), or the campaign "
                           "was measured differently (another instrument, a wavelength shift, a "
                           "detector's gain, another preparation)")
    return answer


def _nan(values) -> list | None:
    return None if values is None else [np.nan if v is None else v for v in values]


def _campaign(entry: dict, model: str, scans: CampaignScans,
              answer: PredictResponse) -> change.Campaign:
    return change.Campaign(
        estimates=np.array([p.soc_percent for p in answer.predictions]),
        residuals=site_residuals(entry), model=model, sample_ids=scans.sample_id,
        strata=scans.stratum, bulk_density_g_cm3=_nan(scans.bulk_density_g_cm3),
        depth_cm=_nan(scans.depth_cm), in_domain=[p.in_domain for p in answer.predictions],
        q=[p.q for p in answer.predictions])


def _locations(scans: CampaignScans, count: int) -> pd.DataFrame:
    frame = pd.DataFrame(index=range(count))
    if scans.sample_id is not None:
        frame["sample_id"] = scans.sample_id
    for key in ("lat", "lon"):
        if getattr(scans, key) is not None:
            frame[key] = _nan(getattr(scans, key))
    return frame


def _flag_beyond_baseline(answers: dict[str, PredictResponse]) -> None:
    beyond = change.beyond_baseline([p.q for p in answers["baseline"].predictions],
                                    [p.q for p in answers["later"].predictions])
    for prediction, flagged in zip(answers["later"].predictions, beyond, strict=True):
        if flagged:
            prediction.flags.append("q_beyond_baseline")


def answer_change(predictor: BundlePredictor, request: ChangeRequest) -> ChangeResponse:
    """The change of one request (module notes), or a ``RequestError``."""
    served = predictor.site(request.site)
    model = f"{predictor.tag}/{served.entry['model_key']}"  # one model: its bias cancels
    answers = {name: _predict(predictor, request.site, getattr(request, name), name)
               for name in change.CAMPAIGNS}
    campaigns = {name: _campaign(served.entry, model, getattr(request, name), answers[name])
                 for name in change.CAMPAIGNS}
    _flag_beyond_baseline(answers)
    notes, pairs = [], None
    if request.design == "paired":
        try:
            rows_b, rows_l, note = change.pair_locations(
                *(_locations(getattr(request, name), len(answers[name].predictions))
                  for name in change.CAMPAIGNS), by=request.pair_by)
        except ValueError as error:
            key = "sample_id" if request.pair_by == "id" else "lat"
            field = f"later.{key}" if str(error).startswith("the later") else f"baseline.{key}"
            raise RequestError(422, field, str(error)) from None
        campaigns = {"baseline": campaigns["baseline"].take(rows_b),
                     "later": campaigns["later"].take(rows_l)}
        notes, pairs = ([note] if note else []), int(rows_b.size)
    try:
        summaries = change.change_summary(
            campaigns["baseline"], campaigns["later"], design=request.design,
            level=request.level, target=request.target, alpha=request.alpha,
            power=request.power, notes=notes)
    except ValueError as error:
        name = "later" if str(error).startswith("the later") else "baseline"
        field = f"{name}.stratum" if "strat" in str(error) else name
        raise RequestError(422, field, str(error)) from None
    return ChangeResponse(
        model=answers["later"].model, method=change.METHOD, level=request.level,
        design=request.design, target=request.target, n_pairs=pairs,
        **{name: CampaignPredictions(
            n_spectra=len(answers[name].predictions),
            out_of_domain=sum(not p.in_domain for p in answers[name].predictions),
            resampled=answers[name].resampled, predictions=answers[name].predictions)
           for name in change.CAMPAIGNS},
        summaries=[ChangeGroup.model_validate(s.to_dict()) for s in summaries])
