"""The model card of a served site, built from the bundle's manifest only.

``site_card(manifest, site)`` gathers, from ``bundle.json`` (``localsoc.serving.bundle``): the
data the model was built and tested on (calibration and test samples, the site's and each
library's validated rows: the manifest's ``data`` record), the method and how it was chosen,
the nested calibration and test metrics, the served interval (its method, level and measured
test coverage), what the field summary (``localsoc.field``) takes from the bundle, the inputs
(wavelength grid, preprocessing) and the applicability domain's limits, and the versions and
hashes (code, data, training data, every model file). ``card_markdown`` writes it as markdown;
the report and ``GET /sites/{site}/card`` both use these two functions. Nothing is recomputed
from data outside the bundle; what an older bundle did not record is shown as "not recorded".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from localsoc import field
from localsoc.spectra.steps import describe_steps
from localsoc.uncertainty import split_conformal_coverage_law

NOT_RECORDED = "not recorded"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def site_card(manifest: Mapping[str, Any], site: str, tag: str | None = None) -> dict[str, Any]:
    """The card of ``site`` as plain data (JSON-ready). ``tag``: the bundle's store tag."""
    entry = manifest["sites"][site]
    interval = entry["interval"]
    residuals = np.asarray(interval.get("calibration_residuals") or [], dtype=np.float64)
    wavelengths = np.asarray(entry["wavelengths_nm"], dtype=np.float64)
    domain = entry["domain"]
    tests = entry.get("test_metrics") or {}
    prefix = entry["model_dir"].rstrip("/") + "/"
    data = dict(entry.get("data") or {})
    data.setdefault("calibration_samples", int(residuals.size))
    return {
        "site": site,
        "country": entry.get("country"),
        "bundle": tag or manifest.get("tag"),
        "model": {key: entry.get(key) for key in (
            "method", "family", "model_key", "collection", "trained_on", "model_format",
            "trained_at", "trained_at_source")},
        "data": data,
        "selection": entry.get("selection") or {},
        "metrics": {
            "nested_calibration_rmse": _number(entry.get("cal_rmse")),
            "test": {key: _number(value) for key, value in tests.items()},
            "best_on_test": entry.get("best_on_test"),
        },
        "interval": {
            "method": interval.get("method", "plain"),
            "level": float(interval["level"]),
            "description": interval.get("description"),
            "difficulty": interval.get("difficulty_description"),
            "halfwidth": _number(interval.get("halfwidth")),
            "test_coverage": _number(tests.get("coverage")),
            "test_mean_width": _number(tests.get("mean_width")),
            "calibration_residuals": int(residuals.size),
            "calibration_set": interval.get("calibration_set",
                                            "calibration samples (nested out of fold)"),
            "coverage_spread": _coverage_spread(interval, residuals.size),
        },
        "field_summary": {
            "method": field.METHOD,
            "calibration_residuals": int(residuals.size),
            "mean_residual": float(residuals.mean()) if residuals.size else None,
            "residual_sd": float(residuals.std(ddof=1)) if residuals.size > 1 else None,
        },
        "inputs": {
            "wavelengths_nm": {"first": float(wavelengths[0]), "last": float(wavelengths[-1]),
                               "bands": int(wavelengths.size),
                               "step": float(np.diff(wavelengths).max())},
            "preprocessing": describe_steps(entry["preprocessing"]),  # labels, no MSC reference
        },
        "domain": {
            "components": int(np.asarray(domain["components"]).shape[0]),
            "t2_limit": _number(domain["t2_limit"]),
            "q_limit": _number(domain["q_limit"]),
            "rule": "a spectrum is in the domain when its Hotelling T2 and Q residual in the "
                    "PCA of the model's training spectra are at or below these limits (empirical "
                    "quantiles of the training spectra's own T2 and Q, "
                    "localsoc.uncertainty.ApplicabilityDomain)",
        },
        "versions": {
            "packaged_at": manifest.get("packaged_at"),
            "code_version": manifest.get("code_version"),
            "data_version": manifest.get("data_version"),
            "data_version_of": manifest.get("data_version_of"),
            "training_data_hash": entry.get("training_data_hash"),
            "model_data_version": entry.get("model_data_version"),
            "bundle_format": manifest.get("format"),
            "model_files_sha256": {name: digest for name, digest in
                                   sorted((manifest.get("files") or {}).items())
                                   if name.startswith(prefix)},
        },
    }


def _coverage_spread(interval: Mapping[str, Any], m: int) -> dict[str, Any] | None:
    """For a validation (split-conformal) interval, how its coverage of the field varies over
    validation draws (``uncertainty.split_conformal_coverage_law``); None for the others,
    whose residuals are not exchangeable with the field's."""
    if interval.get("method") != "validation":
        return None
    try:
        law = split_conformal_coverage_law(m, float(interval["level"]))
    except ValueError:
        return None
    return {"m": law.m, "rank": law.rank, "mean": law.mean, "q05": law.q05, "q95": law.q95,
            "sentence": law.sentence()}


