"""What the `localsoc` commands share: the project they run in, TensorFlow's quiet start, and
the options of every command that reads a file of spectra (``file_options``).

Its own module so that command modules beside ``command_line`` (``change_command``) can use
them without importing ``command_line``, which registers those commands.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import click

#: The Kedro environment every command defaults to: the demo (``make run``'s). conf/demo
#: changes only the simulated library's size and the search budgets; the grid, validation and
#: split settings that import, site, plan and study read are conf/base's in both.
DEFAULT_ENV = "demo"


def project_root() -> Path:
    """The Kedro project directory: $LOCALSOC_PROJECT, else the nearest parent with pyproject.toml."""
    if os.environ.get("LOCALSOC_PROJECT"):
        return Path(os.environ["LOCALSOC_PROJECT"]).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").exists() and (candidate / "conf").is_dir():
            return candidate
    raise click.ClickException(
        "no LocalSOC project found here or above (a directory with pyproject.toml and conf/); "
        "run from the project, or set LOCALSOC_PROJECT"
    )


def start_tensorflow() -> None:
    """Import TensorFlow before a command that needs it: quietly (``localsoc.quiet_start``)
    unless ``localsoc --verbose``."""
    from localsoc.quiet_start import import_tensorflow_quietly

    import_tensorflow_quietly()


@dataclasses.dataclass(frozen=True)
class FileOptions:
    """How `import`, `site`, `plan` and `predict` read a file of spectra (their shared options;
    a command without one of them gets the default here)."""

    spectra: str = "auto"
    carbon_column: str | None = "auto"
    carbon_units: str = "percent"
    om_factor: float | None = None
    carbon_kind: str | None = None
    id_column: str | None = None
    country: str | None = None
    country_column: str | None = None
    lat_column: str | None = None
    lon_column: str | None = None
    grid_start: float | None = None
    grid_stop: float | None = None
    grid_step: float | None = None
    narrow_grid_ok: bool = False
    no_dvc: bool = False
    env: str = DEFAULT_ENV

    def importer_options(self, carbon_column: str | None = None) -> dict:
        """Keyword arguments of the importers (``localsoc.data.importers``);
        ``carbon_column`` replaces this file's (None: no carbon column)."""
        options = {"spectra": self.spectra, "carbon_column": carbon_column or None,
                   "carbon_units": self.carbon_units, "id_column": self.id_column,
                   "country": self.country, "country_column": self.country_column,
                   "lat_column": self.lat_column, "lon_column": self.lon_column,
                   "narrow_grid_ok": self.narrow_grid_ok}
        if self.om_factor is not None:
            options["om_factor"] = self.om_factor
        return options

    def grid(self, default: dict) -> dict:
        """The grid to import on: ``default`` (the environment's) with --grid-* applied."""
        from localsoc.workflow import grid_from_options

        return grid_from_options(self.grid_start, self.grid_stop, self.grid_step, default)


_SPECTRA_UNITS = ["reflectance", "percent_reflectance", "absorbance", "auto"]
_CARBON_UNITS = ["percent", "g_per_kg", "organic_matter_percent", "organic_matter_g_per_kg"]
#: Each file option as a ``click.option`` waiting for its last keywords (``hidden``, ...).
FILE_OPTIONS = {
    "spectra": functools.partial(
        click.option, "--spectra", type=click.Choice(_SPECTRA_UNITS),
        default=FileOptions.spectra, show_default=True,
        help="what the spectral columns hold (absorbance must be declared)"),
    "carbon_column": functools.partial(
        click.option, "--carbon-column", default=FileOptions.carbon_column, show_default=True,
        help="column with the lab carbon values ('' for none; auto: soc, else OSSL's organic "
             "carbon column, named in the report)"),
    "carbon_units": functools.partial(
        click.option, "--carbon-units", type=click.Choice(_CARBON_UNITS),
        default=FileOptions.carbon_units, show_default=True),
    "om_factor": functools.partial(
        click.option, "--om-factor", type=float, default=None,
        help="organic matter to organic carbon factor (default 1.724)"),
    "carbon_kind": functools.partial(
        click.option, "--carbon-kind", type=click.Choice(["organic", "total"]), default=None,
        help="what the carbon column measures: organic carbon, or total carbon (organic + "
             "carbonate; e.g. dry combustion of untreated soil). Recorded with the table; the "
             "study warns when a site and a library differ"),
    "id_column": functools.partial(
        click.option, "--id-column", default=None,
        help="column with sample ids (default: one named sample_id, id, id.layer_uuid_txt or "
             "id.layer_local_c; else generated)"),
    "country": functools.partial(click.option, "--country", default=None,
                                 help="ISO country code for every row"),
    "country_column": functools.partial(click.option, "--country-column", default=None,
                                        help="column with ISO country codes"),
    "lat_column": functools.partial(click.option, "--lat-column", default=None,
                                    help="column with latitudes (decimal degrees)"),
    "lon_column": functools.partial(click.option, "--lon-column", default=None,
                                    help="column with longitudes (decimal degrees)"),
    "grid_start": functools.partial(click.option, "--grid-start", type=float, default=None,
                                    help="grid start, nm"),
    "grid_stop": functools.partial(click.option, "--grid-stop", type=float, default=None,
                                   help="grid end, nm"),
    "grid_step": functools.partial(click.option, "--grid-step", type=float, default=None,
                                   help="grid step, nm"),
    "narrow_grid_ok": functools.partial(click.option, "--narrow-grid-ok", is_flag=True,
                                        help="import on the part of the grid the file covers"),
    "no_dvc": functools.partial(click.option, "--no-dvc", is_flag=True,
                                help="do not `dvc add` the imported table"),
    "env": functools.partial(click.option, "--env", default=FileOptions.env, show_default=True,
                             help="Kedro environment whose grid and validation settings apply"),
}
#: The options of every command that reads a file of spectra.
READING = ("spectra", "id_column", "country", "country_column", "lat_column", "lon_column",
           "narrow_grid_ok")
#: ... of one that reads its carbon column (import, site, predict).
CARBON = ("carbon_column", "carbon_units", "om_factor")
#: ... of one that reads it on the environment's grid (import, site, plan).
GRID = ("grid_start", "grid_stop", "grid_step", "env")
#: ... of one that stores it (import, site).
STORING = (*READING, *CARBON, "carbon_kind", *GRID, "no_dvc")


def file_options(*names: str, ignored: tuple[str, ...] = ()):
    """Add the ``FILE_OPTIONS`` ``names`` to a command, which gets them as one ``FileOptions``
    keyword argument, ``read``; the ``ignored`` ones are accepted, hidden, with a note that
    they do nothing in this command (it had them once)."""
    def decorate(function):
        @functools.wraps(function)
        def command(*args, **kwargs):
            read = FileOptions(**{name: kwargs.pop(name) for name in names})
            for name in ignored:
                kwargs.pop(name)
            return function(*args, read=read, **kwargs)

        for name in reversed(ignored):
            command = FILE_OPTIONS[name](hidden=True, callback=_ignored_note)(command)
        for name in reversed(names):
            command = FILE_OPTIONS[name]()(command)
        return command
    return decorate


def _ignored_note(ctx, param, value):
    if ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE:
        click.echo(f"Note: {param.opts[0]} has no effect in `localsoc {ctx.info_name}`; "
                   "ignored", err=True)
    return value
