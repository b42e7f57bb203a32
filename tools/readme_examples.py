"""Regenerate the README's example outputs from a finished `make run`.

    python tools/readme_examples.py [--project .] [--check]

Two blocks of README.md are written here, never by hand: ``make-run-table`` (the winners and one
site's study table, as `make run` prints them) and ``predict-example`` (the served bundle's
answer to ``POST /predict`` for one test spectrum, computed by the service's own predictor). Each
block's first line records the outputs it was made from and their md5, the same md5 that
dvc.lock records for them; ``tests/test_docs.py`` fails when the committed dvc.lock records other
outputs, i.e. when the README no longer shows what `make run` gives. ``--check`` exits 1 when
the README differs from what this project's outputs give.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import textwrap
from pathlib import Path

import yaml

README = Path(__file__).resolve().parents[1] / "README.md"
TABLE = "data/08_reporting/study_table.md"
WINNERS = "data/08_reporting/study_winners.json"
PREDICTIONS = "data/07_model_output/study_predictions.csv"
TEST_ROWS = "data/05_model_input/site_test.parquet"
SPECTRA = "data/02_intermediate/sites_ssl.parquet"  # validated reflectance, as a user sends it
TAG = "data/06_models/bento_tag.txt"
#: Each block and the outputs it is made from (their md5s are recorded in the block).
BLOCKS = {"make-run-table": (TABLE, WINNERS), "predict-example": (WINNERS, PREDICTIONS)}
#: The demo site the examples show.
EXAMPLE_SITE = "usa_site"
BEGIN = re.compile(r"<!-- BEGIN (?P<name>[\w-]+):(?P<meta>[^>]*)-->")


def lock_md5s(lock_text: str) -> dict[str, str]:
    """Every stage output's path -> md5, as a dvc.lock text records them."""
    lock = yaml.safe_load(lock_text) or {}
    return {out["path"]: out.get("md5", "") for stage in lock.get("stages", {}).values()
            for out in stage.get("outs", [])}


def block_sources(readme: str, name: str) -> dict[str, str]:
    """The outputs (path -> md5) a README block records it was made from; {} when none."""
    for match in BEGIN.finditer(readme):
        if match.group("name") == name:
            return dict(re.findall(r"([\w./-]+)@md5=([0-9a-f]{32})", match.group("meta")))
    return {}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def site_table(project: Path, site: str) -> str:
    """One site's section of the study table (markdown), as `make run` prints it."""
    text = (project / TABLE).read_text()
    sections = re.split(r"\n(?=#+ )", text)
    for section in sections:
        if section.lstrip("# ").startswith(site):
            return section.strip()
    raise SystemExit(f"{TABLE} has no section for {site}")


