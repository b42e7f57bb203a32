"""`localsoc change` and `localsoc plan --campaign later`: the change of a field's mean SOC
between two campaigns of scans (``localsoc.change``), through the served model.

`change` predicts both files with the served bundle (the code ``POST /predict`` runs: the
estimates and each spectrum's domain check), pairs their locations for a paired design, and
prints and writes the change of the field and of each stratum: ``data/08_reporting/
change_<site>.csv`` (``--out``; ``localsoc.change.markdown_section`` renders it for a report)
and, per spectrum, ``data/07_model_output/change_<site>_spectra.csv`` (campaign, estimate,
in_domain, T2, Q, flags: ``q_beyond_baseline`` for a later spectrum whose Q residual is above
every baseline spectrum's). ``--baseline-bundle TAG`` predicts the baseline with the model
served then (two models: the biases no longer cancel).

`plan --campaign later` sizes a later campaign: the smallest number of scans whose minimum
detectable change is at most ``--target-change``, from the baseline file's estimates and the
served model's residuals.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

CAMPAIGNS = ("baseline", "later")
#: ``localsoc.change``'s choices and defaults, spelled here so that the CLI starts without
#: importing numpy, pandas and scipy (tests/test_change_command.py checks they agree).
DESIGNS = ("paired", "independent")
PAIR_BY = ("id", "coordinates")
LEVEL, ALPHA, POWER, PAIR_TOLERANCE_M = 0.9, 0.05, 0.8, 10.0


def _read(file: str, site: str, served, read):
    """FILE as a canonical table on the served site's grid (no carbon column needed)."""
    from localsoc.data.importers import import_wide

    wavelengths = served.wavelengths_nm
    grid = {"start_nm": float(wavelengths[0]), "stop_nm": float(wavelengths[-1]),
            "step_nm": float(wavelengths[1] - wavelengths[0])}
    carbon = read.carbon_column if read.carbon_column not in ("auto", "") else None
    table, _ = import_wide(file, grid=grid, library=site, **read.importer_options(carbon))
    if table.empty:
        raise ValueError(f"{file}: no spectra")
    return table


def _campaign(predictor, site: str, table, name: str):
    """(the ``Campaign``, its per-spectrum predictions) of one file's table."""
    import numpy as np

    from localsoc import change as change_module
    from localsoc.field import optional_columns, site_residuals
    from localsoc.workflow import predict_table

    served = predictor.site(site)
    predictions = predict_table(predictor, site, table)
    columns = optional_columns(table.reset_index(drop=True))
    campaign = change_module.Campaign(
        estimates=predictions["soc_percent"].to_numpy(np.float64),
        residuals=site_residuals(served.entry), model=f"{predictor.tag}/{served.entry['model_key']}",
        sample_ids=table["sample_id"].astype(str).tolist(), strata=columns["strata"],
        bulk_density_g_cm3=columns["bulk_density_g_cm3"], depth_cm=columns["depth_cm"],
        in_domain=predictions["in_domain"].to_numpy(bool),
        q=predictions["q"].to_numpy(np.float64))
    return campaign, predictions.assign(campaign=name)


def _predictors(project: Path, baseline_bundle: str | None):
    """(the baseline's predictor, the later's): the served bundle, or ``baseline_bundle``."""
    from localsoc.datasets.bento_bundle import load_stored_bundle
    from localsoc.serving.predictor import BundlePredictor
    from localsoc.workflow import bundle_predictor

    later = bundle_predictor(project)
    if baseline_bundle is None:
        return later, later
    bundle = load_stored_bundle(baseline_bundle)
    return BundlePredictor(bundle, bundle.manifest["tag"]), later


def compute_change(project: Path, site: str, files: dict[str, str], read, options: dict):
    """(summary table, per-spectrum table) of ``localsoc change`` (module notes)."""
    import pandas as pd

    from localsoc import change as change_module

    predictors = dict(zip(CAMPAIGNS, _predictors(project, options["baseline_bundle"]),
                          strict=True))
    tables = {name: _read(files[name], site, predictors[name].site(site), read)
              for name in CAMPAIGNS}
    campaigns, spectra = {}, []
    for name in CAMPAIGNS:
        campaigns[name], predictions = _campaign(predictors[name], site, tables[name], name)
        spectra.append(predictions)
    beyond = change_module.beyond_baseline(campaigns["baseline"].q, campaigns["later"].q)
    spectra[1]["flags"] = [";".join(filter(None, [flags, "q_beyond_baseline" if out else ""]))
                           for flags, out in zip(spectra[1]["flags"], beyond, strict=True)]
    notes = []
    if options["design"] == "paired":
        rows_b, rows_l, note = change_module.pair_locations(
            tables["baseline"], tables["later"], options["pair_by"])
        campaigns = {"baseline": campaigns["baseline"].take(rows_b),
                     "later": campaigns["later"].take(rows_l)}
        notes = [note] if note else []
    summaries = change_module.change_summary(
        campaigns["baseline"], campaigns["later"], design=options["design"],
        level=options["level"], target=options["target"], alpha=options["alpha"],
        power=options["power"], notes=notes)
    table = change_module.summary_table(summaries)
    table.insert(0, "site", site)
    return table, pd.concat(spectra, ignore_index=True)


