"""The report's study sections, each a list of Markdown lines: every model on the test sets in
the layout of Table 3 of Shen et al. (2022, ISPRS J. Photogramm. Remote Sens. 188, 190-200),
with the registry's paper figures beside ours; the winners and their rule; the prediction
intervals (``localsoc.pipelines.evaluate.scoring``) and the applicability domain."""

from __future__ import annotations

import numpy as np
import pandas as pd

from localsoc.methods import methods, reference_method
from localsoc.uncertainty import split_conformal_coverage_law

METHODS_NOTE = (
    "RMSE, ME (estimate minus observed), Lin's CCC and RMSE-based figures in SOC %; "
    "dRMSE against {reference}. 'nested cal. RMSE' is the out-of-fold RMSE on the n "
    "calibration samples with every label-driven choice (RS-LOCAL selection, PLSR "
    "components) redone inside each outer fold; it picks the winner. 'un-nested' is the "
    "same models' own out-of-fold RMSE (optimistic where RS-LOCAL chose library samples "
    "for those labels). Coverage and width are those of the served {level} "
    "interval on the test set.")
RULE_NOTE = (
    "\n'rule's nested RMSE' scores the winner rule itself: in each outer fold the rule "
    "picks a model from the other folds' nested estimates, and that fold's samples are "
    "scored by the pick ('picks per fold'). It pays for choosing the lowest of a dozen "
    "noisy RMSEs, which the winner's own nested RMSE does not.")
OPTIMISM_NOTE = (
    "\nWhat remains optimistic: the nested estimates redo the RS-LOCAL selection, the "
    "PLSR components and a transfer's base fold in every outer fold, but keep the CNN "
    "architecture (the best of the search's trials on all n), a transfer model's frozen "
    "depth and MBL's neighbourhood size as chosen on all n; and the winner is the minimum over a dozen "
    "noisy estimates from n samples (an RMSE from 30 samples has a standard error of about "
    "13 %). Kennard-Stone puts the spectral extremes in the calibration set, so a nested "
    "calibration RMSE above the test RMSE is expected; see the per-method ratio below.")
INTERVALS_NOTE = (
    "Served interval: **{interval}** at {level}, lower bound clipped at 0. validation: "
    "split conformal on each site's validation samples (random samples of the field, "
    "never trained on and not used to choose the winner): estimate +- the "
    "ceil((m + 1)(1 - alpha))-th smallest validation |residual| of the served model; "
    "coverage >= the level for a new random sample of the same field (marginally over "
    "the validation draw{spread}); a site "
    "without validation samples falls back to the interval its rows name. The others "
    "come from the nested out-of-fold calibration residuals. cv_plus: CV+ (Barber et al. 2021) "
    "from each outer-fold model's estimate of the spectrum: a method with a nested "
    "procedure is represented and served by its outer-fold ensemble (the K models whose "
    "residuals the interval uses; 'RMSE full refit' below is the model refitted on all n, "
    "for comparison), a model that never saw the n by itself (split conformal); guarantee "
    ">= 1 - 2 alpha for exchangeable data. normalised: estimate +- q sigma(x) with a "
    "difficulty sigma known without the label (Lei et al. 2018); plain: one conformal "
    "half-width. Kennard-Stone calibration samples are the spectral extremes, not "
    "exchangeable with the test samples, so every interval is judged by its coverage on "
    "test. Coverage and mean width (SOC %) per interval:")
#: The interval columns of the uncertainty table, in the order shown (those the study table
#: has; the evaluate stage's ``scoring.INTERVALS``).
SHOWN_INTERVALS = ("validation", "cv_plus", "normalised", "plain", "normalised_cv_plus")


def markdown_table(frame: pd.DataFrame, floats: str = "{:.3f}") -> str:
    """A Markdown table of ``frame``: floats formatted with ``floats``, NaN as an empty cell."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for value in record:
            if isinstance(value, float | np.floating):
                cells.append("" if np.isnan(value) else floats.format(value))
            else:
                cells.append(str(value))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([header, rule, *rows])


def served_level(study_metrics: pd.DataFrame) -> str:
    """The served interval's level as the report writes it ('90 %')."""
    return f"{100 * float(study_metrics['interval_level'].iloc[0]):.0f} %"


def validation_spread_sentence(study_metrics: pd.DataFrame) -> str:
    """'; <how one site's realised coverage varies>' for the sites served the validation
    interval, one clause per validation count m (``split_conformal_coverage_law``); empty when
    none is."""
    if not {"interval", "n_validation", "interval_level"} <= set(study_metrics):
        return ""
    served = study_metrics.loc[study_metrics["interval"] == "validation"]
    clauses = []
    for (m, level), rows in served.groupby(["n_validation", "interval_level"], sort=True):
        sites = ", ".join(sorted(set(rows["site"].astype(str))))
        clauses.append(f"{sites}: " + split_conformal_coverage_law(int(m), float(level))
                       .sentence())
    return "; " + "; ".join(clauses) if clauses else ""


