"""Compare the outputs of two study runs file by file (a refactoring must change none).

    python bench/compare_studies.py OLD_PROJECT NEW_PROJECT

Prints SAME or DIFF per output of the study (tables, metrics, winners, predictions, selections,
folds, trial tables); for tables, the columns that differ. Wall-clock columns (``seconds``) are
reported but not counted. Exits 1 when anything else differs.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
from pathlib import Path

import pandas as pd

OUTPUTS = (
    "data/08_reporting/study_metrics.csv",
    "data/08_reporting/study_table.md",
    "data/08_reporting/study_winners.json",
    "data/08_reporting/metrics.json",
    "data/08_reporting/data_summary.csv",
    "data/07_model_output/study_predictions.csv",
    "data/07_model_output/transfer_depths.csv",
    "data/07_model_output/rslocal_history.csv",
    "data/07_model_output/site_search_trials.csv",
    "data/07_model_output/library_search_trials.csv",
    "data/05_model_input/rslocal_selection.csv",
    "data/05_model_input/site_folds.csv",
    "data/05_model_input/site_calibration.parquet",
    "data/05_model_input/site_test.parquet",
)
WALL_CLOCK = {"seconds"}


def compare(old: Path, new: Path) -> int:
    failures = 0
    for relative in OUTPUTS:
        a, b = old / relative, new / relative
        if not a.exists() or not b.exists():
            print(f"MISSING {relative} (old: {a.exists()}, new: {b.exists()})")
            failures += 1
            continue
        if filecmp.cmp(a, b, shallow=False):
            print(f"SAME    {relative}")
            continue
        if a.suffix in (".csv", ".parquet"):
            read = pd.read_csv if a.suffix == ".csv" else pd.read_parquet
            left, right = read(a), read(b)
            if list(left.columns) != list(right.columns) or len(left) != len(right):
                print(f"DIFF    {relative}: shape/columns {left.shape} vs {right.shape}")
                failures += 1
                continue
            columns = [c for c in left.columns if not left[c].equals(right[c])]
            counted = [c for c in columns if c not in WALL_CLOCK]
            status = "DIFF   " if counted else "SAME*  "
            print(f"{status} {relative}: differing columns {columns}"
                  + ("" if counted else " (wall clock only)"))
            failures += bool(counted)
            continue
        print(f"DIFF    {relative}")
        failures += 1
    print(f"{failures} output(s) differ")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args()
    return compare(args.old, args.new)


if __name__ == "__main__":
    sys.exit(main())
