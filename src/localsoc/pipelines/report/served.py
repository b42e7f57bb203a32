"""The report's sections on what is served, each a list of Markdown lines: each site at a glance
(the served model, its test RMSE beside local PLSR's, its interval and measured coverage), the
field summary (``localsoc.field``), and the model cards (``localsoc.serving.card``) with the
method paragraphs they share written once and the model files' SHA-256s in a collapsed
appendix."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from localsoc.field import METHOD as FIELD_METHOD
from localsoc.field import optional_columns, site_field_summary
from localsoc.methods import Method, methods
from localsoc.pipelines.report.sections import markdown_table
from localsoc.serving.card import card_markdown, site_card

NO_BUNDLE = "No packaged bundle was given: run the package stage before the report."
GLANCE_HEADING = "## Each site at a glance"
FIELD_HEADING = "## Field summary"
CARDS_HEADING = "## Model cards"
#: Where a bundle without times (the same code, data and seed give the same bundle) keeps them.
RUN_TIMES = ("not in the bundle, so that the same code, data and seed give the same bundle and "
             "tag: `bentoml models get TAG` shows packaged_at, trained_at per site and the git "
             "commit (code_commit); data/06_models/<collection>.run.json, when each model of a "
             "collection was trained")
FIELD_COLUMNS = {
    "n_samples": "N", "soc_percent": "SOC % (mean)", "mean_estimate": "mean estimate",
    "bias_correction": "bias correction", "sampling_se": "sampling s.e.",
    "model_se": "model s.e.", "stock_t_ha": "stock t C/ha", "stock_lower": "stock lower",
    "stock_upper": "stock upper"}


def local_plsr_method() -> Method | None:
    """The registry's PLSR on the site's own calibration samples (family plsr, data n): the
    baseline a soil lab would fit; None when the registry has none."""
    return next((m for m in methods() if m.family == "plsr" and m.data == "n"), None)


def _served_rows(manifest: dict | None, study_metrics: pd.DataFrame) -> list[dict]:
    """Per site the served model (the bundle's; without one, the study's winner)."""
    if manifest:
        return [{"site": site, "method": entry["method"], "family": entry.get("family"),
                 "trained_on": entry.get("trained_on"),
                 "interval": entry.get("interval", {}).get("method", "plain"),
                 "level": float(entry.get("interval", {}).get("level", np.nan)),
                 **{k: (entry.get("test_metrics") or {}).get(k)
                    for k in ("rmse", "coverage", "mean_width")}}
                for site, entry in sorted(manifest["sites"].items())]
    winners = study_metrics.loc[study_metrics["winner"].astype(bool)]
    return [{"site": row["site"], "method": f"{row['method']} (not packaged)",
             "family": row.get("family"), "trained_on": row.get("trained_on"),
             "interval": row.get("interval", "plain"), "level": row.get("interval_level"),
             "rmse": row["rmse"], "coverage": row["coverage"],
             "mean_width": row["mean_width"]}
            for _, row in winners.sort_values("site").iterrows()]


def glance_section(manifest: dict | None, study_metrics: pd.DataFrame) -> list[str]:
    """The report's first table: per site the served model, its test RMSE against local
    PLSR's on the same test samples, its interval and the interval's measured test coverage
    and mean width."""
    plsr = local_plsr_method()
    rows = []
    for served in _served_rows(manifest, study_metrics):
        site_metrics = study_metrics.loc[study_metrics["site"] == served["site"]]
        baseline = (site_metrics.loc[site_metrics["method"] == plsr.label, "rmse"]
                    if plsr is not None else pd.Series(dtype=float))
        base_rmse = float(baseline.iloc[0]) if len(baseline) else np.nan
        rmse = np.nan if served["rmse"] is None else float(served["rmse"])
        row = {"site": served["site"], "served model": f"**{served['method']}**",
               "family, trained on": f"{served['family']}, {served['trained_on']}",
               "test RMSE": rmse}
        if plsr is not None:
            row[f"{plsr.label} test RMSE"] = base_rmse
            row[f"vs {plsr.label}"] = (f"{100 * (base_rmse - rmse) / base_rmse:+.0f} %"
                                       if np.isfinite([base_rmse, rmse]).all() and base_rmse else "")
        row["interval"] = f"{served['interval']}, {100 * served['level']:.0f} %"
        row["test coverage"] = (np.nan if served["coverage"] is None
                                else float(served["coverage"]))
        row["mean width"] = (np.nan if served["mean_width"] is None
                             else float(served["mean_width"]))
        rows.append(row)
    out = [GLANCE_HEADING, ""]
    if not rows:
        return out + ["No site has a winner."]
    baseline_note = (f" 'vs {plsr.label}': how much lower the served model's test RMSE is than "
                     f"{plsr.label}'s (positive: better)." if plsr is not None else "")
    low = [f"{row['site']} ({row['test coverage']:.2f})" for row, served
           in zip(rows, _served_rows(manifest, study_metrics), strict=True)
           if row["test coverage"] < served["level"]]
    below = (f" **Measured coverage below the {100 * served['level']:.0f} % level: "
             + ", ".join(low) + ".**" if low else "")
    return out + [markdown_table(pd.DataFrame(rows)), "",
                  "SOC in %, on each site's test samples (never used to choose or fit the "
                  "model). Coverage: the share of test samples whose lab value lies in the "
                  "served interval; width: its mean width." + baseline_note
                  + below + (" " + NO_BUNDLE if not manifest else "")]


def _site_field_rows(site: str, entry: dict, tested: pd.DataFrame,
                     sites_ssl: pd.DataFrame) -> tuple[list[dict], list[str]]:
    """(rows, notes) of one served site's field summary from its test rows; a note is
    (site, text)."""
    notes = []
    ids = tested["sample_id"].astype(str).to_numpy()
    interval = entry.get("interval", {})
    shared = (set(map(str, interval.get("calibration_sample_ids", []))) & set(ids)
              if interval.get("method") == "validation" else set())
    if shared:
        notes.append((site, f"{len(shared)} of the {len(ids)} summarised samples are the "
                     "validation samples whose residuals set the bias correction and the "
                     "model error, so their observed mean is not an independent check."))
    site_rows = sites_ssl.loc[sites_ssl["site"] == site]  # ids may repeat across sites
    site_rows = site_rows.assign(sample_id=site_rows["sample_id"].astype(str))
    extra = site_rows.drop_duplicates("sample_id").set_index("sample_id").reindex(ids)
    summaries = site_field_summary(entry, tested["estimated"].to_numpy(np.float64),
                                   **optional_columns(extra.reset_index()))
    observed = tested["observed"].to_numpy(np.float64)
    strata = (extra["stratum"].astype("string").str.strip().to_numpy()
              if "stratum" in extra else None)
    rows = []
    for summary in summaries:
        mask = (np.ones(len(ids), bool) if summary.stratum == "all" else
                pd.Series(strata, dtype="string").eq(summary.stratum).fillna(False)
                .to_numpy(bool))
        row = {"site": site, **summary.row(),
               "observed mean (check)": float(np.nanmean(observed[mask]))}
        row.pop("level")
        rows.append(row)
        if summary.stock is None and summary.stratum == "all":
            notes.append((site, f"no SOC stock ({summary.stock_note})."))
    return rows, notes


def field_summary_section(manifest: dict | None, study_predictions: pd.DataFrame | None,
                          sites_ssl: pd.DataFrame) -> list[str]:
    """The report's field summary: per served site, the mean SOC of its test samples (the
    site's scanned samples without lab values in this study) from the served model's estimates
    only (``localsoc.field.site_field_summary``, per stratum and with the SOC stock when the
    site table has those columns). The observed mean of the same samples is shown beside it as
    a check; it is not used to compute anything."""
    out = [FIELD_HEADING, ""]
    if not manifest or study_predictions is None:
        return out + [NO_BUNDLE]
    rows, notes = [], []
    for site, entry in sorted(manifest["sites"].items()):
        tested = study_predictions.loc[(study_predictions["site"] == site)
                                       & (study_predictions["method"] == entry["method"])
                                       & (study_predictions["role"] == "test")]
        if len(tested) < 2:
            notes.append((site, "fewer than 2 test samples, no field summary."))
            continue
        site_rows, site_notes = _site_field_rows(site, entry, tested, sites_ssl)
        rows += site_rows
        notes += site_notes
    if rows:
        level = float(next(iter(manifest["sites"].values()))["interval"]["level"])
        frame = pd.DataFrame(rows)
        empty = [c for c in ("stock_t_ha", "stock_lower", "stock_upper")
                 if c in frame and frame[c].isna().all()]  # no stock: said in the notes
        out.append(markdown_table(frame.drop(columns=empty).rename(columns={
            **FIELD_COLUMNS, "lower": f"{level:.0%} lower", "upper": f"{level:.0%} upper"})))
    texts = dict.fromkeys(text for _, text in notes)  # one line per note, its sites named
    out += ["", *(f"- {', '.join(s for s, t in notes if t == text)}: {text}" for text in texts)]
    return out + ["", '<details markdown="1">',
                  "<summary>How the field summary is computed</summary>", "",
                  f"{FIELD_METHOD[0].upper()}{FIELD_METHOD[1:]}. The samples summarised are "
                  "each site's test samples, as if scanned but not sent to the lab; their "
                  "estimates are the served model's. 'observed mean (check)' is the mean lab "
                  "value of the same samples, not used by the summary.", "", "</details>"]


def _card_without_shared_text(manifest: dict, site: str) -> tuple[dict, dict]:
    """(the site's card without its file hashes and without the paragraphs the cards share,
    {what the shared paragraph is about: its text})."""
    card = copy.deepcopy(site_card(manifest, site))
    see = "see 'What every card below shares'"
    shared = {"applicability domain": card["domain"]["rule"]}
    card["domain"]["rule"] = see
    card["field_summary"]["method"] = "see 'How the field summary is computed' at the top"
    if card["selection"].get("rule"):
        shared["how the model was chosen"] = card["selection"]["rule"]
        card["selection"]["rule"] = see
    interval = card["interval"]
    if interval.get("description"):
        shared[f"interval '{interval['method']}'"] = interval.pop("description")
    spread = interval.pop("coverage_spread", None)
    if spread:
        shared[f"interval '{interval['method']}', m = {spread['m']}"] = spread["sentence"]
    card["versions"]["model_files_sha256"] = {}
    if not card["model"].get("trained_at") and not card["versions"].get("packaged_at"):
        shared["when it was trained and packaged"] = RUN_TIMES
        card["model"]["trained_at"] = card["versions"]["packaged_at"] = "not in the bundle"
        card["model"]["trained_at_source"] = see
    return card, shared


def model_cards_section(manifest: dict | None) -> list[str]:
    """One model card per served site (``localsoc.serving.card``, the same card
    ``GET /sites/{site}/card`` serves), from the bundle's manifest only; the paragraphs every
    card shares (the interval's method, the domain rule) once before them; every model file's
    SHA-256 in a collapsed block after them."""
    out = [CARDS_HEADING, ""]
    if not manifest:
        return out + [NO_BUNDLE]
    cards, shared = [], {}
    for site in sorted(manifest["sites"]):
        card, texts = _card_without_shared_text(manifest, site)
        cards.append(card_markdown(card, "###"))
        for about, text in texts.items():
            shared[about if shared.get(about, text) == text else f"{about} ({site})"] = text
    out += ["What every card below shares:", ""]
    out += [f"- {name}: {text}" for name, text in sorted(shared.items())]
    out += ["", *cards]
    hashes = pd.DataFrame(
        [{"site": site, "file": name, "sha256": digest}
         for site in sorted(manifest["sites"])
         for name, digest in site_card(manifest, site)["versions"]["model_files_sha256"].items()])
    if len(hashes):
        out += ["<details markdown=\"1\">",
                f"<summary>SHA-256 of the served model files ({len(hashes)} files, bundle "
                f"<code>{manifest.get('tag')}</code>)</summary>", "",
                markdown_table(hashes.assign(file=[f"`{f}`" for f in hashes["file"]],
                                             sha256=[f"`{d}`" for d in hashes["sha256"]])),
                "", "</details>"]
    return out