def methods_section(study_metrics: pd.DataFrame, study_table: str, seed: int) -> list[str]:
    """Every model on each site's test set, with each registry method's mean dRMSE beside the
    paper's figure where the registry gives one (``Method.paper_drmse``)."""
    reference = reference_method().label
    out = ["", "## Models on each site's test set (layout of the paper's Table 3)", "",
           METHODS_NOTE.format(reference=reference, level=served_level(study_metrics)), "",
           study_table]
    for entry in methods():
        if entry.paper_drmse is None:
            continue
        rows = study_metrics.loc[study_metrics["method"] == entry.label]
        drmse = rows["drmse"]
        if len(drmse):
            out.append(f"**{entry.label} mean dRMSE against {reference} over {len(drmse)} sites: "
                       f"{drmse.mean():+.1f} %** (seed {seed}; the paper reports "
                       f"{entry.paper_drmse:+.1f} %). Per site: "
                       + ", ".join(f"{s} {v:+.1f} %" for s, v in zip(rows["site"], drmse,
                                                                   strict=True)) + ".")
    return out + ["", "![dRMSE per method and site](figures/study/drmse_by_method.png)", "",
                  f"*Figure: each method's test RMSE against {reference}'s on the same site "
                  f"(dRMSE, %; above 0: lower RMSE than {reference}), one bar per site.*", ""]


def _winner_row(site: str, w: dict) -> dict:
    test_rmse = w["test_metrics"]["rmse"]
    return {
        "site": site, "winner": w["method"], "nested cal. RMSE": w["cal_rmse"],
        "s.e.": w.get("cal_rmse_se", np.nan),
        "lowest nested RMSE": w.get("lowest_cal_rmse", {}).get("method", w["method"]),
        "validation RMSE": (np.nan if w.get("val_rmse") is None else w["val_rmse"]),
        "test RMSE": test_rmse,
        "nested / test": w["cal_rmse"] / test_rmse if test_rmse else np.nan,
        "rule's nested RMSE": (np.nan if w.get("cal_rmse_selection") is None
                               else w["cal_rmse_selection"]),
        "picks per fold": ", ".join(w.get("selection_picks", [])),
        "best on test": w["best_on_test"],
        "winner was best on test": {True: "yes", False: "no"}.get(
            w["winner_was_best_on_test"], "no test set"),
        "test coverage": w["test_metrics"]["coverage"],
        "mean width": w["test_metrics"]["mean_width"],
    }


def winners_section(study_winners: dict) -> list[str]:
    """Each site's winner with its nested, validation and test RMSE, and the rule."""
    out = ["## Winners (chosen without the test set)", ""]
    if not any(w.get("has_test", True) for w in study_winners.values()):
        out += ["No test set (split.no_test): every labelled sample calibrated; the figures "
                "below are cross-validated only.", ""]
    out.append(markdown_table(pd.DataFrame([_winner_row(site, w)
                                            for site, w in sorted(study_winners.items())])))
    rule = next(iter(study_winners.values()), {}).get("rule")
    if rule:
        out += [f"\nRule: {rule}", RULE_NOTE]
    return out + [OPTIMISM_NOTE, "",
                  "![winners: estimated vs observed](figures/study/winners_observed_estimated.png)",
                  "", "*Figure: each site's winner on its test samples: estimated against "
                  "observed SOC, the served interval of each estimate (grey bars) and the 1:1 "
                  "line.*", ""]


def uncertainty_section(study_metrics: pd.DataFrame, transfer_depths: pd.DataFrame) -> list[str]:
    """The served interval, every interval's test coverage and width per method, the test share
    out of the applicability domain; the transfer's CV RMSE per frozen depth."""
    interval = (str(study_metrics["interval"].iloc[0]) if "interval" in study_metrics
                else "plain")
    out = ["## Uncertainty and applicability domain", "",
           INTERVALS_NOTE.format(interval=interval, level=served_level(study_metrics),
                                 spread=validation_spread_sentence(study_metrics)), ""]
    columns = {"site": "site", "method": "method", "cal_rmse": "nested cal. RMSE",
               "cal_rmse_unnested": "un-nested", "val_rmse": "validation RMSE",
               "rmse": "test RMSE", "rmse_full_refit": "RMSE full refit"}
    for name in SHOWN_INTERVALS:
        if f"coverage_{name}" in study_metrics:
            columns[f"coverage_{name}"] = f"cov. {name}"
            columns[f"width_{name}"] = f"width {name}"
    columns["out_of_domain_share"] = "test share out of domain"
    unc = study_metrics[[c for c in columns if c in study_metrics]].copy()
    if {"cal_rmse", "rmse"} <= set(unc):
        after = "rmse_full_refit" if "rmse_full_refit" in unc else "rmse"
        unc.insert(unc.columns.get_loc(after) + 1, "nested / test",
                   unc["cal_rmse"] / unc["rmse"])
    out.append(markdown_table(unc.rename(columns=columns)))
    if len(transfer_depths):
        out += ["", "## Representation transfer: CV RMSE per frozen depth", "",
                markdown_table(transfer_depths)]
    return out
