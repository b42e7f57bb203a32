"""`make viz`: kedro-viz's static build of the project's pipelines under
data/08_reporting/pipeline/, run on a copy of the project's code and configuration (the Makefile's own
recipe, with `setup` taken as done). The page names every registered pipeline and every node,
and nothing in it is fetched from the network."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The folder `make viz` wrote, in a copy of the project."""
    root = tmp_path_factory.mktemp("viz")
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy2(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf",
                    ignore=shutil.ignore_patterns("local"))
    (root / "conf/local").mkdir()
    shutil.copytree(PROJECT_ROOT / "src", root / "src",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = Path(sys.executable).parent.parent
    done = subprocess.run(["make", "-s", "-o", "setup", "viz", f"VENV={venv}"], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert not (root / "build").exists()
    return root / "data/08_reporting/pipeline"


def test_the_page_names_every_pipeline_and_node(built):
    from localsoc.pipeline_registry import register_pipelines

    assert (built / "index.html").is_file()
    main = json.loads((built / "api/main").read_text())
    pipelines = register_pipelines()
    assert {p["id"] for p in main["pipelines"]} == set(pipelines)
    assert main["selected_pipeline"] == "__default__"
    drawn = {n["name"] for n in main["nodes"] if n["type"] == "task"}
    assert drawn == {node.name for node in pipelines["__default__"].nodes}
    for name in pipelines:  # each pipeline's own view, as the page's selector loads it
        assert json.loads((built / "api/pipelines" / name).read_text())["nodes"]


def test_nothing_on_the_page_is_fetched_from_the_network(built):
    for page in built.glob("*.html"):
        text = page.read_text()
        references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text)
        assert [r for r in references if re.match(r"(https?:)?//", r)] == [], page.name
        assert "heapanalytics" not in text, page.name
    # the app's code asks for its data by relative paths (api/main, api/pipelines/...); its
    # one font address goes only into an SVG the user exports, and no analytics are loaded
    scripts = "".join(p.read_text(errors="replace") for p in built.glob("assets/*.js"))
    assert "heapanalytics" not in scripts
    assert re.findall(r"fetch\(\s*[\"'`](?:https?:)?//", scripts) == []
