"""Winner rules replayed on the saved outputs of ``bench/real_fields.py``: which rule would have
served the better model, on every field-seed, and chosen leave-one-field-out.

    python bench/real_rules.py [--workdir /tmp/localsoc_fields] [--fields ...] [--seeds ...]
                               [--methods "PLSR Local" Local ...] [--rules today ...] [--picks]

Refits nothing: per field-seed (``WORKDIR/<field>/seed_<seed>/data``) it reads study_metrics.csv
(each method's nested calibration RMSE and s.e., test RMSE, the served interval's test
coverage), study_predictions.csv (calibration rows: each method's nested out-of-fold estimates;
validation rows: its estimates of the validation samples) and study_winners.json, and picks a
model among the servable methods (``--methods``: only these, e.g. today's methods replayed from
a run of new code whose outputs for them are unchanged) by each rule of ``RULES``:

- today: ``evaluate.apply_rule`` (lowest nested RMSE, the simplest within one s.e.);
- lowest nested: the lowest nested calibration RMSE, no s.e.;
- weighted field / weighted validation: ``apply_rule`` on the nested RMSE weighted to the field
  (the density ratio of the validation + test spectra, or of the validation spectra only, to
  the calibration spectra; bench/validation_rule.py's weights, no label of a test row read);
  lowest weighted field: its lowest, no s.e.;
- validation, lowest validation: the rule / the lowest RMSE on the validation samples alone;
- pooled, lowest pooled: on the nested calibration residuals and the validation residuals
  together (n + m samples);
- PLSR Local: always PLSR Local (the reference every ratio is taken against).

Per rule it prints #29's figures over the field-seeds (mean test RMSE ratio to PLSR Local, the
share at most 1.03, the served interval's coverage pooled over the test samples: the picked
model's validation interval), then leave-one-field-out: for each field, the rule with the
lowest mean ratio on the other fields' field-seeds (ties: the earlier in ``RULES``) is applied
to the held-out field's seeds; the pooled figures of those picks are the LOFO figures.
The rules that read the validation labels also set the interval's width from them: their
coverage is measured on test as for the others, but it is the figure to watch.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine_line, print_frame  # noqa: E402
from bench.real_fields import OUTPUTS, PLSR_LOCAL, summary_line  # noqa: E402

# bench/validation_rule.py's rule on given residuals and its density-ratio weights (private
# there; reused, not copied)
from bench.validation_rule import _pick as pick_by  # noqa: E402
from bench.validation_rule import _shift_weights as shift_weights  # noqa: E402

from localsoc.methods import servable_families  # noqa: E402
from localsoc.pipelines.evaluate.nodes import apply_rule  # noqa: E402


@dataclass
class Case:
    """One site of one field-seed: its servable methods (metrics rows), their nested
    calibration and validation absolute residuals, and the calibration weights per target."""

    field: str
    seed: int
    served: str
    servable: pd.DataFrame
    calibration: dict[str, np.ndarray]
    validation: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]


def _lowest(servable: pd.DataFrame, residuals: dict[str, np.ndarray],
            weights: np.ndarray | None = None) -> str:
    scores = [float(np.sqrt(np.average(residuals[m] ** 2, weights=weights)))
              for m in servable["method"]]
    return str(servable["method"].iloc[int(np.argmin(scores))])


def _pooled(case: Case) -> dict[str, np.ndarray]:
    return {m: np.concatenate([case.calibration[m], case.validation[m]])
            for m in case.servable["method"]}


RULES: dict[str, Callable[[Case], str]] = {
    "today": lambda c: str(apply_rule(c.servable, "simplest_within_one_se")[0]["method"]),
    "lowest nested": lambda c: str(c.servable.sort_values("cal_rmse", kind="stable")
                                   .iloc[0]["method"]),
    "weighted field": lambda c: pick_by(c.servable, c.calibration, c.weights["field"]),
    "lowest weighted field": lambda c: _lowest(c.servable, c.calibration, c.weights["field"]),
    "weighted validation": lambda c: pick_by(c.servable, c.calibration,
                                             c.weights["validation"]),
    "validation": lambda c: pick_by(c.servable, c.validation),
    "lowest validation": lambda c: _lowest(c.servable, c.validation),
    "pooled": lambda c: pick_by(c.servable, _pooled(c)),
    "lowest pooled": lambda c: _lowest(c.servable, _pooled(c)),
    "PLSR Local": lambda c: PLSR_LOCAL,
}


def _residuals(rows: pd.DataFrame, role: str, methods: list[str],
               ids: list[str] | None = None) -> dict[str, np.ndarray]:
    """Per method, |observed - estimated| of its ``role`` rows, in the order of ``ids`` (default:
    sorted sample ids)."""
    out = {}
    for method in methods:
        group = rows.loc[(rows["role"] == role) & (rows["method"] == method)]
        group = group.set_index(group["sample_id"].astype(str))
        group = group.loc[ids] if ids is not None else group.sort_index()
        out[method] = np.abs((group["observed"] - group["estimated"]).to_numpy(np.float64))
    return out


def cases(out: Path, seed: int, methods: list[str] | None) -> list[Case]:
    """The sites (the fields) of one seed's outputs in ``out`` (a project folder)."""
    metrics = pd.read_csv(out / OUTPUTS[1])
    winners = json.loads((out / OUTPUTS[2]).read_text())
    predictions = pd.read_csv(out / OUTPUTS[0], low_memory=False)
    weights = shift_weights(out) or {}
    found = []
    for site, winner in winners.items():
        servable = metrics.loc[(metrics["site"] == site)
                               & metrics["family"].isin(servable_families())]
        if methods:
            servable = servable.loc[servable["method"].isin(methods)]
        servable = servable.reset_index(drop=True)
        rows = predictions.loc[predictions["site"] == site]
        names = list(servable["method"])
        targets = weights.get(site, {})
        ids = next(iter(targets.values()))[0] if targets else None
        found.append(Case(site, seed, winner["method"], servable,
                          _residuals(rows, "calibration", names, ids),
                          _residuals(rows, "validation", names),
                          {target: w for target, (_, w) in targets.items()}))
    return found