def print_change(console, table) -> None:
    """The change table on the console, then its flags and notes and the method."""
    import numpy as np
    from rich.table import Table

    from localsoc import change as change_module

    first = table.iloc[0]
    out = Table(title=f"Change of the mean SOC, later - baseline ({first['level']:.0%} interval,"
                      f" {first['design']} design, {first['models']} model(s))")
    for name in ("stratum", "N base", "N later", "baseline %", "later %", "change %",
                 "interval", "sampling s.e.", "model s.e.", "detectable", "stock t C/ha",
                 "stock interval"):
        out.add_column(name)
    for row in table.itertuples(index=False):
        has_stock = np.isfinite(row.change_stock_t_ha)
        out.add_row(str(row.stratum), str(row.n_baseline), str(row.n_later),
                    f"{row.baseline_soc:.3f}", f"{row.later_soc:.3f}", f"{row.change_soc:+.3f}",
                    f"{row.lower:+.3f} to {row.upper:+.3f}" if np.isfinite(row.lower) else "-",
                    f"{row.sampling_se:.3f}", f"{row.model_se:.3f}",
                    f"{row.detectable_change:.3f}",
                    f"{row.change_stock_t_ha:+.2f}" if has_stock else "-",
                    f"{row.stock_lower:+.2f} to {row.stock_upper:+.2f}" if has_stock else "-")
    console.print(out)
    for row in table.itertuples(index=False):
        if row.flags:
            console.print(f"[bold red]{row.stratum}: flagged {row.flags}")
        if row.notes:
            console.print(f"[yellow]{row.stratum}: {row.notes}")
    console.print(f"method: {change_module.METHOD}")


def register(main: click.Group) -> None:
    """Add `localsoc change` to the command group (its file options are the CLI's)."""
    from localsoc.command_options import READING, file_options

    @main.command(name="change")
    @click.option("--site", required=True, help="a site of the packaged model")
    @click.option("--baseline", "baseline", required=True, type=click.Path(dir_okay=False),
                  help="the baseline campaign's scans")
    @click.option("--later", "later", required=True, type=click.Path(dir_okay=False),
                  help="the later campaign's scans")
    @click.option("--design", type=click.Choice(DESIGNS), default="independent",
                  show_default=True, help="paired: the later campaign revisits the baseline's "
                  "locations (matched by --pair-by)")
    @click.option("--pair-by", type=click.Choice(PAIR_BY), default="id",
                  show_default=True, help="how a paired design matches locations: sample id, "
                  f"or lat/lon within {PAIR_TOLERANCE_M:g} m")
    @click.option("--target", type=click.Choice(["field", "samples"]), default="field",
                  show_default=True, help="field: the scans sample a larger field; samples: "
                  "they are the population")
    @click.option("--baseline-bundle", default=None, help="BentoML tag of the bundle that "
                  "served the baseline (default: the served one; another: two models)")
    @click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                  default=LEVEL, show_default=True, help="interval level")
    @click.option("--alpha", type=click.FloatRange(0, 0.5, min_open=True, max_open=True),
                  default=ALPHA, show_default=True,
                  help="one-sided test level of the detectable change")
    @click.option("--power", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                  default=POWER, show_default=True,
                  help="power of the detectable change")
    @click.option("--out", type=click.Path(dir_okay=False), default=None,
                  help="CSV to write (default: data/08_reporting/change_<site>.csv)")
    @file_options(*READING)
    def change(site, baseline, later, out, read, **options) -> None:
        """The change of the field's mean SOC (and stock, with bulk_density_g_cm3 and depth_cm
        columns; per stratum with a stratum column) from BASELINE's scans to LATER's, with an
        interval that includes the model's error and the minimum detectable change
        (localsoc.change). A later campaign whose spectra drift from the baseline's is flagged.

        \b
        Example:
          localsoc change --site geeves_field --baseline scans_2024.csv --later scans_2029.csv \\
              --design paired --spectra reflectance --id-column sample_id
        """
        run_change(site, {"baseline": baseline, "later": later}, out, read, options)


