"""The front door: README.md is short, leads with what a newcomer needs, and every link in the
README, BENCHMARKS.md and docs/ resolves; the README's generated examples match the committed
record of `make run` (dvc.lock)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to '-'."""
    anchors = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not a link
    return [a or b for a, b in LINK.findall(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in _links(page):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(target)
    assert not broken, f"{page.name}: links that do not resolve: {broken}"


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move details to docs/"
    first = "\n".join(lines[:100])
    for needle in ("make run", "make test", "data/08_reporting/report.html",
                   "## Your own data", "localsoc study"):
        assert needle in first, f"{needle!r} is not in the README's first 100 lines"


def _committed_lock() -> str:
    """dvc.lock as committed (HEAD), so a local `make run` does not change what is checked;
    the working tree's copy outside a git checkout."""
    try:
        return subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return (ROOT / "dvc.lock").read_text()


def test_readme_examples_come_from_the_committed_run():
    """Each generated block names the outputs it was made from and their md5; those must be
    the md5s dvc.lock records, so a new `make run` record makes this fail until
    `python tools/readme_examples.py` regenerates the README."""
    spec = importlib.util.spec_from_file_location("readme_examples",
                                                  ROOT / "tools/readme_examples.py")
    examples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(examples)
    readme = (ROOT / "README.md").read_text()
    recorded = examples.lock_md5s(_committed_lock())
    for name in examples.BLOCKS:
        sources = examples.block_sources(readme, name)
        assert sources, f"README block {name!r} is empty: run python tools/readme_examples.py"
        for path, md5 in sources.items():
            assert recorded.get(path) == md5, (
                f"README block {name!r} was made from {path} md5 {md5}, dvc.lock records "
                f"{recorded.get(path)}: run `make run` then python tools/readme_examples.py")