def _shown(value: Any, digits: int = 3) -> str:
    if value is None:
        return NOT_RECORDED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def card_markdown(card: Mapping[str, Any], heading: str = "##") -> str:
    """The card (``site_card``) as markdown, its title at ``heading`` level."""
    sub = heading + "#"
    model, data, metrics = card["model"], card["data"], card["metrics"]
    interval, inputs, domain = card["interval"], card["inputs"], card["domain"]
    selection, versions, summary = card["selection"], card["versions"], card["field_summary"]
    lines = [f"{heading} Model card: site {card['site']}", ""]
    lines.append(f"Bundle `{_shown(card.get('bundle'))}`, country {_shown(card.get('country'))}.")
    lines += ["", f"{sub} Model", ""]
    lines.append(f"- method **{model['method']}** ({model['family']}, key `{model['model_key']}`,"
                 f" trained on {model['trained_on']}; stored as {model['model_format']})")
    lines.append(f"- trained at {_shown(model.get('trained_at'))} (source: "
                 f"{_shown(model.get('trained_at_source'))})")
    lines.append(f"- chosen by: {_shown(selection.get('rule'))}")
    lines.append(f"- candidates within one s.e.: {_shown(selection.get('candidates'))}")
    lines += ["", f"{sub} Data", ""]
    lines.append(f"- calibration samples (n): {_shown(data.get('calibration_samples'))}; "
                 f"validation samples: {_shown(data.get('validation_samples'))}; test "
                 f"samples: {_shown(data.get('test_samples'))}; validated site rows: "
                 f"{_shown(data.get('site_rows'))}")
    libraries = data.get("library_rows")
    if libraries:
        lines.append("- libraries (validated rows): " + ", ".join(
            f"{name} {count}" for name, count in sorted(libraries.items())))
    else:
        lines.append(f"- libraries: {NOT_RECORDED if libraries is None else 'none'}")
    lines += ["", f"{sub} Metrics (SOC %)", ""]
    test = metrics["test"]
    lines.append(f"- nested out-of-fold calibration RMSE {_shown(metrics['nested_calibration_rmse'])}"
                 f" (s.e. {_shown(selection.get('cal_rmse_se'))}; un-nested "
                 f"{_shown(selection.get('cal_rmse_unnested'))})")
    lines.append("- test: " + ", ".join(f"{name} {_shown(test.get(name))}" for name in (
        "rmse", "me", "ccc", "r2", "rpiq")) + f"; best method on test "
        f"{_shown(metrics.get('best_on_test'))} (winner was best: "
        f"{_shown(selection.get('winner_was_best_on_test'))})")
    lines += ["", f"{sub} Uncertainty", ""]
    lines.append(f"- per spectrum: **{interval['method']}** at {interval['level']:.0%}, from "
                 f"{interval['calibration_residuals']} residuals of "
                 f"{_shown(interval.get('calibration_set'))};"
                 f" measured test coverage {_shown(interval['test_coverage'])}, mean width "
                 f"{_shown(interval['test_mean_width'])}")
    if interval.get("description"):
        lines.append(f"- {interval['description']}")
    if interval.get("coverage_spread"):
        sentence = interval["coverage_spread"]["sentence"]
        lines.append(f"- {sentence[0].upper()}{sentence[1:]}")
    lines.append(f"- field mean: {summary['method']}; this site's residuals: mean "
                 f"{_shown(summary['mean_residual'])}, s.d. {_shown(summary['residual_sd'])}")
    lines += ["", f"{sub} Inputs and domain", ""]
    grid = inputs["wavelengths_nm"]
    lines.append(f"- spectra over {grid['first']:g}-{grid['last']:g} nm ({grid['bands']} bands, "
                 f"every {grid['step']:g} nm); preprocessing {_shown(inputs['preprocessing'])}")
    lines.append(f"- domain: {domain['components']} principal components, T2 limit "
                 f"{_shown(domain['t2_limit'])}, Q limit {_shown(domain['q_limit'], 6)}; "
                 f"{domain['rule']}")
    lines += ["", f"{sub} Versions", ""]
    lines.append(f"- packaged {_shown(versions['packaged_at'])}; code "
                 f"`{_shown(versions['code_version'])}`; data `{_shown(versions['data_version'])}`"
                 f" ({_shown(versions['data_version_of'])}); training data "
                 f"`{_shown(versions['training_data_hash'])}`")
    for name, digest in versions["model_files_sha256"].items():
        lines.append(f"- `{name}` sha256 `{digest}`")
    return "\n".join(lines) + "\n"
