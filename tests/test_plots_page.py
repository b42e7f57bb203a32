"""`dvc plots show` works offline and says something: the page holds Vega itself, every plot of
dvc.yaml draws marks in headless Chromium with no network and no console error, and the dRMSE
chart has one colour per site.

The page is made from small tables with the columns of the study's outputs (the plots of the
committed dvc.yaml, the templates and the page of .dvc/plots/), so no study runs here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import PROJECT_ROOT

SITES = ["china_site", "sweden_site", "usa_site"]
METHODS = ["Local", "Global", "DTL-Ig", "PLSR Local"]
# Records every error the page meets (script errors, failed loads, console.error) in the DOM,
# where --dump-dom shows them; put first in <head>.
RECORDER = """<script>
  window.__errors = [];
  function __note(text) {
    window.__errors.push(String(text));
    document.documentElement.setAttribute("data-errors", JSON.stringify(window.__errors));
  }
  window.addEventListener("error", function (e) {
    __note((e.message || "") + " " + ((e.target && (e.target.src || e.target.href)) || ""));
  }, true);
  window.addEventListener("unhandledrejection", function (e) { __note(e.reason); });
  var __consoleError = console.error;
  console.error = function () { __note(Array.from(arguments).join(" "));
                                __consoleError.apply(console, arguments); };
</script>"""
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c6360f8cfc00000030101009a5e0c4e0000000049454e44ae426082")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium with every host name
    unresolvable (a request that leaves the machine fails, and the recorder notes it)."""
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1280,1000",
         "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _tables(repo: Path, paths: dict[str, str]) -> None:
    rng = np.random.default_rng(0)
    rows = [{"site": s, "method": m, "drmse": 0.0 if m == "Local" else rng.normal(10, 15)}
            for s in SITES for m in METHODS]
    tables = {"study_metrics": pd.DataFrame(rows)}
    observed = rng.uniform(0.5, 4.0, 30)
    tables["served_test_predictions"] = pd.DataFrame({
        "site": np.repeat(SITES, 10), "method": "DTL-Ig", "sample_id": range(30),
        "observed": observed, "estimated": observed + rng.normal(0, 0.2, 30),
        "lower": observed - 0.5, "upper": observed + 0.5})
    tables["rslocal_history"] = pd.DataFrame([
        {"site": s, "scope": scope, "iteration": i, "pool_size": 500 - 40 * i,
         "best_subset_score": 0.5 - 0.02 * i} for s in SITES for scope in ("global", "country")
        for i in range(6)])
    for name in ("site_search_trials", "library_search_trials"):
        tables[name] = pd.DataFrame([{"model": f"{s}/local", "trial_id": f"{t:02d}",
                                      "cv_rmse": 0.4 - 0.01 * t} for s in SITES for t in range(3)])
    for name, table in tables.items():
        path = repo / paths[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)


@pytest.fixture(scope="module")
def plots_page(tmp_path_factory) -> tuple[Path, list[dict]]:
    """`dvc plots show` of the committed plots over small tables: (page, plot definitions)."""
    repo = tmp_path_factory.mktemp("plots") / "repo"
    repo.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(*args):
        done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{args}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    shutil.copytree(PROJECT_ROOT / ".dvc/plots", repo / ".dvc/plots")
    run("dvc", "config", "plots.html_template", "plots/offline.html")
    plots = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["plots"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}, sort_keys=False))
    from localsoc.dvc_stages import PLOTS, _catalog, _path

    catalog = _catalog(PROJECT_ROOT)
    _tables(repo, {p["dataset"]: _path(catalog[p["dataset"]]) for p in PLOTS if "y" in p})
    for plot in PLOTS:
        if "y" not in plot:
            folder = repo / _path(catalog[plot["dataset"]])
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "figure.png").write_bytes(PNG)
    run("dvc", "plots", "show", "--out", str(repo.parent / "page"))
    return repo.parent / "page" / "index.html", plots


def test_the_page_holds_its_scripts_and_names_no_network_address(plots_page):
    page, _ = plots_page
    html = page.read_text()
    assert "vega@" not in html and "cdn.jsdelivr" not in html
    assert not re.search(r"<script[^>]+src=", html), "a script loaded from elsewhere"
    for name in ("vega", "vega-lite", "vega-embed"):
        assert f"/* {name} " in html
        assert (PROJECT_ROOT / ".dvc/plots/LICENSES" / f"{name}.txt").is_file()


def _div(dom: str, plot_id: str) -> str:
    div_id = plot_id.translate({ord(c): "_" for c in r"!@#$%^&*()[]{};,<>?\/:.|`~=_+ "})
    start = dom.index(f'id="{div_id}"')
    following = dom.find("<div id=", start + 1)
    return dom[start:following if following > 0 else len(dom)]


@pytest.mark.skipif(chromium() is None, reason="no Chromium on this machine (Debian: "
                    "apt-get install chromium): the plots are not rendered")
def test_every_plot_draws_offline_and_drmse_has_a_colour_per_site(plots_page, tmp_path):
    page, plots = plots_page
    checked = page.with_name("checked.html")
    checked.write_text(page.read_text().replace("<head>", "<head>\n" + RECORDER, 1))
    dom = dump_dom(checked, tmp_path / "profile")
    errors = re.search(r'data-errors="([^"]*)"', dom)
    assert errors is None, f"errors on the page: {errors and errors.group(1)}"
    for plot in plots:
        name, spec = next(iter(plot.items()))
        if spec is None:
            assert re.search(rf'<img[^>]+src="[^"]*{re.escape(Path(name).name)}', dom), name
            continue
        div = _div(dom, name)
        assert "<svg" in div, f"{name}: nothing drawn"
        marks = re.findall(r'<g class="mark-(?:rect|symbol|line)[^"]*"[^>]*>(.*?)</g>', div)
        assert any("<path" in m for m in marks), f"{name}: no marks"
    drmse = _div(dom, "dRMSE against Local per method and site (%)")
    bars = re.search(r'<g class="mark-rect role-mark[^"]*"[^>]*>(.*?)</g>', drmse).group(1)
    colours = set(re.findall(r'fill="(#[0-9a-fA-F]{6})"', bars))
    assert len(colours) == len(SITES), colours
    assert json.dumps("china_site")[1:-1] in drmse  # the legend names the sites