def run_change(site: str, files: dict[str, str], out: str | None, read, options: dict) -> None:
    """The body of `localsoc change` (``register``)."""
    from rich.console import Console

    from localsoc.command_options import project_root, start_tensorflow
    from localsoc.field import OutOfDomainError

    start_tensorflow()
    project = project_root()
    try:
        table, spectra = compute_change(project, site, files, read, options)
    except OutOfDomainError as error:
        raise click.ClickException(f"no change: {error}") from None
    except Exception as error:  # bad input, unknown site, missing bundle: say what to fix
        raise click.ClickException(getattr(error, "message", None) or str(error)) from None
    target = Path(out) if out else project / f"data/08_reporting/change_{site}.csv"
    spectra_path = project / f"data/07_model_output/change_{site}_spectra.csv"
    for path, frame in ((target, table), (spectra_path, spectra)):
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
    console = Console()
    print_change(console, table)
    outside = spectra.groupby("campaign")["in_domain"].apply(lambda s: int((~s).sum()))
    console.print(f"per spectrum: {spectra_path} ({outside.get('baseline', 0)} baseline and "
                  f"{outside.get('later', 0)} later spectra outside the model's domain)")
    console.print(f"written: {target}")


# --- plan --campaign later ------------------------------------------------------------------


def later_campaign_options(function):
    """`plan`'s options for sizing a later campaign; with ``--campaign later`` the command
    sizes it (``plan_later``) instead of planning lab samples."""
    @functools.wraps(function)
    def command(*args, campaign, target_change, design, correlation, models, **kwargs):
        if campaign != "later":
            return function(*args, **kwargs)
        if target_change is None:
            raise click.UsageError("--campaign later needs --target-change (SOC %, the change "
                                   "the later campaign must be able to detect)")
        return plan_later(kwargs["file"], kwargs["site"], kwargs["out"], kwargs["read"],
                          target_change=target_change, design=design,
                          correlation=correlation, two_models=models == "two")

    for option in reversed([
            click.option("--campaign", type=click.Choice(["lab", "later"]), default="lab",
                         show_default=True, help="lab: pick the lab samples; later: size a "
                         "later campaign (FILE: the baseline's scans) for --target-change"),
            click.option("--target-change", type=click.FloatRange(0, min_open=True),
                         default=None, help="--campaign later: the change of the field's mean "
                         "SOC % to detect (80 % power, 5 % one-sided)"),
            click.option("--design", type=click.Choice(DESIGNS),
                         default="independent", show_default=True,
                         help="--campaign later: paired revisits baseline locations"),
            click.option("--correlation", type=click.FloatRange(-1, 1, min_open=True,
                                                                max_open=True),
                         default=0.0, show_default=True, help="--campaign later, paired: "
                         "correlation of a location's estimates at the two campaigns (from a "
                         "pilot; 0: no gain from pairing)"),
            click.option("--models", type=click.Choice(["one", "two"]), default="one",
                         show_default=True, help="--campaign later: two if the model is "
                         "recalibrated before the later campaign")]):
        command = option(command)
    return command


def plan_later(file: str, site: str, out: str | None, read, *, target_change: float,
               design: str, correlation: float, two_models: bool) -> None:
    """`localsoc plan FILE --site S --campaign later --target-change D`: the later campaign's
    size (``localsoc.change.later_campaign_size``) from FILE, the baseline's scans."""
    import numpy as np
    from rich.console import Console

    from localsoc import change as change_module
    from localsoc.command_options import project_root, start_tensorflow
    from localsoc.field import site_residuals
    from localsoc.workflow import bundle_predictor, predict_table

    start_tensorflow()
    try:
        predictor = bundle_predictor(project_root())
        served = predictor.site(site)
        estimates = predict_table(predictor, site, _read(file, site, served, read))["soc_percent"]
        needed, table = change_module.later_campaign_size(
            estimates, site_residuals(served.entry), target_change, design=design,
            correlation=correlation, two_models=two_models)
    except Exception as error:
        raise click.ClickException(getattr(error, "message", None) or str(error)) from None
    console = Console()
    console.print(f"later campaign for site {site}: baseline {len(estimates)} scans in {file} "
                  f"(SOC estimates sd {np.std(estimates, ddof=1):.3f} %), {design} design, "
                  f"{'two models' if two_models else 'one model'}; detectable change at 80 % "
                  "power, 5 % one-sided:")
    console.print(table.to_string(index=False, float_format="{:.3f}".format))
    if needed is None:
        console.print(f"[yellow]no later campaign of up to {int(table['n_later'].max())} scans "
                      f"detects {target_change:g} %" + (": revisit more locations, or raise "
                                                         "--correlation only if a pilot shows "
                                                         "it" if design == "paired" else ""))
    else:
        console.print(f"[bold]scan {needed} samples in the later campaign to detect a change "
                      f"of {target_change:g} % SOC")
    if out:
        table.to_csv(out, index=False)
        console.print(f"written: {out}")