def replay(all_cases: list[Case]) -> pd.DataFrame:
    """One row per case and rule: the pick, its test RMSE ratio to PLSR Local, its served
    interval's test coverage and the case's test samples."""
    rows = []
    for case in all_cases:
        by = case.servable.set_index("method")
        plsr = float(by.loc[PLSR_LOCAL, "rmse"])
        for name, rule in RULES.items():
            try:
                pick = rule(case)
            except KeyError:  # a rule whose inputs this case lacks (e.g. no weights)
                continue
            rows.append({"field": case.field, "seed": case.seed, "rule": name, "pick": pick,
                         "ratio": float(by.loc[pick, "rmse"]) / plsr,
                         "coverage": float(by.loc[pick, "coverage"]),
                         "n_test": int(by.loc[pick, "n_test"])})
        best = case.servable.loc[case.servable["rmse"].idxmin()]
        rows.append({"field": case.field, "seed": case.seed, "rule": "oracle (test)",
                     "pick": best["method"], "ratio": float(best["rmse"]) / plsr,
                     "coverage": float(best["coverage"]), "n_test": int(best["n_test"])})
    return pd.DataFrame(rows)


def leave_one_field_out(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per field, the rows of the rule with the lowest mean ratio on the other fields."""
    rules = [r for r in RULES if r in set(table["rule"])]
    chosen, picked = {}, []
    for field in sorted(table["field"].unique()):
        others = table.loc[table["field"] != field]
        means = others.groupby("rule")["ratio"].mean()
        best = min(rules, key=lambda r: (means.get(r, np.inf), rules.index(r)))
        chosen[field] = best
        picked.append(table.loc[(table["field"] == field) & (table["rule"] == best)])
    return pd.concat(picked, ignore_index=True), chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localsoc_fields"))
    parser.add_argument("--fields", nargs="+", help="only these fields (default: every one)")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: all)")
    parser.add_argument("--methods", nargs="+",
                        help="only these servable methods compete (default: every one)")
    parser.add_argument("--rules", nargs="+", choices=list(RULES),
                        help="only these rules (and the oracle; default: every rule)")
    parser.add_argument("--picks", action="store_true", help="print every rule's picks")
    args = parser.parse_args()
    print(machine_line())
    all_cases = []
    for metrics in sorted(args.workdir.glob(f"*/seed_*/{OUTPUTS[1]}")):
        out = metrics.parents[2]
        field, seed = out.parent.name, int(out.name.removeprefix("seed_"))
        if (args.fields and field not in args.fields) or (args.seeds and seed not in args.seeds):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            all_cases += cases(out, seed, args.methods)
    if not all_cases:
        raise SystemExit(f"no field-seed outputs under {args.workdir}")
    table = replay(all_cases)
    if args.rules:
        table = table.loc[table["rule"].isin([*args.rules, "oracle (test)"])]
    today = table.loc[table["rule"] == "today"]
    served = {(c.field, c.seed): c.served for c in all_cases}
    agree = sum(served[(r.field, r.seed)] == r.pick for r in today.itertuples())
    print(f"{len(all_cases)} field-seeds from {args.workdir}; today's rule replayed agrees with "
          f"the served model at {agree} of {len(today)}"
          + (f" (methods: {', '.join(args.methods)})" if args.methods else ""))
    order = [r for r in [*RULES, "oracle (test)"] if r in set(table["rule"])]
    if args.picks:
        picks = table.pivot_table(index=["field", "seed"], columns="rule", values="pick",
                                  aggfunc="first")[order]
        print_frame(picks.reset_index(), "\nPicks per field-seed:")
        ratios = table.pivot_table(index=["field", "seed"], columns="rule", values="ratio")
        print_frame(ratios[order].reset_index().round(3), "\nTest RMSE / PLSR Local's:")
    print("\nPer rule, over every field-seed:")
    for rule in order:
        print(summary_line(table.loc[table["rule"] == rule], rule))
    print("\nPer rule and field, mean ratio to PLSR Local over seeds:")
    print_frame(table.pivot_table(index="rule", columns="field", values="ratio")
                .loc[order].round(3).reset_index())
    lofo, chosen = leave_one_field_out(table.loc[table["rule"] != "oracle (test)"])
    print("\nLeave one field out among " + ", ".join(r for r in order if r != "oracle (test)")
          + "\n(the rule best on the other fields, applied to the field):")
    for field, rule in chosen.items():
        print(f"  {field}: {rule}")
    print(summary_line(lofo, "LOFO"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