def winners_table(project: Path) -> str:
    """The winners, one line per site, with the columns `make run` prints."""
    winners = json.loads((project / WINNERS).read_text())
    lines = ["| site | winner | nested cal. RMSE | test RMSE | coverage | mean width |",
             "|---|---|---|---|---|---|"]
    for site, winner in sorted(winners.items()):
        test = winner["test_metrics"]
        cells = [site, winner["method"], f"{winner['cal_rmse']:.3f}",
                 "-" if test["rmse"] is None else f"{test['rmse']:.3f}",
                 "-" if test["coverage"] is None else f"{test['coverage']:.2f}",
                 "-" if test["mean_width"] is None else f"{test['mean_width']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_block(project: Path) -> str:
    return (f"Winners (chosen on nested calibration RMSE, never on the test set):\n\n"
            f"{winners_table(project)}\n\nThe table of one site ({EXAMPLE_SITE}; every column is "
            f"explained in [docs/methods.md](docs/methods.md)):\n\n{site_table(project, EXAMPLE_SITE)}")


def predict_block(project: Path) -> str:
    """The served bundle's answer for the site's first test spectrum, checked against the
    study's estimate of the same spectrum by the same (served) method."""
    import bentoml
    import pandas as pd

    from localsoc.quiet_start import import_tensorflow_quietly

    import_tensorflow_quietly()
    from localsoc.serving.bundle import read_stored_bundle, with_store_times
    from localsoc.serving.predictor import BundlePredictor

    winners = json.loads((project / WINNERS).read_text())
    test = pd.read_parquet(project / TEST_ROWS, columns=["sample_id", "site", "holdout"])
    sample = test[(test["site"] == EXAMPLE_SITE) & (test["holdout"] == "test")].iloc[0]
    spectra = pd.read_parquet(project / SPECTRA)
    row = spectra[spectra["sample_id"] == sample["sample_id"]].iloc[0]
    bands = [c for c in spectra.columns if re.fullmatch(r"nm_\d+(\.\d+)?", str(c))]
    stored = bentoml.models.get((project / TAG).read_text().strip())
    bundle = read_stored_bundle(stored)  # as the service's load_predictor: with the store's times
    with_store_times(bundle.manifest, dict(stored.info.metadata or {}))
    predictor = BundlePredictor(bundle, str(stored.tag))
    answer = predictor.answer(EXAMPLE_SITE, [float(b[3:]) for b in bands],
                              reflectance=[[float(row[b]) for b in bands]])
    body = json.loads(answer.model_dump_json()) if hasattr(answer, "model_dump_json") else answer
    study = pd.read_csv(project / PREDICTIONS)
    estimate = body["predictions"][0]["soc_percent"]
    _check_served(study, winners[EXAMPLE_SITE]["method"], row["sample_id"], estimate)
    return (f"For test sample {row['sample_id']} (lab value {row['soc']:.2f} %):\n\n```json\n"
            f"{_short_json(body)}\n```")


def _check_served(study, method: str, sample_id: str, estimate: float) -> None:
    """The served estimate must be the study's estimate of the same spectrum by the winner."""
    rows = study[(study["sample_id"] == sample_id) & (study["method"] == method)]
    if rows.empty or abs(float(rows.iloc[0]["estimated"]) - estimate) > 1e-6:
        raise SystemExit(f"the served estimate {estimate} of {sample_id} is not the study's "
                         f"{method} estimate {rows.iloc[0]['estimated'] if len(rows) else None}")


def _short_json(body: dict) -> str:
    """The answer, one top-level key per line (wrapped at 100 columns), floats rounded."""
    def rounded(value):
        if isinstance(value, float):
            return round(value, 4)
        if isinstance(value, list):
            return [rounded(v) for v in value]
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return value
    lines = []
    for key, value in body.items():
        text = f'"{key}": {json.dumps(rounded(value))}'
        lines.extend(textwrap.wrap(text, width=98, initial_indent=" ", subsequent_indent="   ",
                                   break_long_words=False, break_on_hyphens=False))
        lines[-1] += ","
    lines[-1] = lines[-1][:-1]
    return "{\n" + "\n".join(lines) + "\n}"


def render(project: Path, readme: str) -> str:
    """The README with both blocks regenerated from ``project``'s outputs."""
    makers = {"make-run-table": table_block, "predict-example": predict_block}
    for name, sources in BLOCKS.items():
        meta = " ".join(f"{s}@md5={md5(project / s)}" for s in sources)
        begin = (f"<!-- BEGIN {name}: generated by tools/readme_examples.py from {meta}; "
                 f"do not edit -->")
        pattern = re.compile(rf"<!-- BEGIN {name}:.*?-->.*?<!-- END {name} -->", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no block {name}")
        block = f"{begin}\n{makers[name](project)}\n<!-- END {name} -->"
        readme = pattern.sub(lambda _, text=block: text, readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=README.parent)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = parser.parse_args(argv)
    current = README.read_text()
    fresh = render(args.project.resolve(), current)
    if args.check:
        print("README examples up to date" if fresh == current else "README examples stale")
        return int(fresh != current)
    README.write_text(fresh)
    print(f"README.md examples written from {args.project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
